"""Excluding each user's training items, and the ALS baseline's ranks, against hand-computed values.

No training: the scores are fed in (embeddings and factors written by hand), so every
expected rank below is counted by hand from the scores in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest

from lakerec.config import override
from lakerec.retrieval import metrics as M
from lakerec.retrieval.als import Factors, rank_rows
from lakerec.retrieval.catalogue_ranks import (Catalogue, ModelRanker, SeenItems, evaluate, format_table,
                                               popularity_ranks, popularity_ranks_unseen, random_pool_sizes,
                                               random_ranks)

# Four items. Query [2, 1] scores item1 2, item2 1, item3 3, item4 -2 (order 3, 1, 2, 4).
CANDIDATES = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
Q = [2.0, 1.0]


def test_seen_items_index_distinct_warm_pairs_per_user():
    seen = SeenItems.from_pairs([7, 7, 7, 3, 9, 9], [2, 2, 1, 4, 0, 3])  # a repeat, an OOV item
    assert seen.keys.tolist() == [3, 7, 9]
    assert seen.counts([7, 3, 9, 5]).tolist() == [2, 1, 1, 0]  # user 5 has none
    rows, items = seen.entries([9, 5, 7])
    assert list(zip(rows.tolist(), items.tolist())) == [(0, 3), (2, 1), (2, 2)]
    assert seen.contains([7, 7, 3, 5], [1, 3, 4, 4]).tolist() == [True, False, True, False]
    # A user's test positives stay in their ranking: user 7 tests on item 2, user 9 on item 5 (unseen).
    kept = SeenItems.from_pairs([7, 7, 7, 3, 9, 9], [2, 2, 1, 4, 0, 3], kept=([7, 9], [2, 5]))
    assert kept.counts([7, 3, 9]).tolist() == [1, 1, 1] and kept.entries([7])[1].tolist() == [1]


def test_repeated_positives_of_one_user_keep_distinct_ranks():
    # User 1 trained on items 1, 2, 3 and tests on items 1 and 3 again: only item 2 leaves the list,
    # so items 3 (score 3) and 1 (score 2) take ranks 0 and 1, and NDCG@2 is exactly 1, not above.
    seen = SeenItems.from_pairs([1, 1, 1], [1, 2, 3], kept=([1, 1], [1, 3]))
    ranks = ModelRanker(CANDIDATES).ranks(np.array([Q, Q], np.float32), np.array([1, 3]),
                                          seen.entries(np.array([1, 1])))
    assert ranks.tolist() == [1, 0]
    assert M.ndcg_at_k(np.array([1, 1]), ranks, 2) == pytest.approx(1.0)


@pytest.mark.parametrize("max_cells", [1 << 20, 2])  # one block, and one item per block
def test_model_ranks_count_only_unseen_items_scored_higher(max_cells):
    users = np.array([1, 2, 3, 4, 5, 6])
    positives = np.array([1, 2, 1, 3, 4, 0])
    seen = SeenItems.from_pairs([2, 3, 3, 4, 5, 5, 6], [3, 1, 3, 3, 1, 2, 1])
    queries = np.tile(np.array(Q, np.float32), (6, 1))
    ranker = ModelRanker(CANDIDATES, max_cells)
    assert ranker.ranks(queries, positives).tolist() == [1, 2, 1, 0, 3, M.MISS]
    got = ranker.ranks(queries, positives, seen.entries(users)).tolist()
    # user 1 saw nothing: item 3 is above item 1 -> 1.
    # user 2 saw item 3: above item 2 only item 1 is unseen -> 1.
    # user 3 saw items 1 and 3 and clicks item 1 again: ranked against the unseen items 2, 4 -> 0.
    # user 4 saw item 3 and clicks it again: nothing is above it -> 0.
    # user 5 saw items 1, 2: above item 4 only item 3 is left -> 1.
    # user 6's item is out of the vocabulary: MISS whatever was seen.
    assert got == [1, 1, 0, 0, 1, M.MISS]


def test_an_item_bias_of_minus_infinity_ranks_below_every_other_item():
    bias = np.array([0.0, 0.0, 0.0, 0.0, -np.inf], dtype=np.float32)  # item 4: no ALS factor
    queries = np.array([[-2, -1]] * 3, dtype=np.float32)  # scores item1 -2, item2 -1, item3 -3, item4 +2 (masked)
    ranker = ModelRanker(CANDIDATES, 2, item_bias=bias)
    seen = SeenItems.from_pairs([2], [2])
    got = ranker.ranks(queries, np.array([4, 2, 4]), seen.entries(np.array([1, 1, 2])))
    # Item 4 scores -inf: all three factored items rank above it -> 3; item 2 is the best factored -> 0;
    # for user 2, who saw item 2, only items 1 and 3 are left above item 4 -> 2.
    assert got.tolist() == [3, 0, 2]


def test_most_popular_skips_the_users_seen_items():
    pop = popularity_ranks(np.array([0, 5, 9, 5, 1]))  # list: item2, item1, item3, item4
    seen = SeenItems.from_pairs([1, 2, 2], [2, 2, 3])
    users = np.array([1, 1, 2, 0, 1])
    items = np.array([3, 2, 4, 4, 0])
    got = popularity_ranks_unseen(pop, items, seen, users)
    # user 1 without item 2: item3 at 1; item 2 (a repeat) stays first: 0; user 2 without items 2, 3:
    # item 4 at 1; user 0 saw nothing: item 4 at 3; an OOV item stays MISS.
    assert got.tolist() == [1, 0, 1, 3, M.MISS]


def test_random_ranks_draw_from_the_unseen_list_of_each_query():
    n = 50
    seen = SeenItems.from_pairs(np.zeros(40, int) + 1, np.arange(1, 41))  # user 1 saw items 1..40
    queries = np.repeat(np.arange(2000), 2)
    users = np.where(queries % 2 == 0, 1, 2)  # even queries: user 1; odd: user 2 (saw nothing)
    index = np.tile([5, 45], 2000)  # user 1 had item 5 in train (a repeat), item 45 not
    items = index + 100
    pool = random_pool_sizes(queries, items, index, n, seen, users)
    # user 1: 50 - 40 seen + 1 repeated positive = 11 items in the list; user 2: all 50.
    assert pool[:4].tolist() == [11, 11, 50, 50]
    ranks = random_ranks(queries, items, index, n, seed=3, pool_sizes=pool).reshape(-1, 2)
    mine = ranks[0::2]
    assert (mine < 11).all() and all(a != b for a, b in mine.tolist())
    assert ranks[1::2].max() >= 11  # user 2's ranks spread over the whole catalogue
    # Expected top-5 share: 5/11 for user 1, 5/50 for user 2.
    assert M.top_k_accuracy(mine.reshape(-1), 5) == pytest.approx(5 / 11, abs=0.03)


def _hand_rows():
    # Users 1 and 2 warm (user 2 has no ALS factor: no training positive), user 0 cold.
    return {
        "query_key": np.array([11, 11, 22, 33]),
        "item_id": np.array([101, 103, 102, 104]),
        "item_index": np.array([1, 3, 2, 4]),
        "user_index": np.array([1, 1, 2, 0]),
        "is_cold_user": np.array([0, 0, 0, 1]),
        "is_cold_item": np.array([0, 0, 0, 0]),
    }


def test_als_ranks_rows_by_factors_and_cold_users_by_most_popular():
    factors = Factors.from_arrays([1], [Q], [1, 2, 3, 4], CANDIDATES[1:], num_users=3, num_items=5)
    popular = np.array([7, 8, 9, 10])
    ranks, fallback = rank_rows(factors, [1, 1, 2, 0], [1, 3, 2, 4], popular)
    assert ranks.tolist() == [1, 0, 9, 10] and fallback.tolist() == [False, False, True, True]
    seen = SeenItems.from_pairs([1], [3])
    ranks, _ = rank_rows(factors, [1, 1, 2, 0], [1, 3, 2, 4], popular, seen)
    assert ranks.tolist() == [0, 0, 9, 10]  # item 3 seen: item 1 is first; item 3 itself, a repeat, stays 0


def test_evaluate_excludes_seen_items_for_every_method_and_marks_the_table():
    rows = _hand_rows()
    # User 1 trained on items 3 and 2 and tests on items 1 and 3: item 2 leaves the list, item 3 stays.
    seen = SeenItems.from_pairs([1, 1], [3, 2], kept=(rows["user_index"], rows["item_index"]))
    rows["model"] = ModelRanker(CANDIDATES).ranks(np.array([Q, Q, [0, 1], [1, 0]], np.float32), rows["item_index"],
                                                  seen.entries(rows["user_index"]))
    # Model: user 1 without item 2: item 3 at 0, item 1 at 1; user 2 ([0, 1]): item 2 ties item 3
    # at 1 -> 0; cold user ([1, 0]) scores item 4 -1, three above it -> 3.
    assert rows["model"].tolist() == [1, 0, 0, 3]
    catalogue = Catalogue(item_ids=np.array([0, 101, 102, 103, 104]), train_counts=np.array([0, 5, 9, 5, 1]))
    factors = Factors.from_arrays([1], [Q], [1, 2, 3], CANDIDATES[1:4], num_users=3, num_items=5)
    result = evaluate(rows, catalogue, ks=(1, 2), seed=0, seen=seen, als=factors)
    assert result["exclude_seen"] and result["methods"] == ["model", "als", "most-popular", "random"]
    m = result["metrics"]
    # Warm = queries 11 (items 1, 3) and 22 (item 2): (1/2 + 1) / 2.
    assert m["warm"]["model"]["recall@1"] == pytest.approx(0.75)
    # Most-popular list 2, 1, 3, 4; user 1 without 2: item 1 at 0, item 3 at 1 -> 1/2; user 2: item 2 at 0.
    assert m["warm"]["most-popular"]["recall@1"] == pytest.approx(0.75)
    assert m["warm"]["most-popular"]["recall@2"] == pytest.approx(1.0)  # without exclusion item 3 is at 2
    # ALS: user 1 as the model (item 4 has no factor); user 2 has no factor -> most-popular (0).
    assert m["warm"]["als"]["recall@1"] == pytest.approx(0.75)
    assert m["warm"]["als"]["ndcg@2"] == pytest.approx(1.0)
    # Cold user: ALS falls back to most-popular, whose list puts item 4 last (rank 3).
    assert m["cold-start"]["als"]["top2_accuracy"] == pytest.approx(0.0)
    assert result["als_fallback_rows"] == {"all": 2, "warm": 1, "cold-start": 1}
    for seg in ("all", "warm", "cold-start"):
        assert set(m[seg]) == {"model", "als", "most-popular", "random"}
    table = format_table(result)
    assert "training items excluded" in table.splitlines()[0]
    assert "ranked by most-popular: all 2, warm 1, cold-start 1" in table
    assert sum(line.split()[:1] == ["als"] for line in table.splitlines()) == 3  # one line per segment
    plain = format_table(evaluate({k: v for k, v in rows.items()}, catalogue, ks=(1, 2), seed=0))
    assert "not excluded" in plain.splitlines()[0] and " als " not in plain


def test_exclude_seen_auto_follows_the_movielens_split_property(spark, cfg):
    from lakerec.movielens import SPLIT_PROPERTY
    from lakerec.retrieval.evaluate import exclude_seen

    table = cfg.table("train_interactions")
    spark.sql(f"CREATE TABLE {table} (user_index INT, item_index INT) USING delta")
    assert exclude_seen(spark, cfg) is False  # Ali-CCP: no split property
    assert exclude_seen(spark, override(cfg, evaluate__exclude_seen=True)) is True
    spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ('{SPLIT_PROPERTY}' = 'random:0.2:42')")
    assert exclude_seen(spark, cfg) is True
    assert exclude_seen(spark, cfg, protocol="tfrs-tutorial") is False  # TFRS ranks seen items too
    assert exclude_seen(spark, override(cfg, evaluate__exclude_seen=False)) is False


def test_train_evaluate_and_recommend_take_the_flags_and_unset_means_auto(capsys, tmp_path):
    from lakerec import cli
    from lakerec.jobs import evaluate as evaluate_job
    from lakerec.jobs import recommend as recommend_job
    from lakerec.jobs import train as train_job

    (tmp_path / "metastore_db").mkdir()  # a lake's folder: a read job refuses a --lake that is not one
    lake = ["--lake", str(tmp_path)]
    cfg = cli.config_from_args(train_job.build_parser().parse_args(["--no-exclude-seen", "--no-als", *lake]))
    assert (cfg.evaluate.exclude_seen, cfg.evaluate.als) == (False, False)
    assert cli.config_from_args(train_job.build_parser().parse_args(lake)).evaluate.exclude_seen is None  # auto
    for main, flags in ((evaluate_job.main, ("--exclude-seen", "--no-exclude-seen", "--no-als")),
                        (recommend_job.main, ("--exclude-seen", "--no-exclude-seen"))):
        with pytest.raises(SystemExit):
            main(["--help"])
        out = capsys.readouterr().out
        assert all(f in out for f in flags), out
    with pytest.raises(Exception, match="als_rank must be a positive integer"):
        cli.config_from_args(train_job.build_parser().parse_args(["--set", "evaluate.als_rank=0"]))
