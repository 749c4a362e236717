"""The recommender behind MLflow's scoring server (`mlflow models serve`), on loopback by default.

    server = start(cfg, model_uri)          # a subprocess; returns once /ping answers 200
    server.url                              # http://127.0.0.1:5000
    server.stop()

The server is MLflow's own (uvicorn, `--env-manager local`: this environment, where lakerec's
pins are installed). `index` (exact | hnsw) overrides the model's config (its model_config)
through the variable MLflow's serving backend passes a model_config to its server with.
A request is MLflow's JSON: {"dataframe_records": [{"user_id": 1}], "params": {"k": 10}}; a
bad one (no user_id, k < 1, not JSON) is answered 400 with the reason (lakerec.serving.pyfunc_model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from lakerec.config import Config
from lakerec.errors import LakeRecError

SERVING_MODEL_CONFIG = "SERVING_MODEL_CONFIG"  # mlflow.pyfunc.scoring_server reads the model_config from it


def default_model_uri(cfg: Config) -> str:
    """The model the service answers with by default: the recommender's `champion` version.

    `recommend` gives a recommender version the alias when it bundled the champion two-tower
    and ranker (no --run-id / --model-version / --ranker-version / --ranker-uri).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from lakerec.registry import CHAMPION

    name = cfg.mlflow.registered_recommender
    if not name:
        raise LakeRecError("mlflow.registered_recommender is empty: pass --model-uri (runs:/<id>/recommender)")
    client = MlflowClient()
    try:
        return f"models:/{name}/{client.get_model_version_by_alias(name, CHAMPION).version}"
    except MlflowException:
        pass
    try:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        versions = []
    if not versions:
        raise LakeRecError(f"no recommender registered as {name!r} in {cfg.tracking_uri}: run "
                           "`python -m lakerec.jobs.recommend` first, or pass --model-uri")
    raise LakeRecError(f"{name} has no {CHAMPION} (versions {', '.join(map(str, versions))}: each was built from "
                       "models chosen by flag): run `python -m lakerec.jobs.recommend` without --run-id / "
                       "--model-version / --ranker-version / --ranker-uri once the two-tower has a champion, "
                       f"or pass --model-uri models:/{name}/{versions[-1]}")


def command(cfg: Config, model_uri: str) -> list[str]:
    """`mlflow models serve` of the model on cfg.serve's host, port and workers."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "-h", cfg.serve.host,
            "-p", str(cfg.serve.port), "-w", str(cfg.serve.workers), "--env-manager", "local"]


def environment(cfg: Config, index: dict | None = None) -> dict[str, str]:
    """This process's environment, with the MLflow store, the index settings and uvicorn for the server."""
    # The server is `uvicorn` from this interpreter's environment, which need not be on PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = dict(os.environ, MLFLOW_TRACKING_URI=cfg.tracking_uri, PATH=path)
    if index:
        env[SERVING_MODEL_CONFIG] = json.dumps(index)
    return env


@dataclass
class Server:
    """A running scoring server (a subprocess)."""

    process: subprocess.Popen
    url: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_ready(server: Server, timeout: float) -> None:
    """Return when GET /ping answers 200; raise if the server exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise LakeRecError(f"the scoring server exited with status {server.process.returncode} before it "
                               "answered: see its output above")
        try:
            with urllib.request.urlopen(server.url + "/ping", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    server.stop()
    raise LakeRecError(f"the scoring server did not answer {server.url}/ping within {timeout:.0f}s")


def start(cfg: Config, model_uri: str, index: dict | None = None, timeout: float = 300, **popen) -> Server:
    """Start the scoring server on the model and wait until it answers (see the module doc).

    Args:
        cfg: configuration (serve.host, serve.port, serve.workers, the MLflow store).
        model_uri: the recommender (models:/..., runs:/..., or a local model directory).
        index: model_config values to change (index, hnsw_m, hnsw_ef_search), or None.
        timeout: seconds to wait for the model to load.
        **popen: more subprocess.Popen arguments (stdout, stderr).
    """
    server = Server(subprocess.Popen(command(cfg, model_uri), env=environment(cfg, index), **popen),
                    f"http://{cfg.serve.host}:{cfg.serve.port}")
    wait_ready(server, timeout)
    return server
