"""Which columns each tower reads (docs/tables.md), and how big each vocabulary is.

`FeatureSpec` is the one description of a model's inputs: the towers are built from it,
the data feed selects its columns, and the export stores it (as JSON) so that serving
code knows what to pass. The field lists are the field registry's side features, picked
by tag (lakerec.schema.fields): a field tagged for a tower there reaches that tower.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import get_args

from lakerec.config import field_type
from lakerec.errors import ConfigError, InputDataError
from lakerec.schema import tables as T
from lakerec.schema.fields import (  # noqa: F401 (the column helpers are re-exported to the towers)
    CANDIDATE, QUERY, ids_column, index_column, side_features, weights_column,
)

FEATURE_SETS = get_args(field_type("train.features"))  # the config's choices: ids | all

# Single-valued side features: `<name>_index int` in the interactions tables.
USER_SINGLE = tuple(f.name for f in side_features(QUERY, multi=False))
# Weighted multi-valued user history: `<name>_ids array<int>`, `<name>_weights array<float>`.
USER_MULTI = tuple(f.name for f in side_features(QUERY, multi=True))
ITEM_SINGLE = tuple(f.name for f in side_features(CANDIDATE, multi=False))
ITEM_MULTI = tuple(f.name for f in side_features(CANDIDATE, multi=True))


@dataclass(frozen=True)
class FeatureSpec:
    """The inputs of a two-tower model.

    Attributes:
        features: "ids" (user and item id embeddings only) or "all" (plus side features).
        num_users: rows of the user embedding table (max user_index + 1; row 0 = OOV).
        num_items: rows of the item embedding table (max item_index + 1; row 0 = OOV).
        vocab_sizes: rows per side feature (max index + 1), keyed by field name.
        history_length: length of each user history array.
        intention_length: length of the item intention array.
    """

    features: str
    num_users: int
    num_items: int
    vocab_sizes: dict[str, int] = field(default_factory=dict)
    history_length: int = 0
    intention_length: int = 0

    def __post_init__(self):
        if self.features not in FEATURE_SETS:
            raise ConfigError(f"features must be one of {FEATURE_SETS}, got {self.features!r}")

    @property
    def uses_side_features(self) -> bool:
        return self.features == "all"

    def query_columns(self) -> list[str]:
        """Columns the query tower reads (user_index, plus profile and history with 'all')."""
        cols = ["user_index"]
        if self.uses_side_features:
            cols += [index_column(n) for n in USER_SINGLE]
            for n in USER_MULTI:
                cols += [ids_column(n), weights_column(n)]
        return cols

    def serving_columns(self) -> list[str]:
        """What a caller passes to the exported model: user_id instead of user_index."""
        return ["user_id"] + self.query_columns()[1:]

    def candidate_columns(self) -> list[str]:
        """Columns the candidate tower reads (item_index, plus item side features with 'all')."""
        cols = ["item_index"]
        if self.uses_side_features:
            cols += [index_column(n) for n in ITEM_SINGLE]
            for n in ITEM_MULTI:
                cols += [ids_column(n), weights_column(n)]
        return cols

    def training_columns(self) -> list[str]:
        return self.query_columns() + self.candidate_columns()

    def array_lengths(self) -> dict[str, int]:
        """Fixed length of every array column this spec reads."""
        out = {}
        if self.uses_side_features:
            for n in USER_MULTI:
                out[ids_column(n)] = out[weights_column(n)] = self.history_length
            for n in ITEM_MULTI:
                out[ids_column(n)] = out[weights_column(n)] = self.intention_length
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        return cls(**json.loads(text))


def _vocab_key(feature: str) -> str:
    """feature_vocab's `feature` value -> field name (tolerates `_index`/`_ids` suffixes)."""
    for suffix in ("_index", "_ids"):
        if feature.endswith(suffix):
            return feature[: -len(suffix)]
    return feature


def build_spec(spark, features: str, tables: dict) -> tuple[FeatureSpec, dict[str, int]]:
    """Measure vocabulary sizes, array lengths and row counts from the filter's tables.

    Sizes are max(index) + 1 over feature_vocab and every column that holds the index
    (train, test and item_vocab), so no index can fall outside its embedding table even
    if feature_vocab names a feature differently. One Spark query (single-row aggregates
    cross-joined): each query on a Delta table has a fixed cost worth saving.

    Args:
        spark: the session.
        features: "ids" or "all".
        tables: DataFrames keyed by user_vocab, item_vocab, feature_vocab,
            train_interactions, test_interactions.

    Returns:
        (the FeatureSpec, {"train_rows": n, "test_rows": n}).

    Raises:
        InputDataError: an array column does not have one fixed length.
    """
    from pyspark.sql import functions as F

    side = features == "all"
    parts = [
        tables[T.USER_VOCAB.name].agg(F.max("user_index").alias("max_user")),
        tables[T.ITEM_VOCAB.name].agg(
            F.max("item_index").alias("max_item"),
            *([F.max(index_column(n)).alias(f"item:{n}") for n in ITEM_SINGLE]
              + [F.max(F.array_max(ids_column(n))).alias(f"item:{n}") for n in ITEM_MULTI] if side else []),
        ),
        tables[T.TRAIN_INTERACTIONS.name].agg(F.count(F.lit(1)).alias("train_rows")),
        tables[T.TEST_INTERACTIONS.name].agg(F.count(F.lit(1)).alias("test_rows")),
    ]
    if side:
        aggs = [F.max(index_column(n)).alias(n) for n in USER_SINGLE + ITEM_SINGLE]
        for n in USER_MULTI + ITEM_MULTI:
            aggs.append(F.max(F.array_max(ids_column(n))).alias(n))
            for col in (ids_column(n), weights_column(n)):
                aggs += [F.min(F.size(col)).alias(f"min:{col}"), F.max(F.size(col)).alias(f"max:{col}")]
        interactions = tables[T.TRAIN_INTERACTIONS.name].unionByName(tables[T.TEST_INTERACTIONS.name])
        parts.append(interactions.agg(*aggs))
        vocab = tables[T.FEATURE_VOCAB.name].groupBy("feature").agg(F.max("index").alias("m"))
        parts.append(vocab.agg(F.map_from_entries(F.collect_list(F.struct("feature", "m"))).alias("vocab_max")))
    row = parts[0]
    for p in parts[1:]:
        row = row.crossJoin(p)
    data = row.first().asDict()
    counts = {"train_rows": int(data["train_rows"]), "test_rows": int(data["test_rows"])}
    num_users = int(data["max_user"] or 0) + 1
    num_items = int(data["max_item"] or 0) + 1
    if not side:
        return FeatureSpec("ids", num_users, num_items), counts

    vocab_max = {_vocab_key(k): int(v or 0) for k, v in (data["vocab_max"] or {}).items()}
    sizes = {}
    for n in USER_SINGLE + USER_MULTI + ITEM_SINGLE + ITEM_MULTI:
        top = max(vocab_max.get(n, 0), data.get(n) or 0, data.get(f"item:{n}") or 0)
        sizes[n] = int(top) + 1
    for n in USER_MULTI + ITEM_MULTI:
        for col in (ids_column(n), weights_column(n)):
            lo, hi = data[f"min:{col}"], data[f"max:{col}"]
            if lo is not None and lo != hi:
                raise InputDataError(
                    f"{col} must have one fixed length in train/test_interactions (found {lo}..{hi}); "
                    "rerun `python -m lakerec.jobs.filter`, which pads the history arrays"
                )
    hist = data[f"max:{ids_column(USER_MULTI[0])}"] or 0
    intent = data[f"max:{ids_column(ITEM_MULTI[0])}"] or 0
    return FeatureSpec("all", num_users, num_items, sizes, int(hist), int(intent)), counts
