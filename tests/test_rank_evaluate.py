"""The ranker's evaluation, baselines and two-stage run on a tiny planted impressions lake.

The planted world: users and items each have one of three topics; a click's logit is
BASE + SAME_TOPIC x [same topic] + the item's quality + a position effect, a conversion's
(given the click) depends on the user's gender. The cross field user_item_categories says
"same topic" (so the logistic regression can learn it); the ranker stand-in (PlantedRanker,
loaded by URI like the real one) knows the truth without position. A planted two-tower
(query = the user's topic, candidate = the item's topic, exported and registered like a
trained one) retrieves; the generator's oracle file is written beside the raw folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from lakerec.config import override
from lakerec.schema import fields as F
from lakerec.schema import tables as T
from lakerec.tables import write_table

pytestmark = pytest.mark.heavy(seconds=55)

TOPICS, USERS, ITEMS, COLD_ITEMS, PER_USER = 3, 24, 18, 2, 24
BASE, SAME_TOPIC = -1.5, 2.5
QUALITY = np.concatenate([[0.0], np.linspace(-1.5, 1.5, ITEMS)[np.random.default_rng(3).permutation(ITEMS)]])
POSITION_EFFECTS = np.array([0.5, 0.0, -0.3, -0.6])
CANDIDATES = 8


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def user_topic(u):
    return np.asarray(u) % TOPICS


def item_topic(j):
    return np.asarray(j) % TOPICS


def click_logit(same, item_index):
    return BASE + SAME_TOPIC * np.asarray(same, np.float64) + QUALITY[np.asarray(item_index)]


def conversion_given_click(gender_index):
    return sigmoid(-0.5 + 1.5 * (np.asarray(gender_index) == 1))


class PlantedRanker:
    """The planted truth as a Ranker: reads side features only, never position."""

    objective = "esmm"
    columns = (F.BY_NAME["user_profile"].index_column, F.BY_NAME["user_gender"].index_column,
               F.BY_NAME["item_category"].index_column, F.id_field(F.CANDIDATE).index_column)

    def predict(self, frame):
        profile, gender, category, item = (frame[c].to_numpy() for c in self.columns)
        p_click = sigmoid(click_logit(profile == category, item))
        p_cvr = conversion_given_click(gender)
        return {"p_click": p_click, "p_conversion": p_cvr, "p_ctcvr": p_click * p_cvr}


def planted_loader(uri: str):
    assert uri == "planted:esmm"
    return PlantedRanker()


class PlantedOracle:
    """click_probability(user_ids, item_ids) averaged over positions, as lakerec.aliccp.oracle.Oracle."""

    def click_probability(self, user_ids, item_ids):
        u = np.asarray(user_ids) - 1000
        j = (np.asarray(item_ids) - 5000) // 7
        logit = click_logit(user_topic(u) == item_topic(j), np.where(j < ITEMS, j + 1, 0))
        return sum(sigmoid(logit + e) for e in POSITION_EFFECTS) / len(POSITION_EFFECTS)


def impressions(cfg, split: str, seed: int):
    """Rows of T.IMPRESSIONS_OF[split] (the registry's ddl) and the oracle's truth of each row."""
    rng = np.random.default_rng(seed)
    history, intention = cfg.filter.history_length, cfg.filter.item_intention_length
    n_items = ITEMS + (COLD_ITEMS if split == F.TEST else 0)
    table = T.IMPRESSIONS_OF[split]
    rows, truth = [], []
    sample_id = 1
    for u in range(USERS):
        for _ in range(PER_USER):
            j, pos = int(rng.integers(n_items)), int(rng.integers(len(POSITION_EFFECTS)))
            same = user_topic(u) == item_topic(j)
            item_index = j + 1 if j < ITEMS else 0
            gender = 1 + u % 2
            logit = click_logit(same, item_index)
            p_pos, p_avg = sigmoid(logit + POSITION_EFFECTS[pos]), PlantedOracle().click_probability(
                [1000 + u], [5000 + 7 * j])[0]
            p_cvr = float(conversion_given_click(gender))
            click = int(rng.random() < p_pos)
            conversion = int(click and rng.random() < p_cvr)
            values = {
                "sample_id": sample_id, "user_id": 1000 + u, "item_id": 5000 + 7 * j, "click": click,
                "conversion": conversion, "user_index": u + 1, "item_index": item_index,
                "is_cold_user": False, "is_cold_item": item_index == 0,
                F.BY_NAME["user_profile"].index_column: int(1 + user_topic(u)),
                F.BY_NAME["user_gender"].index_column: gender,
                F.BY_NAME["item_category"].index_column: int(1 + item_topic(j)),
                F.BY_NAME["item_brand"].index_column: 1 + j % 2,
                F.BY_NAME["position"].index_column: pos + 1,
                F.BY_NAME["user_item_categories"].index_column: int(1 + user_topic(u)) if same else 0,
                F.BY_NAME["user_item_categories"].weight_column: math.log(2.0) if same else 0.0,
            }
            row = []
            for col in table.columns:
                if col.name in values:
                    row.append(values[col.name])
                elif col.type.startswith("array"):
                    length = history if col.name.startswith("user_") and not col.name.startswith("user_item") \
                        else intention
                    row.append([0.0 if "float" in col.type else 0] * length)
                else:
                    row.append(0.0 if col.type in ("float", "double") else 0)
            rows.append(tuple(row))
            truth.append((sample_id, float(p_pos), float(p_avg), p_cvr, float(p_pos) * p_cvr))
            sample_id += 1
    return rows, truth


def write_planted_lake(spark, cfg, tmp_path):
    import pandas as pd

    for split, seed in ((F.TRAIN, 1), (F.TEST, 2)):
        rows, truth = impressions(cfg, split, seed)
        write_table(spark.createDataFrame(rows, T.IMPRESSIONS_OF[split].ddl), cfg.table(T.IMPRESSIONS_OF[split].name))
        if split == F.TEST:
            folder = tmp_path / "raw" / "oracle"
            folder.mkdir(parents=True)
            pd.DataFrame(truth, columns=["sample_id", "p_click", "p_click_no_position", "p_conversion_given_click",
                                         "p_ctcvr"]).to_parquet(folder / "impressions_test.parquet")
    vocab = []
    for j in range(ITEMS):
        values = {"item_id": 5000 + 7 * j, "item_index": j + 1, "impressions": 1, "clicks": 0, "conversions": 0,
                  F.BY_NAME["item_category"].index_column: int(1 + item_topic(j)),
                  F.BY_NAME["item_brand"].index_column: 1 + j % 2}
        vocab.append(tuple(values.get(c.name, [0.0 if "float" in c.type else 0] * cfg.filter.item_intention_length
                                      if c.type.startswith("array") else 0) for c in T.ITEM_VOCAB.columns))
    write_table(spark.createDataFrame(vocab, T.ITEM_VOCAB.ddl), cfg.table(T.ITEM_VOCAB.name))


def register_planted_two_tower(cfg, tmp_path):
    """A two-tower whose query is the user's topic and candidate the item's, exported, registered and champion."""
    import mlflow
    import tensorflow as tf

    from lakerec.retrieval import export, tracking
    from lakerec.retrieval.features import FeatureSpec

    class TopicTower(tf.Module):
        def __init__(self):
            super().__init__()
            table = np.zeros((USERS + 1, TOPICS), np.float32)
            table[np.arange(1, USERS + 1), user_topic(np.arange(USERS))] = 1.0
            self.table = tf.Variable(table, trainable=False)

        def __call__(self, features):
            return tf.gather(self.table, features["user_index"])

    candidates = np.zeros((ITEMS + 1, TOPICS), np.float32)
    candidates[np.arange(1, ITEMS + 1), item_topic(np.arange(ITEMS))] = 1.0
    spec = FeatureSpec("ids", USERS + 1, ITEMS + 1)
    module = export.RetrievalModule(TopicTower(), spec, candidates,
                                    np.concatenate([[0], 5000 + 7 * np.arange(ITEMS)]),
                                    1000 + np.arange(USERS), np.arange(1, USERS + 1))
    saved = export.save(module, spec, tmp_path / "two_tower")
    tracking.configure(cfg)
    with mlflow.start_run(tags={tracking.TAG_STAGE: "train", tracking.TAG_DATABASE: cfg.database}):
        info = export.log_pyfunc(saved, spec, 10, cfg.mlflow.registered_model)
    mlflow.MlflowClient().set_registered_model_alias(cfg.mlflow.registered_model, "champion",
                                                     info.registered_model_version)


@pytest.fixture(scope="module")
def evaluated(spark, base_cfg, tmp_path_factory):
    """One `python -m lakerec.jobs.evaluate_ranker` run on the planted lake: (cfg, printed text, logged JSON)."""
    import os

    import mlflow

    from lakerec.jobs import evaluate_ranker
    from lakerec.ranking import evaluate

    tmp = tmp_path_factory.mktemp("rankeval")
    cfg = override(base_cfg, database=f"rankeval_{os.getpid()}", raw=str(tmp / "raw"),
                   mlflow__registered_model=f"two-tower-rankeval-{os.getpid()}",
                   rank__candidates=CANDIDATES, rank__eval_batch_size=64, rank__lr_max_iter=30,
                   rank__rerank_by="p_click")  # the hand computation re-ranks by pCTR
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    write_planted_lake(spark, cfg, tmp)
    register_planted_two_tower(cfg, tmp)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        evaluate_ranker.main(["--lake", cfg.lake, "--database", cfg.database, "--model-uri", "planted:esmm",
                              "--registered-model", cfg.mlflow.registered_model, "--raw", cfg.raw,
                              "--candidates", str(CANDIDATES), "--set", "rank.eval_batch_size=64",
                              "--set", "rank.lr_max_iter=30", "--set", "spark.master=local[2]",
                              "--set", "spark.shuffle_partitions=2"], loader=planted_loader)
    runs = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                              filter_string=f"tags.`{evaluate.TAG_STAGE}` = '{evaluate.STAGE}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    logged = json.loads(mlflow.artifacts.load_text(runs[0].info.artifact_uri + "/ranking_evaluation/evaluation.json"))
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "plots")}
    return cfg, out.getvalue(), logged, runs[0], artifacts


def test_the_job_prints_one_table_with_every_method(evaluated):
    _, text, _, _, _ = evaluated
    for label in ("ranker (esmm)", "item CTR", "logistic regression", "two-tower", "oracle", "oracle (no position)",
                  "CTR AUC", "GAUC", "log loss", "CVR AUC", "CTCVR AUC", "retrieval alone", "retrieval + ranker",
                  "the best baseline", "oracle: no oracle/oracle.npz under raw"):
        assert label in text, f"{label!r} missing from\n{text}"


def test_the_ranker_and_every_baseline_score_the_same_rows_and_are_logged(evaluated):
    _, _, logged, run, artifacts = evaluated
    rows = {m: v["rows"] for m, v in logged["methods"].items()}
    assert set(rows) == {"ranker", "item CTR", "logistic regression", "two-tower", "oracle", "oracle (no position)"}
    assert set(rows.values()) == {USERS * PER_USER}
    assert run.data.metrics["rank_test/ranker/ctr_auc"] == pytest.approx(logged["methods"]["ranker"]["ctr_auc"])
    assert {"plots/ranking_roc.png", "plots/ranking_calibration.png"} <= artifacts


def test_baselines_are_sane_on_the_planted_table(evaluated):
    _, _, logged, _, _ = evaluated
    m = {name: v for name, v in logged["methods"].items()}
    # Item CTR knows the items' quality; the logistic regression also the planted cross field.
    assert m["item CTR"]["ctr_auc"] > 0.55
    assert m["logistic regression"]["ctr_auc"] > m["item CTR"]["ctr_auc"] + 0.05
    assert m["two-tower"]["ctr_auc"] > 0.6 and m["two-tower"]["log_loss"] is None
    # The ranker is the position-free truth: the same order as the oracle's position-free probability.
    assert m["ranker"]["ctr_auc"] == pytest.approx(m["oracle (no position)"]["ctr_auc"])
    assert m["ranker"]["gauc"] == pytest.approx(m["oracle (no position)"]["gauc"])
    assert m["ranker"]["ctr_auc"] > m["item CTR"]["ctr_auc"]
    assert m["ranker"]["log_loss"] < m["item CTR"]["log_loss"]
    # Conversions follow the user's gender: the item's CVR cannot see it, the ranker can.
    assert m["ranker"]["cvr_auc"] > m["item CTR"]["cvr_auc"]


def expected_two_stage(test_rows, ddl_names):
    """Recall@10 and NDCG@10 recomputed by hand from the planted rows (ties: lower index first)."""
    col = {n: i for i, n in enumerate(ddl_names)}
    clicked, context = {}, {}
    for r in test_rows:
        u = r[col["user_id"]]
        if r[col["click"]]:
            clicked.setdefault(u, set()).add(r[col["item_id"]])
    out = {"retrieval": [], "ranker": []}
    for u, items in sorted(clicked.items()):
        t = (u - 1000) % TOPICS
        order = sorted(range(ITEMS), key=lambda j: (item_topic(j) != t, j))[:CANDIDATES]
        ranked = {"retrieval": order,
                  "ranker": sorted(order, key=lambda j: -float(click_logit(item_topic(j) == t, j + 1)))}
        for name, js in ranked.items():
            top = [5000 + 7 * j for j in js[:10]]
            hits = [i for i, item in enumerate(top) if item in items]
            dcg = sum(1 / math.log2(i + 2) for i in hits)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(items), 10)))
            out[name].append((len(hits) / len(items), dcg / ideal))
    return {name: (np.mean([a for a, _ in v]), np.mean([b for _, b in v])) for name, v in out.items()}, len(clicked)


def test_two_stage_recall_and_ndcg_match_a_hand_computation(evaluated, spark):
    from lakerec.ranking import baselines, two_stage

    cfg, _, logged, _, _ = evaluated
    test = spark.table(cfg.table(T.TEST_IMPRESSIONS.name))
    expected, users = expected_two_stage([tuple(r) for r in test.collect()], test.columns)
    printed = logged["two_stage"]  # the job's run: no generated oracle.npz, so no oracle row
    assert set(printed["metrics"]) == {"retrieval alone", "retrieval + ranker"}
    run_id, _ = baselines.registered_two_tower(cfg)
    two = two_stage.run(spark, cfg, "planted:esmm", run_id, loader=planted_loader, oracle=PlantedOracle())
    assert two["users"] == printed["users"] == users
    for stage, name in (("retrieval alone", "retrieval"), ("retrieval + ranker", "ranker")):
        for result in (two, printed):
            assert result["metrics"][stage]["recall@10"] == pytest.approx(expected[name][0])
            assert result["metrics"][stage]["ndcg@10"] == pytest.approx(expected[name][1])
    # Re-ranking by the position-free truth orders the candidates as the oracle's average does.
    assert two["metrics"]["retrieval + oracle"] == pytest.approx(two["metrics"]["retrieval + ranker"])


def test_rerank_by_p_ctcvr_needs_an_esmm_ranker(evaluated, spark):
    from lakerec.errors import ConfigError
    from lakerec.ranking import two_stage

    class CtrOnly(PlantedRanker):
        objective = "ctr"

    cfg, _, _, _, _ = evaluated
    with pytest.raises(ConfigError, match="p_ctcvr needs an esmm ranker"):
        two_stage.run(spark, override(cfg, rank__rerank_by="p_ctcvr"), "x", "unused", loader=lambda uri: CtrOnly())
