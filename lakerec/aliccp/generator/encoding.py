"""Turning generated rows into exact Ali-CCP bytes (see ../shared/aliccp-format.md).

A feature is `CODE \\x02 ID \\x03 VALUE`; a line's features are joined by \\x01 in an
arbitrary (here: shuffled) order; VALUEs print as the published files do.
"""

from __future__ import annotations

import math

import numpy as np

from lakerec.schema.fields import FEATURE_SEP, FIELD_SEP, VALUE_SEP
from lakerec.aliccp.generator.arrays import explode_csr
from lakerec.aliccp.generator.id_space import PROFILE_FIELDS, code, first_id
from lakerec.aliccp.generator.world import Truth


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


def token(field_code: str, feature_id: int, value: str = "1.0") -> str:
    """One feature of raw field code `field_code`."""
    return f"{field_code}{FIELD_SEP}{feature_id}{VALUE_SEP}{value}"


def tokens(field_code: str, ids: np.ndarray, values: list[str] | None = None) -> list[str]:
    """Features of one raw field code for raw ids, with VALUE 1.0 or the given weights."""
    head = f"{field_code}{FIELD_SEP}"
    if values is None:
        return [f"{head}{i}{VALUE_SEP}1.0" for i in ids.tolist()]
    return [f"{head}{i}{VALUE_SEP}{v}" for i, v in zip(ids.tolist(), values)]


def vocab_tokens(name: str, idx: np.ndarray, values: list[str] | None = None) -> list[str]:
    """Features of the named field for vocabulary indices (raw id = the field's first id + index)."""
    return tokens(code(name), first_id(name) + idx, values)


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


def hex_keys(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct 16-character lowercase hex common_feature_index values."""
    keys = np.unique(rng.integers(0, 2**64, n, dtype=np.uint64))
    while len(keys) < n:  # a collision among 2**64 values: draw the missing ones again
        keys = np.unique(np.concatenate([keys, rng.integers(0, 2**64, n - len(keys), dtype=np.uint64)]))
    rng.shuffle(keys)
    return [f"{k:016x}" for k in keys.tolist()]


def item_tokens(truth: Truth, items: np.ndarray) -> list[list[str]]:
    """The item side (id, category, shop, brand, intentions) of each item, as feature tokens."""
    o = truth.oracle
    item_id, category, shop = code("item_id"), code("item_category"), code("item_shop")
    brand_code = code("item_brand")
    rows, flat = explode_csr(truth.intent_ptr, items)
    out = [[token(item_id, a), token(category, b), token(shop, c)] for a, b, c in
           zip(o.item_ids[items].tolist(), o.item_category_ids[items].tolist(), o.item_shop_ids[items].tolist())]
    for j, brand in enumerate(o.item_brand_ids[items].tolist()):
        if brand:
            out[j].append(token(brand_code, brand))
    for j, t in zip(rows.tolist(), tokens(code("item_intention"), o.item_intention_ids[flat])):
        out[j].append(t)
    return out


def profile_tokens(truth: Truth, users: np.ndarray, no_user_id: np.ndarray) -> list[list[str]]:
    """The user's single-valued fields (user_id and the profile) present on a line, as tokens."""
    o = truth.oracle
    user_id = code("user_id")
    out = [[] if miss else [token(user_id, uid)] for uid, miss in zip(o.user_ids[users].tolist(), no_user_id.tolist())]
    for c, f in enumerate(PROFILE_FIELDS):
        ids = o.user_profile_ids[users, c]
        for j in np.flatnonzero(ids).tolist():
            out[j].append(token(f.code, int(ids[j])))
    return out
