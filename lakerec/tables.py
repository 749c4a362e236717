"""Reading and writing the lake's Delta tables by name.

Writes are Delta overwrites (optionally of a set of splits only, with `replaceWhere`), so a
re-run replaces rather than duplicates, and a run that fails half way leaves the previous
version readable: Delta commits a new version only when the write succeeds.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from lakerec.errors import MissingTableError
from lakerec.schema import tables as T


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
) -> None:
    """Overwrite a Delta table registered as `name` (or only the rows `replace_where` selects).

    The first write creates the table with its partitioning; later ones replace it, keeping
    the table's history (time travel) and its name in the catalog.
    """
    spark = df.sparkSession
    writer = df.write.format("delta").mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if replace_where and table_exists(spark, name):
        writer.option("replaceWhere", replace_where).saveAsTable(name)
    else:
        writer.option("overwriteSchema", "true").saveAsTable(name)


def rows_written_by_last_commit(spark: SparkSession, name: str) -> int:
    """Rows the table's latest Delta commit wrote (its operationMetrics), read from the log."""
    row = spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").select("operationMetrics").first()
    return int((row.operationMetrics or {}).get("numOutputRows", 0))


def table_version(spark: SparkSession, name: str) -> int:
    """The current Delta version of a table (recorded with every model trained on it)."""
    row = spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").select("version").first()
    return int(row[0])
