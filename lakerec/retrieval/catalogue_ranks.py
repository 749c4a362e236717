"""Full-catalogue evaluation of the model and two baselines on the test rows.

For each test row the positive item is ranked against every item of the vocabulary:
    model         rank = #{catalogue items whose score q.c_j is strictly greater than the
                  positive's score q.c_pos}, computed in batches of rows (and of items when
                  the catalogue is large) with one matmul and a comparison. That is exactly
                  "is it in the exact top K" for every K at once, with TFRS's tie rule
                  (tf.math.in_top_k: ties count as inside) and its positive score
                  (reduce_sum(q * c_pos)), so top-K accuracy equals TFRS's FactorizedTopK
                  metric, without its top_k per batch.
    most-popular  the catalogue ordered by training count (ties by item index): the same
                  top-K list for every user.
    random        a uniformly random ordering of the catalogue per query: a query's m
                  relevant items get m distinct ranks drawn uniformly from 0..N-1 (seeded).
A positive outside the vocabulary (a cold item, index 0) cannot be retrieved by any
method: rank MISS. Rows of cold users or cold items are also reported on their own.

`evaluate(...)` is a pure function returning a dict; `format_table` renders it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from lakerec.retrieval import metrics as M

METHODS = ("model", "most-popular", "random")
SEGMENTS = ("all", "warm", "cold-start")
CURVE_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
# Rows x items scored at once: bounds the score matrix to ~256 MB of float32.
MAX_CELLS = 1 << 26


@dataclass(frozen=True)
class Catalogue:
    """The retrievable items: index 1..N of item_vocab.

    Attributes:
        item_ids: [N + 1] raw item id per index (row 0 = OOV, never retrieved).
        train_counts: [N + 1] training positives per index (the popularity baseline, logQ).
    """

    item_ids: np.ndarray
    train_counts: np.ndarray

    @property
    def size(self) -> int:
        return len(self.item_ids) - 1


def popularity_ranks(train_counts: np.ndarray) -> np.ndarray:
    """Rank of each item index in the most-popular list (count desc, index asc); row 0 MISS."""
    counts = np.asarray(train_counts)[1:]
    order = np.lexsort((np.arange(counts.size), -counts))  # last key is primary
    ranks = np.empty(counts.size + 1, dtype=np.int64)
    ranks[0] = M.MISS
    ranks[1 + order] = np.arange(counts.size)
    return ranks


def random_ranks(query_keys: np.ndarray, item_keys: np.ndarray, item_index: np.ndarray,
                 num_items: int, seed: int) -> np.ndarray:
    """Ranks of the positives under one uniformly random ordering of the catalogue per query.

    Under a random permutation, a query's m distinct relevant items sit at m distinct
    positions drawn uniformly from 0..num_items-1: drawing those is exact and costs O(m).
    """
    rng = np.random.default_rng(seed)
    query_keys, item_keys, item_index = map(np.asarray, (query_keys, item_keys, item_index))
    ranks = np.full(query_keys.shape, M.MISS, dtype=np.int64)
    warm = item_index > 0
    if not warm.any() or num_items <= 0:
        return ranks
    pairs = np.stack([query_keys[warm].astype(np.int64), item_keys[warm].astype(np.int64)], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    pair_rank = np.empty(len(uniq), dtype=np.int64)
    # uniq is sorted by query: split it into runs of one query.
    bounds = np.flatnonzero(np.diff(uniq[:, 0])) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(uniq)]])
    sizes = ends - starts
    single = sizes == 1
    pair_rank[starts[single]] = rng.integers(0, num_items, size=int(single.sum()))
    for s, e in zip(starts[~single], ends[~single]):  # distinct warm items <= catalogue size
        pair_rank[s:e] = rng.choice(num_items, size=e - s, replace=False)
    ranks[warm] = pair_rank[inverse]
    return ranks


@tf.function(reduce_retracing=True)
def _count_greater(queries, positive_scores, block):
    """Per row: how many items of the block score strictly above the row's positive."""
    scores = tf.matmul(queries, block, transpose_b=True)
    return tf.reduce_sum(tf.cast(scores > positive_scores, tf.int64), axis=1)


class ModelRanker:
    """Ranks of positives under the model's scores q.c over the whole catalogue.

    Args:
        candidates: [N + 1, D] candidate embeddings by item index (row 0 unused).
        max_cells: rows x items scored at once.
    """

    def __init__(self, candidates: np.ndarray, max_cells: int = MAX_CELLS):
        self.candidates = tf.constant(candidates, dtype=tf.float32)
        self.num_items = int(candidates.shape[0]) - 1
        self.max_cells = max_cells
        self._blocks: dict[int, list[tf.Tensor]] = {}

    def _item_blocks(self, chunk: int) -> list[tf.Tensor]:
        if chunk not in self._blocks:
            self._blocks[chunk] = [self.candidates[1 + s:1 + min(s + chunk, self.num_items)]
                                   for s in range(0, self.num_items, chunk)]
        return self._blocks[chunk]

    def ranks(self, queries: tf.Tensor, item_index: np.ndarray) -> np.ndarray:
        queries = tf.convert_to_tensor(queries, tf.float32)
        item_index = np.asarray(item_index).astype(np.int64)
        positives = tf.gather(self.candidates, item_index)
        # The positive's score as TFRS's FactorizedTopK computes it.
        positive_scores = tf.reduce_sum(queries * positives, axis=1, keepdims=True)
        rows = int(queries.shape[0])
        chunk = max(1, min(self.num_items, self.max_cells // max(rows, 1)))
        total = np.zeros(rows, dtype=np.int64)
        for block in self._item_blocks(chunk):
            total += _count_greater(queries, positive_scores, block).numpy()
        total[item_index <= 0] = M.MISS
        return total


def _split_rows(batch: dict, rows: int) -> Iterable[dict]:
    n = int(next(iter(batch.values())).shape[0])
    for s in range(0, n, rows):
        yield {k: v[s:s + rows] for k, v in batch.items()}


def collect_ranks(
    query_fn: Callable[[dict], tf.Tensor],
    query_columns: list[str],
    candidates: np.ndarray,
    batches: Iterable[dict],
    max_cells: int = MAX_CELLS,
) -> dict[str, np.ndarray]:
    """Run the model over test batches; keep per-row keys, flags and model ranks.

    Args:
        query_fn: feature dict (query_columns) -> [batch, D] query embeddings.
        query_columns: the keys query_fn reads.
        candidates: [N + 1, D] candidate embeddings by item index.
        batches: feature dicts with query_columns and query_key, item_id, item_index,
            is_cold_user, is_cold_item.
        max_cells: memory bound of one score block.

    Returns:
        Arrays query_key, item_id, item_index, is_cold_user, is_cold_item, model (ranks).
    """
    ranker = ModelRanker(candidates, max_cells)
    keep = ("query_key", "item_id", "item_index", "is_cold_user", "is_cold_item")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keep + ("model",)}
    row_block = max(1, min(65_536, max_cells // max(ranker.num_items, 1)))
    for big in batches:
        for batch in _split_rows(big, row_block):
            q = query_fn({c: batch[c] for c in query_columns})
            parts["model"].append(ranker.ranks(q, np.asarray(batch["item_index"])))
            for k in keep:
                parts[k].append(np.asarray(batch[k]))
    return {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in parts.items()}


def evaluate(rows: dict[str, np.ndarray], catalogue: Catalogue, ks=(10, 50, 100), seed: int = 42) -> dict:
    """Metrics of the model and the baselines, per segment.

    Args:
        rows: `collect_ranks` output (the model's ranks under "model").
        catalogue: item ids and training counts by index.
        ks: cut-offs for recall@K, NDCG@K and top-K accuracy.
        seed: the random baseline's seed.

    Returns:
        {"catalogue_size", "ks", "rows": {segment: n}, "queries": {segment: n},
         "metrics": {segment: {method: {metric: value}}},
         "curves": {"k": [...], method: [recall@k ...]}} (curves over all rows).
    """
    n = catalogue.size
    ranks = {
        "model": np.asarray(rows["model"], dtype=np.int64),
        "most-popular": popularity_ranks(catalogue.train_counts)[np.asarray(rows["item_index"], dtype=np.int64)],
        "random": random_ranks(rows["query_key"], rows["item_id"], rows["item_index"], n, seed),
    }
    cold = (np.asarray(rows["is_cold_user"]) > 0) | (np.asarray(rows["is_cold_item"]) > 0)
    masks = {"all": np.ones(cold.shape, dtype=bool), "warm": ~cold, "cold-start": cold}
    out: dict = {"catalogue_size": n, "ks": list(ks), "rows": {}, "queries": {}, "metrics": {}}
    for seg, mask in masks.items():
        out["rows"][seg] = int(mask.sum())
        out["queries"][seg] = int(np.unique(rows["query_key"][mask]).size)
        if not mask.any():
            continue
        out["metrics"][seg] = {
            m: M.all_metrics(rows["query_key"][mask], rows["item_id"][mask], r[mask], ks) for m, r in ranks.items()
        }
    curve_ks = [k for k in CURVE_KS if k <= max(n, 1)]
    if n not in curve_ks:
        curve_ks.append(n)
    out["curves"] = {"k": curve_ks}
    for m, r in ranks.items():
        q, rr = M.relevant_pairs(rows["query_key"], rows["item_id"], r)
        out["curves"][m] = [M.recall_at_k(q, rr, k) for k in curve_ks]
    return out


def flat_metrics(result: dict) -> dict[str, float]:
    """MLflow-safe names: `test/<segment>/<method>/recall_at_10`."""
    flat = {}
    for seg, by_method in result["metrics"].items():
        for method, values in by_method.items():
            for name, v in values.items():
                key = name.replace("@", "_at_")
                if not math.isnan(v):
                    flat[f"test/{seg}/{method}/{key}"] = v
    return flat


def format_table(result: dict) -> str:
    """The model-versus-baselines table, one line per segment and method."""
    ks = result["ks"]
    cols = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks] + [f"acc@{k}" for k in ks]
    keys = M.metric_names(ks)
    head = f"{'segment':<11}{'method':<14}{'rows':>8}{'queries':>9}" + "".join(f"{c:>11}" for c in cols)
    lines = [
        f"Full-catalogue retrieval over {result['catalogue_size']:,} items "
        f"(acc@K = TFRS top-K categorical accuracy, per row)",
        head,
        "-" * len(head),
    ]
    for seg in SEGMENTS:
        if seg not in result["metrics"]:
            continue
        for i, method in enumerate(METHODS):
            values = result["metrics"][seg][method]
            lead = f"{seg if i == 0 else '':<11}{method:<14}"
            counts = f"{result['rows'][seg]:>8,}{result['queries'][seg]:>9,}" if i == 0 else " " * 17
            lines.append(lead + counts + "".join(f"{values[k]:>11.4f}" for k in keys))
    if "all" in result["metrics"]:
        k = max(ks)
        mine = result["metrics"]["all"]["model"][f"recall@{k}"]
        pop = result["metrics"]["all"]["most-popular"][f"recall@{k}"]
        verdict = "beats" if mine > pop else "does NOT beat"
        rel = f" ({(mine / pop - 1) * 100:+.0f}%)" if pop > 0 else ""
        lines.append(f"model {verdict} most-popular on recall@{k}: {mine:.4f} vs {pop:.4f}{rel}")
    return "\n".join(lines)


def candidate_matrix(candidate_tower, items: dict[str, np.ndarray], num_items: int, batch_size: int = 8192) -> np.ndarray:
    """[num_items, D] candidate embeddings by item index; row 0 (OOV) stays zero.

    Args:
        candidate_tower: feature dict -> [batch, D].
        items: catalogue columns (item_index and the tower's features), one row per item.
        num_items: rows of the result (max item_index + 1).
    """
    index = np.asarray(items["item_index"]).astype(np.int64)
    out = None
    for s in range(0, len(index), batch_size):
        emb = candidate_tower({k: tf.constant(v[s:s + batch_size]) for k, v in items.items()}).numpy()
        if out is None:
            out = np.zeros((num_items, emb.shape[1]), dtype=np.float32)
        out[index[s:s + batch_size]] = emb
    if out is None:
        raise ValueError("the item catalogue is empty")
    out[0] = 0.0
    return out
