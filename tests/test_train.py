"""Two-tower training, evaluation, export and batch recommendations on planted tables.

One model is trained once per module (features=all, seconds) and examined by several
tests; resume and bad-input tests run their own short jobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from lakerec.config import override
from lakerec.errors import ConfigError, InputDataError, LakeRecError, MissingTableError
from lakerec.schema import tables as T
from tests.conftest import REPO
from tests.train_fixtures import FAST_TRAIN, INTERACTIONS_SCHEMA, columns_of, passthrough_tower, planted_database

pytestmark = pytest.mark.heavy(seconds=75)


@pytest.fixture(scope="module")
def planted_cfg(base_cfg, spark):
    return planted_database(spark, base_cfg, "train_planted")


@pytest.fixture(scope="module")
def trained(spark, planted_cfg):
    from lakerec.retrieval import train

    cfg, planted = planted_cfg
    out = train.run(spark, cfg, run_name="planted-all")
    return cfg, planted, out


def test_model_beats_most_popular_which_beats_random(trained):
    _, _, out = trained
    m = out["evaluation"]["metrics"]
    for seg in ("all", "warm"):
        model, pop, rnd = (m[seg][k]["recall@10"] for k in ("model", "most-popular", "random"))
        assert model > pop + 0.1 > rnd + 0.1, (seg, model, pop, rnd)
        assert m[seg]["model"]["ndcg@10"] > m[seg]["most-popular"]["ndcg@10"]
    # Cold users are served by their features: better than random.
    cold = m["cold-start"]
    assert cold["model"]["top10_accuracy"] > cold["random"]["top10_accuracy"]
    table = out["table"]
    assert "cold-start" in table and "most-popular" in table and "model beats most-popular" in table
    assert out["evaluation"]["rows"]["cold-start"] == 4 * 8 + 4 * 3  # cold users' and cold items' rows


def test_mlflow_run_records_params_metrics_artifacts_and_provenance(spark, trained):
    import mlflow
    from mlflow.tracking import MlflowClient

    from lakerec.retrieval import tracking
    from lakerec.tables import table_version

    cfg, _, out = trained
    client = MlflowClient()
    run = client.get_run(out["run_id"])
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["train.epochs"] == "3" and params["train.features"] == "all"
    assert params["train.logq_correction"] == "True" and params["num_items"] == "80"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "monitor/recall_at_20")) == 3
    assert metrics["test/all/model/recall_at_10"] == pytest.approx(out["evaluation"]["metrics"]["all"]["model"]["recall@10"])
    assert "test/cold-start/most-popular/ndcg_at_20" in metrics
    # The input tables, as MLflow Delta datasets with their versions (0 here: MLflow leaves 0 out of the source).
    versions = tracking.logged_table_versions(run.info.run_id)
    names = ("train_interactions", "test_interactions", "user_vocab", "item_vocab", "feature_vocab")
    assert versions == {cfg.table(n): table_version(spark, cfg.table(n)) for n in names}
    contexts = {i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"] for i in run.inputs.dataset_inputs}
    assert contexts[f"spark_catalog.{cfg.table('test_interactions')}@v0"] == "test"
    assert contexts[f"spark_catalog.{cfg.table('train_interactions')}@v0"] == "training"
    # Most-popular on the same validation rows, and the gate's verdict on the model against it.
    assert metrics["most_popular/validation/recall_at_20"] < metrics["best_validation/recall_at_20"]
    assert tags["lakerec.champion"] == "promoted" and tags["lakerec.champion_reason"].startswith("first champion")
    tc = cfg.train
    assert tags["lakerec.validation_slice"] == (f"{cfg.table('train_interactions')}@v0 fraction={tc.validation_fraction} "
                                                f"rows={tc.validation_rows} seed={tc.seed}")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head
    artifacts = set()
    for folder in ("plots", "evaluation"):
        artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"plots/training_curves.png", "plots/recall_at_k.png", "plots/item_popularity.png",
            "evaluation/evaluation.txt", "evaluation/evaluation_table.json"} <= artifacts
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/evaluation/evaluation.txt")
    assert text == out["table"]
    assert run.info.status == "FINISHED"


def test_registered_model_predicts_top_k_item_ids(trained):
    import mlflow

    cfg, planted, out = trained
    model = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.registered_model}/{out['model_version']}")
    # Two warm users of different topics, with the features of one of their rows.
    rows = {}
    for r in planted.train:
        rows.setdefault(r[1], r)
    columns = columns_of(INTERACTIONS_SCHEMA)
    frame = pd.DataFrame([dict(zip(columns, rows[u])) for u in (1000, 1001)])
    pred = model.predict(frame, params={"k": 7})
    assert list(pred.columns) == ["user_id", "item_ids", "scores"]
    assert pred["user_id"].tolist() == [1000, 1001]
    vocab_items = {r[0] for r in planted.item_vocab}
    for user, items, scores in zip(pred["user_id"], pred["item_ids"], pred["scores"]):
        assert len(items) == 7 and set(items) <= vocab_items and len(set(items)) == 7
        assert list(scores) == sorted(scores, reverse=True)
        same_topic = sum(planted.item_topic[i] == planted.user_topic[user] for i in items)
        assert same_topic >= 5, (user, items)
    # Feature columns are optional: a user id alone is enough.
    assert len(model.predict(pd.DataFrame({"user_id": [1000]}), params={"k": 3})["item_ids"][0]) == 3


def test_recommend_writes_top_k_per_user(spark, trained):
    from lakerec.retrieval import recommend

    cfg, planted, out = trained
    summary = recommend.run(spark, cfg, k=5)
    recs = spark.table(cfg.table("recommendations"))
    assert [f.name for f in recs.schema.fields] == list(T.RECOMMENDATIONS.column_names)
    rows = recs.collect()
    assert summary["ranker"] is None and all(r.ranker is None and r.p_click is None for r in rows)  # no ranker here
    assert summary["rows"] == len(rows) == 5 * len(planted.user_vocab)
    assert {r.run_id for r in rows} == {out["run_id"]}
    by_user: dict[int, list] = {}
    for r in rows:
        by_user.setdefault(r.user_id, []).append(r)
    same_topic = 0
    for user, recs_u in by_user.items():
        recs_u.sort(key=lambda r: r.rank)
        assert [r.rank for r in recs_u] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in zip(recs_u, recs_u[1:]))
        same_topic += sum(planted.item_topic[r.item_id] == planted.user_topic[user] for r in recs_u)
    assert same_topic / len(rows) > 0.8


def test_evaluate_job_reproduces_the_training_evaluation(spark, trained):
    from lakerec.retrieval import evaluate

    cfg, _, out = trained
    # By default the champion: the trained run's version, the first to beat most-popular.
    result, table = evaluate.run(spark, cfg, log_to_mlflow=False)
    assert result["metrics"] == out["evaluation"]["metrics"]
    assert table == out["table"]
    with pytest.raises(LakeRecError, match=r"has no version 7 \(versions: 1"):
        evaluate.run(spark, override(cfg, mlflow__model_version=7), log_to_mlflow=False)


def test_resume_continues_epochs_and_optimizer_steps(spark, planted_cfg):
    from mlflow.tracking import MlflowClient

    from lakerec.retrieval import train
    from lakerec.retrieval.callbacks import StopAfterEpoch
    from lakerec.retrieval.train import STATE_FILE, checkpoint_root

    cfg, planted = planted_cfg
    cfg = override(cfg, train__features="ids", train__monitor_rows=0, train__epochs=3, train__validation_fraction=0)
    with pytest.raises(StopAfterEpoch.Interrupted):
        train.run(spark, cfg, run_name="interrupted", callbacks=[StopAfterEpoch(1)], evaluate_after=False)
    state = json.loads((checkpoint_root(cfg) / "interrupted" / STATE_FILE).read_text())
    assert not state["finished"]
    client = MlflowClient()
    assert client.get_run(state["run_id"]).info.status == "FAILED"
    with pytest.raises(LakeRecError, match="--resume"):
        train.run(spark, cfg, run_name="interrupted")

    out = train.run(spark, cfg, run_name="interrupted", resume=True, evaluate_after=False)
    steps_per_epoch = -(-len(planted.train) // cfg.train.batch_size)
    assert out["run_id"] == state["run_id"]
    assert (out["fit"].initial_epoch, out["fit"].epochs_done) == (1, 3)
    assert out["fit"].steps == 3 * steps_per_epoch
    assert [m.step for m in client.get_metric_history(out["run_id"], "loss")] == [1, 2, 3]
    assert client.get_run(out["run_id"]).info.status == "FINISHED"


def test_logq_correction_lowers_popular_items_logits():
    import tensorflow as tf

    from lakerec.retrieval.model import TwoTowerModel

    def row_loss(model, item_index, q, c, row):
        weights = tf.one_hot(row, len(item_index))
        feats = {"item_index": tf.constant(item_index), "q": tf.constant(q, tf.float32),
                 "c": tf.constant(c, tf.float32), "sample_weight": weights}
        return float(model.compute_loss(feats))

    equal = dict(item_index=[1, 2], q=[[1.0, 0.0], [1.0, 0.0]], c=[[1.0, 0.0], [1.0, 0.0]])  # all raw scores 1
    probs = np.array([0.0, 0.8, 0.2], np.float32)  # item 1 popular, item 2 rare
    corrected = TwoTowerModel(passthrough_tower("q"), passthrough_tower("c"), item_probabilities=probs)
    plain = TwoTowerModel(passthrough_tower("q"), passthrough_tower("c"))
    # logit_j = s - log p_j: the popular positive loses against the rare negative.
    assert row_loss(corrected, row=0, **equal) == pytest.approx(math_log(1 + 0.8 / 0.2), rel=1e-5)
    assert row_loss(corrected, row=1, **equal) == pytest.approx(math_log(1 + 0.2 / 0.8), rel=1e-5)
    assert row_loss(plain, row=0, **equal) == pytest.approx(math_log(2), rel=1e-5)

    # Temperature divides the logits: scores [1, 0] at t = 0.5 act as [2, 0].
    apart = dict(item_index=[1, 2], q=[[1.0, 0.0], [1.0, 0.0]], c=[[1.0, 0.0], [0.0, 0.0]])
    hot = TwoTowerModel(passthrough_tower("q"), passthrough_tower("c"), temperature=0.5)
    assert row_loss(hot, row=0, **apart) == pytest.approx(math_log(1 + np.exp(-2.0)), rel=1e-5)

    # The same item twice in a batch: without removal it is its own negative.
    twice = dict(item_index=[1, 1], q=[[1.0, 0.0], [1.0, 0.0]], c=[[1.0, 0.0], [1.0, 0.0]])
    removing = TwoTowerModel(passthrough_tower("q"), passthrough_tower("c"), remove_accidental_hits=True)
    assert row_loss(plain, row=0, **twice) == pytest.approx(math_log(2), rel=1e-5)
    assert row_loss(removing, row=0, **twice) == pytest.approx(0.0, abs=1e-5)


def math_log(x: float) -> float:
    return float(np.log(x))


def test_missing_and_empty_inputs_end_in_clear_errors(spark, base_cfg, planted_cfg):
    from lakerec.retrieval import train

    cfg = override(base_cfg, database=f"train_empty_{os.getpid()}", **FAST_TRAIN)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    with pytest.raises(MissingTableError, match="lakerec.jobs.filter"):
        train.run(spark, cfg)
    source = planted_cfg[0]
    for name in ("user_vocab", "item_vocab", "feature_vocab", "train_interactions", "test_interactions"):
        spark.sql(f"CREATE TABLE {cfg.table(name)} LIKE {source.table(name)} USING delta")
    with pytest.raises(InputDataError, match="train_interactions is empty"):
        train.run(spark, cfg)
    with pytest.raises(ConfigError, match="temperature"):
        train.run(spark, override(cfg, train__temperature=0.0))


def test_bad_flags_end_in_one_line():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for flags, words in ((["--epochs", "0"], "positive integer"), (["--features", "some"], "invalid choice"),
                         (["--protocol", "nope"], "invalid choice")):
        out = subprocess.run([sys.executable, "-m", "lakerec.jobs.train", *flags], cwd=REPO, capture_output=True,
                             text=True, env=env)
        assert out.returncode == 2, out.stderr
        assert words in out.stderr and "Traceback" not in out.stderr


def test_als_baseline_is_on_every_segment_and_beats_random(spark, trained):
    import mlflow

    cfg, _, out = trained
    result = out["evaluation"]
    m = result["metrics"]
    for seg in ("all", "warm", "cold-start"):
        assert "als" in m[seg], seg
    for seg in ("all", "warm"):
        assert m[seg]["als"]["recall@10"] > m[seg]["random"]["recall@10"] + 0.1, (seg, m[seg])
    # The 4 cold users' 8 rows each have no ALS factor: ranked by most-popular, and said so.
    assert result["als_fallback_rows"] == {"all": 32, "warm": 0, "cold-start": 32}
    assert "als: rows of users without an ALS factor" in out["table"] and "cold-start 32" in out["table"]
    metrics = mlflow.tracking.MlflowClient().get_run(out["run_id"]).data.metrics
    assert metrics["test/warm/als/recall_at_10"] == pytest.approx(m["warm"]["als"]["recall@10"])
    assert not result["exclude_seen"] and "not excluded" in out["table"].splitlines()[0]
    # ALS cut its lineage in the session's checkpoint folder (an uncut 15-iteration lineage
    # overflowed a task thread's stack on CI): its last checkpointed factors are still there.
    folder = Path(urlparse(spark.sparkContext.getCheckpointDir()).path)
    assert any(folder.rglob("rdd-*")), folder


def test_excluding_seen_items_only_lifts_the_ranks(spark, trained):
    from lakerec.retrieval import evaluate

    cfg, _, out = trained
    assert evaluate.run_protocol(out["run_id"]) is None  # no protocol: the auto rule reads the tables
    result, table = evaluate.run(spark, override(cfg, evaluate__exclude_seen=True), out["run_id"],
                                 log_to_mlflow=False)
    assert result["exclude_seen"] and "training items excluded" in table.splitlines()[0]
    # Dropping seen items never pushes a positive down: every deterministic method can only gain.
    for seg in ("all", "warm"):
        for method in ("model", "als", "most-popular"):
            before, after = out["evaluation"]["metrics"][seg][method], result["metrics"][seg][method]
            assert after["recall@5"] >= before["recall@5"] and after["top10_accuracy"] >= before["top10_accuracy"]
    # Planted users click their topic's ~20 items again and again: most test positives are repeats,
    # which stay ranked; the most-popular list without a user's own items is strictly better.
    assert result["metrics"]["warm"]["most-popular"]["recall@10"] > out["evaluation"]["metrics"]["warm"]["most-popular"]["recall@10"]
    # One list per user (their test positives stay in it): NDCG stays a share of the ideal.
    assert all(v[f"ndcg@{k}"] <= 1.0 + 1e-9 for by in result["metrics"].values() for v in by.values()
               for k in cfg.train.ks)


def test_recommend_excluding_seen_items_is_the_full_ranking_without_them(spark, trained):
    from lakerec.retrieval import recommend

    cfg, planted, out = trained
    seen: dict[int, set] = {}
    for r in planted.train:
        seen.setdefault(r[1], set()).add(r[2])
    full = recommend.run(spark, cfg, k=80)  # every item: planted tables have no split property
    assert full["exclude_seen"] is False
    ranking: dict[int, list] = {}
    for r in spark.table(cfg.table("recommendations")).orderBy("user_id", "rank").collect():
        ranking.setdefault(r.user_id, []).append(r.item_id)
    summary = recommend.run(spark, override(cfg, evaluate__exclude_seen=True), k=5)
    assert summary["exclude_seen"] is True and summary["rows"] == 5 * len(planted.user_vocab)
    got: dict[int, list] = {}
    for r in spark.table(cfg.table("recommendations")).orderBy("user_id", "rank").collect():
        got.setdefault(r.user_id, []).append(r.item_id)
    for user, items in got.items():
        assert not set(items) & seen[user], user
        assert items == [i for i in ranking[user] if i not in seen[user]][:5], user
