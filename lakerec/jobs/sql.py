"""Run Spark SQL against the lake's catalog and print the result.

    python -m lakerec.jobs.sql "SELECT count(*) FROM aliccp.samples"
    python -m lakerec.jobs.sql -f lakerec/sql/examples.sql --format csv

A file may hold several statements separated by `;`; each result is printed under its
statement's leading comment (the `-- name` line), if it has one. `${database}` in the SQL
is replaced with the configured database, and `${name}` with `--param name=value`.

When the lake's SQL endpoint runs (`python -m lakerec.jobs.sql_server`), the statements go
to it, in one session of their own (temporary views last from one statement to the next),
and no Spark starts here; `--no-endpoint` starts a session of this process's own instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from pyspark.sql import DataFrame, Row

from lakerec import cli, lake_runs, sql_endpoint
from lakerec.errors import LakeRecError
from lakerec.spark import get_spark
from lakerec.sqlfiles import render, run_statements, split_statements

FORMATS = ("table", "csv", "json")
log = logging.getLogger("lakerec.sql")


def take(df: DataFrame, limit: int) -> tuple[list[Row], int | None]:
    """The first `limit` rows of `df`, and its row count when it holds more (else None)."""
    rows = df.limit(limit + 1).collect()
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], df.count()


def truncation_note(shown: int, total: int | None) -> str | None:
    return None if total is None else f"(first {shown:,} of {total:,} rows)"


def format_rows(df: DataFrame, fmt: str, limit: int, rows: list[Row] | None = None) -> str:
    """The rows as a table, CSV or JSON lines (`rows`: already taken from `df`; else its first `limit`)."""
    rows = df.limit(limit).collect() if rows is None else rows
    cols = df.columns
    if fmt == "json":
        return "\n".join(json.dumps(r.asDict(recursive=True), default=str) for r in rows)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows([[_cell(v, full=True) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |", line]
    out += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    out.append(line)
    return "\n".join(out)


def _cell(v, full: bool = False) -> str:
    """A value as text; floats at full precision (repr) for data a program reads, 6 digits in a table."""
    if v is None:
        return "" if full else "NULL"  # CSV: an empty field, as Spark's own CSV writer
    if isinstance(v, bool):
        return "true" if v else "false"  # as Spark SQL prints booleans
    if isinstance(v, float):
        return repr(v) if full else f"{v:.6g}"
    if full and isinstance(v, (list, dict, Row)):  # arrays, maps, structs: JSON in the cell
        return json.dumps(_plain(v), default=str)
    return str(v)


def _plain(v):
    if isinstance(v, Row):
        return {k: _plain(x) for k, x in v.asDict().items()}
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _remote_statements(endpoint: sql_endpoint.Endpoint, text: str, cfg, params: dict[str, str]):
    """Run every statement on the SQL endpoint, in one connection; yield (statement, result) pairs."""
    from pyhive import exc

    log.info("statements sent to the lake's SQL endpoint at %s", endpoint.jdbc_url)
    try:
        conn = sql_endpoint.connect(endpoint)
    except Exception as e:  # refused, or the server ended between the check and now
        raise LakeRecError(f"the lake's SQL endpoint at {endpoint.jdbc_url} did not accept a connection "
                           f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                           "retry, or use --no-endpoint") from None
    with contextlib.closing(conn):
        for st in split_statements(text):
            try:
                result = sql_endpoint.RemoteResult(conn, render(st.sql, cfg, params))
            except exc.DatabaseError as e:
                status = getattr(e.args[0], "status", None) if e.args else None
                message = getattr(status, "errorMessage", None) or str(e)
                raise LakeRecError(cli.analysis_message(message.removeprefix("Error running query: "))) from None
            yield st, result


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("sql", "Run Spark SQL against the lake's catalog and print the result.")
    p.add_argument("query", nargs="?", help="a SQL statement (or use -f FILE)")
    p.add_argument("-f", "--file", action="append", default=[],
                   help="a .sql file of statements separated by ';' (repeat -f to run several files in order)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--limit", type=cli.positive_int, default=1000,
                   help="rows printed per statement (a longer result says '(first N of M rows)' on stderr)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="value for ${NAME}")
    p.add_argument("--endpoint", action=argparse.BooleanOptionalAction, default=True,
                   help="send the statements to the lake's SQL endpoint when it runs (--no-endpoint: "
                        "start a Spark session here)")
    args = p.parse_args(argv)

    def body():
        if bool(args.query) == bool(args.file):
            raise LakeRecError("give either a query or -f FILE (not both, not neither)")
        if args.file:
            missing = [f for f in args.file if not Path(f).is_file()]
            if missing:
                raise LakeRecError(f"SQL file {missing[0]} not found")
            text = ";\n".join(Path(f).read_text().rstrip().rstrip(";") for f in args.file) + ";\n"
        else:
            text = args.query
        params = {}
        for kv in args.param:
            if "=" not in kv:
                raise LakeRecError(f"--param {kv!r}: expected NAME=VALUE")
            k, v = kv.split("=", 1)
            params[k] = v
        cfg = cli.config_from_args(args)
        endpoint = None
        if args.endpoint and cfg.spark.master is not None and cfg.lake_path.is_dir():
            endpoint = sql_endpoint.running(cfg.lake_path)
        if endpoint:
            results = _remote_statements(endpoint, text, cfg, params)
        else:
            spark = get_spark(cfg)
            for problem in lake_runs.problems(spark, cfg):  # the query may read tables of two runs
                print(f"warning: {problem}", file=sys.stderr)
            results = run_statements(spark, text, cfg, params)
        for st, df in results:
            if not df.columns:  # DDL (CREATE VIEW ...): nothing to print
                continue
            if args.file and st.title:
                print(f"-- {st.title}")
            rows, total = take(df, args.limit)
            print(format_rows(df, args.format, args.limit, rows))
            sys.stdout.flush()
            note = truncation_note(len(rows), total)
            if note:  # on stderr: stdout stays data a program parses
                print(note, file=sys.stderr, flush=True)

    cli.run_main("sql", body)


if __name__ == "__main__":
    main()
