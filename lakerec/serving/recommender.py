"""The recommender the service answers with: retrieve with the two-tower, re-rank with the ranker.

    rec = Recommender.load("path/to/bundle")            # what lakerec.serving.export writes
    rec.recommend(pd.DataFrame({"user_id": [100274]}), k=10)
    # -> user_id, rank (1 = best), item_id, score, p_click, p_conversion, source

The same two stages as `python -m lakerec.jobs.recommend`, one request at a time:
  1. the query tower on the user's features, then the retrieval index (exact: q . c over
     every item, lakerec.retrieval.recommend.exact_top_k; or hnsw: lakerec.serving.index)
     returns the top max(k, candidates) items, the user's training items left out when
     exclude_seen;
  2. the ranker scores each (user, candidate) pair as lakerec.ranking.rerank does (the user's
     newest impression context, the item's item_vocab columns, the cross fields computed from
     the user's history and the item's side fields through the bundle's maps, or absent:
     rank.candidate_crosses, lakerec.ranking.candidate_crosses), orders
     them by rank.rerank_by (rerank.order_scores, ties by the retrieval rank) and keeps k.
A known user id alone uses the snapshot of that user's features the bundle carries (the rows
`recommend` read), so the answer is that user's rows of the `recommendations` table. A row
that carries feature columns (FEATURE_COLUMNS; a new user, or a known one whose context has
changed) is answered from them: absent columns and nulls are the missing value (0), an
unknown user's id index is the OOV row and is_cold_user is true. A user unknown to the
snapshot with no features gets the most-popular items (training positives, ties by item
index: the evaluation's baseline), source "popular", score = the item's share of them,
p_click and p_conversion null. Without a ranker the two-tower's order, p_* null.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lakerec.errors import RequestError
from lakerec.ranking import rerank as R
from lakerec.ranking import candidate_crosses as C
from lakerec.ranking.two_stage import item_columns, user_columns

# What a request may carry besides user_id: the user's profile and history columns.
FEATURE_COLUMNS = tuple(user_columns()[3:])
ID_COLUMNS = ("user_id", "user_index", "is_cold_user")
OUTPUT_COLUMNS = ("user_id", "rank", "item_id", "score", "p_click", "p_conversion", "source")
MODEL, POPULAR = "model", "popular"

PARAMS = ("k", "exclude_seen", "candidates")  # a request's params (lakerec.serving.export.signature)
INDEX_SETTINGS = ("index", "hnsw_m", "hnsw_ef_search")  # what a model_config may change
BUNDLE = "bundle"  # the model's artifact: the directory lakerec.serving.export.write_bundle fills
SETTINGS_FILE = "recommender.json"
TWO_TOWER_DIR, RANKER_DIR = "two_tower", "ranker"
USERS_FILE, CONTEXTS_FILE, ITEMS_FILE, SEEN_FILE = "users.parquet", "contexts.parquet", "items.parquet", "seen.parquet"
CROSSES_FILE = "crosses.parquet"  # candidate_crosses.keys_frame: the maps of the computed cross fields


@dataclass(frozen=True)
class Settings:
    """The defaults of a request's params and how the bundle was made.

    Attributes:
        k: items per user.
        candidates: retrieved per user before re-ranking (max(k, candidates) are).
        exclude_seen: leave each user's training items out.
        rerank_by: the ranker's order (rank.rerank_by).
        intention_length: length of the cross fields' arrays (filter.item_intention_length).
        candidate_crosses: computed or absent (rank.candidate_crosses).
        index: exact or hnsw (lakerec.serving.index); hnsw_m, hnsw_ef_search: its graph.
        two_tower, ranker: the model URIs bundled (ranker None: the two-tower's order).
    """

    k: int
    candidates: int
    exclude_seen: bool
    rerank_by: str
    intention_length: int
    candidate_crosses: str
    index: str
    hnsw_m: int
    hnsw_ef_search: int
    two_tower: str
    ranker: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def as_arrays(frame: pd.DataFrame, columns) -> dict[str, np.ndarray]:
    """The columns of a snapshot frame as numpy arrays (list cells stacked to [rows, length])."""
    out = {}
    for c in columns:
        values = frame[c].to_numpy()
        if len(values) and isinstance(values[0], (list, tuple, np.ndarray)):
            values = np.stack([np.asarray(v) for v in values])
        out[c] = values
    return out


class _Table:
    """Rows keyed by an id, as column arrays (a snapshot of users or their contexts)."""

    def __init__(self, frame: pd.DataFrame, key: str = "user_id"):
        self.keys = pd.Index(frame[key].to_numpy(np.int64))
        self.columns = as_arrays(frame, [c for c in frame.columns])

    def positions(self, ids: np.ndarray) -> np.ndarray:
        return self.keys.get_indexer(ids)

    def rows(self, positions: np.ndarray, names) -> dict[str, np.ndarray]:
        """The rows at `positions` (-1: zeros, the missing value) of the columns `names`."""
        safe = np.maximum(positions, 0)
        out = {}
        for c in names:
            values = self.columns[c][safe]
            if (positions < 0).any():
                values = values.copy()
                values[positions < 0] = 0
            out[c] = values
        return out


def _requested(request: pd.DataFrame, name: str, base: np.ndarray) -> np.ndarray:
    """`base` with the request's non-null values of column `name` written over it."""
    if name not in request.columns:
        return base
    out = base.copy()
    for row, value in enumerate(request[name].to_numpy()):
        if value is None or (np.isscalar(value) and pd.isna(value)):
            continue
        try:
            cell = np.asarray(value, dtype=out.dtype)
        except (TypeError, ValueError):
            raise RequestError(f"{name} of row {row}: {value!r} is not a number or a list of numbers") from None
        if cell.shape != out.shape[1:]:
            want = f"a list of {out.shape[1]} numbers" if out.ndim == 2 else "one number"
            raise RequestError(f"{name} of row {row} must be {want}, got {value!r}")
        out[row] = cell
    return out


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise RequestError(f"param {name} must be a whole number of at least 1, got {value!r}")
    return int(value)


class Recommender:
    """Both stages over the bundle's snapshot (see the module doc); `recommend` answers a request.

    Args:
        two_tower: the two-tower's exported module (its query_embeddings: features -> [B, D]).
        spec: its FeatureSpec.
        items: the catalogue by item_index - 1: item_id, embedding, the ranker's item columns,
            exposure, train_count.
        users: each user's retrieval features (users_frame), by user_id.
        contexts: each user's ranker columns (rerank.user_contexts), None without a ranker.
        crosses: the cross fields' maps (candidate_crosses.keys_frame), None without a ranker
            or with candidate_crosses absent.
        seen: each user's training items (catalogue_ranks.SeenItems keyed by user_id).
        ranker: the Ranker (lakerec.ranking.scoring) or None.
        settings: the defaults and the index.
    """

    def __init__(self, two_tower, spec, items: dict[str, np.ndarray], users: pd.DataFrame,
                 contexts: pd.DataFrame | None, seen, ranker, settings: Settings, crosses: pd.DataFrame | None = None):
        from lakerec.ranking.evaluate import check_ranker
        from lakerec.retrieval.catalogue_ranks import popularity_ranks
        from lakerec.serving.index import build_index

        self.two_tower, self.spec, self.items, self.seen, self.ranker = two_tower, spec, items, seen, ranker
        self.settings = settings
        self.users = _Table(users)
        self.contexts = _Table(contexts) if ranker is not None else None
        self.index = build_index(settings.index, items["embedding"], m=settings.hnsw_m,
                                 ef_search=settings.hnsw_ef_search)
        counts = np.asarray(items["train_count"], np.float64)
        self.popular = np.argsort(popularity_ranks(np.concatenate([[0], counts]))[1:], kind="stable")
        self.popular_share = counts / max(counts.sum(), 1.0)
        if ranker is not None:
            R.check_order(settings.rerank_by, ranker.objective, settings.ranker)
            self.crosses = crosses if settings.candidate_crosses == C.COMPUTED else None
            if settings.candidate_crosses == C.COMPUTED and crosses is None:
                raise ValueError("candidate_crosses computed needs the cross maps (crosses.parquet)")
            cross_columns = C.absent_cross_arrays(0, settings.intention_length)
            available = set(user_columns()) | set(item_columns()) | set(cross_columns) | {"is_cold_item"}
            self.ranker_columns = check_ranker(ranker, available)

    @classmethod
    def load(cls, path: str | Path, **settings) -> "Recommender":
        """The recommender in a bundle directory (lakerec.serving.export.write_bundle).

        Args:
            path: the directory.
            **settings: Settings fields to change (index, hnsw_m, hnsw_ef_search).
        """
        from lakerec.ranking.scoring import load_ranker
        from lakerec.retrieval import export
        from lakerec.retrieval.catalogue_ranks import SeenItems

        path = Path(path)
        config = replace(Settings(**json.loads((path / SETTINGS_FILE).read_text())), **settings)
        module, spec = export.load_model(str(path / TWO_TOWER_DIR))
        ranker = load_ranker(str(path / RANKER_DIR)) if (path / RANKER_DIR).is_dir() else None
        items = pd.read_parquet(path / ITEMS_FILE)
        seen = pd.read_parquet(path / SEEN_FILE)
        contexts = pd.read_parquet(path / CONTEXTS_FILE) if ranker is not None else None
        crosses = pd.read_parquet(path / CROSSES_FILE) if (path / CROSSES_FILE).is_file() else None
        return cls(module, spec, as_arrays(items, items.columns), pd.read_parquet(path / USERS_FILE),
                   contexts, SeenItems.from_pairs(seen["user_id"], seen["item_index"]), ranker, config, crosses)

    def recommend(self, request: pd.DataFrame, k: int | None = None, exclude_seen: bool | None = None,
                  candidates: int | None = None) -> pd.DataFrame:
        """The top k of every request row (one user each), in OUTPUT_COLUMNS, by row then rank.

        Args:
            request: user_id and, optionally, FEATURE_COLUMNS.
            k, exclude_seen, candidates: the request's params; None: the bundle's defaults.

        Raises:
            RequestError: no user_id, a param below 1, a feature value of the wrong shape.
        """
        s = self.settings
        k = _positive("k", s.k if k is None else k)
        candidates = _positive("candidates", s.candidates if candidates is None else candidates)
        exclude_seen = s.exclude_seen if exclude_seen is None else exclude_seen
        if not isinstance(exclude_seen, (bool, np.bool_)):
            raise RequestError(f"param exclude_seen must be true or false, got {exclude_seen!r}")
        request = pd.DataFrame(request).reset_index(drop=True)
        if "user_id" not in request.columns or request["user_id"].isna().any():
            raise RequestError("every row needs a user_id (the user's id; unknown ids get the most-popular items)")
        user_ids = request["user_id"].to_numpy(np.int64)
        given = [c for c in FEATURE_COLUMNS if c in request.columns]
        carries = request[given].notna().to_numpy().any(axis=1) if given else np.zeros(len(request), bool)
        known = self.users.positions(user_ids) >= 0
        if self.contexts is not None:
            known &= self.contexts.positions(user_ids) >= 0
        by_model = np.flatnonzero(known | carries)
        parts = []
        if len(by_model):
            parts.append(self._two_stages(request.iloc[by_model].reset_index(drop=True), by_model, k, candidates,
                                          bool(exclude_seen)))
        by_popularity = np.flatnonzero(~(known | carries))
        if len(by_popularity):
            parts.append(self._popular(user_ids[by_popularity], by_popularity, k))
        if not parts:
            return pd.DataFrame({c: [] for c in OUTPUT_COLUMNS})
        out = pd.concat(parts, ignore_index=True).sort_values(["_row", "rank"], kind="stable")
        return out[list(OUTPUT_COLUMNS)].reset_index(drop=True)

    def _features(self, request: pd.DataFrame, table: _Table, names) -> dict[str, np.ndarray]:
        rows = table.rows(table.positions(request["user_id"].to_numpy(np.int64)), names)
        return {c: _requested(request, c, v) if c in FEATURE_COLUMNS else v for c, v in rows.items()}

    def queries(self, request: pd.DataFrame) -> np.ndarray:
        """[rows, D] query embeddings of the request's users (their snapshot, the features sent over it)."""
        from lakerec.ranking.baselines import query_tensors

        serving = self.spec.serving_columns()
        features = self._features(request, self.users, serving[1:])
        frame = pd.DataFrame({"user_id": request["user_id"].to_numpy(np.int64),
                              **{c: list(v) if v.ndim == 2 else v for c, v in features.items()}})
        return self.two_tower.query_embeddings(query_tensors(frame, serving, self.spec.array_lengths())).numpy()

    def _two_stages(self, request: pd.DataFrame, rows: np.ndarray, k: int, candidates: int, exclude_seen: bool):
        user_ids = request["user_id"].to_numpy(np.int64)
        queries = self.queries(request)
        seen_rows, seen_columns = self.seen.entries(user_ids) if exclude_seen else (None, None)
        depth = max(k, candidates) if self.ranker is not None else k
        found, scores = self.index.search(queries, depth, seen_rows, None if seen_rows is None else seen_columns - 1)
        pair_row, pair_rank = np.nonzero(np.isfinite(scores) & (found >= 0))  # row-major: by row, then rank
        position, score = found[pair_row, pair_rank], scores[pair_row, pair_rank]
        if self.ranker is None:
            keep = pair_rank < k
            return self._frame(rows[pair_row[keep]], user_ids[pair_row[keep]], pair_rank[keep] + 1,
                               position[keep], score[keep], None, None, MODEL)
        predicted = self._rank(request, pair_row, position)
        by = R.order_scores(predicted, self.items["exposure"][position], self.settings.rerank_by)
        order = np.lexsort((pair_rank, -np.asarray(by, np.float64), pair_row))
        sorted_rows = pair_row[order]
        starts = np.searchsorted(sorted_rows, sorted_rows, side="left")
        rank = np.arange(len(order)) - starts + 1
        keep = order[rank <= k]
        esmm = self.ranker.objective == "esmm"
        return self._frame(rows[pair_row[keep]], user_ids[pair_row[keep]], rank[rank <= k], position[keep],
                           score[keep], predicted["p_click"][keep],
                           predicted["p_conversion"][keep] if esmm else None, MODEL)

    def _rank(self, request: pd.DataFrame, pair_row: np.ndarray, position: np.ndarray) -> dict[str, np.ndarray]:
        """The ranker's p_click, p_conversion, p_ctcvr of each (request row, item position) pair."""
        users = self._features(request, self.contexts, user_columns()[1:])
        unknown = self.contexts.positions(request["user_id"].to_numpy(np.int64)) < 0
        users["is_cold_user"] = np.where(unknown, True, users["is_cold_user"].astype(bool))
        arrays = {"user_id": request["user_id"].to_numpy(np.int64)[pair_row]}
        arrays.update({c: v[pair_row] for c, v in users.items()})
        arrays.update({c: self.items[c][position] for c in item_columns()})
        arrays["is_cold_item"] = np.zeros(len(position), bool)
        length = self.settings.intention_length
        if self.crosses is None:
            arrays.update(C.absent_cross_arrays(len(position), length))
        else:
            arrays.update(C.computed_cross_arrays(self.crosses, arrays, arrays, length))
        try:
            predicted = self.ranker.predict({c: arrays[c] for c in self.ranker_columns})
        except ValueError as e:  # a feature of the wrong width
            raise RequestError(str(e)) from None
        return {name: np.asarray(v, np.float64) for name, v in predicted.items()}

    def _popular(self, user_ids: np.ndarray, rows: np.ndarray, k: int) -> pd.DataFrame:
        top = self.popular[:k]
        n = len(top)
        return self._frame(np.repeat(rows, n), np.repeat(user_ids, n), np.tile(np.arange(1, n + 1), len(rows)),
                           np.tile(top, len(rows)), np.tile(self.popular_share[top], len(rows)), None, None, POPULAR)

    def _frame(self, rows, user_ids, rank, position, score, p_click, p_conversion, source: str) -> pd.DataFrame:
        n = len(rows)
        missing = np.full(n, np.nan)
        return pd.DataFrame({
            "_row": rows, "user_id": user_ids.astype(np.int64), "rank": np.asarray(rank, np.int32),
            "item_id": self.items["item_id"][position].astype(np.int64),
            # The table's float columns, so a served value equals the batch one bit for bit.
            "score": np.asarray(score, np.float32),
            "p_click": (missing if p_click is None else p_click).astype(np.float32),
            "p_conversion": (missing if p_conversion is None else p_conversion).astype(np.float32),
            "source": np.full(n, source, dtype=object),
        })

