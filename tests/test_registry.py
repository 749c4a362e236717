"""The champion gate and the one way stages name the model they load, on a real MLflow store.

Model versions are registered against stand-in runs that carry only what the gate reads (a
validation metric, the baseline's, the slice tag, the database): what a training run logs,
without training one (tests/test_train.py and tests/test_rank_train.py gate real runs).
"""

from __future__ import annotations

import os

import pytest

from lakerec import registry
from lakerec.config import override
from lakerec.errors import LakeRecError

METRIC = "validation/recall_at_100"
BASELINE = "most_popular/" + METRIC
SLICE = "db.train_interactions@v0 fraction=0.1 rows=20000 seed=42"


@pytest.fixture(scope="module")
def store(base_cfg):
    """A config with its own registered model name, MLflow pointed at the lake's store."""
    from lakerec.retrieval import tracking

    cfg = override(base_cfg, database="registry_db", mlflow__registered_model=f"gate-{os.getpid()}",
                   mlflow__registered_ranker=f"gate-ranker-{os.getpid()}")
    tracking.configure(cfg)
    return cfg


def register(cfg, value: float | None, baseline: float, *, slice_tag: str = SLICE, database: str | None = None,
             best: bool = True):
    """A stand-in training run with the given validation metrics, registered as a new version; (version, run id)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from lakerec.retrieval import tracking

    with mlflow.start_run() as run:
        mlflow.set_tags({tracking.TAG_DATABASE: database or cfg.database, registry.TAG_SLICE: slice_tag})
        metrics = {BASELINE: baseline}
        if value is not None:
            metrics[f"best_{METRIC}" if best else METRIC] = value
        mlflow.log_metrics(metrics)
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id).version
    return str(version), run.info.run_id


def gate(cfg, version, run_id):
    return registry.promote_if_better(cfg.mlflow.registered_model, version, run_id, metric=METRIC,
                                      baseline="most-popular", baseline_metric=BASELINE)


def champion(cfg) -> str:
    from mlflow.tracking import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(cfg.mlflow.registered_model, registry.CHAMPION).version)


def test_the_gate_keeps_worse_models_from_the_champion_alias(store):
    """One registry history, in order: each step depends on the alias the step before left."""
    from mlflow.tracking import MlflowClient

    cfg, client = store, MlflowClient()
    name = cfg.mlflow.registered_model

    # 1. A first version that loses to most-popular does not become champion; nothing is loadable yet.
    v1, run1 = register(cfg, 0.30, 0.35)
    assert v1 == "1"
    d = gate(cfg, v1, run1)
    assert not d.promoted and "does not beat most-popular's 0.3500" in d.reason
    assert client.get_run(run1).data.tags[registry.TAG_DECISION] == "not promoted"
    assert client.get_model_version(name, v1).tags[registry.TAG_REASON] == d.reason
    with pytest.raises(LakeRecError, match=f"{name} has no champion yet \\(versions 1\\).*--model-version N"):
        registry.resolve(cfg, registry.TWO_TOWER)
    assert registry.resolve(cfg, registry.TWO_TOWER, required=False) is None

    # 2. The first version that beats most-popular takes the alias.
    v2, run2 = register(cfg, 0.40, 0.35)
    d = gate(cfg, v2, run2)
    assert d.promoted and d.reason.startswith("first champion: validation/recall_at_100 0.4000 beats")
    assert champion(cfg) == v2 == "2"

    # 3. Better than most-popular but worse than the champion, on the same slice: the alias stays.
    v3, run3 = register(cfg, 0.38, 0.35)
    d = gate(cfg, v3, run3)
    assert not d.promoted and "does not beat champion version 2's 0.4000" in d.reason
    assert champion(cfg) == "2"
    assert client.get_run(run3).data.tags[registry.TAG_REASON] == d.reason

    # 4. Better than both (the metric of its last epoch: no early stopping): it takes the alias.
    v4, run4 = register(cfg, 0.45, 0.35, best=False)
    d = gate(cfg, v4, run4)
    assert d.promoted and "beats champion version 2's 0.4000" in d.reason
    assert champion(cfg) == "4"

    # 5. Validated on another slice (new data): the champion's number is not comparable, so the
    #    baseline alone decides, and the reason says so.
    v5, run5 = register(cfg, 0.41, 0.35, slice_tag="db.train_interactions@v1 fraction=0.1 rows=20000 seed=42")
    d = gate(cfg, v5, run5)
    assert d.promoted and "champion version 4 was validated on another slice" in d.reason
    assert champion(cfg) == "5"

    # 6. No validation metric at all (validation_fraction 0): never promoted.
    v6, run6 = register(cfg, None, 0.35)
    d = gate(cfg, v6, run6)
    assert not d.promoted and "logged no validation/recall_at_100" in d.reason
    assert champion(cfg) == "5"

    # Resolution: the champion by default, pinned to its version; a chosen version overrides.
    found = registry.resolve(cfg, registry.TWO_TOWER)
    assert (found.version, found.run_id, found.uri, found.by_alias) == ("5", run5, f"models:/{name}/5", True)
    assert str(found) == f"{name}@champion (version 5)"
    chosen = registry.resolve(override(cfg, mlflow__model_version=3), registry.TWO_TOWER)
    assert (chosen.version, chosen.run_id, chosen.by_alias) == ("3", run3, False)
    assert registry.resolve(cfg, registry.TWO_TOWER, version=1).run_id == run1
    with pytest.raises(LakeRecError, match=r"has no version 9 \(versions: 1, 2, 3, 4, 5, 6\)"):
        registry.resolve(cfg, registry.TWO_TOWER, version=9)

    # A version of another database is never used: an error when chosen, passed over as champion.
    v7, run7 = register(cfg, 0.9, 0.35, database="movielens")
    assert gate(cfg, v7, run7).promoted
    with pytest.raises(LakeRecError, match="trained on database movielens, not registry_db"):
        registry.resolve(cfg, registry.TWO_TOWER)
    assert registry.resolve(cfg, registry.TWO_TOWER, required=False) is None


def test_resolution_says_what_to_run_when_nothing_is_registered(store):
    with pytest.raises(LakeRecError, match=r"no model registered as gate-ranker-\d+: run `python -m lakerec.jobs.rank`"):
        registry.resolve(store, registry.RANKER)
    assert registry.resolve(store, registry.RANKER, required=False) is None
    with pytest.raises(LakeRecError, match="no model registered as"):  # a chosen version must exist
        registry.resolve(override(store, mlflow__ranker_version=2), registry.RANKER, required=False)
    with pytest.raises(LakeRecError, match="mlflow.registered_model is empty.*--run-id"):
        registry.resolve(override(store, mlflow__registered_model=""), registry.TWO_TOWER)


def test_version_flags_reach_the_config_and_reject_non_versions(capsys):
    from lakerec import cli
    from lakerec.jobs import evaluate_ranker, recommend

    # The parsers are built inside main(); --help-free: parse through the shared plumbing.
    p = cli.parser("recommend", "", ("mlflow.model_version", "mlflow.ranker_version"))
    cfg = cli.config_from_args(p.parse_args(["--model-version", "3", "--ranker-version", "2"]))
    assert (cfg.mlflow.model_version, cfg.mlflow.ranker_version) == (3, 2)
    assert cli.config_from_args(p.parse_args([])).mlflow.model_version is None
    with pytest.raises(SystemExit):
        p.parse_args(["--model-version", "0"])
    assert "--model-version" in capsys.readouterr().err
    for job in (recommend, evaluate_ranker):
        with pytest.raises(SystemExit):
            job.main(["--help"])
        assert "--model-version" in (text := capsys.readouterr().out) and "--ranker-version" in text


def test_the_service_serves_the_recommenders_champion_and_says_when_there_is_none(store):
    from mlflow.tracking import MlflowClient

    from lakerec.serving.server import default_model_uri

    cfg = override(store, mlflow__registered_recommender=f"gate-recommender-{os.getpid()}")
    name = cfg.mlflow.registered_recommender
    with pytest.raises(LakeRecError, match="no recommender registered"):
        default_model_uri(cfg)
    # Versions built from models chosen by flag (recommend gave them no alias): not served by default.
    client = MlflowClient()
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, "file:///nowhere/recommender")
    with pytest.raises(LakeRecError, match="has no champion .*--model-uri models:/.*/2"):
        default_model_uri(cfg)
    client.set_registered_model_alias(name, registry.CHAMPION, "1")
    assert default_model_uri(cfg) == f"models:/{name}/1"  # the champion, not the newest
