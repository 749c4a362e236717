"""MovieLens ratings (and side files) -> the lake's vocabulary and interaction tables (docs/tables.md).

Reads a ratings file a user downloaded from GroupLens:
    100K  `u.data`       user \\t item \\t rating \\t timestamp
    1M    `ratings.dat`  user::item::rating::timestamp
(the format is told by the first line, not the name), treats every rating as a positive
(as the TFRS basic-retrieval tutorial does), splits it into train and test, and writes
user_vocab, item_vocab, feature_vocab, train_interactions and test_interactions into
their own database, so `lakerec.jobs.train` and `lakerec.jobs.evaluate` run on them unchanged.

Side features come from the files GroupLens ships beside the ratings, when they are there:
    100K  `u.user`      user id | age | gender | occupation | zip code
          `u.item`      movie id | title | release date | video release date | IMDb URL | 19 genre flags
    1M    `users.dat`   UserID::Gender::Age::Occupation::Zip-code
          `movies.dat`  MovieID::Title (Year)::Genres (`|`-separated)
(latin-1). They fill columns the towers already read (the Ali-CCP field registry,
lakerec.schema.fields, names them):

    MovieLens attribute                    column (feature_vocab.feature)      raw_id
    age (100K years bucketed into 1M's     user_age_index (user_age)           1, 18, 25, 35, 45, 50, 56
      groups: <18, 18-24, ..., 56+)
    gender                                 user_gender_index (user_gender)     1 = M, 2 = F
    occupation                             user_is_occupied_index              1M: its code 0..20; 100K: the
                                             (user_is_occupied)                  1-based line of u.occupation
    zip code, first character              user_geography_index                '0'..'9' -> 0..9, a letter
      (a US ZIP's national area)             (user_geography)                    (Canada) -> 10..35
    release decade                         item_category_index (item_category) 1990 for 1990..1999
    release year                           item_brand_index (item_brand)       the year
    genres                                 item_intention_ids/_weights          GENRES position 1..18
                                             (item_intention)                    (weights 1.0)

The other side columns (user_profile, user_group, user_consumption(_2), the user history
arrays, item_shop) have no MovieLens counterpart and stay 0. The reuse is sound because
the towers give every `<name>_index` column its own embedding table, sized from the data
by build_spec, and mean-pool every `<name>_ids`/`_weights` pair: no code reads a column's
name for its meaning. Each column holds one attribute (no two share a vocabulary), and
genres take the one multi-valued item field, unweighted in Ali-CCP too (weight 1.0).
Decade and year both go in: the decade lets the few movies of a rare year share an
embedding. The zip's first character (10 US areas) rather than 3 (hundreds of areas,
most with a handful of users) keeps the vocabulary dense enough to learn.

Vocabularies are built as the filter builds them: per feature, index 1..n over the train
ratings, most ratings first, ties by raw_id; 0 = missing, unknown or seen only in test.
A user or movie that the side file lacks gets 0 everywhere (counted and logged); a side
file that is not there leaves its tower's side features 0, as with the ratings alone
(train with `--features ids`). A side file with a line that does not parse stops the load
with the file and the line number.

Splits:
    random  a seeded random (1 - f) / f split of the ratings (default f = 0.2, seed 42: the
            tutorial's protocol). Deterministic: rows are ordered by a hash of
            (user, item, timestamp, seed), independent of Spark's partitioning.
    time    the oldest (1 - f) of the ratings train, the newest f test.
Vocabularies come from the train split only; test rows of users or items not in it are
cold (index 0, `is_cold_*` true); their side features are still looked up.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec import lake_runs
from lakerec.config import Config
from lakerec.errors import InputDataError
from lakerec.movielens.ratings import (DOWNLOAD_HINT, SEPARATORS, SPLIT_METHODS, SPLIT_PROPERTY, detect_separator,
                                       read_ratings, split_ratings)
from lakerec.movielens.side_files import (AGE_GROUPS, ENCODING, GENDERS, GENRES, ITEM_ATTRIBUTES, ITEM_GENRES,
                                          MOVIES_FILE, MOVIES_FORMAT, OCCUPATIONS_100K, USER_ATTRIBUTES, USERS_FILE,
                                          USERS_FORMAT, SideFiles, read_lines, read_movies, read_side_files,
                                          read_users)
from lakerec.movielens.tables import (FEATURE_VOCAB_SCHEMA, build_tables, interactions, item_features, side_vocab,
                                      user_features)
from lakerec.schema import tables as T
from lakerec.tables import write_table

__all__ = [
    # the stage
    "LoadSummary", "load", "INTERACTION_TABLES",
    # lakerec.movielens.ratings
    "SPLIT_METHODS", "SPLIT_PROPERTY", "SEPARATORS", "DOWNLOAD_HINT", "detect_separator", "read_ratings",
    "split_ratings",
    # lakerec.movielens.side_files
    "USERS_FILE", "MOVIES_FILE", "USERS_FORMAT", "MOVIES_FORMAT", "ENCODING", "GENRES", "OCCUPATIONS_100K",
    "AGE_GROUPS", "GENDERS", "USER_ATTRIBUTES", "ITEM_ATTRIBUTES", "ITEM_GENRES", "SideFiles", "read_lines",
    "read_users", "read_movies", "read_side_files",
    # lakerec.movielens.tables
    "FEATURE_VOCAB_SCHEMA", "side_vocab", "user_features", "item_features", "interactions", "build_tables",
]

log = logging.getLogger("lakerec.movielens")

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
    side_files: tuple[str, ...] = ()  # the side files read (names), empty when none sat beside the ratings
    users_without_features: int = 0  # rated users the user file lacks (0 when there is no user file)
    items_without_features: int = 0  # rated movies the movie file lacks


def _without_features(ratings: DataFrame, side: DataFrame | None, key: str, what: str, path: Path | None) -> int:
    """Distinct rated ids the side file lacks (logged; 0 when there is no side file)."""
    if side is None:
        return 0
    n = ratings.select(key).distinct().join(side.select(key), key, "left_anti").count()
    if n:
        log.warning("%d rated %s are not in %s: their side features are 0", n, what, path)
    return n


def load(spark: SparkSession, cfg: Config, ratings_path: str | Path, split: str = "random",
         test_fraction: float = 0.2, seed: int = 42) -> LoadSummary:
    """Read, split and write the MovieLens tables into cfg.database (side files too, if beside the ratings).

    Returns:
        Counts for the summary line.
    """
    ratings = read_ratings(spark, ratings_path).cache()
    n = ratings.count()
    if n < 2:
        raise InputDataError(f"{ratings_path} holds {n} rating(s): too few to split into train and test")
    side = read_side_files(spark, ratings_path)
    users_missing = _without_features(ratings, side.users, "user_id", "users", side.users_path)
    items_missing = _without_features(ratings, side.movies, "item_id", "movies", side.movies_path)
    train, test = split_ratings(ratings, split, test_fraction, seed)
    tables = build_tables(spark, train, test, cfg.filter.history_length, cfg.filter.item_intention_length, side)
    tag = f"{split}:{test_fraction:g}:{seed}"

    def write(name: str) -> None:
        write_table(tables[name], cfg.table(name))
        if name in INTERACTION_TABLES:  # the split travels with the table
            spark.sql(f"ALTER TABLE {cfg.table(name)} SET TBLPROPERTIES ('{SPLIT_PROPERTY}' = '{tag}')")

    # Five independent writes of small tables: Spark runs them side by side, as one recorded run.
    with lake_runs.recorded(spark, cfg, T.MOVIELENS, scope=tag), ThreadPoolExecutor(max_workers=len(tables)) as pool:
        list(pool.map(write, tables))
    ratings.unpersist()
    for df in (side.users, side.movies):
        if df is not None:
            df.unpersist()
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
        side_files=side.names,
        users_without_features=users_missing,
        items_without_features=items_missing,
    )
