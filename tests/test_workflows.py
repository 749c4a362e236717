"""The GitHub Actions workflows: linted with actionlint, and checked against the repository.

actionlint (built by `make setup` with Go, at the Makefile's ACTIONLINT version) checks syntax,
expressions, action inputs and the shell of every `run:`. What it cannot know is checked here:
every `make X` is a Makefile target, every `python -m X` an importable module, every file a
command names exists, every `databricks bundle ... -t T` is a bundle target and every job it
runs a bundle job; secrets reach steps only through `env:`; actions are pinned by version tag;
and the workflows do what the delivery needs (README, "Continuous delivery").
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_bundle import DEPLOY_VARS, ROOT_FILE, load_bundle, load_yaml, target_config

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
ACTIONLINT_PIN = re.compile(r"^ACTIONLINT := (github.com/rhysd/actionlint/cmd/actionlint@v\d+\.\d+\.\d+)$", re.M)


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files, "no workflow"
    return {p.name: _load(p) for p in files}


def _steps(workflows):
    for name, doc in workflows.items():
        for job_name, job in doc["jobs"].items():
            for step in job.get("steps", []):
                yield name, job_name, job, step


def _commands(run: str) -> list[list[str]]:
    """The shell commands of a `run:` script, one token list each (`${{ }}` kept as one token)."""
    script = re.sub(r"\$\{\{.*?\}\}", "EXPR", run).replace("\\\n", " ")
    out = []
    for line in re.split(r"\n|&&|\|\||;", script):
        if line.strip() and not line.strip().startswith("#"):
            out.append(shlex.split(line))
    return out


def _actionlint() -> str | None:
    venv_bin = str(Path(sys.executable).parent)
    return shutil.which("actionlint", path=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))


# --------------------------------------------------------------------------- lint

def test_actionlint_passes_every_workflow_and_rejects_a_broken_one(tmp_path):
    exe = _actionlint()
    if exe is None:
        pin = ACTIONLINT_PIN.search((REPO / "Makefile").read_text()).group(1)
        pytest.skip(f"actionlint not installed: `make setup` builds it when Go is on PATH (go install {pin})")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    out = subprocess.run([exe, "-no-color", *files], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on: ubuntu-24.04",
                                                                 "runs-on: ubuntu-24.04\n    step: []"))
    out = subprocess.run([exe, "-no-color", str(broken)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and 'unexpected key "step" for "job" section' in out.stdout, out.stdout


# --------------------------------------------------------------------------- commands exist

def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):(?!=)", (REPO / "Makefile").read_text(), re.M))


def test_every_command_a_job_runs_exists_in_the_repository(workflows):
    bundle = load_bundle()
    targets, jobs = set(bundle["targets"]), set(bundle["resources"]["jobs"])
    make_targets = _make_targets()
    checked = 0
    for name, job_name, job, step in _steps(workflows):
        if "run" not in step:
            continue
        matrix = job.get("strategy", {}).get("matrix", {})
        for argv in _commands(step["run"]):
            where = f"{name}: {job_name}: {' '.join(argv)}"
            if argv[0] == "make":
                wanted = [a for a in argv[1:] if "=" not in a and not a.startswith("-")]
                assert wanted and set(wanted) <= make_targets, where
                checked += 1
            if "-m" in argv and Path(argv[0]).name.startswith("python"):
                module = argv[argv.index("-m") + 1]
                assert (REPO / Path(*module.split("."))).with_suffix(".py").is_file() or \
                    importlib.util.find_spec(module) is not None, where
                checked += 1
            if argv[:2] == ["databricks", "bundle"]:
                assert argv[2] in {"validate", "deploy", "run", "destroy"}, where
                target = argv[argv.index("-t") + 1]
                named = matrix.get("target") if target == "EXPR" else [target]
                assert named and set(named) <= targets, where
                if argv[2] == "run":
                    assert argv[3] in jobs, where
                checked += 1
            for i, arg in enumerate(argv):  # files: `-f FILE` and repository paths
                if arg == "-f" or re.match(r"^(conf|resources|tests|bench|notebooks|\.ci)/", arg):
                    path = argv[i + 1] if arg == "-f" else arg
                    assert (REPO / path).is_file(), f"{where}: {path} does not exist"
                    checked += 1
    assert checked >= 8, checked


def test_the_command_check_would_catch_a_missing_target():
    assert "test" in _make_targets() and "tset" not in _make_targets()
    assert _commands('make test PYTHON=python\n# a comment\naz ml job create -f "x y.yml" --x "${{ a.b }}"') == \
        [["make", "test", "PYTHON=python"], ["az", "ml", "job", "create", "-f", "x y.yml", "--x", "EXPR"]]


# --------------------------------------------------------------------------- credentials and pins

def test_credentials_come_only_from_secrets_through_env_and_are_never_echoed(workflows):
    for name, doc in workflows.items():
        text = (WORKFLOWS / name).read_text()
        assert not re.search(r"(?i)(token|password|client_secret)\s*:\s*['\"]?[A-Za-z0-9]{16,}", text), name
        for job_name, job in doc["jobs"].items():
            envs = [doc.get("env", {}), job.get("env", {})] + [s.get("env", {}) for s in job.get("steps", [])]
            for env in envs:
                for key, value in env.items():
                    if re.search(r"HOST|CLIENT|TENANT|SUBSCRIPTION|TOKEN|SECRET", key) and key != "DATABRICKS_AUTH_TYPE":
                        assert str(value).startswith("${{ secrets."), f"{name}: {key} is not a secret"
            for step in job.get("steps", []):
                run = step.get("run", "")
                assert "secrets." not in run, f"{name}: {job_name}: a secret inside a command line"
                assert not re.search(r"\b(echo|printf)\b.*\$\{?(DATABRICKS|AZURE|BUNDLE_VAR)", run), run
    # OIDC wherever a platform is logged in to: no long-lived secret is needed.
    for name in ("bundle.yml", "azureml.yml"):
        doc = workflows[name]
        assert doc["permissions"]["id-token"] == "write", name
    assert workflows["bundle.yml"]["env"]["DATABRICKS_AUTH_TYPE"] == "github-oidc"
    (login,) = [s for _, _, _, s in _steps({"azureml.yml": workflows["azureml.yml"]})
                if s.get("uses", "").startswith("azure/login@")]
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}  # no client secret


def test_actions_are_pinned_by_version_tag(workflows):
    for name, _, _, step in _steps(workflows):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+){0,2}", step["uses"]), f"{name}: {step['uses']}"
    assert ACTIONLINT_PIN.search((REPO / "Makefile").read_text())  # the exact actionlint version set-up builds


# --------------------------------------------------------------------------- what the workflows do

def _uses(job, prefix):
    return [s for s in job["steps"] if s.get("uses", "").startswith(prefix)]


def test_ci_runs_make_test_with_python_311_java_17_node_and_caches(workflows):
    from lakerec import jars

    ci = workflows["ci.yml"]
    assert set(ci["on"]) == {"pull_request", "push"}
    (job,) = ci["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-")
    (python,) = _uses(job, "actions/setup-python@")
    assert python["with"]["python-version"] == "3.11" and python["with"]["cache"] == "pip"
    (java,) = _uses(job, "actions/setup-java@")
    assert java["with"]["java-version"] == "17"
    (node,) = _uses(job, "actions/setup-node@")
    assert node["with"]["cache"] == "npm"
    (cache,) = _uses(job, "actions/cache@")
    env = {k: v for k, v in os.environ.items() if k != "LAKEREC_JARS_DIR"}
    saved = os.environ.copy()
    try:
        os.environ.clear()
        os.environ.update(env)
        assert Path(cache["with"]["path"]).expanduser() == jars.cache_dir().parent  # where lakerec.jars puts them
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert "hashFiles('requirements.txt')" in cache["with"]["key"]  # the delta-spark pin decides the jars
    assert job["steps"][-1]["run"].startswith("make test")


def test_bundle_is_validated_per_target_on_pull_requests_and_deployed_staging_then_prod(workflows):
    wf = workflows["bundle.yml"]
    bundle = load_bundle()
    assert set(wf["on"]) == {"pull_request", "push"} and wf["on"]["push"]["tags"] == ["v*"]
    jobs = wf["jobs"]
    assert jobs["validate"]["strategy"]["matrix"]["target"] == list(bundle["targets"])
    assert "pull_request" in jobs["validate"]["if"]
    assert "refs/heads/main" in jobs["deploy-staging"]["if"] and "refs/tags/v" in jobs["deploy-prod"]["if"]
    runs = {name: [s["run"] for s in job["steps"] if "run" in s] for name, job in jobs.items()}
    assert runs["deploy-staging"] == ["databricks bundle deploy -t staging",
                                      "databricks bundle run lakerec_pipeline -t staging"]
    assert runs["deploy-prod"] == ["databricks bundle deploy -t prod"]
    # The CLI the workflows install satisfies the bundle's databricks_cli_version.
    wanted = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", load_yaml(ROOT_FILE)["bundle"]["databricks_cli_version"])
    for name, job in jobs.items():
        (cli,) = _uses(job, "databricks/setup-cli@")
        have = tuple(map(int, cli["uses"].split("@v")[1].split(".")))
        assert have >= tuple(map(int, wanted.groups())), name
    # Every variable a deployed target has no value for comes from the workflow's environment.
    for target in ("staging", "prod"):
        config = target_config(bundle, target)
        needed = {n for n, spec in config["variables"].items() if spec.get("default") in (None, "")}
        assert needed == set(DEPLOY_VARS), target
        assert {f"BUNDLE_VAR_{n}" for n in needed} <= set(wf["env"]), target


def test_the_azure_ml_pipeline_is_submitted_by_hand(workflows):
    wf = workflows["azureml.yml"]
    assert set(wf["on"]) == {"workflow_dispatch"}
    (job,) = wf["jobs"].values()
    assert _uses(job, "azure/login@")
    runs = " ".join(s["run"] for s in job["steps"] if "run" in s)
    assert "az ml job create -f conf/azureml/pipeline.yml" in runs
