"""The synthetic Ali-CCP generator: byte format, determinism, field mix, rates, long tail,
planted structure, malformed lines and the oracle.

Real files under tmp_path, read back by a parser written here from the format document
(not the project's parser); expectations come from the document, not from the generator.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from lakerec.jobs import generate as generate_job
from lakerec.aliccp.generator import generate
from lakerec.aliccp.oracle import Oracle
from tests.conftest import REPO

# From ../shared/aliccp-format.md, "Fields".
SKELETON_SINGLE = {"205", "206", "207", "216", "301", "508", "509", "702"}
SKELETON_MULTI = {"210", "853"}
COMMON_SINGLE = {"101", "121", "122", "124", "125", "126", "127", "128", "129"}
HISTORY = {"109_14", "110_14", "127_14", "150_14"}
WEIGHTED = HISTORY | {"508", "509", "702", "853"}
ALWAYS_IN_SKELETON = {"205", "206", "207", "301"}

FEATURE = re.compile(r"(\d+(?:_\d+)?)\x02(\d+)\x03(\d+\.\d+)")
SIZES = dict(impressions=20_000, users=400, items=2_000)


# ---- an independent reader ------------------------------------------------------------------


@dataclass
class Row:
    sample_id: int
    click: int
    conversion: int
    key: str
    feats: list[tuple[str, int, str]]

    def ids(self, code: str) -> list[int]:
        return [i for c, i, _ in self.feats if c == code]


@dataclass
class SplitData:
    rows: list[Row] = field(default_factory=list)
    common: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)
    common_order: list[str] = field(default_factory=list)

    def user_of(self, key: str) -> int | None:
        ids = [i for c, i, _ in self.common[key] if c == "101"]
        return ids[0] if ids else None


def read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    return data[:-1].decode("ascii").split("\n")


def parse_feature_list(text: str, feature_num: str) -> list[tuple[str, int, str]]:
    parts = text.split("\x01")
    assert int(feature_num) == len(parts)
    out = []
    for part in parts:
        m = FEATURE.fullmatch(part)
        assert m, repr(part)
        out.append((m.group(1), int(m.group(2)), m.group(3)))
    return out


def read_split(folder: Path, split: str) -> SplitData:
    d = SplitData()
    for line in read_lines(folder / f"common_features_{split}.csv"):
        cols = line.split(",")
        assert len(cols) == 3
        assert re.fullmatch(r"[0-9a-f]{16}", cols[0])
        assert cols[0] not in d.common
        d.common[cols[0]] = parse_feature_list(cols[2], cols[1])
        d.common_order.append(cols[0])
    for line in read_lines(folder / f"sample_skeleton_{split}.csv"):
        cols = line.split(",")
        assert len(cols) == 6
        assert cols[1] in ("0", "1") and cols[2] in ("0", "1")
        d.rows.append(Row(int(cols[0]), int(cols[1]), int(cols[2]), cols[3], parse_feature_list(cols[5], cols[4])))
    return d


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate(out, ("train", "test"), seed=7, **SIZES)
    return out


@pytest.fixture(scope="module")
def data(folder) -> dict[str, SplitData]:
    return {split: read_split(folder, split) for split in ("train", "test")}


@pytest.fixture(scope="module")
def oracle(folder) -> Oracle:
    return Oracle.load(folder)


# ---- format ---------------------------------------------------------------------------------


def test_lines_have_the_published_layout(data):
    for split, d in data.items():
        assert [r.sample_id for r in d.rows] == list(range(1, SIZES["impressions"] + 1))
        runs = [r.key for j, r in enumerate(d.rows) if j == 0 or d.rows[j - 1].key != r.key]
        assert len(runs) == len(set(runs)), "rows sharing a key must be adjacent"
        assert runs == d.common_order, "one common line per session, in session order"
        for r in d.rows:
            codes = Counter(c for c, _, _ in r.feats)
            assert set(codes) <= SKELETON_SINGLE | SKELETON_MULTI
            assert all(codes[c] == 1 for c in ALWAYS_IN_SKELETON)
            assert all(codes[c] <= 1 for c in SKELETON_SINGLE)
            assert 3 <= codes["210"] <= 14
        for feats in d.common.values():
            codes = Counter(c for c, _, _ in feats)
            assert set(codes) <= COMMON_SINGLE | HISTORY
            assert all(codes[c] <= 1 for c in COMMON_SINGLE)
            assert all(codes[c] >= 1 for c in HISTORY)
        for feats in list(d.common.values()) + [r.feats for r in d.rows]:
            for code, _, value in feats:
                if code in WEIGHTED:
                    assert re.fullmatch(r"\d+\.\d{5}", value), (code, value)
                else:
                    assert value == "1.0", (code, value)


def test_feature_order_is_shuffled(data):
    first_codes = Counter(r.feats[0][0] for r in data["train"].rows)
    assert len(first_codes) >= 5 and max(first_codes.values()) < 0.5 * len(data["train"].rows)


def test_each_field_has_its_own_id_range(data):
    lo, hi = {}, {}
    for d in data.values():
        for feats in list(d.common.values()) + [r.feats for r in d.rows]:
            for code, i, _ in feats:
                lo[code], hi[code] = min(lo.get(code, i), i), max(hi.get(code, i), i)
    spans = sorted((lo[c], hi[c], c) for c in lo)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        assert end < start, f"fields {a} and {b} share ids"
    assert 4_000_000 <= lo["205"] and hi["205"] <= 8_300_000
    assert lo["301"] == 9351665 and hi["301"] == 9351668
    assert abs(lo["124"] - 3438768) < 10 and hi["124"] - lo["124"] <= 2


def test_item_side_is_a_function_of_the_item(data):
    side = {}
    for d in data.values():
        for r in d.rows:
            this = (tuple(r.ids("206")), tuple(r.ids("207")), tuple(r.ids("216")), frozenset(r.ids("210")))
            assert side.setdefault(r.ids("205")[0], this) == this


# ---- determinism --------------------------------------------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    names = sorted(folder.glob("*.csv")) + [folder / "oracle" / "oracle.json", folder / "oracle" / "malformed.json"]
    return {p.name: p.read_bytes() for p in names}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    small = dict(impressions=3_000, users=100, items=400, malformed=25)
    generate(tmp_path / "a", seed=5, **small)
    generate(tmp_path / "b", seed=5, **small)
    generate(tmp_path / "c", seed=6, **small)
    generate(tmp_path / "t", ("test",), seed=5, **small)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 6 and a == b
    assert all(a[name] != c[name] for name in a if name.endswith(".csv"))
    # The test split has its own stream: the same bytes whether train was generated or not.
    t = _files(tmp_path / "t")
    assert t["sample_skeleton_test.csv"] == a["sample_skeleton_test.csv"]
    assert t["common_features_test.csv"] == a["common_features_test.csv"]


# ---- field mix ----------------------------------------------------------------------------


def test_multi_valued_fields_carry_several_ids(data):
    d = data["train"]
    for code in HISTORY:
        per_line = [sum(c == code for c, _, _ in feats) for feats in d.common.values()]
        assert np.mean(per_line) >= 5 and max(per_line) >= 10, code
    intentions = [len(r.ids("210")) for r in d.rows]
    assert 4 <= np.mean(intentions) <= 9
    cross = [len(r.ids("853")) for r in d.rows if r.ids("853")]
    assert np.mean(cross) > 1.3 and max(cross) >= 3


def test_history_weights_are_logs_of_counts(data):
    weights = [float(v) for feats in data["train"].common.values() for c, _, v in feats if c in HISTORY]
    counts = np.exp(weights)
    integral = np.abs(counts - np.round(counts)) < 1e-3 * counts
    assert min(weights) > 0
    assert integral.mean() > 0.8, "mostly ln of a count"
    assert (~integral).mean() > 0.01, "sometimes the log of a non-integer"
    assert {"0.69315", "1.09861", "1.38629"} <= {v for feats in data["train"].common.values() for _, _, v in feats}
    assert set(np.round(counts[integral]).astype(int)) >= {2, 3, 4, 5}
    cross = [float(v) for r in data["train"].rows for c, _, v in r.feats if c in {"508", "509", "702", "853"}]
    assert min(cross) > 0 and np.mean(np.abs(np.exp(cross) - np.round(np.exp(cross))) < 1e-3 * np.exp(cross)) > 0.8


def test_missing_rates_are_near_the_published_ones(data):
    lines = [feats for d in data.values() for feats in d.common.values()]
    rows = [r for d in data.values() for r in d.rows]

    def missing(items, code):
        return np.mean([all(c != code for c, _, _ in (x if isinstance(x, list) else x.feats)) for x in items])

    assert missing(lines, "101") < 0.02
    for code in ("121", "122", "124", "125", "127", "128"):
        assert 0.05 < missing(lines, code) < 0.25, code
    assert 0.45 < missing(lines, "126") < 0.72
    assert 0.25 < missing(lines, "129") < 0.5
    assert 0.15 < missing(rows, "216") < 0.45
    assert 0.2 < missing(rows, "508") < 0.4
    assert 0.68 < missing(rows, "509") < 0.88
    assert 0.68 < missing(rows, "702") < 0.88
    assert 0.49 < missing(rows, "853") < 0.69


# ---- labels and popularity ----------------------------------------------------------------


def test_click_and_conversion_rates(folder, data):
    doc = json.loads((folder / "oracle" / "oracle.json").read_text())
    manifest = json.loads((folder / "oracle" / "malformed.json").read_text())
    clicks = conversions = 0
    for split, d in data.items():
        click = np.array([r.click for r in d.rows])
        conv = np.array([r.conversion for r in d.rows])
        assert 0.03 < click.mean() < 0.05, split
        anomalies = int(((click == 0) & (conv == 1)).sum())
        assert 1 <= anomalies <= 5, "about one per 100k rows, at least one from 10k rows"
        assert manifest[split]["skeleton"]["conversion_without_click"] == anomalies
        stats = doc["splits"][split]
        assert (stats["rows"], stats["clicks"], stats["conversions"]) == (len(d.rows), click.sum(), conv.sum())
        assert stats["common_rows"] == len(d.common)
        clicks += click.sum()
        conversions += (click & conv).sum()
    assert 0.001 < conversions / clicks < 0.015


def test_item_popularity_is_long_tailed(data):
    shown = np.array(sorted(Counter(r.ids("205")[0] for r in data["train"].rows).values(), reverse=True))
    top = shown[: max(1, len(shown) // 100)].sum() / shown.sum()
    assert top > 0.12, f"top 1% of items get {top:.1%} of impressions"
    assert np.mean(shown <= 2) > 0.2, "many items are shown only once or twice"
    assert shown[0] > 20 * np.median(shown)


# ---- the planted structure ----------------------------------------------------------------


def test_clicks_follow_the_planted_interests(data, oracle):
    d = data["test"]
    rows = [r for r in d.rows if d.user_of(r.key) is not None]
    users = np.array([d.user_of(r.key) for r in rows])
    items = np.array([r.ids("205")[0] for r in rows])
    clicked = np.array([r.click for r in rows]) == 1
    p = oracle.click_probability(users, items)
    assert p[clicked].mean() > 2 * p[~clicked].mean()
    # Without the oracle: a click's item category is in the user's history more often.
    in_history = np.array([r.ids("206")[0] - 3_440_000 in {i - 3_000_000 for c, i, _ in d.common[r.key] if c == "109_14"}
                           for r in rows])
    assert in_history[clicked].mean() > in_history[~clicked].mean() + 0.1


def test_histories_reflect_the_users_interests(data, oracle):
    topic_of_category = dict(zip(oracle.item_category_ids.tolist(), oracle.item_topic.tolist()))
    topics_of_user = {u: set(t[w > 0].tolist()) for u, t, w in
                      zip(oracle.user_ids.tolist(), oracle.user_topics, oracle.user_topic_weights)}
    shares, chance = [], []
    d = data["train"]
    for key, feats in d.common.items():
        user = d.user_of(key)
        if user is None:
            continue
        cats = [i - 3_000_000 + 3_440_000 for c, i, _ in feats if c == "109_14"]
        shares.append(np.mean([topic_of_category[c] in topics_of_user[user] for c in cats]))
        chance.append(len(topics_of_user[user]) / oracle.n_topics)
    assert np.mean(shares) > 0.6 > 3 * np.mean(chance)


def test_test_split_shares_the_universe_with_few_cold_starts(data, oracle):
    train_users = {data["train"].user_of(k) for k in data["train"].common}
    train_items = {r.ids("205")[0] for r in data["train"].rows}
    test = data["test"]
    test_users = [test.user_of(r.key) for r in test.rows]
    test_items = [r.ids("205")[0] for r in test.rows]
    assert np.mean([u in train_users for u in test_users]) > 0.7
    assert np.mean([i in train_items for i in test_items]) > 0.85
    cold_users = set(oracle.user_ids[oracle.cold_user].tolist())
    cold_items = set(oracle.item_ids[oracle.cold_item].tolist())
    assert not (train_users & cold_users) and not (train_items & cold_items)
    assert 0 < np.mean([u in cold_users for u in test_users]) < 0.15
    assert 0 < np.mean([i in cold_items for i in test_items]) < 0.15


# ---- malformed lines ----------------------------------------------------------------------


def _bad_feature(feats: list[str]) -> str | None:
    for f in feats:
        if not re.fullmatch(r"[^\x02\x03]+\x02[^\x02\x03]*\x03[^\x02\x03]*", f):
            return "feature_without_separators"
    for f in feats:
        if not re.fullmatch(r"-?[0-9]+", f.split("\x02")[1].split("\x03")[0]):
            return "non_numeric_feature_id"
    for f in feats:
        try:
            float(f.split("\x03")[1])
        except ValueError:
            return "non_numeric_value"
    return None


def _repeats(feats: list[str], singles: set[str]) -> bool:
    codes = Counter(f.split("\x02")[0] for f in feats)
    return any(codes[c] > 1 for c in singles)


def _check_common(lines: list[str]) -> tuple[Counter, set[str], list[tuple[int, str]]]:
    counts, valid, where = Counter(), set(), []
    for n, line in enumerate(lines, 1):
        cols = line.split(",")
        feats = cols[2].split("\x01") if len(cols) == 3 and cols[2] else []
        reason = (
            "empty_line" if line == "" else
            "wrong_column_count" if len(cols) != 3 else
            "bad_common_feature_index" if not re.fullmatch(r"[0-9a-fA-F]+", cols[0]) else
            "bad_feature_num" if not re.fullmatch(r"[0-9]+", cols[1]) else
            _bad_feature(feats) or (
                "feature_num_mismatch" if len(feats) != int(cols[1]) else
                "repeated_single_valued_field" if _repeats(feats, COMMON_SINGLE) else
                "duplicate_common_feature_index" if cols[0] in valid else None
            )
        )
        if reason:
            counts[reason] += 1
            where.append((n, reason))
        else:
            valid.add(cols[0])
    return counts, valid, where


def _check_skeleton(lines: list[str], keys: set[str]) -> tuple[Counter, list[int], list[tuple[int, str]]]:
    counts, sample_ids, where = Counter(), [], []
    for n, line in enumerate(lines, 1):
        cols = line.split(",")
        feats = cols[5].split("\x01") if len(cols) == 6 and cols[5] else []
        reason = (
            "empty_line" if line == "" else
            "wrong_column_count" if len(cols) != 6 else
            "bad_sample_id" if not re.fullmatch(r"[0-9]+", cols[0]) else
            "bad_label" if cols[1] not in ("0", "1") or cols[2] not in ("0", "1") else
            "bad_common_feature_index" if not re.fullmatch(r"[0-9a-fA-F]+", cols[3]) else
            "bad_feature_num" if not re.fullmatch(r"[0-9]+", cols[4]) else
            _bad_feature(feats) or (
                "feature_num_mismatch" if len(feats) != int(cols[4]) else
                "repeated_single_valued_field" if _repeats(feats, SKELETON_SINGLE) else
                "unknown_common_feature_index" if cols[3] not in keys else
                "conversion_without_click" if (cols[1], cols[2]) == ("0", "1") else None
            )
        )
        if reason:
            counts[reason] += 1
        if reason is None or reason == "conversion_without_click":  # a well-formed impression
            sample_ids.append(int(cols[0]))
        else:
            where.append((n, reason))
    return counts, sample_ids, where


def test_planted_malformed_lines_match_the_manifest(tmp_path):
    planted = 40
    generate(tmp_path, seed=11, impressions=12_000, users=150, items=800, malformed=planted)
    manifest = json.loads((tmp_path / "oracle" / "malformed.json").read_text())
    located = json.loads((tmp_path / "oracle" / "malformed_lines.json").read_text())
    required = {
        "empty_line", "wrong_column_count", "bad_sample_id", "bad_label", "bad_feature_num", "feature_num_mismatch",
        "feature_without_separators", "non_numeric_feature_id", "non_numeric_value", "repeated_single_valued_field",
        "unknown_common_feature_index", "duplicate_common_feature_index",
    }
    for split in ("train", "test"):
        common_lines = read_lines(tmp_path / f"common_features_{split}.csv")
        skeleton_lines = read_lines(tmp_path / f"sample_skeleton_{split}.csv")
        common, keys, common_where = _check_common(common_lines)
        skeleton, sample_ids, skeleton_where = _check_skeleton(skeleton_lines, keys)
        assert dict(common) == manifest[split]["common"]
        assert dict(skeleton) == manifest[split]["skeleton"]
        assert sum(common.values()) + sum(skeleton.values()) - skeleton["conversion_without_click"] == planted
        assert set(common) | set(skeleton) >= required
        assert skeleton["conversion_without_click"] >= 1
        assert [list(x) for x in common_where] == located[split]["common"]
        assert [list(x) for x in skeleton_where] == located[split]["skeleton"]
        # The valid lines are untouched: sample ids 1..N in order, empty lines strictly inside.
        assert sample_ids == list(range(1, 12_001))
        assert common_lines[0] and common_lines[-1] and skeleton_lines[0] and skeleton_lines[-1]


# ---- the oracle ---------------------------------------------------------------------------


def test_oracle_top_k_ranks_the_catalogue(folder, data, oracle):
    test = data["test"]
    users = np.array(sorted({test.user_of(k) for k in test.common} - {None}))
    ids, scores = oracle.top_k(users, 100, return_scores=True)
    assert ids.shape == scores.shape == (len(users), 100)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert all(len(set(row)) == 100 for row in ids.tolist())
    assert set(ids.ravel().tolist()) <= set(oracle.item_ids.tolist())
    # Batching does not change the answer; the scores are the clicked-impression probabilities.
    small = oracle.top_k(users[:7], 100, max_cells=3 * len(oracle.item_ids))
    assert np.array_equal(small, ids[:7])
    np.testing.assert_allclose(oracle.clicked_probability(np.repeat(users[:7], 100), ids[:7].ravel()), scores[:7].ravel())
    everything = oracle.clicked_probability(np.repeat(users[:3], len(oracle.item_ids)), np.tile(oracle.item_ids, 3))
    for j in range(3):
        assert scores[j, 0] == pytest.approx(everything[j * len(oracle.item_ids):(j + 1) * len(oracle.item_ids)].max())
    # On the data: impressions of a user's top-100 items are clicked far more often.
    top = {u: set(row) for u, row in zip(users.tolist(), ids.tolist())}
    rows = [(test.user_of(r.key), r.ids("205")[0], r.click) for r in test.rows if test.user_of(r.key) is not None]
    in_top = np.array([i in top[u] for u, i, _ in rows])
    click = np.array([c for _, _, c in rows])
    assert click[in_top].mean() > 2 * click[~in_top].mean()
    # Clicked test items are far more often in the oracle's top-100 than in the most popular 100.
    popular = {i for i, _ in Counter(r.ids("205")[0] for r in data["train"].rows if r.click).most_common(100)}
    clicked = [(u, i) for u, i, c in rows if c]
    assert np.mean([i in top[u] for u, i in clicked]) > np.mean([i in popular for _, i in clicked]) + 0.15
    # Train availability: cold items cannot be shown, so they never lead a train ranking.
    train_top = oracle.top_k(users[:20], 5, split="train")
    assert not set(train_top.ravel().tolist()) & set(oracle.item_ids[oracle.cold_item].tolist())
    assert Oracle.load(folder / "oracle").item_ids.tolist() == oracle.item_ids.tolist()
    with pytest.raises(KeyError, match="unknown user"):
        oracle.top_k([12345], 3)


# ---- the command line ---------------------------------------------------------------------


def test_cli_writes_the_files_and_a_summary(tmp_path):
    out = tmp_path / "raw"
    proc = subprocess.run(
        [sys.executable, "-m", "lakerec.jobs.generate", "--out", str(out), "--split", "train", "--impressions", "2000",
         "--users", "50", "--items", "300", "--seed", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"train\s+2,000\s+\d+", proc.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["common_features_train.csv", "oracle", "sample_skeleton_train.csv"]
    assert len(read_lines(out / "sample_skeleton_train.csv")) == 2000


def test_cli_refuses_bad_sizes_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        generate_job.main(["--out", str(tmp_path), "--impressions", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --impressions must be at least 1 (got 0)"
