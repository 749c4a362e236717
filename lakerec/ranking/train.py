"""The rank stage: fit (or resume) the ranking model on train_impressions; log, export and register it.

    out = run(spark, cfg, run_name="esmm-1")                # Petastorm -> fit -> export -> register
    out = run(spark, cfg, run_name="esmm-1", resume=True)   # continue from the last checkpoint
    print(summary_text(out))

Same conventions as the retrieval stage (lakerec.retrieval.train), whose plumbing it reuses:
train_impressions is materialised once for Petastorm in the lake's cache (deleted after),
a seeded validation slice carved from it drives early stopping (`rank.validation_metric`),
every epoch writes a checkpoint under <checkpoint root>/rank/<run name> beside a state file,
so `resume` continues the same MLflow run with the same settings. With `rank.workers` = N > 1
the fit runs on N Spark barrier tasks through retrieval's launcher
(lakerec/retrieval/distributed.py: even Petastorm shards, the global batch split over the
workers, the chief checkpoints and validates, the driver logs its epochs); early stopping
then does not apply (no worker may stop alone) and the model is the last epoch's. The run
records the parameters, per-epoch losses and validation metrics, the tables it read (MLflow
Delta dataset inputs, with their versions), item CTR's metrics on the same validation rows,
and the retrieval model whose vocabularies it shares (the champion of
`mlflow.registered_model`, or `mlflow.model_version`); the model is registered as
`mlflow.registered_ranker` and takes the alias `champion` only if its validation metric beats
item CTR's and the champion's (lakerec.registry.promote_if_better).

The evaluation (plots, test metrics, baselines) belongs to lakerec.ranking.evaluate: pass
it as `after_training`, which runs inside the open MLflow run with the logged model's URI.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from lakerec import lake_runs, registry, run_state
from lakerec.config import Config, RankConf, override
from lakerec.errors import InputDataError, LakeRecError
from lakerec.ranking.features import RankSpec, measure_spec
from lakerec.retrieval import data, tracking
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.rank")

STAGE = "rank"  # the runs' lakerec.stage tag, and the checkpoint folder below the checkpoint root
TRAINED_ON = tuple(t.name for t in (T.TRAIN_IMPRESSIONS, T.USER_VOCAB, T.ITEM_VOCAB, T.FEATURE_VOCAB))
TAG_RETRIEVAL_RUN = "lakerec.retrieval_run_id"
TAG_RETRIEVAL_MODEL = "lakerec.retrieval_model"  # name/version of the two-tower model it goes with
_WHERE_FROM = ("workers", "gpu")  # where a run trains: this invocation's, also on resume
ITEM_CTR = "item_ctr/"  # prefix of item CTR's validation metrics in the run (the gate's baseline)


def checkpoint_root(cfg: Config) -> Path:
    """<checkpoint root>/rank: the ranker's runs, apart from retrieval's (neither resumes the other's)."""
    return run_state.checkpoint_root(cfg) / STAGE


def resumed_config(cfg: Config, root: Path, run_name: str | None, epochs: int | None) -> tuple[Config, str, dict]:
    """(cfg with the interrupted run's rank settings, its name, its state); `epochs` may raise its epoch count."""
    run_name, state = run_state.find_resumable(root, cfg.database, run_name)
    known = {f.name for f in dataclasses.fields(RankConf)}
    stored = {k: v for k, v in state["rank"].items() if k in known and k not in _WHERE_FROM}
    if epochs is not None:
        stored["epochs"] = epochs
    return override(cfg, **{f"rank__{k}": v for k, v in stored.items()}), run_name, state


# --------------------------------------------------------------------------- inputs

def carve_validation(df, fraction: float, seed: int):
    """(fit rows, validation rows): a seeded `fraction` of the impressions, by a hash of sample_id.

    Deterministic (the same table and seed give the same slice) and row-wise: an impression
    is its own example, so no user needs to keep rows on both sides.
    """
    from pyspark.sql import functions as F

    if fraction <= 0:
        return df, df.limit(0)
    draw = (F.abs(F.xxhash64(F.col("sample_id"), F.lit(seed))) % 1_000_000) / 1_000_000.0
    held = draw < F.lit(float(fraction))
    return df.where(~held), df.where(held)


@dataclasses.dataclass
class RankInputs:
    """What the fit and the export need, read before the MLflow run opens.

    Attributes:
        tables: the tables read (TRAINED_ON) as DataFrames.
        spec: the inputs and vocabulary sizes measured on them.
        counts: rows, clicks, conversions, conversions_without_click of train_impressions.
        fit_rows: train_impressions less the validation slice.
        n_fit, n_validation: their row counts.
        validation: up to rank.validation_rows validation rows in memory (None: no validation).
        steps: optimizer steps per epoch.
        validation_frame: those validation rows as a DataFrame (None: no validation).
    """

    tables: dict
    spec: RankSpec
    counts: dict
    fit_rows: object
    n_fit: int
    n_validation: int
    validation: dict | None
    steps: int
    validation_frame: object = None


def read_inputs(spark, cfg: Config) -> RankInputs:
    """Read train_impressions and the vocabularies, measure them, carve the validation slice.

    Raises:
        MissingTableError: a table is missing (naming the job that writes it).
        InputDataError: train_impressions is empty or has no click, or breaks its contract.
    """
    rc = cfg.rank
    lake_runs.check_inputs(spark, cfg, [T.table(n) for n in TRAINED_ON])
    tables = {n: spark.table(cfg.table(n)) for n in TRAINED_ON}
    spec, counts = measure_spec(spark, tables)
    source = cfg.table(T.TRAIN_IMPRESSIONS.name)
    if counts["rows"] == 0 or counts["clicks"] == 0:
        raise InputDataError(f"{source} has {counts['rows']} rows and {counts['clicks']} clicks: nothing to rank "
                             f"with. Rerun `python -m lakerec.jobs.{T.IMPRESSIONS}` after the filter job")
    if counts["conversions_without_click"]:
        log.warning("%s: %d conversions without a click; ESMM's CTCVR label is click x conversion, so they count "
                    "as no conversion", source, counts["conversions_without_click"])
    fit_rows, held_out = carve_validation(tables[T.TRAIN_IMPRESSIONS.name], rc.validation_fraction, rc.seed)
    n_validation = held_out.count() if rc.validation_fraction > 0 else 0
    n_fit = counts["rows"] - n_validation
    if n_fit == 0:
        raise InputDataError("rank.validation_fraction left no training rows; lower it")
    validation = picked = None
    if n_validation:
        picked = held_out.orderBy("sample_id").limit(rc.validation_rows)
        with data.converted(spark, picked, cfg, list(spec.training_columns), spec.lengths) as feed:
            validation = data.read_all(feed)
        log.info("validation slice: %s of %s rows (rank.validation_fraction %.2f), %s scored per epoch",
                 f"{n_validation:,}", f"{counts['rows']:,}", rc.validation_fraction,
                 f"{len(next(iter(validation.values()))):,}")
    return RankInputs(tables, spec, counts, fit_rows, n_fit, n_validation, validation,
                      steps=max(1, math.ceil(n_fit / rc.batch_size)), validation_frame=picked)


def _run_params(cfg: Config, inputs: RankInputs) -> dict:
    params = {f"rank.{k}": (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg.rank).items()}
    params.update({"database": cfg.database, "train_rows": inputs.counts["rows"], "fit_rows": inputs.n_fit,
                   "validation_rows_held_out": inputs.n_validation, "clicks": inputs.counts["clicks"],
                   "conversions": inputs.counts["conversions"], "steps_per_epoch": inputs.steps})
    params.update({f"vocab.{k}": v for k, v in sorted(inputs.spec.vocab_sizes.items())})
    return params


def _retrieval_tags(cfg: Config, versions: dict[str, int]) -> dict[str, str]:
    """The link to the retrieval model whose vocabularies the ranker shares (warns when they moved since).

    The champion of mlflow.registered_model, or the version mlflow.model_version names.
    """
    found = registry.resolve(cfg, registry.TWO_TOWER, required=False)
    if found is None:
        log.info("no %s champion yet: the ranker is linked to no retrieval run", cfg.mlflow.registered_model)
        return {}
    recorded = tracking.logged_table_versions(found.run_id)
    moved = sorted(t for t in versions if t in recorded and recorded[t] != versions[t])
    if moved:
        log.warning("the retrieval model %s was trained on other versions of %s: its vocabularies may not match "
                    "the ranker's (retrain it, or rerun the filter and both models)", found, ", ".join(moved))
    return {TAG_RETRIEVAL_RUN: found.run_id, TAG_RETRIEVAL_MODEL: f"{found.name}/{found.version}"}


def log_item_ctr_validation(inputs: RankInputs, rc: RankConf) -> None:
    """Log item CTR's validation metrics (ITEM_CTR + `validation/...`) on the ranker's validation rows.

    The baseline of lakerec.ranking.baselines.item_ctr, fitted on the fit rows (the slice is held
    out of it), scored by the same validation_metrics as the ranker's epochs: the champion
    gate's baseline. Nothing without a validation slice.
    """
    import mlflow

    from lakerec.ranking.baselines import item_ctr
    from lakerec.ranking.callbacks import PREFIX, validation_metrics
    from lakerec.ranking.features import LABELS
    from lakerec.ranking.model import P_CLICK, P_CONVERSION, P_CTCVR

    if inputs.validation_frame is None:
        return
    scored, _ = item_ctr(inputs.fit_rows, inputs.validation_frame, rc.ctr_prior_strength)
    rows = scored.toPandas()
    values = validation_metrics({c: rows[c].to_numpy(float) for c in (P_CLICK, P_CONVERSION, P_CTCVR)},
                                rows[LABELS[0]].to_numpy(), rows[LABELS[1]].to_numpy())
    mlflow.log_metrics({f"{ITEM_CTR}{PREFIX}{k}": v for k, v in values.items()})


# --------------------------------------------------------------------------- fit and export

def fit(spark, cfg: Config, inputs: RankInputs, ckpt_dir: Path, *, resume: bool, callbacks: Sequence = ()):
    """Fit the ranker on the fit rows through Petastorm, with a checkpoint per epoch.

    In the driver, or with rank.workers > 1 on that many Spark barrier tasks (module doc).
    The training batches have their cross fields blanked on a share rank.cross_dropout of
    the rows (lakerec.ranking.cross_dropout); the validation slice is scored as it is.

    Returns:
        (the trained RankingModel, loop.FitResult, the best epoch's validation metrics or {});
        with a validation slice the model holds the best epoch's weights. On several workers:
        the last epoch's model and validation metrics (no early stopping).
    """
    from lakerec.ranking.callbacks import PREFIX, RankValidation
    from lakerec.ranking.cross_dropout import with_cross_dropout
    from lakerec.ranking.model import build_model
    from lakerec.retrieval import distributed, loop
    from lakerec.retrieval.callbacks import BestEpoch, MlflowEpochMetrics

    rc, spec, rows = cfg.rank, inputs.spec, inputs.validation
    params = loop.FitParams(epochs=rc.epochs, steps_per_epoch=inputs.steps, batch_size=rc.batch_size,
                            keep_checkpoints=cfg.train.keep_checkpoints)
    logged = MlflowEpochMetrics(keys=("ctr_loss", "ctcvr_loss"))

    # With workers > 1 these are pickled into the Spark tasks: they close over the spec, the
    # settings and the validation arrays, never over `inputs`, whose DataFrames stay here.
    def new_model():
        return build_model(spec, rc)

    def dropout(factory):
        return with_cross_dropout(factory, rc.cross_dropout, rc.seed)

    if rc.workers > 1:
        seen = distributed.EpochLogs()
        with data.converted(spark, distributed.even_shards(inputs.fit_rows, rc.workers), cfg,
                            list(spec.training_columns), spec.lengths) as feed:
            model, result = distributed.fit_on_workers(
                feed, new_model, params,
                distributed.ShardSettings(rc.batch_size, rc.shuffle_buffer, rc.reader_workers, rc.seed, wrap=dropout),
                ckpt_dir, workers=rc.workers, gpu=rc.gpu, resume=resume,
                chief_callbacks=(lambda: [RankValidation(rows, spec.columns)]) if rows is not None else None,
                callbacks=callbacks, driver_callbacks=[logged, seen])
        last = seen.epochs[-1][1] if seen.epochs else {}
        return model, result, {k: v for k, v in last.items() if k.startswith(PREFIX)}

    cbs = []
    best = validation = None
    if rows is not None:
        validation = RankValidation(rows, spec.columns)
        best = BestEpoch(PREFIX + validation_metric(rc), rc.early_stopping_patience)
        cbs += [validation, best]
    cbs += [logged, *callbacks]
    with data.converted(spark, inputs.fit_rows, cfg, list(spec.training_columns), spec.lengths) as feed:
        factory = dropout(data.dataset_factory(feed, rc.batch_size, shuffle_buffer=rc.shuffle_buffer,
                                               workers=rc.reader_workers, seed=rc.seed))
        model, result = loop.fit(factory, new_model, params, checkpoint_dir=ckpt_dir, resume=resume, callbacks=cbs)
    best_metrics = {}
    if best is not None and best.best_epoch is not None:
        result.best_epoch, result.best_value, result.stopped_epoch = best.best_epoch, best.best, best.stopped_epoch
        best_metrics = validation.by_epoch.get(best.best_epoch, {})
        log.info("validation %s: best %.4f at epoch %d%s", best.key, best.best, best.best_epoch,
                 f", stopped after epoch {best.stopped_epoch}" if best.stopped_epoch else "")
    return model, result, best_metrics


def validation_metric(rc: RankConf) -> str:
    """What early stopping maximises: rank.validation_metric, auto = ctcvr_auc with esmm, ctr_auc with ctr."""
    if rc.validation_metric != "auto":
        return rc.validation_metric
    return "ctcvr_auc" if rc.objective == "esmm" else "ctr_auc"


def export_model(cfg: Config, model, spec: RankSpec) -> tuple[str, str | None]:
    """Save, log and register the model; returns (its runs:/ URI, the registered version or None)."""
    from lakerec.ranking import export

    with tempfile.TemporaryDirectory(prefix="lakerec-ranker-") as tmp:
        saved = export.save(model, spec, cfg.rank.objective, Path(tmp) / "saved_model")
        info = export.log_pyfunc(saved, spec, cfg.mlflow.registered_ranker)
    version = getattr(info, "registered_model_version", None)
    log.info("exported ranker %s (registered %s version %s)", info.model_uri, cfg.mlflow.registered_ranker, version)
    return info.model_uri, (str(version) if version is not None else None)


# --------------------------------------------------------------------------- the stage

def run(
    spark,
    cfg: Config,
    run_name: str | None = None,
    resume: bool = False,
    *,
    epochs: int | None = None,
    callbacks: Sequence = (),
    after_training: Callable | None = None,
    evaluate_after: bool = True,
) -> dict:
    """Train (or resume) the ranker on cfg.database's train_impressions; log, export and register it.

    Args:
        spark: the session.
        cfg: configuration; `cfg.rank` holds the settings (already with flags).
        run_name: the run's name (checkpoints under <checkpoint root>/rank/<run_name>); default
            `<objective>-d<dim>-<UTC time>`.
        resume: continue the named (or the latest unfinished) ranker run from its last
            checkpoint, with that run's settings; `epochs` may raise its epoch count.
        epochs: with resume, the new total epoch count.
        callbacks: extra Keras callbacks, run after each epoch's checkpoint is written; with
            rank.workers > 1 they run in every worker (pickled into the Spark tasks).
        after_training: `f(spark, cfg, run_id, model_uri) -> dict`, called inside the open
            MLflow run once the model is logged (the evaluation and its plots); its result is
            returned as "evaluation". Default: lakerec.ranking.evaluate.run, the ranking
            table on test_impressions (and the two-stage run), unless evaluate_after is False.
        evaluate_after: evaluate the new model when no after_training is given.

    Returns:
        {"run_id", "run_name", "model_uri", "model_version", "model" (in memory), "spec", "fit": FitResult, "counts",
         "rows": {"train", "fit", "validation"}, "validation": the best epoch's metrics,
         "retrieval_model", "champion" (registry.Decision, None when not registered), "evaluation"}.

    Raises:
        ConfigError: rank.workers or rank.gpu the cluster cannot run (distributed.check_cluster).
        LakeRecError: the run already has checkpoints (without resume), or there is nothing to resume.
        WorkerFailed: with rank.workers > 1, a worker raised (its index and error).
    """
    import mlflow
    import tensorflow as tf

    from lakerec.retrieval import distributed, loop

    root = checkpoint_root(cfg)
    resumed: dict = {}
    if resume:
        cfg, run_name, resumed = resumed_config(cfg, root, run_name, epochs)
    rc = cfg.rank
    distributed.check_cluster(spark, rc, section=STAGE, petastorm_cache=cfg.train.petastorm_cache)
    if not run_name:
        run_name = f"{rc.objective}-d{rc.embedding_dim}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    ckpt_dir = root / run_name
    if not resume and loop.has_checkpoint(ckpt_dir):
        raise LakeRecError(f"ranker run {run_name!r} already has checkpoints in {ckpt_dir}: pass --resume, "
                           "or another --run-name")
    tf.keras.utils.set_random_seed(rc.seed)
    inputs = read_inputs(spark, cfg)

    tracking.configure(cfg)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(**({"run_id": resumed["run_id"]} if resume else {"run_name": run_name})) as active:
        run_id = active.info.run_id
        state = {"run_id": run_id, "database": cfg.database, "finished": False,
                 "rank": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(rc).items()}}
        run_state.write_state(ckpt_dir, state)
        versions = tracking.log_table_inputs(spark, cfg, TRAINED_ON)
        train_table = cfg.table(T.TRAIN_IMPRESSIONS.name)
        tags = {**tracking.provenance_tags(cfg), **_retrieval_tags(cfg, versions),
                registry.TAG_SLICE: registry.validation_slice(train_table, versions[train_table],
                                                              fraction=rc.validation_fraction, seed=rc.seed,
                                                              rows=rc.validation_rows)}
        mlflow.set_tags({**tags, tracking.TAG_STAGE: STAGE, tracking.TAG_RUN_NAME: run_name})
        if not resume:
            mlflow.log_params(_run_params(cfg, inputs))
        log_item_ctr_validation(inputs, rc)
        log.info("training ranker %s (%s) on %s: %s rows (%s clicks, %s conversions), %d epochs x %d steps of %d",
                 run_name, rc.objective, cfg.database, f"{inputs.counts['rows']:,}", f"{inputs.counts['clicks']:,}",
                 f"{inputs.counts['conversions']:,}", rc.epochs, inputs.steps, rc.batch_size)

        model, fit_result, validation = fit(spark, cfg, inputs, ckpt_dir, resume=resume, callbacks=callbacks)
        mlflow.log_metrics({"optimizer_steps": fit_result.steps, "train_seconds": fit_result.seconds})
        if fit_result.best_epoch is not None:
            mlflow.log_metrics({"best_epoch": fit_result.best_epoch,
                                **{f"best_{k}": v for k, v in validation.items()}})
        model_uri, version = export_model(cfg, model, inputs.spec)
        decision = None
        if version is not None:
            from lakerec.ranking.callbacks import PREFIX

            key = PREFIX + validation_metric(rc)
            decision = registry.promote_if_better(cfg.mlflow.registered_ranker, version, run_id, metric=key,
                                                  baseline="item CTR", baseline_metric=ITEM_CTR + key)
        if after_training is None and evaluate_after:
            from lakerec.ranking import evaluate

            def after_training(spark, cfg, run_id, model_uri):
                return evaluate.run(spark, cfg, model_uri, run_id)
        evaluation = after_training(spark, cfg, run_id, model_uri) if after_training else None
        run_state.finish(ckpt_dir, state, keep_checkpoints=cfg.train.keep_finished_checkpoints)
    return {"run_id": run_id, "run_name": run_name, "model_uri": model_uri, "model_version": version,
            "model": model, "spec": inputs.spec, "fit": fit_result, "counts": inputs.counts, "objective": rc.objective,
            "rows": {"train": inputs.counts["rows"], "fit": inputs.n_fit, "validation": inputs.n_validation},
            "validation": validation, "retrieval_model": tags.get(TAG_RETRIEVAL_MODEL), "champion": decision,
            "evaluation": evaluation}


def summary_text(out: dict) -> str:
    """A few lines a person reads after the job: rows, epochs, speed, validation, the registered model."""
    f = out["fit"]
    rows = out["rows"]
    lines = [
        f"ranker {out['run_name']} ({out['objective']}), MLflow run {out['run_id']}",
        f"  rows: {rows['train']:,} in train_impressions = {rows['fit']:,} fitted + {rows['validation']:,} "
        f"validation; {out['counts']['clicks']:,} clicks, {out['counts']['conversions']:,} conversions",
        f"  epochs {f.initial_epoch + 1}..{f.epochs_done}, optimizer step {f.steps}, {f.seconds:.1f}s, "
        f"{f.examples_per_second:,.0f} examples/s",
    ]
    if out["validation"]:
        best = ", ".join(f"{k.split('/', 1)[1]} {v:.4f}" for k, v in sorted(out["validation"].items()))
        which = f"best epoch {f.best_epoch}" if f.best_epoch is not None else f"last epoch {f.epochs_done}"
        lines.append(f"  validation ({which}): {best}")
    lines.append(f"  model {out['model_uri']}, registered version {out['model_version']}"
                 + (f"; retrieval model {out['retrieval_model']}" if out["retrieval_model"] else ""))
    if out.get("champion") is not None:
        lines.append(f"  {out['champion']}")
    evaluation = out.get("evaluation")
    if isinstance(evaluation, dict) and evaluation.get("table"):
        lines += ["", evaluation["table"]]
    return "\n".join(lines)
