"""The ranking stage end to end on generated data: filter -> two-tower -> impressions -> ranker
(+ its evaluation and the two-stage run) -> recommendations re-ranked by the ranker."""

from __future__ import annotations

import pytest

from lakerec.config import override
from lakerec.schema import tables as T

pytestmark = pytest.mark.heavy  # run first under xdist (conftest.py): the longest modules

K = 5


@pytest.fixture(scope="module")
def pipeline(spark, base_cfg, tmp_path_factory):
    """One small generated lake through every stage (module-scoped: the stages take minutes)."""
    from lakerec import filtering, impressions, ingest
    from lakerec.aliccp.generator import generate
    from lakerec.ranking import train as rank_train
    from lakerec.retrieval import recommend, train

    raw = tmp_path_factory.mktemp("raw")
    generate(raw, ("train", "test"), impressions=8_000, users=250, items=300, seed=7, conversion_rate=0.3)
    cfg = override(base_cfg, database="two_stage", raw=str(raw), mlflow__experiment="two-stage",
                   mlflow__registered_model="two-stage-tower", mlflow__registered_ranker="two-stage-ranker",
                   train__epochs=3, train__early_stopping_patience=0, train__validation_fraction=0.0,
                   rank__epochs=2, rank__batch_size=128, rank__learning_rate=0.01, rank__candidates=20,
                   rank__logistic_regression=False,  # tests/test_rank_evaluate.py covers it
                   evaluate__als=False)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    ingest.run(spark, cfg, str(raw))
    filtering.run(spark, cfg)
    retrieval = train.run(spark, cfg, run_name="two-stage-tower")
    # No validation slice here (speed), so the gate makes no champion: the later stages are
    # pointed at the versions, as --model-version / --ranker-version would.
    cfg = override(cfg, mlflow__model_version=int(retrieval["model_version"]))
    counts = impressions.run(spark, cfg)
    ranked = rank_train.run(spark, cfg, run_name="two-stage-ranker")
    cfg = override(cfg, mlflow__ranker_version=int(ranked["model_version"]))
    recs = recommend.run(spark, cfg, k=K)
    return cfg, retrieval, counts, ranked, recs


def test_every_impression_reaches_the_ranker_tables(spark, pipeline):
    cfg, *_ = pipeline
    samples = {r.split: r.n for r in spark.sql(
        f"SELECT split, count(*) AS n FROM {cfg.table(T.SAMPLES.name)} GROUP BY split").collect()}
    for split, table in T.IMPRESSIONS_OF.items():
        assert spark.table(cfg.table(table.name)).count() == samples[split]


def test_the_ranker_is_evaluated_against_its_baselines_and_in_two_stages(pipeline):
    _, _, _, ranked, _ = pipeline
    evaluation = ranked["evaluation"]
    methods = evaluation["methods"]
    ranker = methods[next(m for m in methods if m.startswith("ranker"))]
    # Every baseline of the issue is a row of the same table.
    names = " ".join(methods)
    for wanted in ("item CTR", "two-tower", "oracle"):
        assert wanted in names, (wanted, list(methods))
    assert ranker["ctr_auc"] > 0.55 and ranker["cvr_auc"] is not None
    oracle = max(v["ctr_auc"] for m, v in methods.items() if m.startswith("oracle"))
    assert ranker["ctr_auc"] <= oracle + 0.02  # no model beats the truth by more than noise
    stages = evaluation["two_stage"]["metrics"]
    assert set(stages) == {"retrieval alone", "retrieval + ranker", "retrieval + oracle"}
    assert all(0.0 <= v["recall@10"] <= 1.0 for v in stages.values())
    assert "ranker" in evaluation["table"] and "retrieval + ranker" in evaluation["table"]


def test_recommendations_are_reranked_by_the_registered_ranker(spark, pipeline):
    from lakerec.ranking.rerank import exposure

    cfg, retrieval, _, ranked, recs = pipeline
    assert not retrieval["champion"].promoted and "no validation slice" in retrieval["champion"].reason
    assert recs["run_id"] == retrieval["run_id"]  # --model-version's run
    assert cfg.rank.rerank_by == "expected_clicks"  # the default order: pCTR x the item's exposure
    assert recs["ranker"] == f"models:/{cfg.mlflow.registered_ranker}/{ranked['model_version']}"
    rows = spark.table(cfg.table(T.RECOMMENDATIONS.name)).toPandas()
    assert list(rows.columns) == list(T.RECOMMENDATIONS.column_names)
    assert rows["p_click"].notna().all() and rows["p_conversion"].notna().all()
    assert (rows["ranker"] == recs["ranker"]).all() and (rows["run_id"] == retrieval["run_id"]).all()
    vocab = spark.table(cfg.table(T.ITEM_VOCAB.name)).select("item_id", "impressions").toPandas()
    shown = dict(zip(vocab["item_id"], exposure(vocab["impressions"], float(vocab["impressions"].sum()), len(vocab))))
    reordered = 0
    for _, user in rows.groupby("user_id"):
        user = user.sort_values("rank")
        assert list(user["rank"]) == list(range(1, len(user) + 1)) and len(user) <= K
        expected = (user["p_click"] * user["item_id"].map(shown)).tolist()
        assert expected == pytest.approx(sorted(expected, reverse=True), rel=1e-5)  # the ranker's order
        reordered += user["score"].tolist() != sorted(user["score"], reverse=True)
    assert reordered > 0  # not the two-tower's order


def test_without_a_ranker_recommendations_keep_the_two_tower_order(spark, pipeline):
    from lakerec.retrieval import recommend

    cfg, retrieval, *_ = pipeline
    plain = recommend.run(spark, override(cfg, rank__rerank_recommendations=False), k=K, run_id=retrieval["run_id"])
    rows = spark.table(cfg.table(T.RECOMMENDATIONS.name)).toPandas()
    assert plain["ranker"] is None and rows["ranker"].isna().all() and rows["p_click"].isna().all()
    for _, user in rows.groupby("user_id"):
        scores = user.sort_values("rank")["score"].tolist()
        assert scores == sorted(scores, reverse=True)
