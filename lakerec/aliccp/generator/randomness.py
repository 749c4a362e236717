"""Where the generator's randomness comes from: the part of byte-level determinism.

Every draw comes from a stream keyed by (seed, key), so a seed gives the same bytes every
time and one split's bytes do not depend on which other splits are generated. The keys:
truth (0,), calibration (0, 1), conversion effects (0, 2), split (split code,), block b of a split (split code, 1, b),
planted malformed lines (split code, 2). Do not reorder draws inside a stream casually.
"""

from __future__ import annotations

import numpy as np


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (seed, key): truth (0,), split (code,), block (code, 1, b)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


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
