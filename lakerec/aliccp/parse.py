"""Parse raw Ali-CCP lines into typed columns with Spark SQL built-ins (no Python UDFs).

Every function here is a pure `DataFrame -> DataFrame` transform; `lakerec.ingest` chains
them. A parsed frame keeps `raw_line` and a `reason` column: null for a valid line, else the
first rule (lakerec.aliccp.reasons) the line breaks, checked in a fixed order so each bad
line gets exactly one, specific reason.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec.aliccp import reasons as R
from lakerec.schema.fields import (
    COMMON, COMMON_COLUMNS, FEATURE_SEP, FIELD_SEP, SKELETON, SKELETON_COLUMNS, VALUE_SEP, Field, fields_of,
)
from lakerec.schema.tables import OTHER_FEATURES, OTHER_FEATURES_TYPE

_SHAPE = f"^[^{FIELD_SEP}{VALUE_SEP}]+{FIELD_SEP}[^{FIELD_SEP}{VALUE_SEP}]*{VALUE_SEP}[^{FIELD_SEP}{VALUE_SEP}]*$"
_UINT = "^[0-9]+$"
_INT = "^-?[0-9]+$"


POSITION = ("path", "_block", "_mid")  # where a line is: its file, its read block, its id within the block's partition


def tag_lines(lines: DataFrame) -> DataFrame:
    """`spark.read.text(paths)` → `path, _block, _mid, raw_line`: each line's place, in one pass.

    Spark splits a file into blocks read in parallel; each row knows its block's start offset
    (the `_metadata` column) and gets an id that increases by one within a partition, so a
    line's number is the lines in earlier blocks of its file plus its place in its block
    (`number_lines`, from the per-block counts of `block_bases`). Nothing reads the files twice.
    """
    return lines.select(
        F.col("_metadata.file_path").alias("path"),
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().alias("_mid"),
        F.col("value").alias("raw_line"),
    )


def block_bases(blocks: list[tuple[str, int, int, int]]) -> tuple[list[tuple[str, int, int, int]], dict[str, int]]:
    """Per-block `(path, block, first id, lines)` → `(path, block, first id, lines before it)` and lines per file."""
    bases, per_file = [], {}
    for path, block, first, n in sorted(blocks):
        bases.append((path, block, first, per_file.get(path, 0)))
        per_file[path] = per_file.get(path, 0) + n
    return bases, per_file


def number_lines(spark: SparkSession, rows: DataFrame, bases: list[tuple[str, int, int, int]]) -> DataFrame:
    """Rows tagged by `tag_lines` (any subset) → the same rows with `line_number` (1-based, file order)."""
    base = spark.createDataFrame(bases or [("", 0, 0, 0)], "path string, _block bigint, _first bigint, _base bigint")
    return rows.join(F.broadcast(base), ["path", "_block"]).withColumn(
        "line_number", F.col("_base") + F.col("_mid") - F.col("_first") + 1
    ).drop("_first", "_base")


# A well-formed feature; a line whose whole feature_list matches _FAST_LIST needs no
# per-feature checks (the common case, and one regex pass instead of several per feature).
_NUMBER = "[-+]?(?:[0-9]+[.]?[0-9]*|[.][0-9]+)(?:[eE][-+]?[0-9]+)?"
_ONE = f"[^{FEATURE_SEP}{FIELD_SEP}{VALUE_SEP}]+{FIELD_SEP}-?[0-9]{{1,18}}{VALUE_SEP}{_NUMBER}"
_FAST_LIST = f"^(?:{_ONE}(?:{FEATURE_SEP}{_ONE})*+)?$"

# Why no typed array<struct> per line: Spark interprets a higher-order function's lambda
# (`transform(items, f -> struct(...))`) for every element, without code generation, and
# that lambda over every feature was the ingest's largest single cost (README "Where the
# ingest time goes"). A parsed frame keeps the validated `feature_list` text instead; each
# table takes what it needs of it with code-generated string functions (`array_position` +
# `get` for a single-valued field). The only lambdas left are cheap ones: the field codes of
# a line, a multi-valued field's features, and the rare line's other features.


def _items(feature_list: Column) -> Column:
    return F.when(feature_list == "", F.array().cast("array<string>")).otherwise(F.split(feature_list, FEATURE_SEP, -1))


def _codes(items: Column) -> Column:
    """Each feature's FIELD text, in line order."""
    return F.transform(items, lambda f: F.substring_index(f, FIELD_SEP, 1))


def _feature_id(feature: Column) -> Column:
    """`FIELD\x02ID\x03VALUE` → ID as bigint (null where not numeric)."""
    return F.substring_index(F.substring_index(feature, FIELD_SEP, -1), VALUE_SEP, 1).cast("bigint")


def _value(feature: Column) -> Column:
    """`FIELD\x02ID\x03VALUE` → VALUE as double (null where not numeric)."""
    return F.substring_index(feature, VALUE_SEP, -1).cast("double")


def _slow_feature_reason(items: Column) -> Column:
    """Which per-feature rule a line breaks first; only run on lines the fast check rejects."""
    id_text = lambda f: F.substring_index(F.substring_index(f, FIELD_SEP, -1), VALUE_SEP, 1)  # noqa: E731
    return (
        F.when(F.exists(items, lambda f: ~f.rlike(_SHAPE)), R.FEATURE_WITHOUT_SEPARATORS)
        .when(F.exists(items, lambda f: ~id_text(f).rlike(_INT) | _feature_id(f).isNull()), R.NON_NUMERIC_FEATURE_ID)
        .when(F.exists(items, lambda f: _value(f).isNull()), R.NON_NUMERIC_VALUE)
    )


def _repeats_a_single_field(codes: Column, single_codes: list[str]) -> Column:
    """A single-valued field (item_id, ...) occurs more than once in the line's field codes.

    Per code, its first place from the front and from the back (array_position over the
    codes and their reverse: code-generated, no lambda) are the same feature when it occurs once.
    """
    backwards = F.reverse(codes)
    repeated = [(F.array_position(codes, c) > 0)
                & (F.array_position(codes, c) + F.array_position(backwards, c) != F.size(codes) + 1)
                for c in single_codes]
    return reduce(lambda a, b: a | b, repeated, F.lit(False))


def _parse(lines: DataFrame, n_columns: int, header_rules: list[tuple[Column, str]], key: Column,
           feature_num: Column, feature_list: Column, single_codes: list[str]) -> DataFrame:
    """Shared by both files: the line rules in order, then the feature rules."""
    df = lines.withColumn("_c", F.split("raw_line", ",", -1))
    df = df.withColumn("_items", _items(feature_list))
    df = df.withColumn("_fast", feature_list.rlike(_FAST_LIST))
    df = df.withColumn("_codes", _codes(F.col("_items")))  # a column: the checks below read it 16 times
    reason = F.when(F.col("raw_line") == "", R.EMPTY_LINE).when(F.size("_c") != n_columns, R.WRONG_COLUMN_COUNT)
    for broken, name in header_rules:
        reason = reason.when(broken, name)
    slow = _slow_feature_reason(F.col("_items"))
    reason = (
        reason.when(~key.rlike("^[0-9a-fA-F]+$"), R.BAD_COMMON_FEATURE_INDEX)
        .when(~feature_num.rlike(_UINT) | feature_num.cast("int").isNull(), R.BAD_FEATURE_NUM)
        .when(~F.col("_fast") & slow.isNotNull(), slow)
        .when(F.size("_items") != feature_num.cast("int"), R.FEATURE_NUM_MISMATCH)
        .when(_repeats_a_single_field(F.col("_codes"), single_codes), R.REPEATED_SINGLE_VALUED_FIELD)
    )
    valid = F.col("reason").isNull()
    return (
        df.withColumn("reason", reason)
        .withColumn("common_feature_index", F.when(valid, key))
        .withColumn("feature_list", F.when(valid, feature_list))
        .withColumn("feature_count", F.when(valid, F.size("_items")))
    )


PARSED = ("common_feature_index", "feature_list", "feature_count", "reason")  # what both parsers add


def parse_skeleton(lines: DataFrame) -> DataFrame:
    """Skeleton lines → `sample_id, click, conversion, common_feature_index, feature_list, feature_count, reason`.

    Keeps every input column (`path`, `raw_line`, ...). Typed columns are null where the line
    is invalid; `feature_list` is the line's validated feature text (with_named_columns reads
    it) and `feature_count` its number of features.
    """
    c = F.col("_c")
    rules = [
        (~c.getItem(0).rlike(_UINT) | c.getItem(0).cast("bigint").isNull(), R.BAD_SAMPLE_ID),
        (~c.getItem(1).isin("0", "1") | ~c.getItem(2).isin("0", "1"), R.BAD_LABEL),
    ]
    singles = [f.code for f in fields_of(SKELETON) if not f.multi]
    df = _parse(lines, SKELETON_COLUMNS, rules, c.getItem(3), c.getItem(4), c.getItem(5), singles)
    valid = F.col("reason").isNull()
    return (
        df.withColumn("sample_id", F.when(valid, c.getItem(0).cast("bigint")))
        .withColumn("click", F.when(valid, c.getItem(1).cast("int")))
        .withColumn("conversion", F.when(valid, c.getItem(2).cast("int")))
        .select(*lines.columns, "sample_id", "click", "conversion", *PARSED)
    )


def parse_common(lines: DataFrame) -> DataFrame:
    """Common-features lines → `common_feature_index, feature_list, feature_count, reason` (see parse_skeleton)."""
    c = F.col("_c")
    singles = [f.code for f in fields_of(COMMON) if not f.multi]
    df = _parse(lines, COMMON_COLUMNS, [], c.getItem(0), c.getItem(1), c.getItem(2), singles)
    return df.select(*lines.columns, *PARSED)


def _named(field: Field) -> list[Column]:
    """The named column(s) of one field, from the `_items` and `_codes` of a valid line."""
    if field.multi:
        of_field = F.filter("_items", lambda f: f.startswith(field.code + FIELD_SEP))
        return [F.transform(of_field, lambda f: F.struct(_feature_id(f).alias("id"), _value(f).alias("weight")))
                .alias(field.name)]
    out = [_feature_id(_single(field)).alias(field.name)]
    if field.weight_column:
        out.append(_value(_single(field)).alias(field.weight_column))
    return out


def _single(field: Field) -> Column:
    """A single-valued field's feature text: it occurs at most once in a valid line, at its place among the codes."""
    return F.get("_items", F.array_position("_codes", field.code).cast("int") - 1)


def _is_plain(field: Field) -> bool:
    """A single-valued field whose VALUE is a constant 1.0 by the format: its column keeps the id only."""
    return not field.multi and not field.weighted


def _other_features(file: str) -> Column:
    """The features a line's named columns do not hold exactly, as `{field, id, weight}` (T.OTHER_FEATURES).

    A field the registry does not know, or a plain field whose VALUE is not 1.0 (its named
    column keeps the id; the exploded views take the VALUE from here). Empty, not null, for
    the usual line; the lambda that picks them runs only for the rare line that has some.
    """
    fields = fields_of(file)
    known = F.array(*(F.lit(f.code) for f in fields))
    plain = [f for f in fields if _is_plain(f)]
    plain_codes = F.array(*(F.lit(f.code) for f in plain))
    unknown = F.size(F.array_except("_codes", known)) > 0
    off_value = reduce(lambda a, b: a | b, (F.coalesce(_value(_single(f)) != 1.0, F.lit(False)) for f in plain),
                       F.lit(False))

    def other(f: Column) -> Column:
        code = F.substring_index(f, FIELD_SEP, 1)
        return ~F.array_contains(known, code) | (F.array_contains(plain_codes, code) & (_value(f) != 1.0))

    picked = F.transform(F.filter("_items", other), lambda f: F.struct(
        F.substring_index(f, FIELD_SEP, 1).alias("field"), _feature_id(f).alias("id"), _value(f).alias("weight")))
    return F.when(unknown | off_value, picked).otherwise(F.array().cast(OTHER_FEATURES_TYPE)).alias(OTHER_FEATURES)


def with_named_columns(parsed: DataFrame, file: str, *keep: str) -> DataFrame:
    """The `keep` columns, every field of a file (SKELETON or COMMON) as its named column(s) in
    field-table order, then `other_features`: together they hold every feature of the line once."""
    items = parsed.select(*keep, _items(F.col("feature_list")).alias("_items"))
    return items.select(*keep, _codes(F.col("_items")).alias("_codes"), "_items").select(
        *keep, *(c for field in fields_of(file) for c in _named(field)), _other_features(file)
    )


def features_held(file: str) -> Column:
    """How many features a row of with_named_columns holds: the rows it gives the exploded view
    (lakerec/sql/ingest/*_features.sql), counted the same way, to check that none was lost."""
    other = F.col(OTHER_FEATURES)
    parts = [F.size(other)]
    for f in fields_of(file):
        if f.multi:
            parts.append(F.size(f.name))
        else:
            held = F.col(f.name).isNotNull() & ~F.array_contains(other.getField("field"), f.code)
            parts.append(held.cast("int"))
    return reduce(lambda a, b: a + b, parts).cast("bigint")


def to_user_contexts(parsed_common: DataFrame) -> DataFrame:
    """Valid common lines → one row each: key, user_id, user fields, weighted history arrays, other features."""
    return with_named_columns(parsed_common.where(F.col("reason").isNull()), COMMON, "split", "common_feature_index")
