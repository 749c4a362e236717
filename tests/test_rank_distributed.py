"""The ranker on 2 Spark barrier tasks (retrieval's launcher) against the one-worker run, on planted impressions.

The session is local[2]: the two barrier tasks take both task slots. Same tables, settings
and seed for both runs (tests/impression_fixtures.py: 4,000 training rows, batch 128), two
epochs, no evaluation stage: the test scores the planted test rows itself.
"""

from __future__ import annotations

import os

import pytest

from lakerec.config import override
from lakerec.schema import tables as T
from tests.impression_fixtures import FAST_RANK, auc, write_planted_impressions

pytestmark = pytest.mark.heavy(seconds=90)

EPOCHS = 2
# Same data and seed, 1 worker against 2: test CTR AUC within this distance. Not identical:
# each worker shuffles its own shard (other rows per batch) and the all-reduce sums the
# two half-batch gradients in another order. Measured once: 0.72846 against 0.72847 (the
# planted click signal is mostly the topic match, which both runs learn by epoch 2).
AUC_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def one_and_two(spark, base_cfg):
    from lakerec.ranking import train

    # Its own experiment: test_train_distributed also names a run "two-workers", and a
    # worker process may run both modules against the same tracking store.
    cfg = override(base_cfg, database=f"rank_dist_{os.getpid()}", mlflow__experiment=f"rank-dist-{os.getpid()}",
                   train__keep_finished_checkpoints=True,  # the test reads the chief's checkpoints
                   mlflow__registered_ranker=f"ranker-dist-{os.getpid()}",
                   mlflow__registered_model=f"two-tower-dist-{os.getpid()}", **{**FAST_RANK, "rank__epochs": EPOCHS})
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    planted = write_planted_impressions(spark, cfg)
    one = train.run(spark, cfg, run_name="one-worker", evaluate_after=False)
    two = train.run(spark, override(cfg, rank__workers=2), run_name="two-workers", evaluate_after=False)
    return cfg, planted, one, two


def test_two_workers_learn_as_one_worker_does(one_and_two):
    from lakerec.ranking.scoring import load_ranker

    cfg, planted, one, two = one_and_two
    # Each step consumed the global batch (half per worker): the same steps and examples.
    steps = EPOCHS * -(-one["rows"]["fit"] // cfg.rank.batch_size)
    assert one["fit"].steps == two["fit"].steps == steps
    assert one["fit"].examples == two["fit"].examples
    test = planted.pandas(T.TEST_IMPRESSIONS.name)
    click = test["click"].to_numpy()
    auc_one, auc_two = (auc(click, load_ranker(out["model_uri"]).predict(test)["p_click"]) for out in (one, two))
    assert auc_one > 0.7 and auc_two > 0.7, (auc_one, auc_two)
    assert abs(auc_one - auc_two) <= AUC_TOLERANCE, (auc_one, auc_two)


def test_the_driver_logs_the_chiefs_epochs_to_one_run(one_and_two):
    import mlflow
    from mlflow.tracking import MlflowClient

    from lakerec.ranking.train import checkpoint_root

    cfg, _, _, two = one_and_two
    client = MlflowClient()
    named = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment], output_format="list",
                               filter_string="tags.`lakerec.run_name` = 'two-workers'")
    assert [r.info.run_id for r in named] == [two["run_id"]]
    run = client.get_run(two["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["rank.workers"] == "2"
    # One value per epoch: a second process logging would have doubled them.
    for key in ("loss", "ctr_loss", "ctcvr_loss", "validation/ctr_auc"):
        assert [m.step for m in client.get_metric_history(two["run_id"], key)] == list(range(1, EPOCHS + 1)), key
    # The chief validated every epoch; the run reports the last one's (no early stopping on workers).
    last = client.get_metric_history(two["run_id"], "validation/ctr_auc")[-1].value
    assert two["validation"]["validation/ctr_auc"] == pytest.approx(last) and last > 0.65
    assert two["fit"].best_epoch is None and two["model_version"] is not None
    # The chief's checkpoints, in the run's folder; the other worker wrote its own to scratch.
    ckpt = checkpoint_root(cfg) / "two-workers"
    assert sorted(p.name for p in ckpt.glob("ckpt-*.index")) == [f"ckpt-{e}.index" for e in range(1, EPOCHS + 1)]
