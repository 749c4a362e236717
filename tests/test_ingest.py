"""Ingest: each parsing rule, each quarantine reason, lossless multi-valued fields, reconcile,
idempotent re-runs, CRLF input. Real local Spark and Delta; tiny lines written inline."""

from __future__ import annotations

import re

import pytest
from chispa import assert_df_equality

from lakerec import ingest
from lakerec.aliccp import parse
from lakerec.aliccp import reasons as R
from lakerec.config import override
from lakerec.errors import InputDataError

pytestmark = pytest.mark.heavy(seconds=280)

S, F, V = "\x01", "\x02", "\x03"


def feats(*items: tuple[str, str, str]) -> str:
    return S.join(f"{field}{F}{fid}{V}{value}" for field, fid, value in items)


def skel(sample_id, click, conv, key, *items, feature_num=None) -> str:
    n = len(items) if feature_num is None else feature_num
    return f"{sample_id},{click},{conv},{key},{n},{feats(*items)}"


def common(key, *items, feature_num=None) -> str:
    n = len(items) if feature_num is None else feature_num
    return f"{key},{n},{feats(*items)}"


@pytest.fixture
def cfg(cfg):
    """The shared per-test config; these hand-written files are mostly bad lines by design, so the
    quarantine-share refusal (tests/test_ingest_refusals.py) is off."""
    return override(cfg, ingest__max_quarantine_share=1.0)


def lines_df(spark, lines: list[str]):
    return spark.createDataFrame(
        [("f", i + 1, line, "train") for i, line in enumerate(lines)],
        "path string, line_number bigint, raw_line string, split string",
    )


@pytest.mark.parametrize(
    "line, reason",
    [
        ("", R.EMPTY_LINE),
        ("1,0,0,a1,0", R.WRONG_COLUMN_COUNT),
        ("1,0,0,a1,0,,extra", R.WRONG_COLUMN_COUNT),
        (skel("x1", 0, 0, "a1", ("205", "1", "1.0")), R.BAD_SAMPLE_ID),
        (skel(-3, 0, 0, "a1", ("205", "1", "1.0")), R.BAD_SAMPLE_ID),
        (skel(1, 2, 0, "a1", ("205", "1", "1.0")), R.BAD_LABEL),
        (skel(1, 0, "yes", "a1", ("205", "1", "1.0")), R.BAD_LABEL),
        (skel(1, 0, 0, "", ("205", "1", "1.0")), R.BAD_COMMON_FEATURE_INDEX),
        (skel(1, 0, 0, "xyz", ("205", "1", "1.0")), R.BAD_COMMON_FEATURE_INDEX),
        (skel(1, 0, 0, "a1", ("205", "1", "1.0"), feature_num="one"), R.BAD_FEATURE_NUM),
        ("1,0,0,a1,2," + feats(("205", "1", "1.0")) + S + "2061.0", R.FEATURE_WITHOUT_SEPARATORS),
        ("1,0,0,a1,1," + f"{F}7{V}1.0", R.FEATURE_WITHOUT_SEPARATORS),  # empty field id
        (skel(1, 0, 0, "a1", ("205", "12ab", "1.0")), R.NON_NUMERIC_FEATURE_ID),
        (skel(1, 0, 0, "a1", ("205", "99999999999999999999999", "1.0")), R.NON_NUMERIC_FEATURE_ID),
        (skel(1, 0, 0, "a1", ("205", "1", "heavy")), R.NON_NUMERIC_VALUE),
        (skel(1, 0, 0, "a1", ("205", "1", "")), R.NON_NUMERIC_VALUE),
        (skel(1, 0, 0, "a1", ("205", "1", "1.0"), feature_num=3), R.FEATURE_NUM_MISMATCH),
        (skel(1, 0, 0, "a1", ("205", "1", "1.0"), ("205", "2", "1.0")), R.REPEATED_SINGLE_VALUED_FIELD),
        (skel(1, 0, 1, "a1", ("205", "1", "1.0")), None),  # labels are checked later (needs no key)
        (skel(7, 1, 1, "A1", ("205", "1", "1.0"), ("210", "5", "1.0"), ("210", "6", "1.0")), None),
        (skel(8, 0, 0, "a1", feature_num=0), None),  # no features at all is still a valid line
    ],
)
def test_skeleton_line_rules(spark, line, reason):
    got = parse.parse_skeleton(lines_df(spark, [line])).first()
    assert got.reason == reason
    if reason is None:
        assert got.sample_id is not None and got.feature_list is not None
    else:
        assert got.sample_id is None and got.feature_list is None and got.raw_line == line


@pytest.mark.parametrize(
    "line, reason",
    [
        ("", R.EMPTY_LINE),
        ("a1,1", R.WRONG_COLUMN_COUNT),
        (common("not-hex", ("101", "1", "1.0")), R.BAD_COMMON_FEATURE_INDEX),
        (common("a1", ("101", "1", "1.0"), feature_num="-1"), R.BAD_FEATURE_NUM),
        (common("a1", ("101", "1", "1.0"), feature_num=2), R.FEATURE_NUM_MISMATCH),
        (common("a1", ("101", "1", "1.0"), ("101", "2", "1.0")), R.REPEATED_SINGLE_VALUED_FIELD),
        (common("a1", ("109_14", "1", "0.69315"), ("109_14", "2", "1.09861")), None),
    ],
)
def test_common_line_rules(spark, line, reason):
    assert parse.parse_common(lines_df(spark, [line])).first().reason == reason


def test_named_columns_and_other_features_hold_every_feature_once(spark):
    """Every feature lands in exactly one place: its field's column, or other_features when no column
    holds it exactly (an unknown field; a plain field whose VALUE is not 1.0 keeps its id in the column)."""
    line = skel(5, 1, 0, "ab12", ("210", "9", "1.0"), ("205", "4000001", "1.0"), ("853", "77", "0.69315"),
                ("999", "5", "1.0"), ("206", "33", "2.0"), ("207", "8", "1"))
    parsed = parse.parse_skeleton(lines_df(spark, [line]))
    head = parsed.select("sample_id", "click", "conversion", "common_feature_index", "feature_count").first()
    assert tuple(head) == (5, 1, 0, "ab12", 6)
    named = parse.with_named_columns(parsed, "skeleton", "sample_id")
    row = named.select("*", parse.features_held("skeleton").alias("held")).first()
    assert (row.item_id, row.item_category, row.item_shop, row.item_brand) == (4000001, 33, 8, None)
    assert [(x.id, x.weight) for x in row.item_intention] == [(9, 1.0)]
    assert [(x.id, x.weight) for x in row.user_item_intentions] == [(77, 0.69315)]
    assert [tuple(x) for x in row.other_features] == [("999", 5, 1.0), ("206", 33, 2.0)]
    assert row.held == 6  # what the exploded view gives: item_category once, from other_features
    plain = parse.with_named_columns(parse.parse_skeleton(lines_df(spark, [skel(6, 0, 0, "ab12", ("205", "1", "1.0"))])),
                                     "skeleton", "sample_id").first()
    assert plain.other_features == []  # empty, not null: the views' array_contains needs a value


def test_negative_ids_and_exponent_values_parse_in_every_table_shape(spark):
    """The fast check's number forms reach the typed columns unchanged."""
    line = skel(9, 0, 0, "a1", ("205", "-12", "1e-3"), ("210", "7", ".5"), ("508", "3", "+2.5E2"))
    parsed = parse.parse_skeleton(lines_df(spark, [line]))
    assert parsed.first().reason is None
    row = parse.with_named_columns(parsed, "skeleton", "sample_id").first()
    assert (row.item_id, row.user_item_categories, row.user_item_categories_weight) == (-12, 3, 250.0)
    assert [(x.id, x.weight) for x in row.item_intention] == [(7, 0.5)] and row.item_brand is None
    assert [tuple(x) for x in row.other_features] == [("205", -12, 0.001)]  # item_id's VALUE is not 1.0


def test_named_columns_keep_every_id_and_weight(spark):
    line = common(
        "a1", ("101", "11", "1.0"), ("109_14", "301", "0.69315"), ("124", "3438768", "1.0"),
        ("109_14", "302", "1.09861"), ("109_14", "303", "2.5"), ("150_14", "9", "0.1"),
    )
    ctx = parse.to_user_contexts(parse.parse_common(lines_df(spark, [line]))).first()
    assert ctx.user_id == 11 and ctx.user_gender == 3438768 and ctx.user_age is None
    assert [(h.id, h.weight) for h in ctx.user_categories] == [(301, 0.69315), (302, 1.09861), (303, 2.5)]
    assert [(h.id, h.weight) for h in ctx.user_intentions] == [(9, 0.1)]
    assert ctx.user_shops == [] and ctx.user_brands == []


def write_raw(folder, split, common_lines, skeleton_lines, newline="\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"common_features_{split}.csv").write_bytes((newline.join(common_lines) + newline).encode())
    (folder / f"sample_skeleton_{split}.csv").write_bytes((newline.join(skeleton_lines) + newline).encode())


COMMON_LINES = [
    common("a1", ("101", "11", "1.0"), ("121", "21", "1.0"), ("109_14", "301", "0.69315"), ("109_14", "302", "1.09861")),
    common("b2", ("110_14", "401", "0.5"), ("127_14", "501", "0.69315"), ("127_14", "502", "0.69315")),  # no user_id
    common("a1", ("101", "13", "1.0")),  # duplicate key: the first line wins
    "b3,2,garbage",
]
SKELETON_LINES = [
    skel(1, 0, 0, "a1", ("205", "4000001", "1.0"), ("210", "501", "1.0"), ("210", "502", "1.0"), ("508", "601", "0.69315")),
    skel(2, 1, 0, "a1", ("301", "9351665", "1.0"), ("205", "4000002", "1.0"), ("853", "7", "0.69315"), ("853", "8", "1.5")),
    skel(3, 1, 1, "b2", ("205", "4000003", "1.0")),
    skel(4, 0, 1, "b2", ("205", "4000003", "1.0")),  # conversion without click
    skel(5, 0, 0, "ff", ("205", "4000003", "1.0")),  # unknown key
    "",
    skel(6, 3, 0, "a1", ("205", "4000003", "1.0")),
]


def test_ingest_writes_lossless_tables_and_reconciles(spark, cfg, tmp_path):
    write_raw(tmp_path / "raw", "train", COMMON_LINES, SKELETON_LINES)
    reports = ingest.run(spark, cfg, str(tmp_path / "raw"), ("train",))
    by_file = {r.file: r for r in reports}
    assert (by_file["common"].lines_read, by_file["common"].rows_written, by_file["common"].rows_quarantined) == (4, 2, 2)
    assert (by_file["skeleton"].lines_read, by_file["skeleton"].rows_written, by_file["skeleton"].rows_quarantined) == (7, 3, 4)
    assert by_file["skeleton"].quarantined_by_reason == {
        R.CONVERSION_WITHOUT_CLICK: 1, R.UNKNOWN_COMMON_FEATURE_INDEX: 1, R.EMPTY_LINE: 1, R.BAD_LABEL: 1,
    }
    assert by_file["common"].quarantined_by_reason == {R.DUPLICATE_COMMON_FEATURE_INDEX: 1, R.FEATURE_WITHOUT_SEPARATORS: 1}
    assert (by_file["common"].features_written, by_file["skeleton"].features_written) == (7, 9)

    quarantine = spark.table(cfg.table("quarantine")).select("file", "line_number", "reason").collect()
    assert sorted(map(tuple, quarantine)) == [
        ("common", 3, R.DUPLICATE_COMMON_FEATURE_INDEX), ("common", 4, R.FEATURE_WITHOUT_SEPARATORS),
        ("skeleton", 4, R.CONVERSION_WITHOUT_CLICK), ("skeleton", 5, R.UNKNOWN_COMMON_FEATURE_INDEX),
        ("skeleton", 6, R.EMPTY_LINE), ("skeleton", 7, R.BAD_LABEL),
    ]

    samples = {r.sample_id: r for r in spark.table(cfg.table("samples")).collect()}
    assert sorted(samples) == [1, 2, 3]
    s1, s2, s3 = samples[1], samples[2], samples[3]
    assert (s1.user_id, s1.user_profile, s1.item_id, s1.position) == (11, 21, 4000001, None)
    assert [(x.id, x.weight) for x in s1.item_intention] == [(501, 1.0), (502, 1.0)]
    assert (s1.user_item_categories, s1.user_item_categories_weight) == (601, 0.69315)
    assert [(x.id, x.weight) for x in s2.user_item_intentions] == [(7, 0.69315), (8, 1.5)]
    assert s2.position == 9351665
    assert s3.user_id is None and s3.conversion == 1  # user_id may be absent; the row is kept

    exploded = spark.table(cfg.table("skeleton_features")).where("sample_id = 2").select("field", "feature_id", "value")
    assert sorted(map(tuple, exploded.collect())) == [
        ("205", 4000002, 1.0), ("301", 9351665, 1.0), ("853", 7, 0.69315), ("853", 8, 1.5)
    ]
    wide = spark.table(cfg.table("samples_wide")).where("sample_id = 1").first()
    assert [(x.id, x.weight) for x in wide.user_categories] == [(301, 0.69315), (302, 1.09861)]
    report = spark.table(cfg.table("ingest_report")).collect()
    assert all(r.lines_read == r.rows_written + r.rows_quarantined for r in report) and len(report) == 2


def triples(line: str, key_column: int) -> set[tuple]:
    """A raw line's features as (key, field, id, value), read in Python."""
    cols = line.split(",")
    out = set()
    for feature in cols[-1].split(S):
        field, rest = feature.split(F)
        fid, value = rest.split(V)
        out.add((cols[key_column], field, int(fid), float(value)))
    return out


def test_exploded_views_give_back_every_feature_of_the_raw_lines(spark, cfg, tmp_path):
    """skeleton_features and common_features are views over samples and user_contexts: they return
    exactly the raw lines' features, unknown fields and plain fields with a VALUE other than 1.0 too,
    and a query of one field reads only that field's column."""
    commons = [
        common("a1", ("101", "11", "1.0"), ("124", "3", "0.5"), ("109_14", "301", "0.69315"), ("777", "1", "2.0")),
        common("b2", ("101", "12", "1.0"), ("109_14", "301", "0.69315"), ("109_14", "301", "1.5")),
    ]
    skeletons = [
        skel(1, 0, 0, "a1", ("205", "4000001", "1.0"), ("206", "7", "3.0"), ("210", "501", "1.0"), ("210", "501", "0.5")),
        skel(2, 1, 0, "b2", ("205", "4000002", "1.0"), ("508", "601", "0.69315"), ("999", "42", "1.0"), ("999", "43", "-1")),
        skel(3, 1, 0, "b2", ("205", "4000003", "1.0")),
    ]
    write_raw(tmp_path / "raw", "train", commons, skeletons)
    reports = {r.file: r for r in ingest.run(spark, cfg, str(tmp_path / "raw"), ("train",))}
    for view, lines, key, file in (("skeleton_features", skeletons, 0, "skeleton"),
                                   ("common_features", commons, 0, "common")):
        rows = spark.table(cfg.table(view)).collect()
        expected = set().union(*(triples(line, key) for line in lines))
        assert {(str(r[1]), r.field, r.feature_id, r.value) for r in rows} == expected
        assert len(rows) == reports[file].features_written == sum(len(ln.split(S)) for ln in lines)
    samples = {r.sample_id: r for r in spark.table(cfg.table("samples")).collect()}
    assert samples[1].item_category == 7 and [tuple(x) for x in samples[1].other_features] == [("206", 7, 3.0)]
    assert [tuple(x) for x in samples[2].other_features] == [("999", 42, 1.0), ("999", 43, -1.0)]
    one_field = spark.table(cfg.table("skeleton_features")).where("field = '206'")
    assert {(r.sample_id, r.feature_id, r.value) for r in one_field.collect()} == {(1, 7, 3.0)}
    read = " ".join(re.findall(r"ReadSchema: (\S+)", one_field._jdf.queryExecution().executedPlan().toString()))
    others = [c for c in spark.table(cfg.table("samples")).columns if c not in ("split", "sample_id", "item_category",
                                                                                "other_features")]
    assert "item_category:" in read and not [c for c in others if re.search(rf"[<,]{c}:", read)], read


def test_rerun_is_idempotent_and_crlf_gives_the_same_tables(spark, cfg, tmp_path):
    write_raw(tmp_path / "lf", "train", COMMON_LINES, SKELETON_LINES)
    write_raw(tmp_path / "crlf", "train", COMMON_LINES, SKELETON_LINES, newline="\r\n")
    ingest.run(spark, cfg, str(tmp_path / "lf"), ("train",))
    tables = ["samples", "user_contexts", "skeleton_features", "common_features", "quarantine"]
    first = {t: spark.table(cfg.table(t)).collect() for t in tables}
    ingest.run(spark, cfg, str(tmp_path / "crlf"), ("train",))
    for t in tables:
        assert_df_equality(
            spark.table(cfg.table(t)), spark.createDataFrame(first[t], spark.table(cfg.table(t)).schema),
            ignore_row_order=True,
        )
    history = spark.sql(f"DESCRIBE HISTORY {cfg.table('samples')}").count()
    assert history == 2  # a new version replaced the old one; time travel keeps the first


def test_ingesting_one_split_keeps_the_other(spark, cfg, tmp_path):
    write_raw(tmp_path / "raw", "train", COMMON_LINES, SKELETON_LINES)
    write_raw(tmp_path / "raw", "test", COMMON_LINES[:1], SKELETON_LINES[:2])
    ingest.run(spark, cfg, str(tmp_path / "raw"), ("train", "test"))
    ingest.run(spark, cfg, str(tmp_path / "raw"), ("test",))
    counts = {r.split: r["count"] for r in spark.table(cfg.table("samples")).groupBy("split").count().collect()}
    assert counts == {"train": 3, "test": 2}
    assert spark.table(cfg.table("ingest_report")).count() == 4
    # The second run quarantined nothing of test, as the first: its overwrite of quarantine had
    # nothing to add or remove and made no commit (the row check counts that as 0 rows, not
    # the first run's commit). Every commit the runs made carries its run's id.
    from delta.tables import DeltaTable

    runs = [r.run_id for r in spark.table(cfg.table("lake_runs")).where("state = 'complete'").orderBy("at").collect()]
    for table, made_by in (("samples", runs), ("quarantine", runs[:1]), ("ingest_report", runs)):
        history = DeltaTable.forName(spark, cfg.table(table)).history().orderBy("version").collect()
        assert [h.userMetadata for h in history] == [f"lakerec ingest run {r}" for r in made_by], table


def test_missing_raw_file_is_a_clear_error_and_writes_nothing(spark, cfg, tmp_path):
    write_raw(tmp_path / "raw", "train", COMMON_LINES, SKELETON_LINES)
    with pytest.raises(InputDataError, match="common_features_test.csv not found"):
        ingest.run(spark, cfg, str(tmp_path / "raw"), ("train", "test"))
    assert not spark.catalog.tableExists(cfg.table("samples"))
    with pytest.raises(InputDataError, match="unknown split"):
        ingest.run(spark, cfg, str(tmp_path / "raw"), ("validation",))


def test_rejected_lines_keep_their_number_and_text_across_read_blocks(spark, cfg, tmp_path):
    """A skeleton file of many read blocks: each rejected line's number and raw text in quarantine
    are the file's, repeats too (valid when parsed, so their text is read back for quarantine)."""
    n = 6000
    lines = [skel(i, 0, 0, "a1", ("205", str(i), "1.0")) for i in range(1, n + 1)]
    planted = {
        17: ("not,a,line", R.WRONG_COLUMN_COUNT),
        2500: (skel(3, 0, 0, "a1", ("205", "9", "1.0")), R.DUPLICATE_SAMPLE_ID),  # sample 3 is line 3
        4000: ("", R.EMPTY_LINE),
        5999: (skel(5999, 7, 0, "a1", ("205", "1", "1.0")), R.BAD_LABEL),
    }
    for number, (text, _) in planted.items():
        lines[number - 1] = text
    commons = [common("a1", ("101", "11", "1.0")), common("a1", ("101", "12", "1.0"))]
    write_raw(tmp_path / "raw", "train", commons, lines)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16k")  # ~11 blocks of the skeleton file
    try:
        reports = {r.file: r for r in ingest.run(spark, cfg, str(tmp_path / "raw"), ("train",))}
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert (reports["skeleton"].lines_read, reports["skeleton"].rows_written) == (n, n - len(planted))
    got = {(q.file, q.line_number, q.raw_line, q.reason) for q in spark.table(cfg.table("quarantine")).collect()}
    assert got == {("skeleton", k, text, reason) for k, (text, reason) in planted.items()} | {
        ("common", 2, commons[1], R.DUPLICATE_COMMON_FEATURE_INDEX)}
    assert spark.table(cfg.table("samples")).where("sample_id = 3").first().item_id == 3  # the first line won


def test_very_long_lines_parse(spark):
    """Real common lines carry hundreds of features; the line check must not blow the stack."""
    history = [("109_14", str(1000 + i), "0.69315") for i in range(5000)]
    got = parse.parse_common(lines_df(spark, [common("a1", ("101", "11", "1.0"), *history)])).first()
    assert got.reason is None and got.feature_count == 5001
    assert len(parse.to_user_contexts(parse.parse_common(lines_df(spark, [common("a1", *history)]))).first()
               .user_categories) == 5000
    bad = parse.parse_common(lines_df(spark, [common("a1", *history[:-1], ("109_14", "7", "x"))])).first()
    assert bad.reason == R.NON_NUMERIC_VALUE
