"""The train stage: fit (or resume) the two-tower model on the filter's tables; export, register, evaluate.

    out = run(spark, cfg, run_name="ids-10")                # Petastorm -> fit -> export -> evaluate
    out = run(spark, cfg, run_name="ids-10", resume=True)   # continue from the last checkpoint

Every epoch writes a checkpoint under <checkpoint root>/<run name>, next to a state file
(STATE_FILE) that records the MLflow run, the database, the protocol and the settings,
so `resume` continues the same run with the same settings. With `train.workers` = N > 1
the fit runs on N Spark barrier tasks (lakerec/retrieval/distributed.py); reading the
inputs, the export and the evaluation run on the driver either way.

The run records its input tables as MLflow dataset inputs (Delta, with their versions) and
most-popular's metrics on the validation slice; a registered version takes the registry alias
`champion` only if its validation metric beats most-popular's and the champion's
(lakerec.registry.promote_if_better; the run's tags say why or why not).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from lakerec import registry, run_state
from lakerec.config import Config, TrainConf, override
from lakerec.errors import InputDataError, LakeRecError
from lakerec.retrieval import data, evaluate, tracking
from lakerec.retrieval.features import FeatureSpec
from lakerec.retrieval.protocols import warn_if_split_differs
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.train")

MOST_POPULAR = "most_popular/"  # prefix of most-popular's validation metrics in the run (the gate's baseline)

# The checkpoint folders and resume state are shared with the ranker (lakerec/run_state.py).
checkpoint_root = run_state.checkpoint_root
STATE_FILE = run_state.STATE_FILE
_find_resumable = run_state.find_resumable
_write_state = run_state.write_state


# --------------------------------------------------------------------------- resume state

def resumed_config(cfg: Config, root: Path, run_name: str | None, epochs: int | None) -> tuple[Config, str, dict]:
    """The configuration to continue an interrupted run with.

    Args:
        cfg: this invocation's configuration.
        root: where the runs' checkpoint folders are (checkpoint_root of this invocation).
        run_name: the run to continue; None: the newest unfinished run of cfg.database.
        epochs: the new total epoch count, or None to keep the run's.

    Returns:
        (cfg with the run's settings, the run's name, its state).

    Raises:
        LakeRecError: there is no such run to continue.
    """
    run_name, state = _find_resumable(root, cfg.database, run_name)
    # The run's settings, except where it runs (workers, GPU): those come from this invocation.
    stored = {k: v for k, v in state["train"].items()
              if k in {f.name for f in dataclasses.fields(TrainConf)} and k not in ("workers", "gpu")}
    if epochs is not None:
        stored["epochs"] = epochs
    return override(cfg, **{f"train__{k}": v for k, v in stored.items()}), run_name, state


# --------------------------------------------------------------------------- inputs

@dataclasses.dataclass
class TrainingInputs:
    """What the fit, the export and the evaluation need, read before the MLflow run opens.

    Attributes:
        tables: the filter's tables (data.INPUT_TABLES) as DataFrames.
        spec: the towers' columns and vocabulary sizes, measured on the tables.
        n_train, n_test: rows of train_interactions and test_interactions.
        steps: optimizer steps per epoch.
        counts: training positives per item index.
        probabilities: each item index's share of the training rows (logQ correction).
        items: the catalogue by item index (item_id + the candidate tower's columns).
        item_features: the candidate tower's columns of `items`.
        user_ids, user_index: the user vocabulary.
        sample: the per-epoch monitoring sample of test rows (None: no monitoring).
        fit_rows: the rows the model is fitted on: train_interactions less the validation slice.
        n_fit, n_validation: rows of the fit rows and of the validation slice.
        validation: up to `train.validation_rows` validation rows in memory (None: no validation).
        fit_counts: training positives per item index among the fit rows (logQ); `counts`
            (all of train) is what most-popular and the popularity prior use.
    """

    tables: dict
    spec: FeatureSpec
    n_train: int
    n_test: int
    steps: int
    counts: np.ndarray
    probabilities: np.ndarray
    items: dict[str, np.ndarray]
    item_features: dict[str, np.ndarray]
    user_ids: np.ndarray
    user_index: np.ndarray
    sample: dict | None
    fit_rows: object = None
    n_fit: int = 0
    n_validation: int = 0
    validation: dict | None = None
    fit_counts: np.ndarray | None = None


def read_training_inputs(spark, cfg: Config, protocol: str | None) -> TrainingInputs:
    """Read the filter's tables and everything measured on them for one training run.

    Raises:
        MissingTableError: a table is missing (naming the job that writes it).
        InputDataError: train_interactions is empty, or the tables break their contract.
    """
    from lakerec.retrieval.features import build_spec
    from lakerec.retrieval.model import item_probabilities

    tc = cfg.train
    tables = data.read_inputs(spark, cfg)
    spec, counted = build_spec(spark, tc.features, tables)
    n_train, n_test = counted["train_rows"], counted["test_rows"]
    if n_train == 0:
        raise InputDataError(
            f"{cfg.table(T.TRAIN_INTERACTIONS.name)} is empty: nothing to train on. Check the filter's thresholds "
            f"(filter.min_item_count, filter.min_user_count) and rerun `python -m lakerec.jobs.filter`"
        )
    warn_if_split_differs(spark, cfg, protocol)
    train_df = tables[T.TRAIN_INTERACTIONS.name]
    counts = data.item_train_counts(train_df, spec.num_items)
    fit_rows, held_out = data.carve_validation(train_df, tc.validation_fraction, tc.seed)
    n_validation = held_out.count() if tc.validation_fraction > 0 else 0
    n_fit = n_train - n_validation
    if n_fit == 0:
        raise InputDataError("train.validation_fraction left no training rows; lower it")
    fit_counts = data.item_train_counts(fit_rows, spec.num_items) if n_validation else counts
    validation = None
    if n_validation:
        validation = data.read_sample(held_out.orderBy("sample_id"), spec, tc.validation_rows)
        log.info("validation slice: %s of %s train rows (train.validation_fraction %.2f), %s scored per epoch",
                 f"{n_validation:,}", f"{n_train:,}", tc.validation_fraction,
                 f"{len(validation['item_index']) if validation else 0:,}")
    items = data.load_items(spark, cfg, tables[T.ITEM_VOCAB.name], spec)
    user_ids, user_index = data.load_users(spark, cfg, tables[T.USER_VOCAB.name])
    return TrainingInputs(
        tables=tables, spec=spec, n_train=n_train, n_test=n_test,
        steps=max(1, math.ceil(n_fit / tc.batch_size)), counts=counts, probabilities=item_probabilities(fit_counts),
        items=items, item_features={c: items[c] for c in spec.candidate_columns()},
        user_ids=user_ids, user_index=user_index,
        sample=data.read_sample(tables[T.TEST_INTERACTIONS.name], spec, tc.monitor_rows),
        fit_rows=fit_rows, n_fit=n_fit, n_validation=n_validation, validation=validation, fit_counts=fit_counts,
    )


def _run_params(cfg: Config, inputs: TrainingInputs, protocol: str | None) -> dict:
    """The MLflow parameters of a run: the training settings and the sizes of its data."""
    spec = inputs.spec
    tc = dataclasses.asdict(cfg.train)
    params = {f"train.{k}": (list(v) if isinstance(v, tuple) else v) for k, v in tc.items()
              if k not in ("checkpoint_dir", "petastorm_cache")}
    params.update({
        "database": cfg.database, "protocol": protocol or "none",
        "num_users": spec.num_users - 1, "num_items": spec.num_items - 1,
        "train_rows": inputs.n_train, "test_rows": inputs.n_test, "steps_per_epoch": inputs.steps,
        "fit_rows": inputs.n_fit, "validation_rows": inputs.n_validation,
        "history_length": spec.history_length, "intention_length": spec.intention_length,
    })
    return params


# --------------------------------------------------------------------------- the fit and the export

def fit(spark, cfg: Config, inputs: TrainingInputs, ckpt_dir: Path, *, resume: bool, callbacks: Sequence = ()):
    """Fit the model on train_interactions through Petastorm, in the driver or on N barrier tasks.

    Args:
        spark: the session.
        cfg: configuration; `cfg.train` holds the training settings.
        inputs: what read_training_inputs returned.
        ckpt_dir: the run's checkpoint folder.
        resume: continue from the folder's last checkpoint.
        callbacks: extra Keras callbacks, after the checkpoint, monitor and MLflow callbacks.

    Returns:
        (the trained TwoTowerModel, loop.FitResult).
    """
    from lakerec.retrieval import distributed, loop
    from lakerec.retrieval.callbacks import BestEpoch, MlflowEpochMetrics, Monitor, Validation
    from lakerec.retrieval.model import build_model

    tc, spec = cfg.train, inputs.spec
    item_features, sample, probabilities = inputs.item_features, inputs.sample, inputs.probabilities
    popularity, validation = inputs.counts, inputs.validation

    # With workers > 1 these two are pickled into the Spark tasks: they close over the
    # arrays they need, never over `inputs`, whose DataFrames cannot leave the driver.
    def monitor():
        return Monitor(item_features, spec.num_items, sample, spec.query_columns(), max(tc.ks))

    def new_model():
        return build_model(spec, tc, probabilities, popularity)

    def validate():
        return Validation(item_features, spec.num_items, validation, spec.query_columns(), tc.ks)

    train_rows = inputs.fit_rows if inputs.fit_rows is not None else inputs.tables[T.TRAIN_INTERACTIONS.name]
    if tc.workers > 1:  # each barrier task reads one of N even Petastorm shards
        train_rows = distributed.even_shards(train_rows, tc.workers)
    with data.converted(spark, train_rows, cfg, spec.training_columns(), spec.array_lengths()) as feed:
        params = loop.FitParams(epochs=tc.epochs, steps_per_epoch=inputs.steps, batch_size=tc.batch_size,
                                keep_checkpoints=tc.keep_checkpoints)
        if tc.workers > 1:
            # The chief monitors; the driver logs its epochs to MLflow once the workers are done.
            return distributed.fit_on_workers(
                feed,
                new_model,
                params,
                distributed.ShardSettings(tc.batch_size, tc.shuffle_buffer, tc.reader_workers, tc.seed),
                ckpt_dir,
                workers=tc.workers,
                gpu=tc.gpu,
                resume=resume,
                # Early stopping needs the driver to take the best weights: not with workers.
                chief_callbacks=lambda: [monitor(), validate()],
                callbacks=callbacks,
                driver_callbacks=[MlflowEpochMetrics()],
            )
        factory = data.dataset_factory(
            feed, tc.batch_size, shuffle_buffer=tc.shuffle_buffer, workers=tc.reader_workers, seed=tc.seed,
        )
        best = BestEpoch(tc.validation_key, tc.early_stopping_patience) if validation is not None else None
        model, result = loop.fit(factory, new_model, params, checkpoint_dir=ckpt_dir, resume=resume,
                                 callbacks=[monitor(), validate(), *([best] if best else []), MlflowEpochMetrics(),
                                            *callbacks])
        if best is not None and best.best_epoch is not None:
            result.best_epoch, result.best_value, result.stopped_epoch = best.best_epoch, best.best, best.stopped_epoch
            log.info("validation %s: best %.4f at epoch %d%s", tc.validation_key, best.best, best.best_epoch,
                     f", stopped after epoch {best.stopped_epoch}" if best.stopped_epoch else "")
        return model, result


def _log_fit(run_id: str, run_name: str, tc: TrainConf, fit_result) -> dict[str, list[float]]:
    """Log the fit's summary line and totals; return the run's per-epoch metric history."""
    import mlflow

    k = max(tc.ks)
    history = tracking.metric_history(run_id, ["loss", f"monitor/recall_at_{k}", f"monitor/top{k}_accuracy"])
    losses = history.get("mean_loss", [])
    log.info(
        "trained %s: epochs %d..%d of %d, optimizer step %d, %.1fs, %s examples/s, loss %s",
        run_name, fit_result.initial_epoch + 1, fit_result.epochs_done, tc.epochs, fit_result.steps,
        fit_result.seconds, f"{fit_result.examples_per_second:,.0f}",
        " -> ".join(f"{v:.3f}" for v in losses[:1] + losses[-1:]) if losses else "n/a",
    )
    mlflow.log_metrics({"optimizer_steps": fit_result.steps, "train_seconds": fit_result.seconds})
    if fit_result.best_epoch is not None:
        mlflow.log_metrics({"best_epoch": fit_result.best_epoch, f"best_{tc.validation_key}": fit_result.best_value})
    return history


def log_most_popular_validation(inputs: TrainingInputs, tc: TrainConf) -> None:
    """Log most-popular's validation metrics (MOST_POPULAR + `validation/...`) on the model's validation rows.

    The same rows and metrics as the Validation callback, ranked by popularity among the fit
    rows (the validation slice is held out of it): the champion gate's baseline. Nothing
    without a validation slice.
    """
    import mlflow

    from lakerec.retrieval import metrics as M
    from lakerec.retrieval.callbacks import logged_names
    from lakerec.retrieval.catalogue_ranks import popularity_ranks

    rows = inputs.validation
    if rows is None:
        return
    ranks = popularity_ranks(inputs.fit_counts)[rows["item_index"]]
    values = M.all_metrics(rows["query_key"], rows["item_id"], ranks, tc.ks)
    mlflow.log_metrics({MOST_POPULAR + k: v for k, v in logged_names(values).items()})


def export_model(cfg: Config, model, inputs: TrainingInputs) -> tuple[np.ndarray, str | None]:
    """Export the query tower + every vocabulary item's embedding, as served; log and register it.

    Returns:
        (raw item id by item index, the registered model version or None).
    """
    from lakerec.retrieval import export
    from lakerec.retrieval.catalogue_ranks import candidate_matrix

    spec = inputs.spec
    candidates = candidate_matrix(model.candidate_tower, inputs.item_features, spec.num_items)
    item_ids = np.zeros(spec.num_items, dtype=np.int64)
    item_ids[inputs.items["item_index"]] = inputs.items["item_id"]
    module = export.RetrievalModule(model.query_tower, spec, candidates, item_ids, inputs.user_ids, inputs.user_index)
    with tempfile.TemporaryDirectory(prefix="lakerec-export-") as tmp:
        saved = export.save(module, spec, Path(tmp) / "saved_model")
        info = export.log_pyfunc(saved, spec, max(cfg.train.ks), cfg.mlflow.registered_model)
    version = getattr(info, "registered_model_version", None)
    log.info("exported model %s (registered %s version %s)", info.model_uri, cfg.mlflow.registered_model, version)
    return item_ids, version


# --------------------------------------------------------------------------- the stage

def run(
    spark,
    cfg: Config,
    *,
    run_name: str | None = None,
    resume: bool = False,
    epochs: int | None = None,
    protocol: str | None = None,
    callbacks: Sequence = (),
    evaluate_after: bool = True,
    export_after: bool = True,
    nested: bool = False,
) -> dict:
    """Train (or resume) a two-tower model on cfg.database's tables; export, register, evaluate.

    Args:
        spark: the session.
        cfg: configuration; `cfg.train` holds the training settings (already with flags).
        run_name: the run's name (checkpoints under <checkpoint root>/<run_name>); default
            `<features>-d<dim>-<UTC time>`.
        resume: continue the named (or the latest unfinished) run from its last checkpoint,
            with that run's settings; `epochs` may raise its epoch count.
        epochs: with resume, the new total epoch count.
        protocol: the name of the protocol the settings came from (recorded, and checked
            against the split the tables were written with).
        callbacks: extra Keras callbacks (run after each epoch's checkpoint is written); with
            `train.workers` > 1 they run in every worker (pickled into the Spark tasks).
        evaluate_after: evaluate on test_interactions at the end (needs export_after).
        export_after: export and register the model (a sweep's trials do not); a registered version
            becomes the champion only through registry.promote_if_better.
        nested: open the MLflow run as a child of the active run (a sweep's trials).

    Returns:
        {"run_id", "run_name", "fit": FitResult, "model_version", "champion" (registry.Decision, None when
        not registered), "evaluation", "table"}.
    """
    import mlflow
    import tensorflow as tf

    from lakerec.retrieval import distributed, loop, plots
    from lakerec.retrieval.catalogue_ranks import Catalogue

    # This invocation's root, also on resume: the run's stored settings never move its checkpoints.
    root = checkpoint_root(cfg)
    resumed: dict = {}
    if resume:
        cfg, run_name, resumed = resumed_config(cfg, root, run_name, epochs)
        protocol = resumed.get("protocol")
    tc = cfg.train
    distributed.check_cluster(spark, tc, petastorm_cache=tc.petastorm_cache)
    if not run_name:
        run_name = f"{tc.features}-d{tc.embedding_dim}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    ckpt_dir = root / run_name
    if not resume and loop.has_checkpoint(ckpt_dir):
        raise LakeRecError(f"run {run_name!r} already has checkpoints in {ckpt_dir}: pass --resume, or another --run-name")
    tf.keras.utils.set_random_seed(tc.seed)
    inputs = read_training_inputs(spark, cfg, protocol)

    tracking.configure(cfg)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    start_kwargs = {"run_id": resumed["run_id"]} if resume else {"run_name": run_name}
    if nested:
        start_kwargs["nested"] = True
    evaluate_after = evaluate_after and export_after
    with mlflow.start_run(**start_kwargs) as active:
        run_id = active.info.run_id
        state = {"run_id": run_id, "database": cfg.database, "protocol": protocol, "finished": False,
                 "train": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(tc).items()}}
        _write_state(ckpt_dir, state)
        stage = "train" if export_after else "sweep-trial"  # a trial logs no model: evaluate must not pick it
        mlflow.set_tags({**tracking.provenance_tags(cfg), tracking.TAG_STAGE: stage, tracking.TAG_RUN_NAME: run_name})
        versions = tracking.log_table_inputs(spark, cfg)
        train_table = cfg.table(T.TRAIN_INTERACTIONS.name)
        mlflow.set_tag(registry.TAG_SLICE, registry.validation_slice(
            train_table, versions[train_table], fraction=tc.validation_fraction, seed=tc.seed, rows=tc.validation_rows))
        if not resume:
            mlflow.log_params(_run_params(cfg, inputs, protocol))
        log_most_popular_validation(inputs, tc)
        log.info("training %s on %s: %s rows, %d users, %d items, features=%s, %d epochs x %d steps of %d",
                 run_name, cfg.database, f"{inputs.n_train:,}", inputs.spec.num_users - 1,
                 inputs.spec.num_items - 1, tc.features, tc.epochs, inputs.steps, tc.batch_size)

        model, fit_result = fit(spark, cfg, inputs, ckpt_dir, resume=resume, callbacks=callbacks)
        history = _log_fit(run_id, run_name, tc, fit_result)
        version = decision = None
        if export_after:
            item_ids, version = export_model(cfg, model, inputs)
        if version is not None:
            decision = registry.promote_if_better(cfg.mlflow.registered_model, version, run_id,
                                                  metric=tc.validation_key, baseline="most-popular",
                                                  baseline_metric=MOST_POPULAR + tc.validation_key)
        with tempfile.TemporaryDirectory(prefix="lakerec-plots-") as tmp:
            mlflow.log_artifact(str(plots.training_curves(history, Path(tmp) / "training_curves.png")), "plots")
        result = text = None
        if evaluate_after:
            result, text = evaluate.run(spark, cfg, run_id, catalogue=Catalogue(item_ids, inputs.counts),
                                        tables=inputs.tables)
        run_state.finish(ckpt_dir, state, keep_checkpoints=tc.keep_finished_checkpoints)
    return {"run_id": run_id, "run_name": run_name, "fit": fit_result, "model_version": version,
            "champion": decision, "evaluation": result, "table": text}
