"""SQL kept in files: split a script into statements, fill its placeholders, run it.

Every stage's SQL lives in `.sql` files under lakerec/sql/ (readable, and runnable by a
user with `python -m lakerec.jobs.sql -f FILE`); this module is the one way they are run.

Placeholders. `${database}` is the configured database and `${name}` a job parameter
(`--param name=VALUE`: min_item_count, min_user_count, label, history_length,
item_intention_length). The column lists that follow the field registry
(lakerec.schema.fields) are filled in by `render` itself, so a file runs with no extra
--param, and a field added to the registry reaches every query. Each one, with its value
for the Ali-CCP fields of today:

    side_single_stack    stack() arguments, one (feature, value) pair per single-valued side
                         feature of both towers:
                         `11, 'user_profile', user_profile, ..., 'item_brand', item_brand`
                         (03_vocabularies.sql, 04_features.sql)
    user_multi_stack     the same for the user history arrays:
                         `4, 'user_categories', user_categories, ..., 'user_intentions', user_intentions`
                         (03, 04)
    item_multi_stack     the same for the item's multi-valued side features: `1, 'item_intention', item_intention`
                         (03, 04)
    side_single_pivot    PIVOT values, a feature to its index column:
                         `'user_profile' AS user_profile_index, ..., 'item_brand' AS item_brand_index` (04)
    user_multi_pivot     `'user_categories' AS user_categories, ...` (04; PIVOT appends _ids / _weights)
    item_multi_pivot     `'item_intention' AS item_intention` (04)
    side_single_indices  `coalesce(user_profile_index, 0) AS user_profile_index, ...`: every
                         single-valued side feature's index, 0 when missing (04)
    user_multi_arrays    `coalesce(user_categories_ids, array_repeat(0, ${history_length})) AS user_categories_ids,
                         coalesce(user_categories_weights, array_repeat(CAST(0 AS FLOAT), ${history_length}))
                         AS user_categories_weights, ...`: the padded history arrays (05)
    item_multi_arrays    the same for the item's arrays, padded to ${item_intention_length} (04)
    user_single_columns  `user_profile_index, ..., user_geography_index` (05)
    item_side_columns    `item_category_index, item_shop_index, item_brand_index, item_intention_ids,
                         item_intention_weights`: the item tower's columns (05)
    user_multi_fields    `user_categories, user_shops, user_brands, user_intentions`: the history
                         columns of user_contexts (ingest/samples_wide.sql)

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

from pyspark.sql import SparkSession

from lakerec.config import Config
from lakerec.errors import LakeRecError
from lakerec.schema import fields as F

SQL_DIR = Path(__file__).resolve().parent / "sql"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_SEP = ",\n    "  # one entry per line in the rendered SQL, as the files held them by hand


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


@lru_cache(maxsize=1)
def schema_placeholders() -> dict[str, str]:
    """The registry's column lists, by placeholder name (documented in the module docstring)."""
    side_single = F.side_features(multi=False)
    user_multi = F.side_features(F.QUERY, multi=True)
    item_multi = F.side_features(F.CANDIDATE, multi=True)
    user_single = F.side_features(F.QUERY, multi=False)
    return {
        "side_single_stack": _stack(side_single),
        "user_multi_stack": _stack(user_multi),
        "item_multi_stack": _stack(item_multi),
        "side_single_pivot": _SEP.join(f"'{f.name}' AS {f.index_column}" for f in side_single),
        "user_multi_pivot": _SEP.join(f"'{f.name}' AS {f.name}" for f in user_multi),
        "item_multi_pivot": _SEP.join(f"'{f.name}' AS {f.name}" for f in item_multi),
        "side_single_indices": _SEP.join(f"coalesce({f.index_column}, 0) AS {f.index_column}" for f in side_single),
        "user_multi_arrays": _SEP.join(_padded(f, "history_length") for f in user_multi),
        "item_multi_arrays": _SEP.join(_padded(f, "item_intention_length") for f in item_multi),
        "user_single_columns": ", ".join(f.index_column for f in user_single),
        "item_side_columns": ", ".join(c for f in F.side_features(F.CANDIDATE) for c in f.model_columns),
        "user_multi_fields": ", ".join(f.sql_column for f in F.select(file=F.COMMON, multi=True)),
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
