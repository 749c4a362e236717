"""The planted truth behind generated Ali-CCP data, and what an oracle can say with it.

`python -m lakerec.jobs.generate` writes `DIR/oracle/oracle.npz` (arrays), `oracle.json`
(parameters and realised statistics) and `impressions_{split}.parquet` (the true
probabilities of every impression, below). The generative model, all in raw feature ids:

- K latent topics. A user has a sparse interest `theta_u` over 1-3 topics (sums to 1); an
  item has one topic `t_i`, a popularity `pi_i` (Zipf-like, sums to 1) and a quality `q_i`.
- Impression propensity, the chance that one impression of user u shows item i:
  `P(i | u) = pi_i * ((1 - m) / Z + m * theta_u[t_i] / Z[t_i])` over the items available in
  the split (train lacks the cold-start items), where Z and Z[t] are the popularity mass of
  all available items and of those of topic t, and m is `interest_exposure`.
- Click probability at position p: `sigmoid(b + w * a(u, i) + e_p + q_i)` with affinity
  `a(u, i) = theta_u[t_i] / max(theta_u)` in [0, 1], base logit b calibrated to the target
  click rate, w the affinity weight and e_p the position effect. Without a position
  (`p_click_no_position`, `click_probability(..., position=None)`) it is the mean over the
  position shares, `E_p[P(click | u, i, p)]`: the same order as any fixed position, and
  calibrated (its mean over impressions is the click rate).
- Conversion given a click, from fields a model sees (position plays no part):
  `sigmoid(c + g[category_i] + n_i + v[consumption_u] + w_c * a(u, i))`, where g is an
  effect per item category (field item_category, sd `category_conversion_sd`), n_i item
  noise (sd `item_conversion_sd`), v an effect per level of the user's user_consumption_2
  (`consumption_conversion_effects`; 0 when the field is absent), w_c
  `conversion_affinity_weight`, and c is calibrated so that the share of clicks that convert
  is the target (`conversion_rate_of_clicks`, `--conversion-rate`; default 0.55%).
  The arrays hold `item_conversion_quality` = g[category_i] + n_i and
  `user_conversion_effect` = v[consumption_u].
- CTCVR (click and conversion): P(click) x P(conversion | click).

`Oracle.top_k(users, k)` ranks the whole catalogue per user by the probability that one
impression of that user is a click on the item: `P(i | u) * E_p[P(click | u, i, p)]`.
`click_probability`, `conversion_probability` and `ctcvr_probability` score (user, item)
pairs without a position, e.g. to re-rank retrieved candidates as an oracle.

The true probabilities of every written impression: `impression_truth_path(DIR, split)` is a
Parquet file with one row per valid skeleton line (planted malformed lines have none):
`sample_id` (int64, the skeleton's), `p_click` (at its shown position),
`p_click_no_position`, `p_conversion_given_click` and `p_ctcvr` (= p_click x
p_conversion_given_click). Spark reads it with `spark.read.parquet(str(path))` and joins it
on sample_id; `read_impression_truth(DIR, split)` gives numpy arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lakerec.errors import InputDataError
from lakerec.schema.fields import SPLITS

NPZ_NAME = "oracle.npz"
JSON_NAME = "oracle.json"
IMPRESSION_TRUTH_NAME = "impressions_{split}.parquet"
# The columns of an impression truth file, in order (sample_id int64, the rest float64).
IMPRESSION_TRUTH_COLUMNS = ("sample_id", "p_click", "p_click_no_position", "p_conversion_given_click", "p_ctcvr")

# Arrays the npz holds (raw ids are int64; index i of every item_* array is one item).
ARRAYS = (
    "user_ids", "user_topics", "user_topic_weights", "user_activity", "cold_user", "user_profile_ids",
    "item_ids", "item_topic", "item_popularity", "item_quality", "cold_item",
    "item_category_ids", "item_shop_ids", "item_brand_ids", "item_intention_ptr", "item_intention_ids",
    "position_ids", "position_probs", "position_effects",
    "user_conversion_effect", "item_conversion_quality",
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def oracle_folder(path: str | Path) -> Path:
    """The `oracle/` folder of a generated data directory (or the folder itself)."""
    path = Path(path)
    folder = path if (path / NPZ_NAME).is_file() else path / "oracle"
    if not (folder / NPZ_NAME).is_file():
        raise InputDataError(
            f"no {NPZ_NAME} in {path} or {path / 'oracle'}: run `python -m lakerec.jobs.generate --out DIR` first"
        )
    return folder


def impression_truth_path(path: str | Path, split: str) -> Path:
    """The Parquet file of a split's true impression probabilities (see the module docstring).

    Args:
        path: the generated data directory (`--out`) or its `oracle/` folder.
        split: "train" or "test".

    Returns:
        The file's path, for `spark.read.parquet(str(path))` or `read_impression_truth`.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose from {SPLITS}")
    target = oracle_folder(path) / IMPRESSION_TRUTH_NAME.format(split=split)
    if not target.is_file():
        raise InputDataError(
            f"no {target.name} in {target.parent}: generate the {split} split with this generator version "
            f"(`python -m lakerec.jobs.generate --out DIR --split {split}`)"
        )
    return target


def read_impression_truth(path: str | Path, split: str) -> dict[str, np.ndarray]:
    """A split's true impression probabilities as numpy arrays by column (sorted by sample_id).

    Small and medium data sets only: at scale, read the file with Spark instead.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(impression_truth_path(path, split), columns=list(IMPRESSION_TRUTH_COLUMNS))
    return {name: table.column(name).to_numpy() for name in IMPRESSION_TRUTH_COLUMNS}


class Oracle:
    """The latent truth of one generated data set.

    Attributes (numpy arrays, one row per user or item):
        user_ids, item_ids: raw feature ids (field 101 and 205).
        user_topics (U, 3), user_topic_weights (U, 3): the sparse interest theta_u (unused
            slots have weight 0; slot 0 is the main topic).
        item_topic, item_popularity, item_quality: t_i, pi_i, q_i.
        cold_user, cold_item: true for the users/items that appear only in the test split.
        user_profile_ids (U, 8): raw ids of fields `profile_codes`, 0 where absent.
        item_category_ids, item_shop_ids, item_brand_ids (0 = no brand), and the item's
            intention ids in CSR form (item_intention_ptr, item_intention_ids).
        position_ids, position_probs, position_effects: field 301's ids, their shares and e_p.
        user_conversion_effect, item_conversion_quality: v[consumption_u] and
            g[category_i] + n_i of the conversion logit.
        params: the generator parameters plus the calibrated `base_logit` and
            `conversion_base_logit`.
        stats: realised statistics per split (rows, clicks, conversions, ...).
    """

    def __init__(self, arrays: dict[str, np.ndarray], params: dict, stats: dict | None = None, meta: dict | None = None):
        missing = [a for a in ARRAYS if a not in arrays]
        if missing:
            raise InputDataError(f"oracle arrays incomplete, missing {missing}: regenerate the data")
        for name in ARRAYS:
            setattr(self, name, np.asarray(arrays[name]))
        self.params = dict(params)
        self.stats = dict(stats or {})
        self.meta = dict(meta or {})
        self.n_topics = int(self.params["topics"])
        self.interest_exposure = float(self.params["interest_exposure"])
        self.affinity_weight = float(self.params["affinity_weight"])
        self.base_logit = float(self.params["base_logit"])
        self.conversion_base_logit = float(self.params["conversion_base_logit"])
        self.conversion_affinity_weight = float(self.params["conversion_affinity_weight"])
        self._user_order = np.argsort(self.user_ids, kind="stable")
        self._item_order = np.argsort(self.item_ids, kind="stable")
        self._user_max = self.user_topic_weights.max(axis=1)
        self._mass = {split: self._topic_mass(split) for split in SPLITS}

    # ---- loading and saving -------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> "Oracle":
        """Load from a generated data directory (or its `oracle/` folder)."""
        folder = oracle_folder(path)
        with np.load(folder / NPZ_NAME) as z:
            arrays = {k: z[k] for k in z.files}
        doc = json.loads((folder / JSON_NAME).read_text()) if (folder / JSON_NAME).is_file() else {}
        params = {**doc.get("params", {}), **doc.get("calibrated", {}), "topics": doc.get("topics")}
        return cls(arrays, params, doc.get("splits", {}), doc)

    def save_arrays(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / NPZ_NAME
        np.savez_compressed(target, **{a: getattr(self, a) for a in ARRAYS})
        return target

    # ---- ids ------------------------------------------------------------------------------

    def user_index(self, user_ids) -> np.ndarray:
        """Raw user ids (field 101) → row index into the user arrays; KeyError if unknown."""
        return self._index(np.asarray(user_ids, dtype=np.int64), self.user_ids, self._user_order, "user")

    def item_index(self, item_ids) -> np.ndarray:
        """Raw item ids (field 205) → row index into the item arrays; KeyError if unknown."""
        return self._index(np.asarray(item_ids, dtype=np.int64), self.item_ids, self._item_order, "item")

    @staticmethod
    def _index(ids: np.ndarray, universe: np.ndarray, order: np.ndarray, what: str) -> np.ndarray:
        sorted_ids = universe[order]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == ids
        if not np.all(found):
            raise KeyError(f"unknown {what} id(s), e.g. {ids[~found][:5].tolist()}")
        return order[pos]

    # ---- the model, on row indices -------------------------------------------------------

    @property
    def user_vectors(self) -> np.ndarray:
        """(U, K) interest theta_u / max(theta_u): affinity(u, i) = user_vectors[u] @ item_vectors[i]."""
        return self._dense_interest(np.arange(len(self.user_ids))) / self._user_max[:, None]

    @property
    def item_vectors(self) -> np.ndarray:
        """(I, K) one-hot topic of each item."""
        out = np.zeros((len(self.item_ids), self.n_topics))
        out[np.arange(len(self.item_ids)), self.item_topic] = 1.0
        return out

    def _dense_interest(self, u_idx: np.ndarray) -> np.ndarray:
        dense = np.zeros((len(u_idx), self.n_topics))
        rows = np.repeat(np.arange(len(u_idx)), self.user_topics.shape[1])
        np.add.at(dense, (rows, self.user_topics[u_idx].ravel()), self.user_topic_weights[u_idx].ravel())
        return dense

    def interest_idx(self, u_idx: np.ndarray, i_idx: np.ndarray) -> np.ndarray:
        """theta_u[t_i] for paired user/item row indices."""
        hit = self.user_topics[u_idx] == self.item_topic[i_idx][:, None]
        return (self.user_topic_weights[u_idx] * hit).sum(axis=1)

    def affinity_idx(self, u_idx: np.ndarray, i_idx: np.ndarray) -> np.ndarray:
        return self.interest_idx(u_idx, i_idx) / self._user_max[u_idx]

    def click_probability_idx(self, u_idx, i_idx, position: np.ndarray | None = None) -> np.ndarray:
        """P(click) for paired row indices; `position` holds position slots 0..3, or None to average."""
        u_idx, i_idx = np.broadcast_arrays(np.asarray(u_idx), np.asarray(i_idx))
        u_idx, i_idx = u_idx.ravel(), i_idx.ravel()
        logit = self.base_logit + self.affinity_weight * self.affinity_idx(u_idx, i_idx) + self.item_quality[i_idx]
        if position is not None:
            return sigmoid(logit + self.position_effects[np.asarray(position)])
        return sum(p * sigmoid(logit + e) for p, e in zip(self.position_probs, self.position_effects))

    def conversion_logit_idx(self, u_idx, i_idx) -> np.ndarray:
        """The conversion logit given a click, without the calibrated base."""
        u_idx, i_idx = np.broadcast_arrays(np.asarray(u_idx), np.asarray(i_idx))
        u_idx, i_idx = u_idx.ravel(), i_idx.ravel()
        return (self.item_conversion_quality[i_idx] + self.user_conversion_effect[u_idx]
                + self.conversion_affinity_weight * self.affinity_idx(u_idx, i_idx))

    def conversion_given_click_idx(self, u_idx, i_idx) -> np.ndarray:
        """P(conversion | click) for paired row indices (position plays no part)."""
        return sigmoid(self.conversion_base_logit + self.conversion_logit_idx(u_idx, i_idx))

    def available(self, split: str) -> np.ndarray:
        """Items that can be shown in a split (train lacks the cold-start items)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: choose from {SPLITS}")
        return ~self.cold_item if split == "train" else np.ones(len(self.item_ids), dtype=bool)

    def _topic_mass(self, split: str) -> tuple[float, np.ndarray]:
        pop = self.item_popularity * self.available(split)
        return float(pop.sum()), np.bincount(self.item_topic, weights=pop, minlength=self.n_topics)

    def impression_probability_idx(self, u_idx, i_idx, split: str = "test") -> np.ndarray:
        """P(one impression of user u shows item i) in a split, for paired row indices."""
        u_idx, i_idx = np.broadcast_arrays(np.asarray(u_idx), np.asarray(i_idx))
        u_idx, i_idx = u_idx.ravel(), i_idx.ravel()
        total, by_topic = self._mass[split]
        m = self.interest_exposure
        pop = self.item_popularity[i_idx] * self.available(split)[i_idx]
        topic_mass = by_topic[self.item_topic[i_idx]]
        share = np.divide(self.interest_idx(u_idx, i_idx), topic_mass, out=np.zeros(len(i_idx)), where=topic_mass > 0)
        return pop * ((1 - m) / total + m * share)

    # ---- the public API, on raw ids ------------------------------------------------------

    def click_probability(self, user_ids, item_ids, position=None) -> np.ndarray:
        """P(click) of paired (user, item) raw ids, averaged over positions unless given (slot 0..3)."""
        return self.click_probability_idx(self.user_index(user_ids), self.item_index(item_ids), position)

    def conversion_probability(self, user_ids, item_ids) -> np.ndarray:
        """P(conversion | click) of paired (user, item) raw ids."""
        return self.conversion_given_click_idx(self.user_index(user_ids), self.item_index(item_ids))

    def ctcvr_probability(self, user_ids, item_ids) -> np.ndarray:
        """P(click and conversion) of paired raw ids, position-free: mean P(click) over positions x P(conv | click)."""
        u, i = self.user_index(user_ids), self.item_index(item_ids)
        return self.click_probability_idx(u, i) * self.conversion_given_click_idx(u, i)

    def impression_probability(self, user_ids, item_ids, split: str = "test") -> np.ndarray:
        return self.impression_probability_idx(self.user_index(user_ids), self.item_index(item_ids), split)

    def clicked_probability(self, user_ids, item_ids, split: str = "test") -> np.ndarray:
        """P(one impression of the user is a click on the item) = propensity x click probability."""
        u, i = self.user_index(user_ids), self.item_index(item_ids)
        return self.impression_probability_idx(u, i, split) * self.click_probability_idx(u, i)

    def top_k(self, user_ids, k: int = 100, split: str = "test", return_scores: bool = False, max_cells: int = 2_000_000):
        """Per user, the k item ids most likely to appear as that user's clicked impression.

        Args:
            user_ids: raw user ids (field 101).
            k: items per user (at most the catalogue size).
            split: whose availability applies ("test": every item; "train": no cold items).
            return_scores: also return the probabilities, shape (n, k).
            max_cells: users x items scored at once (memory bound).

        Returns:
            (n, k) int64 raw item ids, best first (and the (n, k) scores if asked).
        """
        u_all = self.user_index(np.atleast_1d(user_ids))
        n_items = len(self.item_ids)
        k = int(min(k, n_items))
        if k < 1:
            raise ValueError("k must be at least 1")
        total, by_topic = self._mass[split]
        m = self.interest_exposure
        pop = self.item_popularity * self.available(split)
        topic_mass = by_topic[self.item_topic]
        per_topic = np.divide(pop, topic_mass, out=np.zeros(n_items), where=topic_mass > 0)
        base = self.base_logit + self.item_quality
        out_ids = np.empty((len(u_all), k), dtype=np.int64)
        out_scores = np.empty((len(u_all), k))
        batch = max(1, max_cells // n_items)
        for start in range(0, len(u_all), batch):
            u = u_all[start:start + batch]
            interest = self._dense_interest(u)[:, self.item_topic]  # (B, I): theta_u[t_i]
            exposure = pop * (1 - m) / total + m * interest * per_topic
            logit = base + self.affinity_weight * interest / self._user_max[u][:, None]
            click = sum(p * sigmoid(logit + e) for p, e in zip(self.position_probs, self.position_effects))
            score = exposure * click
            part = np.argpartition(-score, k - 1, axis=1)[:, :k] if k < n_items else np.tile(np.arange(n_items), (len(u), 1))
            part_scores = np.take_along_axis(score, part, axis=1)
            order = np.argsort(-part_scores, axis=1, kind="stable")
            out_ids[start:start + len(u)] = self.item_ids[np.take_along_axis(part, order, axis=1)]
            out_scores[start:start + len(u)] = np.take_along_axis(part_scores, order, axis=1)
        return (out_ids, out_scores) if return_scores else out_ids
