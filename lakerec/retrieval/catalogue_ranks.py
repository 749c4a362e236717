"""Full-catalogue evaluation of the model and three baselines on the test rows.

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
    als           Spark ALS (implicit feedback, lakerec.retrieval.als) on train_interactions:
                  score = user factor . item factor, ranked exactly like the model. An item
                  ALS never saw (no training positive) has no factor and scores -inf: it ranks
                  below every item with one (so a positive without a factor gets rank = the
                  number of factored items, ties counted inside as for the model). A row
                  whose user has no factor (a cold user, or one without training positives)
                  gets its most-popular rank instead; the table counts those rows.
A positive outside the vocabulary (a cold item, index 0) cannot be retrieved by any
method: rank MISS. Rows of cold users or cold items are also reported on their own.

Excluding seen items (`seen`, evaluate.exclude_seen): every method ranks, for each user, the
catalogue minus the items the user had in train_interactions, except the user's own test
positives: one list per user (so a query's positives keep distinct ranks, NDCG stays <= 1).
A seen item is never a hit and never pushes a test item down; rank = #{items left in the
list scored strictly higher than the positive}. A test positive the user already had in
train (a repeat) is still ranked, against the unseen items (and the user's other test
positives, as without exclusion). Cold users have no seen items. Computed by subtracting,
per row, the number of the user's excluded items that score strictly higher, read from the
same score matrix, so the ranks stay exact.

`evaluate(...)` is a pure function returning a dict; `format_table` renders it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from lakerec.retrieval import metrics as M

METHODS = ("model", "als", "most-popular", "random")
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


@dataclass(frozen=True)
class SeenItems:
    """Each user's training items (distinct), indexed like a CSR matrix over sorted user keys.

    Attributes:
        keys: [U] distinct user keys, sorted (user_index in evaluation, user_id in the served recommender).
        indptr: [U + 1] the items of keys[u] are items[indptr[u]:indptr[u + 1]].
        items: item indices (> 0), sorted within each user.
    """

    keys: np.ndarray
    indptr: np.ndarray
    items: np.ndarray

    @classmethod
    def from_pairs(cls, user_keys, item_index, kept: tuple | None = None) -> "SeenItems":
        """From (user, item) training pairs; repeats and OOV items (index <= 0) are dropped.

        Args:
            user_keys, item_index: the training pairs.
            kept: (user keys, item indices) of pairs that stay in the ranking although seen:
                the users' test positives (the rule in the module doc).
        """
        def distinct(u, i):
            u, i = np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)
            warm = i > 0
            return np.unique(np.stack([u[warm], i[warm]], axis=1), axis=0) if warm.any() else np.zeros((0, 2), np.int64)

        pairs = distinct(user_keys, item_index)
        if kept is not None and len(pairs):
            both = np.concatenate([pairs, distinct(*kept)])
            _, inverse, counts = np.unique(both, axis=0, return_inverse=True, return_counts=True)
            pairs = pairs[counts[inverse.reshape(-1)[:len(pairs)]] == 1]  # train pairs not among the kept
        keys, starts = np.unique(pairs[:, 0], return_index=True)
        return cls(keys, np.append(starts, len(pairs)).astype(np.int64), pairs[:, 1].copy())

    def _spans(self, user_keys) -> tuple[np.ndarray, np.ndarray]:
        uk = np.asarray(user_keys, dtype=np.int64)
        pos = np.searchsorted(self.keys, uk)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == uk[found]
        start = np.where(found, self.indptr[np.minimum(pos, len(self.keys))], 0)
        end = np.where(found, self.indptr[np.minimum(pos + 1, len(self.keys))], 0)
        return start, end - start

    def counts(self, user_keys) -> np.ndarray:
        """Per row: how many items its user has seen."""
        return self._spans(user_keys)[1]

    def entries(self, user_keys) -> tuple[np.ndarray, np.ndarray]:
        """(row, item index), one pair per seen item of each row's user."""
        start, length = self._spans(user_keys)
        rows = np.repeat(np.arange(len(length), dtype=np.int64), length)
        offsets = np.arange(rows.size, dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
        return rows, self.items[np.repeat(start, length) + offsets]

    def contains(self, user_keys, item_index) -> np.ndarray:
        """Per row: has its user seen its item in training?"""
        item_index = np.asarray(item_index, dtype=np.int64)
        rows, items = self.entries(user_keys)
        hit = items == item_index[rows]
        return np.bincount(rows[hit], minlength=item_index.size) > 0


def popularity_ranks(train_counts: np.ndarray) -> np.ndarray:
    """Rank of each item index in the most-popular list (count desc, index asc); row 0 MISS."""
    counts = np.asarray(train_counts)[1:]
    order = np.lexsort((np.arange(counts.size), -counts))  # last key is primary
    ranks = np.empty(counts.size + 1, dtype=np.int64)
    ranks[0] = M.MISS
    ranks[1 + order] = np.arange(counts.size)
    return ranks


def popularity_ranks_unseen(pop_ranks: np.ndarray, item_index, seen: SeenItems, user_keys) -> np.ndarray:
    """Most-popular ranks in each row's list without its user's seen items (see module doc).

    Args:
        pop_ranks: popularity_ranks of the catalogue.
        item_index: each row's positive.
        seen: the users' training items.
        user_keys: each row's user (the key seen is indexed by).
    """
    item_index = np.asarray(item_index, dtype=np.int64)
    ranks = pop_ranks[item_index].copy()
    rows, items = seen.entries(user_keys)
    ahead = pop_ranks[items] < ranks[rows]  # the positive itself is never ahead of itself
    warm = item_index > 0
    ranks[warm] -= np.bincount(rows[ahead], minlength=item_index.size)[warm]
    return ranks


def random_pool_sizes(query_keys, item_keys, item_index, num_items: int, seen: SeenItems, user_keys) -> np.ndarray:
    """Per row: the length of its query's random list once seen items are dropped.

    The catalogue minus the user's seen items, plus the query's distinct relevant items the
    user had seen (a repeated positive stays in the list).
    """
    q = np.asarray(query_keys, dtype=np.int64)
    item_index = np.asarray(item_index, dtype=np.int64)
    repeat = seen.contains(user_keys, item_index) & (item_index > 0)
    pairs = np.stack([q, np.asarray(item_keys, dtype=np.int64)], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    uq, inverse = np.unique(q, return_inverse=True)
    repeats_per_query = np.bincount(inverse.reshape(-1)[first], weights=repeat[first], minlength=uq.size)
    return num_items - seen.counts(user_keys) + repeats_per_query[inverse.reshape(-1)].astype(np.int64)


def random_ranks(query_keys: np.ndarray, item_keys: np.ndarray, item_index: np.ndarray,
                 num_items: int, seed: int, pool_sizes: np.ndarray | None = None) -> np.ndarray:
    """Ranks of the positives under one uniformly random ordering of the catalogue per query.

    Under a random permutation, a query's m distinct relevant items sit at m distinct
    positions drawn uniformly from 0..num_items-1: drawing those is exact and costs O(m).

    Args:
        pool_sizes: per row, the length of its query's list (random_pool_sizes, when seen
            items are excluded); None: the whole catalogue, num_items.
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
    if pool_sizes is None:
        pool = None
        pair_rank[starts[single]] = rng.integers(0, num_items, size=int(single.sum()))
    else:
        _, first = np.unique(inverse, return_index=True)
        pool = np.asarray(pool_sizes, dtype=np.int64)[warm][first]  # one per distinct pair
        pair_rank[starts[single]] = rng.integers(0, pool[starts[single]])
    for s, e in zip(starts[~single], ends[~single]):  # distinct warm items <= catalogue size
        pair_rank[s:e] = rng.choice(num_items if pool is None else int(pool[s]), size=e - s, replace=False)
    ranks[warm] = pair_rank[inverse]
    return ranks


@tf.function(reduce_retracing=True)
def _count_greater(queries, positive_scores, block, bias, seen_cells):
    """Per row: how many items of the block score strictly above the row's positive, less
    those of them that are the row's seen items (seen_cells: [E, 2] (row, column in block))."""
    scores = tf.matmul(queries, block, transpose_b=True)
    if bias is not None:
        scores = scores + bias
    greater = scores > positive_scores
    total = tf.reduce_sum(tf.cast(greater, tf.int64), axis=1)
    if seen_cells is None:
        return total
    # Read from the same score matrix, so the subtraction is exact whatever the round-off.
    seen_greater = tf.cast(tf.gather_nd(greater, seen_cells), tf.int64)
    return total - tf.math.unsorted_segment_sum(seen_greater, seen_cells[:, 0], tf.shape(queries)[0])


class ModelRanker:
    """Ranks of positives under scores q.c (+ an item bias) over the whole catalogue.

    Args:
        candidates: [N + 1, D] candidate embeddings by item index (row 0 unused).
        max_cells: rows x items scored at once.
        item_bias: [N + 1] added to every score of an item; -inf drops an item below all
            others (ALS's items without a factor). None: plain q.c (the model).
    """

    def __init__(self, candidates: np.ndarray, max_cells: int = MAX_CELLS, item_bias: np.ndarray | None = None):
        self.candidates = tf.constant(candidates, dtype=tf.float32)
        self.num_items = int(candidates.shape[0]) - 1
        self.max_cells = max_cells
        self.bias = None if item_bias is None else np.asarray(item_bias, dtype=np.float32)
        self._blocks: dict[int, list[tuple[int, tf.Tensor, tf.Tensor | None]]] = {}

    def _item_blocks(self, chunk: int) -> list[tuple[int, tf.Tensor, tf.Tensor | None]]:
        """(first item index, embeddings, bias or None) per block of `chunk` items."""
        if chunk not in self._blocks:
            self._blocks[chunk] = [
                (1 + s, self.candidates[1 + s:1 + min(s + chunk, self.num_items)],
                 None if self.bias is None else tf.constant(self.bias[1 + s:1 + min(s + chunk, self.num_items)]))
                for s in range(0, self.num_items, chunk)]
        return self._blocks[chunk]

    def ranks(self, queries: tf.Tensor, item_index: np.ndarray,
              seen: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Per row: #{catalogue items scored strictly higher than the row's positive}.

        Args:
            queries: [rows, D] query vectors.
            item_index: [rows] the positives (<= 0: MISS).
            seen: (row, item index) of each row's seen items (SeenItems.entries), left out of
                the count; None: every item counts.
        """
        queries = tf.convert_to_tensor(queries, tf.float32)
        item_index = np.asarray(item_index).astype(np.int64)
        positives = tf.gather(self.candidates, item_index)
        # The positive's score as TFRS's FactorizedTopK computes it.
        positive_scores = tf.reduce_sum(queries * positives, axis=1, keepdims=True)
        if self.bias is not None:
            positive_scores = positive_scores + self.bias[item_index][:, None]
        rows = int(queries.shape[0])
        chunk = max(1, min(self.num_items, self.max_cells // max(rows, 1)))
        if seen is not None:  # sort the seen cells by item once; each block takes its slice
            order = np.argsort(seen[1], kind="stable")
            seen_rows, seen_items = seen[0][order], seen[1][order]
        total = np.zeros(rows, dtype=np.int64)
        for first, block, bias in self._item_blocks(chunk):
            cells = None
            if seen is not None:
                lo, hi = np.searchsorted(seen_items, [first, first + int(block.shape[0])])
                cells = tf.constant(np.stack([seen_rows[lo:hi], seen_items[lo:hi] - first], axis=1)
                                    .reshape(-1, 2).astype(np.int64))
            total += _count_greater(queries, positive_scores, block, bias, cells).numpy()
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
    seen: SeenItems | None = None,
) -> dict[str, np.ndarray]:
    """Run the model over test batches; keep per-row keys, flags and model ranks.

    Args:
        query_fn: feature dict (query_columns) -> [batch, D] query embeddings.
        query_columns: the keys query_fn reads.
        candidates: [N + 1, D] candidate embeddings by item index.
        batches: feature dicts with query_columns and query_key, item_id, item_index,
            is_cold_user, is_cold_item, user_index.
        max_cells: memory bound of one score block.
        seen: the items left out of each user's ranking (by user_index; see the module doc);
            None: the whole catalogue.

    Returns:
        Arrays query_key, item_id, item_index, user_index, is_cold_user, is_cold_item, model (ranks).
    """
    ranker = ModelRanker(candidates, max_cells)
    keep = ("query_key", "item_id", "item_index", "user_index", "is_cold_user", "is_cold_item")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keep + ("model",)}
    row_block = max(1, min(65_536, max_cells // max(ranker.num_items, 1)))
    for big in batches:
        for batch in _split_rows(big, row_block):
            q = query_fn({c: batch[c] for c in query_columns})
            entries = None if seen is None else seen.entries(np.asarray(batch["user_index"]))
            parts["model"].append(ranker.ranks(q, np.asarray(batch["item_index"]), entries))
            for k in keep:
                if k in batch:  # user_index: needed only to exclude seen items and for ALS
                    parts[k].append(np.asarray(batch[k]))
    return {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in parts.items()
            if v or k != "user_index"}


def evaluate(rows: dict[str, np.ndarray], catalogue: Catalogue, ks=(10, 50, 100), seed: int = 42, *,
             seen: SeenItems | None = None, als=None, max_cells: int = MAX_CELLS) -> dict:
    """Metrics of the model and the baselines, per segment.

    Args:
        rows: `collect_ranks` output (the model's ranks under "model", computed with the
            same `seen`).
        catalogue: item ids and training counts by index.
        ks: cut-offs for recall@K, NDCG@K and top-K accuracy.
        seed: the random baseline's seed.
        seen: the items to leave out of each user's ranking (by user_index; the user's
            training items except their test positives, see the module doc), for every
            baseline; None: rank the whole catalogue.
        als: lakerec.retrieval.als.Factors for the ALS baseline; None: no ALS line.
        max_cells: memory bound of one ALS score block.

    Returns:
        {"catalogue_size", "ks", "exclude_seen", "methods", "rows": {segment: n},
         "queries": {segment: n}, "metrics": {segment: {method: {metric: value}}},
         "curves": {"k": [...], method: [recall@k ...]}} (curves over all rows); with ALS
        also "als_fallback_rows": {segment: rows ranked by most-popular for want of a user factor}.
    """
    n = catalogue.size
    item_index = np.asarray(rows["item_index"], dtype=np.int64)
    pop = popularity_ranks(catalogue.train_counts)
    if seen is None:
        popular, pool = pop[item_index], None
    else:
        user_index = np.asarray(rows["user_index"], dtype=np.int64)
        popular = popularity_ranks_unseen(pop, item_index, seen, user_index)
        pool = random_pool_sizes(rows["query_key"], rows["item_id"], item_index, n, seen, user_index)
    ranks = {"model": np.asarray(rows["model"], dtype=np.int64)}
    fallback = None
    if als is not None:
        from lakerec.retrieval import als as als_baseline

        ranks["als"], fallback = als_baseline.rank_rows(als, rows["user_index"], item_index, popular, seen, max_cells)
    ranks["most-popular"] = popular
    ranks["random"] = random_ranks(rows["query_key"], rows["item_id"], item_index, n, seed, pool)
    cold = (np.asarray(rows["is_cold_user"]) > 0) | (np.asarray(rows["is_cold_item"]) > 0)
    masks = {"all": np.ones(cold.shape, dtype=bool), "warm": ~cold, "cold-start": cold}
    out: dict = {"catalogue_size": n, "ks": list(ks), "exclude_seen": seen is not None, "methods": list(ranks),
                 "rows": {}, "queries": {}, "metrics": {}}
    if fallback is not None:
        out["als_fallback_rows"] = {seg: int((fallback & mask).sum()) for seg, mask in masks.items()}
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
    seen = ("each user's training items excluded from their ranking" if result.get("exclude_seen")
            else "training items not excluded")
    lines = [
        f"Full-catalogue retrieval over {result['catalogue_size']:,} items, {seen} "
        f"(acc@K = TFRS top-K categorical accuracy, per row)",
        head,
        "-" * len(head),
    ]
    methods = [m for m in METHODS if m in result.get("methods", ("model", "most-popular", "random"))]
    for seg in SEGMENTS:
        if seg not in result["metrics"]:
            continue
        for i, method in enumerate(methods):
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
    fallback = result.get("als_fallback_rows")
    if fallback and fallback.get("all"):
        per_seg = ", ".join(f"{seg} {fallback[seg]:,}" for seg in SEGMENTS if fallback.get(seg))
        lines.append(f"als: rows of users without an ALS factor (cold, or no training positive) are ranked by "
                     f"most-popular: {per_seg}")
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
