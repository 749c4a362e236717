"""Impressions tables with a planted click and conversion signal, in the registry's exact schemas.

Users and items each have one of a few topics (a user's `user_profile_index`, an item's
`item_category_index`); the cross field user_item_categories says when they match (index
1 + topic, weight ln 5; missing otherwise), as field 508 does on the real data. Then

    P(click)               = sigmoid(-1.5 + 2.5 [same topic] - 0.7 (position_index - 1))
    P(conversion | click)  = sigmoid(-1.5 + 1.8 [user_age_index >= 3] + 1.8 [item_shop_index odd])

so a model that reads the features learns both heads, and position moves clicks only.

    planted = planted_impressions(n_train=4000, n_test=1500)   # numpy columns per table
    write_planted_impressions(spark, cfg)                      # the five Delta tables in cfg.database
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lakerec.ranking.features import ranker_fields
from lakerec.schema import fields as F
from lakerec.schema import tables as T

TABLES = (T.TRAIN_IMPRESSIONS, T.TEST_IMPRESSIONS, T.USER_VOCAB, T.ITEM_VOCAB, T.FEATURE_VOCAB)
TOPICS = 4
POSITIONS = 4


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class PlantedImpressions:
    """numpy columns keyed by table then column, and the true probabilities of each impressions row."""

    tables: dict[str, dict[str, np.ndarray]]
    p_click: dict[str, np.ndarray]  # by impressions table: with the position effect
    p_conversion: dict[str, np.ndarray]  # given a click

    def pandas(self, table: str):
        import pandas as pd

        cols = self.tables[table]
        return pd.DataFrame({c: list(cols[c]) if cols[c].ndim == 2 else cols[c]
                             for c in T.table(table).column_names})


def planted_impressions(n_train: int = 4000, n_test: int = 1500, n_users: int = 120, n_items: int = 80,
                        history_length: int = 16, intention_length: int = 8, seed: int = 11) -> PlantedImpressions:
    """Draw train and test impressions, and the vocabularies they are indexed with."""
    rng = np.random.default_rng(seed)
    by = F.BY_NAME
    sizes = {f.name: 6 for f in ranker_fields()}  # small vocabularies: index 1..5
    sizes.update({by["user_id"].name: n_users + 1, by["item_id"].name: n_items + 1,
                  by["user_profile"].name: TOPICS + 1, by["item_category"].name: TOPICS + 1,
                  by["user_item_categories"].name: TOPICS + 1, by["position"].name: POSITIONS + 1})
    user_topic = np.arange(n_users) % TOPICS
    item_topic = (np.arange(n_items) * 3 + 1) % TOPICS
    user_age = 1 + rng.integers(0, 4, n_users)
    item_shop = 1 + rng.integers(0, 5, n_items)

    def lengths(f):
        return intention_length if f.role in (F.ITEM, F.CROSS) else history_length

    def impressions(n: int, first_id: int):
        u = rng.integers(0, n_users, n)
        j = rng.integers(0, n_items, n)
        pos = 1 + rng.integers(0, POSITIONS, n)
        same = user_topic[u] == item_topic[j]
        cols: dict[str, np.ndarray] = {}
        for f in ranker_fields():  # default: random ids in the field's small vocabulary
            if f.multi:
                ids = np.zeros((n, lengths(f)), np.int32)
                ids[:, :2] = 1 + rng.integers(0, sizes[f.name] - 1, (n, 2))
                cols[f.ids_column] = ids
                cols[f.weights_column] = np.where(ids > 0, 1.0, 0.0).astype(np.float32)
            else:
                cols[f.index_column] = (1 + rng.integers(0, sizes[f.name] - 1, n)).astype(np.int32)
                if f.weight_column:
                    cols[f.weight_column] = np.ones(n, np.float32)
        cols[by["user_id"].index_column] = (u + 1).astype(np.int32)
        cols[by["item_id"].index_column] = (j + 1).astype(np.int32)
        cols[by["user_profile"].index_column] = (1 + user_topic[u]).astype(np.int32)
        cols[by["item_category"].index_column] = (1 + item_topic[j]).astype(np.int32)
        cols[by["user_age"].index_column] = user_age[u].astype(np.int32)
        cols[by["item_shop"].index_column] = item_shop[j].astype(np.int32)
        cross = by["user_item_categories"]
        cols[cross.index_column] = np.where(same, 1 + user_topic[u], 0).astype(np.int32)
        cols[cross.weight_column] = np.where(same, np.log(5.0), 0.0).astype(np.float32)
        cols[by["position"].index_column] = pos.astype(np.int32)
        p_click = _sigmoid(-1.5 + 2.5 * same - 0.7 * (pos - 1))
        p_conv = _sigmoid(-1.5 + 1.8 * (user_age[u] >= 3) + 1.8 * (item_shop[j] % 2 == 1))
        click = (rng.random(n) < p_click).astype(np.int32)
        conversion = (click * (rng.random(n) < p_conv)).astype(np.int32)
        cols.update({
            "sample_id": first_id + np.arange(n, dtype=np.int64),
            "user_id": 1000 + u.astype(np.int64), "item_id": 50_000 + j.astype(np.int64),
            "click": click, "conversion": conversion,
            "is_cold_user": np.zeros(n, bool), "is_cold_item": np.zeros(n, bool),
        })
        return cols, p_click, p_conv

    train, pc_train, pv_train = impressions(n_train, 1)
    test, pc_test, pv_test = impressions(n_test, 1 + n_train)
    user_index, item_index = F.BY_NAME["user_id"].index_column, F.BY_NAME["item_id"].index_column
    counts = {"impressions": np.full(n_users, 10, np.int64), "clicks": np.full(n_users, 3, np.int64),
              "conversions": np.ones(n_users, np.int64)}
    user_vocab = {"user_id": 1000 + np.arange(n_users, dtype=np.int64),
                  user_index: np.arange(1, n_users + 1, dtype=np.int32), **counts}
    item_vocab = {"item_id": 50_000 + np.arange(n_items, dtype=np.int64),
                  item_index: np.arange(1, n_items + 1, dtype=np.int32),
                  **{k: np.resize(v, n_items) for k, v in counts.items()}}
    for f in F.side_features(F.CANDIDATE):  # the item's features from its first train row (0 if never shown)
        first = {}
        for r, jj in enumerate(train[item_index] - 1):
            first.setdefault(int(jj), r)
        rows = np.array([first.get(jj, 0) for jj in range(n_items)])
        for c in f.model_columns:
            item_vocab[c] = train[c][rows]
    vocab_fields = [f for f in ranker_fields() if not f.is_id]
    feature_vocab = {
        "feature": np.array([f.name for f in vocab_fields for _ in range(1, sizes[f.name])], dtype=object),
        "raw_id": np.array([900_000 + 100 * k + i for k, f in enumerate(vocab_fields) for i in range(1, sizes[f.name])],
                           dtype=np.int64),
        "index": np.array([i for f in vocab_fields for i in range(1, sizes[f.name])], dtype=np.int32),
        "impressions": np.array([100 - i for f in vocab_fields for i in range(1, sizes[f.name])], dtype=np.int64),
    }
    tables = {T.TRAIN_IMPRESSIONS.name: train, T.TEST_IMPRESSIONS.name: test, T.USER_VOCAB.name: user_vocab,
              T.ITEM_VOCAB.name: item_vocab, T.FEATURE_VOCAB.name: feature_vocab}
    return PlantedImpressions(tables, {T.TRAIN_IMPRESSIONS.name: pc_train, T.TEST_IMPRESSIONS.name: pc_test},
                              {T.TRAIN_IMPRESSIONS.name: pv_train, T.TEST_IMPRESSIONS.name: pv_test})


def write_planted_impressions(spark, cfg, planted: PlantedImpressions | None = None, **kwargs) -> PlantedImpressions:
    """Write the five tables to cfg.database (arrays sized by cfg.filter unless given)."""
    from lakerec.tables import write_table

    if planted is None:
        kwargs.setdefault("history_length", cfg.filter.history_length)
        kwargs.setdefault("intention_length", cfg.filter.item_intention_length)
        planted = planted_impressions(**kwargs)
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    for t in TABLES:
        write_table(spark.createDataFrame(planted.pandas(t.name), t.ddl), cfg.table(t.name))
    return planted


def auc(labels, scores) -> float:
    """AUC by counting pairs (ties count half): the test's own, independent of the code under test."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


# Small, quick ranker settings for tests on the planted tables.
FAST_RANK = dict(
    rank__epochs=3, rank__batch_size=128, rank__embedding_dim=4, rank__learning_rate=0.01,
    rank__deep_layers=(32, 16), rank__cross_layers=1, rank__shuffle_buffer=1000, rank__validation_fraction=0.1,
    rank__early_stopping_patience=0, rank__seed=3,
)
