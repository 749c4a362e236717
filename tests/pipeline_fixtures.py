"""A tiny generated lake through every stage up to `recommend`, with the recommender registered.

    cfg, stages = two_stage_lake(spark, base_cfg, raw_dir, "serve")   # stages: train, rank, recommend summaries

Small and fast on purpose (a few hundred users and items, one or two epochs, no baselines
beyond what recommend needs unless asked): tests/test_two_stage_serve.py and bench/serve.py build on it.
"""

from __future__ import annotations

import os

from lakerec.config import override

FAST = dict(train__epochs=2, train__early_stopping_patience=0, train__validation_fraction=0.0,
            train__features="all", train__embedding_dim=16, train__hidden_units=(32,),
            rank__epochs=1, rank__batch_size=256, rank__learning_rate=0.01, rank__candidates=20,
            rank__logistic_regression=False, rank__two_stage=False, evaluate__als=False)


def two_stage_lake(spark, base_cfg, raw, name: str, *, k: int = 10, impressions: int = 3_000, users: int = 120,
                   items: int = 150, evaluate_ranker: bool = False, **overrides):
    """Generate, ingest, filter, train both models and recommend (with the recommender model).

    `evaluate_ranker` evaluates the ranker against its baselines (and in two stages, with
    `rank__two_stage=True`) as it trains: the rank summary's "evaluation".

    Returns:
        (cfg, {"train", "rank", "recommend"}: the stages' summaries).
    """
    from lakerec import filtering, impressions as impressions_stage, ingest
    from lakerec.aliccp.generator import generate
    from lakerec.ranking import train as rank_train
    from lakerec.retrieval import recommend, train

    suffix = f"{name}_{os.getpid()}"
    generate(raw, ("train", "test"), impressions=impressions, users=users, items=items, seed=7, conversion_rate=0.3)
    cfg = override(base_cfg, database=suffix, raw=str(raw), mlflow__experiment=f"{name}-{os.getpid()}",
                   mlflow__registered_model=f"{name}-tower-{os.getpid()}",
                   mlflow__registered_ranker=f"{name}-ranker-{os.getpid()}",
                   mlflow__registered_recommender=f"{name}-recommender-{os.getpid()}", **{**FAST, **overrides})
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    ingest.run(spark, cfg, str(raw))
    filtering.run(spark, cfg)
    # Run names of their own: another module's pipeline may share this process's lake (and its checkpoints).
    trained = train.run(spark, cfg, run_name=f"{name}-tower", evaluate_after=False)
    # The two-tower by version (one or two epochs need not pass the champion gate): the ranker's
    # evaluation compares with it, as --model-version would point it.
    cfg = override(cfg, mlflow__model_version=int(trained["model_version"]))
    impressions_stage.run(spark, cfg)
    ranked = rank_train.run(spark, cfg, run_name=f"{name}-ranker", evaluate_after=evaluate_ranker)
    # Both models by version: one or two epochs need not pass the champion gate.
    recs = recommend.run(spark, cfg, k=k, run_id=trained["run_id"], recommender=True,
                         ranker_uri=f"models:/{cfg.mlflow.registered_ranker}/{ranked['model_version']}")
    return cfg, {"train": trained, "rank": ranked, "recommend": recs}
