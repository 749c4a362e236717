"""The MovieLens loader on hand-written ratings files, and training on what it writes."""

from __future__ import annotations

import pytest

from lakerec.config import override
from lakerec.errors import InputDataError

pytestmark = pytest.mark.heavy(seconds=60)

# 100K format: user \t item \t rating \t timestamp. With --split time and 20% test, the two
# newest ratings are the test rows: user 4 is new (cold user), item 40 is new (cold item).
U_DATA = """\
1\t10\t5\t100
1\t20\t3\t101
2\t10\t4\t102
2\t30\t2\t103
3\t20\t5\t104
3\t10\t1\t105
1\t30\t4\t106
2\t20\t3\t107
4\t10\t5\t108
1\t40\t2\t109
"""


def _ratings_1m(n_users: int = 6, n_items: int = 5) -> str:
    lines = [f"{u}::{i}::{(u + i) % 5 + 1}::{1000 + 10 * u + i}" for u in range(1, n_users + 1)
             for i in range(1, n_items + 1) if (u + i) % 3]
    return "\n".join(lines) + "\n"


def test_time_split_vocabularies_and_cold_rows(spark, cfg, tmp_path):
    from lakerec import movielens

    path = tmp_path / "u.data"
    path.write_text(U_DATA)
    summary = movielens.load(spark, cfg, str(path), split="time", test_fraction=0.2)
    assert (summary.ratings, summary.train, summary.test, summary.users, summary.items) == (10, 8, 2, 3, 3)
    assert summary.cold_test_rows == 2 and summary.split == "time:0.2:42"

    users = {r.user_id: (r.user_index, r.clicks) for r in spark.table(cfg.table("user_vocab")).collect()}
    assert users == {1: (1, 3), 2: (2, 3), 3: (3, 2)}
    items = {r.item_id: (r.item_index, r.clicks) for r in spark.table(cfg.table("item_vocab")).collect()}
    assert items == {10: (1, 3), 20: (2, 3), 30: (3, 2)}
    test = sorted(spark.table(cfg.table("test_interactions")).collect(), key=lambda r: r.sample_id)
    assert [(r.user_id, r.item_id, r.user_index, r.item_index, r.is_cold_user, r.is_cold_item) for r in test] == [
        (4, 10, 0, 1, True, False),
        (1, 40, 1, 0, False, True),
    ]
    train = spark.table(cfg.table("train_interactions"))
    assert train.count() == 8 and {r.sample_id for r in train.collect()} == set(range(1, 9))
    # Same schema as the filter's tables, side features all zero.
    row = test[0]
    assert row.user_profile_index == 0 and row.item_category_index == 0
    assert row.user_categories_ids == [0] * cfg.filter.history_length
    assert row.item_intention_weights == [0.0] * cfg.filter.item_intention_length
    assert spark.table(cfg.table("feature_vocab")).count() == 0


def test_1m_format_random_split_trains_with_the_tutorial_protocol(spark, cfg, tmp_path):
    from mlflow.tracking import MlflowClient

    from lakerec import movielens
    from lakerec.movielens import read_ratings, split_ratings
    from lakerec.retrieval import train
    from lakerec.retrieval.data import table_property
    from lakerec.retrieval.protocols import apply_protocol

    path = tmp_path / "ratings.dat"
    path.write_text(_ratings_1m())
    n = len(_ratings_1m().splitlines())
    summary = movielens.load(spark, cfg, str(path))  # random 80/20, seed 42
    assert summary.train == round(0.8 * n) and summary.train + summary.test == n
    assert table_property(spark, cfg.table("train_interactions"), "lakerec.split") == "random:0.2:42"
    written = {(r.user_id, r.item_id) for r in spark.table(cfg.table("test_interactions")).collect()}

    # The split is a function of the seed, not of Spark's partitioning.
    ratings = read_ratings(spark, path)

    def test_pairs(df, seed):
        return {(r.user_id, r.item_id) for r in split_ratings(df, "random", 0.2, seed)[1].collect()}

    assert test_pairs(ratings.repartition(3), 42) == test_pairs(ratings.coalesce(1), 42) == written
    assert test_pairs(ratings, 7) != written

    tutorial = override(apply_protocol(cfg, "tfrs-tutorial"), mlflow__registered_model="movielens-test",
                        train__monitor_rows=0)
    out = train.run(spark, tutorial, run_name="ml-tutorial", protocol="tfrs-tutorial")
    params = MlflowClient().get_run(out["run_id"]).data.params
    assert (params["protocol"], params["train.batch_size"], params["train.learning_rate"]) == ("tfrs-tutorial", "8192", "0.1")
    assert params["train.features"] == "ids" and params["train.logq_correction"] == "False"
    assert out["fit"].epochs_done == 3
    for method in ("model", "most-popular", "random"):
        assert method in out["evaluation"]["metrics"]["all"]
    assert "most-popular" in out["table"]


def test_bad_files_end_in_clear_errors(spark, tmp_path):
    from lakerec.movielens import read_ratings

    with pytest.raises(InputDataError, match="grouplens"):
        read_ratings(spark, tmp_path / "missing" / "u.data")
    bad = tmp_path / "u.data"
    bad.write_text("1\t10\t5\t100\n1\t20\tgood\t101\n")
    with pytest.raises(InputDataError, match="1 line.*good"):
        read_ratings(spark, bad)
    odd = tmp_path / "ratings.csv"
    odd.write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(InputDataError, match="neither MovieLens 100K"):
        read_ratings(spark, odd)
