"""The lake's MovieLens tables (docs/tables.md): vocabularies from the train ratings, side features, interactions.

How the vocabularies are built and which side feature holds what is in lakerec.movielens's docstring.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakerec.movielens.side_files import ITEM_ATTRIBUTES, ITEM_GENRES, USER_ATTRIBUTES, SideFiles
from lakerec.schema import tables as T
from lakerec.tables import with_row_numbers
from lakerec.schema.fields import BY_NAME, CANDIDATE, QUERY, side_features

FEATURE_VOCAB_SCHEMA = T.FEATURE_VOCAB.ddl


def _vocab(train: DataFrame, key: str, index: str) -> DataFrame:
    counts = train.groupBy(key).agg(F.count(F.lit(1)).alias("impressions"))
    return with_row_numbers(counts, [F.col(key)], index).select(
        key,
        F.col(index).cast("int").alias(index),
        "impressions",
        F.col("impressions").alias("clicks"),
        F.lit(0).cast("bigint").alias("conversions"),
    )


def _zeros(length: int, dtype: str):
    return F.array_repeat(F.lit(0).cast(dtype), length)


def _side_columns(tower: str, length: int, present: frozenset[str] = frozenset()) -> list:
    """A tower's side-feature columns (lakerec.schema.fields), in the registry's order.

    A column named in `present` is taken from the joined feature table (0 or 0-arrays where
    the join found no row); every other one is 0, or 0-arrays of `length`: the filter's
    schema (and the model code) holds unchanged whatever MovieLens lacks.
    """
    cols = []
    for f in side_features(tower):
        if f.multi:
            for name, dtype in ((f.ids_column, "int"), (f.weights_column, "float")):
                zero = _zeros(length, dtype)
                cols.append((F.coalesce(name, zero) if name in present else zero).alias(name))
        else:
            zero = F.lit(0).cast("int")
            cols.append((F.coalesce(f.index_column, zero) if f.index_column in present else zero)
                        .alias(f.index_column))
    return cols


def _occurrences(train: DataFrame, side: DataFrame, key: str, attributes: dict[str, str]) -> DataFrame:
    """`feature, raw_id` once per train rating for each single-valued attribute the rated id has."""
    pairs = F.array(*(F.struct(F.lit(feature).alias("feature"), F.col(column).alias("raw_id"))
                      for feature, column in attributes.items()))
    rated = train.select(key).join(F.broadcast(side), key)
    return rated.select(F.explode(pairs).alias("p")).select("p.feature", "p.raw_id")


def side_vocab(train: DataFrame, side: SideFiles) -> DataFrame | None:
    """feature_vocab rows from the train ratings: per feature, index 1..n, most ratings first, ties by raw_id."""
    parts = []
    if side.users is not None:
        parts.append(_occurrences(train, side.users, "user_id", USER_ATTRIBUTES))
    if side.movies is not None:
        parts.append(_occurrences(train, side.movies, "item_id", ITEM_ATTRIBUTES))
        rated = train.select("item_id").join(F.broadcast(side.movies), "item_id")
        parts.append(rated.select(F.lit(ITEM_GENRES).alias("feature"), F.explode("genres").alias("raw_id")))
    if not parts:
        return None
    occurrences = parts[0]
    for part in parts[1:]:
        occurrences = occurrences.unionByName(part)
    counts = occurrences.where(F.col("raw_id").isNotNull()).groupBy("feature", "raw_id").agg(
        F.count(F.lit(1)).alias("impressions"))
    order = Window.partitionBy("feature").orderBy(F.col("impressions").desc(), "raw_id")
    return counts.select("feature", "raw_id", F.row_number().over(order).cast("int").alias("index"), "impressions")


def _lookup(side: DataFrame, vocab: DataFrame, key: str, attributes: dict[str, str]) -> DataFrame:
    """`key` and one `<feature>_index` per attribute (null where the value is missing or not in the vocabulary)."""
    out = side.select(key, *attributes.values())
    for feature, column in attributes.items():
        v = vocab.where(F.col("feature") == feature).select(
            F.col("raw_id").alias(column), F.col("index").alias(BY_NAME[feature].index_column))
        out = out.join(F.broadcast(v), column, "left")
    return out.select(key, *(BY_NAME[f].index_column for f in attributes))


def user_features(side: SideFiles, vocab: DataFrame) -> DataFrame:
    """One row per user of the user file: `user_id` and the indices of USER_ATTRIBUTES' features."""
    return _lookup(side.users, vocab, "user_id", USER_ATTRIBUTES)


def item_features(side: SideFiles, vocab: DataFrame, length: int) -> DataFrame:
    """One row per movie of the movie file: `item_id`, ITEM_ATTRIBUTES' indices and the genre arrays.

    The genres keep the known ones in raw_id order (the filter's tie order: every weight is
    1.0), at most `length`, padded with index 0 and weight 0.0 to exactly `length`.
    """
    field = BY_NAME[ITEM_GENRES]
    known = vocab.where(F.col("feature") == ITEM_GENRES).select(F.col("raw_id").alias("genre"), "index")
    top = (side.movies.select("item_id", F.explode("genres").alias("genre"))
           .join(F.broadcast(known), "genre")
           .groupBy("item_id")
           .agg(F.slice(F.array_sort(F.collect_list(F.struct("genre", "index"))), 1, length).alias("top")))
    pad = F.lit(length) - F.size("top")
    arrays = top.select(
        "item_id",
        F.concat(F.transform("top", lambda t: t["index"]), F.array_repeat(F.lit(0), pad)).alias(field.ids_column),
        F.concat(F.array_repeat(F.lit(1.0).cast("float"), F.size("top")),
                 F.array_repeat(F.lit(0.0).cast("float"), pad)).alias(field.weights_column),
    )
    return _lookup(side.movies, vocab, "item_id", ITEM_ATTRIBUTES).join(arrays, "item_id", "left")


def _with_side(rows: DataFrame, features: DataFrame | None, key: str) -> tuple[DataFrame, frozenset[str]]:
    """rows left-joined with a feature table on `key`, and the feature columns it brought."""
    if features is None:
        return rows, frozenset()
    return rows.join(F.broadcast(features), key, "left"), frozenset(c for c in features.columns if c != key)


def interactions(rows: DataFrame, user_vocab: DataFrame, item_vocab: DataFrame, history_length: int,
                 intention_length: int, users: DataFrame | None = None, items: DataFrame | None = None) -> DataFrame:
    """Rows in the train/test_interactions schema.

    Args:
        users, items: user_features / item_features (None: that tower's side features are 0).
    """
    joined = (rows.join(F.broadcast(user_vocab.select("user_id", "user_index")), "user_id", "left")
              .join(F.broadcast(item_vocab.select("item_id", "item_index")), "item_id", "left"))
    joined, user_cols = _with_side(joined, users, "user_id")
    joined, item_cols = _with_side(joined, items, "item_id")
    cols = [
        "sample_id", "user_id", "item_id",
        F.coalesce("user_index", F.lit(0)).cast("int").alias("user_index"),
        F.coalesce("item_index", F.lit(0)).cast("int").alias("item_index"),
        F.col("user_index").isNull().alias("is_cold_user"),
        F.col("item_index").isNull().alias("is_cold_item"),
    ]
    return joined.select(*cols, *_side_columns(QUERY, history_length, user_cols),
                         *_side_columns(CANDIDATE, intention_length, item_cols))


def _materialized(df: DataFrame | None) -> DataFrame | None:
    """df computed once and cached: the small side tables feed four of the five tables."""
    if df is not None:
        df.cache().count()
    return df


def build_tables(spark: SparkSession, train: DataFrame, test: DataFrame, history_length: int,
                 intention_length: int, side: SideFiles = SideFiles()) -> dict[str, DataFrame]:
    """The five tables from a train/test split of the ratings (and the side files, if any)."""
    vocab = _materialized(side_vocab(train, side))
    users = _materialized(user_features(side, vocab) if side.users is not None else None)
    items = _materialized(item_features(side, vocab, intention_length) if side.movies is not None else None)
    user_vocab = _vocab(train, "user_id", "user_index")
    item_vocab, item_cols = _with_side(_vocab(train, "item_id", "item_index"), items, "item_id")
    item_vocab = item_vocab.select("item_id", "item_index", "impressions", "clicks", "conversions",
                                   *_side_columns(CANDIDATE, intention_length, item_cols))
    return {
        T.USER_VOCAB.name: user_vocab,
        T.ITEM_VOCAB.name: item_vocab,
        T.FEATURE_VOCAB.name: vocab if vocab is not None else spark.createDataFrame([], FEATURE_VOCAB_SCHEMA),
        T.TRAIN_INTERACTIONS.name: interactions(train, user_vocab, item_vocab, history_length, intention_length,
                                                users, items),
        T.TEST_INTERACTIONS.name: interactions(test, user_vocab, item_vocab, history_length, intention_length,
                                               users, items),
    }
