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

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakerec.config import Config
from lakerec.errors import ConfigError, InputDataError
from lakerec.schema import tables as T
from lakerec.schema.fields import BY_NAME, CANDIDATE, QUERY, side_features
from lakerec.tables import write_table

log = logging.getLogger("lakerec.movielens")

SPLIT_METHODS = ("random", "time")
SPLIT_PROPERTY = "lakerec.split"
SEPARATORS = {"::": "1M (ratings.dat)", "\t": "100K (u.data)"}
DOWNLOAD_HINT = "download ml-100k.zip or ml-1m.zip from https://grouplens.org/datasets/movielens/ and unzip it"

FEATURE_VOCAB_SCHEMA = T.FEATURE_VOCAB.ddl
INTERACTION_TABLES = tuple(t.name for t in T.INTERACTIONS.values())

# --------------------------------------------------------------------------- side files

# The side files of each ratings format (by its separator), and what one line holds.
USERS_FILE = {"\t": "u.user", "::": "users.dat"}
MOVIES_FILE = {"\t": "u.item", "::": "movies.dat"}
USERS_FORMAT = {"\t": "user id | age | gender | occupation | zip code",
                "::": "UserID::Gender::Age::Occupation::Zip-code"}
MOVIES_FORMAT = {"\t": "movie id | title | release date | video release date | IMDb URL | 19 genre flags (0/1)",
                 "::": "MovieID::Title (Year)::Genre|Genre|..."}
ENCODING = "ISO-8859-1"  # GroupLens writes latin-1 (titles such as "Cité des enfants perdus")

# u.item's 19 genre flags in order (u.genre); movies.dat spells the same names without "unknown".
# A genre's raw_id is its position here; "unknown" (0) is no genre.
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
# u.occupation, in order: a 100K occupation's raw_id is its 1-based line there (1M's file holds codes).
OCCUPATIONS_100K = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
                    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
                    "retired", "salesman", "scientist", "student", "technician", "writer")
# 1M's age groups (each code is its group's lowest age); 100K ages in years fall into the same groups.
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)
GENDERS = {"M": 1, "F": 2}

# Which parsed attribute fills which side feature (a field of lakerec.schema.fields). The
# module docstring says why; side features named nowhere here stay 0.
USER_ATTRIBUTES = {"user_age": "age", "user_gender": "gender", "user_is_occupied": "occupation",
                   "user_geography": "zip_region"}
ITEM_ATTRIBUTES = {"item_category": "decade", "item_brand": "year"}
ITEM_GENRES = "item_intention"  # multi-valued: the movie's genres, weight 1.0 each


def _check_mapping() -> None:
    """The mapping names side features of the right tower and shape (a registry change shows here)."""
    wanted = [(n, QUERY, False) for n in USER_ATTRIBUTES] + [(n, CANDIDATE, False) for n in ITEM_ATTRIBUTES]
    wanted.append((ITEM_GENRES, CANDIDATE, True))
    for name, tower, multi in wanted:
        f = BY_NAME.get(name)
        if f is None or f not in side_features(tower, multi=multi):
            raise RuntimeError(f"MovieLens maps onto {name}, which is not a {'multi' if multi else 'single'}-valued "
                               f"{tower} side feature of lakerec.schema.fields")


_check_mapping()


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


def read_lines(spark: SparkSession, path: Path) -> DataFrame:
    """The non-empty lines of a latin-1 text file as `line_number bigint` (1-based), `line string`.

    Read whole (side files are kilobytes), so every line keeps its number for error messages.
    """
    content = spark.read.format("binaryFile").load(path.as_uri()).select(F.decode("content", ENCODING).alias("text"))
    lines = content.select(F.posexplode(F.split("text", "\r?\n")).alias("pos", "line"))
    return lines.where(F.trim("line") != "").select((F.col("pos") + 1).cast("bigint").alias("line_number"), "line")


def _raise_first_problem(parsed: DataFrame, path: Path, expected: str) -> None:
    """InputDataError naming the first line whose `problem` is set (one Spark job), else nothing."""
    bad = parsed.where(F.col("problem").isNotNull())
    row = bad.agg(F.count(F.lit(1)).alias("n"), F.min(F.struct("line_number", "problem", "line")).alias("first")).first()
    if row["n"]:
        first = row["first"]
        raise InputDataError(
            f"{path} line {first['line_number']}: {first['problem']} in {first['line'][:100]!r} "
            f"({row['n']} bad line(s) in all); each line must be `{expected}`: {DOWNLOAD_HINT} again"
        )


def _problems(*checks) -> F.Column:
    """The first (condition, message) whose condition holds, else null."""
    out = F.lit(None).cast("string")
    for cond, message in reversed(checks):
        out = F.when(cond, F.lit(message)).otherwise(out)
    return out


def _is_int(c: F.Column) -> F.Column:
    return F.trim(c).rlike("^[0-9]+$")


def _duplicates(df: DataFrame, key: str) -> F.Column:
    """True on every line after the first that repeats `key`."""
    return F.row_number().over(Window.partitionBy(key).orderBy("line_number")) > 1


def _positions(names: tuple[str, ...], first: int = 0) -> F.Column:
    """A literal map name -> position (from `first`): element_at(it, name) is null for an unknown name."""
    return F.create_map(*(x for i, n in enumerate(names, first) for x in (F.lit(n), F.lit(i))))


def _age_group(age: F.Column) -> F.Column:
    """Years (100K) or a 1M age code -> the 1M group's code (both formats share one vocabulary)."""
    out = F.lit(AGE_GROUPS[0])
    for lowest in AGE_GROUPS[1:]:
        out = F.when(age >= lowest, F.lit(lowest)).otherwise(out)
    return out.cast("bigint")


def read_users(spark: SparkSession, path: Path, sep: str) -> DataFrame:
    """u.user (sep TAB: the 100K format) or users.dat ('::') as raw ids per user.

    Returns:
        `user_id, age, gender, occupation, zip_region` (bigint; null = missing), one row per user.

    Raises:
        InputDataError: a line without 5 fields, a non-numeric id, age or (1M) occupation, a
            gender other than M/F, or a user id given twice; the message names the line.
    """
    parts = F.split("line", "\\|" if sep == "\t" else "::")
    if sep == "\t":
        uid, age, gender, occupation, zipcode = (parts.getItem(i) for i in range(5))
        occupation_ok = F.lit(True)
        occupation_id = F.element_at(_positions(OCCUPATIONS_100K, first=1), F.lower(F.trim(occupation)))
    else:
        uid, gender, age, occupation, zipcode = (parts.getItem(i) for i in range(5))
        occupation_ok = _is_int(occupation)
        occupation_id = F.trim(occupation)
    lines = read_lines(spark, path).select("line_number", "line", F.size(parts).alias("n"), uid.alias("uid"),
                                             age.alias("age"), F.upper(F.trim(gender)).alias("gender"),
                                             occupation.alias("occupation"), occupation_ok.alias("occupation_ok"),
                                             occupation_id.alias("occupation_id"), F.trim(zipcode).alias("zip"))
    checked = lines.select("*", _problems(
        (F.col("n") != 5, "not 5 fields"),
        (~_is_int(F.col("uid")), "the user id is not a number"),
        (~_is_int(F.col("age")), "the age is not a number"),
        (~F.col("gender").isin(*GENDERS), "the gender is not M or F"),
        (~F.col("occupation_ok"), "the occupation is not a number"),
    ).alias("problem"))
    checked = checked.select(
        "*", F.when(F.col("problem").isNull(), F.trim("uid").cast("bigint")).alias("user_id"))
    checked = checked.withColumn("problem", F.coalesce(
        "problem", F.when(_duplicates(checked, "user_id"), F.lit("the user id appears on an earlier line"))))
    _raise_first_problem(checked, path, USERS_FORMAT[sep])
    gender_id = F.when(F.col("gender") == "M", GENDERS["M"]).otherwise(GENDERS["F"])
    first = F.upper(F.substring("zip", 1, 1))
    return checked.select(
        "user_id",
        _age_group(F.trim("age").cast("bigint")).alias("age"),
        gender_id.cast("bigint").alias("gender"),
        F.col("occupation_id").cast("bigint").alias("occupation"),
        F.when(first.rlike("^[0-9A-Z]$"), F.conv(first, 36, 10).cast("bigint")).alias("zip_region"),
    )


def read_movies(spark: SparkSession, path: Path, sep: str) -> DataFrame:
    """u.item (sep TAB: the 100K format) or movies.dat ('::') as raw ids per movie.

    Returns:
        `item_id, year, decade` (bigint; null = missing), `genres array<bigint>` (GENRES
        positions, ascending, without "unknown") and `unknown_genres int` (1M names not in
        GENRES, ignored), one row per movie.

    Raises:
        InputDataError: a line with the wrong number of fields, a non-numeric movie id, a
            genre flag other than 0/1 (100K), or a movie id given twice; the message names the line.
    """
    if sep == "\t":
        parts = F.split("line", "\\|")
        n_fields = 5 + len(GENRES)
        flags = F.slice(parts, 6, len(GENRES))
        year = F.regexp_extract(F.trim(parts.getItem(2)), r"(\d{4})$", 1)
        genres = F.filter(F.transform(F.sequence(F.lit(1), F.lit(len(GENRES) - 1)),
                                      lambda i: F.when(F.element_at(flags, i + 1) == "1", i)),
                          lambda g: g.isNotNull())
        unknown = F.lit(0)
        flags_ok = F.forall(flags, lambda f: f.isin("0", "1"))
        expected_fields = f"not {n_fields} fields"
    else:
        parts = F.split("line", "::")
        n_fields = 3
        year = F.regexp_extract(F.trim(parts.getItem(1)), r"\((\d{4})\)$", 1)
        positions = F.transform(F.split(F.trim(parts.getItem(2)), "\\|"),
                                lambda g: F.coalesce(F.element_at(_positions(GENRES), F.trim(g)), F.lit(-1)))
        genres = F.array_sort(F.array_distinct(F.filter(positions, lambda g: g > 0)))
        unknown = F.size(F.filter(positions, lambda g: g < 0))
        flags_ok = F.lit(True)
        expected_fields = "not 3 fields"
    lines = read_lines(spark, path).select(
        "line_number", "line", F.size(parts).alias("n"), parts.getItem(0).alias("mid"),
        F.when(F.size(parts) == n_fields, flags_ok).alias("flags_ok"),
        F.when(year != "", year.cast("bigint")).alias("year"),
        F.when(F.size(parts) == n_fields, genres).alias("genres"),
        F.when(F.size(parts) == n_fields, unknown).alias("unknown_genres"),
    )
    checked = lines.select("*", _problems(
        (F.col("n") != n_fields, expected_fields),
        (~_is_int(F.col("mid")), "the movie id is not a number"),
        (~F.col("flags_ok"), "a genre flag is not 0 or 1"),
    ).alias("problem"))
    checked = checked.select("*", F.when(F.col("problem").isNull(), F.trim("mid").cast("bigint")).alias("item_id"))
    checked = checked.withColumn("problem", F.coalesce(
        "problem", F.when(_duplicates(checked, "item_id"), F.lit("the movie id appears on an earlier line"))))
    _raise_first_problem(checked, path, MOVIES_FORMAT[sep])
    return checked.select("item_id", "year", (F.floor(F.col("year") / 10) * 10).cast("bigint").alias("decade"),
                          F.col("genres").cast("array<bigint>").alias("genres"),
                          F.col("unknown_genres").cast("int").alias("unknown_genres"))


@dataclass(frozen=True)
class SideFiles:
    """The parsed side files (None: not beside the ratings) and where they were read from."""

    users: DataFrame | None = None
    movies: DataFrame | None = None
    users_path: Path | None = None
    movies_path: Path | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(q.name for q in (self.users_path, self.movies_path) if q is not None)


def read_side_files(spark: SparkSession, ratings_path: str | Path) -> SideFiles:
    """The user and movie files beside a ratings file, in its format (u.user/u.item, users.dat/movies.dat).

    A file that is not there is logged (once, both names in one line) and left None.
    """
    p = Path(ratings_path).expanduser().resolve()
    sep = detect_separator(p)
    users_path, movies_path = p.parent / USERS_FILE[sep], p.parent / MOVIES_FILE[sep]
    missing = [q.name for q in (users_path, movies_path) if not q.is_file()]
    if missing:
        towers = "user and item" if len(missing) == 2 else "user" if users_path.name in missing else "item"
        log.warning("%s not found beside %s: %s side features are 0%s (the GroupLens zip holds %s)",
                    " and ".join(missing), p.name, towers, "; train with --features ids" if len(missing) == 2 else "",
                    "them" if len(missing) == 2 else "it")
    users = read_users(spark, users_path, sep).cache() if users_path.is_file() else None
    movies = read_movies(spark, movies_path, sep).cache() if movies_path.is_file() else None
    if movies is not None:
        unknown = movies.agg(F.sum("unknown_genres")).first()[0] or 0
        if unknown:
            log.warning("%s: %d genre name(s) are none of %s; those genres are ignored",
                        movies_path, unknown, ", ".join(GENRES[1:]))
    return SideFiles(users, movies, users_path if users is not None else None,
                     movies_path if movies is not None else None)


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

    # Five independent writes of small tables: Spark runs them side by side.
    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
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
