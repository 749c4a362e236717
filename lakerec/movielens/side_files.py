"""MovieLens side files (100K `u.user`/`u.item`, 1M `users.dat`/`movies.dat`) parsed into raw ids.

What each attribute becomes (which side feature, which raw_id) is in lakerec.movielens's docstring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakerec.errors import InputDataError
from lakerec.movielens.ratings import DOWNLOAD_HINT, detect_separator
from lakerec.schema.fields import BY_NAME, CANDIDATE, QUERY, side_features

log = logging.getLogger("lakerec.movielens")

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
# lakerec.movielens's docstring says why; side features named nowhere here stay 0.
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
