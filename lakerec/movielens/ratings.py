"""MovieLens ratings files (100K `u.data`, 1M `ratings.dat`): their format, reading and the train/test split.

lakerec.movielens's docstring says what the split methods do.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec.errors import ConfigError, InputDataError
from lakerec.tables import with_row_numbers

SPLIT_METHODS = ("random", "time")
SPLIT_PROPERTY = "lakerec.split"
SEPARATORS = {"::": "1M (ratings.dat)", "\t": "100K (u.data)"}
DOWNLOAD_HINT = "download ml-100k.zip or ml-1m.zip from https://grouplens.org/datasets/movielens/ and unzip it"


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
    # One global order, numbered without a single-partition window: exactly n_train train rows.
    numbered = with_row_numbers(ratings, order, "sample_id")
    return numbered.where(F.col("sample_id") <= n_train), numbered.where(F.col("sample_id") > n_train)
