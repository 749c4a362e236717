"""Writing the files of each split, and `generate(...)`, the entry point.

`generate(out_dir, ...)` writes, per split, `sample_skeleton_{split}.csv` and
`common_features_{split}.csv` byte-compatible with the published files, plus `oracle/`:
the latent truth (`oracle.npz`, `oracle.json`, read back by `lakerec.aliccp.oracle.Oracle`),
the true probabilities of every impression (`impressions_{split}.parquet`, written block by
block like the lines) and, always, the quarantine manifests (see `malformed.py`).

Each split has its own stream and each block of sessions its own child stream (see
`randomness.py`), so a seed gives the same bytes every time and the test split is the same
whether train is generated or not.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lakerec.aliccp import reasons as R
from lakerec.aliccp.generator.encoding import hex_keys
from lakerec.aliccp.generator.exposure import Exposure
from lakerec.aliccp.generator.id_space import ID_RANGES, MAX_ITEMS, MAX_USERS, PROFILE_FIELDS, id_ranges_by_code
from lakerec.aliccp.generator.json_files import read_json, write_json
from lakerec.aliccp.generator.malformed import (
    PlantedLines, plan_malformed, planted_line_lists, quarantine_counts, write_manifests,
)
from lakerec.aliccp.generator.params import GeneratorParams
from lakerec.aliccp.generator.randomness import rng_for
from lakerec.aliccp.generator.sessions import build_block
from lakerec.aliccp.generator.world import Truth, build_truth
from lakerec.aliccp.oracle import IMPRESSION_TRUTH_COLUMNS, IMPRESSION_TRUTH_NAME, JSON_NAME
from lakerec.errors import LakeRecError
from lakerec.schema.fields import BY_NAME, COMMON, FILE_NAMES, SKELETON, SPLITS

log = logging.getLogger("lakerec.generate")

SPLIT_CODES = {"train": 1, "test": 2}
SESSIONS_PER_BLOCK = 1000  # part of the byte-level determinism: do not change casually

DEFAULT_IMPRESSIONS = 200_000
DEFAULT_USERS = 2_000
DEFAULT_ITEMS = 10_000
DEFAULT_SEED = 42

# The impression truth file's schema: sample_id, then the probabilities (see oracle.py).
TRUTH_SCHEMA = pa.schema(
    [pa.field(IMPRESSION_TRUTH_COLUMNS[0], pa.int64(), nullable=False)]
    + [pa.field(c, pa.float64(), nullable=False) for c in IMPRESSION_TRUTH_COLUMNS[1:]]
)


def write_split(truth: Truth, params: GeneratorParams, out_dir: Path, split: str, impressions: int, malformed: int):
    """Write one split's two files and its impression truth; return (stats, planted lines by file)."""
    o = truth.oracle
    split_code = SPLIT_CODES[split]
    rng = rng_for(truth.seed, split_code)
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

    planted = PlantedLines(*plan_malformed(
        truth, malformed, impressions, ends, keys, fresh_keys, exposure.items, rng_for(truth.seed, split_code, 2)
    ))

    paths = {f: out_dir / FILE_NAMES[f].format(split=split) for f in (SKELETON, COMMON)}
    stats = {"rows": impressions, "sessions": n_sessions, "clicks": 0, "conversions": 0, "conversion_without_click": 0}
    field_rows: dict[str, int] = {}
    common_field_rows: dict[str, int] = {}
    history_ids: dict[str, int] = {}
    intention_ids = 0
    item_impressions = np.zeros(len(o.item_ids), dtype=np.int64)
    user_clicks = np.zeros(len(o.user_ids), dtype=np.int64)
    truth_path = out_dir / "oracle" / IMPRESSION_TRUTH_NAME.format(split=split)
    started = time.monotonic()
    with open(paths[SKELETON], "w", encoding="ascii", newline="") as fs, \
            open(paths[COMMON], "w", encoding="ascii", newline="") as fc, \
            pq.ParquetWriter(truth_path, TRUTH_SCHEMA) as ft:
        for b, s0 in enumerate(range(0, n_sessions, SESSIONS_PER_BLOCK)):
            s1 = min(n_sessions, s0 + SESSIONS_PER_BLOCK)
            r0 = int(ends[s0 - 1]) if s0 else 0
            r1 = int(ends[s1 - 1])
            lo, hi = np.searchsorted(cwc_rows, [r0, r1])
            common, skeleton, st = build_block(
                truth, exposure, params, session_users[s0:s1], lengths[s0:s1], keys[s0:s1],
                r0 + 1, cwc_rows[lo:hi] - r0, rng_for(truth.seed, split_code, 1, b),
            )
            fc.write(planted.splice(COMMON, common, s0, s1))
            fs.write(planted.splice(SKELETON, skeleton, r0, r1))
            for key in ("clicks", "conversions", "conversion_without_click"):
                stats[key] += st[key]
            for acc, part in ((field_rows, st["field_rows"]), (common_field_rows, st["common_field_rows"]),
                              (history_ids, st["history_ids"])):
                for f, v in part.items():
                    acc[f] = acc.get(f, 0) + v
            intention_ids += st["intention_ids"]
            item_impressions += np.bincount(st["items"], minlength=len(o.item_ids))
            user_clicks += np.bincount(st["clicked_users"], minlength=len(o.user_ids))
            ft.write_table(pa.Table.from_pydict(st["truth"], schema=TRUTH_SCHEMA))
            if b % 10 == 9:
                log.info("%s: %d of %d impressions (%.0f/s)", split, r1, impressions, r1 / (time.monotonic() - started))

    shown = np.sort(item_impressions[item_impressions > 0])[::-1]
    top = max(1, len(shown) // 100)
    stats.update(
        common_rows=n_sessions,
        click_rate=stats["clicks"] / impressions,
        conversion_rate_of_clicks=(stats["conversions"] - stats["conversion_without_click"]) / max(stats["clicks"], 1),
        users=int(len(np.unique(session_users))),
        users_with_clicks=int((user_clicks > 0).sum()),
        clicks_per_user_with_clicks=stats["clicks"] / max(int((user_clicks > 0).sum()), 1),
        cold_user_sessions=int(o.cold_user[session_users].sum()),
        items_shown=int(len(shown)),
        cold_item_impressions=int(item_impressions[o.cold_item].sum()),
        top_1pct_items_impression_share=float(shown[:top].sum() / impressions),
        items_shown_at_most_twice_share=float((shown <= 2).mean()),
        skeleton_missing_rate={f: 1 - v / impressions for f, v in sorted(field_rows.items())},
        common_missing_rate={f: 1 - v / n_sessions for f, v in sorted(common_field_rows.items())},
        history_ids_per_line={f: v / n_sessions for f, v in sorted(history_ids.items())},
        item_intentions_per_row=intention_ids / impressions,
        skeleton_lines=planted.written[SKELETON], common_lines=planted.written[COMMON],
        bytes={f: paths[f].stat().st_size for f in paths},
    )
    return stats, planted.numbered


def validate(impressions: int, users: int, items: int, malformed: int, params: GeneratorParams) -> None:
    """Refuse sizes the id layout or the model cannot hold, with a message that says what to do."""
    if impressions < 1:
        raise LakeRecError(f"--impressions must be at least 1 (got {impressions})")
    if not 1 <= users <= MAX_USERS:
        raise LakeRecError(f"--users must be between 1 and {MAX_USERS:,} (got {users})")
    if not 1 <= items <= MAX_ITEMS:
        raise LakeRecError(f"--items must be between 1 and {MAX_ITEMS:,} (got {items})")
    if not 1 <= params.session_min <= params.session_max:
        raise LakeRecError(
            f"--session-min must be at least 1 and at most --session-max (got {params.session_min}, {params.session_max})"
        )
    if malformed < 0:
        raise LakeRecError(f"--malformed must be 0 or more (got {malformed})")
    if malformed and impressions < 2 * params.session_max:
        raise LakeRecError(
            f"--malformed needs at least {2 * params.session_max} impressions per split (to plant lines between sessions)"
        )
    if not 0 < params.conversion_rate_of_clicks < 1:
        raise LakeRecError(f"--conversion-rate must be between 0 and 1 (got {params.conversion_rate_of_clicks})")
    levels = BY_NAME["user_consumption_2"].cardinality
    if len(params.consumption_conversion_effects) != levels:
        raise LakeRecError(f"consumption_conversion_effects needs one effect per user_consumption_2 level ({levels})")
    categories = ID_RANGES["item_category"][1]
    if not 1 <= params.topics <= categories // 4:
        raise LakeRecError(f"--topics must be between 1 and {categories // 2} (got {params.topics})")


def generate(out_dir: str | Path, splits: tuple[str, ...] = SPLITS, impressions: int = DEFAULT_IMPRESSIONS,
             users: int = DEFAULT_USERS, items: int = DEFAULT_ITEMS, seed: int = DEFAULT_SEED, malformed: int = 0,
             params: GeneratorParams | None = None, conversion_rate: float | None = None) -> dict:
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
        conversion_rate: share of clicks that convert (overrides params.conversion_rate_of_clicks;
            default the published ~0.55%); e.g. 0.1 makes CVR AUC meaningful at demo size.

    Returns:
        A summary: per split its stats (rows, clicks, conversions, ...), files and seconds.
    """
    params = params or GeneratorParams()
    if conversion_rate is not None:
        params = replace(params, conversion_rate_of_clicks=float(conversion_rate))
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
        counts = quarantine_counts(planted, stats["conversion_without_click"])
        manifest[split] = counts
        manifest_lines[split] = planted_line_lists(planted)
        stats["malformed"] = counts
        summary["splits"][split] = {**stats, "seconds": round(time.monotonic() - t0, 2),
                                    "files": {f: FILE_NAMES[f].format(split=split) for f in (SKELETON, COMMON)}}
        log.info("%s: %d rows, %d clicks, %d conversions in %.1fs", split, stats["rows"], stats["clicks"],
                 stats["conversions"], time.monotonic() - t0)

    truth.oracle.save_arrays(oracle_dir)
    doc = {
        "seed": seed, "users": users, "items": items, "topics": truth.oracle.n_topics,
        "params": asdict(params),
        "calibrated": {"base_logit": truth.oracle.base_logit, "conversion_base_logit": truth.oracle.conversion_base_logit},
        "vocab": truth.vocab,
        "id_ranges": id_ranges_by_code(),
        "profile_codes": [f.code for f in PROFILE_FIELDS],
    }
    doc = json.loads(json.dumps(doc))  # tuples as lists, to compare with a previous run's file
    previous = read_json(oracle_dir / JSON_NAME)
    same_world = {k: previous.get(k) for k in doc} == doc
    kept = {s: v for s, v in previous.get("splits", {}).items() if s not in splits} if same_world else {}
    stats_doc = {s: {k: v for k, v in summary["splits"][s].items() if k not in ("seconds", "files")} for s in splits}
    doc["splits"] = dict(sorted({**kept, **stats_doc}.items()))
    for split in SPLITS:  # another world's truth of a split not written now would be wrong: remove it
        if split not in splits and split not in kept:
            (oracle_dir / IMPRESSION_TRUTH_NAME.format(split=split)).unlink(missing_ok=True)
    write_json(oracle_dir / JSON_NAME, doc)
    write_manifests(oracle_dir, splits, manifest, manifest_lines, same_world)
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["oracle"] = str(oracle_dir)
    return summary


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
        lines.append(f"{'':<6} users: {s['users']:,} in sessions, {s['users_with_clicks']:,} with clicks "
                     f"({s['clicks_per_user_with_clicks']:.1f} clicks each)")
    lines.append(f"oracle: {summary['oracle']}  total {summary['seconds']:.1f}s")
    return "\n".join(lines)
