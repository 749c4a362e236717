"""The ALS baseline: Spark's implicit-feedback matrix factorisation on train_interactions.

    factors = fit(spark, train_df, cfg.evaluate, num_users, num_items)   # distributed, in Spark
    ranks, fallback = rank_rows(factors, user_index, item_index, popular, seen)

`pyspark.ml.recommendation.ALS` with implicitPrefs=True (Hu, Koren and Volinsky's confidence
1 + alpha * r) is fitted on the warm (user_index, item_index) pairs of train_interactions,
r = how many times the user clicked the item. Its user and item factors come back to the
driver (one vector per vocabulary user and item: catalogue-sized, like the model's
candidate matrix) and rank every test positive over the whole catalogue exactly as the
model's embeddings do (lakerec.retrieval.catalogue_ranks.ModelRanker):
    score(u, j) = user factor u . item factor j
    an item without a factor (no training positive, so ALS never saw it) scores -inf
    a row whose user has no factor (user_index 0, or no training positive) takes the
    most-popular rank instead, counted in the table (`als_fallback_rows`), never dropped.
The settings are `evaluate.als_*` (defaults: what won on MovieLens, rank 64, regParam 1.0,
alpha 40, 15 iterations); `evaluate.als: false` turns the baseline off.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from lakerec.retrieval import catalogue_ranks as CR

log = logging.getLogger("lakerec.evaluate.als")

# Every CHECKPOINT_INTERVAL iterations ALS writes its factors to the session's checkpoint
# folder (lakerec.spark sets it) and forgets how it computed them. Without that cut, 15
# iterations build a lineage ~1,300 RDDs long whose task (de)serialization recursed deep
# enough to overflow a task thread's stack in a long test session (CI). With half the default
# stack (-Xss512k) it overflowed uncut and cut every 10 iterations (Spark's default); cut
# every 2 it fitted in a quarter (256k), for 7.2-7.4 s -> 7.7-8.1 s on a 500-user fit.
CHECKPOINT_INTERVAL = 2


@dataclass(frozen=True)
class Factors:
    """ALS's factors by index (row 0 and indices ALS never saw: zeros, flagged False).

    Attributes:
        users: [U + 1, rank] user factors by user_index.
        user_has: [U + 1] whether ALS has a factor for the user.
        items: [N + 1, rank] item factors by item_index.
        item_has: [N + 1] whether ALS has a factor for the item.
        seconds: fit time.
    """

    users: np.ndarray
    user_has: np.ndarray
    items: np.ndarray
    item_has: np.ndarray
    seconds: float = 0.0

    @classmethod
    def from_arrays(cls, user_index, user_vectors, item_index, item_vectors, num_users: int, num_items: int,
                    seconds: float = 0.0) -> "Factors":
        """Scatter (index, vector) pairs into matrices of num_users / num_items rows (index 0 = OOV)."""
        def scatter(index, vectors, n):
            index = np.asarray(index, dtype=np.int64)
            vectors = np.asarray(vectors, dtype=np.float32).reshape(len(index), -1)
            keep = (index > 0) & (index < n)
            out = np.zeros((n, vectors.shape[1] if vectors.size else 1), dtype=np.float32)
            has = np.zeros(n, dtype=bool)
            out[index[keep]] = vectors[keep]
            has[index[keep]] = True
            return out, has

        users, user_has = scatter(user_index, user_vectors, num_users)
        items, item_has = scatter(item_index, item_vectors, num_items)
        return cls(users, user_has, items, item_has, seconds)


def ratings_frame(train_df):
    """(user_index, item_index, rating = clicks of the pair) over warm training rows."""
    from pyspark.sql import functions as F

    return (train_df.where((F.col("user_index") > 0) & (F.col("item_index") > 0))
            .groupBy("user_index", "item_index").agg(F.count(F.lit(1)).cast("float").alias("rating")))


def fit(spark, train_df, settings, num_users: int, num_items: int) -> Factors:
    """Fit implicit ALS on train_interactions in Spark; the factors by index, on the driver.

    Args:
        spark: the session.
        train_df: train_interactions (user_index, item_index per positive).
        settings: the config's EvaluateConf (als_rank, als_reg_param, als_alpha, als_max_iter,
            als_seed, als_blocks).
        num_users, num_items: rows of the factor matrices (max index + 1).
    """
    from pyspark.ml.recommendation import ALS

    start = time.monotonic()
    ratings = ratings_frame(train_df)
    als = ALS(rank=settings.als_rank, maxIter=settings.als_max_iter, regParam=settings.als_reg_param,
              alpha=settings.als_alpha, implicitPrefs=True, seed=settings.als_seed,
              numUserBlocks=settings.als_blocks, numItemBlocks=settings.als_blocks,
              checkpointInterval=CHECKPOINT_INTERVAL, userCol="user_index", itemCol="item_index",
              ratingCol="rating")
    model = als.fit(ratings)

    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")

    def collect(frame):  # catalogue-sized (one vector per user or item): through Arrow
        got = frame.toPandas()
        vectors = np.stack(got["features"].to_numpy()) if len(got) else np.zeros((0, settings.als_rank))
        return got["id"].to_numpy(dtype=np.int64), vectors.astype(np.float32)

    users, items = collect(model.userFactors), collect(model.itemFactors)
    factors = Factors.from_arrays(*users, *items, num_users, num_items, time.monotonic() - start)
    log.info("ALS rank %d, %d iterations, regParam %g, alpha %g: %s users, %s items with factors in %.1fs",
             settings.als_rank, settings.als_max_iter, settings.als_reg_param, settings.als_alpha,
             f"{int(factors.user_has.sum()):,}", f"{int(factors.item_has.sum()):,}", factors.seconds)
    return factors


def rank_rows(factors: Factors, user_index, item_index, popular: np.ndarray, seen: "CR.SeenItems | None" = None,
              max_cells: int = CR.MAX_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """ALS's exact full-catalogue rank of each row's positive.

    Args:
        factors: the fitted factors.
        user_index, item_index: each row's user and positive.
        popular: each row's most-popular rank (with the same seen-item rule): what rows
            without a user factor get.
        seen: each user's training items (by user_index), left out of the ranking; None: none.
        max_cells: rows x items scored at once.

    Returns:
        (ranks, fallback): fallback marks the rows ranked by most-popular.
    """
    user_index = np.asarray(user_index, dtype=np.int64)
    item_index = np.asarray(item_index, dtype=np.int64)
    known = (user_index > 0) & (user_index < len(factors.user_has))
    known[known] = factors.user_has[user_index[known]]
    ranks = np.asarray(popular, dtype=np.int64).copy()
    bias = np.where(factors.item_has, 0.0, -np.inf).astype(np.float32)
    ranker = CR.ModelRanker(factors.items, max_cells, item_bias=bias)
    rows = np.flatnonzero(known)
    block = max(1, min(65_536, max_cells // max(ranker.num_items, 1)))
    for s in range(0, rows.size, block):
        r = rows[s:s + block]
        entries = None if seen is None else seen.entries(user_index[r])
        ranks[r] = ranker.ranks(factors.users[user_index[r]], item_index[r], entries)
    return ranks, ~known
