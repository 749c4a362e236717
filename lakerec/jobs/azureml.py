"""Run a LakeRec job inside an Azure ML job.

    Spark jobs:   entry file azureml_spark_entry.py, args `JOB [--after URI] ARGS`
    Command jobs: python -m lakerec.jobs.azureml JOB [--local-spark] [--after URI] ARGS

Neither a serverless Spark session nor a GPU node shares a catalog with the step before it.
So, before it calls `lakerec.jobs.<JOB>.main(ARGS)`, this wrapper:

1. gets the Spark session: the platform's (Synapse pool, serverless Spark), or with
   `--local-spark` (command jobs on a GPU node) a local one with Delta, built by
   `lakerec.spark.get_spark`; the lakerec package is shipped to the executors as a zip;
2. attaches the lake's tables: the database is placed at `<lake>/warehouse/<database>.db`
   and every table an earlier step wrote there is registered by name, so `aliccp.samples`
   written by ingest on one cluster is found by filter on another. Where the platform keeps a
   persistent catalog (a Synapse pool, Databricks) this changes nothing;
3. points the job's MLflow at the workspace: Azure ML sets $MLFLOW_TRACKING_URI (and
   $MLFLOW_EXPERIMENT_NAME) in every job, passed on as `--set mlflow.tracking_uri=...`.

The specs ship the repository (`code: ../..`); the wrapper runs from its root, so
`--conf conf/azure.yml` resolves wherever Azure ML starts the driver, and `lakerec` imports
from the shipped code (the Spark entry file sits at the root for that reason). `--after URI` is accepted and dropped: pipeline steps pass the previous
step's output with it only so that Azure ML runs them in order.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger("lakerec.azureml")

JOBS = ("ingest", "filter", "impressions", "train", "evaluate", "rank", "recommend")


def lake_tables() -> tuple[str, ...]:
    """Every Delta table a stage writes (lakerec.schema.tables); views are re-created by the stage that owns them."""
    from lakerec.schema import tables as T

    return tuple(t.name for t in T.stored())


def split_args(argv: list[str]) -> tuple[str, bool, list[str]]:
    """(job, local_spark, the job's own arguments); `--after VALUE` is dropped."""
    if not argv or argv[0] not in JOBS:
        raise SystemExit(f"usage: python -m lakerec.jobs.azureml {{{','.join(JOBS)}}} [--local-spark] [--after URI] "
                         "[job arguments]")
    job, rest, local, out = argv[0], argv[1:], False, []
    i = 0
    while i < len(rest):
        if rest[i] == "--local-spark":
            local = True
        elif rest[i] == "--after":
            i += 1
        elif rest[i].startswith("--after="):
            pass
        else:
            out.append(rest[i])
        i += 1
    return job, local, out


def job_config(job_argv: list[str]):
    """The config the job will load: the same flags, through the same option table."""
    from lakerec import cli
    from lakerec.options import COMMON, OPTIONS

    p = cli.parser("azureml", "the job's config", tuple(o.key for o in OPTIONS if o.key not in COMMON),
                   lake="none")  # the mounted lake has no local catalog; the job checks its tables
    known, _ = p.parse_known_args(job_argv)  # the job's own flags (--splits, --run-id) are its business
    return cli.config_from_args(known)


def platform_tracking(environ) -> list[str]:
    """`--set` arguments that point the job's MLflow at the workspace Azure ML names.

    Azure ML sets MLFLOW_TRACKING_URI (and MLFLOW_EXPERIMENT_NAME, the job's experiment) in
    every job; outside Azure ML (no such variable) there is nothing to add.
    """
    uri = environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return []
    out = ["--set", f"mlflow.tracking_uri={uri}"]
    if environ.get("MLFLOW_EXPERIMENT_NAME"):
        out += ["--set", f"mlflow.experiment={environ['MLFLOW_EXPERIMENT_NAME']}"]
    return out


def database_location(lake: str, database: str) -> str:
    return f"{lake.rstrip('/')}/warehouse/{database}.db"


def attach_tables(spark, database: str, location: str, tables=None) -> list[str]:
    """Create `database` at `location` and register the Delta tables already stored under it.

    Args:
        tables: the names to look for (default: lake_tables()).

    Returns:
        The tables registered (or already known to the catalog).
    """
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database} LOCATION '{location}'")
    found = []
    for name in lake_tables() if tables is None else tables:
        if spark.catalog.tableExists(f"{database}.{name}"):
            found.append(name)
            continue
        path = f"{location}/{name}"
        if _is_delta(spark, path):
            spark.sql(f"CREATE TABLE IF NOT EXISTS {database}.{name} USING DELTA LOCATION '{path}'")
            found.append(name)
    return found


def attach_lake(spark, cfg) -> list[str]:
    """attach_tables for cfg's lake and database, then re-create the ingest's views over them.

    A platform session starts with an empty catalog: the Delta tables are in the lake, but
    views live in the catalog only, so the exploded views and samples_wide are created again
    once samples and user_contexts are attached.
    """
    from lakerec import ingest
    from lakerec.schema import tables as T

    found = attach_tables(spark, cfg.database, database_location(cfg.lake, cfg.database))
    if {T.SAMPLES.name, T.USER_CONTEXTS.name} <= set(found):
        ingest.create_views(spark, cfg)
        found += [view.name for view in ingest.VIEWS]
    return found


def _is_delta(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def ship_package(spark) -> None:
    """Send the lakerec package to the executors as a zip (the driver imports it from the shipped code)."""
    import lakerec

    package = Path(lakerec.__file__).resolve().parent
    target = Path(tempfile.mkdtemp(prefix="lakerec-")) / "lakerec.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for f in package.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f.relative_to(package.parent).as_posix())
    spark.sparkContext.addPyFile(str(target))


def main(argv: list[str] | None = None) -> None:
    from lakerec.config import REPO_ROOT

    os.chdir(REPO_ROOT)  # the shipped code's root: the specs' relative paths (--conf conf/azure.yml) resolve
    job, local_spark, job_argv = split_args(sys.argv[1:] if argv is None else argv)
    job_argv = job_argv + platform_tracking(os.environ)

    from lakerec import cli
    from lakerec.config import override
    from lakerec.spark import get_spark

    def prepare() -> None:
        cfg = job_config(job_argv)
        if local_spark:  # a GPU node has no platform session: a local one with Delta, no Derby
            get_spark(override(cfg, spark__master="local[*]", spark__local_metastore=False,
                               spark__driver_memory=os.environ.get("LAKEREC_DRIVER_MEMORY", "32g")))
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        ship_package(spark)
        found = attach_lake(spark, cfg)
        log.info("%s: lake %s, tables attached: %s", job, cfg.lake, ", ".join(found) or "none yet")

    cli.run_main("azureml", prepare)
    importlib.import_module(f"lakerec.jobs.{job}").main(job_argv)


if __name__ == "__main__":
    main()
