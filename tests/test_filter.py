"""Frequency filtering, vocabularies and training tables (lakerec.filtering, lakerec/sql/filter/).

Every expectation below is worked out by hand from the rows written next to it.
"""

from __future__ import annotations

import os

import pytest
from chispa import assert_df_equality

from lakerec.jobs import filter as filter_job
from lakerec.jobs import sql as sql_job
from lakerec import filtering
from lakerec.config import override
from lakerec.errors import ConfigError, MissingTableError
from lakerec.schema import tables as T
from lakerec.sqlfiles import run_statements, sql_file
from lakerec.tables import table_version
from tests.builders import contexts_from_samples, sample, write_samples, write_user_contexts
from tests.conftest import REPO

pytestmark = pytest.mark.heavy(seconds=220)

ROWS_SCHEMA = "sample_id bigint, user_id bigint, item_id bigint, click int, conversion int"
L = 3  # history_length in these tests
K = 2  # item_intention_length


def rows_frame(spark, pairs):
    """Impressions (user, item) numbered 1..n, labels 0."""
    return spark.createDataFrame([(i, u, it, 0, 0) for i, (u, it) in enumerate(pairs, 1)], ROWS_SCHEMA)


def kept_ids(result: filtering.FilterResult) -> set[int]:
    return {r.sample_id for r in result.kept.collect()}


def steps(result: filtering.FilterResult) -> list[tuple]:
    return [
        (s.round, s.step, s.rows_before, s.rows_after, s.users_before, s.users_after, s.items_before, s.items_after)
        for s in result.steps
    ]


def with_filter(cfg, **values):
    return override(cfg, **{f"filter__{k}": v for k, v in values.items()})


# 8 impressions: item 1 has 3, items 2 and 3 have 2, item 4 has 1.
#   N=2 drops row 7 (item 4); then user 3 (row 6) and user 4 (row 8) have 1 < M=2 left.
#   Single pass keeps rows 1-5, where items 2 and 3 are left with one impression each.
#   k-core: round 2 drops items 2 and 3 (rows 3, 5), then user 2 (row 4) has 1 left;
#   round 3 finds item 1 with 2 impressions and stops: rows 1 and 2.
PAIRS = [(1, 1), (1, 1), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3)]


def test_single_pass_keeps_items_then_users_among_kept_items(spark, cfg):
    result = filtering.frequency_filter(spark, with_filter(cfg, min_item_count=2, min_user_count=2), rows_frame(spark, PAIRS))
    assert kept_ids(result) == {1, 2, 3, 4, 5}
    assert result.rounds == 1
    assert steps(result) == [
        (1, "items", 8, 7, 4, 4, 4, 3),
        (1, "users", 7, 5, 4, 2, 3, 3),
    ]


def test_kcore_repeats_until_every_user_and_item_meets_its_threshold(spark, cfg):
    conf = with_filter(cfg, min_item_count=2, min_user_count=2, kcore=True)
    result = filtering.frequency_filter(spark, conf, rows_frame(spark, PAIRS))
    assert kept_ids(result) == {1, 2}
    assert result.rounds == 3
    assert steps(result) == [
        (1, "items", 8, 7, 4, 4, 4, 3),
        (1, "users", 7, 5, 4, 2, 3, 3),
        (2, "items", 5, 3, 2, 2, 3, 1),
        (2, "users", 3, 2, 2, 1, 1, 1),
        (3, "items", 2, 2, 1, 1, 1, 1),
    ]


def test_kcore_on_rows_that_already_meet_the_thresholds_runs_one_round(spark, cfg):
    conf = with_filter(cfg, min_item_count=2, min_user_count=2, kcore=True)
    result = filtering.frequency_filter(spark, conf, rows_frame(spark, [(1, 1), (1, 2), (2, 1), (2, 2)]))
    assert kept_ids(result) == {1, 2, 3, 4}
    assert result.rounds == 1
    assert steps(result) == [(1, "items", 4, 4, 2, 2, 2, 2), (1, "users", 4, 4, 2, 2, 2, 2)]


def test_rows_without_a_user_count_for_their_item_but_are_never_kept(spark, cfg):
    # Item 1 reaches N=2 only thanks to the user-less row 1; item 2 (row 3) does not.
    pairs = [(None, 1), (5, 1), (5, 2)]
    result = filtering.frequency_filter(spark, with_filter(cfg, min_item_count=2, min_user_count=1), rows_frame(spark, pairs))
    assert kept_ids(result) == {2}
    assert steps(result) == [(1, "items", 3, 2, 1, 1, 2, 1), (1, "users", 2, 1, 1, 1, 1, 1)]


def test_thresholds_that_keep_nothing_end_with_the_counts_of_every_step(spark, cfg):
    with pytest.raises(filtering.EmptyFilterError) as e:
        filtering.frequency_filter(spark, with_filter(cfg, min_item_count=2, min_user_count=4), rows_frame(spark, PAIRS))
    msg = str(e.value)
    assert "round 1 items (>= 2): rows 8 -> 7, users 4 -> 4, items 4 -> 3" in msg
    assert "round 1 users (>= 4): rows 7 -> 0, users 4 -> 0, items 3 -> 0" in msg
    assert "--min-user-count" in msg


def test_no_train_rows_says_to_ingest_the_train_split(spark, cfg):
    with pytest.raises(filtering.EmptyFilterError, match="samples has no train rows.*python -m lakerec.jobs.ingest"):
        filtering.frequency_filter(spark, cfg, spark.createDataFrame([], ROWS_SCHEMA))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_item_count": 0}, "--min-item-count or filter.min_item_count must be a positive integer, got 0"),
        ({"min_user_count": -3}, "--min-user-count or filter.min_user_count must be a positive integer, got -3"),
        ({"history_length": 0}, "filter.history_length must be a positive integer"),
        ({"label": "purchase"}, "must be one of click, conversion"),
    ],
)
def test_bad_settings_are_refused(base_cfg, values, message):
    with pytest.raises(ConfigError, match=message):
        with_filter(base_cfg, **values)


def test_cli_refuses_a_non_positive_threshold_before_starting_spark(capsys):
    with pytest.raises(SystemExit) as e:
        filter_job.main(["--min-item-count", "0"])
    assert e.value.code == 2
    assert "--min-item-count or filter.min_item_count must be a positive integer, got 0" in capsys.readouterr().err


def test_missing_upstream_table_names_the_job_to_run(spark, cfg):
    with pytest.raises(MissingTableError, match=r"samples does not exist yet: run `python -m lakerec.jobs.ingest` first"):
        filtering.run(spark, cfg)


# ---------------------------------------------------------------------------------------
# A whole run on hand-built samples and user_contexts (N = M = 2, L = 3, 2 item intentions)
#
# train: item 100 has rows 1, 2, 4, 7, 9; item 200 rows 3, 5; items 300 (6) and 400 (8) one each.
#   Items step keeps 100 and 200 (rows 1-5, 7, 9). Users: 10 has 3 rows, 20 has 2, 30 has 1
#   (row 7), row 9 has no user: kept rows 1-5. Positives (click): 1, 3, 4.
# test: 101 known pair; 102 user 30 (filtered out); 103 item 300 (filtered out);
#   104 user 40 and item 999 (never seen); 105 a negative; 106 no user.
USERS = {10: {"user_profile": 61, "user_gender": 81}, 20: {"user_profile": 62, "user_gender": 81},
         30: {"user_profile": 63}, 40: {"user_profile": 61}, None: {}}
ITEMS = {
    100: {"item_category": 1001, "item_shop": 5001, "item_intention": [71, 72, 73]},
    200: {"item_category": 1002, "item_shop": 5002, "item_brand": 9002, "item_intention": [72, 74]},
    300: {"item_category": 1003, "item_shop": 5003, "item_intention": [75]},
    400: {"item_category": 1004},
    999: {"item_category": 1001, "item_intention": [73, 99]},
}


def row(sample_id, user, item, split="train", **labels):
    return sample(sample_id, user, item, split=split, **USERS[user], **ITEMS[item], **labels)


LAKE_ROWS = [
    row(1, 10, 100, click=1), row(2, 10, 100), row(3, 10, 200, click=1, conversion=1),
    row(4, 20, 100, click=1), row(5, 20, 200), row(6, 30, 300, click=1), row(7, 30, 100),
    row(8, 20, 400), row(9, None, 100, click=1),
    row(101, 10, 100, "test", click=1), row(102, 30, 100, "test", click=1), row(103, 10, 300, "test", click=1),
    row(104, 40, 999, "test", click=1), row(105, 20, 200, "test"), row(106, None, 100, "test", click=1),
]
HISTORIES = {
    "user_categories": {10: [(501, 0.5), (502, 2.0), (503, 1.0), (504, 1.0)], 20: [(502, 0.25)], 30: [(503, 1.0)]},
    "user_shops": {10: [(601, 1.0)]},
}


@pytest.fixture(scope="module")
def lake_run(spark, base_cfg):
    """Two runs on the same input; the tables as the first run left them, and both summaries."""
    cfg = with_filter(
        override(base_cfg, database=f"filter_lake_{os.getpid()}"),
        min_item_count=2, min_user_count=2, history_length=L, item_intention_length=K,
    )
    spark.sql(f"DROP DATABASE IF EXISTS {cfg.database} CASCADE")
    spark.sql(f"CREATE DATABASE {cfg.database}")
    contexts = contexts_from_samples(LAKE_ROWS, **HISTORIES)
    for ctx in contexts:  # a test-only id with the largest weight: not in the vocabulary, so left out
        if ctx["split"] == "test" and ctx["user_id"] == 10:
            ctx["user_categories"] = [(599, 9.0)] + ctx["user_categories"]
    write_samples(spark, cfg, LAKE_ROWS)
    write_user_contexts(spark, cfg, contexts)
    first = filtering.run(spark, cfg)
    tables = {t: spark.table(cfg.table(t)).collect() for t in filtering.OUTPUT_TABLES}
    second = filtering.run(spark, cfg)
    return cfg, first, second, tables


def test_user_and_item_vocab_are_contiguous_with_zero_out_of_vocabulary(spark, lake_run):
    cfg, *_ = lake_run
    expected_users = spark.createDataFrame(
        [(10, 1, 3, 2, 1), (20, 2, 2, 1, 0)],
        "user_id bigint, user_index int, impressions bigint, clicks bigint, conversions bigint",
    )
    assert_df_equality(spark.table(cfg.table("user_vocab")), expected_users, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    # Item intentions: all weights are 1.0, so the smaller ids win (71, 72 of 71-73), whatever their index.
    expected_items = spark.createDataFrame(
        [
            (100, 1, 3, 2, 0, 1, 1, 0, [2, 1], [1.0, 1.0]),
            (200, 2, 2, 1, 1, 2, 2, 1, [1, 4], [1.0, 1.0]),
        ],
        "item_id bigint, item_index int, impressions bigint, clicks bigint, conversions bigint, "
        "item_category_index int, item_shop_index int, item_brand_index int, "
        "item_intention_ids array<int>, item_intention_weights array<float>",
    )
    assert_df_equality(spark.table(cfg.table("item_vocab")), expected_items, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_vocab_indices_span_partitions_without_a_global_window(spark, lake_run):
    """user_index / item_index 1..n by count desc then id, with the sorted ids over several partitions.

    40 users: user u has (u % 7) + 1 impressions, so counts tie often and the id breaks the
    ties. Adaptive execution is off here, so the sort keeps its 4 partitions (AQE would merge
    rows this few into one, and the per-partition offsets would go untested), and as a user may
    have it: the offsets were once a self-join that Spark failed to resolve without AQE.
    """
    cfg, *_ = lake_run
    users = range(1, 41)
    rows = [(1_000 + u * 10 + k, u, 500 + u, 0, 0) for u in users for k in range((u % 7) + 1)]
    saved = {k: spark.conf.get(k) for k in ("spark.sql.shuffle.partitions", "spark.sql.adaptive.enabled")}
    spark.conf.set("spark.sql.shuffle.partitions", "4")
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        spark.createDataFrame(rows, ROWS_SCHEMA).createOrReplaceTempView("kept_rows")
        filtering.run_sql(spark, cfg, "03_vocabularies.sql")
        by_count = sorted(users, key=lambda u: (-((u % 7) + 1), u))
        expected = {u: i for i, u in enumerate(by_count, 1)}
        assert {r.user_id: r.user_index for r in spark.table("user_vocab").collect()} == expected
        assert {r.item_id - 500: r.item_index for r in spark.table("kept_items").collect()} == expected
        assert spark.table("user_order").select("_part").distinct().count() > 1
        for view in ("user_vocab", "kept_items"):
            plan = spark.table(view)._jdf.queryExecution().executedPlan().toString()
            assert "Window" not in plan, plan
    finally:
        for k, v in saved.items():
            spark.conf.set(k, v)
        for view in filtering.temp_views():
            spark.catalog.dropTempView(view)


def test_written_tables_carry_the_registry_column_comments(spark, lake_run):
    cfg, *_ = lake_run
    for name in ("user_vocab", "item_vocab", "train_interactions", "filter_runs"):
        described = {r.col_name: r.comment for r in spark.sql(f"DESCRIBE TABLE {cfg.table(name)}").collect()
                     if r.col_name and not r.col_name.startswith("#")}
        registry = {c.name: c.comment for c in T.table(name).columns}
        assert {c: described.get(c) for c in registry} == registry, name


def test_feature_vocab_counts_kept_impressions_and_orders_by_frequency_then_id(spark, lake_run):
    cfg, *_ = lake_run
    expected = spark.createDataFrame(
        [
            ("item_category", 1001, 1, 3), ("item_category", 1002, 2, 2),
            ("item_shop", 5001, 1, 3), ("item_shop", 5002, 2, 2),
            ("item_brand", 9002, 1, 2),
            ("item_intention", 72, 1, 5), ("item_intention", 71, 2, 3), ("item_intention", 73, 3, 3),
            ("item_intention", 74, 4, 2),
            ("user_profile", 61, 1, 3), ("user_profile", 62, 2, 2),
            ("user_gender", 81, 1, 5),
            # history ids count once per kept impression of the context holding them
            ("user_categories", 502, 1, 5), ("user_categories", 501, 2, 3), ("user_categories", 503, 3, 3),
            ("user_categories", 504, 4, 3),
            ("user_shops", 601, 1, 3),
        ],
        "feature string, raw_id bigint, index int, impressions bigint",
    )
    assert_df_equality(spark.table(cfg.table("feature_vocab")), expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


INTERACTIONS_SCHEMA = (
    "sample_id bigint, user_id bigint, item_id bigint, user_index int, item_index int, "
    "is_cold_user boolean, is_cold_item boolean, user_profile_index int, user_group_index int, "
    "user_gender_index int, user_age_index int, user_consumption_index int, user_consumption_2_index int, "
    "user_is_occupied_index int, user_geography_index int, "
    "user_categories_ids array<int>, user_categories_weights array<float>, "
    "user_shops_ids array<int>, user_shops_weights array<float>, "
    "user_brands_ids array<int>, user_brands_weights array<float>, "
    "user_intentions_ids array<int>, user_intentions_weights array<float>, "
    "item_category_index int, item_shop_index int, item_brand_index int, "
    "item_intention_ids array<int>, item_intention_weights array<float>"
)
Z, ZW = [0] * L, [0.0] * L
# user 10: categories by weight 502 (2.0), then 503 and 504 (1.0, ties by id), 501 (0.5) cut at L=3
U10 = (1, 0, 1, 0, 0, 0, 0, 0, [1, 3, 4], [2.0, 1.0, 1.0], [1, 0, 0], [1.0, 0.0, 0.0], Z, ZW, Z, ZW)
U20 = (2, 0, 1, 0, 0, 0, 0, 0, [1, 0, 0], [0.25, 0.0, 0.0], Z, ZW, Z, ZW, Z, ZW)
I100 = (1, 1, 0, [2, 1], [1.0, 1.0])
I200 = (2, 2, 1, [1, 4], [1.0, 1.0])


def test_train_interactions_are_the_positives_with_fixed_shape_side_features(spark, lake_run):
    cfg, *_ = lake_run
    expected = spark.createDataFrame(
        [
            (1, 10, 100, 1, 1, False, False, *U10, *I100),
            (3, 10, 200, 1, 2, False, False, *U10, *I200),
            (4, 20, 100, 2, 1, False, False, *U20, *I100),
        ],
        INTERACTIONS_SCHEMA,
    )
    actual = spark.table(cfg.table("train_interactions"))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_test_split_is_mapped_with_the_train_vocabulary_and_cold_rows_are_kept_and_counted(spark, lake_run):
    cfg, first, *_ = lake_run
    no_item = (0, 0, 0, [0, 0], [0.0, 0.0])
    no_user = (0, 0, 0, 0, 0, 0, 0, 0, Z, ZW, Z, ZW, Z, ZW, Z, ZW)
    expected = spark.createDataFrame(
        [
            # known pair; the test-only history id 599 (weight 9.0) is not in the vocabulary
            (101, 10, 100, 1, 1, False, False, *U10, *I100),
            # user 30 was filtered out of train: index 0; its profile 63 is unknown, category 503 is known
            (102, 30, 100, 0, 1, True, False, 0, 0, 0, 0, 0, 0, 0, 0, [3, 0, 0], [1.0, 0.0, 0.0], Z, ZW, Z, ZW, Z, ZW,
             *I100),
            # item 300 was filtered out: index 0, and its category, shop and intention are unknown too
            (103, 10, 300, 1, 0, False, True, *U10, *no_item),
            # both never seen, but profile 61, category 1001 and intention 73 are known side features
            (104, 40, 999, 0, 0, True, True, 1, 0, 0, 0, 0, 0, 0, 0, Z, ZW, Z, ZW, Z, ZW, Z, ZW, 1, 0, 0, [3, 0],
             [1.0, 0.0]),
            (106, None, 100, 0, 1, True, False, *no_user, *I100),
        ],
        INTERACTIONS_SCHEMA,
    )
    actual = spark.table(cfg.table("test_interactions"))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    assert (first.test_rows, first.test_positives) == (6, 5)
    assert (first.test_cold_user_rows, first.test_cold_item_rows, first.test_cold_rows) == (3, 2, 4)


def test_summary_and_filter_runs_record_counts_thresholds_and_the_samples_version(spark, lake_run):
    cfg, first, second, _ = lake_run
    assert (first.rows_in, first.users_in, first.items_in) == (9, 3, 4)
    assert (first.rows_out, first.users_out, first.items_out) == (5, 2, 2)
    assert first.train_positives == 3 and first.rounds == 1
    assert first.samples_version == table_version(spark, cfg.table("samples"))
    runs = spark.table(cfg.table("filter_runs")).where(f"run_id = '{first.run_id}'").collect()
    assert len(runs) == 1
    r = runs[0]
    assert (r.min_item_count, r.min_user_count, r.label, r.kcore, r.rounds) == (2, 2, "click", False, 1)
    assert r.samples_version == first.samples_version and r.user_contexts_version == first.user_contexts_version
    assert [(s.step, s.rows_before, s.rows_after) for s in r.steps] == [("items", 9, 7), ("users", 7, 5)]
    assert (r.train_positives, r.test_positives, r.test_cold_rows) == (3, 5, 4)
    assert r.feature_vocab_sizes["user_categories"] == 4 and r.feature_vocab_sizes["item_intention"] == 4
    text = filtering.format_summary(first)
    assert "round 1 users (>= 2): rows 7 -> 5, users 3 -> 2, items 2 -> 2" in text
    assert "positives (click = 1): train 3, test 5 of 6 test rows" in text


def test_rerun_writes_identical_tables_as_new_versions(spark, lake_run):
    cfg, first, second, tables = lake_run
    for name, rows in tables.items():
        again = spark.table(cfg.table(name))
        assert_df_equality(again, spark.createDataFrame(rows, again.schema), ignore_row_order=True, ignore_metadata=True)
        assert second.output_versions[name] == first.output_versions[name] + 1
    assert spark.table(cfg.table("filter_runs")).count() == 2
    assert second.as_row() | {"run_id": 0, "started_at": 0, "duration_s": 0, "output_versions": 0} == (
        first.as_row() | {"run_id": 0, "started_at": 0, "duration_s": 0, "output_versions": 0}
    )


def test_no_positive_among_the_kept_rows_is_an_error(spark, lake_run):
    cfg, first, second, _ = lake_run
    # N=3 keeps item 100 only; M=2 then keeps user 10's rows 1 and 2, neither a conversion
    conf = with_filter(cfg, min_item_count=3, min_user_count=2, label="conversion")
    spark.catalog.clearCache()
    with pytest.raises(filtering.EmptyFilterError, match="no kept train row has conversion = 1"):
        filtering.run(spark, conf)
    # Its vocabulary was cached (filtering.CACHED) before the error, and dropping its views uncached it.
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty()
    assert table_version(spark, cfg.table("train_interactions")) == second.output_versions["train_interactions"]


def test_summary_sql_reads_back_what_the_run_wrote(spark, lake_run):
    cfg, first, *_ = lake_run
    results = [df.collect() for _, df in run_statements(spark, sql_file("filter/06_summary.sql"), cfg)]
    counts = results[0][0]
    assert (counts.users, counts.items, counts.train_positives, counts.test_positives, counts.test_cold_rows) == (
        2, 2, first.train_positives, first.test_positives, first.test_cold_rows
    )
    assert {r.feature: r.ids for r in results[1]} == first.feature_vocab_sizes


def test_item_counts_sql_runs_alone_with_its_one_parameter(spark, lake_run):
    cfg, *_ = lake_run
    for view in filtering.temp_views():
        spark.catalog.dropTempView(view)
    results = list(run_statements(spark, sql_file("filter/01_item_counts.sql"), cfg, {"min_item_count": "2"}))
    last = results[-1][1].collect()[0]
    assert (last.rows_before, last.rows_after, last.items_before, last.items_after) == (9, 7, 4, 2)
    assert results[0][0].title.startswith("Frequency filter, step 1")


def test_example_queries_run_and_answer(spark, lake_run):
    cfg, *_ = lake_run
    answers = {st.title: df.collect() for st, df in run_statements(spark, sql_file("examples.sql"), cfg)}
    assert len(answers) == 6 and all(answers.values())
    by_title = {title.split(":")[0].split(" (")[0]: rows for title, rows in answers.items()}
    funnel = {r.split: r for r in by_title["Impressions, clicks and conversions per split"]}
    assert (funnel["train"].impressions, funnel["train"].clicks, funnel["train"].conversions) == (9, 5, 1)
    assert funnel["train"].cvr == pytest.approx(0.2) and funnel["test"].ctr == pytest.approx(5 / 6, abs=1e-5)
    position = by_title["CTR and CVR by position"]
    assert [(r.split, r.position, r.impressions, r.clicks) for r in position] == [("test", None, 6, 5), ("train", None, 9, 5)]
    deciles = by_title["Item popularity deciles, train split"]
    # 4 items over 10 deciles: one item each in deciles 1-4, most shown first (item 100: 5 rows)
    assert [(r.decile, r.items, r.impressions) for r in deciles] == [(1, 1, 5), (2, 1, 2), (3, 1, 1), (4, 1, 1)]
    buckets = by_title["Users per activity bucket, train split"]
    # users 10 and 20 have 3 train rows, user 30 has 2 (the user-less row 9 is left out)
    assert [(r.impressions_per_user, r.users, r.impressions) for r in buckets] == [("2-5", 3, 8)]
    coverage = {(r.split, r.field): r.coverage for r in by_title["Field coverage"]}
    assert coverage[("train", "user_id")] == pytest.approx(8 / 9, abs=1e-4)
    assert coverage[("train", "item_brand")] == pytest.approx(2 / 9, abs=1e-4)
    assert coverage[("train", "position")] == 0.0
    lengths = {(r.split, r.field): r for r in by_title["Multi-valued fields"]}
    assert lengths[("train", "item_intention")].max_ids == 3
    assert lengths[("train", "user_categories")].coverage == pytest.approx(3 / 4)  # contexts of users 10, 20, 30, none


def test_cli_filters_the_lake_and_the_step_sql_runs_alone(spark, cfg, capsys):
    """`python -m lakerec.jobs.filter ...` then `python -m lakerec.jobs.sql -f 01_item_counts.sql ...`, through their main().

    In this process (its Spark session is on the test lake) rather than a new one: a second
    JVM costs a minute on a shared 2-core machine, and the foundation tests already check that
    a new process finds the lake's tables by name.
    """
    rows = [sample(i, u, it, click=1) for i, (u, it) in enumerate(PAIRS, 1)]
    rows += [sample(20, 1, 1, click=1, split="test"), sample(21, 9, 1, click=1, split="test")]
    write_samples(spark, cfg, rows)
    write_user_contexts(spark, cfg, contexts_from_samples(rows))
    common = ["--lake", str(cfg.lake_path), "--database", cfg.database]

    filter_job.main(["--min-item-count", "2", "--min-user-count", "2", "--kcore", *common])
    out = capsys.readouterr().out
    assert "k-core, 3 rounds" in out
    assert "kept: 2 of 8 train rows, 1 of 4 users, 1 of 4 items" in out
    assert "positives (click = 1): train 2, test 2 of 2 test rows" in out
    assert "(kept, flagged): unknown user 1, unknown item 0, either 1" in out

    sql_job.main(["-f", str(REPO / "lakerec/sql/filter/01_item_counts.sql"), "--param", "min_item_count=2", "--format", "csv", *common])
    assert capsys.readouterr().out.strip().splitlines()[-1] == "items,2,8,7,4,4,4,3"
