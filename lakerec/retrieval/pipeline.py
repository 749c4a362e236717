"""The bodies of `jobs.train`, `jobs.evaluate` and `jobs.recommend`.

    train(spark, cfg)              Petastorm -> fit (checkpoint per epoch) -> export ->
                                   MLflow pyfunc (registered) -> evaluate -> table
    evaluate_run(spark, cfg, id)   the run's exported model on test_interactions vs baselines
    recommend(spark, cfg, k, id)   top-K per user -> Delta table `recommendations`
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from lakerec.config import Config, TrainConf, override
from lakerec.errors import ConfigError, InputDataError, LakeRecError
from lakerec.tables import read_table, write_table

log = logging.getLogger("lakerec.train")

INPUT_TABLES = ("user_vocab", "item_vocab", "feature_vocab", "train_interactions", "test_interactions")
UPSTREAM_JOB = "filter"
STATE_FILE = "lakerec_run.json"
SPLIT_PROPERTY = "lakerec.split"

# The TFRS basic-retrieval tutorial: ids only, plain in-batch softmax.
PROTOCOLS: dict[str, dict] = {
    "tfrs-tutorial": dict(
        features="ids", embedding_dim=32, optimizer="adagrad", learning_rate=0.1, batch_size=8192, epochs=3,
        logq_correction=False, remove_accidental_hits=False, temperature=1.0,
    ),
}
TUTORIAL_SPLIT = "random:0.2:42"  # what jobs.movielens records for its default split


def apply_protocol(cfg: Config, protocol: str | None) -> Config:
    """cfg with a named protocol's training settings (flags applied afterwards still win)."""
    if not protocol:
        return cfg
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return override(cfg, **{f"train__{k}": v for k, v in PROTOCOLS[protocol].items()})


def validate_train_conf(tc: TrainConf) -> None:
    """Refuse settings that cannot train, with the flag or key to fix."""
    from lakerec.retrieval.features import FEATURE_SETS

    problems = []
    if tc.features not in FEATURE_SETS:
        problems.append(f"--features must be one of {', '.join(FEATURE_SETS)} (got {tc.features!r})")
    for name in ("epochs", "batch_size", "embedding_dim", "eval_batch_size", "reader_workers", "workers"):
        if getattr(tc, name) < 1:
            problems.append(f"train.{name} (--{name.replace('_', '-')}) must be at least 1 (got {getattr(tc, name)})")
    if not tc.temperature > 0:
        problems.append(f"train.temperature must be > 0 (got {tc.temperature})")
    if not tc.learning_rate > 0:
        problems.append(f"train.learning_rate must be > 0 (got {tc.learning_rate})")
    if tc.optimizer.lower() not in ("adagrad", "adam", "sgd"):
        problems.append(f"train.optimizer must be adagrad, adam or sgd (got {tc.optimizer!r})")
    if not tc.ks or any(k < 1 for k in tc.ks):
        problems.append(f"train.ks must be positive cut-offs (got {list(tc.ks)})")
    if any(u < 1 for u in tc.hidden_units):
        problems.append(f"train.hidden_units must be positive (got {list(tc.hidden_units)})")
    if tc.monitor_rows < 0 or tc.shuffle_buffer < 0:
        problems.append("train.monitor_rows and train.shuffle_buffer must be >= 0")
    if problems:
        raise ConfigError("; ".join(problems))


# --------------------------------------------------------------------------- inputs

def read_inputs(spark, cfg: Config, names: Sequence[str] = INPUT_TABLES) -> dict:
    """The filter's tables as DataFrames; a missing one names the job that writes it."""
    return {n: read_table(spark, cfg.table(n), job=UPSTREAM_JOB) for n in names}


def item_train_counts(train_df, num_items: int) -> np.ndarray:
    """Training positives per item index ([num_items]; index 0 = OOV rows, if any)."""
    counts = np.zeros(num_items, dtype=np.int64)
    for row in train_df.groupBy("item_index").count().collect():
        idx = int(row["item_index"])
        if 0 <= idx < num_items:
            counts[idx] = int(row["count"])
    return counts


def load_items(spark, cfg: Config, item_vocab, spec) -> dict[str, np.ndarray]:
    """The catalogue (item_id + the candidate tower's columns), every vocabulary item."""
    from lakerec.retrieval import data

    cols = ["item_id"] + spec.candidate_columns()
    with data.converted(spark, item_vocab, cfg, cols, spec.array_lengths()) as feed:
        items = data.read_all(feed)
    order = np.argsort(items["item_index"], kind="stable")
    items = {k: v[order] for k, v in items.items()}
    if not np.array_equal(items["item_index"], np.arange(1, len(order) + 1)):
        raise InputDataError(
            f"{cfg.table('item_vocab')}: item_index must run 1..N without gaps or repeats; "
            "rerun `python -m jobs.filter`"
        )
    return items


def load_users(spark, cfg: Config, user_vocab) -> tuple[np.ndarray, np.ndarray]:
    from lakerec.retrieval import data

    with data.converted(spark, user_vocab, cfg, ["user_id", "user_index"], {}) as feed:
        users = data.read_all(feed)
    return users["user_id"], users["user_index"]


def query_key_column():
    """One key per query: a user in one context (same user id and user features)."""
    from pyspark.sql import functions as F

    from lakerec.retrieval.features import USER_MULTI, USER_SINGLE, ids_column, index_column, weights_column

    cols = ["user_id"] + [index_column(n) for n in USER_SINGLE]
    for n in USER_MULTI:
        cols += [ids_column(n), weights_column(n)]
    return F.xxhash64(*cols).alias("query_key")


def table_property(spark, table: str, key: str) -> str | None:
    for row in spark.sql(f"SHOW TBLPROPERTIES {table}").collect():
        if row["key"] == key:
            return row["value"]
    return None


# --------------------------------------------------------------------------- mlflow helpers

@contextlib.contextmanager
def _in_run(run_id: str):
    """Log into run_id: the active run if it is that one, else reopen it for the block."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield active
    else:
        with mlflow.start_run(run_id=run_id) as run:
            yield run


def _metric_history(run_id: str, names: Sequence[str]) -> dict[str, list[float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    out = {}
    for n in names:
        hist = sorted(client.get_metric_history(run_id, n), key=lambda m: m.step)
        if hist:
            out["mean_loss" if n == "loss" else n] = [m.value for m in hist]
    return out


# --------------------------------------------------------------------------- training

def build_model(spec, tc: TrainConf, probabilities: np.ndarray | None):
    """A compiled TwoTowerModel for a spec and the training settings."""
    from lakerec.retrieval.model import TwoTowerModel, make_optimizer
    from lakerec.retrieval.towers import build_towers

    query, candidate = build_towers(spec, tc.embedding_dim, tc.hidden_units)
    model = TwoTowerModel(
        query, candidate,
        item_probabilities=probabilities if tc.logq_correction else None,
        temperature=tc.temperature,
        remove_accidental_hits=tc.remove_accidental_hits,
    )
    model.compile(optimizer=make_optimizer(tc.optimizer, tc.learning_rate))
    return model


def checkpoint_root(cfg: Config) -> Path:
    return Path(cfg.train.checkpoint_dir) if cfg.train.checkpoint_dir else cfg.lake_path / "checkpoints"


def _find_resumable(root: Path, database: str, run_name: str | None) -> tuple[str, dict]:
    if run_name:
        state_path = root / run_name / STATE_FILE
        if not state_path.is_file():
            raise LakeRecError(f"--resume: no run named {run_name!r} under {root}")
        return run_name, json.loads(state_path.read_text())
    candidates = []
    for p in root.glob(f"*/{STATE_FILE}") if root.is_dir() else []:
        state = json.loads(p.read_text())
        if not state.get("finished") and state.get("database") == database:
            candidates.append((p.stat().st_mtime, p.parent.name, state))
    if not candidates:
        raise LakeRecError(f"--resume: no unfinished run for database {database} under {root}; start one without --resume")
    _, name, state = max(candidates, key=lambda c: c[0])
    return name, state


def _read_sample(test_df, spec, rows: int) -> dict | None:
    """Up to `rows` test rows (warm items) in memory, for per-epoch monitoring.

    A small bounded sample, so it is collected directly rather than through Petastorm.
    """
    from pyspark.sql import functions as F

    if rows <= 0:
        return None
    from lakerec.retrieval import data

    cols = ["item_id"] + spec.query_columns() + ["item_index"]
    warm = test_df.where(F.col("item_index") > 0).select("*", query_key_column())
    picked = data.fill_missing(warm, ["query_key"] + cols, spec.array_lengths()).limit(rows).collect()
    if not picked:
        return None
    lengths = spec.array_lengths()
    out = {"query_key": np.array([r["query_key"] for r in picked], dtype=np.int64)}
    for c in cols:
        values = [r[c] for r in picked]
        if c in lengths:
            out[c] = np.array(values, dtype=np.float32 if c.endswith("_weights") else np.int32).reshape(-1, lengths[c])
        else:
            out[c] = np.array(values, dtype=np.int64 if c == "item_id" else np.int32)
    return out


def _run_params(cfg: Config, spec, n_train: int, n_test: int, steps: int, protocol: str | None) -> dict:
    tc = dataclasses.asdict(cfg.train)
    params = {f"train.{k}": (list(v) if isinstance(v, tuple) else v) for k, v in tc.items()
              if k not in ("checkpoint_dir", "petastorm_cache")}
    params.update({
        "database": cfg.database, "protocol": protocol or "none",
        "num_users": spec.num_users - 1, "num_items": spec.num_items - 1,
        "train_rows": n_train, "test_rows": n_test, "steps_per_epoch": steps,
        "history_length": spec.history_length, "intention_length": spec.intention_length,
    })
    return params


def train(
    spark,
    cfg: Config,
    *,
    run_name: str | None = None,
    resume: bool = False,
    epochs: int | None = None,
    protocol: str | None = None,
    callbacks: Sequence = (),
    evaluate_after: bool = True,
) -> dict:
    """Train (or resume) a two-tower model on cfg.database's tables; export, register, evaluate.

    With `train.workers` = N > 1 the fit runs on N Spark barrier tasks, each reading one
    shard (lakerec/retrieval/distributed.py); the rest runs on the driver as with one worker.

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
        evaluate_after: evaluate on test_interactions at the end.

    Returns:
        {"run_id", "run_name", "fit": FitResult, "model_version", "evaluation", "table"}.
    """
    import mlflow
    import tensorflow as tf

    from lakerec.retrieval import data, distributed, export, loop, plots, tracking
    from lakerec.retrieval.callbacks import MlflowEpochMetrics, Monitor
    from lakerec.retrieval.catalogue_ranks import Catalogue, candidate_matrix
    from lakerec.retrieval.features import build_spec
    from lakerec.retrieval.model import item_probabilities

    root = checkpoint_root(cfg)
    state: dict = {}
    if resume:
        run_name, state = _find_resumable(root, cfg.database, run_name)
        # The run's settings, except where it runs (workers, GPU): those come from this invocation.
        stored = {k: v for k, v in state["train"].items()
                  if k in {f.name for f in dataclasses.fields(TrainConf)} and k not in ("workers", "gpu")}
        if epochs is not None:
            stored["epochs"] = epochs
        cfg = override(cfg, **{f"train__{k}": v for k, v in stored.items()})
        protocol = state.get("protocol")
    tc = cfg.train
    validate_train_conf(tc)
    distributed.check_cluster(spark, tc)
    if not run_name:
        run_name = f"{tc.features}-d{tc.embedding_dim}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    ckpt_dir = root / run_name
    if not resume and loop.has_checkpoint(ckpt_dir):
        raise LakeRecError(f"run {run_name!r} already has checkpoints in {ckpt_dir}: pass --resume, or another --run-name")
    tf.keras.utils.set_random_seed(tc.seed)

    tables = read_inputs(spark, cfg)
    spec, counted = build_spec(spark, tc.features, tables)
    n_train, n_test = counted["train_rows"], counted["test_rows"]
    if n_train == 0:
        raise InputDataError(
            f"{cfg.table('train_interactions')} is empty: nothing to train on. Check the filter's thresholds "
            f"(filter.min_item_count, filter.min_user_count) and rerun `python -m jobs.filter`"
        )
    if protocol == "tfrs-tutorial":
        split = table_property(spark, cfg.table("train_interactions"), SPLIT_PROPERTY)
        if split != TUTORIAL_SPLIT:
            log.warning("protocol tfrs-tutorial expects the random 80/20 split with seed 42 "
                        "(python -m jobs.movielens --split random); these tables have split=%s", split)
    counts = item_train_counts(tables["train_interactions"], spec.num_items)
    probabilities = item_probabilities(counts)
    items = load_items(spark, cfg, tables["item_vocab"], spec)
    item_features = {c: items[c] for c in spec.candidate_columns()}
    user_ids, user_index = load_users(spark, cfg, tables["user_vocab"])
    sample = _read_sample(tables["test_interactions"], spec, tc.monitor_rows)
    steps = max(1, math.ceil(n_train / tc.batch_size))

    tracking.configure(cfg)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    start_kwargs = {"run_id": state["run_id"]} if resume else {"run_name": run_name}
    with mlflow.start_run(**start_kwargs) as run:
        run_id = run.info.run_id
        state = {"run_id": run_id, "database": cfg.database, "protocol": protocol, "finished": False,
                 "train": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(tc).items()}}
        (ckpt_dir / STATE_FILE).write_text(json.dumps(state, indent=1))
        mlflow.set_tags({**tracking.provenance_tags(spark, cfg), tracking.TAG_STAGE: "train",
                         tracking.TAG_RUN_NAME: run_name})
        if not resume:
            mlflow.log_params(_run_params(cfg, spec, n_train, n_test, steps, protocol))
        log.info("training %s on %s: %s rows, %d users, %d items, features=%s, %d epochs x %d steps of %d",
                 run_name, cfg.database, f"{n_train:,}", spec.num_users - 1, spec.num_items - 1,
                 tc.features, tc.epochs, steps, tc.batch_size)

        train_rows = tables["train_interactions"]
        if tc.workers > 1:  # each barrier task reads one of N even Petastorm shards
            train_rows = distributed.even_shards(train_rows, tc.workers)
        with data.converted(spark, train_rows, cfg, spec.training_columns(),
                            spec.array_lengths()) as feed:
            params = loop.FitParams(epochs=tc.epochs, steps_per_epoch=steps, batch_size=tc.batch_size)
            if tc.workers > 1:
                # The chief monitors; the driver logs its epochs to MLflow once the workers are done.
                model, fit_result = distributed.fit_on_workers(
                    feed,
                    lambda: build_model(spec, tc, probabilities),
                    params,
                    distributed.ShardSettings(tc.batch_size, tc.shuffle_buffer, tc.reader_workers, tc.seed),
                    ckpt_dir,
                    workers=tc.workers,
                    gpu=tc.gpu,
                    resume=resume,
                    chief_callbacks=lambda: [
                        Monitor(item_features, spec.num_items, sample, spec.query_columns(), max(tc.ks))],
                    callbacks=callbacks,
                    driver_callbacks=[MlflowEpochMetrics()],
                )
            else:
                factory = data.dataset_factory(
                    feed, tc.batch_size, shuffle_buffer=tc.shuffle_buffer, workers=tc.reader_workers, seed=tc.seed,
                )
                model, fit_result = loop.fit(
                    factory,
                    lambda: build_model(spec, tc, probabilities),
                    params,
                    checkpoint_dir=ckpt_dir,
                    resume=resume,
                    callbacks=[
                        Monitor(item_features, spec.num_items, sample, spec.query_columns(), max(tc.ks)),
                        MlflowEpochMetrics(),
                        *callbacks,
                    ],
                )
        k = max(tc.ks)
        history = _metric_history(run_id, ["loss", f"monitor/recall_at_{k}", f"monitor/top{k}_accuracy"])
        losses = history.get("mean_loss", [])
        log.info(
            "trained %s: epochs %d..%d of %d, optimizer step %d, %.1fs, %s examples/s, loss %s",
            run_name, fit_result.initial_epoch + 1, fit_result.epochs_done, tc.epochs, fit_result.steps,
            fit_result.seconds, f"{fit_result.examples_per_second:,.0f}",
            " -> ".join(f"{v:.3f}" for v in losses[:1] + losses[-1:]) if losses else "n/a",
        )
        mlflow.log_metrics({"optimizer_steps": fit_result.steps, "train_seconds": fit_result.seconds})

        # Export: the query tower + every vocabulary item's embedding, as served.
        candidates = candidate_matrix(model.candidate_tower, item_features, spec.num_items)
        item_ids = np.zeros(spec.num_items, dtype=np.int64)
        item_ids[items["item_index"]] = items["item_id"]
        module = export.RetrievalModule(model.query_tower, spec, candidates, item_ids, user_ids, user_index)
        with tempfile.TemporaryDirectory(prefix="lakerec-export-") as tmp:
            saved = export.save(module, spec, Path(tmp) / "saved_model")
            info = export.log_pyfunc(saved, spec, max(tc.ks), cfg.mlflow.registered_model)
        version = getattr(info, "registered_model_version", None)
        log.info("exported model %s (registered %s version %s)", info.model_uri, cfg.mlflow.registered_model, version)

        with tempfile.TemporaryDirectory(prefix="lakerec-plots-") as tmp:
            mlflow.log_artifact(str(plots.training_curves(history, Path(tmp) / "training_curves.png")), "plots")
        result = text = None
        if evaluate_after:
            result, text = evaluate_run(spark, cfg, run_id, catalogue=Catalogue(item_ids, counts), tables=tables)
        state["finished"] = True
        (ckpt_dir / STATE_FILE).write_text(json.dumps(state, indent=1))
    return {"run_id": run_id, "run_name": run_name, "fit": fit_result, "model_version": version,
            "evaluation": result, "table": text}


# --------------------------------------------------------------------------- evaluation

def evaluate_run(spark, cfg: Config, run_id: str | None = None, *, catalogue=None, tables: dict | None = None,
                 log_to_mlflow: bool = True) -> tuple[dict, str]:
    """Evaluate a training run's exported model on test_interactions, against the baselines.

    Args:
        spark: the session.
        cfg: configuration (database, `train.ks`, `train.seed`, MLflow store).
        run_id: the training run; default the newest finished one for cfg.database.
        catalogue: item ids and training counts (computed from the tables if None).
        tables: the input DataFrames, if already read.
        log_to_mlflow: log the metrics, the table and the plots into the run.

    Returns:
        (the evaluation dict, the table as text).
    """
    import mlflow

    from lakerec.retrieval import data, export, plots, tracking
    from lakerec.retrieval.catalogue_ranks import Catalogue, collect_ranks, evaluate, flat_metrics, format_table

    tracking.configure(cfg)
    run_id = run_id or tracking.latest_training_run(cfg)
    module, spec = export.load_from_run(run_id)
    tables = tables or read_inputs(spark, cfg, ("train_interactions", "test_interactions"))
    item_ids = module.item_ids.numpy()
    if catalogue is None:
        catalogue = Catalogue(item_ids, item_train_counts(tables["train_interactions"], len(item_ids)))
    test = tables["test_interactions"]
    if test.limit(1).count() == 0:
        raise InputDataError(f"{cfg.table('test_interactions')} is empty: nothing to evaluate")
    keys = ["query_key", "item_id", "item_index", "is_cold_user", "is_cold_item"]
    cols = spec.serving_columns()
    wanted = list(dict.fromkeys(keys + cols))
    # A fixed row order (sorted, so Petastorm's files and row groups come in key order):
    # batch composition can move float round-off, and reruns must give the same numbers.
    df = test.select("*", query_key_column()).orderBy("query_key", "item_id", "item_index")
    start = time.monotonic()
    with data.converted(spark, df, cfg, wanted, spec.array_lengths()) as feed:
        # One reader thread: the same batches in the same order every time.
        factory = data.dataset_factory(feed, cfg.train.eval_batch_size, num_epochs=1, shuffle=False, workers=1)
        with factory() as ds:
            rows = collect_ranks(module.query_embeddings, cols, module.candidates.numpy(), ds)
    result = evaluate(rows, catalogue, cfg.train.ks, cfg.train.seed)
    result["seconds"] = time.monotonic() - start
    text = format_table(result)
    logging.getLogger("lakerec.evaluate").info(
        "evaluated run %s on %s rows in %.1fs", run_id, f"{result['rows']['all']:,}", result["seconds"])
    if log_to_mlflow:
        import pandas as pd

        table_rows = [
            {"segment": seg, "method": method, "rows": result["rows"][seg], **values}
            for seg, by_method in result["metrics"].items() for method, values in by_method.items()
        ]
        with _in_run(run_id):
            mlflow.log_metrics(flat_metrics(result))
            mlflow.log_text(text, "evaluation/evaluation.txt")
            mlflow.log_dict(result, "evaluation/evaluation.json")
            mlflow.log_table(pd.DataFrame(table_rows), "evaluation/evaluation_table.json")
            with tempfile.TemporaryDirectory(prefix="lakerec-plots-") as tmp:
                mlflow.log_artifact(str(plots.recall_curve(result["curves"], Path(tmp) / "recall_at_k.png")), "plots")
                mlflow.log_artifact(
                    str(plots.popularity_long_tail(catalogue.train_counts, Path(tmp) / "item_popularity.png")),
                    "plots")
    return result, text


# --------------------------------------------------------------------------- recommendations

def users_frame(tables: dict, spec):
    """One row per vocabulary user with the serving columns: the user's latest context.

    The latest context is the user's newest row (test before train, then highest
    sample_id); a user without positive rows gets the missing value (0) everywhere.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cols = spec.serving_columns()
    users = tables["user_vocab"].select("user_id")
    feature_cols = [c for c in cols if c != "user_id"]
    if not feature_cols:
        return users
    both = (tables["test_interactions"].select("user_id", "sample_id", *feature_cols).withColumn("_src", F.lit(1))
            .unionByName(tables["train_interactions"].select("user_id", "sample_id", *feature_cols)
                         .withColumn("_src", F.lit(0))))
    w = Window.partitionBy("user_id").orderBy(F.col("_src").desc(), F.col("sample_id").desc())
    latest = both.withColumn("_n", F.row_number().over(w)).where("_n = 1").drop("_n", "_src", "sample_id")
    out = users.join(latest, "user_id", "left")
    lengths = spec.array_lengths()
    fills = []
    for c in cols:
        if c == "user_id":
            fills.append(F.col(c))
        elif c in lengths:
            zero = F.lit(0.0).cast("float") if c.endswith("_weights") else F.lit(0).cast("int")
            fills.append(F.coalesce(F.col(c), F.array_repeat(zero, lengths[c])).alias(c))
        else:
            fills.append(F.coalesce(F.col(c), F.lit(0).cast("int")).alias(c))
    return out.select(*fills)


def recommend(spark, cfg: Config, k: int = 100, run_id: str | None = None) -> dict:
    """Top-k items for every vocabulary user, from a run's exported model, into `recommendations`.

    Returns:
        {"run_id", "users", "rows", "table", "version", "seconds"}.
    """
    import pandas as pd
    import tensorflow as tf
    from mlflow.tracking import MlflowClient

    from lakerec.tables import table_version
    from lakerec.retrieval import data, export, tracking

    if k < 1:
        raise ConfigError(f"--k must be at least 1 (got {k})")
    start = time.monotonic()
    tracking.configure(cfg)
    run_id = run_id or tracking.latest_training_run(cfg)
    module, spec = export.load_from_run(run_id)
    tables = read_inputs(spark, cfg, ("user_vocab", "train_interactions", "test_interactions"))
    users = users_frame(tables, spec)
    cols = spec.serving_columns()
    parts = []
    with data.converted(spark, users, cfg, cols, spec.array_lengths()) as feed:
        factory = data.dataset_factory(feed, cfg.train.eval_batch_size, num_epochs=1, shuffle=False,
                                       workers=cfg.train.reader_workers)
        with factory() as ds:
            for batch in ds:
                out = module.recommend(batch, tf.constant(k, tf.int32))
                ids, scores = out["item_ids"].numpy(), out["scores"].numpy()
                kk = ids.shape[1]
                parts.append(pd.DataFrame({
                    "user_id": np.repeat(batch["user_id"].numpy(), kk),
                    "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), len(ids)),
                    "item_id": ids.reshape(-1).astype(np.int64),
                    "score": scores.reshape(-1).astype(np.float32),
                }))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"user_id": pd.Series(dtype="int64"), "rank": pd.Series(dtype="int32"),
         "item_id": pd.Series(dtype="int64"), "score": pd.Series(dtype="float32")})
    from pyspark.sql import functions as F

    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    recs = spark.createDataFrame(frame, "user_id bigint, rank int, item_id bigint, score float")
    name = cfg.table("recommendations")
    write_table(recs.withColumn("run_id", F.lit(run_id)), name)
    version = table_version(spark, name)
    MlflowClient().set_tag(run_id, "lakerec.recommendations", f"{name}@v{version} k={k}")
    summary = {"run_id": run_id, "users": int(frame["user_id"].nunique()), "rows": len(frame), "table": name,
               "version": version, "seconds": time.monotonic() - start}
    logging.getLogger("lakerec.recommend").info(
        "wrote %s rows (%s users x top %d) to %s (version %d) from run %s in %.1fs",
        f"{summary['rows']:,}", f"{summary['users']:,}", k, name, version, run_id, summary["seconds"])
    return summary
