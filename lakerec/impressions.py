"""The ranker's tables: every impression of each split, mapped with the filter's vocabularies, in SQL.

The work is done by the SQL files under lakerec/sql/impressions/ (a user can read and run
them, see 01_rows.sql) and the filter's own field mapping, lakerec/sql/map_features.sql, so
an impression's fields get exactly the indices and top-L lists the interactions tables get.
Per split:

    01_rows.sql          every samples row of the split (not frequency-filtered), feature_vocab
    map_features.sql     fields as feature_vocab indices, top-L histories, padded lists (shared)
    02_impressions.sql   the view `impressions`: the registry's columns, fixed shapes, never null

then, once both tables are written, 03_counts.sql reads them back and reconciles them with
samples (rows == samples_rows, or the run fails). Nothing is collected: each table is one
streamed Spark write, and the counts are one aggregate over what was written.

Tables written (Delta, overwritten): train_impressions, test_impressions; `impressions_runs`
gets one row per split (appended).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession

from lakerec.config import Config
from lakerec.errors import LakeRecError
from lakerec.schema import tables as T
from lakerec.schema.fields import SPLITS
from lakerec.sqlfiles import run_views, view_names
from lakerec import lake_runs
from lakerec.tables import append_table, table_versions, write_table

log = logging.getLogger("lakerec.impressions")

STEPS = ("impressions/01_rows.sql", "map_features.sql", "impressions/02_impressions.sql")
COUNTS = "impressions/03_counts.sql"
VIEW = "impressions"  # what 02_impressions.sql defines
UPSTREAM_TABLES = (T.SAMPLES, T.USER_CONTEXTS, T.USER_VOCAB, T.ITEM_VOCAB, T.FEATURE_VOCAB)
RUNS_TABLE = T.IMPRESSIONS_RUNS.name
RUNS_SCHEMA = T.IMPRESSIONS_RUNS.ddl


class ImpressionsMismatchError(LakeRecError):
    """A written impressions table does not hold exactly the split's samples rows."""


@dataclass(frozen=True)
class SplitCounts:
    """What one split's impressions table holds, read back from it."""

    split: str
    samples_rows: int
    rows: int
    clicks: int
    conversions: int
    cold_user_rows: int
    cold_item_rows: int
    oov_rows: dict[str, int]
    output_version: int


@dataclass
class ImpressionsSummary:
    """One impressions run, as recorded in `impressions_runs` (a row per split) and printed."""

    run_id: str
    started_at: datetime
    duration_s: float
    samples_version: int
    user_contexts_version: int
    feature_vocab_version: int
    history_length: int
    item_intention_length: int
    splits: list[SplitCounts] = field(default_factory=list)

    def as_rows(self) -> list[dict[str, Any]]:
        """The impressions_runs rows: the run's fields with each split's counts."""
        run = {k: v for k, v in asdict(self).items() if k != "splits"}
        return [{**run, **asdict(s)} for s in self.splits]


def temp_views() -> list[str]:
    """The temporary views the impressions steps create (dropped at the end of a run)."""
    return [v for step in STEPS for v in view_names(step)]


def build_split(spark: SparkSession, cfg: Config, split: str):
    """The impressions of one split as a lazy DataFrame: exactly the registry's columns, in order.

    Runs STEPS with the split's parameters; nothing is computed until the DataFrame is written.

    Raises:
        LakeRecError: the SQL's columns differ from the registry's (a programming error, named).
    """
    conf = cfg.filter
    params = {"split": split, "history_length": conf.history_length,
              "item_intention_length": conf.item_intention_length}
    for step in STEPS:
        run_views(spark, cfg, step, params)
    df = spark.table(VIEW)
    expected = T.IMPRESSIONS_OF[split].column_names
    if tuple(df.columns) != expected:
        raise LakeRecError(f"{VIEW} has columns {df.columns}, the registry says {list(expected)}")
    return df


def read_counts(spark: SparkSession, cfg: Config) -> dict[str, dict[str, Any]]:
    """03_counts.sql over the written tables: per split, samples_rows, rows, labels, cold and OOV rows."""
    (rows,) = run_views(spark, cfg, COUNTS)
    return {r.split: r.asDict() for r in rows}


def run(spark: SparkSession, cfg: Config) -> ImpressionsSummary:
    """Write train_impressions and test_impressions from samples and the filter's vocabularies; record the run.

    Re-running on the same input writes the same tables (Delta overwrites, the filter's
    deterministic indices) and appends rows to `impressions_runs`.

    Raises:
        MissingTableError: samples / user_contexts (run ingest) or the filter's vocabularies
            (run `python -m lakerec.jobs.filter`) are missing.
        ImpressionsMismatchError: a table written does not hold exactly its split's samples rows.
    """
    started, t0 = datetime.now(timezone.utc).replace(tzinfo=None), time.monotonic()
    versions = lake_runs.check_inputs(spark, cfg, UPSTREAM_TABLES)  # present, and each one complete run
    log.info("mapping every impression of %s (version %d) with the vocabularies of feature_vocab version %d",
             cfg.table(T.SAMPLES.name), versions[T.SAMPLES.name], versions[T.FEATURE_VOCAB.name])
    with lake_runs.recorded(spark, cfg, T.IMPRESSIONS):
        summary = _write_and_count(spark, cfg, started, t0, versions)
    return summary


def _write_and_count(spark: SparkSession, cfg: Config, started: datetime, t0: float,
                     versions: dict[str, int]) -> ImpressionsSummary:
    """The run's writes: both tables, their counts checked against samples, the impressions_runs rows."""
    names = {split: cfg.table(T.IMPRESSIONS_OF[split].name) for split in SPLITS}
    try:
        for split in SPLITS:
            write_table(build_split(spark, cfg, split), names[split], T.IMPRESSIONS_OF[split].partitioned_by)
    finally:
        for view in temp_views():
            spark.catalog.dropTempView(view)
    found = table_versions(spark, list(names.values()))  # read side by side, once
    output_versions = {split: found[name] for split, name in names.items()}
    for split, name in names.items():
        log.info("wrote %s (version %d)", name, output_versions[split])

    counts = read_counts(spark, cfg)
    splits = []
    for split in SPLITS:
        c = counts[split]
        if c["rows"] != c["samples_rows"]:
            raise ImpressionsMismatchError(
                f"{cfg.table(T.IMPRESSIONS_OF[split].name)} holds {c['rows']:,} rows but samples has "
                f"{c['samples_rows']:,} {split} impressions: every valid impression must be written once "
                "(are sample_ids unique per split? re-run `python -m lakerec.jobs.ingest`)"
            )
        splits.append(SplitCounts(
            split=split, samples_rows=c["samples_rows"], rows=c["rows"], clicks=c["clicks"],
            conversions=c["conversions"], cold_user_rows=c["cold_user_rows"], cold_item_rows=c["cold_item_rows"],
            oov_rows=dict(c["oov_rows"] or {}), output_version=output_versions[split],
        ))
    summary = ImpressionsSummary(
        run_id=uuid.uuid4().hex,
        started_at=started,
        duration_s=round(time.monotonic() - t0, 3),
        samples_version=versions[T.SAMPLES.name],
        user_contexts_version=versions[T.USER_CONTEXTS.name],
        feature_vocab_version=versions[T.FEATURE_VOCAB.name],
        history_length=cfg.filter.history_length,
        item_intention_length=cfg.filter.item_intention_length,
        splits=splits,
    )
    runs = spark.createDataFrame(summary.as_rows(), RUNS_SCHEMA)
    append_table(runs, cfg.table(RUNS_TABLE))
    return summary


def format_summary(s: ImpressionsSummary) -> str:
    """The short table the job prints: per split, rows against samples, labels, cold and OOV rows."""
    header = ("split", "in samples", "written", "clicks", "conversions", "cold users", "cold items", "oov rows")
    body = [
        (c.split, f"{c.samples_rows:,}", f"{c.rows:,}", f"{c.clicks:,}", f"{c.conversions:,}",
         f"{c.cold_user_rows:,}", f"{c.cold_item_rows:,}", f"{sum(c.oov_rows.values()):,}")
        for c in s.splits
    ]
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    line = lambda r: "  " + "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    oov = {}
    for c in s.splits:
        for k, v in c.oov_rows.items():
            if v:
                oov[f"{c.split}.{k}"] = v
    return "\n".join([
        f"impressions {s.run_id[:8]}: samples v{s.samples_version}, feature_vocab v{s.feature_vocab_version}, "
        f"history_length={s.history_length}, item_intention_length={s.item_intention_length}",
        line(header),
        *(line(r) for r in body),
        "  present but not in feature_vocab (index 0, kept): "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(oov.items())) or "none"),
        "  wrote " + ", ".join(f"{T.IMPRESSIONS_OF[c.split].name} v{c.output_version}" for c in s.splits)
        + f"; {RUNS_TABLE} +{len(s.splits)} rows",
        f"  time {s.duration_s:.1f}s",
    ])
