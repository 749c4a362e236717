"""The run manifest: which versions of a job's tables belong together, so nobody reads a half-written lake.

Delta commits one table at a time. A job that writes several tables (ingest, filter,
impressions, movielens) and is killed between two commits leaves some tables from the new run
and some from the old: each table is valid, together they disagree. So every such job records
itself in `lake_runs`:

    with lake_runs.recorded(spark, cfg, T.INGEST, scope="train,test"):
        ... write the tables ...

appends a `started` row (with the versions its tables had) before it writes anything, and a
`complete` row with the version of every table it wrote once all of them are written. A
reader checks its inputs first (`check_inputs`): the current version of each of the writer
job's tables must be the one its last complete run recorded. A run that was killed, or failed
after a first commit, leaves them different, and the reader stops with one line that says
which run did not finish and what to re-run (`--allow-incomplete` reads them anyway, with a
warning). A run that stopped before its first commit (bad input refused, say) changed nothing,
so its tables still match and readers go on. Tables written outside any recorded run (older
lakes, fixtures) are not checked.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakerec.config import Config
from lakerec.errors import IncompleteRunError
from lakerec.schema import tables as T
from lakerec.tables import append_table, maintain, read_table, table_exists, table_versions

log = logging.getLogger("lakerec.lake_runs")

STARTED, COMPLETE = "started", "complete"
# The jobs that record their runs: each writes several tables.
RECORDED_JOBS = (T.INGEST, T.FILTER, T.IMPRESSIONS, T.MOVIELENS)


@dataclass(frozen=True)
class RunRecord:
    """One row of lake_runs."""

    run_id: str
    job: str
    state: str
    at: datetime
    scope: str
    versions: dict[str, int]


def _stored(spark: SparkSession, cfg: Config, job: str) -> list[str]:
    """The stored tables `job` writes that exist now (lake_runs itself is not one of them)."""
    return [t.name for t in T.written_by(job)
            if not t.view and t.name != T.LAKE_RUNS.name and table_exists(spark, cfg.table(t.name))]


def current_versions(spark: SparkSession, cfg: Config, job: str) -> dict[str, int]:
    """The Delta version of every stored table `job` writes that exists now."""
    names = _stored(spark, cfg, job)
    found = table_versions(spark, [cfg.table(n) for n in names])
    return {n: found[cfg.table(n)] for n in names}


def _append(spark: SparkSession, cfg: Config, record: RunRecord) -> None:
    row = (record.run_id, record.job, record.state, record.at, record.scope, record.versions)
    append_table(spark.createDataFrame([row], T.LAKE_RUNS.ddl), cfg.table(T.LAKE_RUNS.name))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@contextmanager
def recorded(spark: SparkSession, cfg: Config, job: str, scope: str = "") -> Iterator[str]:
    """Record a run of `job` around its writes: `started` now, `complete` with its versions on success.

    Yields the run id. On an exception nothing more is written: the tables that the run had
    already replaced no longer match the last complete row, which is what readers check.
    """
    run_id = uuid.uuid4().hex
    _append(spark, cfg, RunRecord(run_id, job, STARTED, _now(), scope, current_versions(spark, cfg, job)))
    yield run_id
    maintain(spark, cfg, job)  # OPTIMIZE / VACUUM when configured: their versions are this run's
    _append(spark, cfg, RunRecord(run_id, job, COMPLETE, _now(), scope, current_versions(spark, cfg, job)))


def history(spark: SparkSession, cfg: Config, jobs: Iterable[str]) -> list[RunRecord]:
    """The rows of lake_runs for these jobs, oldest first (none when the table does not exist)."""
    name = cfg.table(T.LAKE_RUNS.name)
    if not table_exists(spark, name):
        return []
    rows = spark.table(name).where(F.col("job").isin(list(jobs))).orderBy("at").collect()
    return [RunRecord(r.run_id, r.job, r.state, r.at, r.scope, dict(r.versions or {})) for r in rows]


def problem(spark: SparkSession, cfg: Config, job: str, now: dict[str, int] | None = None,
            runs: list[RunRecord] | None = None) -> str | None:
    """Why the tables of `job` are not one complete run's, in one line; None when they are (or are untracked).

    Args:
        now: the current versions of `job`'s tables (current_versions), when the caller has them.
        runs: `job`'s rows of lake_runs (history), when the caller has read them.
    """
    runs = history(spark, cfg, [job]) if runs is None else [r for r in runs if r.job == job]
    if not runs:
        return None
    completes = [r for r in runs if r.state == COMPLETE]
    # What the tables must be: the last complete run's versions, or, before any run completed,
    # the versions they had when the first recorded run started.
    expected = completes[-1].versions if completes else runs[0].versions
    now = current_versions(spark, cfg, job) if now is None else now
    changed = sorted(n for n in set(now) | set(expected) if now.get(n) != expected.get(n))
    if not changed:
        return None
    finished = {r.run_id for r in completes}
    unfinished = [r for r in runs if r.state == STARTED and r.run_id not in finished]
    if unfinished:
        last = unfinished[-1]
        scope = f" ({last.scope})" if last.scope else ""
        what = f"the {job} run{scope} started at {last.at:%Y-%m-%d %H:%M:%S} UTC did not finish"
    else:
        what = f"{job}'s tables changed outside a recorded run"
    tables = ", ".join(f"{n} v{now.get(n, '-')} (last complete run: v{expected.get(n, '-')})" for n in changed[:3])
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return (f"{what}: {cfg.database} holds {tables}{more}. Re-run `python -m lakerec.jobs.{job}` to repair "
            "it, or pass --allow-incomplete to read the tables as they are")


def check_inputs(spark: SparkSession, cfg: Config, tables: Iterable[T.Table]) -> dict[str, int]:
    """Check that the tables exist and each writer job's tables are one complete run; return their versions.

    Raises:
        MissingTableError: a table is missing (names the job that writes it).
        IncompleteRunError: a writer job's last run did not finish (unless cfg.allow_incomplete).
    """
    tables = tuple(tables)
    for t in tables:
        read_table(spark, cfg.table(t.name))
    jobs = list(dict.fromkeys(j for t in tables for j in (t.job, *t.also_written_by)))
    # One lookup of every version needed (the writers' tables and the inputs overlap), and one read of lake_runs.
    written = {job: _stored(spark, cfg, job) for job in jobs}
    names = list(dict.fromkeys([n for ns in written.values() for n in ns] + [t.name for t in tables]))
    found = table_versions(spark, [cfg.table(n) for n in names])
    runs = history(spark, cfg, jobs)
    for job in jobs:
        message = problem(spark, cfg, job, {n: found[cfg.table(n)] for n in written[job]}, runs)
        if message and cfg.allow_incomplete:
            log.warning("reading anyway (--allow-incomplete): %s", message)
        elif message:
            raise IncompleteRunError(message)
    return {t.name: found[cfg.table(t.name)] for t in tables}


def problems(spark: SparkSession, cfg: Config) -> list[str]:
    """Every multi-table job of the database whose tables are not one complete run (for jobs.sql's warning)."""
    runs = history(spark, cfg, RECORDED_JOBS)
    return [m for m in (problem(spark, cfg, j, runs=runs) for j in sorted({r.job for r in runs})) if m]
