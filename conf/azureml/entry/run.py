"""Run a LakeRec job inside an Azure ML job: `python conf/azureml/entry/run.py JOB [--local-spark] [--after URI] ARGS`.

Azure ML Spark jobs need an entry *file*, and neither a serverless Spark session nor a GPU
node shares a catalog with the step before it. So this wrapper, before it calls
`jobs.<JOB>.main(ARGS)`:

1. puts the repository (shipped by `code: ../..`) first on sys.path and makes it the working
   directory, so `--conf conf/azure.yml` resolves wherever Azure ML starts the driver;
2. gets the Spark session: the platform's (Synapse pool, serverless Spark), or with
   `--local-spark` (command jobs on a GPU node) a local one with Delta, built by
   `lakerec.spark.get_spark`; the lakerec package is shipped to the executors as a zip;
3. attaches the lake's tables: the database is placed at `<lake>/warehouse/<database>.db`
   and every table an earlier step wrote there is registered by name, so `aliccp.samples`
   written by ingest on one cluster is found by filter on another. Where the platform keeps a
   persistent catalog (a Synapse pool, Databricks) this changes nothing.

Inside Azure ML the job's MLflow goes to the workspace: $MLFLOW_TRACKING_URI, which Azure ML
sets, replaces the config's `mlflow.tracking_uri` (see `with_platform_tracking`).

`--after URI` is accepted and dropped: pipeline steps pass the previous step's output with
it only so that Azure ML runs them in order.
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

JOBS = ("ingest", "filter", "train", "evaluate", "recommend")


def lake_tables() -> tuple[str, ...]:
    """Every Delta table a stage writes (lakerec.schema.tables); views are re-created by the stage that owns them.

    A function, not a constant: lakerec is importable only once main() has put the
    repository on sys.path.
    """
    from lakerec.schema import tables as T

    return tuple(t.name for t in T.stored())


def find_repo(start: Path) -> Path:
    """The repository root: the first folder above `start` (or the cwd) holding lakerec/."""
    for base in (start, Path.cwd()):
        for d in (base, *base.parents):
            if (d / "lakerec" / "__init__.py").is_file():
                return d
    raise SystemExit(f"error: lakerec/ not found above {start} or {Path.cwd()}: submit the job with `code: ../..`")


def split_args(argv: list[str]) -> tuple[str, bool, list[str]]:
    """(job, local_spark, the job's own arguments); `--after VALUE` is dropped."""
    if not argv or argv[0] not in JOBS:
        raise SystemExit(f"usage: run.py {{{','.join(JOBS)}}} [--local-spark] [--after URI] [job arguments]")
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
    """The config the job will load: its --conf, with its --lake, --raw and --database applied."""
    import argparse

    from lakerec.config import load_config

    p = argparse.ArgumentParser(add_help=False)  # the job itself answers --help
    for flag in ("--conf", "--lake", "--raw", "--database"):
        p.add_argument(flag, default=None)
    known, _ = p.parse_known_args(job_argv)
    return load_config(known.conf, lake=known.lake, raw=known.raw, database=known.database)


def with_platform_tracking(job_argv: list[str], environ, folder: Path) -> list[str]:
    """Point the job's MLflow at the workspace Azure ML names in $MLFLOW_TRACKING_URI.

    Azure ML sets MLFLOW_TRACKING_URI (and MLFLOW_EXPERIMENT_NAME, the job's experiment) in
    every job; the job reads its tracking URI from the config, so a copy of the config with
    those two values is written to `folder` and passed as --conf instead. Outside Azure ML
    (no such variable) the arguments are returned unchanged.
    """
    import yaml

    uri = environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return job_argv
    argv, conf_at = list(job_argv), None
    for i, a in enumerate(argv):
        if a == "--conf" and i + 1 < len(argv):
            conf_at = i + 1
        elif a.startswith("--conf="):
            argv[i : i + 1], conf_at = ["--conf", a.split("=", 1)[1]], i + 1
    if conf_at is None:
        raise SystemExit("error: pass --conf conf/azure.yml to jobs run on Azure ML")
    data = yaml.safe_load(Path(argv[conf_at]).read_text()) or {}
    mlflow = data.setdefault("mlflow", {}) or {}
    mlflow["tracking_uri"] = uri
    if environ.get("MLFLOW_EXPERIMENT_NAME"):
        mlflow["experiment"] = environ["MLFLOW_EXPERIMENT_NAME"]
    data["mlflow"] = mlflow
    target = folder / "azureml-job.yml"
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    argv[conf_at] = str(target)
    return argv


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


def _is_delta(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def ship_package(spark, repo: Path) -> None:
    """Send lakerec/ to the executors as a zip (the driver imports it from the repository)."""
    target = Path(tempfile.mkdtemp(prefix="lakerec-")) / "lakerec.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for f in (repo / "lakerec").rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f.relative_to(repo).as_posix())
    spark.sparkContext.addPyFile(str(target))


def main(argv: list[str] | None = None) -> None:
    repo = find_repo(Path(__file__).resolve().parent)
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    job, local_spark, job_argv = split_args(sys.argv[1:] if argv is None else argv)
    job_argv = with_platform_tracking(job_argv, os.environ, Path(tempfile.mkdtemp(prefix="lakerec-conf-")))

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
        ship_package(spark, repo)
        found = attach_tables(spark, cfg.database, database_location(cfg.lake, cfg.database))
        log.info("%s: lake %s, tables attached: %s", job, cfg.lake, ", ".join(found) or "none yet")

    cli.run_main("azureml", prepare)
    importlib.import_module(f"jobs.{job}").main(job_argv)


if __name__ == "__main__":
    main()
