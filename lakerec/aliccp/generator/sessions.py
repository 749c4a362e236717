"""One block of sessions: impressions, clicks, conversions, histories and cross features as lines.

A user's session line carries a behaviour history drawn from a stable per-user pool of
items of their topics, so the history fields (and the user_item_* cross fields derived from
them) carry signal. Each session becomes one common line; each of its impressions one
skeleton line with that session's key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lakerec.schema.fields import BY_NAME, Field
from lakerec.aliccp.generator.arrays import count_per_group, explode_csr
from lakerec.aliccp.generator.encoding import (
    format_weight, item_tokens, join_lines, ln_count_weights, profile_tokens, token, vocab_tokens,
)
from lakerec.aliccp.generator.exposure import Exposure
from lakerec.aliccp.generator.id_space import PROFILE_FIELDS, code
from lakerec.aliccp.generator.params import GeneratorParams
from lakerec.aliccp.generator.randomness import hash_uniform
from lakerec.aliccp.generator.world import Truth


@dataclass
class History:
    """One block's session histories for a field: sorted lookup keys and weight strings."""

    field: Field
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
    parts = [("user_categories", sess, truth.item_category[items], v["categories"]),
             ("user_shops", sess, truth.item_shop[items], v["shops"])]
    has_brand = truth.item_brand[items] >= 0
    parts.append(("user_brands", sess[has_brand], truth.item_brand[items][has_brand], v["brands"]))
    rows, flat = explode_csr(truth.intent_ptr, items)
    parts.append(("user_intentions", sess[rows], truth.intent_idx[flat], v["intentions"]))
    out = []
    for name, s, ids, vocab in parts:
        g, i, c = count_per_group(s, ids, vocab, params.history_max_ids, rng)
        decayed = rng.random(len(c)) < params.decayed_weight_share
        weights = ln_count_weights(c, decayed, rng.uniform(0.3, 0.95, len(c)))
        out.append(History(BY_NAME[name], vocab, g, i, weights))
    return out


def cross_presence(found: np.ndarray, eligible: np.ndarray, target: float, rng: np.random.Generator):
    """Which rows carry a cross feature: matches first, thinned or topped up to the target rate.

    A cross field (user_item_categories/shops/brands/intentions) is the impressed item's
    category/shop/brand/intentions seen in the user's history; the published files carry it
    in a share of rows that a scaled-down history cannot reach by matching alone, so
    unmatched rows are filled at random (with a small count) to hit the published missing rate.

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

    Returns (common lines, skeleton lines, stats dict). The stats count fields by raw code,
    as oracle.json records them; `truth` holds the impressions' true probabilities by column
    and `clicked_users` the user index of every click.
    """
    o = truth.oracle
    n_sessions = len(users)
    n = int(lengths.sum())
    row_sess = np.repeat(np.arange(n_sessions), lengths)
    row_user = users[row_sess]

    # Impressions, clicks, conversions, and their true probabilities (oracle/impressions_*.parquet).
    items = exposure.sample(rng, row_user)
    pos = rng.choice(len(params.position_probs), n, p=params.position_probs)
    p_click = o.click_probability_idx(row_user, items, pos)
    p_conv = o.conversion_given_click_idx(row_user, items)
    click = rng.random(n) < p_click
    conv = click & (rng.random(n) < p_conv)
    truth_columns = {
        "sample_id": np.arange(first_sample_id, first_sample_id + n, dtype=np.int64),
        "p_click": p_click,
        "p_click_no_position": o.click_probability_idx(row_user, items),
        "p_conversion_given_click": p_conv,
        "p_ctcvr": p_click * p_conv,
    }
    click[forced_cwc] = False
    conv[forced_cwc] = True

    # Common lines: profile fields + weighted histories.
    no_user_id = rng.random(n_sessions) < BY_NAME["user_id"].missing_rate
    profile = profile_tokens(truth, users, no_user_id)
    hists = session_histories(truth, users, rng, params)
    c_rows = [np.repeat(np.arange(n_sessions), [len(p) for p in profile])]
    c_toks = [np.array([t for p in profile for t in p], dtype=object)]
    for hist in hists:
        c_rows.append(hist.session)
        c_toks.append(np.array(vocab_tokens(hist.field.name, hist.ids, hist.weights), dtype=object))
    c_lists, c_nums = join_lines(np.concatenate(c_rows), np.concatenate(c_toks), n_sessions, rng)
    common = [f"{k},{m},{fl}" for k, m, fl in zip(keys, c_nums.tolist(), c_lists)]

    # Skeleton: item side (per distinct item), position, cross features.
    uniq, inv = np.unique(items, return_inverse=True)
    side = item_tokens(truth, uniq)
    side_ptr = np.concatenate([[0], np.cumsum([len(s) for s in side])])
    side_flat = np.array([t for s in side for t in s], dtype=object)
    r_item, f_item = explode_csr(side_ptr, inv)
    s_rows, s_toks = [r_item], [side_flat[f_item]]
    position = code("position")
    pos_tok = np.array([token(position, int(p)) for p in o.position_ids], dtype=object)
    s_rows.append(np.arange(n))
    s_toks.append(pos_tok[pos])
    by_name = {h.field.name: h for h in hists}
    fill_weight = [format_weight(math.log1p(c)) for c in range(1, 4)]
    presence = {}
    for name, hist_name, idx, eligible in (
        ("user_item_categories", "user_categories", truth.item_category[items], np.ones(n, dtype=bool)),
        ("user_item_shops", "user_shops", truth.item_shop[items], np.ones(n, dtype=bool)),
        ("user_item_brands", "user_brands", np.maximum(truth.item_brand[items], 0), truth.item_brand[items] >= 0),
    ):
        hist = by_name[hist_name]
        found, at = hist.lookup(row_sess, idx)
        found &= eligible
        present, filled = cross_presence(found, eligible, 1 - BY_NAME[name].missing_rate, rng)
        rows = np.flatnonzero(present)
        fill_pick = rng.integers(0, len(fill_weight), len(rows))
        weights = [fill_weight[f] if fl else hist.weights[a]
                   for a, fl, f in zip(at[rows].tolist(), filled[rows].tolist(), fill_pick.tolist())]
        s_rows.append(rows)
        s_toks.append(np.array(vocab_tokens(name, idx[rows], weights), dtype=object))
        presence[code(name)] = len(rows)
    # user_item_intentions: every impressed intention found in the history (multi), or one filled at random.
    hist = by_name["user_intentions"]
    pair_row, flat = explode_csr(truth.intent_ptr, items)
    pair_int = truth.intent_idx[flat]
    found, at = hist.lookup(row_sess[pair_row], pair_int)
    row_found = np.bincount(pair_row[found], minlength=n) > 0
    target = 1 - BY_NAME["user_item_intentions"].missing_rate
    present, filled = cross_presence(row_found, np.ones(n, dtype=bool), target, rng)
    keep_pairs = found & present[pair_row] & ~filled[pair_row]
    first_pair = np.searchsorted(pair_row, np.flatnonzero(filled))  # an item's first intention
    rows = np.concatenate([pair_row[keep_pairs], pair_row[first_pair]])
    ids = np.concatenate([pair_int[keep_pairs], pair_int[first_pair]])
    weights = [hist.weights[a] for a in at[keep_pairs].tolist()] + [fill_weight[0]] * len(first_pair)
    s_rows.append(rows)
    s_toks.append(np.array(vocab_tokens("user_item_intentions", ids, weights), dtype=object))
    presence[code("user_item_intentions")] = int(present.sum())
    s_lists, s_nums = join_lines(np.concatenate(s_rows), np.concatenate(s_toks), n, rng)
    row_keys = [keys[s] for s in row_sess.tolist()]
    sample_ids = range(first_sample_id, first_sample_id + n)
    labels = zip(click.view(np.int8).tolist(), conv.view(np.int8).tolist())
    skeleton = [f"{sid},{c},{v},{k},{m},{fl}"
                for sid, (c, v), k, m, fl in zip(sample_ids, labels, row_keys, s_nums.tolist(), s_lists)]

    stats = {
        "clicks": int(click.sum()), "conversions": int(conv.sum()),
        "conversion_without_click": int((conv & ~click).sum()),
        "items": items, "truth": truth_columns, "clicked_users": row_user[click],
        "field_rows": {**presence, code("item_brand"): int((truth.item_brand[items] >= 0).sum())},
        "common_field_rows": {
            code("user_id"): int((~no_user_id).sum()),
            **{f.code: int((o.user_profile_ids[users, c] > 0).sum()) for c, f in enumerate(PROFILE_FIELDS)},
        },
        "history_ids": {h.field.code: len(h.ids) for h in hists},
        "intention_ids": int(len(pair_int)),
    }
    return common, skeleton, stats
