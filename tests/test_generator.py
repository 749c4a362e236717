"""The synthetic Ali-CCP generator: byte format, determinism, field mix, rates, long tail,
planted structure, malformed lines, the oracle and the true probabilities of every impression.

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
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakerec.jobs import generate as generate_job
from lakerec.aliccp.generator import GeneratorParams, generate
from lakerec.aliccp.oracle import Oracle, impression_truth_path, read_impression_truth
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
HIGH_RATE = 0.2  # --conversion-rate of the second data set (same seed and sizes as the first)
# The defaults of the planted model (GeneratorParams, documented in oracle.py).
POSITION_SHARES = np.array([0.4, 0.3, 0.2, 0.1])
POSITION_EFFECTS = np.array([0.0, -0.3, -0.6, -0.9])
CONSUMPTION_EFFECTS = np.array([-0.6, -0.2, 0.2, 0.6])  # by user_consumption_2 (field 127) level
CONVERSION_AFFINITY_WEIGHT = 1.0
POSITION_FIRST_ID = 9351665


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


@pytest.fixture(scope="module")
def high_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw_high")
    generate(out, ("train", "test"), seed=7, conversion_rate=HIGH_RATE, **SIZES)
    return out


@pytest.fixture(scope="module")
def high_data(high_folder) -> dict[str, SplitData]:
    return {split: read_split(high_folder, split) for split in ("train", "test")}


def read_truth(folder: Path, split: str) -> pa.Table:
    return pq.read_table(folder / "oracle" / f"impressions_{split}.parquet")


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


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
    names = sorted(folder.glob("*.csv")) + sorted((folder / "oracle").glob("*.parquet")) + [
        folder / "oracle" / "oracle.json", folder / "oracle" / "malformed.json"]
    return {p.name: p.read_bytes() for p in names}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    small = dict(impressions=3_000, users=100, items=400, malformed=25)
    generate(tmp_path / "a", seed=5, **small)
    generate(tmp_path / "b", seed=5, **small)
    generate(tmp_path / "c", seed=6, **small)
    generate(tmp_path / "t", ("test",), seed=5, **small)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 8 and a == b
    assert all(a[name] != c[name] for name in a if name.endswith((".csv", ".parquet")))
    # The test split has its own stream: the same bytes whether train was generated or not.
    t = _files(tmp_path / "t")
    assert t["sample_skeleton_test.csv"] == a["sample_skeleton_test.csv"]
    assert t["common_features_test.csv"] == a["common_features_test.csv"]
    assert t["impressions_test.parquet"] == a["impressions_test.parquet"] and "impressions_train.parquet" not in t
    # Another world written over a folder drops the other split's truth (it would be wrong now).
    generate(tmp_path / "a", ("test",), seed=6, **small)
    assert not (tmp_path / "a" / "oracle" / "impressions_train.parquet").exists()


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


# ---- the true probabilities of every impression -------------------------------------------


def test_impression_truth_has_one_row_per_impression(folder, data, oracle):
    for split, d in data.items():
        table = read_truth(folder, split)
        assert table.schema.names == ["sample_id", "p_click", "p_click_no_position", "p_conversion_given_click", "p_ctcvr"]
        assert table.schema.field("sample_id").type == pa.int64()
        assert all(table.schema.field(c).type == pa.float64() for c in table.schema.names[1:])
        t = {c: table.column(c).to_numpy() for c in table.schema.names}
        assert t["sample_id"].tolist() == [r.sample_id for r in d.rows]
        assert impression_truth_path(folder, split) == folder / "oracle" / f"impressions_{split}.parquet"
        assert all(np.array_equal(v, t[c]) for c, v in read_impression_truth(folder / "oracle", split).items())
        for c in table.schema.names[1:]:
            assert np.all((t[c] > 0) & (t[c] < 1)), c
        np.testing.assert_allclose(t["p_ctcvr"], t["p_click"] * t["p_conversion_given_click"], rtol=1e-12)
        # p_click is at the shown position: without e_p it is the mean over the position shares.
        slot = np.array([r.ids("301")[0] - POSITION_FIRST_ID for r in d.rows])
        free = logit(t["p_click"]) - POSITION_EFFECTS[slot]
        mean = sum(s / (1 + np.exp(-(free + e))) for s, e in zip(POSITION_SHARES, POSITION_EFFECTS))
        np.testing.assert_allclose(t["p_click_no_position"], mean, rtol=1e-9)
        # Same (user, item) pair at other positions: same position-free logit and conversion.
        known = np.array([d.user_of(r.key) is not None for r in d.rows])
        users = np.array([d.user_of(r.key) or 0 for r in d.rows])[known]
        items = np.array([r.ids("205")[0] for r in d.rows])[known]
        pair = users * 10_000_000 + items
        order = np.argsort(pair, kind="stable")
        same = pair[order][1:] == pair[order][:-1]
        assert same.sum() > 100 and len(set(slot[known][order][1:][same]) | set(slot[known][order][:-1][same])) == 4
        for col, v in (("free", free), ("conv", t["p_conversion_given_click"])):
            v = v[known][order]
            np.testing.assert_allclose(v[1:][same], v[:-1][same], rtol=1e-12, err_msg=col)
        # The oracle's position-free pair scores are the file's columns.
        np.testing.assert_allclose(oracle.click_probability(users, items), t["p_click_no_position"][known], rtol=1e-12)
        np.testing.assert_allclose(oracle.conversion_probability(users, items), t["p_conversion_given_click"][known],
                                   rtol=1e-12)
        np.testing.assert_allclose(oracle.ctcvr_probability(users, items),
                                   (t["p_click_no_position"] * t["p_conversion_given_click"])[known], rtol=1e-12)
    with pytest.raises(ValueError, match="unknown split"):
        impression_truth_path(folder, "valid")


def _labels_and_truth(folder: Path, d: SplitData, split: str):
    t = {c: v for c, v in read_impression_truth(folder, split).items()}
    click = np.array([r.click for r in d.rows]) == 1
    conv = np.array([r.conversion for r in d.rows]) == 1
    natural = click | ~conv  # the planted conversion-without-click rows had their click overwritten
    return t, click, conv, natural


def _within(observed: float, p: np.ndarray, sds: float = 4.0) -> bool:
    """A count within `sds` standard deviations of the sum of independent Bernoulli(p)."""
    return abs(observed - p.sum()) < sds * np.sqrt((p * (1 - p)).sum())


def test_realised_rates_agree_with_the_written_probabilities(folder, data, high_folder, high_data):
    for f, dataset in ((folder, data), (high_folder, high_data)):
        for split, d in dataset.items():
            t, click, conv, natural = _labels_and_truth(f, d, split)
            assert _within(click[natural].sum(), t["p_click"][natural]), split
            assert _within((click & conv).sum(), t["p_ctcvr"][natural]), split
            assert _within(conv[click].sum(), t["p_conversion_given_click"][click]), split
            # The position-free probability is calibrated too: its mean is the click rate.
            assert abs(t["p_click_no_position"].mean() - t["p_click"].mean()) < 0.1 * t["p_click"].mean()
    # The flag moved the realised rate to its target; the default stays at the published ~0.55%.
    t, click, conv, _ = _labels_and_truth(high_folder, high_data["train"], "train")
    assert 0.14 < conv[click].mean() < 0.26
    assert 0.15 < t["p_conversion_given_click"][click].mean() < 0.25
    t, click, _, _ = _labels_and_truth(folder, data["train"], "train")
    assert 0.0035 < t["p_conversion_given_click"][click].mean() < 0.008


def test_conversion_rate_flag_changes_conversions_only(folder, data, high_folder, high_data):
    for split in ("train", "test"):
        assert (folder / f"common_features_{split}.csv").read_bytes() == (high_folder / f"common_features_{split}.csv").read_bytes()
        low, high = data[split].rows, high_data[split].rows
        assert [(r.click, r.key, r.feats) for r in low] == [(r.click, r.key, r.feats) for r in high]
        assert sum(r.conversion for r in high) > 10 * max(1, sum(r.conversion for r in low))
        a, b = read_truth(folder, split), read_truth(high_folder, split)
        assert a.column("p_click").equals(b.column("p_click"))
        ratio = b.column("p_conversion_given_click").to_numpy() / a.column("p_conversion_given_click").to_numpy()
        assert ratio.min() > 5


def test_conversion_follows_the_planted_fields(high_folder, high_data):
    oracle = Oracle.load(high_folder)
    d = high_data["train"]
    t, click, conv, _ = _labels_and_truth(high_folder, d, "train")
    p = t["p_conversion_given_click"]
    # The user's field: rows grouped by the user_consumption_2 (127) id on their session's line.
    consumption = {k: next((i for c, i, _ in feats if c == "127"), None) for k, feats in d.common.items()}
    row_level = np.array([consumption[r.key] for r in d.rows], dtype=object)
    levels = sorted({v for v in row_level if v is not None})
    assert len(levels) == 4
    level_index = np.array([-1 if v is None else levels.index(v) for v in row_level])
    means = [p[level_index == j].mean() for j in range(4)]
    assert np.all(np.diff(means) > 0) and means[3] > 2 * means[0], means
    assert means[0] < p[level_index == -1].mean() < means[3]  # absent: no user effect
    high, low = click & (level_index >= 2), click & (level_index <= 1) & (level_index >= 0)
    assert conv[high].mean() > conv[low].mean()
    # Exactly as planted: logit = base + item quality + v[level] + w_c * affinity.
    known = np.array([d.user_of(r.key) is not None for r in d.rows])
    u = oracle.user_index([d.user_of(r.key) for r in np.array(d.rows, dtype=object)[known]])
    i = oracle.item_index([r.ids("205")[0] for r in np.array(d.rows, dtype=object)[known]])
    user_part = (logit(p[known]) - oracle.params["conversion_base_logit"] - oracle.item_conversion_quality[i]
                 - CONVERSION_AFFINITY_WEIGHT * oracle.affinity_idx(u, i))
    planted = np.where(level_index[known] >= 0, CONSUMPTION_EFFECTS[np.maximum(level_index[known], 0)], 0.0)
    np.testing.assert_allclose(user_part, planted, atol=1e-9)
    # The item's part is shared through its category (field 206): most of its variance lies between categories.
    category = dict(zip(oracle.item_ids.tolist(), oracle.item_category_ids.tolist()))
    shown = np.unique([r.ids("205")[0] for r in d.rows])
    assert all(category[r.ids("205")[0]] == r.ids("206")[0] for r in d.rows[:2000])
    q = oracle.item_conversion_quality[oracle.item_index(shown)]
    cat = np.array([category[x] for x in shown.tolist()])
    _, inv, counts = np.unique(cat, return_inverse=True, return_counts=True)
    cat_mean = np.bincount(inv, weights=q) / counts
    within = ((q - cat_mean[inv]) ** 2)[counts[inv] > 1].mean()
    assert within < 0.4 * q.var()
    # Position plays no part in conversion; the CVR is not near-constant: a wide spread.
    assert np.percentile(p[click], 90) > 2.5 * np.percentile(p[click], 10)


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
    assert sorted(p.name for p in (out / "oracle").iterdir() if p.suffix == ".parquet") == ["impressions_train.parquet"]
    assert re.search(r"users: [\d,]+ in sessions, [\d,]+ with clicks \(\d+\.\d clicks each\)", proc.stdout)


def test_cli_session_and_conversion_flags(tmp_path, capsys):
    generate_job.main(["--out", str(tmp_path), "--split", "test", "--impressions", "3000", "--users", "3000",
                       "--items", "300", "--session-min", "2", "--session-max", "2", "--conversion-rate", "0.5"])
    assert len(read_lines(tmp_path / "common_features_test.csv")) == 1500
    d = read_split(tmp_path, "test")
    clicked = [r for r in d.rows if r.click]
    assert 0.35 < np.mean([r.conversion for r in clicked]) < 0.65
    doc = json.loads((tmp_path / "oracle" / "oracle.json").read_text())
    assert doc["params"]["conversion_rate_of_clicks"] == 0.5 and doc["params"]["session_max"] == 2
    # Short sessions, many users: about one click per user with a click.
    stats = doc["splits"]["test"]
    clicks_by_user = Counter(d.user_of(r.key) for r in clicked)
    assert stats["users_with_clicks"] >= len(clicks_by_user) - (None in clicks_by_user)
    assert 1.0 <= stats["clicks_per_user_with_clicks"] < 1.3
    capsys.readouterr()


def test_cli_refuses_bad_sizes_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        generate_job.main(["--out", str(tmp_path), "--impressions", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --impressions must be at least 1 (got 0)"
    for flags, message in ((["--conversion-rate", "1.5"], "--conversion-rate must be between 0 and 1 (got 1.5)"),
                           (["--session-min", "9", "--session-max", "3"], "--session-min must be at least 1")):
        with pytest.raises(SystemExit) as e:
            generate_job.main(["--out", str(tmp_path), *flags])
        assert e.value.code == 2
        assert capsys.readouterr().err.strip().startswith("error: " + message)
