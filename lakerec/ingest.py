"""Ingest raw Ali-CCP files into Delta tables, losslessly, accounting for every line.

The common-features files first (user_contexts, common_features), then the skeletons
(samples, skeleton_features), whose keys are checked against the common lines just written;
rejected lines of both go to quarantine with a reason. Every table is overwritten
for the ingested splits only (Delta replaceWhere), so a re-run replaces instead of
duplicating and a failure leaves the previous versions readable. The run ends by checking
lines read = rows written + rows quarantined for every file (and that each Delta commit
wrote the rows the data holds), and writes `ingest_report`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec.aliccp import parse
from lakerec.aliccp import reasons as R
from lakerec.config import Config
from lakerec.errors import InputDataError
from lakerec.schema import tables as T
from lakerec.schema.fields import COMMON, FILE_NAMES, SKELETON, SPLITS, raw_file_name
from lakerec.sqlfiles import run_statements, sql_file
from lakerec.tables import rows_written_by_last_commit, write_table

log = logging.getLogger("lakerec.ingest")

USER_SINGLE_COLUMNS = [c.name for c in T.user_single_columns()]  # copied from user_contexts into samples

REPORT_SCHEMA = T.INGEST_REPORT.ddl


@dataclass
class FileReport:
    split: str
    file: str
    path: str
    lines_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    features_written: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def reconciles(self) -> bool:
        return self.lines_read == self.rows_written + self.rows_quarantined


class ReconcileError(RuntimeError):
    """Lines read != rows written + rows quarantined: a bug, never expected."""


def raw_path(raw: str, split: str, file: str) -> str:
    return f"{raw.rstrip('/')}/{raw_file_name(file, split)}"


def read_lines(spark: SparkSession, path: str) -> DataFrame:
    """The lines of one raw file (\\n, \\r\\n and \\r all end a line)."""
    try:
        df = spark.read.text(path)
        df.schema  # resolve now: a missing file fails here, with a clear message
    except AnalysisException as e:
        if "PATH_NOT_FOUND" in str(e) or "does not exist" in str(e):
            raise InputDataError(
                f"raw file {path} not found. --raw must hold the Ali-CCP files "
                f"({', '.join(n.format(split='<split>') for n in FILE_NAMES.values())}); generate some with "
                "`python -m lakerec.jobs.generate --out DIR`, or pick the splits with --splits."
            ) from None
        raise
    return df


def check_common_keys(parsed_common: DataFrame) -> DataFrame:
    """Mark the second and later valid lines of a split that repeat a common_feature_index."""
    firsts = (
        parsed_common.where(F.col("reason").isNull())
        .groupBy("split", "common_feature_index")
        .agg(F.min("line_number").alias("_first"))
    )
    return (
        parsed_common.join(F.broadcast(firsts), ["split", "common_feature_index"], "left")
        .withColumn(
            "reason",
            F.when(F.col("reason").isNull() & (F.col("line_number") != F.col("_first")), R.DUPLICATE_COMMON_FEATURE_INDEX)
            .otherwise(F.col("reason")),
        )
        .drop("_first")
    )


def check_skeleton_keys(parsed_skeleton: DataFrame, user_fields: DataFrame) -> DataFrame:
    """Attach each impression's user fields; mark unknown keys and click=0/conversion=1 rows.

    Args:
        parsed_skeleton: parse.parse_skeleton output with a `split` column.
        user_fields: `split, common_feature_index` and the user single-valued columns of
            the valid common lines (one row per key).
    """
    known = user_fields.withColumn("_known", F.lit(True))
    joined = parsed_skeleton.join(F.broadcast(known), ["split", "common_feature_index"], "left")
    reason = (
        F.when(F.col("reason").isNotNull(), F.col("reason"))
        .when(F.col("_known").isNull(), F.lit(R.UNKNOWN_COMMON_FEATURE_INDEX))
        .when((F.col("click") == 0) & (F.col("conversion") == 1), F.lit(R.CONVERSION_WITHOUT_CLICK))
    )
    return joined.withColumn("reason", reason).drop("_known")


def to_samples(checked_skeleton: DataFrame) -> DataFrame:
    """Valid impressions: keys and labels, the user's single fields, then the item side."""
    head = ["split", "sample_id", "click", "conversion", "common_feature_index"]
    return checked_skeleton.where(F.col("reason").isNull()).select(
        *head, *USER_SINGLE_COLUMNS, *parse.named_columns(SKELETON)
    )


def _split_of(path: Column) -> Column:
    """The split a raw file belongs to, from its name (`..._train.csv` → `train`)."""
    return F.regexp_extract(path, r"_([A-Za-z0-9]+)\.csv$", 1)


def _tally(parsed: DataFrame) -> dict[str, tuple[int, int, dict[str, int]]]:
    """Per split: (valid rows, features of valid rows, rejected rows by reason), in one pass."""
    rows = (
        parsed.groupBy("split", "reason")
        .agg(F.count(F.lit(1)).alias("n"), F.sum(F.size("features")).alias("features"))
        .collect()
    )
    out: dict[str, tuple[int, int, dict[str, int]]] = {}
    for r in rows:
        valid, feats, bad = out.get(r.split, (0, 0, {}))
        if r.reason is None:
            valid, feats = valid + r.n, feats + (r.features or 0)
        else:
            bad[r.reason] = r.n
        out[r.split] = (valid, feats, bad)
    return out


def _write_checked(df: DataFrame, cfg: Config, table: T.Table, where: str, expected: int) -> None:
    """Write (partitioned as the registry says), then check the rows Delta committed against what the data holds."""
    name = cfg.table(table.name)
    write_table(df, name, table.partitioned_by, where)
    written = rows_written_by_last_commit(df.sparkSession, name)
    if written != expected:
        raise ReconcileError(f"{name}: Delta committed {written} rows, expected {expected}")


def run(spark: SparkSession, cfg: Config, raw: str | None = None, splits: tuple[str, ...] = SPLITS) -> list[FileReport]:
    """Ingest the given splits of the raw files in `raw` (default: cfg.raw) into cfg.database.

    All splits go through one pass per kind of file: the common files first (user_contexts,
    common_features), then the skeletons, whose keys are checked against the common lines
    just written; rejected lines of both go to quarantine.

    Returns:
        One FileReport per split and file; every one reconciles.

    Raises:
        InputDataError: no raw location, an unknown split, or a missing file.
        ReconcileError: counts do not add up (a bug: nothing may be lost silently).
    """
    raw = raw or cfg.raw
    if not raw:
        raise InputDataError("no raw data location: pass --raw DIR (or set `raw:` in the config)")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise InputDataError(f"unknown split(s) {unknown}: choose from {', '.join(SPLITS)}")
    paths = {file: [raw_path(raw, s, file) for s in splits] for file in (COMMON, SKELETON)}
    for file_paths in paths.values():  # fail before writing anything if a file is missing
        for path in file_paths:
            read_lines(spark, path)
    where = "split IN ({})".format(", ".join(f"'{s}'" for s in splits))
    log.info("ingesting %s from %s", ", ".join(splits), raw)

    # Common features: the user side, one line per key.
    t0 = time.monotonic()
    numbered, lines_per_file = parse.with_line_numbers(spark, spark.read.text(paths[COMMON]))
    common = check_common_keys(parse.parse_common(numbered.withColumn("split", _split_of(F.col("path")))))
    common = common.persist(StorageLevel.MEMORY_AND_DISK)
    common_tally = _tally(common)
    _write_checked(parse.to_user_contexts(common), cfg, T.USER_CONTEXTS, where,
                   sum(t[0] for t in common_tally.values()))
    _write_checked(parse.explode_features(common, "common_feature_index"), cfg, T.COMMON_FEATURES,
                   where, sum(t[1] for t in common_tally.values()))
    common_seconds = time.monotonic() - t0

    # Skeleton: the impressions, checked against the common keys just written.
    t0 = time.monotonic()
    numbered, skeleton_lines = parse.with_line_numbers(spark, spark.read.text(paths[SKELETON]))
    lines_per_file.update(skeleton_lines)
    user_fields = (
        spark.table(cfg.table(T.USER_CONTEXTS.name)).where(where).select("split", "common_feature_index", *USER_SINGLE_COLUMNS)
    )
    skeleton = check_skeleton_keys(
        parse.parse_skeleton(numbered.withColumn("split", _split_of(F.col("path")))), user_fields
    ).persist(StorageLevel.MEMORY_AND_DISK)
    skeleton_tally = _tally(skeleton)
    _write_checked(to_samples(skeleton), cfg, T.SAMPLES, where,
                   sum(t[0] for t in skeleton_tally.values()))
    _write_checked(parse.explode_features(skeleton, "sample_id"), cfg, T.SKELETON_FEATURES,
                   where, sum(t[1] for t in skeleton_tally.values()))
    quarantine = parse.to_quarantine(common, COMMON).unionByName(parse.to_quarantine(skeleton, SKELETON))
    _write_checked(quarantine, cfg, T.QUARANTINE, where,
                   sum(sum(t[2].values()) for tally in (common_tally, skeleton_tally) for t in tally.values()))
    common.unpersist()
    skeleton.unpersist()
    skeleton_seconds = time.monotonic() - t0

    reports = []
    for split in splits:
        for file, tally, seconds in ((COMMON, common_tally, common_seconds), (SKELETON, skeleton_tally, skeleton_seconds)):
            path = raw_path(raw, split, file)
            valid, feats, bad = tally.get(split, (0, 0, {}))
            name = path.rsplit("/", 1)[-1]
            lines = sum(n for p, n in lines_per_file.items() if p.rsplit("/", 1)[-1] == name)
            reports.append(FileReport(split, file, path, lines, valid, sum(bad.values()), feats, bad, seconds))
    for _ in run_statements(spark, sql_file("ingest/samples_wide.sql"), cfg):
        pass

    bad_files = [r for r in reports if not r.reconciles]
    if bad_files:
        raise ReconcileError(
            "; ".join(f"{r.split}/{r.file}: {r.lines_read} read != {r.rows_written} written + {r.rows_quarantined} quarantined"
                      for r in bad_files)
        )
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    report_df = spark.createDataFrame(
        [
            (r.split, r.file, r.path, r.lines_read, r.rows_written, r.rows_quarantined, r.features_written,
             r.quarantined_by_reason, r.duration_s, now)
            for r in reports
        ],
        REPORT_SCHEMA,
    )
    write_table(report_df, cfg.table(T.INGEST_REPORT.name), T.INGEST_REPORT.partitioned_by, where)
    return reports


def summary(reports: list[FileReport]) -> str:
    """A short table a person reads: per split and file, lines in, rows out, quarantined."""
    lines = [f"{'split':<6} {'file':<9} {'lines read':>12} {'rows written':>13} {'quarantined':>12} {'features':>12} {'secs':>7}"]
    for r in reports:
        lines.append(
            f"{r.split:<6} {r.file:<9} {r.lines_read:>12,} {r.rows_written:>13,} {r.rows_quarantined:>12,} "
            f"{r.features_written:>12,} {r.duration_s:>7.1f}"
        )
        for reason, n in sorted(r.quarantined_by_reason.items()):
            lines.append(f"{'':<17} quarantined as {reason}: {n:,}")
    ok = all(r.reconciles for r in reports)
    lines.append("lines read = rows written + rows quarantined: " + ("yes, for every file" if ok else "NO"))
    return "\n".join(lines)
