"""The retrieval index of the recommender: the best items for query embeddings, some cells left out.

    index = build_index("exact", embeddings)             # or "hnsw", m=64, ef_search=1024 (serve.*)
    found, scores = index.search(queries, k, rows, columns)  # [B, k] rows of `embeddings`; -1 / -inf: none

exact   q . c over every item (lakerec.retrieval.recommend.exact_top_k: the numbers `recommend`
        writes), O(N D) per query.
hnsw    FAISS's HNSW graph over the same vectors, inner-product metric: O(log N) per query
        at a small loss of recall (bench/serve.py measures both against exact). FAISS
        because it is the one of the three libraries the issue names that installs with the
        pins in requirements.txt: faiss-cpu ships wheels built for numpy >= 1.25 (numpy is
        pinned to 1.26 by Petastorm's pyarrow 14); ScaNN's wheels need numpy 2, and hnswlib
        publishes no wheels (a C++ build on every install). The graph is built when the
        model loads (seconds for 10^5 items), from the embeddings the model carries.

`rows`, `columns` are cells of the [B, N] score matrix never returned: a user's seen items.
"""

from __future__ import annotations

import numpy as np

from lakerec.errors import ConfigError

KINDS = ("exact", "hnsw")


class ExactIndex:
    """Every item scored: what `recommend` computes, so the service matches the batch table."""

    def __init__(self, embeddings: np.ndarray):
        import tensorflow as tf

        self.size = len(embeddings)
        self._embeddings = tf.constant(np.asarray(embeddings, np.float32))
        self._rows = tf.range(self.size, dtype=tf.int64)

    def search(self, queries: np.ndarray, k: int, rows=None, columns=None) -> tuple[np.ndarray, np.ndarray]:
        from lakerec.retrieval.recommend import exact_top_k

        return exact_top_k(queries, self._embeddings, self._rows, k, rows, columns)


class HnswIndex:
    """FAISS IndexHNSWFlat (inner product) over the item embeddings.

    Args:
        embeddings: [N, D] item vectors.
        m: the graph's degree (memory and build time grow with it, so does recall).
        ef_search: the search beam; raised to the depth asked where that is larger.
    """

    def __init__(self, embeddings: np.ndarray, m: int, ef_search: int):
        try:
            import faiss
        except ImportError:
            raise ConfigError("serve.index hnsw needs faiss-cpu (requirements.txt): run `make setup`") from None
        vectors = np.ascontiguousarray(embeddings, np.float32)
        self.size = len(vectors)
        self._index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self._index.add(vectors)  # on every core
        # Then one thread per search: a request is one query, and OpenMP's idle workers would
        # spin beside TensorFlow's threads (this process's setting: the server's, or a test's).
        faiss.omp_set_num_threads(1)
        self.ef_search = ef_search

    def search(self, queries: np.ndarray, k: int, rows=None, columns=None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, np.float32)
        n = len(queries)
        k = min(k, self.size)
        excluded = np.zeros(n, np.int64) if rows is None else np.bincount(np.asarray(rows), minlength=n)
        depth = min(self.size, k + int(excluded.max(initial=0)))
        self._index.hnsw.efSearch = max(self.ef_search, depth)
        scores, found = self._index.search(queries, depth)
        if rows is not None and len(rows):
            banned = set(zip(np.asarray(rows).tolist(), np.asarray(columns).tolist()))
            for r, c in np.argwhere(found >= 0):
                if (int(r), int(found[r, c])) in banned:
                    scores[r, c] = -np.inf
        scores = np.where(found >= 0, scores, -np.inf).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(found, order, axis=1), np.take_along_axis(scores, order, axis=1)


def build_index(kind: str, embeddings: np.ndarray, *, m: int | None = None, ef_search: int | None = None):
    """The index of `kind` (KINDS) over the item embeddings [N, D]; m and ef_search: hnsw's (serve.*)."""
    if kind == "exact":
        return ExactIndex(embeddings)
    if kind == "hnsw":
        return HnswIndex(embeddings, m=m, ef_search=ef_search)
    raise ConfigError(f"serve.index must be one of {KINDS}, got {kind!r}")
