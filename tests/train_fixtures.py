"""Training tables with a planted structure, written in the docs/tables.md schemas.

Users and items each belong to one of a few topics; a user clicks items of their own topic
most of the time, and item popularity follows a long tail. So a two-tower model can learn
the topics in seconds and beat "most popular", while most-popular still beats random.

Side features carry the same signal (a user's `user_profile_index` and history ids are
their topic's, an item's `item_category_index` is its topic), so `--features all` can also
serve cold-start users and items. Cold users and cold items appear in the test rows only.

    planted = planted_tables()                     # numpy columns per table, no Spark
    write_planted_tables(spark, cfg)               # the five Delta tables in cfg.database

Vectorised, so the benchmarks draw hundreds of thousands of rows with it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lakerec.schema import tables as T
from lakerec.schema.fields import CANDIDATE, QUERY, ids_column, index_column, side_features, weights_column

# The towers' side features, as the field registry tags them (lakerec.retrieval.features reads the same).
USER_SINGLE = tuple(f.name for f in side_features(QUERY, multi=False))
USER_MULTI = tuple(f.name for f in side_features(QUERY, multi=True))
ITEM_SINGLE = tuple(f.name for f in side_features(CANDIDATE, multi=False))
ITEM_MULTI = tuple(f.name for f in side_features(CANDIDATE, multi=True))

# The five tables, in the schemas of the table registry (the filter's output is checked against it).
SCHEMAS = {t.name: t.ddl for t in T.TRAINING_INPUTS}
VOCAB_USER_SCHEMA = T.USER_VOCAB.ddl
VOCAB_ITEM_SCHEMA = T.ITEM_VOCAB.ddl
FEATURE_VOCAB_SCHEMA = T.FEATURE_VOCAB.ddl
INTERACTIONS_SCHEMA = T.TRAIN_INTERACTIONS.ddl


def columns_of(schema: str) -> list[str]:
    return [part.split()[0] for part in schema.split(", ")]


@dataclass(frozen=True)
class Planted:
    """The generated tables (numpy columns, keyed by table then column) and the truth."""

    tables: dict[str, dict[str, np.ndarray]]
    user_topic: dict[int, int]  # user_id -> topic
    item_topic: dict[int, int]  # item_id -> topic

    def rows(self, table: str) -> list[tuple]:
        """Rows as tuples in the schema's column order (arrays as lists)."""
        cols = self.tables[table]
        names = columns_of(SCHEMAS[table])
        n = len(cols[names[0]])
        return [tuple(_py(cols[c][i]) for c in names) for i in range(n)]

    def pandas(self, table: str):
        import pandas as pd

        cols = self.tables[table]
        return pd.DataFrame({c: list(cols[c]) if cols[c].ndim == 2 else cols[c] for c in columns_of(SCHEMAS[table])})

    @property
    def train(self) -> list[tuple]:
        return self.rows(T.TRAIN_INTERACTIONS.name)

    @property
    def test(self) -> list[tuple]:
        return self.rows(T.TEST_INTERACTIONS.name)

    @property
    def user_vocab(self) -> list[tuple]:
        return self.rows(T.USER_VOCAB.name)

    @property
    def item_vocab(self) -> list[tuple]:
        return self.rows(T.ITEM_VOCAB.name)


def _py(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v.item() if isinstance(v, np.generic) else v


def planted_tables(
    n_users: int = 60,
    n_items: int = 80,
    n_topics: int = 4,
    clicks_per_user: int = 40,
    test_clicks_per_user: int = 8,
    own_topic: float = 0.9,
    cold_users: int = 4,
    cold_items: int = 4,
    history_length: int = 16,
    intention_length: int = 8,
    seed: int = 7,
) -> Planted:
    """Draw the five tables.

    Args:
        n_users, n_items: vocabulary sizes (warm users and items).
        n_topics: planted clusters; user u and item j have topics u % T and j % T.
        clicks_per_user, test_clicks_per_user: positives per warm user in each split.
        own_topic: share of a user's clicks that go to items of their own topic.
        cold_users: extra users with test rows only (index 0, `is_cold_user`), each with
            test_clicks_per_user rows; their side features reveal their topic.
        cold_items: extra items with test rows only (index 0, `is_cold_item`), 3 rows each.
        history_length, intention_length: fixed array lengths (FilterConf).
        seed: the same arguments give the same tables.
    """
    rng = np.random.default_rng(seed)
    n_all_users, n_all_items = n_users + cold_users, n_items + cold_items
    user_ids = 1000 + np.arange(n_all_users, dtype=np.int64)
    item_ids = 50_000 + 7 * np.arange(n_all_items, dtype=np.int64)
    user_topic_arr = np.arange(n_all_users) % n_topics
    item_topic_arr = np.arange(n_all_items) % n_topics
    # Long-tail popularity over the warm items: a random rank per item, weight ~ 1 / (rank + 1).
    pop = 1.0 / (rng.permutation(n_items) + 1.0)
    by_topic = [np.flatnonzero(item_topic_arr[:n_items] == t) for t in range(n_topics)]
    topic_p = [pop[idx] / pop[idx].sum() for idx in by_topic]
    all_p = pop / pop.sum()

    def draw_items(users: np.ndarray) -> np.ndarray:
        out = rng.choice(n_items, size=users.size, p=all_p)
        own = rng.random(users.size) < own_topic
        for t in range(n_topics):
            sel = own & (user_topic_arr[users] == t)
            out[sel] = rng.choice(by_topic[t], size=int(sel.sum()), p=topic_p[t])
        return out

    def padded(ids: np.ndarray, weights: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(ids.shape[1], length)
        out_ids = np.zeros((ids.shape[0], length), np.int32)
        out_w = np.zeros((ids.shape[0], length), np.float32)
        out_ids[:, :k], out_w[:, :k] = ids[:, :k], weights[:, :k]
        return out_ids, out_w

    def item_features(j: np.ndarray) -> dict[str, np.ndarray]:
        t = item_topic_arr[j]
        ids = np.stack([1 + t * 4 + (j % 4), 1 + t * 4 + ((j + 1) % 4)], axis=1)
        out = {}
        for name, value in zip(ITEM_SINGLE, (1 + t, 1 + t * 3 + j % 3, 1 + t * 2 + j % 2), strict=True):
            out[index_column(name)] = value.astype(np.int32)
        for name in ITEM_MULTI:
            out[ids_column(name)], out[weights_column(name)] = padded(ids, np.ones(ids.shape, np.float32),
                                                                      intention_length)
        return out

    def user_features(u: np.ndarray) -> dict[str, np.ndarray]:
        t = user_topic_arr[u]
        out = {}
        for name, value in zip(USER_SINGLE, (1 + t, 1 + u % 3, 1 + u % 2, 1 + u % 5, 1 + u % 4, 1 + u % 4,
                                              1 + u % 2, 1 + u % 5), strict=True):
            out[index_column(name)] = value.astype(np.int32)
        for name, per_topic in zip(USER_MULTI, (1, 3, 2, 4), strict=True):
            ids = 1 + t[:, None] * per_topic + np.arange(per_topic)[None, :]
            w = np.broadcast_to(np.log1p(5 - np.arange(per_topic, dtype=np.float32)), ids.shape)
            out[ids_column(name)], out[weights_column(name)] = padded(ids, w, history_length)
        return out

    def interactions(u: np.ndarray, j: np.ndarray, first_id: int) -> dict[str, np.ndarray]:
        cold_u, cold_i = u >= n_users, j >= n_items
        return {
            "sample_id": first_id + np.arange(u.size, dtype=np.int64),
            "user_id": user_ids[u], "item_id": item_ids[j],
            "user_index": np.where(cold_u, 0, u + 1).astype(np.int32),
            "item_index": np.where(cold_i, 0, j + 1).astype(np.int32),
            "is_cold_user": cold_u, "is_cold_item": cold_i,
            **user_features(u), **item_features(j),
        }

    train_u = np.repeat(np.arange(n_users), clicks_per_user)
    train_j = draw_items(train_u)
    test_u = np.repeat(np.arange(n_all_users), test_clicks_per_user)
    test_j = draw_items(test_u)
    extra_u = np.concatenate([rng.choice(n_users, size=3, replace=False) for _ in range(cold_items)]) \
        if cold_items else np.zeros(0, np.int64)
    extra_j = np.repeat(np.arange(n_items, n_all_items), 3)
    test_u, test_j = np.concatenate([test_u, extra_u]), np.concatenate([test_j, extra_j])

    user_clicks = np.bincount(train_u, minlength=n_users)
    item_clicks = np.bincount(train_j, minlength=n_items)
    warm_u, warm_j = np.arange(n_users), np.arange(n_items)
    user_vocab = {"user_id": user_ids[:n_users], "user_index": (warm_u + 1).astype(np.int32),
                  "impressions": user_clicks * 10, "clicks": user_clicks, "conversions": user_clicks // 10}
    item_vocab = {"item_id": item_ids[:n_items], "item_index": (warm_j + 1).astype(np.int32),
                  "impressions": item_clicks * 10, "clicks": item_clicks, "conversions": item_clicks // 10,
                  **item_features(warm_j)}
    sizes = (  # ids per side feature (feature_vocab rows)
        [(f, 8) for f in USER_SINGLE]
        + list(zip(USER_MULTI, (n_topics, 3 * n_topics, 2 * n_topics, 4 * n_topics), strict=True))
        + list(zip(ITEM_SINGLE, (n_topics, 3 * n_topics, 2 * n_topics), strict=True))
        + list(zip(ITEM_MULTI, (4 * n_topics,), strict=True))
    )
    feature_vocab = {
        "feature": np.array([f for f, n in sizes for _ in range(n)], dtype=object),
        "raw_id": np.array([900_000 + 100 * i for _, n in sizes for i in range(1, n + 1)], dtype=np.int64),
        "index": np.array([i for _, n in sizes for i in range(1, n + 1)], dtype=np.int32),
        "impressions": np.array([10 * (n - i + 1) for _, n in sizes for i in range(1, n + 1)], dtype=np.int64),
    }
    tables = {
        T.USER_VOCAB.name: user_vocab,
        T.ITEM_VOCAB.name: item_vocab,
        T.FEATURE_VOCAB.name: feature_vocab,
        T.TRAIN_INTERACTIONS.name: interactions(train_u, train_j, 1),
        T.TEST_INTERACTIONS.name: interactions(test_u, test_j, 1 + train_u.size),
    }
    return Planted(
        tables,
        user_topic={int(user_ids[u]): int(user_topic_arr[u]) for u in range(n_all_users)},
        item_topic={int(item_ids[j]): int(item_topic_arr[j]) for j in range(n_all_items)},
    )


def write_planted_tables(spark, cfg, planted: Planted | None = None, **kwargs) -> Planted:
    """Write user_vocab, item_vocab, feature_vocab, train_ and test_interactions to cfg.database.

    Args:
        spark: the session.
        cfg: its `database` names where the tables go; `filter.history_length` and
            `filter.item_intention_length` size the arrays unless given in kwargs.
        planted: tables to write (default: `planted_tables(**kwargs)`).

    Returns:
        The Planted tables that were written.
    """
    from concurrent.futures import ThreadPoolExecutor

    from lakerec.tables import write_table

    if planted is None:
        kwargs.setdefault("history_length", cfg.filter.history_length)
        kwargs.setdefault("intention_length", cfg.filter.item_intention_length)
        planted = planted_tables(**kwargs)
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    frames = [(name, spark.createDataFrame(planted.pandas(name), schema)) for name, schema in SCHEMAS.items()]
    # Independent tables: Spark runs the writes side by side (most of a tiny write is latency).
    with ThreadPoolExecutor(max_workers=len(frames)) as pool:
        list(pool.map(lambda nf: write_table(nf[1], cfg.table(nf[0])), frames))
    return planted


# Small, quick training settings for tests on the planted tables.
FAST_TRAIN = dict(
    train__epochs=3, train__batch_size=256, train__embedding_dim=16, train__learning_rate=0.1,
    train__ks=(5, 10, 20), train__hidden_units=(32,), train__monitor_rows=256, train__eval_batch_size=256,
    train__shuffle_buffer=1000, train__features="all", train__seed=42,
)


# A small, quick ALS baseline for the same tables (80 items, 4 topics): seconds, not the demo's fit.
FAST_EVALUATE = dict(evaluate__als_rank=8, evaluate__als_max_iter=5, evaluate__als_blocks=2)


def planted_database(spark, base_cfg, name: str):
    """A fresh database `<name>_<pid>` holding the planted tables, FAST_TRAIN and FAST_EVALUATE
    settings and its own registered model name; returns (cfg, planted)."""
    import os

    from lakerec.config import override

    cfg = override(base_cfg, database=f"{name}_{os.getpid()}",
                   mlflow__registered_model=f"two-tower-{name}-{os.getpid()}", **FAST_TRAIN, **FAST_EVALUATE)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    return cfg, write_planted_tables(spark, cfg)


def passthrough_tower(key: str):
    """A tower that returns one input as its embedding, for losses checked by hand."""
    import tensorflow as tf

    class Passthrough(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.key = key

        def call(self, features, training=False):
            return features[key]

    return Passthrough()
