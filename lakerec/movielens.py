"""MovieLens ratings -> the lake's vocabulary and interaction tables (docs/tables.md).

Reads a ratings file a user downloaded from GroupLens:
    100K  `u.data`       user \\t item \\t rating \\t timestamp
    1M    `ratings.dat`  user::item::rating::timestamp
(the format is told by the first line, not the name), treats every rating as a positive
(as the TFRS basic-retrieval tutorial does), splits it into train and test, and writes
user_vocab, item_vocab, feature_vocab, train_interactions and test_interactions into
their own database, so `lakerec.jobs.train` and `lakerec.jobs.evaluate` run on them unchanged. Side
features do not exist here: their index columns are 0 and their arrays all 0 (train with
`--features ids`).

Splits:
    random  a seeded random (1 - f) / f split of the ratings (default f = 0.2, seed 42: the
            tutorial's protocol). Deterministic: rows are ordered by a hash of
            (user, item, timestamp, seed), independent of Spark's partitioning.
    time    the oldest (1 - f) of the ratings train, the newest f test.
Vocabularies come from the train split only; test rows of users or items not in it are
cold (index 0, `is_cold_*` true).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakerec.config import Config
from lakerec.errors import ConfigError, InputDataError
from lakerec.schema import tables as T
from lakerec.schema.fields import CANDIDATE, QUERY, side_features
from lakerec.tables import write_table

log = logging.getLogger("lakerec.movielens")

SPLIT_METHODS = ("random", "time")
SPLIT_PROPERTY = "lakerec.split"
SEPARATORS = {"::": "1M (ratings.dat)", "\t": "100K (u.data)"}
DOWNLOAD_HINT = "download ml-100k.zip or ml-1m.zip from https://grouplens.org/datasets/movielens/ and unzip it"

FEATURE_VOCAB_SCHEMA = T.FEATURE_VOCAB.ddl
INTERACTION_TABLES = tuple(t.name for t in T.INTERACTIONS.values())


@dataclass(frozen=True)
class LoadSummary:
    ratings: int
    train: int
    test: int
    users: int
    items: int
    cold_test_rows: int
    split: str
    database: str


def detect_separator(path: Path) -> str:
    """'::' (1M) or a tab (100K), from the first non-empty line."""
    with open(path, "r", encoding="latin-1") as f:
        for line in f:
            if line.strip():
                for sep in SEPARATORS:
                    if sep in line:
                        return sep
                raise InputDataError(
                    f"{path}: the first line {line.strip()[:80]!r} is neither MovieLens 100K "
                    "(user<TAB>item<TAB>rating<TAB>timestamp) nor 1M (user::item::rating::timestamp)"
                )
    raise InputDataError(f"{path} is empty: {DOWNLOAD_HINT}")


def read_ratings(spark: SparkSession, path: str | Path) -> DataFrame:
    """The ratings as `user_id, item_id bigint, rating double, timestamp bigint`.

    Raises:
        InputDataError: the file is missing, empty, or has lines that are not 4 numbers.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise InputDataError(f"ratings file {p} not found: {DOWNLOAD_HINT} and pass --ratings PATH/u.data")
    sep = detect_separator(p)
    raw = spark.read.text(p.as_uri()).where(F.trim("value") != "")
    parts = F.split(F.col("value"), "::" if sep == "::" else "\t")
    parsed = raw.select(
        "value",
        F.size(parts).alias("n"),
        parts.getItem(0).cast("bigint").alias("user_id"),
        parts.getItem(1).cast("bigint").alias("item_id"),
        parts.getItem(2).cast("double").alias("rating"),
        parts.getItem(3).cast("bigint").alias("timestamp"),
    )
    bad = parsed.where(
        (F.col("n") != 4) | F.col("user_id").isNull() | F.col("item_id").isNull()
        | F.col("rating").isNull() | F.col("timestamp").isNull()
    )
    first_bad = bad.select("value").limit(1).collect()
    if first_bad:
        raise InputDataError(
            f"{p}: {bad.count()} line(s) are not {SEPARATORS[sep]} ratings "
            f"(user, item, rating, timestamp separated by {sep!r}), e.g. {first_bad[0][0][:80]!r}"
        )
    return parsed.select("user_id", "item_id", "rating", "timestamp")


def split_ratings(ratings: DataFrame, split: str = "random", test_fraction: float = 0.2,
                  seed: int = 42) -> tuple[DataFrame, DataFrame]:
    """(train, test) with a `sample_id` (1..n in the split's order) on every row."""
    if split not in SPLIT_METHODS:
        raise ConfigError(f"--split must be one of {', '.join(SPLIT_METHODS)}, got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    key = F.xxhash64("user_id", "item_id", "timestamp", F.lit(seed))
    order = [key] if split == "random" else [F.col("timestamp"), key]
    n = ratings.count()
    n_train = int(round(n * (1.0 - test_fraction)))
    # One global order (MovieLens fits one partition easily): exactly n_train train rows.
    numbered = ratings.withColumn("sample_id", F.row_number().over(Window.orderBy(*order)).cast("bigint"))
    return numbered.where(F.col("sample_id") <= n_train), numbered.where(F.col("sample_id") > n_train)


def _vocab(train: DataFrame, key: str, index: str) -> DataFrame:
    counts = train.groupBy(key).agg(F.count(F.lit(1)).alias("impressions"))
    return counts.select(
        key,
        F.row_number().over(Window.orderBy(key)).cast("int").alias(index),
        "impressions",
        F.col("impressions").alias("clicks"),
        F.lit(0).cast("bigint").alias("conversions"),
    )


def _zeros(length: int, dtype: str):
    return F.array_repeat(F.lit(0).cast(dtype), length)


def _zero_features(tower: str, length: int) -> list:
    """A tower's side-feature columns (lakerec.schema.fields), all 0: indices, then 0-arrays of `length`.

    Ali-CCP's side features have no MovieLens counterpart; the tables still carry their
    columns, so the filter's schema (and the model code) holds unchanged.
    """
    cols = []
    for f in side_features(tower):
        if f.multi:
            cols += [_zeros(length, "int").alias(f.ids_column), _zeros(length, "float").alias(f.weights_column)]
        else:
            cols.append(F.lit(0).cast("int").alias(f.index_column))
    return cols


def _item_side(intention_length: int) -> list:
    return _zero_features(CANDIDATE, intention_length)


def interactions(rows: DataFrame, user_vocab: DataFrame, item_vocab: DataFrame, history_length: int,
                 intention_length: int) -> DataFrame:
    """Rows in the train/test_interactions schema (side features all 0)."""
    users = user_vocab.select("user_id", "user_index")
    items = item_vocab.select("item_id", "item_index")
    joined = rows.join(F.broadcast(users), "user_id", "left").join(F.broadcast(items), "item_id", "left")
    cols = [
        "sample_id", "user_id", "item_id",
        F.coalesce("user_index", F.lit(0)).cast("int").alias("user_index"),
        F.coalesce("item_index", F.lit(0)).cast("int").alias("item_index"),
        F.col("user_index").isNull().alias("is_cold_user"),
        F.col("item_index").isNull().alias("is_cold_item"),
    ]
    return joined.select(*cols, *_zero_features(QUERY, history_length), *_item_side(intention_length))


def build_tables(spark: SparkSession, train: DataFrame, test: DataFrame, history_length: int,
                 intention_length: int) -> dict[str, DataFrame]:
    """The five tables from a train/test split of the ratings."""
    user_vocab = _vocab(train, "user_id", "user_index")
    item_vocab = _vocab(train, "item_id", "item_index").select("*", *_item_side(intention_length))
    return {
        T.USER_VOCAB.name: user_vocab,
        T.ITEM_VOCAB.name: item_vocab,
        T.FEATURE_VOCAB.name: spark.createDataFrame([], FEATURE_VOCAB_SCHEMA),
        T.TRAIN_INTERACTIONS.name: interactions(train, user_vocab, item_vocab, history_length, intention_length),
        T.TEST_INTERACTIONS.name: interactions(test, user_vocab, item_vocab, history_length, intention_length),
    }


def load(spark: SparkSession, cfg: Config, ratings_path: str | Path, split: str = "random",
         test_fraction: float = 0.2, seed: int = 42) -> LoadSummary:
    """Read, split and write the MovieLens tables into cfg.database.

    Returns:
        Counts for the summary line.
    """
    ratings = read_ratings(spark, ratings_path).cache()
    n = ratings.count()
    if n < 2:
        raise InputDataError(f"{ratings_path} holds {n} rating(s): too few to split into train and test")
    train, test = split_ratings(ratings, split, test_fraction, seed)
    tables = build_tables(spark, train, test, cfg.filter.history_length, cfg.filter.item_intention_length)
    tag = f"{split}:{test_fraction:g}:{seed}"

    def write(name: str) -> None:
        write_table(tables[name], cfg.table(name))
        if name in INTERACTION_TABLES:  # the split travels with the table
            spark.sql(f"ALTER TABLE {cfg.table(name)} SET TBLPROPERTIES ('{SPLIT_PROPERTY}' = '{tag}')")

    # Five independent writes of small tables: Spark runs them side by side.
    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
        list(pool.map(write, tables))
    ratings.unpersist()
    counts = spark.table(cfg.table(T.TEST_INTERACTIONS.name)).agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(F.col("is_cold_user") | F.col("is_cold_item"), 1).otherwise(0)).alias("cold"),
    ).first()
    return LoadSummary(
        ratings=n,
        train=spark.table(cfg.table(T.TRAIN_INTERACTIONS.name)).count(),
        test=int(counts["rows"]),
        users=spark.table(cfg.table(T.USER_VOCAB.name)).count(),
        items=spark.table(cfg.table(T.ITEM_VOCAB.name)).count(),
        cold_test_rows=int(counts["cold"] or 0),
        split=tag,
        database=cfg.database,
    )
