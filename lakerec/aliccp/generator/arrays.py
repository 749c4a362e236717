"""Small vectorised array pieces: contiguous blocks, CSR slots, counts per group."""

from __future__ import annotations

import numpy as np


def blocks(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a vocabulary of n ids into k contiguous blocks: (starts, sizes)."""
    sizes = np.full(k, n // k, dtype=np.int64) + (np.arange(k) < n % k)
    return np.cumsum(sizes) - sizes, sizes


def explode_csr(ptr: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each owner (with repeats), its CSR slots: (position of the owner, flat index)."""
    lengths = ptr[owners + 1] - ptr[owners]
    rep = np.repeat(np.arange(len(owners)), lengths)
    starts = np.cumsum(lengths) - lengths
    flat = np.repeat(ptr[owners], lengths) + np.arange(lengths.sum()) - np.repeat(starts, lengths)
    return rep, flat


def count_per_group(group: np.ndarray, ids: np.ndarray, vocab: int, cap: int, rng: np.random.Generator):
    """Distinct (group, id) pairs with their counts, keeping at most `cap` ids per group.

    The most frequent ids are kept (ties at random). Returns (group, id, count), sorted by
    (group, id), so `group * vocab + id` is a sorted lookup key.
    """
    keys, counts = np.unique(group.astype(np.int64) * vocab + ids, return_counts=True)
    g = keys // vocab
    order = np.lexsort((rng.random(len(keys)), -counts, g))
    gs = g[order]
    rank = np.arange(len(gs)) - np.searchsorted(gs, gs, side="left")
    keep = np.sort(order[rank < cap])
    return g[keep], keys[keep] % vocab, counts[keep]
