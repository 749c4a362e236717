"""The recommend stage: top-K items for every vocabulary user, into the Delta table `recommendations`.

    summary = run(spark, cfg, k=100, run_id=None)   # run_id default: the newest finished training run

The exported model of the run (the query tower on each user's latest context and the
exact index over all items, as served) scores the users batch by batch. Columns:
user_id, rank (1 = best), item_id, score, run_id.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from lakerec.config import Config
from lakerec.errors import ConfigError
from lakerec.retrieval import data, tracking
from lakerec.tables import write_table
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.recommend")

SCHEMA = "user_id bigint, rank int, item_id bigint, score float"


def run(spark, cfg: Config, k: int = 100, run_id: str | None = None) -> dict:
    """Top-k items for every vocabulary user, from a run's exported model, into `recommendations`.

    Args:
        spark: the session.
        cfg: configuration (database, `train.eval_batch_size`, `train.reader_workers`, MLflow store).
        k: items per user.
        run_id: the training run; default the newest finished one for cfg.database.

    Returns:
        {"run_id", "users", "rows", "table", "version", "seconds"}.

    Raises:
        ConfigError: k is below 1.
    """
    from mlflow.tracking import MlflowClient
    from pyspark.sql import functions as F

    from lakerec.retrieval import export
    from lakerec.tables import table_version

    if k < 1:
        raise ConfigError(f"--k must be at least 1 (got {k})")
    start = time.monotonic()
    tracking.configure(cfg)
    run_id = run_id or tracking.latest_training_run(cfg)
    module, spec = export.load_from_run(run_id)
    tables = data.read_inputs(spark, cfg, (T.USER_VOCAB.name, T.TRAIN_INTERACTIONS.name, T.TEST_INTERACTIONS.name))
    frame = top_k_frame(spark, cfg, module, spec, data.users_frame(tables, spec), k)
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    recs = spark.createDataFrame(frame, SCHEMA)
    name = cfg.table(T.RECOMMENDATIONS.name)
    write_table(recs.withColumn("run_id", F.lit(run_id)), name)
    version = table_version(spark, name)
    MlflowClient().set_tag(run_id, "lakerec.recommendations", f"{name}@v{version} k={k}")
    summary = {"run_id": run_id, "users": int(frame["user_id"].nunique()), "rows": len(frame), "table": name,
               "version": version, "seconds": time.monotonic() - start}
    log.info("wrote %s rows (%s users x top %d) to %s (version %d) from run %s in %.1fs",
             f"{summary['rows']:,}", f"{summary['users']:,}", k, name, version, run_id, summary["seconds"])
    return summary


def top_k_frame(spark, cfg: Config, module, spec, users, k: int):
    """The exported module's top-k for every row of `users`, as a pandas frame in SCHEMA's columns.

    Args:
        spark: the session.
        cfg: configuration (`train.eval_batch_size`, `train.reader_workers`, the Petastorm cache).
        module: the loaded RetrievalModule.
        spec: its FeatureSpec.
        users: one row per user with the serving columns (data.users_frame).
        k: items per user (fewer where the catalogue is smaller).
    """
    import pandas as pd
    import tensorflow as tf

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
    if parts:
        return pd.concat(parts, ignore_index=True)
    return pd.DataFrame({"user_id": pd.Series(dtype="int64"), "rank": pd.Series(dtype="int32"),
                         "item_id": pd.Series(dtype="int64"), "score": pd.Series(dtype="float32")})
