"""Retrieval metrics from the rank of each positive in a full-catalogue ranking (numpy).

Every evaluated method (the model, most popular, random) is reduced to one number per
test row: `rank`, the 0-based position of the row's item in that method's ranking of the
whole catalogue for the row's query (`MISS`, above any K, when the item cannot be
retrieved at all, e.g. an item outside the vocabulary). All metrics follow from ranks:

    top_k_accuracy  share of rows whose item is in the top K (TFRS's FactorizedTopK
                    "top_K_categorical_accuracy": one query per row, duplicates counted)
    recall_at_k     per query: distinct relevant items in the top K / distinct relevant
                    items; averaged over queries
    ndcg_at_k       per query: sum over relevant items in the top K of 1/log2(rank + 2),
                    divided by the ideal sum over min(#relevant, K) positions; averaged

A query is one user in one context (same user id and user features); its relevant items
are the distinct items of its test rows.
"""

from __future__ import annotations

import numpy as np

MISS = np.iinfo(np.int64).max // 2


def top_k_accuracy(ranks: np.ndarray, k: int) -> float:
    """Share of rows whose positive ranks in the top k."""
    ranks = np.asarray(ranks)
    return float(np.mean(ranks < k)) if ranks.size else float("nan")


def relevant_pairs(query_keys: np.ndarray, item_keys: np.ndarray, ranks: np.ndarray):
    """Distinct (query, item) pairs with their rank (a repeated click counts once).

    Returns:
        (query_keys, ranks) of the distinct pairs.
    """
    q = np.asarray(query_keys)
    i = np.asarray(item_keys)
    r = np.asarray(ranks)
    if q.size == 0:
        return q, r
    pairs = np.stack([q.astype(np.int64), i.astype(np.int64)], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    return q[first], r[first]


def _per_query(query_keys: np.ndarray):
    _, inverse, counts = np.unique(np.asarray(query_keys), return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def recall_at_k(query_keys: np.ndarray, ranks: np.ndarray, k: int) -> float:
    """Mean over queries of (relevant items ranked < k) / (relevant items).

    Args:
        query_keys: the query of each distinct relevant (query, item) pair.
        ranks: the item's 0-based rank in the query's ranking.
        k: cut-off.
    """
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return float("nan")
    inverse, counts = _per_query(query_keys)
    hits = np.bincount(inverse, weights=(ranks < k).astype(np.float64), minlength=counts.size)
    return float(np.mean(hits / counts))


def ndcg_at_k(query_keys: np.ndarray, ranks: np.ndarray, k: int) -> float:
    """Mean over queries of DCG@k / ideal DCG@k, binary relevance (see module doc)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return float("nan")
    inverse, counts = _per_query(query_keys)
    inside = ranks < k
    gains = np.zeros(ranks.shape, dtype=np.float64)
    gains[inside] = 1.0 / np.log2(ranks[inside].astype(np.float64) + 2.0)
    dcg = np.bincount(inverse, weights=gains, minlength=counts.size)
    discounts = np.cumsum(1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0))
    ideal = discounts[np.minimum(counts, k) - 1]
    return float(np.mean(dcg / ideal))


def metric_names(ks) -> list[str]:
    """Metric keys in display order."""
    return [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks] + [f"top{k}_accuracy" for k in ks]


def all_metrics(query_keys, item_keys, ranks, ks) -> dict[str, float]:
    """recall@K, NDCG@K and top-K accuracy for each K in ks, from per-row ranks."""
    q, r = relevant_pairs(query_keys, item_keys, ranks)
    out = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(q, r, k)
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(q, r, k)
    for k in ks:
        out[f"top{k}_accuracy"] = top_k_accuracy(ranks, k)
    return out
