"""Retrieval metrics and rankers against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lakerec.retrieval import metrics as M
from lakerec.retrieval.catalogue_ranks import ModelRanker, evaluate, format_table, popularity_ranks, random_ranks, Catalogue

# Two queries. A clicked item 1 (rank 0) and item 2 twice (rank 3); B clicked item 5
# (rank 12) and item 9, which cannot be retrieved (MISS).
QUERY = np.array([1, 1, 1, 2, 2])
ITEM = np.array([1, 2, 2, 5, 9])
RANK = np.array([0, 3, 3, 12, M.MISS])


def test_top_k_accuracy_counts_every_row():
    assert M.top_k_accuracy(RANK, 1) == pytest.approx(1 / 5)
    assert M.top_k_accuracy(RANK, 4) == pytest.approx(3 / 5)
    assert M.top_k_accuracy(RANK, 13) == pytest.approx(4 / 5)


def test_recall_counts_distinct_items_per_query():
    q, r = M.relevant_pairs(QUERY, ITEM, RANK)
    assert sorted(zip(q.tolist(), r.tolist())) == [(1, 0), (1, 3), (2, 12), (2, M.MISS)]
    assert M.recall_at_k(q, r, 1) == pytest.approx((1 / 2 + 0) / 2)
    assert M.recall_at_k(q, r, 5) == pytest.approx((1 + 0) / 2)
    assert M.recall_at_k(q, r, 20) == pytest.approx((1 + 1 / 2) / 2)


def test_ndcg_by_hand():
    q, r = M.relevant_pairs(QUERY, ITEM, RANK)
    ideal_two = 1 + 1 / math.log2(3)
    a = (1 + 1 / math.log2(5)) / ideal_two  # ranks 0 and 3
    assert M.ndcg_at_k(q, r, 5) == pytest.approx((a + 0) / 2)
    b = (1 / math.log2(14)) / ideal_two  # rank 12 of two relevant items
    assert M.ndcg_at_k(q, r, 20) == pytest.approx((a + b) / 2)
    # One relevant item at rank 0 is perfect; k=1 ideal uses one position only.
    assert M.ndcg_at_k(np.array([7]), np.array([0]), 1) == pytest.approx(1.0)
    assert M.ndcg_at_k(np.array([7, 7]), np.array([0, 5]), 1) == pytest.approx(1.0)


def test_popularity_ranks_break_ties_by_index():
    ranks = popularity_ranks(np.array([0, 5, 9, 5, 1]))
    assert ranks[0] == M.MISS
    assert ranks[1:].tolist() == [1, 0, 2, 3]


def test_random_ranks_are_distinct_per_query_and_uniform():
    n = 50
    queries = np.repeat(np.arange(400), 3)
    items = np.tile([11, 12, 13], 400)
    index = np.tile([1, 2, 3], 400)
    index[:3] = [1, 2, 0]  # one cold item: never retrievable
    ranks = random_ranks(queries, items, index, n, seed=1)
    assert ranks[2] == M.MISS
    warm = ranks[3:].reshape(-1, 3)
    assert ((warm >= 0) & (warm < n)).all()
    assert all(len(set(row)) == 3 for row in warm.tolist())
    assert np.array_equal(ranks, random_ranks(queries, items, index, n, seed=1))
    # Expected recall@10 of a random ordering is 10 / 50.
    assert M.top_k_accuracy(warm.reshape(-1), 10) == pytest.approx(0.2, abs=0.03)


def test_model_ranker_counts_strictly_higher_scores():
    candidates = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    queries = np.array([[2, 1], [2, 1], [2, 1], [2, 1], [1, 0]], dtype=np.float32)
    positives = np.array([1, 3, 4, 0, 1])
    # Scores of query [2, 1]: item1 2, item2 1, item3 3, item4 -2. Query [1, 0]: 1, 0, 1, -1
    # (item 1 ties with item 3: a tie counts as inside the top K, as tf.math.in_top_k does).
    expected = [1, 0, 3, M.MISS, 0]
    for max_cells in (1 << 20, 2):  # one block, and one item per block
        assert ModelRanker(candidates, max_cells).ranks(queries, positives).tolist() == expected


def test_evaluate_separates_cold_rows_and_renders_the_table():
    rows = {
        "query_key": np.array([1, 1, 2, 3]),
        "item_id": np.array([101, 102, 101, 999]),
        "item_index": np.array([1, 2, 1, 0]),
        "is_cold_user": np.array([0, 0, 1, 0]),
        "is_cold_item": np.array([0, 0, 0, 1]),
        "model": np.array([0, 1, 2, M.MISS]),
    }
    catalogue = Catalogue(item_ids=np.array([0, 101, 102, 103]), train_counts=np.array([0, 1, 5, 3]))
    result = evaluate(rows, catalogue, ks=(1, 2), seed=0)
    assert result["rows"] == {"all": 4, "warm": 2, "cold-start": 2}
    warm = result["metrics"]["warm"]
    assert warm["model"]["recall@1"] == pytest.approx(0.5)
    # Most popular list: 102, 103, 101: item 102 at rank 0, item 101 at rank 2.
    assert warm["most-popular"]["recall@1"] == pytest.approx(0.5)
    assert warm["most-popular"]["recall@2"] == pytest.approx(0.5)
    assert result["metrics"]["cold-start"]["model"]["top2_accuracy"] == pytest.approx(0.0)
    table = format_table(result)
    for word in ("model", "most-popular", "random", "cold-start", "recall@2", "acc@2"):
        assert word in table
