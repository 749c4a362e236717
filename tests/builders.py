"""Hand-built `samples` and `user_contexts` tables, in the exact docs/tables.md schemas.

Tests of every stage after ingest write a few rows they can reason about, instead of
generating and ingesting raw files:

    write_samples(spark, cfg, [
        sample(1, user_id=10, item_id=100, click=1),
        sample(2, user_id=10, item_id=101, split="test"),
    ])
    write_user_contexts(spark, cfg, contexts_from_samples(rows, user_categories={10: [(7, 1.1)]}))

or both at once with `write_ingest_tables(spark, cfg, rows, histories={...})`. Column order
and types are the table registry's (lakerec/schema/tables.py, which the ingest job's output
is checked against); a weighted array is given as a list of `(id, weight)` pairs or of bare
ids (weight 1.0).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    ArrayType, BooleanType, DataType, DoubleType, FloatType, IntegerType, LongType, StringType, StructField,
    StructType,
)

from lakerec.config import Config
from lakerec.schema import tables as T
from lakerec.schema.fields import COMMON, select
from lakerec.tables import write_table

WEIGHTED_IDS = ArrayType(StructType([StructField("id", LongType()), StructField("weight", DoubleType())]))
OTHER_FEATURES = ArrayType(StructType([StructField("field", StringType()), StructField("id", LongType()),
                                       StructField("weight", DoubleType())]))
_TYPES: dict[str, DataType] = {
    "string": StringType(), "bigint": LongType(), "int": IntegerType(), "double": DoubleType(),
    "float": FloatType(), "boolean": BooleanType(), T.WEIGHTED_IDS: WEIGHTED_IDS, T.OTHER_FEATURES_TYPE: OTHER_FEATURES,
}

USER_SINGLE = tuple(f.name for f in select(file=COMMON, multi=False))  # user_id, user_profile, ...
USER_HISTORY = tuple(f.name for f in select(file=COMMON, multi=True))  # user_categories, ...


def struct_of(table: T.Table) -> StructType:
    """The registry's schema of a table whose columns are plain or weighted-id types, as a StructType."""
    return StructType([StructField(c.name, _TYPES[c.type]) for c in table.columns])


SAMPLES_SCHEMA = struct_of(T.SAMPLES)
USER_CONTEXTS_SCHEMA = struct_of(T.USER_CONTEXTS)

_ARRAYS = {f.name for f in SAMPLES_SCHEMA.fields + USER_CONTEXTS_SCHEMA.fields if isinstance(f.dataType, ArrayType)}


def context_key(user_id: int | None) -> str:
    """The default common_feature_index of a user's context: 16 hex digits, as in the real files."""
    return f"{user_id:016x}" if user_id is not None else "f" * 16


def _weighted(value: Iterable) -> list[tuple[int, float]]:
    out = []
    for v in value or ():
        out.append((int(v[0]), float(v[1])) if isinstance(v, (tuple, list)) else (int(v), 1.0))
    return out


def _row(schema: StructType, values: Mapping[str, Any], what: str) -> tuple:
    names = schema.fieldNames()
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{what}: unknown column(s) {unknown}; columns are {names}")
    return tuple(
        [tuple(x) for x in values.get(n) or ()] if n == T.OTHER_FEATURES  # (field, id, weight) triples
        else _weighted(values.get(n)) if n in _ARRAYS else values.get(n)
        for n in names
    )


def sample(sample_id: int, user_id: int | None = None, item_id: int | None = None, **values: Any) -> dict[str, Any]:
    """One `samples` row as a dict: split 'train', labels 0, the user's default context key.

    Any other column of SAMPLES_SCHEMA may be given by name (`item_category=5`,
    `item_intention=[(61, 1.0), 62]`, `split="test"`); absent ones are null (arrays empty).
    """
    row = {
        "split": "train",
        "sample_id": sample_id,
        "click": 0,
        "conversion": 0,
        "user_id": user_id,
        "item_id": item_id,
        "common_feature_index": context_key(user_id),
    }
    row.update(values)
    return row


def samples_frame(spark: SparkSession, rows: Iterable[Mapping[str, Any]]) -> DataFrame:
    """A DataFrame in the samples schema; rows are dicts (see `sample`), missing columns null."""
    return spark.createDataFrame([_row(SAMPLES_SCHEMA, r, "samples row") for r in rows], SAMPLES_SCHEMA)


def user_contexts_frame(spark: SparkSession, rows: Iterable[Mapping[str, Any]]) -> DataFrame:
    """A DataFrame in the user_contexts schema; rows are dicts, missing columns null (arrays empty)."""
    return spark.createDataFrame(
        [_row(USER_CONTEXTS_SCHEMA, r, "user_contexts row") for r in rows], USER_CONTEXTS_SCHEMA
    )


def write_samples(spark: SparkSession, cfg: Config, rows: Iterable[Mapping[str, Any]]) -> DataFrame:
    """Write (overwrite) `<cfg.database>.samples`, partitioned by split like the ingest job."""
    df = samples_frame(spark, list(rows))
    write_table(df, cfg.table(T.SAMPLES.name), T.SAMPLES.partitioned_by)
    return df


def write_user_contexts(spark: SparkSession, cfg: Config, rows: Iterable[Mapping[str, Any]]) -> DataFrame:
    """Write (overwrite) `<cfg.database>.user_contexts`, partitioned by split."""
    df = user_contexts_frame(spark, list(rows))
    write_table(df, cfg.table(T.USER_CONTEXTS.name), T.USER_CONTEXTS.partitioned_by)
    return df


def contexts_from_samples(
    rows: Iterable[Mapping[str, Any]], **histories: Mapping[int | None, Iterable]
) -> list[dict[str, Any]]:
    """One user_contexts row per (split, common_feature_index) the samples use.

    The user's single-valued fields are taken from the first sample with that key (as the
    ingest job copies them the other way). `histories` maps a history column to
    `{user_id: [(id, weight), ...]}`, e.g. `user_categories={10: [(7, 1.1), (8, 0.7)]}`;
    the same history is used in both splits.
    """
    unknown = sorted(set(histories) - set(USER_HISTORY))
    if unknown:
        raise ValueError(f"unknown history column(s) {unknown}; choose from {USER_HISTORY}")
    out: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        full = dict(zip(SAMPLES_SCHEMA.fieldNames(), _row(SAMPLES_SCHEMA, r, "samples row")))
        key = (full["split"], full["common_feature_index"])
        if key in out:
            continue
        ctx = {"split": key[0], "common_feature_index": key[1]}
        ctx.update({n: full[n] for n in USER_SINGLE})
        for name, by_user in histories.items():
            ctx[name] = by_user.get(full["user_id"], [])
        out[key] = ctx
    return list(out.values())


def write_ingest_tables(
    spark: SparkSession,
    cfg: Config,
    rows: Iterable[Mapping[str, Any]],
    **histories: Mapping[int | None, Iterable],
) -> tuple[DataFrame, DataFrame]:
    """Write `samples` and the `user_contexts` they reference (see contexts_from_samples)."""
    rows = list(rows)
    return write_samples(spark, cfg, rows), write_user_contexts(spark, cfg, contexts_from_samples(rows, **histories))
