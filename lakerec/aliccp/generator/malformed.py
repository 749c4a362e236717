"""Planting malformed lines, one per quarantine reason in turn, and the quarantine manifest.

Each planted line breaks exactly one rule of a valid line, so ingest assigns exactly its
reason. `oracle/malformed.json` says, per split and file, how many lines ingest should
quarantine for each reason (planted lines and the natural conversion-without-click rows);
`oracle/malformed_lines.json` gives each planted line's 1-based line number and reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lakerec.aliccp import reasons as R
from lakerec.schema.fields import COMMON, FEATURE_SEP, FIELD_SEP, SKELETON, VALUE_SEP
from lakerec.aliccp.generator.encoding import format_weight, item_tokens, profile_tokens, token, vocab_tokens
from lakerec.aliccp.generator.id_space import code
from lakerec.aliccp.generator.json_files import read_json, write_json
from lakerec.aliccp.generator.world import Truth

MALFORMED_NAME = "malformed.json"
MALFORMED_LINES_NAME = "malformed_lines.json"

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
        field_code, rest = feats[j].split(FIELD_SEP)
        fid, value = rest.split(VALUE_SEP)
        if kind == R.FEATURE_WITHOUT_SEPARATORS:
            feats[j] = f"{field_code}{fid}{value}" if variant % 2 else f"{field_code}{FIELD_SEP}{fid}"
        elif kind == R.NON_NUMERIC_FEATURE_ID:
            feats[j] = token(field_code, ("id" + fid, fid + "x", "abc", "1e5")[variant], value)
        else:
            feats[j] = token(field_code, int(fid), ("abc", "1.0.0", "one", "0.5x")[variant])
    elif kind == R.REPEATED_SINGLE_VALUED_FIELD:
        single = code("item_id") if file == SKELETON else code("user_id")
        first = next(f for f in feats if f.startswith(single + FIELD_SEP))
        other = int(first.split(FIELD_SEP)[1].split(VALUE_SEP)[0]) + 1
        feats.insert(int(rng.integers(0, len(feats) + 1)), token(single, other))
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
    position = code("position")
    for file, kind in kinds:
        if file == SKELETON:
            b = int(row_cuts[rng.integers(0, len(row_cuts))])
            session = int(np.searchsorted(session_ends, b, side="left"))  # the session just before
            key = next(fresh) if kind == R.UNKNOWN_COMMON_FEATURE_INDEX else keys[min(session, n_sessions - 1)]
            item = int(available_items[rng.integers(0, len(available_items))])
            position_id = int(truth.oracle.position_ids[rng.integers(0, len(truth.oracle.position_ids))])
            feats = item_tokens(truth, np.array([item]))[0] + [token(position, position_id)]
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
            feats += vocab_tokens("user_categories", cats, weights)
            rng.shuffle(feats)
            common.append(Planted(b, kind, corrupt(kind, COMMON, [next(fresh)], feats, rng)))
    skeleton.sort(key=lambda p: p.boundary)
    common.sort(key=lambda p: p.boundary)
    return skeleton, common


class PlantedLines:
    """One split's planted lines, spliced into its blocks of valid lines as they are written.

    Attributes:
        written: lines written so far per file, valid and planted.
        numbered: per file, (1-based line number, reason) of each planted line written.
    """

    def __init__(self, skeleton_plan: list[Planted], common_plan: list[Planted]):
        self.plans = {SKELETON: skeleton_plan, COMMON: common_plan}
        self.written = {SKELETON: 0, COMMON: 0}
        self.numbered: dict[str, list[tuple[int, str]]] = {SKELETON: [], COMMON: []}
        # Common lines that a duplicate repeats: kept as their block goes by.
        self._wanted = {p.original for p in common_plan if p.line is None}
        self._originals: dict[int, str] = {}

    def splice(self, file: str, lines: list[str], lo: int, hi: int) -> str:
        """Valid lines lo+1..hi of a file joined with \\n, with the planted lines whose boundary is in (lo, hi]."""
        if file == COMMON:
            for j in self._wanted.intersection(range(lo, hi)):
                self._originals[j] = lines[j - lo]
        out: list[str] = []
        done = 0
        for p in self.plans[file]:
            if not lo < p.boundary <= hi:
                continue
            out.extend(lines[done:p.boundary - lo])
            done = p.boundary - lo
            line = p.line
            if line is None:  # duplicate key: the original's features, in reverse order
                key, num, feats = self._originals[p.original].split(",")
                line = f"{key},{num},{FEATURE_SEP.join(reversed(feats.split(FEATURE_SEP)))}"
            out.append(line)
            self.numbered[file].append((self.written[file] + len(out), p.kind))
        out.extend(lines[done:])
        self.written[file] += len(out)
        return "".join(line + "\n" for line in out)


def quarantine_counts(numbered: dict[str, list[tuple[int, str]]], conversion_without_click: int) -> dict:
    """Per file, lines ingest should quarantine by reason: the planted ones and the natural funnel anomalies."""
    counts = {}
    for file in (SKELETON, COMMON):
        by_reason: dict[str, int] = {}
        for _, reason in numbered[file]:
            by_reason[reason] = by_reason.get(reason, 0) + 1
        counts[file] = dict(sorted(by_reason.items()))
    if conversion_without_click:
        counts[SKELETON][R.CONVERSION_WITHOUT_CLICK] = conversion_without_click
    return counts


def planted_line_lists(numbered: dict[str, list[tuple[int, str]]]) -> dict:
    """Per file, [line number, reason] of each planted line, as malformed_lines.json holds them."""
    return {f: [list(x) for x in numbered[f]] for f in (SKELETON, COMMON)}


def write_manifests(oracle_dir: Path, splits: tuple[str, ...], counts: dict, lines: dict, same_world: bool) -> None:
    """Write malformed.json and malformed_lines.json, keeping other splits' entries from the same world."""
    for name, new in ((MALFORMED_NAME, counts), (MALFORMED_LINES_NAME, lines)):
        old = read_json(oracle_dir / name) if same_world else {}
        write_json(oracle_dir / name, dict(sorted({**{s: v for s, v in old.items() if s not in splits}, **new}.items())))
