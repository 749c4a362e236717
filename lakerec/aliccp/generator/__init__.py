"""Synthetic Ali-CCP raw files with a planted truth (see ../shared/aliccp-format.md).

`generate(out_dir, ...)` writes, per split, the two raw files byte-compatible with the
published ones, plus `oracle/`: the latent truth that `lakerec.aliccp.oracle.Oracle` reads
back, the true click and conversion probabilities of every impression
(`impressions_{split}.parquet`) and the manifests of what ingest should quarantine. Same
seed, same bytes.

The modules, from the truth to the bytes:

- `params`: the knobs of the generative model.
- `id_space`: each field's raw id range, by field name; `code(name)` for the raw code.
- `randomness`: the seeded streams that make the bytes deterministic.
- `world`: topics, users, items, popularity, conversion effects, calibrated click and conversion odds.
- `exposure`: which items a user is shown (the impression propensity).
- `sessions`: one block of sessions as common and skeleton lines.
- `encoding`: features, weights, keys and lines in the exact byte format.
- `malformed`: planted malformed lines, one per quarantine reason, and the manifests.
- `writer`: the files of each split, their impression truth, oracle.json, and `generate(...)`.
"""

from lakerec.aliccp.generator.malformed import MALFORMED_LINES_NAME, MALFORMED_NAME
from lakerec.aliccp.generator.params import GeneratorParams
from lakerec.aliccp.generator.world import Truth, build_truth
from lakerec.aliccp.generator.writer import (
    DEFAULT_IMPRESSIONS, DEFAULT_ITEMS, DEFAULT_SEED, DEFAULT_USERS, FILE_NAMES, SPLITS, format_summary, generate,
    validate,
)

__all__ = [
    "DEFAULT_IMPRESSIONS", "DEFAULT_ITEMS", "DEFAULT_SEED", "DEFAULT_USERS", "FILE_NAMES", "GeneratorParams",
    "MALFORMED_LINES_NAME", "MALFORMED_NAME", "SPLITS", "Truth", "build_truth", "format_summary", "generate",
    "validate",
]
