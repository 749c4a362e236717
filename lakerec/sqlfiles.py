"""SQL kept in files: split a script into statements, fill its placeholders, run it.

Every stage's SQL lives in `.sql` files under lakerec/sql/ (readable, and runnable by a
user with `python -m lakerec.jobs.sql -f FILE`); this module is the one way they are run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from lakerec.config import Config
from lakerec.errors import LakeRecError

SQL_DIR = Path(__file__).resolve().parent / "sql"


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


def render(sql: str, cfg: Config, params: dict[str, str] | None = None) -> str:
    """Substitute `${database}` and `${param}` placeholders; an unknown one is an error."""
    values = {"database": cfg.database, **(params or {})}

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise LakeRecError(f"SQL uses ${{{key}}} but no value was given (pass --param {key}=VALUE)")
        return str(values[key])

    return re.sub(r"\$\{(\w+)\}", sub, sql)


def run_statements(spark: SparkSession, text: str, cfg: Config, params: dict[str, str] | None = None):
    """Run every statement of a script; yield (statement, DataFrame) pairs in order."""
    for st in split_statements(text):
        yield st, spark.sql(render(st.sql, cfg, params))


def sql_file(relative: str) -> str:
    """The text of a SQL file under lakerec/sql/ (e.g. "ingest/samples_wide.sql")."""
    return (SQL_DIR / relative).read_text()
