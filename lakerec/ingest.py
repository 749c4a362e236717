"""Ingest raw Ali-CCP files into Delta tables, losslessly, accounting for every line.

The common-features files first (user_contexts), then the skeletons (samples), whose keys
are checked against the valid common lines; rejected lines of both go to quarantine with a
reason. samples and user_contexts hold every feature of a line once, and the exploded views
(skeleton_features, common_features) read them back, so the explode is never stored.
Everything is parsed, checked and counted before anything is written: lines read = rows
written + rows quarantined for every file, and input that looks wrong (empty, mostly
quarantined, far fewer rows than the split holds) is refused with nothing replaced. Then
every table is overwritten for the ingested splits only (Delta replaceWhere), so a re-run
replaces instead of duplicating; each Delta commit is checked against the rows the data
holds, and the features the written rows hold against the features parsed; `ingest_report`
is written. The writes are one recorded run (lakerec.lake_runs): a run killed between two
commits is seen by every reader, which stops instead of mixing two runs' tables.
"""

from __future__ import annotations

import logging
import time
from functools import reduce
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from lakerec.aliccp import parse
from lakerec.aliccp import reasons as R
from lakerec.config import Config
from lakerec import lake_runs
from lakerec.errors import InputDataError, OutdatedLakeError, SuspiciousInputError
from lakerec.schema import tables as T
from lakerec.schema.fields import COMMON, FILE_NAMES, SKELETON, SPLITS, raw_file_name
from lakerec.spark import named_jobs
from lakerec.sqlfiles import run_statements, sql_file
from lakerec.tables import rows_written_by_last_commit, table_exists, write_table

log = logging.getLogger("lakerec.ingest")

USER_SINGLE_COLUMNS = [c.name for c in T.user_single_columns()]  # copied from user_contexts into samples
VIEWS = tuple(t for t in T.written_by(T.INGEST) if t.view)  # created over the tables by every run (create_views)

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


# The first bytes of the archive and compression formats a raw file is sometimes saved in.
_MAGIC = {b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
GZIP_SUFFIX = ".gz"  # Spark reads `<name>.csv.gz` as text, decompressing it


def is_local(path: str) -> bool:
    """A path on this machine (no URL scheme, or file:), which can be checked before Spark starts."""
    return "://" not in path or path.startswith("file:")


def _local(path: str) -> Path:
    return Path(path[len("file:"):] if path.startswith("file:") else path).expanduser()


def sniff_format(path: Path) -> str | None:
    """`gzip`, `zip`, `tar`, ... when the file's first bytes say it is an archive or compressed; else None."""
    with path.open("rb") as f:
        head = f.read(512)
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def local_raw_files(raw: str, splits: tuple[str, ...]) -> dict[str, list[str]]:
    """The raw file of each kind and split in a local folder (`.csv`, else `.csv.gz`), checked before any work.

    Raises:
        InputDataError: the folder or a file is missing, or a `.csv` holds compressed or archive bytes.
    """
    folder = _local(raw)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "not found"
        raise InputDataError(f"raw folder {raw} {what}: --raw must be the folder of the Ali-CCP files "
                             f"({', '.join(n.format(split='<split>') for n in FILE_NAMES.values())})")
    out: dict[str, list[str]] = {COMMON: [], SKELETON: []}
    for file in out:
        for split in splits:
            csv = folder / raw_file_name(file, split)
            gz = csv.with_name(csv.name + GZIP_SUFFIX)
            path = csv if csv.exists() else gz if gz.exists() else None
            if path is None:
                archives = sorted(p.name for p in folder.glob("*.tar*")) + sorted(p.name for p in folder.glob("*.zip"))
                hint = (f" {', '.join(archives)} is an archive: unpack it into {folder} (`tar -xzf FILE -C DIR`)"
                        if archives else "")
                raise InputDataError(
                    f"raw file {csv} not found (nor {gz.name}).{hint} --raw must hold the Ali-CCP files; "
                    "generate some with `python -m lakerec.jobs.generate --out DIR`, or pick the splits with --splits."
                )
            kind = sniff_format(path)
            if path is csv and kind:
                raise InputDataError(
                    f"raw file {path} holds {kind} bytes, not text: "
                    + (f"rename it {gz.name} (Spark decompresses it) or unpack it with `gunzip`" if kind == "gzip"
                       else f"unpack it ({kind}) into {folder}")
                    + " (no table changed)"
                )
            out[file].append(str(path))
    return out


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


def raw_files(spark: SparkSession, raw: str, splits: tuple[str, ...]) -> dict[str, list[str]]:
    """local_raw_files for a local folder; elsewhere (abfss://...) `.csv`, else `.csv.gz`, as Spark finds them."""
    if is_local(raw):
        return local_raw_files(raw, splits)
    out: dict[str, list[str]] = {COMMON: [], SKELETON: []}
    for file in out:
        for split in splits:
            csv = raw_path(raw, split, file)
            try:
                read_lines(spark, csv + GZIP_SUFFIX)
                out[file].append(csv + GZIP_SUFFIX)
            except InputDataError:
                read_lines(spark, csv)  # the message names the .csv
                out[file].append(csv)
    return out


def mark_repeated(parsed: DataFrame, key: str, reason: str) -> tuple[DataFrame, bool]:
    """Mark the second and later valid lines of a split that repeat `key` (file order) with `reason`.

    One aggregation of the keys alone (not a shuffle of whole lines) finds the keys that repeat
    and the first line of each; when none repeats, the usual case, the frame is returned as is.

    Returns:
        (the frame, whether any line was marked)
    """
    pos = F.struct("_block", "_mid")
    firsts = (
        parsed.where(F.col("reason").isNull()).groupBy("split", key)
        .agg(F.count(F.lit(1)).alias("_n"), F.min(pos).alias("_first"))
        .where("_n > 1").drop("_n")
    )
    if firsts.isEmpty():
        return parsed, False
    marked = parsed.join(firsts, ["split", key], "left").withColumn(
        "reason",
        F.when(F.col("reason").isNull() & F.col("_first").isNotNull() & (pos != F.col("_first")), F.lit(reason))
        .otherwise(F.col("reason")),
    )
    return marked.drop("_first"), True


def check_common_keys(parsed_common: DataFrame) -> tuple[DataFrame, bool]:
    """Mark the second and later valid lines of a split that repeat a common_feature_index."""
    return mark_repeated(parsed_common, "common_feature_index", R.DUPLICATE_COMMON_FEATURE_INDEX)


def check_sample_ids(checked_skeleton: DataFrame) -> tuple[DataFrame, bool]:
    """Mark the second and later valid impressions of a split that repeat a sample_id."""
    return mark_repeated(checked_skeleton, "sample_id", R.DUPLICATE_SAMPLE_ID)


def check_skeleton_keys(parsed_skeleton: DataFrame, common_keys: DataFrame) -> DataFrame:
    """Mark impressions whose key has no valid common line, and click=0/conversion=1 rows.

    Args:
        parsed_skeleton: parse.parse_skeleton output with a `split` column.
        common_keys: `split, common_feature_index` of the valid common lines (one row per key).
    """
    known = common_keys.withColumn("_known", F.lit(True))
    joined = parsed_skeleton.join(F.broadcast(known), ["split", "common_feature_index"], "left")
    reason = (
        F.when(F.col("reason").isNotNull(), F.col("reason"))
        .when(F.col("_known").isNull(), F.lit(R.UNKNOWN_COMMON_FEATURE_INDEX))
        .when((F.col("click") == 0) & (F.col("conversion") == 1), F.lit(R.CONVERSION_WITHOUT_CLICK))
    )
    return joined.withColumn("reason", reason).drop("_known")


def to_samples(checked_skeleton: DataFrame, user_fields: DataFrame) -> DataFrame:
    """Valid impressions: keys and labels, the user's single fields, then the item side.

    Args:
        user_fields: `split, common_feature_index` and the user single-valued columns of the
            valid common lines (one row per key; every valid impression's key is there).
    """
    head = ["split", "sample_id", "click", "conversion", "common_feature_index"]
    valid = checked_skeleton.where(F.col("reason").isNull()).select(*head, "feature_list")
    with_user = valid.join(F.broadcast(user_fields), ["split", "common_feature_index"], "left")
    return parse.with_named_columns(with_user, SKELETON, *head, *USER_SINGLE_COLUMNS)


def read_tagged(spark: SparkSession, paths: list[str], splits: tuple[str, ...]) -> DataFrame:
    """The raw files of one kind, one per split, as `path, _block, _mid, raw_line, split` (parse.tag_lines)."""
    frames = [parse.tag_lines(spark.read.text(p)).withColumn("split", F.lit(s)) for p, s in zip(paths, splits)]
    return reduce(DataFrame.unionByName, frames)


def compact(parsed: DataFrame) -> DataFrame:
    """What the writes need of a parsed file: the raw text is kept only for rejected lines."""
    return parsed.withColumn("raw_line", F.when(F.col("reason").isNotNull(), F.col("raw_line")))


@dataclass
class Counts:
    """One pass over a parsed file: per split valid rows, their features, rejects by reason; the read blocks."""
    by_split: dict[str, tuple[int, int, dict[str, int]]]
    blocks: list[tuple[str, int, int, int]]  # (path, block start, first line id, lines)

    @property
    def valid(self) -> int:
        return sum(v for v, _, _ in self.by_split.values())

    @property
    def features(self) -> int:
        return sum(f for _, f, _ in self.by_split.values())

    @property
    def rejected(self) -> int:
        return sum(sum(bad.values()) for _, _, bad in self.by_split.values())


def count(parsed: DataFrame) -> Counts:
    rows = (
        parsed.groupBy("split", "path", "_block", "reason")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("feature_count").alias("features"), F.min("_mid").alias("first"))
        .collect()
    )
    by_split: dict[str, tuple[int, int, dict[str, int]]] = {}
    blocks: dict[tuple[str, int], tuple[int, int]] = {}
    for r in rows:
        valid, feats, bad = by_split.get(r.split, (0, 0, {}))
        if r.reason is None:
            valid, feats = valid + r.n, feats + (r.features or 0)
        else:
            bad[r.reason] = bad.get(r.reason, 0) + r.n
        by_split[r.split] = (valid, feats, bad)
        first, n = blocks.get((r.path, r._block), (r.first, 0))
        blocks[(r.path, r._block)] = (min(first, r.first), n + r.n)
    return Counts(by_split, [(p, b, first, n) for (p, b), (first, n) in blocks.items()])


def quarantined(spark: SparkSession, parsed: DataFrame, file: str, bases: list, text: DataFrame | None) -> DataFrame:
    """The rejected lines of one kind of file, numbered, with their raw text.

    Lines marked as repeats were valid when parsed, so the compact frame holds no text for
    them: `text` (the files, tagged again; None when nothing was marked) gives it back.
    """
    rejected = parsed.where(F.col("reason").isNotNull()).select(*parse.POSITION, "split", "raw_line", "reason")
    if text is not None:
        repeats = rejected.where(F.col("raw_line").isNull()).drop("raw_line")
        rejected = rejected.where(F.col("raw_line").isNotNull()).unionByName(
            repeats.join(text.select(*parse.POSITION, "raw_line"), list(parse.POSITION))
        )
    return parse.number_lines(spark, rejected, bases).select(
        "split", F.lit(file).alias("file"), "line_number", "raw_line", "reason"
    )


def step(spark: SparkSession, what: str):
    return named_jobs(spark, f"ingest: {what}")


@dataclass(frozen=True)
class Write:
    """One table write and what it must hold: `rows` rows, and `features` features as counted by `held` (if given)."""
    df: DataFrame
    table: T.Table
    rows: int
    held: Column | None = None
    features: int = 0


def _write_checked(w: Write, cfg: Config, where: str | None, label: str) -> None:
    """Write (partitioned as the registry says), then check the rows Delta committed against what the data holds.

    With `held`, the features the written rows hold are summed while they are written (a
    Spark observation, no second pass) and checked against the features parsed: a feature
    the named columns dropped would fail the run instead of vanishing from the views.
    """
    name = cfg.table(w.table.name)
    df, observed = w.df, None
    if w.held is not None:
        observed = Observation(f"features_held_{w.table.name}")
        df = df.observe(observed, F.sum(w.held).alias("features"))
    with step(df.sparkSession, f"write {w.table.name}"):
        write_table(df, name, w.table.partitioned_by, where, label)
        written = rows_written_by_last_commit(df.sparkSession, name, label)
    if written != w.rows:
        raise ReconcileError(f"{name}: Delta committed {written} rows, expected {w.rows}")
    if observed is not None and (observed.get["features"] or 0) != w.features:
        raise ReconcileError(f"{name}: the rows written hold {observed.get['features'] or 0} features, "
                             f"parsed {w.features}")


def _write_all(cfg: Config, where: str | None, label: str, writes: list[Write]) -> None:
    """_write_checked for each write, one after the other.

    Measured: the same writes from five threads at once took as long (1M impressions, 2
    cores): the executors' cores, not the driver's commits, bound them.
    """
    for w in writes:
        _write_checked(w, cfg, where, label)


def refusals(reports: list[FileReport], held: dict[str, int], cfg: Config) -> list[str]:
    """Why this input must not replace the lake's tables (empty, mostly quarantined, far fewer rows); [] if fine.

    Args:
        reports: the run's counts, before anything is written.
        held: rows `samples` holds now, per split being replaced.
    """
    conf = cfg.ingest
    out = []
    for r in reports:
        if r.lines_read == 0:
            out.append(f"{r.path} has no lines")
        elif r.rows_quarantined > conf.max_quarantine_share * r.lines_read:
            top = max(r.quarantined_by_reason, key=r.quarantined_by_reason.get)
            out.append(
                f"{r.path}: {r.rows_quarantined:,} of {r.lines_read:,} lines quarantined "
                f"({r.rows_quarantined / r.lines_read:.0%}, most as {top}), over ingest.max_quarantine_share "
                f"{conf.max_quarantine_share:g}: is it the right file, and is it plain text (not compressed)?"
            )
    for r in reports:
        old = held.get(r.split, 0)
        if r.file == SKELETON and old and r.rows_written < conf.min_replace_ratio * old:
            out.append(f"{r.split}: {r.rows_written:,} valid impressions would replace the {old:,} that samples "
                       f"holds (under ingest.min_replace_ratio {conf.min_replace_ratio:g})")
    return out


def rows_held(spark: SparkSession, cfg: Config, splits: tuple[str, ...]) -> dict[str, int]:
    """Rows of `samples` per split now (none before the first ingest)."""
    name = cfg.table(T.SAMPLES.name)
    if not spark.catalog.tableExists(name):
        return {}
    rows = spark.table(name).where(F.col("split").isin(list(splits))).groupBy("split").count().collect()
    return {r.split: r["count"] for r in rows}


def _is_stored(spark: SparkSession, name: str) -> bool:
    """A table (not a view) of that name exists."""
    return table_exists(spark, name) and spark.catalog.getTable(name).tableType != "VIEW"


def outdated(spark: SparkSession, cfg: Config) -> list[str]:
    """What of the lake an older LakeRec wrote in another layout: a view's name held by a stored
    table (the exploded tables were stored before), a table without some of the registry's columns."""
    out = []
    for t in T.written_by(T.INGEST):
        name = cfg.table(t.name)
        if t.view:
            if _is_stored(spark, name):
                out.append(f"{t.name} is a stored table (now a view)")
            continue
        if not table_exists(spark, name):
            continue
        have = set(spark.table(name).columns)
        missing = [c for c in t.column_names if c not in have]
        if missing:
            out.append(f"{t.name} has no {', '.join(missing)}")
    return out


def check_layout(spark: SparkSession, cfg: Config, splits: tuple[str, ...], held: dict[str, int]) -> bool:
    """Whether the run must rewrite the ingest's tables whole, in the current layout (an older lake).

    Replacing one split of a table in the old layout would mix two layouts, so an older lake
    is rewritten only by a run that ingests every split it holds.

    Raises:
        OutdatedLakeError: an older lake, and the run leaves out a split it holds.
    """
    old = outdated(spark, cfg)
    if not old:
        return False
    left_out = sorted(set(held) - set(splits))
    if left_out:
        raise OutdatedLakeError(
            f"{cfg.lake} was written by an older LakeRec ({'; '.join(old)}), and this run leaves out "
            f"{', '.join(left_out)}: ingest every split it holds in one run "
            f"(--splits {','.join(s for s in SPLITS if s in held or s in splits)}) to rewrite its tables "
            "in the current layout, or ingest into a new lake (--lake DIR). Nothing changed."
        )
    log.warning("rewriting the ingest's tables whole, in the current layout (%s)", "; ".join(old))
    return True


def run(spark: SparkSession, cfg: Config, raw: str | None = None, splits: tuple[str, ...] = SPLITS) -> list[FileReport]:
    """Ingest the given splits of the raw files in `raw` (default: cfg.raw) into cfg.database.

    Both kinds of file are parsed and checked first: the common files (user_contexts), then
    the skeletons (samples), whose keys are checked against the valid common
    lines. Only when the input passes the checks (not empty, not mostly quarantined, not far
    fewer rows than the split holds; `ingest.force` skips them) are the tables replaced, as one
    recorded run (lakerec.lake_runs): a reader never takes a half-replaced lake for a whole one.

    Returns:
        One FileReport per split and file; every one reconciles.

    Raises:
        InputDataError: no raw location, an unknown split, a missing or compressed file.
        SuspiciousInputError: the input fails a check (nothing was replaced).
        ReconcileError: counts do not add up (a bug: nothing may be lost silently).
    """
    raw = raw or cfg.raw
    if not raw:
        raise InputDataError("no raw data location: pass --raw DIR (or set `raw:` in the config)")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise InputDataError(f"unknown split(s) {unknown}: choose from {', '.join(SPLITS)}")
    paths = raw_files(spark, raw, splits)  # fail before any work if a file is missing or compressed
    where = "split IN ({})".format(", ".join(f"'{s}'" for s in splits))
    with step(spark, "rows held"):
        held_now = rows_held(spark, cfg, SPLITS)
    rewrite = check_layout(spark, cfg, splits, held_now)
    replace = None if rewrite else where  # an older lake's tables are replaced whole, in the new schema
    log.info("ingesting %s from %s", ", ".join(splits), raw)

    # Parse and check both kinds of file; nothing is written until the whole input passed.
    # Each file is read once; what the writes need of it is cached on local disk (the validated
    # feature text of valid lines, the raw text of rejected ones): memory does not grow with the
    # input, and reading it back was faster than from the in-memory columnar cache (measured).
    t0 = time.monotonic()
    common = compact(parse.parse_common(read_tagged(spark, paths[COMMON], splits))).persist(StorageLevel.DISK_ONLY)
    with step(spark, "parse and count common"):
        common, common_repeats = check_common_keys(common)
        common_counts = count(common)
    common_keys = common.where(F.col("reason").isNull()).select("split", "common_feature_index")
    seconds = {COMMON: time.monotonic() - t0}
    t0 = time.monotonic()
    skeleton = compact(check_skeleton_keys(
        parse.parse_skeleton(read_tagged(spark, paths[SKELETON], splits)), common_keys
    )).persist(StorageLevel.DISK_ONLY)
    with step(spark, "parse and count skeleton"):
        skeleton, skeleton_repeats = check_sample_ids(skeleton)
        skeleton_counts = count(skeleton)
    seconds[SKELETON] = time.monotonic() - t0

    bases, lines_per_file = parse.block_bases(common_counts.blocks + skeleton_counts.blocks)
    reports = []
    for split in splits:
        for file, counts in ((COMMON, common_counts), (SKELETON, skeleton_counts)):
            path = paths[file][splits.index(split)]
            valid, feats, bad = counts.by_split.get(split, (0, 0, {}))
            name = path.rsplit("/", 1)[-1]
            lines = sum(n for p, n in lines_per_file.items() if p.rsplit("/", 1)[-1] == name)
            reports.append(FileReport(split, file, path, lines, valid, sum(bad.values()), feats, bad, seconds[file]))
    bad_files = [r for r in reports if not r.reconciles]
    if bad_files:
        raise ReconcileError(
            "; ".join(f"{r.split}/{r.file}: {r.lines_read} read != {r.rows_written} written + {r.rows_quarantined} quarantined"
                      for r in bad_files)
        )
    refused = refusals(reports, {s: n for s, n in held_now.items() if s in splits}, cfg)
    if refused and not cfg.ingest.force:
        common.unpersist()
        skeleton.unpersist()
        raise SuspiciousInputError("refusing to replace the tables (nothing changed; --force to ingest anyway): "
                                   + "; ".join(refused))
    for reason in refused:
        log.warning("ingesting anyway (--force): %s", reason)

    t0 = time.monotonic()
    with lake_runs.recorded(spark, cfg, T.INGEST, scope=",".join(splits)) as run_id:
        label = f"lakerec {T.INGEST} run {run_id}"  # each commit's userMetadata
        user_fields = parse.to_user_contexts(common).select("split", "common_feature_index", *USER_SINGLE_COLUMNS)
        quarantine = quarantined(
            spark, common, COMMON, bases, read_tagged(spark, paths[COMMON], splits) if common_repeats else None
        ).unionByName(quarantined(
            spark, skeleton, SKELETON, bases, read_tagged(spark, paths[SKELETON], splits) if skeleton_repeats else None
        ))
        _write_all(cfg, replace, label, [
            Write(to_samples(skeleton, user_fields), T.SAMPLES, skeleton_counts.valid,
                  parse.features_held(SKELETON), skeleton_counts.features),
            Write(parse.to_user_contexts(common), T.USER_CONTEXTS, common_counts.valid,
                  parse.features_held(COMMON), common_counts.features),
            Write(quarantine, T.QUARANTINE, common_counts.rejected + skeleton_counts.rejected),
        ])
        common.unpersist()
        skeleton.unpersist()
        if rewrite:  # the older lake's stored explode: every split it held is in samples now
            for view in VIEWS:
                if _is_stored(spark, cfg.table(view.name)):
                    spark.sql(f"DROP TABLE {cfg.table(view.name)}")
        create_views(spark, cfg)
        write_seconds = (time.monotonic() - t0) / 2  # the writes, shared between the two kinds of file
        for r in reports:
            r.duration_s += write_seconds
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        report_df = spark.createDataFrame(
            [
                (r.split, r.file, r.path, r.lines_read, r.rows_written, r.rows_quarantined, r.features_written,
                 r.quarantined_by_reason, r.duration_s, now)
                for r in reports
            ],
            REPORT_SCHEMA,
        )
        with step(spark, "write ingest_report"):
            write_table(report_df, cfg.table(T.INGEST_REPORT.name), T.INGEST_REPORT.partitioned_by, replace, label)
    return reports


def create_views(spark: SparkSession, cfg: Config) -> None:
    """(Re-)create the ingest's views (lakerec/sql/ingest/<view>.sql) over its tables."""
    for view in VIEWS:
        with step(spark, f"{view.name} view"):
            for _ in run_statements(spark, sql_file(f"ingest/{view.name}.sql"), cfg):
                pass


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
