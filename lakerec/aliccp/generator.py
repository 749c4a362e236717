"""Synthetic Ali-CCP raw files with a planted truth (see ../../shared/aliccp-format.md).

`generate(out_dir, ...)` writes, per split, `sample_skeleton_{split}.csv` and
`common_features_{split}.csv` byte-compatible with the published files, plus `oracle/`:
the latent truth (`oracle.npz`, `oracle.json`, read back by `lakerec.aliccp.oracle.Oracle`)
and, always, `malformed.json`: per split and file, how many lines ingest should quarantine
for each reason (planted malformed lines and the natural conversion-without-click rows).

The world (what `oracle.py` documents): K topics; users with sparse interests; items with a
topic, a Zipf-like popularity and a fixed side (category, shop, brand, 3-14 intentions, all
drawn from their topic's own vocabulary); impressions drawn from popularity, mildly tilted
to the user's topics; clicks driven by user-item affinity and position. A user's session
line carries a behaviour history drawn from a stable per-user pool of items of their topics,
so the history fields (and the cross fields 508/509/702/853 derived from them) carry signal.

Randomness: the truth comes from `seed` alone (with users, items, topics); each split has
its own stream and each block of sessions its own child stream, so a seed gives the same
bytes every time and the test split is the same whether train is generated or not.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lakerec.aliccp import reasons as R
from lakerec.aliccp.fields import (
    BY_CODE, COMMON, FEATURE_SEP, FIELD_SEP, SKELETON, VALUE_SEP, fields_of,
)
from lakerec.aliccp.oracle import JSON_NAME, Oracle, sigmoid
from lakerec.errors import LakeRecError

log = logging.getLogger("lakerec.generate")

SPLITS = ("train", "test")
SPLIT_CODES = {"train": 1, "test": 2}
FILE_NAMES = {SKELETON: "sample_skeleton_{split}.csv", COMMON: "common_features_{split}.csv"}
MALFORMED_NAME = "malformed.json"
MALFORMED_LINES_NAME = "malformed_lines.json"

# Each field's ids live in their own range of one global id space: code -> (first id, span).
# The spans bound the vocabulary sizes; the layout echoes the published files (gender ids
# around 3438768, item ids 4e6..8.3e6, position 9351665..).
ID_RANGES: dict[str, tuple[int, int]] = {
    "101": (100_000, 2_900_000),
    "109_14": (3_000_000, 10_000),
    "508": (3_010_000, 10_000),
    "150_14": (3_100_000, 150_000),
    "853": (3_250_000, 150_000),
    "121": (3_438_600, 100),
    "122": (3_438_700, 20),
    "124": (3_438_767, 3),
    "125": (3_438_770, 10),
    "126": (3_438_780, 4),
    "127": (3_438_784, 4),
    "128": (3_438_788, 3),
    "129": (3_438_791, 5),
    "206": (3_440_000, 10_000),
    "210": (3_500_000, 150_000),
    "216": (3_700_000, 250_000),
    "205": (4_000_000, 4_300_000),
    "127_14": (8_300_000, 250_000),
    "702": (8_550_000, 250_000),
    "301": (9_351_665, 4),
    "207": (10_000_000, 700_000),
    "110_14": (10_700_000, 700_000),
    "509": (11_400_000, 700_000),
}
MAX_USERS = ID_RANGES["101"][1]
MAX_ITEMS = ID_RANGES["205"][1]
PROFILE_CODES = tuple(f.code for f in fields_of(COMMON) if not f.multi and f.code != "101")
SESSIONS_PER_BLOCK = 1000  # part of the byte-level determinism: do not change casually

DEFAULT_IMPRESSIONS = 200_000
DEFAULT_USERS = 2_000
DEFAULT_ITEMS = 10_000
DEFAULT_SEED = 42


@dataclass(frozen=True)
class GeneratorParams:
    """Knobs of the generative model (defaults give the published rates)."""

    topics: int = 32
    session_min: int = 20  # impressions per session (one common line each)
    session_max: int = 60
    cold_user_share: float = 0.05  # users and items that appear only in the test split
    cold_item_share: float = 0.05
    popularity_exponent: float = 1.2  # pi ~ 1 / (rank + offset) ** exponent
    popularity_offset: float = 20.0
    interest_exposure: float = 0.3  # share of impressions drawn from the user's topics
    affinity_weight: float = 3.0  # click logit per unit of affinity
    quality_sd: float = 0.5
    position_probs: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    position_effects: tuple[float, ...] = (0.0, -0.3, -0.6, -0.9)
    click_rate: float = 0.039
    conversion_rate_of_clicks: float = 0.0055
    conversion_without_click_rate: float = 1e-5
    history_min: int = 40  # items behind one session's history lines
    history_max: int = 100
    history_pool: int = 256  # a user's stable pool of past items
    history_noise: float = 0.1  # share of pool items drawn from global popularity
    history_max_ids: int = 40  # ids kept per history field (by count)
    decayed_weight_share: float = 0.1  # history weights that are the log of a non-integer
    calibration_draws: int = 200_000


# ---- small pure pieces ----------------------------------------------------------------------


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (seed, key): truth (0,), split (code,), block (code, 1, b)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def blocks(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a vocabulary of n ids into k contiguous blocks: (starts, sizes)."""
    sizes = np.full(k, n // k, dtype=np.int64) + (np.arange(k) < n % k)
    return np.cumsum(sizes) - sizes, sizes


def zipf_popularity(n: int, exponent: float, offset: float, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed popularity over n items, normalised; the ranks are a random permutation."""
    rank = rng.permutation(n)
    pop = 1.0 / (rank + offset) ** exponent
    return pop / pop.sum()


def format_weight(w: float) -> str:
    """A VALUE as the published files print it: 5 decimals (`0.69315`), `1.0` for plain ids."""
    return f"{w:.5f}"


def ln_count_weights(counts: np.ndarray, decayed: np.ndarray, decay: np.ndarray) -> list[str]:
    """History weights: ln(1 + count), or ln(1 + count * decay) (a non-integer) where `decayed`."""
    cache = [format_weight(math.log1p(c)) for c in range(int(counts.max(initial=0)) + 1)]
    out = [cache[c] for c in counts.tolist()]
    for j in np.flatnonzero(decayed).tolist():
        out[j] = format_weight(math.log1p(counts[j] * decay[j]))
    return out


def token(code: str, feature_id: int, value: str = "1.0") -> str:
    return f"{code}{FIELD_SEP}{feature_id}{VALUE_SEP}{value}"


def tokens(code: str, ids: np.ndarray, values: list[str] | None = None) -> list[str]:
    head = f"{code}{FIELD_SEP}"
    if values is None:
        return [f"{head}{i}{VALUE_SEP}1.0" for i in ids.tolist()]
    return [f"{head}{i}{VALUE_SEP}{v}" for i, v in zip(ids.tolist(), values)]


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


def join_lines(row_of_token: np.ndarray, toks: np.ndarray, n_rows: int, rng: np.random.Generator):
    """Shuffle each row's tokens (feature order is arbitrary) and join them with \\x01.

    Returns (feature_list per row, feature_num per row).
    """
    order = np.lexsort((rng.random(len(toks)), row_of_token))
    flat = toks[order].tolist()
    counts = np.bincount(row_of_token, minlength=n_rows)
    ends = np.cumsum(counts)
    starts = (ends - counts).tolist()
    return [FEATURE_SEP.join(flat[a:b]) for a, b in zip(starts, ends.tolist())], counts


def hash_uniform(seed: int, a: np.ndarray, b: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers that are a fixed function of (seed, a, b, stream) (splitmix64).

    A user's history pool is `pool[u, j]` for any j without storing pools for all users.
    """
    mask = (1 << 64) - 1
    start = np.uint64((seed * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03) & mask)
    x = a.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9) + b.astype(np.uint64) * np.uint64(0x94D049BB133111EB) + start
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def hex_keys(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct 16-character lowercase hex common_feature_index values."""
    keys = np.unique(rng.integers(0, 2**64, n, dtype=np.uint64))
    while len(keys) < n:  # a collision among 2**64 values: draw the missing ones again
        keys = np.unique(np.concatenate([keys, rng.integers(0, 2**64, n - len(keys), dtype=np.uint64)]))
    rng.shuffle(keys)
    return [f"{k:016x}" for k in keys.tolist()]


# ---- the latent truth -----------------------------------------------------------------------


@dataclass
class Truth:
    """The generated universe: an Oracle plus the index-level arrays the writer needs."""

    oracle: Oracle
    seed: int
    vocab: dict[str, int]  # categories, shops, brands, intentions
    item_category: np.ndarray  # vocabulary indices (raw id = range start + index)
    item_shop: np.ndarray
    item_brand: np.ndarray  # -1: no brand
    intent_ptr: np.ndarray
    intent_idx: np.ndarray
    user_profile: np.ndarray  # (U, len(PROFILE_CODES)) value index, -1: absent
    history_sampler: "Exposure"


class Exposure:
    """Samples items from the propensity P(i | u) of oracle.py, over the available items."""

    def __init__(self, oracle: Oracle, available: np.ndarray, mix: float):
        self.oracle = oracle
        self.mix = mix
        self.items = np.flatnonzero(available)
        pop = oracle.item_popularity[self.items]
        self.global_cdf = np.cumsum(pop) / pop.sum()
        by_topic = np.argsort(oracle.item_topic[self.items], kind="stable")
        self.topic_items = self.items[by_topic]
        topics = oracle.item_topic[self.topic_items]
        self.topic_cum = np.cumsum(oracle.item_popularity[self.topic_items])
        k = oracle.n_topics
        self.seg_start = np.searchsorted(topics, np.arange(k), side="left")
        self.seg_end = np.searchsorted(topics, np.arange(k), side="right")
        if np.any(self.seg_end == self.seg_start):
            raise LakeRecError("a topic has no available items: use more --items or fewer --topics")
        before = np.concatenate([[0.0], self.topic_cum])
        self.seg_base = before[self.seg_start]
        self.seg_mass = before[self.seg_end] - self.seg_base
        weights = oracle.user_topic_weights
        self.user_cum = np.cumsum(weights, axis=1)
        self.user_cum[:, -1] = 1.0
        self.user_slots = (weights > 0).sum(axis=1)

    def sample_with(self, users: np.ndarray, r_mix: np.ndarray, r_topic: np.ndarray, r_item: np.ndarray) -> np.ndarray:
        """Item indices for user indices, from three uniforms per draw."""
        out = self.items[np.minimum(np.searchsorted(self.global_cdf, r_item, side="right"), len(self.items) - 1)]
        topical = r_mix < self.mix
        if np.any(topical):
            u = users[topical]
            cum = self.user_cum[u]
            slot = (r_topic[topical][:, None] > cum[:, :-1]).sum(axis=1)
            slot = np.minimum(slot, self.user_slots[u] - 1)
            topic = self.oracle.user_topics[u, slot]
            target = self.seg_base[topic] + r_item[topical] * self.seg_mass[topic]
            pos = np.searchsorted(self.topic_cum, target, side="right")
            pos = np.clip(pos, self.seg_start[topic], self.seg_end[topic] - 1)
            out[topical] = self.topic_items[pos]
        return out

    def sample(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        n = len(users)
        return self.sample_with(users, rng.random(n), rng.random(n), rng.random(n))


def vocab_sizes(n_items: int, topics: int) -> dict[str, int]:
    """Vocabulary sizes scaled to the catalogue, inside each field's id span."""
    return {
        "categories": int(np.clip(n_items // 8, 4 * topics, ID_RANGES["206"][1])),
        "shops": int(np.clip(n_items // 5, topics, ID_RANGES["207"][1])),
        "brands": int(np.clip(n_items // 10, topics, ID_RANGES["216"][1])),
        "intentions": int(np.clip(n_items // 3, 4 * topics, ID_RANGES["210"][1])),
    }


def _within_topic(rng, topic, starts, sizes, skew):
    """A vocabulary index inside each topic's block, skewed to the block's head."""
    return starts[topic] + np.minimum((sizes[topic] * rng.random(len(topic)) ** skew).astype(np.int64), sizes[topic] - 1)


def _item_intentions(rng, item_topic, starts, sizes, vocab):
    """3-14 distinct intentions per item from its topic's block: CSR (ptr, indices)."""
    n = len(item_topic)
    wanted = np.clip(3 + rng.poisson(3.0, n), 3, 14)
    owner = np.repeat(np.arange(n), wanted)
    vals = _within_topic(rng, item_topic[owner], starts, sizes, 1.5)
    for _ in range(30):  # redraw duplicates inside one item's list
        key = owner * vocab + vals
        order = np.argsort(key, kind="stable")
        dup = order[1:][key[order][1:] == key[order][:-1]]
        if len(dup) == 0:
            break
        vals[dup] = _within_topic(rng, item_topic[owner[dup]], starts, sizes, 1.0)
    keys = np.unique(owner * vocab + vals)  # drops any duplicate left (tiny vocabularies)
    owner, vals = keys // vocab, keys % vocab
    ptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))])
    return ptr, vals


def _calibrate(oracle: Oracle, exposure: Exposure, rng: np.random.Generator, users: np.ndarray,
               activity: np.ndarray, params: GeneratorParams) -> tuple[float, float]:
    """Base logit and conversion scale that give the target rates on a sample of train impressions."""
    n = params.calibration_draws
    u = users[np.searchsorted(np.cumsum(activity) / activity.sum(), rng.random(n), side="right").clip(0, len(users) - 1)]
    i = exposure.sample(rng, u)
    pos = rng.choice(len(params.position_probs), n, p=params.position_probs)
    aff = oracle.affinity_idx(u, i)
    rest = params.affinity_weight * aff + np.asarray(params.position_effects)[pos] + oracle.item_quality[i]
    lo, hi = -30.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sigmoid(mid + rest).mean() < params.click_rate else (lo, mid)
    base = (lo + hi) / 2
    p = sigmoid(base + rest)
    scale = params.conversion_rate_of_clicks * p.sum() / (p * (0.5 + aff)).sum()
    return float(base), float(scale)


def build_truth(seed: int, n_users: int, n_items: int, params: GeneratorParams = GeneratorParams()) -> Truth:
    """The latent universe for a seed: users, items, their topics and sides, and calibration."""
    rng = rng_for(seed, 0)
    k = int(min(params.topics, n_items))
    topic_share = rng.dirichlet(np.full(k, 3.0))
    vocab = vocab_sizes(n_items, k)

    # Items: topic, popularity, quality, side (category, shop, brand, intentions).
    item_topic = rng.choice(k, n_items, p=topic_share)
    item_topic[:k] = np.arange(k)  # every topic has an item; these are never cold
    pop = zipf_popularity(n_items, params.popularity_exponent, params.popularity_offset, rng)
    quality = rng.normal(0.0, params.quality_sd, n_items)
    cat_s, cat_n = blocks(vocab["categories"], k)
    shop_s, shop_n = blocks(vocab["shops"], k)
    brand_s, brand_n = blocks(vocab["brands"], k)
    int_s, int_n = blocks(vocab["intentions"], k)
    item_category = _within_topic(rng, item_topic, cat_s, cat_n, 1.5)
    item_shop = _within_topic(rng, item_topic, shop_s, shop_n, 1.5)
    item_brand = _within_topic(rng, item_topic, brand_s, brand_n, 1.5)
    item_brand[rng.random(n_items) < BY_CODE["216"].missing_rate] = -1
    intent_ptr, intent_idx = _item_intentions(rng, item_topic, int_s, int_n, vocab["intentions"])
    n_cold_items = int(round(n_items * params.cold_item_share)) if n_items > k else 0
    cold_item = np.zeros(n_items, dtype=bool)
    cold_item[k + rng.choice(n_items - k, min(n_cold_items, n_items - k), replace=False)] = True

    # Users: 1-3 interest topics (by topic share), activity, profile fields tied to the main topic.
    n_top = np.minimum(rng.choice([1, 2, 3], n_users, p=[0.45, 0.35, 0.2]), k)
    user_topics = np.empty((n_users, 3), dtype=np.int64)
    for a in range(0, n_users, 100_000):  # Gumbel top-3: topics without replacement, by share
        g = np.log(topic_share)[None, :] + rng.gumbel(size=(min(100_000, n_users - a), k))
        top = np.argsort(-g, axis=1)[:, :3]
        if top.shape[1] < 3:
            top = np.pad(top, ((0, 0), (0, 3 - top.shape[1])), mode="edge")
        user_topics[a:a + len(g)] = top
    weights = rng.gamma(1.0, size=(n_users, 3))
    weights[np.arange(3)[None, :] >= n_top[:, None]] = 0.0
    order = np.argsort(-weights, axis=1, kind="stable")
    weights = np.take_along_axis(weights, order, axis=1)
    user_topics = np.take_along_axis(user_topics, order, axis=1)
    weights /= weights.sum(axis=1, keepdims=True)
    activity = rng.lognormal(0.0, 0.8, n_users)
    cold_user = np.zeros(n_users, dtype=bool)
    if n_users > 1:
        cold_user[rng.choice(n_users, int(round(n_users * params.cold_user_share)), replace=False)] = True
    main = user_topics[:, 0]
    base_missing = BY_CODE["121"].missing_rate
    no_profile = rng.random(n_users) < base_missing
    user_profile = np.empty((n_users, len(PROFILE_CODES)), dtype=np.int64)
    for c, code in enumerate(PROFILE_CODES):
        f = BY_CODE[code]
        cdf = np.cumsum(rng.dirichlet(np.full(f.cardinality, 0.5), size=k), axis=1)
        u = rng.random(n_users)
        value = np.empty(n_users, dtype=np.int64)
        for t in range(k):
            who = main == t
            value[who] = np.minimum(np.searchsorted(cdf[t], u[who], side="right"), f.cardinality - 1)
        extra = max(0.0, (f.missing_rate - base_missing) / (1 - base_missing))
        value[no_profile | (rng.random(n_users) < extra)] = -1
        user_profile[:, c] = value

    user_ids = ID_RANGES["101"][0] + rng.choice(ID_RANGES["101"][1], n_users, replace=False)
    item_ids = ID_RANGES["205"][0] + rng.choice(ID_RANGES["205"][1], n_items, replace=False)
    profile_ids = np.where(user_profile >= 0, user_profile + np.array([ID_RANGES[c][0] for c in PROFILE_CODES]), 0)
    arrays = {
        "user_ids": user_ids, "user_topics": user_topics, "user_topic_weights": weights,
        "user_activity": activity, "cold_user": cold_user, "user_profile_ids": profile_ids,
        "item_ids": item_ids, "item_topic": item_topic, "item_popularity": pop, "item_quality": quality,
        "cold_item": cold_item,
        "item_category_ids": ID_RANGES["206"][0] + item_category,
        "item_shop_ids": ID_RANGES["207"][0] + item_shop,
        "item_brand_ids": np.where(item_brand >= 0, ID_RANGES["216"][0] + item_brand, 0),
        "item_intention_ptr": intent_ptr, "item_intention_ids": ID_RANGES["210"][0] + intent_idx,
        "position_ids": ID_RANGES["301"][0] + np.arange(len(params.position_probs)),
        "position_probs": np.asarray(params.position_probs, dtype=float),
        "position_effects": np.asarray(params.position_effects, dtype=float),
    }
    model = {**asdict(params), "topics": k, "base_logit": 0.0, "conversion_scale": 0.0}
    oracle = Oracle(arrays, model)
    train_exposure = Exposure(oracle, oracle.available("train"), params.interest_exposure)
    warm = np.flatnonzero(~cold_user)
    base, scale = _calibrate(oracle, train_exposure, rng_for(seed, 0, 1), warm, activity[warm], params)
    oracle.base_logit, oracle.conversion_scale = base, scale
    oracle.params.update(base_logit=base, conversion_scale=scale)
    history = Exposure(oracle, np.ones(n_items, dtype=bool), 1.0 - params.history_noise)
    return Truth(oracle, seed, vocab, item_category, item_shop, item_brand, intent_ptr, intent_idx, user_profile, history)


# ---- malformed lines ------------------------------------------------------------------------

# (file, reason) in the order they are planted: the first twelve cover every required reason.
MALFORMED_KINDS: tuple[tuple[str, str], ...] = (
    (SKELETON, R.EMPTY_LINE), (COMMON, R.WRONG_COLUMN_COUNT), (SKELETON, R.BAD_SAMPLE_ID),
    (SKELETON, R.BAD_LABEL), (COMMON, R.BAD_FEATURE_NUM), (SKELETON, R.FEATURE_NUM_MISMATCH),
    (COMMON, R.FEATURE_WITHOUT_SEPARATORS), (SKELETON, R.NON_NUMERIC_FEATURE_ID), (COMMON, R.NON_NUMERIC_VALUE),
    (SKELETON, R.REPEATED_SINGLE_VALUED_FIELD), (SKELETON, R.UNKNOWN_COMMON_FEATURE_INDEX),
    (COMMON, R.DUPLICATE_COMMON_FEATURE_INDEX),
    (COMMON, R.EMPTY_LINE), (SKELETON, R.WRONG_COLUMN_COUNT), (SKELETON, R.BAD_COMMON_FEATURE_INDEX),
    (COMMON, R.BAD_COMMON_FEATURE_INDEX), (SKELETON, R.BAD_FEATURE_NUM), (COMMON, R.FEATURE_NUM_MISMATCH),
    (SKELETON, R.FEATURE_WITHOUT_SEPARATORS), (COMMON, R.NON_NUMERIC_FEATURE_ID), (SKELETON, R.NON_NUMERIC_VALUE),
    (COMMON, R.REPEATED_SINGLE_VALUED_FIELD),
)


def corrupt(kind: str, file: str, cols: list[str], feats: list[str], rng: np.random.Generator) -> str:
    """One bad line from a valid one's columns and features, breaking exactly one rule.

    `cols` are the columns before feature_num (skeleton: sample_id, click, conversion, key;
    common: key). Every other part stays valid, so ingest assigns exactly `kind`.
    """
    cols, feats = list(cols), list(feats)
    key_col = 3 if file == SKELETON else 0
    variant = int(rng.integers(0, 4))
    num = None  # feature_num text; None: the true count
    if kind == R.EMPTY_LINE:
        return ""
    if kind == R.WRONG_COLUMN_COUNT:
        line = ",".join(cols + [str(len(feats)), FEATURE_SEP.join(feats)])
        return line + ",1" if variant % 2 else ",".join(cols + [str(len(feats))])
    if kind == R.BAD_SAMPLE_ID:
        cols[0] = ("abc", f"-{cols[0]}", f"{cols[0]}.5", "")[variant]
    elif kind == R.BAD_LABEL:
        cols[1 + variant % 2] = ("2", "x", "-1", "")[variant]
    elif kind == R.BAD_COMMON_FEATURE_INDEX:
        cols[key_col] = ("", "nothex" + cols[key_col][6:], "key-" + cols[key_col][4:], "zz")[variant]
    elif kind == R.BAD_FEATURE_NUM:
        num = ("x", "-1", "", "2.5")[variant]
    elif kind == R.FEATURE_NUM_MISMATCH:
        num = str(len(feats) + (1, -1, 2, 5)[variant])
    elif kind in (R.FEATURE_WITHOUT_SEPARATORS, R.NON_NUMERIC_FEATURE_ID, R.NON_NUMERIC_VALUE):
        j = int(rng.integers(0, len(feats)))
        code, rest = feats[j].split(FIELD_SEP)
        fid, value = rest.split(VALUE_SEP)
        if kind == R.FEATURE_WITHOUT_SEPARATORS:
            feats[j] = f"{code}{fid}{value}" if variant % 2 else f"{code}{FIELD_SEP}{fid}"
        elif kind == R.NON_NUMERIC_FEATURE_ID:
            feats[j] = token(code, ("id" + fid, fid + "x", "abc", "1e5")[variant], value)
        else:
            feats[j] = token(code, int(fid), ("abc", "1.0.0", "one", "0.5x")[variant])
    elif kind == R.REPEATED_SINGLE_VALUED_FIELD:
        code = "205" if file == SKELETON else "101"
        first = next(f for f in feats if f.startswith(code + FIELD_SEP))
        other = int(first.split(FIELD_SEP)[1].split(VALUE_SEP)[0]) + 1
        feats.insert(int(rng.integers(0, len(feats) + 1)), token(code, other))
    elif kind != R.UNKNOWN_COMMON_FEATURE_INDEX:
        raise ValueError(f"cannot plant {kind!r} in the {file} file")
    return ",".join(cols + [str(len(feats)) if num is None else num, FEATURE_SEP.join(feats)])


@dataclass
class Planted:
    boundary: int  # inserted after this many valid lines of its file
    kind: str
    line: str | None  # None: a duplicate of common line `original`, filled in when written
    original: int = -1


def plan_malformed(truth: Truth, n: int, n_rows: int, session_ends: np.ndarray, keys: list[str],
                   fresh_keys: list[str], available_items: np.ndarray, rng: np.random.Generator):
    """Where and what the n planted lines of one split are: (skeleton plan, common plan)."""
    kinds = [MALFORMED_KINDS[j % len(MALFORMED_KINDS)] for j in range(n)]
    n_sessions = len(keys)
    # Between two sessions (so each key's rows stay adjacent), never first or last.
    row_cuts = session_ends[:-1] if n_sessions > 1 else np.arange(1, max(n_rows, 2))
    fresh = iter(fresh_keys)
    skeleton, common = [], []
    next_sample_id = n_rows + 1
    warm_users = np.flatnonzero(~truth.oracle.cold_user) if np.any(~truth.oracle.cold_user) else np.arange(1)
    for file, kind in kinds:
        if file == SKELETON:
            b = int(row_cuts[rng.integers(0, len(row_cuts))])
            session = int(np.searchsorted(session_ends, b, side="left"))  # the session just before
            key = next(fresh) if kind == R.UNKNOWN_COMMON_FEATURE_INDEX else keys[min(session, n_sessions - 1)]
            item = int(available_items[rng.integers(0, len(available_items))])
            position = int(truth.oracle.position_ids[rng.integers(0, len(truth.oracle.position_ids))])
            feats = item_tokens(truth, np.array([item]))[0] + [token("301", position)]
            rng.shuffle(feats)
            cols = [str(next_sample_id), "0", "0", key]
            next_sample_id += 1
            skeleton.append(Planted(b, kind, corrupt(kind, SKELETON, cols, feats, rng)))
        else:
            b = int(rng.integers(1, n_sessions)) if n_sessions > 1 else 1
            if kind == R.DUPLICATE_COMMON_FEATURE_INDEX:
                common.append(Planted(b, kind, None, int(rng.integers(0, b))))
                continue
            user = int(warm_users[rng.integers(0, len(warm_users))])
            feats = profile_tokens(truth, np.array([user]), np.array([False]))[0]
            cats = np.unique(truth.item_category[rng.integers(0, len(truth.item_category), 5)])
            weights = [format_weight(math.log1p(c)) for c in range(1, len(cats) + 1)]
            feats += tokens("109_14", ID_RANGES["109_14"][0] + cats, weights)
            rng.shuffle(feats)
            common.append(Planted(b, kind, corrupt(kind, COMMON, [next(fresh)], feats, rng)))
    skeleton.sort(key=lambda p: p.boundary)
    common.sort(key=lambda p: p.boundary)
    return skeleton, common


# ---- building lines -------------------------------------------------------------------------


def item_tokens(truth: Truth, items: np.ndarray) -> list[list[str]]:
    """The item side (205, 206, 207, 216, 210...) of each item, as feature tokens."""
    o = truth.oracle
    rows, flat = explode_csr(truth.intent_ptr, items)
    out = [[token("205", a), token("206", b), token("207", c)] for a, b, c in
           zip(o.item_ids[items].tolist(), o.item_category_ids[items].tolist(), o.item_shop_ids[items].tolist())]
    for j, brand in enumerate(o.item_brand_ids[items].tolist()):
        if brand:
            out[j].append(token("216", brand))
    for j, t in zip(rows.tolist(), tokens("210", o.item_intention_ids[flat])):
        out[j].append(t)
    return out


def profile_tokens(truth: Truth, users: np.ndarray, no_user_id: np.ndarray) -> list[list[str]]:
    """The user's single-valued fields (101, 121..129) present on a line, as tokens."""
    o = truth.oracle
    out = [[] if miss else [token("101", uid)] for uid, miss in zip(o.user_ids[users].tolist(), no_user_id.tolist())]
    for c, code in enumerate(PROFILE_CODES):
        ids = o.user_profile_ids[users, c]
        for j in np.flatnonzero(ids).tolist():
            out[j].append(token(code, int(ids[j])))
    return out


@dataclass
class History:
    """One block's session histories for a field: sorted lookup keys and weight strings."""

    code: str
    vocab: int
    session: np.ndarray
    ids: np.ndarray  # vocabulary indices
    weights: list[str]

    @property
    def keys(self) -> np.ndarray:
        return self.session * self.vocab + self.ids

    def lookup(self, session: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, position) of (session, id) pairs in this history."""
        keys = self.keys
        q = session.astype(np.int64) * self.vocab + ids
        pos = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
        found = (keys[pos] == q) if len(keys) else np.zeros(len(q), dtype=bool)
        return found, pos


def session_histories(truth: Truth, users: np.ndarray, rng: np.random.Generator, params: GeneratorParams) -> list[History]:
    """Each session's 14-day history: items drawn from the user's stable pool, counted per field."""
    n = len(users)
    h = rng.integers(params.history_min, params.history_max + 1, n)
    sess = np.repeat(np.arange(n), h)
    u = users[sess]
    slot = (params.history_pool * rng.random(len(sess)) ** 1.5).astype(np.int64)  # favourites recur
    items = truth.history_sampler.sample_with(
        u, *(hash_uniform(truth.seed, u, slot, s) for s in (1, 2, 3))
    )
    v = truth.vocab
    parts = [("109_14", sess, truth.item_category[items], v["categories"]),
             ("110_14", sess, truth.item_shop[items], v["shops"])]
    has_brand = truth.item_brand[items] >= 0
    parts.append(("127_14", sess[has_brand], truth.item_brand[items][has_brand], v["brands"]))
    rows, flat = explode_csr(truth.intent_ptr, items)
    parts.append(("150_14", sess[rows], truth.intent_idx[flat], v["intentions"]))
    out = []
    for code, s, ids, vocab in parts:
        g, i, c = count_per_group(s, ids, vocab, params.history_max_ids, rng)
        decayed = rng.random(len(c)) < params.decayed_weight_share
        weights = ln_count_weights(c, decayed, rng.uniform(0.3, 0.95, len(c)))
        out.append(History(code, vocab, g, i, weights))
    return out


def cross_presence(found: np.ndarray, eligible: np.ndarray, target: float, rng: np.random.Generator):
    """Which rows carry a cross feature: matches first, thinned or topped up to the target rate.

    A cross field (508/509/702/853) is the impressed item's category/shop/brand/intentions
    seen in the user's history; the published files carry it in a share of rows that a
    scaled-down history cannot reach by matching alone, so unmatched rows are filled at
    random (with a small count) to hit the published missing rate.

    Returns (present, filled): filled rows are present without a history match.
    """
    n = len(found)
    want = target * n
    n_found = found.sum()
    if n_found >= want:
        keep = found & (rng.random(n) < (want / n_found if n_found else 0.0))
        return keep, np.zeros(n, dtype=bool)
    pool = eligible & ~found
    fill = pool & (rng.random(n) < min(1.0, (want - n_found) / max(pool.sum(), 1)))
    return found | fill, fill


def build_block(truth: Truth, exposure: Exposure, params: GeneratorParams, users: np.ndarray, lengths: np.ndarray,
                keys: list[str], first_sample_id: int, forced_cwc: np.ndarray, rng: np.random.Generator):
    """Common lines and skeleton lines of one block of sessions (without line ends).

    Returns (common lines, skeleton lines, stats dict).
    """
    o = truth.oracle
    n_sessions = len(users)
    n = int(lengths.sum())
    row_sess = np.repeat(np.arange(n_sessions), lengths)
    row_user = users[row_sess]

    # Impressions, clicks, conversions.
    items = exposure.sample(rng, row_user)
    pos = rng.choice(len(params.position_probs), n, p=params.position_probs)
    click = rng.random(n) < o.click_probability_idx(row_user, items, pos)
    conv = click & (rng.random(n) < o.conversion_given_click_idx(row_user, items))
    click[forced_cwc] = False
    conv[forced_cwc] = True

    # Common lines: profile fields + weighted histories.
    no_user_id = rng.random(n_sessions) < BY_CODE["101"].missing_rate
    profile = profile_tokens(truth, users, no_user_id)
    hists = session_histories(truth, users, rng, params)
    c_rows = [np.repeat(np.arange(n_sessions), [len(p) for p in profile])]
    c_toks = [np.array([t for p in profile for t in p], dtype=object)]
    for hist in hists:
        c_rows.append(hist.session)
        c_toks.append(np.array(tokens(hist.code, ID_RANGES[hist.code][0] + hist.ids, hist.weights), dtype=object))
    c_lists, c_nums = join_lines(np.concatenate(c_rows), np.concatenate(c_toks), n_sessions, rng)
    common = [f"{k},{m},{fl}" for k, m, fl in zip(keys, c_nums.tolist(), c_lists)]

    # Skeleton: item side (per distinct item), position, cross features.
    uniq, inv = np.unique(items, return_inverse=True)
    side = item_tokens(truth, uniq)
    side_ptr = np.concatenate([[0], np.cumsum([len(s) for s in side])])
    side_flat = np.array([t for s in side for t in s], dtype=object)
    r_item, f_item = explode_csr(side_ptr, inv)
    s_rows, s_toks = [r_item], [side_flat[f_item]]
    pos_tok = np.array([token("301", int(p)) for p in o.position_ids], dtype=object)
    s_rows.append(np.arange(n))
    s_toks.append(pos_tok[pos])
    by_code = {h.code: h for h in hists}
    fill_weight = [format_weight(math.log1p(c)) for c in range(1, 4)]
    presence = {}
    for code, hist_code, idx, eligible in (
        ("508", "109_14", truth.item_category[items], np.ones(n, dtype=bool)),
        ("509", "110_14", truth.item_shop[items], np.ones(n, dtype=bool)),
        ("702", "127_14", np.maximum(truth.item_brand[items], 0), truth.item_brand[items] >= 0),
    ):
        hist = by_code[hist_code]
        found, at = hist.lookup(row_sess, idx)
        found &= eligible
        present, filled = cross_presence(found, eligible, 1 - BY_CODE[code].missing_rate, rng)
        rows = np.flatnonzero(present)
        fill_pick = rng.integers(0, len(fill_weight), len(rows))
        weights = [fill_weight[f] if fl else hist.weights[a]
                   for a, fl, f in zip(at[rows].tolist(), filled[rows].tolist(), fill_pick.tolist())]
        s_rows.append(rows)
        s_toks.append(np.array(tokens(code, ID_RANGES[code][0] + idx[rows], weights), dtype=object))
        presence[code] = len(rows)
    # 853: every impressed intention found in the history (multi), or one filled at random.
    hist = by_code["150_14"]
    pair_row, flat = explode_csr(truth.intent_ptr, items)
    pair_int = truth.intent_idx[flat]
    found, at = hist.lookup(row_sess[pair_row], pair_int)
    row_found = np.bincount(pair_row[found], minlength=n) > 0
    present, filled = cross_presence(row_found, np.ones(n, dtype=bool), 1 - BY_CODE["853"].missing_rate, rng)
    keep_pairs = found & present[pair_row] & ~filled[pair_row]
    first_pair = np.searchsorted(pair_row, np.flatnonzero(filled))  # an item's first intention
    rows = np.concatenate([pair_row[keep_pairs], pair_row[first_pair]])
    ids = np.concatenate([pair_int[keep_pairs], pair_int[first_pair]])
    weights = [hist.weights[a] for a in at[keep_pairs].tolist()] + [fill_weight[0]] * len(first_pair)
    s_rows.append(rows)
    s_toks.append(np.array(tokens("853", ID_RANGES["853"][0] + ids, weights), dtype=object))
    presence["853"] = int(present.sum())
    s_lists, s_nums = join_lines(np.concatenate(s_rows), np.concatenate(s_toks), n, rng)
    row_keys = [keys[s] for s in row_sess.tolist()]
    sample_ids = range(first_sample_id, first_sample_id + n)
    labels = zip(click.view(np.int8).tolist(), conv.view(np.int8).tolist())
    skeleton = [f"{sid},{c},{v},{k},{m},{fl}"
                for sid, (c, v), k, m, fl in zip(sample_ids, labels, row_keys, s_nums.tolist(), s_lists)]

    stats = {
        "clicks": int(click.sum()), "conversions": int(conv.sum()),
        "conversion_without_click": int((conv & ~click).sum()),
        "items": items, "field_rows": {**presence, "216": int((truth.item_brand[items] >= 0).sum())},
        "common_field_rows": {
            "101": int((~no_user_id).sum()),
            **{code: int((o.user_profile_ids[users, c] > 0).sum()) for c, code in enumerate(PROFILE_CODES)},
        },
        "history_ids": {h.code: len(h.ids) for h in hists},
        "intention_ids": int(len(pair_int)),
    }
    return common, skeleton, stats


# ---- one split ------------------------------------------------------------------------------


def write_split(truth: Truth, params: GeneratorParams, out_dir: Path, split: str, impressions: int, malformed: int):
    """Write one split's two files; return (stats, planted lines by file)."""
    o = truth.oracle
    code = SPLIT_CODES[split]
    rng = rng_for(truth.seed, code)
    exposure = Exposure(o, o.available(split), params.interest_exposure)
    users = np.flatnonzero(~o.cold_user) if split == "train" and np.any(~o.cold_user) else np.arange(len(o.user_ids))

    # Sessions: lengths that add up to the impressions, users by activity, keys.
    mean_len = (params.session_min + params.session_max) / 2
    lengths = rng.integers(params.session_min, params.session_max + 1, int(impressions / mean_len) + 2)
    while lengths.sum() < impressions:
        lengths = np.concatenate([lengths, rng.integers(params.session_min, params.session_max + 1, len(lengths))])
    ends = np.cumsum(lengths)
    n_sessions = int(np.searchsorted(ends, impressions, side="left")) + 1
    lengths = lengths[:n_sessions].copy()
    lengths[-1] -= int(ends[n_sessions - 1] - impressions)
    ends = np.cumsum(lengths)
    cdf = np.cumsum(o.user_activity[users]) / o.user_activity[users].sum()
    session_users = users[np.minimum(np.searchsorted(cdf, rng.random(n_sessions), side="right"), len(users) - 1)]
    all_keys = hex_keys(rng, n_sessions + malformed)
    keys, fresh_keys = all_keys[:n_sessions], all_keys[n_sessions:]

    # Natural funnel anomalies (click=0, conversion=1): about one per 100k rows, at least one from 10k.
    n_cwc = int(rng.binomial(impressions, params.conversion_without_click_rate))
    if impressions >= 10_000:
        n_cwc = max(n_cwc, 1)
    cwc_rows = np.sort(rng.choice(impressions, min(n_cwc, impressions), replace=False))

    planted_skel, planted_common = plan_malformed(
        truth, malformed, impressions, ends, keys, fresh_keys, exposure.items, rng_for(truth.seed, code, 2)
    )

    paths = {f: out_dir / FILE_NAMES[f].format(split=split) for f in (SKELETON, COMMON)}
    written = {SKELETON: 0, COMMON: 0}  # lines so far, valid and planted
    planted_lines = {SKELETON: [], COMMON: []}
    originals = {p.original for p in planted_common if p.line is None}
    kept_originals: dict[int, str] = {}
    stats = {"rows": impressions, "sessions": n_sessions, "clicks": 0, "conversions": 0, "conversion_without_click": 0}
    field_rows: dict[str, int] = {}
    common_field_rows: dict[str, int] = {}
    history_ids: dict[str, int] = {}
    intention_ids = 0
    item_impressions = np.zeros(len(o.item_ids), dtype=np.int64)
    started = time.monotonic()
    with open(paths[SKELETON], "w", encoding="ascii", newline="") as fs, \
            open(paths[COMMON], "w", encoding="ascii", newline="") as fc:
        for b, s0 in enumerate(range(0, n_sessions, SESSIONS_PER_BLOCK)):
            s1 = min(n_sessions, s0 + SESSIONS_PER_BLOCK)
            r0 = int(ends[s0 - 1]) if s0 else 0
            r1 = int(ends[s1 - 1])
            lo, hi = np.searchsorted(cwc_rows, [r0, r1])
            common, skeleton, st = build_block(
                truth, exposure, params, session_users[s0:s1], lengths[s0:s1], keys[s0:s1],
                r0 + 1, cwc_rows[lo:hi] - r0, rng_for(truth.seed, code, 1, b),
            )
            for j in originals.intersection(range(s0, s1)):
                kept_originals[j] = common[j - s0]
            fc.write(_with_planted(common, s0, s1, planted_common, written, COMMON, planted_lines, kept_originals))
            fs.write(_with_planted(skeleton, r0, r1, planted_skel, written, SKELETON, planted_lines, kept_originals))
            for key in ("clicks", "conversions", "conversion_without_click"):
                stats[key] += st[key]
            for acc, part in ((field_rows, st["field_rows"]), (common_field_rows, st["common_field_rows"]),
                              (history_ids, st["history_ids"])):
                for f, v in part.items():
                    acc[f] = acc.get(f, 0) + v
            intention_ids += st["intention_ids"]
            item_impressions += np.bincount(st["items"], minlength=len(o.item_ids))
            if b % 10 == 9:
                log.info("%s: %d of %d impressions (%.0f/s)", split, r1, impressions, r1 / (time.monotonic() - started))

    shown = np.sort(item_impressions[item_impressions > 0])[::-1]
    top = max(1, len(shown) // 100)
    stats.update(
        common_rows=n_sessions,
        click_rate=stats["clicks"] / impressions,
        conversion_rate_of_clicks=(stats["conversions"] - stats["conversion_without_click"]) / max(stats["clicks"], 1),
        users=int(len(np.unique(session_users))),
        cold_user_sessions=int(o.cold_user[session_users].sum()),
        items_shown=int(len(shown)),
        cold_item_impressions=int(item_impressions[o.cold_item].sum()),
        top_1pct_items_impression_share=float(shown[:top].sum() / impressions),
        items_shown_at_most_twice_share=float((shown <= 2).mean()),
        skeleton_missing_rate={f: 1 - v / impressions for f, v in sorted(field_rows.items())},
        common_missing_rate={f: 1 - v / n_sessions for f, v in sorted(common_field_rows.items())},
        history_ids_per_line={f: v / n_sessions for f, v in sorted(history_ids.items())},
        item_intentions_per_row=intention_ids / impressions,
        skeleton_lines=written[SKELETON], common_lines=written[COMMON],
        bytes={f: paths[f].stat().st_size for f in paths},
    )
    return stats, planted_lines


def _with_planted(lines: list[str], lo: int, hi: int, plan: list[Planted], written: dict, file: str,
                  planted_lines: dict, originals: dict[int, str]) -> str:
    """The block's lines joined with \\n, with the planted lines whose boundary is in (lo, hi]."""
    out: list[str] = []
    done = 0
    for p in plan:
        if not lo < p.boundary <= hi:
            continue
        out.extend(lines[done:p.boundary - lo])
        done = p.boundary - lo
        line = p.line
        if line is None:  # duplicate key: the original's features, in reverse order
            key, num, feats = originals[p.original].split(",")
            line = f"{key},{num},{FEATURE_SEP.join(reversed(feats.split(FEATURE_SEP)))}"
        out.append(line)
        planted_lines[file].append((written[file] + len(out), p.kind))
    out.extend(lines[done:])
    written[file] += len(out)
    return "".join(line + "\n" for line in out)


# ---- the whole job --------------------------------------------------------------------------


def validate(impressions: int, users: int, items: int, malformed: int, params: GeneratorParams) -> None:
    """Refuse sizes the id layout or the model cannot hold, with a message that says what to do."""
    if impressions < 1:
        raise LakeRecError(f"--impressions must be at least 1 (got {impressions})")
    if not 1 <= users <= MAX_USERS:
        raise LakeRecError(f"--users must be between 1 and {MAX_USERS:,} (got {users})")
    if not 1 <= items <= MAX_ITEMS:
        raise LakeRecError(f"--items must be between 1 and {MAX_ITEMS:,} (got {items})")
    if malformed < 0:
        raise LakeRecError(f"--malformed must be 0 or more (got {malformed})")
    if malformed and impressions < 2 * params.session_max:
        raise LakeRecError(
            f"--malformed needs at least {2 * params.session_max} impressions per split (to plant lines between sessions)"
        )
    if not 1 <= params.topics <= ID_RANGES["206"][1] // 4:
        raise LakeRecError(f"--topics must be between 1 and {ID_RANGES['206'][1] // 2} (got {params.topics})")


def generate(out_dir: str | Path, splits: tuple[str, ...] = SPLITS, impressions: int = DEFAULT_IMPRESSIONS,
             users: int = DEFAULT_USERS, items: int = DEFAULT_ITEMS, seed: int = DEFAULT_SEED, malformed: int = 0,
             params: GeneratorParams | None = None) -> dict:
    """Write synthetic Ali-CCP files for the splits, and the oracle, under out_dir.

    Args:
        out_dir: folder for `sample_skeleton_{split}.csv`, `common_features_{split}.csv`, `oracle/`.
        splits: any of "train", "test".
        impressions: skeleton rows per split.
        users, items: size of the universe (both splits draw from it; 5% of each are cold:
            test only).
        seed: the same seed gives the same bytes.
        malformed: malformed lines planted per split, spread over its two files.
        params: model knobs (GeneratorParams()).

    Returns:
        A summary: per split its stats (rows, clicks, conversions, ...), files and seconds.
    """
    params = params or GeneratorParams()
    validate(impressions, users, items, malformed, params)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise LakeRecError(f"unknown split(s) {unknown}: choose from {', '.join(SPLITS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LakeRecError(f"--out {out} exists and is not a folder")
    started = time.monotonic()
    truth = build_truth(seed, users, items, params)
    log.info("truth: %d users, %d items, %d topics; base logit %.3f",
             users, items, truth.oracle.n_topics, truth.oracle.base_logit)
    oracle_dir = out / "oracle"
    oracle_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {"out_dir": str(out), "splits": {}}
    manifest, manifest_lines = {}, {}
    for split in splits:
        t0 = time.monotonic()
        stats, planted = write_split(truth, params, out, split, impressions, malformed)
        counts = {}
        for file in (SKELETON, COMMON):
            by_reason: dict[str, int] = {}
            for _, reason in planted[file]:
                by_reason[reason] = by_reason.get(reason, 0) + 1
            counts[file] = dict(sorted(by_reason.items()))
        if stats["conversion_without_click"]:
            counts[SKELETON][R.CONVERSION_WITHOUT_CLICK] = stats["conversion_without_click"]
        manifest[split] = counts
        manifest_lines[split] = {f: [list(x) for x in planted[f]] for f in (SKELETON, COMMON)}
        stats["malformed"] = counts
        summary["splits"][split] = {**stats, "seconds": round(time.monotonic() - t0, 2),
                                    "files": {f: FILE_NAMES[f].format(split=split) for f in (SKELETON, COMMON)}}
        log.info("%s: %d rows, %d clicks, %d conversions in %.1fs", split, stats["rows"], stats["clicks"],
                 stats["conversions"], time.monotonic() - t0)

    truth.oracle.save_arrays(oracle_dir)
    doc = {
        "seed": seed, "users": users, "items": items, "topics": truth.oracle.n_topics,
        "params": asdict(params),
        "calibrated": {"base_logit": truth.oracle.base_logit, "conversion_scale": truth.oracle.conversion_scale},
        "vocab": truth.vocab,
        "id_ranges": {c: list(r) for c, r in ID_RANGES.items()},
        "profile_codes": list(PROFILE_CODES),
    }
    doc = json.loads(json.dumps(doc))  # tuples as lists, to compare with a previous run's file
    previous = _read_json(oracle_dir / JSON_NAME)
    same_world = {k: previous.get(k) for k in doc} == doc
    kept = {s: v for s, v in previous.get("splits", {}).items() if s not in splits} if same_world else {}
    stats_doc = {s: {k: v for k, v in summary["splits"][s].items() if k not in ("seconds", "files")} for s in splits}
    doc["splits"] = dict(sorted({**kept, **stats_doc}.items()))
    _write_json(oracle_dir / JSON_NAME, doc)
    old_manifest = _read_json(oracle_dir / MALFORMED_NAME) if same_world else {}
    old_lines = _read_json(oracle_dir / MALFORMED_LINES_NAME) if same_world else {}
    for name, old, new in ((MALFORMED_NAME, old_manifest, manifest), (MALFORMED_LINES_NAME, old_lines, manifest_lines)):
        _write_json(oracle_dir / name, dict(sorted({**{s: v for s, v in old.items() if s not in splits}, **new}.items())))
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["oracle"] = str(oracle_dir)
    return summary


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def format_summary(summary: dict) -> str:
    """A short table a person reads: rows per file, clicks, conversions, planted lines, time."""
    lines = [f"{'split':<6} {'skeleton rows':>14} {'common rows':>12} {'clicks':>9} {'ctr':>7} {'conversions':>12} "
             f"{'cvr/click':>10} {'planted':>8} {'secs':>7}"]
    for split, s in summary["splits"].items():
        planted = sum(v for f in s["malformed"].values() for r, v in f.items() if r != R.CONVERSION_WITHOUT_CLICK)
        lines.append(
            f"{split:<6} {s['rows']:>14,} {s['common_rows']:>12,} {s['clicks']:>9,} {s['click_rate']:>7.2%} "
            f"{s['conversions']:>12,} {s['conversion_rate_of_clicks']:>10.2%} {planted:>8,} {s['seconds']:>7.1f}"
        )
        lines.append(f"{'':<6} conversions without click: {s['conversion_without_click']}; "
                     f"files {s['files'][SKELETON]}, {s['files'][COMMON]}")
    lines.append(f"oracle: {summary['oracle']}  total {summary['seconds']:.1f}s")
    return "\n".join(lines)
