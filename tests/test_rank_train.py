"""The rank stage on planted impressions: it learns, logs one MLflow run, registers a ranker that loads and
scores in a fresh process, and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lakerec.config import RankConf, override
from lakerec.errors import ConfigError, MissingTableError
from lakerec.ranking.features import position_field
from lakerec.schema import tables as T
from tests.conftest import REPO
from tests.impression_fixtures import FAST_RANK, auc, write_planted_impressions

pytestmark = pytest.mark.heavy(seconds=100)

TEST = T.TEST_IMPRESSIONS.name


@pytest.fixture(scope="module")
def planted_cfg(base_cfg, spark):
    cfg = override(base_cfg, database=f"rank_planted_{os.getpid()}",
                   mlflow__registered_ranker=f"ranker-planted-{os.getpid()}",
                   mlflow__registered_model=f"two-tower-rank-{os.getpid()}", **FAST_RANK)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    return cfg, write_planted_impressions(spark, cfg)


@pytest.fixture(scope="module")
def retrieval_version(planted_cfg):
    """A registered two-tower version (a bare one: only the link is under test)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from lakerec.retrieval import tracking

    cfg, _ = planted_cfg
    tracking.configure(cfg)
    with mlflow.start_run(run_name="retrieval-stand-in") as run:
        pass
    client = MlflowClient()
    client.create_registered_model(cfg.mlflow.registered_model)
    v = client.create_model_version(cfg.mlflow.registered_model, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias(cfg.mlflow.registered_model, "champion", v.version)
    return run.info.run_id, v.version


@pytest.fixture(scope="module")
def trained(spark, planted_cfg, retrieval_version):
    from lakerec.ranking import train

    cfg, planted = planted_cfg
    return cfg, planted, train.run(spark, cfg, run_name="planted-esmm", evaluate_after=False)


def test_the_ranker_learns_both_heads(trained):
    from lakerec.ranking.scoring import load_ranker

    cfg, planted, out = trained
    ranker = load_ranker(out["model_uri"])
    assert ranker.objective == "esmm" and position_field().index_column not in ranker.columns
    test = planted.pandas(TEST)
    scores = ranker.predict(test)
    click, conversion = test["click"].to_numpy(), test["conversion"].to_numpy()
    ctr_auc = auc(click, scores["p_click"])
    oracle = auc(click, planted.p_click[TEST])
    assert ctr_auc > 0.7, (ctr_auc, oracle)
    clicked = click == 1
    cvr_auc = auc(conversion[clicked], scores["p_conversion"][clicked])
    assert cvr_auc > 0.6, cvr_auc
    np.testing.assert_allclose(scores["p_ctcvr"], scores["p_click"] * scores["p_conversion"], rtol=1e-9)
    assert out["validation"]["validation/ctr_auc"] > 0.65
    assert out["rows"]["fit"] + out["rows"]["validation"] == out["rows"]["train"] == 4000
    assert out["rows"]["validation"] > 200


def test_scores_ignore_position_and_need_no_position_column(trained):
    from lakerec.ranking.scoring import load_ranker

    cfg, planted, out = trained
    ranker = load_ranker(out["model_uri"])
    test = planted.pandas(TEST).head(200)
    pos = position_field().index_column
    base = ranker.predict(test)["p_click"]
    np.testing.assert_array_equal(base, ranker.predict(test.assign(**{pos: 1}))["p_click"])
    np.testing.assert_array_equal(base, ranker.predict(test.drop(columns=[pos]))["p_click"])
    with pytest.raises(ValueError, match="item_index"):
        ranker.predict(test.drop(columns=["item_index"]))


def test_one_mlflow_run_records_params_epochs_versions_and_the_retrieval_link(spark, trained, retrieval_version):
    from mlflow.tracking import MlflowClient

    from lakerec.retrieval import tracking
    from lakerec.tables import table_version

    cfg, _, out = trained
    client = MlflowClient()
    run = client.get_run(out["run_id"])
    params, tags = run.data.params, run.data.tags
    assert params["rank.objective"] == "esmm" and params["rank.epochs"] == "3" and params["train_rows"] == "4000"
    assert params["rank.cross_dropout"] == str(RankConf().cross_dropout)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "ctcvr_loss")] == [1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "validation/cvr_auc")) == 3
    assert run.data.metrics["best_validation/ctcvr_auc"] == out["validation"]["validation/ctcvr_auc"]
    versions = tracking.logged_table_versions(run.info.run_id)  # MLflow Delta dataset inputs
    names = (T.TRAIN_IMPRESSIONS.name, T.USER_VOCAB.name, T.ITEM_VOCAB.name, T.FEATURE_VOCAB.name)
    assert versions == {cfg.table(n): table_version(spark, cfg.table(n)) for n in names}
    # The gate: item CTR on the same validation rows, and the verdict against it.
    ours, item_ctr = run.data.metrics["best_validation/ctcvr_auc"], run.data.metrics["item_ctr/validation/ctcvr_auc"]
    assert ours > item_ctr and tags["lakerec.champion"] == "promoted", (ours, item_ctr)
    assert tags["lakerec.champion_reason"].startswith("first champion: validation/ctcvr_auc")
    assert out["champion"].promoted
    assert tags["lakerec.stage"] == "rank"
    run_id, version = retrieval_version
    assert tags["lakerec.retrieval_run_id"] == run_id
    assert tags["lakerec.retrieval_model"] == f"{cfg.mlflow.registered_model}/{version}"
    assert out["model_version"] == "1" and run.info.status == "FINISHED"


def test_the_registered_ranker_loads_and_scores_in_a_fresh_process(trained, tmp_path):
    import tensorflow as tf

    cfg, planted, out = trained
    rows = planted.pandas(TEST).head(64)
    rows.to_pickle(tmp_path / "rows.pkl")
    script = (
        "import json, sys, pandas as pd, mlflow\n"
        "from lakerec.ranking.scoring import load_ranker\n"
        f"mlflow.set_tracking_uri({cfg.tracking_uri!r}); mlflow.set_registry_uri({cfg.tracking_uri!r})\n"
        f"r = load_ranker('models:/{cfg.mlflow.registered_ranker}/{out['model_version']}')\n"
        f"s = r.predict(pd.read_pickle({str(tmp_path / 'rows.pkl')!r}))\n"
        "served = mlflow.pyfunc.load_model(r.model_uri).predict(pd.read_pickle(sys.argv[1]))\n"
        "print(json.dumps({k: v.tolist() for k, v in s.items()} | {'served': served['p_click'].tolist()}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "rows.pkl")], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    spec = out["spec"]
    memory = out["model"]({c: tf.constant(np.stack(rows[c].to_numpy()) if c in spec.lengths else rows[c].to_numpy())
                           for c in spec.columns})
    for key in ("p_click", "p_conversion", "p_ctcvr"):
        np.testing.assert_allclose(fresh[key], memory[key].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fresh["served"], fresh["p_click"], rtol=1e-6)


def test_with_cross_dropout_one_the_fit_never_feeds_a_cross(spark, planted_cfg, tmp_path):
    """rank.cross_dropout reaches the Petastorm batches: at 1.0 no cross embedding moves, the others do."""
    import mlflow
    import tensorflow as tf

    from lakerec.ranking import train
    from lakerec.retrieval import tracking
    from lakerec.schema import fields as F

    cfg = override(planted_cfg[0], rank__cross_dropout=1.0, rank__epochs=1)
    cross = {f"{f.name}_embedding" for f in F.rank_features() if f.role == F.CROSS}
    tables = {}

    def embeddings(model):
        layers = model.inputs_layer.single_layers + model.inputs_layer.multi_layers
        return {layer.name: layer.embedding.embeddings.numpy().copy() for layer in layers}

    class Before(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            tables.update(embeddings(self.model))

    inputs = train.read_inputs(spark, cfg)
    tracking.configure(cfg)
    with mlflow.start_run(run_name="cross-dropout"):
        model, _, _ = train.fit(spark, cfg, inputs, tmp_path / "ckpt", resume=False, callbacks=[Before()])
    after = embeddings(model)
    assert cross < set(after)
    for name in cross:
        np.testing.assert_array_equal(after[name], tables[name], err_msg=name)
    assert not np.array_equal(after["item_category_embedding"], tables["item_category_embedding"])


def test_resume_continues_the_interrupted_run(spark, planted_cfg):
    from lakerec.ranking import train
    from lakerec.ranking.scoring import load_ranker
    from lakerec.retrieval.callbacks import StopAfterEpoch

    cfg, _ = planted_cfg
    cfg = override(cfg, rank__objective="ctr", mlflow__registered_ranker=f"ranker-resume-{os.getpid()}")
    with pytest.raises(StopAfterEpoch.Interrupted):
        train.run(spark, cfg, run_name="interrupted", callbacks=[StopAfterEpoch(1)], evaluate_after=False)
    out = train.run(spark, override(cfg, rank__epochs=1), run_name="interrupted", resume=True, evaluate_after=False)
    f, epochs = out["fit"], cfg.rank.epochs
    assert (f.initial_epoch, f.epochs_done) == (1, epochs)  # the run's own epochs, not this call's 1
    assert f.steps == epochs * -(-out["rows"]["fit"] // cfg.rank.batch_size)  # the optimizer's step went on
    run_dir = train.checkpoint_root(cfg) / "interrupted"
    state = json.loads((run_dir / "lakerec_run.json").read_text())
    assert state["finished"] and state["run_id"] == out["run_id"]
    # Finished and exported: its checkpoints are gone (train.keep_finished_checkpoints is off), the state stays.
    assert [p.name for p in run_dir.iterdir()] == ["lakerec_run.json"]
    scores = load_ranker(out["model_uri"]).predict(planted_cfg[1].pandas(TEST).head(3))
    assert out["objective"] == "ctr" and np.isnan(scores["p_conversion"]).all() and np.isnan(scores["p_ctcvr"]).all()


def test_missing_tables_and_workers_the_cluster_cannot_run_get_clear_errors(spark, cfg):
    from lakerec.ranking import train

    with pytest.raises(MissingTableError, match=f"lakerec.jobs.{T.IMPRESSIONS}"):
        train.run(spark, override(cfg, **FAST_RANK), run_name="nothing")
    # Refused before any table is read (there are none here), naming the ranker's own flags.
    with pytest.raises(ConfigError, match=r"--rank-workers 3 needs 3 Spark tasks .* runs 2 \(local\[2\]\)"):
        train.run(spark, override(cfg, rank__workers=3), run_name="three")
    with pytest.raises(ConfigError, match=r"rank.batch_size \(--rank-batch-size\) 511 must split evenly over "
                                          r"--rank-workers 2"):
        train.run(spark, override(cfg, rank__workers=2, rank__batch_size=511), run_name="two")
    with pytest.raises(ConfigError, match=r"--rank-gpu with --rank-workers > 1 needs a Spark cluster"):
        train.run(spark, override(cfg, rank__workers=2, rank__gpu=True), run_name="two")
