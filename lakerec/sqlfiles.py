"""SQL kept in files: split a script into statements, fill its placeholders, run it.

Every stage's SQL lives in `.sql` files under lakerec/sql/ (readable, and runnable by a
user with `python -m lakerec.jobs.sql -f FILE`); this module is the one way they are run.

Placeholders. `${database}` is the configured database and `${name}` a job parameter
(`--param name=VALUE`: min_item_count, min_user_count, label, history_length,
item_intention_length, split). The column lists that follow the field registry
(lakerec.schema.fields) are filled in by `render` itself, so a file runs with no extra
--param, and a field added to the registry reaches every query. Each one, with its value
for the Ali-CCP fields of today:

    row_single_stack     stack() arguments, one (feature, value) pair per single-valued field of an
                         impression that feature_vocab serves: the side features of both towers,
                         then the ranker's (lakerec.schema.fields.rank_features):
                         `15, 'user_profile', user_profile, ..., 'item_brand', item_brand,
                         'position', position, ..., 'user_item_brands', user_item_brands`
                         (filter/03_vocabularies.sql, map_features.sql)
    user_multi_stack     the same for the user history arrays:
                         `4, 'user_categories', user_categories, ..., 'user_intentions', user_intentions`
                         (03, map_features.sql)
    row_multi_stack      the same for the impression's own multi-valued fields, the item's then the
                         ranker's: `2, 'item_intention', item_intention, 'user_item_intentions',
                         user_item_intentions` (03, map_features.sql)
    row_single_pivot     PIVOT values, a feature to its index column:
                         `'user_profile' AS user_profile_index, ..., 'user_item_brands' AS
                         user_item_brands_index` (map_features.sql)
    user_multi_pivot     `'user_categories' AS user_categories, ...` (map_features.sql; PIVOT appends _ids / _weights)
    row_multi_pivot      `'item_intention' AS item_intention, 'user_item_intentions' AS user_item_intentions`
    row_single_indices   `coalesce(user_profile_index, 0) AS user_profile_index, ...`: every field of
                         row_single_stack as its index, 0 when missing (map_features.sql)
    user_multi_arrays    `coalesce(user_categories_ids, array_repeat(0, ${history_length})) AS user_categories_ids,
                         coalesce(user_categories_weights, array_repeat(CAST(0 AS FLOAT), ${history_length}))
                         AS user_categories_weights, ...`: the padded history arrays (filter/05, impressions/02)
    row_multi_arrays     the same for the fields of row_multi_stack, padded to ${item_intention_length}
                         (map_features.sql)
    user_single_columns  `user_profile_index, ..., user_geography_index` (filter/05, impressions/02)
    item_side_columns    `item_category_index, item_shop_index, item_brand_index, item_intention_ids,
                         item_intention_weights`: the item tower's columns (filter/05, impressions/02)
    rank_columns         the ranker's columns of the impressions tables, in registry order:
                         `position_index, user_item_categories_index, CAST(coalesce(user_item_categories_weight,
                         0) AS FLOAT) AS user_item_categories_weight, ..., user_item_intentions_ids,
                         user_item_intentions_weights` (impressions/02)
    oov_counts           map() arguments, one (field, rows) pair per field feature_vocab serves: the
                         rows where the field is present in samples / user_contexts but maps to
                         nothing (index 0, or arrays of padding only):
                         `'user_profile', count_if(user_profile IS NOT NULL AND user_profile_index = 0),
                         ..., 'user_categories', count_if(size(user_categories) > 0 AND
                         user_categories_ids[0] = 0), ...` (impressions/03)
    user_multi_fields    `user_categories, user_shops, user_brands, user_intentions`: the history
                         columns of user_contexts (ingest/samples_wide.sql, impressions/03)
    skeleton_feature_rows  one SELECT per skeleton field, joined by UNION ALL: its features in
                         samples as `split, sample_id, field, feature_id, value` rows, a single-valued
                         field's from its column (VALUE 1.0, or its `_weight` column), a multi-valued
                         one's from its array: `SELECT split, sample_id, '205' AS field, item_id AS
                         feature_id, 1.0D AS value FROM ${database}.samples WHERE item_id IS NOT NULL
                         AND NOT array_contains(other_features.field, '205') UNION ALL ... SELECT split,
                         sample_id, '210' AS field, x.id AS feature_id, x.weight AS value FROM
                         ${database}.samples LATERAL VIEW inline(item_intention) x ...`
                         (ingest/skeleton_features.sql). One SELECT per
                         field, so a query of one field reads that field's column only.
    common_feature_rows  the same for the common fields over user_contexts, keyed by
                         common_feature_index (ingest/common_features.sql)

The lists name columns without a table alias; the queries that use them select from one
relation that holds those columns, so no name is ambiguous. Their values may use
`${history_length}` and `${item_intention_length}`, which are filled in afterwards. A
--param of the same name replaces a list (for experiments; the jobs never do).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pyspark.sql import DataFrame, Row, SparkSession

from lakerec.config import Config
from lakerec.errors import LakeRecError
from lakerec.schema import fields as F
from lakerec.schema import tables as T
from lakerec.spark import named_jobs

SQL_DIR = Path(__file__).resolve().parent / "sql"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_SEP = ",\n    "  # one entry per line in the rendered SQL, as the files held them by hand


_CREATE_VIEW = re.compile(
    r"^\s*(?:/\*.*?\*/\s*)*CREATE\s+OR\s+REPLACE\s+TEMP(?:ORARY)?\s+VIEW\s+(\w+)", re.IGNORECASE | re.DOTALL
)


@dataclass(frozen=True)
class Statement:
    title: str | None
    sql: str


def split_statements(text: str) -> list[Statement]:
    """Split a SQL script on `;` at line ends; keep each statement's first `--` comment as title."""
    statements = []
    for chunk in re.split(r";[ \t]*(?:\r?\n|$)", text):
        lines = chunk.strip().splitlines()
        title = next((ln.strip()[2:].strip() for ln in lines if ln.strip().startswith("--")), None)
        body = "\n".join(ln for ln in lines if not ln.strip().startswith("--")).strip()
        if body:
            statements.append(Statement(title, body))
    return statements


def _stack(fields: tuple[F.Field, ...]) -> str:
    return _SEP.join([str(len(fields))] + [f"'{f.name}', {f.sql_column}" for f in fields])


def _padded(f: F.Field, length: str) -> str:
    return (
        f"coalesce({f.ids_column}, array_repeat(0, ${{{length}}})) AS {f.ids_column}{_SEP}"
        f"coalesce({f.weights_column}, array_repeat(CAST(0 AS FLOAT), ${{{length}}})) AS {f.weights_column}"
    )


def _oov_count(f: F.Field) -> str:
    """Rows where field f is present in its source table but maps to nothing (impressions/03)."""
    if f.multi:
        return f"'{f.name}', count_if(size({f.sql_column}) > 0 AND {f.ids_column}[0] = 0)"
    return f"'{f.name}', count_if({f.sql_column} IS NOT NULL AND {f.index_column} = 0)"


def _rank_column(f: F.Field) -> str:
    """A ranker field's columns in the impressions tables: the index (or arrays), and a single field's weight."""
    if f.multi:
        return f"{f.ids_column}, {f.weights_column}"
    if f.weight_column:
        return f"{f.index_column}, CAST(coalesce({f.weight_column}, 0) AS FLOAT) AS {f.weight_column}"
    return f.index_column


def _feature_rows(file: str, table: str, key: str) -> str:
    """One SELECT per field of a raw file: its features in `table` as exploded rows (skeleton_feature_rows)."""
    head = f"SELECT split, {key}, '{{code}}' AS field, "
    selects = []
    for f in F.fields_of(file):
        if f.multi:
            selects.append(head.format(code=f.code) + "x.id AS feature_id, x.weight AS value "
                           f"FROM ${{database}}.{table} LATERAL VIEW inline({f.sql_column}) x")
            continue
        value = f.weight_column or "1.0D"
        where = f"{f.sql_column} IS NOT NULL"
        if not f.weighted:  # a VALUE other than 1.0 is in other_features, with the id: taken from there
            where += f" AND NOT array_contains({T.OTHER_FEATURES}.field, '{f.code}')"
        selects.append(head.format(code=f.code) + f"{f.sql_column} AS feature_id, {value} AS value "
                       f"FROM ${{database}}.{table} WHERE {where}")
    return "\nUNION ALL\n".join(selects)


@lru_cache(maxsize=1)
def schema_placeholders() -> dict[str, str]:
    """The registry's column lists, by placeholder name (documented in the module docstring)."""
    row_single = F.side_features(multi=False) + F.rank_features(multi=False)
    user_multi = F.side_features(F.QUERY, multi=True)
    row_multi = F.side_features(F.CANDIDATE, multi=True) + F.rank_features(multi=True)
    user_single = F.side_features(F.QUERY, multi=False)
    mapped = F.side_features(F.QUERY) + F.side_features(F.CANDIDATE) + F.rank_features()
    return {
        "row_single_stack": _stack(row_single),
        "user_multi_stack": _stack(user_multi),
        "row_multi_stack": _stack(row_multi),
        "row_single_pivot": _SEP.join(f"'{f.name}' AS {f.index_column}" for f in row_single),
        "user_multi_pivot": _SEP.join(f"'{f.name}' AS {f.name}" for f in user_multi),
        "row_multi_pivot": _SEP.join(f"'{f.name}' AS {f.name}" for f in row_multi),
        "row_single_indices": _SEP.join(f"coalesce({f.index_column}, 0) AS {f.index_column}" for f in row_single),
        "user_multi_arrays": _SEP.join(_padded(f, "history_length") for f in user_multi),
        "row_multi_arrays": _SEP.join(_padded(f, "item_intention_length") for f in row_multi),
        "user_single_columns": ", ".join(f.index_column for f in user_single),
        "item_side_columns": ", ".join(c for f in F.side_features(F.CANDIDATE) for c in f.model_columns),
        "rank_columns": _SEP.join(_rank_column(f) for f in F.rank_features()),
        "oov_counts": _SEP.join(_oov_count(f) for f in mapped),
        "user_multi_fields": ", ".join(f.sql_column for f in F.select(file=F.COMMON, multi=True)),
        "skeleton_feature_rows": _feature_rows(F.SKELETON, T.SAMPLES.name, "sample_id"),
        "common_feature_rows": _feature_rows(F.COMMON, T.USER_CONTEXTS.name, "common_feature_index"),
    }


def placeholders(sql: str) -> set[str]:
    """The `${name}` placeholders a SQL text uses."""
    return set(_PLACEHOLDER.findall(sql))


def render(sql: str, cfg: Config, params: dict[str, str] | None = None) -> str:
    """Fill the registry's column lists, then `${database}` and `${param}`; an unknown one is an error."""
    params = params or {}
    lists = {k: v for k, v in schema_placeholders().items() if k not in params}
    sql = _PLACEHOLDER.sub(lambda m: lists.get(m.group(1), m.group(0)), sql)
    values = {"database": cfg.database, **params}

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise LakeRecError(f"SQL uses ${{{key}}} but no value was given (pass --param {key}=VALUE)")
        return str(values[key])

    return _PLACEHOLDER.sub(sub, sql)


def run_statements(spark: SparkSession, text: str, cfg: Config, params: dict[str, str] | None = None):
    """Run every statement of a script; yield (statement, DataFrame) pairs in order."""
    for st in split_statements(text):
        yield st, spark.sql(render(st.sql, cfg, params))


def sql_file(relative: str) -> str:
    """The text of a SQL file under lakerec/sql/ (e.g. "ingest/samples_wide.sql")."""
    return (SQL_DIR / relative).read_text()


def created_view(st: Statement) -> str | None:
    """The temporary view a statement creates (`CREATE OR REPLACE TEMPORARY VIEW name ...`), else None."""
    m = _CREATE_VIEW.match(st.sql)
    return m.group(1) if m else None


def view_names(relative: str) -> list[str]:
    """The temporary views a SQL file under lakerec/sql/ creates, in order."""
    return [v for v in map(created_view, split_statements(sql_file(relative))) if v]


def bind_view(df: DataFrame, name: str) -> DataFrame:
    """Compute `df` once (a local checkpoint) and register it as the temporary view `name`."""
    materialized = df.localCheckpoint(eager=True)
    materialized.createOrReplaceTempView(name)
    return materialized


def cache_view(df: DataFrame, name: str) -> DataFrame:
    """Compute `df` once, cached (memory, then disk), and register it as the temporary view `name`.

    For a small table that later statements join to: the planner then sizes it by its cached
    bytes. A local checkpoint (bind_view) keeps the estimate of the plan that computed it,
    and the filter's vocabulary, estimated at 35 MB for its real 2 MB, was joined by
    broadcasting the other side instead, an explode estimated at 8 MB that held 3.3M rows.
    Registered first, then cached: replacing a view uncaches what was cached under its name.
    Dropping the view (spark.catalog.dropTempView) uncaches it.
    """
    df.createOrReplaceTempView(name)
    cached = df.sparkSession.table(name).cache()
    cached.count()
    return cached


def run_views(
    spark: SparkSession,
    cfg: Config,
    relative: str,
    params: dict[str, object] | None = None,
    skip_views: frozenset[str] = frozenset(),
    materialized: frozenset[str] = frozenset(),
    cached: frozenset[str] = frozenset(),
) -> list[list[Row]]:
    """Run one file of view definitions and queries (a stage's step); return each SELECT's rows.

    Args:
        relative: the file, under lakerec/sql/ (`filter/03_vocabularies.sql`).
        params: the step's `${name}` values.
        skip_views: views the caller bound itself: the statements creating them are not run.
        materialized: views checkpointed as soon as they are created (read many times later);
            the others stay lazy, so a big one is streamed by whatever finally reads it.
        cached: views cached as soon as they are created (cache_view): small deterministic
            tables that later statements join to.
    """
    results = []
    values = {k: str(v) for k, v in (params or {}).items()}
    for st in split_statements(sql_file(relative)):
        view = created_view(st)
        if view in skip_views:
            continue
        with named_jobs(spark, f"{relative}: {view or st.title or 'query'}"):
            df = spark.sql(render(st.sql, cfg, values))
            if view:
                if view in materialized:
                    bind_view(spark.table(view), view)
                elif view in cached:
                    cache_view(spark.table(view), view)
            else:
                results.append(df.collect())
    return results
