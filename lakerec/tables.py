"""Reading and writing the lake's Delta tables by name.

Writes are Delta overwrites (optionally of a set of splits only, with `replaceWhere`), so a
re-run replaces rather than duplicates, and a run that fails half way leaves the previous
version readable: Delta commits a new version only when the write succeeds.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakerec.errors import MissingTableError
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.tables")


def with_row_numbers(df: DataFrame, order: list[Column], column: str) -> DataFrame:
    """`df` with `column` = 1..n along `order` (a total order: ties broken), plus its columns.

    Without a window over all rows (`row_number() OVER (ORDER BY ...)` moves every row to one
    partition): a distributed sort, held as a local checkpoint so both passes below see the
    same partitions; a small collected count per partition (one row each) gives the number
    before each partition, and a row's number is that plus its place in its partition. The
    filter's SQL does the same for its vocabularies (lakerec/sql/filter/03_vocabularies.sql).
    """
    sorted_ = df.orderBy(*order).select(
        "*", F.spark_partition_id().alias("_part"), F.monotonically_increasing_id().alias("_pos")
    ).localCheckpoint(eager=True)
    parts = sorted_.groupBy("_part").agg(F.min("_pos").alias("_first"), F.count(F.lit(1)).alias("_rows")).collect()
    shifts, before = {}, 0
    for p in sorted(parts, key=lambda r: r._part):
        shifts[p._part] = p._first - before  # number = _pos - shift + 1
        before += p._rows
    if not shifts:
        return df.withColumn(column, F.lit(None).cast("bigint"))
    # A literal map, not a join: the plan's size estimate stays the rows' (a join's is a product).
    shift = F.create_map(*(F.lit(x) for kv in sorted(shifts.items()) for x in kv))[F.col("_part")]
    return sorted_.select(*(F.col(f"`{c}`") for c in df.columns), (F.col("_pos") - shift + 1).alias(column))


def table_exists(spark: SparkSession, name: str) -> bool:
    return spark.catalog.tableExists(name)


def read_table(spark: SparkSession, name: str, job: str | None = None) -> DataFrame:
    """Read a registered table, or say which job writes it.

    Args:
        name: fully qualified name (`aliccp.samples`).
        job: the job named in the error; default: the one the table registry
            (lakerec.schema.tables) says writes it, so a reader need not know.
    """
    if not table_exists(spark, name):
        raise MissingTableError(name, job or T.table(name.rsplit(".", 1)[-1]).job)
    return spark.table(name)


def write_table(
    df: DataFrame,
    name: str,
    partition_by: tuple[str, ...] = (),
    replace_where: str | None = None,
    label: str | None = None,
) -> None:
    """Overwrite a Delta table registered as `name` (or only the rows `replace_where` selects).

    `label` is kept as the commit's `userMetadata` (`DESCRIBE HISTORY` shows it): which run
    wrote it, and how `rows_written_by_last_commit` knows the last commit is this write's.

    The first write creates the table with its partitioning and the registry's properties;
    later ones replace it, keeping the table's history (time travel) and its name in the catalog.

    A new table and a `replace_where` overwrite go through the catalog's own write API
    (`DataFrameWriterV2`: `create`, `overwrite(condition)`); `saveAsTable` took about 0.3 s
    more per create and 0.5 s more per overwrite on a few rows (it also updates the table's
    entry in the metastore), and every job writes several tables. Replacing a whole existing
    table keeps `saveAsTable` with `overwriteSchema`: its columns may change, and the V2
    `createOrReplace` was slower still (1.2-1.35 s on a few rows).
    """
    df = with_comments(df, name)
    table = T.TABLES.get(name.rsplit(".", 1)[-1])
    stats = {"delta.dataSkippingStatsColumns": ",".join(table.stats_columns)} if table and table.stats_columns else {}
    with _commit_label(df.sparkSession, label):
        if not table_exists(df.sparkSession, name):
            writer = df.writeTo(name).using("delta")
            if partition_by:
                writer = writer.partitionedBy(*(F.col(c) for c in partition_by))
            for key, value in stats.items():  # a table property, set as the table is created
                writer = writer.tableProperty(key, value)
            writer.create()
        elif replace_where:  # no commit at all when there is nothing to add or remove
            df.writeTo(name).overwrite(F.expr(replace_where))
        else:
            writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").options(**stats)
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            writer.saveAsTable(name)


_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


@contextmanager
def _commit_label(spark: SparkSession, label: str | None):
    """Delta's commit `userMetadata` for the writes inside, as a session setting: the V2 `create`
    ignores the write option. The jobs write their tables one at a time, so no other write shares it."""
    if not label:
        yield
        return
    before = spark.conf.get(_USER_METADATA, None)
    spark.conf.set(_USER_METADATA, label)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(_USER_METADATA)
        else:
            spark.conf.set(_USER_METADATA, before)


def with_comments(df: DataFrame, name: str) -> DataFrame:
    """`df` with each column's description from the table registry as its comment.

    Delta keeps a column's `comment` metadata in the table's schema, so the comments are
    written with the data (no extra commit): `DESCRIBE TABLE`, the Thrift server and BI tools
    show them. A table the registry does not know (a test's) is left as it is.
    """
    table = T.TABLES.get(name.rsplit(".", 1)[-1])
    if table is None:
        return df
    comments = {c.name: c.comment for c in table.columns if c.comment}
    return df.select(*(F.col(f"`{c}`").alias(c, metadata={"comment": comments[c]}) if c in comments else F.col(f"`{c}`")
                       for c in df.columns))


def maintain(spark: SparkSession, cfg, job: str) -> list[str]:
    """After `job`'s writes: OPTIMIZE ZORDER BY (`delta.zorder`), then VACUUM (`delta.vacuum_retention_hours`).

    Runs inside the job's lake_runs record, before it is marked complete, so the versions
    these commits make are the run's. Returns the statements run (none with the defaults).
    """
    conf = cfg.delta
    statements = []
    for t in T.written_by(job):
        name = cfg.table(t.name)
        if t.view or not table_exists(spark, name):
            continue
        if conf.zorder and t.zorder_by:
            statements.append(f"OPTIMIZE {name} ZORDER BY ({', '.join(t.zorder_by)})")
        if conf.vacuum_retention_hours is not None:
            statements.append(f"VACUUM {name} RETAIN {conf.vacuum_retention_hours:g} HOURS")
    if conf.vacuum_retention_hours is not None and conf.vacuum_retention_hours < 168:
        # The setting is the person's choice; Delta's check would refuse it otherwise.
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    for sql in statements:
        log.info("%s", sql)
        spark.sql(sql)
    return statements


def append_table(df: DataFrame, name: str) -> None:
    """Append rows to a Delta table registered as `name` (a run log), with the registry's comments."""
    df = with_comments(df, name)
    if table_exists(df.sparkSession, name):
        df.writeTo(name).option("mergeSchema", "true").append()
    else:
        df.writeTo(name).using("delta").create()


def _last_commit(spark: SparkSession, name: str):
    """The table's latest Delta commit (version, operationMetrics, userMetadata), read from its log.

    Through the DeltaTable API: `DESCRIBE HISTORY ... LIMIT 1` returns the same row about
    twice as slowly (measured: 0.7 s against 0.3 s on a small table), and the jobs that
    write several tables read it after every write.
    """
    from delta.tables import DeltaTable

    return DeltaTable.forName(spark, name).history(1).select("version", "operationMetrics", "userMetadata").first()


def rows_written_by_last_commit(spark: SparkSession, name: str, label: str | None = None) -> int:
    """Rows the table's latest Delta commit wrote (its operationMetrics), read from the log.

    With the `label` a write_table was given: 0 when the latest commit is not that write's
    (an overwrite that had nothing to add or remove commits nothing).
    """
    last = _last_commit(spark, name)
    if label is not None and last.userMetadata != label:
        return 0
    return int((last.operationMetrics or {}).get("numOutputRows", 0))


def table_version(spark: SparkSession, name: str) -> int:
    """The current Delta version of a table (recorded with every model trained on it)."""
    return int(_last_commit(spark, name).version)


def table_versions(spark: SparkSession, names: list[str]) -> dict[str, int]:
    """The current Delta version of each named table, read concurrently (Spark takes jobs from threads)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
        return dict(zip(names, pool.map(lambda n: table_version(spark, n), names)))
