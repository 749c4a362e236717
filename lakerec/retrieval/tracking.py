"""MLflow set-up from the config, and what every run records about where it came from.

Tracking URI: `mlflow.tracking_uri` (e.g. `databricks`, or an Azure ML workspace's
`azureml://...` URI), else SQLite inside the lake. With the SQLite default the artifacts
go inside the lake too (`<lake>/mlartifacts`), never into the working directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from typing import Sequence

from lakerec.config import REPO_ROOT, Config
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.train.tracking")

TAG_STAGE = "lakerec.stage"
TAG_DATABASE = "lakerec.database"
TAG_RUN_NAME = "lakerec.run_name"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_DIRTY = "lakerec.git_dirty"
# Where there is no git checkout (a deployed wheel), the commit it was built from: the bundle's
# job clusters set it to ${bundle.git.commit} (resources/*.job.yml).
GIT_COMMIT_ENV = "LAKEREC_GIT_COMMIT"
SESSION_CATALOG = "spark_catalog"  # Spark's name for the session (Hive metastore) catalog
TRAINED_ON = tuple(t.name for t in (T.TRAIN_INTERACTIONS, T.TEST_INTERACTIONS, T.USER_VOCAB, T.ITEM_VOCAB,
                                    T.FEATURE_VOCAB))


def configure(cfg: Config) -> str:
    """Point MLflow at the configured store and experiment; return the experiment id."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = cfg.tracking_uri
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:"):
        mlflow.set_registry_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        location = None
        if uri.startswith("sqlite:"):
            artifacts = cfg.lake_path / "mlartifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            location = artifacts.as_uri()
        exp_id = mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def git_commit() -> tuple[str, bool | None]:
    """(commit of the code, whether the working tree has uncommitted changes).

    $LAKEREC_GIT_COMMIT, when set, is the commit (the deploy's tree state is unknown: None);
    else HEAD of the repository the code runs from.
    """
    deployed = os.environ.get(GIT_COMMIT_ENV, "").strip()
    if deployed:
        return deployed, None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "unknown", False
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return "unknown", False


def table_versions(spark, cfg: Config, names=TRAINED_ON) -> dict[str, int]:
    """Current Delta version of each named table in cfg.database."""
    from lakerec.tables import table_versions as versions

    return versions(spark, [cfg.table(n) for n in names])


def provenance_tags(cfg: Config) -> dict[str, str]:
    """Tags every training run carries: git commit (and whether the tree was dirty), database."""
    commit, dirty = git_commit()
    return {TAG_GIT_COMMIT: commit, TAG_GIT_DIRTY: "unknown" if dirty is None else str(dirty).lower(),
            TAG_DATABASE: cfg.database}


def log_table_inputs(spark, cfg: Config, names=TRAINED_ON) -> dict[str, int]:
    """Record each named table, at its current Delta version, as a dataset input of the active run.

    One `mlflow.log_input` of `mlflow.data.load_delta(table_name, version)` per table (context
    "test" for the test split, "training" otherwise): the run's Inputs in the MLflow UI, read
    back with `logged_table_versions`.

    Returns:
        {full table name: Delta version}.
    """
    import mlflow
    import mlflow.data

    versions = table_versions(spark, cfg, names)
    for table, version in versions.items():
        context = "test" if table.rsplit(".", 1)[-1].startswith("test_") else "training"
        mlflow.log_input(mlflow.data.load_delta(table_name=_catalogued(table), version=version), context=context)
    return versions


def _catalogued(table: str) -> str:
    """A table name as MLflow's Delta dataset source should see it.

    A two-level name (database.table: a local or Synapse Hive metastore) is the session
    catalog's; MLflow takes any first part other than a known metastore's name for a Unity
    Catalog catalog and looks the table up in a Databricks workspace (seconds of failed
    authentication per table off Databricks), so the catalog is named. Three levels (Unity
    Catalog) stay as they are.
    """
    return table if table.count(".") >= 2 else f"{SESSION_CATALOG}.{table}"


def logged_table_versions(run_id: str) -> dict[str, int]:
    """{full table name: Delta version} of the Delta dataset inputs a run logged (log_table_inputs)."""
    from mlflow.tracking import MlflowClient

    out = {}
    for item in MlflowClient().get_run(run_id).inputs.dataset_inputs:
        if item.dataset.source_type != "delta_table":
            continue
        source = json.loads(item.dataset.source)
        name = source["delta_table_name"].removeprefix(f"{SESSION_CATALOG}.")  # as cfg.table names it
        # MLflow's DeltaDatasetSource leaves the version out when it is 0 (it tests it for truth).
        out[name] = int(source.get("delta_table_version", 0))
    return out


@contextlib.contextmanager
def in_run(run_id: str):
    """Log into run_id: the active run if it is that one, else reopen it for the block.

    Yields:
        The MLflow run.
    """
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield active
    else:
        with mlflow.start_run(run_id=run_id) as run:
            yield run


def metric_history(run_id: str, names: Sequence[str]) -> dict[str, list[float]]:
    """The logged values of each named metric, in step order; metrics never logged are left out.

    "loss" comes back as "mean_loss", the model's metric name that plots.training_curves reads.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    out = {}
    for n in names:
        hist = sorted(client.get_metric_history(run_id, n), key=lambda m: m.step)
        if hist:
            out["mean_loss" if n == "loss" else n] = [m.value for m in hist]
    return out
