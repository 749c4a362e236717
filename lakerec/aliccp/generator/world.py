"""The planted truth: topics, users, items, popularity, and calibrated click/conversion odds.

What `oracle.py` documents: K topics; users with sparse interests over 1-3 topics, an
activity and profile fields tied to their main topic; items with a topic, a Zipf-like
popularity, a quality and a fixed side (category, shop, brand, 3-14 intentions, all drawn
from their topic's own block of each vocabulary). The base click logit and the conversion
scale are calibrated on a sample of train impressions to hit the target rates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lakerec.schema.fields import BY_NAME
from lakerec.aliccp.generator.arrays import blocks
from lakerec.aliccp.generator.exposure import Exposure
from lakerec.aliccp.generator.id_space import ID_RANGES, PROFILE_FIELDS, first_id
from lakerec.aliccp.generator.params import GeneratorParams
from lakerec.aliccp.generator.randomness import rng_for
from lakerec.aliccp.oracle import Oracle, sigmoid


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
    user_profile: np.ndarray  # (U, len(PROFILE_FIELDS)) value index, -1: absent
    history_sampler: Exposure


def zipf_popularity(n: int, exponent: float, offset: float, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed popularity over n items, normalised; the ranks are a random permutation."""
    rank = rng.permutation(n)
    pop = 1.0 / (rank + offset) ** exponent
    return pop / pop.sum()


def vocab_sizes(n_items: int, topics: int) -> dict[str, int]:
    """Vocabulary sizes scaled to the catalogue, inside each field's id span."""
    return {
        "categories": int(np.clip(n_items // 8, 4 * topics, ID_RANGES["item_category"][1])),
        "shops": int(np.clip(n_items // 5, topics, ID_RANGES["item_shop"][1])),
        "brands": int(np.clip(n_items // 10, topics, ID_RANGES["item_brand"][1])),
        "intentions": int(np.clip(n_items // 3, 4 * topics, ID_RANGES["item_intention"][1])),
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


def _bisect_logit(rest: np.ndarray, weights: np.ndarray, target: float) -> float:
    """The base logit b with weighted mean of sigmoid(b + rest) equal to target."""
    lo, hi = -30.0, 10.0
    total = weights.sum()
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (weights * sigmoid(mid + rest)).sum() < target * total else (lo, mid)
    return (lo + hi) / 2


def _calibrate(oracle: Oracle, exposure: Exposure, rng: np.random.Generator, users: np.ndarray,
               activity: np.ndarray, params: GeneratorParams) -> tuple[float, float]:
    """Base click and conversion logits that give the target rates on a sample of train impressions.

    The conversion base is weighted by each draw's click probability: the target is a share of clicks.
    """
    n = params.calibration_draws
    u = users[np.searchsorted(np.cumsum(activity) / activity.sum(), rng.random(n), side="right").clip(0, len(users) - 1)]
    i = exposure.sample(rng, u)
    pos = rng.choice(len(params.position_probs), n, p=params.position_probs)
    aff = oracle.affinity_idx(u, i)
    rest = params.affinity_weight * aff + np.asarray(params.position_effects)[pos] + oracle.item_quality[i]
    base = _bisect_logit(rest, np.ones(n), params.click_rate)
    p = sigmoid(base + rest)
    conversion = _bisect_logit(oracle.conversion_logit_idx(u, i), p, params.conversion_rate_of_clicks)
    return float(base), float(conversion)


def conversion_effects(rng: np.random.Generator, item_category: np.ndarray, n_categories: int,
                       user_profile: np.ndarray, params: GeneratorParams) -> tuple[np.ndarray, np.ndarray]:
    """(per user v[consumption_u], per item g[category_i] + n_i): the planted conversion effects."""
    by_category = rng.normal(0.0, params.category_conversion_sd, n_categories)
    item = by_category[item_category] + rng.normal(0.0, params.item_conversion_sd, len(item_category))
    level = user_profile[:, PROFILE_FIELDS.index(BY_NAME["user_consumption_2"])]
    effects = np.asarray(params.consumption_conversion_effects, dtype=float)
    user = np.where(level >= 0, effects[np.maximum(level, 0)], 0.0)
    return user, item


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
    item_brand[rng.random(n_items) < BY_NAME["item_brand"].missing_rate] = -1
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
    # The whole profile is missing together at user_profile's rate; rarer fields drop out more.
    base_missing = BY_NAME["user_profile"].missing_rate
    no_profile = rng.random(n_users) < base_missing
    user_profile = np.empty((n_users, len(PROFILE_FIELDS)), dtype=np.int64)
    for c, f in enumerate(PROFILE_FIELDS):
        cdf = np.cumsum(rng.dirichlet(np.full(f.cardinality, 0.5), size=k), axis=1)
        u = rng.random(n_users)
        value = np.empty(n_users, dtype=np.int64)
        for t in range(k):
            who = main == t
            value[who] = np.minimum(np.searchsorted(cdf[t], u[who], side="right"), f.cardinality - 1)
        extra = max(0.0, (f.missing_rate - base_missing) / (1 - base_missing))
        value[no_profile | (rng.random(n_users) < extra)] = -1
        user_profile[:, c] = value

    user_ids = first_id("user_id") + rng.choice(ID_RANGES["user_id"][1], n_users, replace=False)
    item_ids = first_id("item_id") + rng.choice(ID_RANGES["item_id"][1], n_items, replace=False)
    user_conversion, item_conversion = conversion_effects(
        rng_for(seed, 0, 2), item_category, vocab["categories"], user_profile, params)
    profile_ids = np.where(user_profile >= 0, user_profile + np.array([first_id(f.name) for f in PROFILE_FIELDS]), 0)
    arrays = {
        "user_ids": user_ids, "user_topics": user_topics, "user_topic_weights": weights,
        "user_activity": activity, "cold_user": cold_user, "user_profile_ids": profile_ids,
        "item_ids": item_ids, "item_topic": item_topic, "item_popularity": pop, "item_quality": quality,
        "cold_item": cold_item,
        "item_category_ids": first_id("item_category") + item_category,
        "item_shop_ids": first_id("item_shop") + item_shop,
        "item_brand_ids": np.where(item_brand >= 0, first_id("item_brand") + item_brand, 0),
        "item_intention_ptr": intent_ptr, "item_intention_ids": first_id("item_intention") + intent_idx,
        "position_ids": first_id("position") + np.arange(len(params.position_probs)),
        "position_probs": np.asarray(params.position_probs, dtype=float),
        "position_effects": np.asarray(params.position_effects, dtype=float),
        "user_conversion_effect": user_conversion, "item_conversion_quality": item_conversion,
    }
    model = {**asdict(params), "topics": k, "base_logit": 0.0, "conversion_base_logit": 0.0}
    oracle = Oracle(arrays, model)
    train_exposure = Exposure(oracle, oracle.available("train"), params.interest_exposure)
    warm = np.flatnonzero(~cold_user)
    base, conversion = _calibrate(oracle, train_exposure, rng_for(seed, 0, 1), warm, activity[warm], params)
    oracle.base_logit, oracle.conversion_base_logit = base, conversion
    oracle.params.update(base_logit=base, conversion_base_logit=conversion)
    history = Exposure(oracle, np.ones(n_items, dtype=bool), 1.0 - params.history_noise)
    return Truth(oracle, seed, vocab, item_category, item_shop, item_brand, intent_ptr, intent_idx, user_profile, history)
