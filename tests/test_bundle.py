"""The Databricks Asset Bundle: merged per target, validated against the bundle JSON schema,
and checked against the repository it deploys.

There is no Databricks CLI here, so the test does what `databricks bundle validate` does
offline: load databricks.yml, merge the files its `include` globs name (resources merged by
key, a key defined twice is an error), apply each target's overrides (maps merge
recursively, the target's values win; a target's `variables: {name: value}` sets that
variable's value), and validate every merged target against the schema the CLI publishes
(tests/schemas/databricks-bundle.schema.json, committed with its provenance). Then what the schema cannot know:
every file a task points to exists relative to the file that points to it, every wheel
entry point is a real `main`, the task parameters are accepted by the jobs' own argument
parsers and yield the intended configuration, and the targets follow the conventions.
"""

from __future__ import annotations

import ast
import copy
import glob
import importlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml
from jsonschema import validators

REPO = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO / "tests" / "schemas" / "databricks-bundle.schema.json"  # provenance: tests/schemas/README.md
ROOT_FILE = REPO / "databricks.yml"
PIPELINE = "lakerec_pipeline"
PIPELINE_ORDER = ["ingest", "filter", "impressions", "train", "evaluate", "rank", "recommend"]
GPU_TASKS = {"train", "evaluate", "rank", "recommend"}
TARGETS = ["dev", "staging", "prod"]
RUNTIME_FILE = REPO / "conf" / "databricks" / "runtime.yml"  # what the runtime ships, what we install on top
_RUNTIME = yaml.safe_load(RUNTIME_FILE.read_text())
CPU_RUNTIME = _RUNTIME["spark_versions"]["cpu"]
GPU_RUNTIME = _RUNTIME["spark_versions"]["gpu"]
KEYED_LISTS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "environments": "environment_key"}
# What ${workspace.*} and ${bundle.*} resolve to when task parameters are parsed here. The
# bundle syncs the repository to workspace.file_path, so that maps to the repository root.
WORKSPACE = {
    "workspace.file_path": str(REPO),
    "workspace.current_user.short_name": "jdoe",
    "workspace.current_user.userName": "jdoe@example.com",
    "bundle.name": "lakerec",
    "bundle.git.commit": "0123456789abcdef0123456789abcdef01234567",
}
# What a deploy passes for the variables without a default (.github/workflows/bundle.yml sets
# BUNDLE_VAR_<name> for each; tests/test_workflows.py checks that it does).
DEPLOY_VARS = {"notification_email": "ml-alerts@example.com", "service_principal": "00000000-aaaa-bbbb-cccc-000000000000"}


# --------------------------------------------------------------------------- loading and merging

def merge(base, override):
    """Bundle merge: maps merge recursively, lists of keyed maps (tasks, job clusters) merge
    by key, other lists are replaced, and the override's scalars win."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if key in out and key in KEYED_LISTS and isinstance(value, list):
                out[key] = merge_keyed(out[key], value, KEYED_LISTS[key])
            else:
                out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def merge_keyed(base: list, override: list, key: str) -> list:
    by_key = {item[key]: item for item in base}
    order = [item[key] for item in base]
    for item in override:
        if item[key] in by_key:
            by_key[item[key]] = merge(by_key[item[key]], item)
        else:
            by_key[item[key]] = copy.deepcopy(item)
            order.append(item[key])
    return [by_key[k] for k in order]


def load_yaml(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path}: expected a mapping at the top"
    return doc


def included_files(root: dict) -> list[Path]:
    files = []
    for pattern in root.get("include", []):
        matched = sorted(Path(p) for p in glob.glob(str(REPO / pattern)))
        assert matched, f"include glob {pattern!r} matches no file"
        files += matched
    return files


def load_bundle() -> dict:
    """databricks.yml with its includes merged in (targets not applied)."""
    root = load_yaml(ROOT_FILE)
    merged = copy.deepcopy(root)
    seen: dict[tuple[str, str], Path] = {}
    for path in included_files(root):
        doc = load_yaml(path)
        assert "bundle" not in doc and "include" not in doc, f"{path}: only databricks.yml may set bundle/include"
        for kind, items in (doc.get("resources") or {}).items():
            for name in items:
                assert (kind, name) not in seen, f"resources.{kind}.{name} defined in {seen[(kind, name)]} and {path}"
                seen[(kind, name)] = path
        for name in doc.get("artifacts") or {}:
            assert ("artifacts", name) not in seen, f"artifact {name} defined twice"
            seen[("artifacts", name)] = path
        merged = merge(merged, doc)
    return merged


def target_config(bundle: dict, target: str) -> dict:
    """The configuration a target deploys: the bundle with the target's overrides applied."""
    overrides = copy.deepcopy(bundle["targets"][target] or {})
    config = {k: copy.deepcopy(v) for k, v in bundle.items() if k != "targets"}
    for name, value in (overrides.pop("variables", None) or {}).items():
        assert name in config["variables"], f"target {target} sets undeclared variable {name}"
        value = value if isinstance(value, dict) else {"default": value}
        config["variables"][name] = merge(config["variables"][name], value)
    # mode/default/cluster_id are the target's own settings, not root configuration.
    for key in ("mode", "default", "cluster_id", "compute_id"):
        overrides.pop(key, None)
    return merge(config, overrides)


def resolve(value, refs: dict[str, str]):
    """Substitute ${var.x}, ${workspace.*} and ${bundle.*} as the CLI would for one target."""
    if isinstance(value, dict):
        return {k: resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    if not isinstance(value, str):
        return value
    for _ in range(10):  # variable values may reference other values
        new = re.sub(r"\$\{([\w.\-]+)\}", lambda m: _lookup(m.group(1), refs), value)
        if new == value:
            return new
        value = new
    raise AssertionError(f"circular reference in {value!r}")


def _lookup(ref: str, refs: dict[str, str]) -> str:
    assert ref in refs, f"${{{ref}}} refers to nothing the bundle defines"
    return str(refs[ref])


def references(config: dict, target: str, workspace: dict[str, str] = WORKSPACE,
               given: dict[str, str] = DEPLOY_VARS) -> dict[str, str]:
    """Every ${...} a target's configuration may use, resolved: var.*, workspace.*, bundle.*, and
    resources.<kind>.<key>.<field> for each resource's own (scalar) fields.

    A variable's value is the target's (or the declared) default, else what the deploy passes (given).
    """
    refs = {**workspace, "bundle.target": target}
    values = {n: spec.get("default", given.get(n)) for n, spec in config["variables"].items()}
    missing = [n for n, value in values.items() if value is None]
    assert not missing, f"variables without a value in target {target}: {missing}"
    refs.update({f"var.{n}": str(value) for n, value in values.items()})
    for kind, items in config.get("resources", {}).items():
        for key, resource in items.items():
            refs.update({f"resources.{kind}.{key}.{field}": str(value) for field, value in resource.items()
                         if isinstance(value, (str, int, float))})
    return {k: resolve(v, refs) for k, v in refs.items()}


def variable_values(config: dict, target: str, workspace: dict[str, str] = WORKSPACE,
                    given: dict[str, str] = DEPLOY_VARS) -> dict[str, str]:
    refs = references(config, target, workspace, given)
    return {k[4:]: v for k, v in refs.items() if k.startswith("var.")}


def jobs_of(config: dict) -> dict:
    return config.get("resources", {}).get("jobs", {})


# --------------------------------------------------------------------------- schema

def _python_pattern(go_pattern: str) -> str:
    """The schema's patterns are Go regexps; Python's `re` has no \\p{L} / \\p{N} classes."""
    return (go_pattern.replace(r"[\p{L}\p{N}]", r"[^\W_]")
            .replace(r"\p{L}", r"[^\W\d_]")
            .replace(r"\p{N}", r"\d"))


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not re.search(_python_pattern(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@pytest.fixture(scope="module")
def validator():
    import json

    schema = json.loads(SCHEMA_PATH.read_text())
    base = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls = validators.extend(base, {"pattern": _pattern})
    cls.check_schema(schema, format_checker=None)  # (its Go regexps are not Python `regex` format)
    return cls(schema)


def schema_errors(validator, config: dict) -> list[str]:
    """Every failure as "path: message", down to the leaves of oneOf alternatives."""
    def leaves(error):
        if not error.context:
            yield error
        for sub in error.context:
            yield from leaves(sub)

    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for top in validator.iter_errors(config) for e in leaves(top)]


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


# --------------------------------------------------------------------------- tests: schema and targets

def test_every_target_merges_and_validates_against_the_bundle_schema(bundle, validator):
    assert list(bundle["targets"]) == TARGETS
    assert schema_errors(validator, bundle) == []
    for target in bundle["targets"]:
        config = target_config(bundle, target)
        assert schema_errors(validator, config) == [], target
        assert jobs_of(config), f"{target} deploys no job"


@pytest.mark.parametrize("target", TARGETS)
def test_every_reference_in_a_target_resolves(bundle, target):
    """What `databricks bundle validate` reports as an unknown reference: nothing is left unresolved."""
    config = target_config(bundle, target)
    resolved = resolve(config, references(config, target))
    left = re.findall(r"\$\{[^}]*\}", yaml.safe_dump(resolved))
    assert left == [], left
    # ... and a misspelt resource reference would be caught.
    broken = copy.deepcopy(config)
    broken["resources"]["jobs"][PIPELINE]["tasks"][0]["python_wheel_task"]["parameters"][3] = \
        "${resources.schemas.lakerc.name}"
    with pytest.raises(AssertionError, match="lakerc"):
        resolve(broken, references(broken, target))


def test_the_validator_rejects_a_broken_bundle(bundle, validator):
    """The check above would catch real mistakes: a wrong type, an unknown key, a bad reference."""
    config = target_config(bundle, "dev")
    ok = copy.deepcopy(config)
    assert schema_errors(validator, ok) == []
    cluster = config["resources"]["jobs"][PIPELINE]["job_clusters"][0]["new_cluster"]
    assert cluster["num_workers"] == "${var.cpu_workers}"  # a reference is accepted for an int ...
    cluster["num_workers"] = "two"  # ... a word is not
    task = config["resources"]["jobs"][PIPELINE]["tasks"][0]
    task["python_wheel_task"]["entrypoint"] = task["python_wheel_task"].pop("entry_point")  # typo
    errors = schema_errors(validator, config)
    assert any("num_workers" in e for e in errors), errors
    assert any("python_wheel_task" in e and "'entrypoint' was unexpected" in e for e in errors), errors
    assert any("python_wheel_task" in e and "'entry_point' is a required property" in e for e in errors), errors


def test_databricks_yml_holds_only_bundle_include_variables_targets(bundle):
    root = load_yaml(ROOT_FILE)
    # `experimental` holds one bundle-wide switch (skip_name_prefix_for_schema), which no target can set.
    assert set(root) == {"bundle", "include", "experimental", "variables", "targets"}
    assert root["bundle"]["name"] == "lakerec"
    for name, spec in root["variables"].items():
        assert isinstance(spec, dict) and spec.get("description", "").strip(), f"variable {name} has no description"
    assert {"catalog", "schema", "raw_path", "experiment", "model_name"} <= set(root["variables"])
    for path in included_files(root):
        doc = load_yaml(path)
        jobs = (doc.get("resources") or {}).get("jobs") or {}
        if jobs:  # one job per file, named after it
            assert len(jobs) == 1 and path.name == f"{next(iter(jobs))}.job.yml", path


def test_dev_is_the_default_development_target_with_a_schema_per_user(bundle):
    dev = bundle["targets"]["dev"]
    assert dev["mode"] == "development" and dev["default"] is True
    assert "run_as" not in dev  # development runs as the developer
    config = target_config(bundle, "dev")
    mine = variable_values(config, "dev")["schema"]
    theirs = variable_values(config, "dev", {**WORKSPACE, "workspace.current_user.short_name": "someone_else"})
    assert mine.endswith("_jdoe") and theirs["schema"].endswith("_someone_else")


def test_prod_is_production_with_root_path_run_as_and_permissions(bundle):
    prod = bundle["targets"]["prod"]
    assert prod["mode"] == "production" and not prod.get("default")
    assert prod["workspace"]["root_path"].startswith("/Workspace/")
    assert prod["run_as"] == {"service_principal_name": "${var.service_principal}"}
    levels = {(p.get("service_principal_name") or p.get("group_name") or p.get("user_name"), p["level"])
              for p in prod["permissions"]}
    assert ("${var.service_principal}", "CAN_MANAGE") in levels
    assert any(level == "CAN_VIEW" for _, level in levels)
    values = variable_values(target_config(bundle, "prod"), "prod")
    assert values["schema"] == "aliccp"  # a fixed, shared schema


def test_staging_is_production_mode_beside_prod_with_its_own_schema_and_experiment(bundle):
    staging, prod = bundle["targets"]["staging"], bundle["targets"]["prod"]
    assert staging["mode"] == "production" and not staging.get("default")
    for key in ("run_as", "permissions"):
        assert staging[key] == prod[key], key  # deployed and run by the same kind of service principal
    paths = {t: resolve(bundle["targets"][t]["workspace"]["root_path"], {**WORKSPACE, "bundle.target": t})
             for t in ("staging", "prod")}
    assert paths["staging"] != paths["prod"] and all(p.startswith("/Workspace/Shared/") for p in paths.values())
    values = {t: variable_values(target_config(bundle, t), t) for t in TARGETS}
    for name in ("schema", "experiment"):  # no two targets write the same tables or runs
        assert len({values[t][name] for t in TARGETS}) == 3, name


# --------------------------------------------------------------------------- tests: serving

SERVING = "lakerec_recommender"


@pytest.mark.parametrize("target", TARGETS)
def test_the_serving_endpoint_serves_the_recommender_version_the_deploy_passes(bundle, validator, target):
    config = target_config(bundle, target)
    endpoint = config["resources"]["model_serving_endpoints"][SERVING]
    values = variable_values(config, target)
    resolved = resolve(endpoint, references(config, target))
    (entity,) = resolved["config"]["served_entities"]
    # The Unity Catalog model of the schema the pipeline writes, at the version passed on deploy.
    assert entity["entity_name"] == f"{values['catalog']}.{values['schema']}.{values['recommender_name']}"
    assert endpoint["config"]["served_entities"][0]["entity_version"] == "${var.recommender_version}"
    assert entity["scale_to_zero_enabled"] is True and entity["environment_vars"]["TF_USE_LEGACY_KERAS"] == "1"
    assert resolved["config"]["traffic_config"]["routes"] == [{"served_model_name": entity["name"],
                                                                "traffic_percentage": 100}]
    assert resolved["name"] == f"lakerec-recommender-{values['schema']}"  # one per schema: dev users apart
    # What the schema check catches here: a version given as a number, a misspelt key.
    broken = copy.deepcopy(config)
    served = broken["resources"]["model_serving_endpoints"][SERVING]["config"]["served_entities"][0]
    served["entity_version"] = 3
    served["entity"] = served.pop("entity_name")
    errors = schema_errors(validator, broken)
    assert any("entity_version" in e and "3 is not of type 'string'" in e for e in errors), errors
    assert any("'entity' was unexpected" in e for e in errors), errors


# --------------------------------------------------------------------------- tests: the workflow

def test_pipeline_runs_ingest_filter_train_evaluate_recommend_in_order(bundle):
    job = jobs_of(target_config(bundle, "dev"))[PIPELINE]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert set(tasks) == set(PIPELINE_ORDER)
    for before, after in zip(PIPELINE_ORDER, PIPELINE_ORDER[1:]):
        assert [d["task_key"] for d in tasks[after]["depends_on"]] == [before]
    assert "depends_on" not in tasks["ingest"]
    assert job["max_concurrent_runs"] == 1


def test_spark_steps_on_a_cpu_ml_runtime_and_training_on_a_single_node_gpu_cluster(bundle):
    config = target_config(bundle, "dev")
    for name, job in jobs_of(config).items():
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        for task in job["tasks"]:
            cluster = clusters[task["job_cluster_key"]]
            key = task["task_key"]
            gpu = key in GPU_TASKS or "notebook_task" in task
            assert cluster["spark_version"] == (GPU_RUNTIME if gpu else CPU_RUNTIME), (name, key)
            params = task.get("python_wheel_task", {}).get("parameters", [])
            if gpu and "--workers" in params:
                # Distributed training: one barrier task per GPU on several nodes, so the
                # Petastorm cache must be on storage every node reads.
                assert cluster["spark_conf"]["spark.task.resource.gpu.amount"] == "1", (name, key)
                assert "--gpu" in params and cluster["data_security_mode"] == "SINGLE_USER"
                assert params[params.index("--petastorm-cache") + 1].startswith("file:///dbfs/")
                assert cluster["spark_env_vars"]["TF_USE_LEGACY_KERAS"] == "1"
            elif gpu:
                # Petastorm's cache is on the node's local disk (conf/databricks.yml): one node.
                assert cluster["num_workers"] == 0, (name, key)
                assert cluster["spark_conf"]["spark.databricks.cluster.profile"] == "singleNode"
                assert cluster["custom_tags"]["ResourceClass"] == "SingleNode"
                assert cluster["spark_env_vars"]["TF_USE_LEGACY_KERAS"] == "1"
                assert {"requirements": "../requirements-databricks.txt"} in task["libraries"], (name, key)
            assert {"whl": "../dist/*.whl"} in task["libraries"], (name, key)
    gpu_node = variable_values(config, "dev")["gpu_node_type"]
    assert gpu_node.startswith("Standard_NC"), gpu_node  # an Azure GPU VM
    conf = load_yaml(REPO / "conf" / "databricks.yml")
    assert conf["train"]["petastorm_cache"].startswith("file:///local_disk0/")


def test_every_file_a_task_points_to_exists_relative_to_its_file():
    root = load_yaml(ROOT_FILE)
    files = [ROOT_FILE, *included_files(root)]
    outputs = set()  # what the artifacts build: <path>/dist/*.whl, path relative to its file
    for path in files:
        for name, artifact in (load_yaml(path).get("artifacts") or {}).items():
            assert artifact["type"] == "whl"
            source = (path.parent / artifact["path"]).resolve()
            assert (source / "pyproject.toml").is_file(), f"artifact {name}: no pyproject.toml in {source}"
            assert "--wheel-dir dist" in artifact["build"]
            outputs.add(source / "dist" / "*.whl")
    assert outputs
    checked = 0
    for path in files:
        doc = load_yaml(path)
        jobs = dict((doc.get("resources") or {}).get("jobs") or {})
        for target in (doc.get("targets") or {}).values():
            jobs.update(((target or {}).get("resources") or {}).get("jobs") or {})
        for job in jobs.values():
            for task in job.get("tasks", []):
                for kind, key in (("spark_python_task", "python_file"), ("notebook_task", "notebook_path")):
                    if kind in task:
                        file = path.parent / task[kind][key]
                        assert file.is_file(), f"{path.name}: {task['task_key']}: {file} does not exist"
                        checked += 1
                        if kind == "notebook_task":
                            assert file.read_text().startswith("# Databricks notebook source\n"), file
                for lib in task.get("libraries", []):
                    if "requirements" in lib:
                        assert (path.parent / lib["requirements"]).is_file(), lib
                        checked += 1
                    if "whl" in lib:
                        whl = (path.parent / lib["whl"]).resolve()
                        # Built at deploy time: it must be an artifact's output.
                        assert whl in outputs, f"{lib['whl']} is not what an artifact builds ({outputs})"
                        checked += 1
    assert checked >= 10


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_wheel_entry_point_is_a_console_script_with_a_real_main(bundle):
    project = _pyproject()["project"]
    scripts = project["scripts"]
    used = set()
    for job in jobs_of(target_config(bundle, "prod")).values():
        for task in job["tasks"]:
            if "python_wheel_task" in task:
                wheel_task = task["python_wheel_task"]
                assert wheel_task["package_name"] == project["name"]
                used.add(wheel_task["entry_point"])
    assert used == {f"lakerec-{t}" for t in PIPELINE_ORDER}
    for name, target in scripts.items():
        module, func = target.split(":")
        main = getattr(importlib.import_module(module), func)
        assert callable(main) and func == "main", name
        # lakerec-evaluate-ranker -> lakerec.jobs.evaluate_ranker (console scripts use hyphens)
        assert module == f"lakerec.jobs.{name.removeprefix('lakerec-').replace('-', '_')}", name
    assert used <= set(scripts)


class _Parsed(Exception):
    """Raised from config_from_args: the task's argv parsed, here is the config it yields."""

    def __init__(self, cfg):
        self.cfg = cfg


def run_entry_point(monkeypatch, entry_point: str, argv: list[str]):
    """Run a console script's main() up to the point where it has its Config; return it."""
    from lakerec import cli

    real = cli.config_from_args

    def capture(args, **overrides):
        raise _Parsed(real(args, **overrides))

    def run_main(stage, fn):
        try:
            fn()
        except _Parsed:
            raise
        raise AssertionError(f"{stage} did not build its config from its flags")

    monkeypatch.setattr(cli, "config_from_args", capture)
    monkeypatch.setattr(cli, "run_main", run_main)
    module, func = _pyproject()["project"]["scripts"][entry_point].split(":")
    try:
        getattr(importlib.import_module(module), func)(argv)
    except _Parsed as parsed:
        return parsed.cfg
    except SystemExit as e:  # argparse refused the parameters
        raise AssertionError(f"{entry_point} {argv}: the job's parser refused them (exit {e.code})") from None
    raise AssertionError(f"{entry_point} returned without building a config")


@pytest.mark.parametrize("target", TARGETS)
def test_task_parameters_parse_with_the_jobs_parsers_into_the_target_config(bundle, target, monkeypatch):
    config = target_config(bundle, target)
    values = variable_values(config, target)
    database = f"{values['catalog']}.{values['schema']}"
    job = resolve(jobs_of(config)[PIPELINE], references(config, target))
    for task in job["tasks"]:
        wheel_task = task["python_wheel_task"]
        cfg = run_entry_point(monkeypatch, wheel_task["entry_point"], wheel_task["parameters"])
        assert cfg.target == "databricks"
        assert cfg.database == database, task["task_key"]
        assert cfg.lake == f"/Volumes/{values['catalog']}/{values['schema']}/lake"  # the bundle's lake volume
        assert cfg.spark.master is None and cfg.spark.local_metastore is False
        assert cfg.tracking_uri == "databricks"
        if "--experiment" in wheel_task["parameters"]:  # ingest, filter, impressions log no runs
            assert cfg.mlflow.experiment == values["experiment"], task["task_key"]
        if task["task_key"] == "ingest":
            assert cfg.raw == values["raw_path"]
    registered = {t["task_key"]: t["python_wheel_task"]["parameters"] for t in job["tasks"]}
    flag = registered["rank"].index("--registered-ranker")
    assert registered["rank"][flag + 1] == f"{database}.{values['ranker_name']}"
    flag = registered["train"].index("--registered-model")
    assert registered["train"][flag + 1] == f"{database}.{values['model_name']}"


def notebook_parameter_defaults(path: Path) -> dict[str, str]:
    """The keyword arguments of the notebook's `parameters(...)` call (its widgets)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "parameters":
            return {kw.arg: ast.literal_eval(kw.value) if isinstance(kw.value, ast.Constant) else None
                    for kw in node.keywords}
    raise AssertionError(f"{path}: no parameters(...) call")


@pytest.mark.parametrize("target", TARGETS)
def test_notebook_job_passes_widgets_the_notebook_declares_and_registers_in_unity_catalog(bundle, target):
    from lakerec import notebook

    config = target_config(bundle, target)
    values = variable_values(config, target)
    job = resolve(jobs_of(config)["lakerec_train_notebook"], references(config, target))
    (task,) = job["tasks"]
    path = REPO / "notebooks" / "02_train.py"
    declared = notebook_parameter_defaults(path)
    given = task["notebook_task"]["base_parameters"]
    assert set(given) <= set(declared), set(given) - set(declared)
    cfg = notebook.config({**{k: "" for k in declared}, **given})
    assert cfg.database == f"{values['catalog']}.{values['schema']}"
    assert cfg.mlflow.registered_model == f"{values['catalog']}.{values['schema']}.{values['model_name']}"
    assert cfg.mlflow.experiment == values["experiment"] and cfg.tracking_uri == "databricks"
    assert cfg.train.epochs == int(given["epochs"])
    assert cfg.mlflow.registered_ranker == f"{values['catalog']}.{values['schema']}.{values['ranker_name']}"
    assert cfg.rank.epochs == int(given["rank_epochs"])


# --------------------------------------------------------------------------- tests: config, requirements, wheel

def test_databricks_conf_uses_the_platform_session_catalog_and_mlflow():
    from lakerec.config import load_config

    cfg = load_config(REPO / "conf" / "databricks.yml", database="main.lakerec_ci")
    assert cfg.target == "databricks"
    assert cfg.database == "main.lakerec_ci" and cfg.table("samples") == "main.lakerec_ci.samples"
    assert cfg.spark.master is None and cfg.spark.local_metastore is False
    assert cfg.tracking_uri == "databricks"
    assert (cfg.filter.min_item_count, cfg.filter.min_user_count) == (501, 51)  # the full data's thresholds
    assert load_config(REPO / "conf" / "databricks.yml").database.count(".") == 1  # catalog.schema fall-back


def _requirement_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_databricks_requirements_are_the_local_pins_without_pyspark_and_delta():
    local = _requirement_lines(REPO / "requirements.txt")
    assert any(ln.startswith("pyspark==") for ln in local) and any(ln.startswith("delta-spark==") for ln in local)
    expected = [ln for ln in local if not re.match(r"(pyspark|delta-spark)\s*==", ln)]
    assert _requirement_lines(REPO / "requirements-databricks.txt") == expected


def test_wheel_builds_with_the_entry_points_sql_files_and_no_runtime_dependencies(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("lakerec",):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(REPO / name, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("lakerec-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = zf.read(info).decode()
        metadata = zf.read(info.replace("entry_points.txt", "METADATA")).decode()
    sql_here = {str(p.relative_to(REPO)) for p in (REPO / "lakerec" / "sql").rglob("*.sql")}
    assert sql_here and sql_here <= names
    assert {"lakerec/jobs/train.py", "lakerec/retrieval/train.py", "lakerec/notebook.py"} <= names
    assert not any(n.startswith(("tests/", "notebooks/", "conf/", "jobs/")) for n in names)
    scripts = dict(re.findall(r"^(lakerec-[\w-]+) = (\S+)$", entry_points, re.M))
    assert scripts == _pyproject()["project"]["scripts"]
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    assert requires and all('extra == "local"' in r for r in requires), requires  # nothing for Databricks
    assert any(r.startswith("pyspark==") for r in requires)  # the local extra is requirements.txt


# --------------------------------------------------------------------------- tests: the objects the bundle owns

CATALOG_FILE = REPO / "resources" / "lakerec.catalog.yml"


@pytest.mark.parametrize("target", TARGETS)
def test_the_bundle_owns_the_schema_volumes_experiment_and_models_the_tasks_use(bundle, target, monkeypatch):
    config = target_config(bundle, target)
    values = variable_values(config, target)
    res = resolve(config["resources"], references(config, target))
    (schema,) = res["schemas"].values()
    assert (schema["catalog_name"], schema["name"]) == (values["catalog"], values["schema"])
    database = f"{schema['catalog_name']}.{schema['name']}"
    volumes = {v["name"]: f"/Volumes/{v['catalog_name']}/{v['schema_name']}/{v['name']}" for v in res["volumes"].values()}
    assert set(volumes) == {"raw", "lake"}
    assert all(v["schema_name"] == schema["name"] for v in res["volumes"].values())
    assert values["raw_path"] == volumes["raw"]  # by default ingest reads the schema's own raw volume
    (experiment,) = res["experiments"].values()
    models = {m["name"]: f"{m['catalog_name']}.{m['schema_name']}.{m['name']}" for m in res["registered_models"].values()}
    assert set(models) == {values["model_name"], values["ranker_name"], values["recommender_name"]}
    for task in res["jobs"][PIPELINE]["tasks"]:
        cfg = run_entry_point(monkeypatch, task["python_wheel_task"]["entry_point"], task["python_wheel_task"]["parameters"])
        assert cfg.database == database and cfg.lake == volumes["lake"], task["task_key"]
        if "--experiment" in task["python_wheel_task"]["parameters"]:
            assert cfg.mlflow.experiment == experiment["name"], task["task_key"]
    (entity,) = res["model_serving_endpoints"][SERVING]["config"]["served_entities"]
    assert entity["entity_name"] == models[values["recommender_name"]]


def test_jobs_take_names_from_the_resources_not_from_the_variables():
    """In development mode the CLI renames the models and the experiment; ${resources.*} follows, ${var.*} would not."""
    for path in sorted((REPO / "resources").glob("*.yml")):
        if path == CATALOG_FILE:
            continue
        text = path.read_text()
        for var in ("catalog", "schema}.", "experiment", "model_name", "ranker_name", "recommender_name"):
            assert f"${{var.{var}" not in text, f"{path.name} names an object with ${{var.{var}...}}"


def test_readme_deploy_section_runs_no_sql_for_what_the_bundle_declares():
    section = _readme_section("## Deploy to Azure Databricks")
    sql = "\n".join(re.findall(r"```sql\n(.*?)```", section, re.S)).upper()
    assert not re.findall(r"^\s*CREATE\s+(?:SCHEMA|VOLUME|MODEL)\b", sql, re.M), sql
    assert not re.findall(r"\bON\s+(?:SCHEMA|VOLUME|MODEL)\b", sql), sql  # grants: the schema resource's
    assert "resources/lakerec.catalog.yml" in section


# --------------------------------------------------------------------------- tests: schedule, notifications, commit

@pytest.mark.parametrize("target", TARGETS)
def test_jobs_mail_failures_to_the_notification_variable_and_the_pipeline_is_scheduled(bundle, target):
    root = load_yaml(ROOT_FILE)["variables"]["notification_email"]
    assert root["description"].strip() and "default" not in root  # staging and prod must pass it
    config = target_config(bundle, target)
    values = variable_values(config, target)
    for name, job in resolve(jobs_of(config), references(config, target)).items():
        assert job["email_notifications"]["on_failure"] == [values["notification_email"]], name
    schedule = jobs_of(config)[PIPELINE]["schedule"]
    assert schedule["timezone_id"] == "UTC" and schedule["quartz_cron_expression"].split()[-1] == "SUN"
    # Prod runs on its schedule; staging is run by the workflow on every push (its preset pauses
    # every trigger); development mode pauses them by itself.
    paused = config.get("presets", {}).get("trigger_pause_status", schedule["pause_status"])
    assert paused == {"prod": "UNPAUSED", "staging": "PAUSED", "dev": "UNPAUSED"}[target]
    assert bundle["targets"][target].get("mode") == ("development" if target == "dev" else "production")
    if target == "dev":
        assert values["notification_email"] == WORKSPACE["workspace.current_user.userName"]
    else:
        assert values["notification_email"] == DEPLOY_VARS["notification_email"]


def test_every_job_cluster_passes_the_deployed_commit_which_the_training_runs_log(bundle, monkeypatch):
    from lakerec.config import load_config
    from lakerec.retrieval import tracking

    config = target_config(bundle, "prod")
    for name, job in jobs_of(config).items():
        for cluster in job["job_clusters"]:
            env = cluster["new_cluster"]["spark_env_vars"]
            assert env[tracking.GIT_COMMIT_ENV] == "${bundle.git.commit}", (name, cluster["job_cluster_key"])
    cfg = load_config(REPO / "conf" / "databricks.yml", database="lakerec.aliccp")
    monkeypatch.setenv(tracking.GIT_COMMIT_ENV, WORKSPACE["bundle.git.commit"])
    tags = tracking.provenance_tags(cfg)
    assert tags[tracking.TAG_GIT_COMMIT] == WORKSPACE["bundle.git.commit"]
    assert tags[tracking.TAG_GIT_DIRTY] == "unknown"  # the deploy's working tree is not known
    monkeypatch.delenv(tracking.GIT_COMMIT_ENV)
    commit, _ = tracking.git_commit()  # a checkout: its own HEAD
    assert commit != WORKSPACE["bundle.git.commit"]


# --------------------------------------------------------------------------- tests: runtime compatibility

def _readme_section(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end != -1 else None]


def _pins(path: Path) -> dict[str, str]:
    return dict(re.match(r"([\w.\-]+)==(\S+)$", ln).groups() for ln in _requirement_lines(path))


def test_runtime_list_requirements_and_readme_table_agree():
    packages = _RUNTIME["packages"]
    assert {"pyspark", "delta-spark", "tensorflow", "mlflow"} <= set(packages)
    pins = _pins(REPO / "requirements-databricks.txt")
    for name, spec in packages.items():
        assert pins.get(name) == spec["installs"], (name, pins.get(name), spec["installs"])
        assert spec["ships"] == "unconfirmed" or spec["source"], f"{name}: a runtime version needs its source"
    # The README's table under "Runtime compatibility", one row per package, says the same.
    section = _readme_section("## Deploy to Azure Databricks")
    section = section[section.index("**Runtime compatibility**"):]
    rows = re.findall(r"^\| `([\w.\-]+)` \| ([^|]+?) \| ([^|]+?) \|", section, re.M)
    table = {name: (ships, installs) for name, ships, installs in rows}
    assert table == {name: (spec["ships"], f"`{spec['installs']}`" if spec["installs"] else "the runtime's")
                     for name, spec in packages.items()}
    assert _RUNTIME["runtime"] in section
