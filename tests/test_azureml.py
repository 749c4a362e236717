"""Azure ML job specs: every YAML loads offline with the Azure ML SDK and points at files that
exist; the entry wrapper really runs a job and hands its tables on to another Spark session."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from azure.ai.ml import load_environment, load_job, load_online_deployment, load_online_endpoint
from azure.ai.ml.entities import Command, PipelineJob, Spark

from lakerec.config import load_config

pytestmark = pytest.mark.heavy(seconds=50)

REPO = Path(__file__).resolve().parent.parent
AZUREML = REPO / "conf" / "azureml"
SPARK_ENTRY = REPO / "azureml_spark_entry.py"
RUNNER_MODULE = "lakerec.jobs.azureml"
JOB_FILES = {"ingest.yml", "filter.yml", "impressions.yml", "train.yml", "pipeline.yml"}
NOT_JOBS = {"environment.yml", "conda.yml"}  # an environment and its conda spec
ENDPOINT, DEPLOYMENT = "recommender-endpoint.yml", "recommender-deployment.yml"  # the recommender's online endpoint
PIPELINE_ORDER = ["ingest", "filter", "impressions", "train", "evaluate", "rank", "recommend"]


run = importlib.import_module(RUNNER_MODULE)


def yaml_files() -> set[str]:
    return {p.relative_to(AZUREML).as_posix() for p in AZUREML.rglob("*.y*ml")}


def jobs_and_nodes():
    """(label, job or pipeline node, folder its relative paths start from) for every job spec."""
    out = []
    for name in sorted(JOB_FILES):
        job = load_job(AZUREML / name)
        if isinstance(job, PipelineJob):
            out += [(f"{name}:{n}", node, AZUREML) for n, node in job.jobs.items()]
        else:
            out.append((name, job, AZUREML))
    return out


def referenced_module(command: str) -> tuple[str, str]:
    """The runner module and the job a command runs: `python -m lakerec.jobs.azureml train ...`."""
    words = shlex.split(command)
    assert words[:2] == ["python", "-m"], command
    return words[2], words[3]


def spark_job_name(job) -> str:
    """The job a Spark spec runs: the first word of its args (`ingest --conf ...`)."""
    return job.args.split()[0]


# --------------------------------------------------------------------------------------
# The specs
# --------------------------------------------------------------------------------------


def test_every_yaml_is_known_and_loads():
    assert yaml_files() == JOB_FILES | NOT_JOBS | {ENDPOINT, DEPLOYMENT}  # a new spec must be added to these tests
    for name in JOB_FILES:
        assert load_job(AZUREML / name) is not None
    env = load_environment(AZUREML / "environment.yml")
    assert env.name == "lakerec-train" and env.conda_file["name"] == "lakerec-train"


def test_the_recommender_endpoint_and_its_deployment_load_and_belong_together():
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint

    endpoint = load_online_endpoint(AZUREML / ENDPOINT)
    assert isinstance(endpoint, ManagedOnlineEndpoint) and endpoint.auth_mode == "key"
    deployment = load_online_deployment(AZUREML / DEPLOYMENT)
    assert isinstance(deployment, ManagedOnlineDeployment) and deployment.endpoint_name == endpoint.name
    # The registered MLflow model (no scoring script, no environment: Azure ML builds both from it),
    # lakerec-recommender (the default of mlflow.registered_recommender); the deploy sets the champion's version.
    assert deployment.model == "lakerec-recommender:1" and deployment.code_configuration is None
    assert deployment.environment is None and deployment.environment_variables["TF_USE_LEGACY_KERAS"] == "1"
    pinned = load_online_deployment(AZUREML / DEPLOYMENT, params_override=[{"model": "azureml:lakerec-recommender:7"}])
    assert pinned.model == "lakerec-recommender:7"
    assert "--set model=azureml:lakerec-recommender:$VERSION" in (AZUREML / DEPLOYMENT).read_text()
    assert deployment.instance_count == 1 and deployment.request_settings.request_timeout_ms == 5000


def test_spark_jobs_attached_pool_and_serverless():
    ingest = load_job(AZUREML / "ingest.yml")
    assert isinstance(ingest, Spark)
    assert ingest.compute == "lakerec-synapse" and ingest.resources is None  # an attached Synapse pool
    assert ingest.entry.entry == "azureml_spark_entry.py"
    assert ingest.args.split() == ["ingest", "--conf", "conf/azure.yml", "--raw", "${{inputs.raw}}", "--lake",
                                   "${{outputs.lake}}"]
    assert ingest.inputs["raw"].path == "azureml://datastores/aliccp/paths/raw/"

    filt = load_job(AZUREML / "filter.yml")
    assert isinstance(filt, Spark)
    assert filt.compute is None  # serverless Spark
    assert (filt.resources.instance_type, str(filt.resources.runtime_version)) == ("standard_e8s_v3", "3.4")
    assert filt.entry.entry == "azureml_spark_entry.py"
    assert filt.args.split() == ["filter", "--conf", "conf/azure.yml", "--lake", "${{outputs.lake}}"]
    for job in (ingest, filt):
        assert job.identity.type == "user_identity"
        assert job.outputs["lake"].path == "azureml://datastores/aliccp/paths/lake/"


def test_train_is_a_gpu_command_job():
    train = load_job(AZUREML / "train.yml")
    assert isinstance(train, Command)
    assert train.compute == "gpu-cluster"
    assert train.command.split() == ["python", "-m", "lakerec.jobs.azureml", "train", "--local-spark", "--conf",
                                     "conf/azure.yml", "--lake", "${{outputs.lake}}"]
    assert train.outputs["lake"].mode == "rw_mount"
    assert train.environment_variables["TF_USE_LEGACY_KERAS"] == "1"
    env = load_environment(AZUREML / "environment.yml")
    assert train.environment.image == env.image and train.environment.conda_file == env.conda_file


def test_pipeline_chains_the_steps_in_order():
    pipe = load_job(AZUREML / "pipeline.yml")
    assert isinstance(pipe, PipelineJob)
    assert list(pipe.jobs) == PIPELINE_ORDER
    assert pipe.experiment_name == "lakerec"
    raw = yaml.safe_load((AZUREML / "pipeline.yml").read_text())["jobs"]
    assert raw["ingest"]["inputs"]["raw"] == "${{parent.inputs.raw}}"
    for before, step in zip(PIPELINE_ORDER, PIPELINE_ORDER[1:]):
        # Azure ML orders steps by data: each one takes the previous step's output.
        assert raw[step]["inputs"]["upstream"]["path"] == f"${{{{parent.jobs.{before}.outputs.lake}}}}"
        node = pipe.jobs[step]
        text = node.args if isinstance(node, Spark) else node.command
        assert "--after ${{inputs.upstream}}" in text
    assert pipe.jobs["ingest"].type == pipe.jobs["filter"].type == pipe.jobs["impressions"].type == "spark"
    for step in ("train", "evaluate", "recommend"):
        node = pipe.jobs[step]
        assert node.type == "command" and node.compute == "gpu-cluster"
        assert referenced_module(node.command) == (RUNNER_MODULE, step)
        assert "--local-spark" in node.command.split()
    assert "--k 100" in pipe.jobs["recommend"].command
    assert "--no-evaluate" in pipe.jobs["train"].command.split()  # the evaluate step does it
    for step in ("ingest", "filter", "impressions"):  # the shared (anchored) Spark settings reach every Spark step
        node = pipe.jobs[step]
        assert (node.driver_cores, node.executor_memory, node.dynamic_allocation_max_executors) == (4, "28g", 8)
        assert (node.resources.instance_type, str(node.resources.runtime_version)) == ("standard_e8s_v3", "3.4")
    lakes = {raw[s]["outputs"]["lake"]["path"] for s in PIPELINE_ORDER}
    assert lakes == {"azureml://datastores/aliccp/paths/lake/"}


def test_every_referenced_file_exists():
    """Code folders, entry files, runner scripts, conda files, configs, and the job modules they run."""
    for label, job, base in jobs_and_nodes():
        code = (base / job.code).resolve()
        assert code == REPO, f"{label}: code must be the repository root (code: ../..), got {code}"
        if job.type == "spark":
            entry = code / job.entry.entry
            assert entry == SPARK_ENTRY, f"{label}: entry file {entry} is not {SPARK_ENTRY.name}"
            job_name = spark_job_name(job)
            text = job.args
        else:
            module, job_name = referenced_module(job.command)
            assert module == RUNNER_MODULE, f"{label}: runs {module}"
            text = job.command
            env = job.environment or job.component.environment  # a pipeline node keeps it on its component
            assert (base / "conda.yml").is_file()
            assert env.conda_file == load_environment(AZUREML / "environment.yml").conda_file, label
        assert job_name in run.JOBS, label
        # The job module the wrapper imports.
        assert (REPO / "lakerec" / "jobs" / f"{job_name}.py").is_file(), f"{label}: no job {job_name}"
        conf = re.search(r"--conf (\S+)", text).group(1)
        assert load_config(REPO / conf).target == "azure", label


def test_every_flag_passed_is_one_the_job_accepts():
    """The flags the specs pass reach the job's own parser: each must appear in its --help."""
    flags: dict[str, set[str]] = {}
    for label, job, _base in jobs_and_nodes():
        if job.type == "spark":
            name, text = spark_job_name(job), job.args
        else:
            (_script, name), text = referenced_module(job.command), job.command
        wanted = {w.split("=")[0] for w in text.split() if w.startswith("--")} - {"--local-spark", "--after"}
        flags.setdefault(name, set()).update(wanted)
    assert set(flags) == set(PIPELINE_ORDER)
    for name, wanted in sorted(flags.items()):
        out = subprocess.run([sys.executable, "-m", f"lakerec.jobs.{name}", "--help"], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        known = set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout))
        assert wanted <= known, f"lakerec.jobs.{name} does not accept {sorted(wanted - known)}"


def test_training_conda_pins_follow_requirements():
    req = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            req[name.lower()] = version
    conda = yaml.safe_load((AZUREML / "conda.yml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    pins = {}
    for spec in pip:
        name, version = spec.split("==")
        pins[re.sub(r"\[.*\]", "", name).lower()] = version
    # Where Azure ML needs otherwise (see conda.yml): azureml-mlflow caps these two.
    allowed = {"mlflow": "3.15.0", "azure-storage-blob": "12.27.1"}
    assert set(pins) == set(req) | {"azureml-mlflow"}
    assert {k: v for k, v in pins.items() if req.get(k) != v} == {**allowed, "azureml-mlflow": "1.62.0.post6"}
    assert "tensorflow[and-cuda]==2.21.0" in pip
    assert "python=3.11" in conda["dependencies"] and "openjdk=17" in conda["dependencies"]


def test_azure_config_loads_as_a_platform_target():
    cfg = load_config(REPO / "conf" / "azure.yml")
    assert cfg.target == "azure"
    assert cfg.spark.master is None and cfg.spark.local_metastore is False
    assert cfg.raw.startswith("abfss://") and cfg.lake.startswith("abfss://")
    assert cfg.tracking_uri.startswith("azureml://")
    assert (cfg.filter.min_item_count, cfg.filter.min_user_count) == (501, 51)
    assert cfg.mlflow.experiment == load_job(AZUREML / "pipeline.yml").experiment_name


# --------------------------------------------------------------------------------------
# The entry wrapper
# --------------------------------------------------------------------------------------


def test_runner_arguments():
    assert run.split_args(["train", "--local-spark", "--after", "abfss://x", "--conf", "c.yml", "--lake", "/m"]) == (
        "train", True, ["--conf", "c.yml", "--lake", "/m"])
    assert run.split_args(["ingest", "--after=u", "--raw", "r"]) == ("ingest", False, ["--raw", "r"])
    with pytest.raises(SystemExit, match="usage"):
        run.split_args(["nonsense"])
    assert run.database_location("abfss://c@a.dfs.core.windows.net/lake/", "aliccp") == (
        "abfss://c@a.dfs.core.windows.net/lake/warehouse/aliccp.db")


def test_runner_attaches_every_documented_table():
    documented = set()
    for line in (REPO / "docs" / "tables.md").read_text().splitlines():
        if line.startswith("| `"):
            cell = line.split("|")[1]
            if "(view)" not in cell:
                documented |= set(re.findall(r"`(\w+)`", cell))
    assert documented == set(run.lake_tables())


def test_runner_points_mlflow_at_the_workspace():
    argv = ["--conf", "conf/azure.yml", "--lake", "/mnt/lake"]
    assert run.platform_tracking({}) == []  # outside Azure ML: nothing added
    uri = "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/g/providers/x/workspaces/w"
    added = run.platform_tracking({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "exp1"})
    old = os.getcwd()
    try:
        os.chdir(REPO)
        cfg = run.job_config(argv + added)  # what the job itself builds from the same flags
    finally:
        os.chdir(old)
    assert (cfg.tracking_uri, cfg.mlflow.experiment, cfg.lake) == (uri, "exp1", "/mnt/lake")
    assert cfg.spark.master is None and cfg.filter.min_item_count == 501  # the rest as in conf/azure.yml


S, F, V = "\x01", "\x02", "\x03"


def test_entry_runs_ingest_and_another_session_finds_its_tables(tmp_path, spark):
    """The Spark entry file runs lakerec.jobs.ingest; a second session (another catalog) attaches its tables."""
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    (raw / "common_features_train.csv").write_text(f"a1,1,101{F}7{V}1.0\n")
    (raw / "sample_skeleton_train.csv").write_text(
        "".join(f"{i},{i % 2},0,a1,1,205{F}{100 + i}{V}1.0\n" for i in range(1, 4)) + "not,a,valid line\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(LAKEREC_DRIVER_MEMORY="1g", PYSPARK_PYTHON=sys.executable)
    proc = subprocess.run(
        [sys.executable, str(SPARK_ENTRY), "ingest", "--local-spark", "--after", "ignored",
         "--conf", "conf/local.yml", "--lake", str(lake), "--raw", str(raw), "--splits", "train",
         "--force"],  # one line in four is planted bad: over the quarantine share ingest refuses by default
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tables attached: none yet" in proc.stderr  # the first step of a fresh lake

    db = f"attach_{os.getpid()}"
    location = run.database_location(str(lake), "aliccp")
    found = run.attach_tables(spark, db, location)
    assert {"samples", "quarantine", "user_contexts"} <= set(found)
    assert "train_interactions" not in found  # filter has not run: nothing to attach
    assert spark.table(f"{db}.samples").count() == 3
    assert spark.table(f"{db}.quarantine").count() == 1
    assert run.attach_tables(spark, db, location) == found  # idempotent
    # The views live in the catalog, not the lake: attach_lake creates them again over the tables.
    viewed = f"{db}_views"  # a database name of its own for this session, over the same table folders
    (lake / "warehouse" / f"{viewed}.db").symlink_to(lake / "warehouse" / "aliccp.db")
    cfg = load_config(None, {"lake": str(lake), "database": viewed})
    assert {"skeleton_features", "common_features", "samples_wide"} <= set(run.attach_lake(spark, cfg))
    assert spark.table(f"{viewed}.skeleton_features").count() == 3 and spark.table(f"{viewed}.common_features").count() == 1
