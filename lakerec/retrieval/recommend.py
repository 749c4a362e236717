"""The recommend stage: top-K items for every vocabulary user, into the Delta table `recommendations`.

    summary = run(spark, cfg, k=100)   # the champion two-tower (and ranker) of the registry

The exported two-tower (the champion of mlflow.registered_model, or mlflow.model_version, or a
run's: lakerec.retrieval.export.load_for; the query tower on each user's latest context and the
exact index over all items, as served) scores the users in Spark, batch by batch in each Python
worker (top_k: mapInPandas, nothing collected to the driver). Columns:
user_id, rank (1 = best), item_id, score, p_click, p_conversion, run_id, ranker.

Two stages where a ranker is champion (of mlflow.registered_ranker, or mlflow.ranker_version;
`rank.rerank_recommendations`, on by default): the two-tower retrieves max(k, rank.candidates)
items per user, the ranker re-orders them by rank.rerank_by and the top k are kept with the ranker's p_click and
p_conversion (lakerec.ranking.rerank). Without one, the two-tower's order, and the two
probability columns are null. With `evaluate.exclude_seen` (auto: on
for MovieLens tables; lakerec.retrieval.evaluate.exclude_seen) a user's training items are
never recommended to them: they score -inf before the top k is taken, so a user who has
seen all but j < k items gets j rows. The run's MLflow tag `lakerec.recommendations` says
which.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from lakerec.config import Config
from lakerec.errors import ConfigError
from lakerec.retrieval import data, evaluate, tracking
from lakerec.tables import write_table
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.recommend")

SCHEMA = "user_id bigint, rank int, item_id bigint, score float"


def run(spark, cfg: Config, k: int = 100, run_id: str | None = None, ranker_uri: str | None = None,
        recommender: bool = False) -> dict:
    """Top-k items for every vocabulary user, from a run's exported model, into `recommendations`.

    Args:
        spark: the session.
        cfg: configuration (database, `train.eval_batch_size`, `train.reader_workers`, MLflow store).
        k: items per user.
        run_id: the training run; default the registry's (export.load_for).
        ranker_uri: the ranker that re-orders the candidates; default `default_ranker`.
        recommender: also log (and register, as mlflow.registered_recommender) the model that
            serves the same answers per request (lakerec.serving.export).

    Returns:
        {"run_id", "ranker", "users", "rows", "table", "version", "exclude_seen", "seconds"},
        and "recommender" (lakerec.serving.export.run's summary) when asked.

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
    # Both models are the registry's champions unless a flag chose one: then so is the recommender.
    champions = run_id is None and ranker_uri is None and cfg.mlflow.model_version is None \
        and cfg.mlflow.ranker_version is None
    _, spec, run_id = export.load_for(cfg, run_id)  # the workers load the run's model themselves
    tables = data.read_inputs(spark, cfg, (T.USER_VOCAB.name, T.TRAIN_INTERACTIONS.name, T.TEST_INTERACTIONS.name))
    excluding = evaluate.exclude_seen(spark, cfg, evaluate.run_protocol(run_id))
    seen = tables[T.TRAIN_INTERACTIONS.name].select("user_id", "item_index") if excluding else None
    ranker_uri = ranker_uri or default_ranker(cfg)
    depth = max(k, cfg.rank.candidates) if ranker_uri else k
    users = data.users_frame(tables, spec)
    recs = top_k(cfg, run_id, spec, users, depth, seen=seen)
    if ranker_uri:
        from lakerec.ranking.rerank import rerank

        recs = rerank(spark, cfg, recs, ranker_uri, k)
    else:
        recs = (recs.withColumn("p_click", F.lit(None).cast("float"))
                .withColumn("p_conversion", F.lit(None).cast("float")))
    name = cfg.table(T.RECOMMENDATIONS.name)
    write_table(recs.withColumn("run_id", F.lit(run_id)).withColumn("ranker", F.lit(ranker_uri).cast("string"))
                .select(*T.RECOMMENDATIONS.column_names), name)
    version = table_version(spark, name)
    MlflowClient().set_tag(run_id, "lakerec.recommendations",
                           f"{name}@v{version} k={k} exclude_seen={str(excluding).lower()} ranker={ranker_uri or 'none'}")
    counts = spark.table(name).agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users")).first()
    summary = {"run_id": run_id, "ranker": ranker_uri, "users": int(counts["users"]), "rows": int(counts["rows"]),
               "table": name, "version": version, "exclude_seen": excluding}
    if recommender:
        from lakerec.serving import export as serving_export

        summary["recommender"] = serving_export.run(spark, cfg, run_id=run_id, ranker_uri=ranker_uri, users=users,
                                                    k=k, exclude_seen=excluding, champion=champions)
    summary["seconds"] = time.monotonic() - start
    log.info("wrote %s rows (%s users x top %d, seen items %s, %s) to %s (version %d) from run %s in %.1fs",
             f"{summary['rows']:,}", f"{summary['users']:,}", k, "excluded" if excluding else "kept",
             f"re-ranked by {ranker_uri}" if ranker_uri else "two-tower order", name, version, run_id,
             summary["seconds"])
    return summary


def default_ranker(cfg: Config) -> str | None:
    """The ranker that re-ranks the recommendations: `models:/<name>/<version>`, or None for none.

    None when rank.rerank_recommendations is off; else the version mlflow.ranker_version names
    (which must exist), else the champion of mlflow.registered_ranker if there is one for
    cfg.database (a ranker of another database of the same store, say Ali-CCP beside
    MovieLens, which has no impressions, is not used).
    """
    from lakerec import registry

    if not cfg.rank.rerank_recommendations:
        return None
    found = registry.resolve(cfg, registry.RANKER, required=False)
    return found.uri if found else None


def exact_top_k(queries, candidates, item_ids, k: int, rows=None, columns=None) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, scores) [B, k] of the best q . c over every candidate, the (rows, columns) cells at -inf.

    Args:
        queries: [B, D] query embeddings.
        candidates: [N, D] item embeddings.
        item_ids: [N] the item id of each candidate row.
        k: items per query (at most N).
        rows, columns: cells of the [B, N] score matrix never returned (a user's seen items).
    """
    import tensorflow as tf

    scores = tf.matmul(queries, candidates, transpose_b=True)
    if rows is not None and len(rows):
        cells = tf.constant(np.stack([rows, columns], axis=1), tf.int64)
        scores = tf.tensor_scatter_nd_update(scores, cells, tf.fill([len(rows)], float("-inf")))
    top_scores, top = tf.math.top_k(scores, k=min(k, int(scores.shape[1])))
    return tf.gather(item_ids, top).numpy(), top_scores.numpy()


def top_k(cfg: Config, run_id: str, spec, users, k: int, seen=None):
    """The run's two-tower top-k for every row of `users`, as a Spark DataFrame in SCHEMA's columns.

    Scored in Spark (mapInPandas: each Python worker loads the exported model once, users go
    through it in batches of `train.eval_batch_size`), so no user or recommendation reaches the
    driver. The scores are the module's `recommend` (its query tower, q . c over its candidate
    matrix), as served.

    Args:
        cfg: configuration (`train.eval_batch_size`, the MLflow store).
        run_id: the training run whose exported two-tower scores.
        spec: its FeatureSpec.
        users: one row per user with the serving columns (data.users_frame).
        k: items per user (fewer where the catalogue is smaller).
        seen: (user_id, item_index) pairs never recommended to that user (a user's training
            items), or None: the module's own top-k. A user who has seen all but j < k items gets j rows.
    """
    import pandas as pd
    from pyspark.sql import functions as F

    from lakerec.ranking.baselines import load_two_tower, query_tensors
    from lakerec.ranking.evaluate import worker_cached

    serving, lengths = spec.serving_columns(), spec.array_lengths()
    batch_size, tracking_uri, excluding = cfg.train.eval_batch_size, cfg.tracking_uri, seen is not None
    if excluding:  # the closure below takes plain values only (a DataFrame does not pickle)
        seen = seen.where(F.col("item_index") > 0).groupBy("user_id").agg(F.collect_set("item_index").alias("_seen"))
        users = users.join(seen, "user_id", "left")

    def score(frames):
        import tensorflow as tf

        module, _ = worker_cached(("two-tower", run_id), lambda: load_two_tower(run_id, tracking_uri))
        for frame in frames:
            for lo in range(0, len(frame), batch_size):
                part = frame.iloc[lo:lo + batch_size]
                queries = query_tensors(part, serving, lengths)
                if not excluding:
                    out = module.recommend(queries, tf.constant(k, tf.int32))
                    ids, scores = out["item_ids"].numpy(), out["scores"].numpy()
                else:
                    lists = [np.asarray(v if v is not None else [], np.int64) for v in part["_seen"]]
                    rows = np.repeat(np.arange(len(lists)), [len(v) for v in lists])
                    columns = np.concatenate(lists) - 1 if lists else np.zeros(0, np.int64)
                    ids, scores = exact_top_k(module.query_embeddings(queries), module.candidates[1:],
                                              module.item_ids[1:], k, rows, columns)
                width = ids.shape[1]
                out = pd.DataFrame({
                    "user_id": np.repeat(part["user_id"].to_numpy(np.int64), width),
                    "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), len(part)),
                    "item_id": ids.reshape(-1).astype(np.int64),
                    "score": scores.reshape(-1).astype(np.float32),
                })
                yield out[np.isfinite(out["score"])]

    return users.mapInPandas(score, SCHEMA)
