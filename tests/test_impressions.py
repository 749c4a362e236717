"""The ranker's impressions tables (lakerec.impressions, lakerec/sql/impressions/, map_features.sql).

A hand-made lake of 6 train and 3 test impressions with position and the cross fields; every
expectation is worked out by hand from the rows below.
"""

from __future__ import annotations

import os

import pytest
from chispa import assert_df_equality

from lakerec import filtering, impressions
from lakerec.config import override
from lakerec.errors import MissingTableError
from lakerec.jobs import impressions as impressions_job
from lakerec.schema import fields as F
from lakerec.schema import tables as T
from lakerec.sqlfiles import run_statements, sql_file
from lakerec.tables import table_version
from tests.builders import contexts_from_samples, sample, write_ingest_tables, write_samples, write_user_contexts
from tests.test_schema import assert_matches_registry

pytestmark = pytest.mark.heavy(seconds=105)

L = 3  # filter.history_length
K = 3  # filter.item_intention_length (item and user-item intentions)
TRAIN, TEST = T.TRAIN_IMPRESSIONS.name, T.TEST_IMPRESSIONS.name

# Filter N = M = 2: items 100 (rows 1, 2, 4) and 200 (3, 5) are kept, item 300 (row 6) is not, and
# with it user 30: the kept rows are 1-5, users 10 (3 rows) -> index 1, 20 (2) -> 2, items 100 -> 1, 200 -> 2.
# The ranker's vocabularies over rows 1-5: position 1 (rows 1, 3, 4) -> 1, 2 -> 2, 3 -> 3 (ties by id);
# user_item_categories 701 -> 1 (702 is only in row 6); user_item_shops 901 -> 1;
# user_item_intentions 802 (rows 1, 5) -> 1, 801 -> 2. History: user_categories 502 (user 10's 3 rows +
# user 20's 2) -> 1, 501 -> 2; 503 (user 30 only) is unknown.
USERS = {10: {"user_profile": 61}, 20: {"user_profile": 62}, 30: {"user_profile": 63}, 40: {}, None: {}}
ITEMS = {100: {"item_category": 1001, "item_intention": [71]}, 200: {"item_category": 1002},
         300: {"item_category": 1003}, 999: {}}


def row(sample_id, user, item, split="train", **values):
    return sample(sample_id, user, item, split=split, **USERS[user], **ITEMS[item], **values)


LAKE_ROWS = [
    row(1, 10, 100, click=1, position=1, user_item_categories=701, user_item_categories_weight=2.0,
        user_item_intentions=[(801, 1.5), (802, 0.5)]),
    row(2, 10, 100, position=2, user_item_categories=701, user_item_categories_weight=1.0),
    row(3, 10, 200, click=1, conversion=1, position=1, user_item_shops=901, user_item_shops_weight=0.75),
    row(4, 20, 100, position=1),
    row(5, 20, 200, click=1, position=3, user_item_intentions=[(802, 2.0)]),
    # not frequency-filtered: user 30 and item 300 are cold, profile 63, category 1003, history 503 and
    # cross category 702 are present but unknown (its weight is kept)
    row(6, 30, 300, position=1, user_item_categories=702, user_item_categories_weight=3.0),
    # position 4 and brand 999 were never seen in train
    row(101, 10, 200, "test", click=1, position=2, user_item_brands=999, user_item_brands_weight=1.25),
    # user 40 is unknown; of its user-item intentions only 801 is known
    row(102, 40, 100, "test", position=4, user_item_intentions=[(801, 1.0), (899, 3.0)]),
    # no user, an unknown item, and user-item intentions that are all unknown
    row(103, None, 999, "test", user_item_intentions=[(899, 1.0)]),
]
HISTORIES = {"user_categories": {10: [(501, 2.0), (502, 1.0)], 20: [(502, 0.5)], 30: [(503, 1.0)]}}


def zero_row(sample_id: int, user_id, item_id) -> dict:
    """Every registry column at its 'nothing known' value: index 0, arrays of padding, weight 0.0."""
    out = {}
    for c in T.TRAIN_IMPRESSIONS.columns:
        if c.type == T.IDS:
            out[c.name] = [0] * (L if c.name.startswith(tuple(F.names(tower=F.QUERY, multi=True))) else K)
        elif c.type == T.WEIGHTS:
            out[c.name] = [0.0] * (L if c.name.startswith(tuple(F.names(tower=F.QUERY, multi=True))) else K)
        elif c.type == "float":
            out[c.name] = 0.0
        elif c.type == "boolean":
            out[c.name] = True
        else:
            out[c.name] = 0
    return out | {"sample_id": sample_id, "user_id": user_id, "item_id": item_id}


USER_10 = {"user_index": 1, "is_cold_user": False, "user_profile_index": 1,
           "user_categories_ids": [2, 1, 0], "user_categories_weights": [2.0, 1.0, 0.0]}


def with_filter(cfg, **values):
    return override(cfg, **{f"filter__{k}": v for k, v in values.items()})


@pytest.fixture(scope="module")
def impressions_lake(spark, base_cfg):
    """The lake filtered (N = M = 2), then impressions run twice: the tables after the first run, both summaries."""
    cfg = with_filter(override(base_cfg, database=f"impressions_{os.getpid()}"),
                      min_item_count=2, min_user_count=2, history_length=L, item_intention_length=K)
    spark.sql(f"DROP DATABASE IF EXISTS {cfg.database} CASCADE")
    spark.sql(f"CREATE DATABASE {cfg.database}")
    write_ingest_tables(spark, cfg, LAKE_ROWS, **HISTORIES)
    filtering.run(spark, cfg)
    first = impressions.run(spark, cfg)
    tables = {t: spark.table(cfg.table(t)).collect() for t in (TRAIN, TEST)}
    second = impressions.run(spark, cfg)
    return cfg, first, second, tables


def by_id(spark, cfg, name) -> dict[int, dict]:
    return {r.sample_id: r.asDict() for r in spark.table(cfg.table(name)).collect()}


def test_feature_vocab_gets_the_rankers_fields_from_the_kept_train_impressions(spark, impressions_lake):
    cfg, *_ = impressions_lake
    rank = [f.name for f in F.rank_features()]
    actual = spark.table(cfg.table(T.FEATURE_VOCAB.name)).where(
        "feature IN ({})".format(", ".join(f"'{n}'" for n in rank)))
    expected = spark.createDataFrame(
        [("position", 1, 1, 3), ("position", 2, 2, 1), ("position", 3, 3, 1),
         ("user_item_categories", 701, 1, 2), ("user_item_shops", 901, 1, 1),
         ("user_item_intentions", 802, 1, 2), ("user_item_intentions", 801, 2, 1)],
        T.FEATURE_VOCAB.ddl,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_every_impression_is_written_with_exactly_the_registry_columns(spark, impressions_lake):
    cfg, first, *_ = impressions_lake
    for table in (T.TRAIN_IMPRESSIONS, T.TEST_IMPRESSIONS):
        assert_matches_registry(spark, cfg, table)
    assert set(by_id(spark, cfg, TRAIN)) == {1, 2, 3, 4, 5, 6}  # clicked or not, filtered out or not
    assert set(by_id(spark, cfg, TEST)) == {101, 102, 103}


def test_a_clicked_train_impression_maps_every_field(spark, impressions_lake):
    cfg, *_ = impressions_lake
    expected = zero_row(1, 10, 100) | USER_10 | {
        "click": 1, "item_index": 1, "is_cold_item": False, "item_category_index": 1,
        "item_intention_ids": [1, 0, 0], "item_intention_weights": [1.0, 0.0, 0.0],
        "position_index": 1, "user_item_categories_index": 1, "user_item_categories_weight": 2.0,
        # largest weight first: 801 (1.5) is index 2, 802 (0.5) index 1, then padding
        "user_item_intentions_ids": [2, 1, 0], "user_item_intentions_weights": [1.5, 0.5, 0.0],
    }
    assert by_id(spark, cfg, TRAIN)[1] == expected


def test_a_filtered_out_train_impression_is_kept_cold_with_its_unknown_fields_at_zero(spark, impressions_lake):
    cfg, *_ = impressions_lake
    expected = zero_row(6, 30, 300) | {
        "position_index": 1,
        "user_item_categories_weight": 3.0,  # 702 is unknown (index 0); its VALUE stays
    }
    assert by_id(spark, cfg, TRAIN)[6] == expected


def test_test_impressions_are_mapped_with_the_train_vocabularies(spark, impressions_lake):
    cfg, *_ = impressions_lake
    rows = by_id(spark, cfg, TEST)
    assert rows[101] == zero_row(101, 10, 200) | USER_10 | {
        "click": 1, "item_index": 2, "is_cold_item": False, "item_category_index": 2, "position_index": 2,
        "user_item_brands_weight": 1.25}
    assert rows[102] == zero_row(102, 40, 100) | {
        "item_index": 1, "is_cold_item": False, "item_category_index": 1,
        "item_intention_ids": [1, 0, 0], "item_intention_weights": [1.0, 0.0, 0.0],
        # position 4 is unknown; 899 (weight 3.0) is dropped, 801 kept
        "user_item_intentions_ids": [2, 0, 0], "user_item_intentions_weights": [1.0, 0.0, 0.0]}
    assert rows[103] == zero_row(103, None, 999)


def test_counts_reconcile_with_samples_and_the_runs_table(spark, impressions_lake):
    cfg, first, *_ = impressions_lake
    by_split = {c.split: c for c in first.splits}
    assert [c.split for c in first.splits] == list(F.SPLITS)
    train, test = by_split[F.TRAIN], by_split[F.TEST]
    assert (train.samples_rows, train.rows, train.clicks, train.conversions) == (6, 6, 3, 1)
    assert (train.cold_user_rows, train.cold_item_rows) == (1, 1)
    assert {k: v for k, v in train.oov_rows.items() if v} == {
        "user_profile": 1, "user_categories": 1, "item_category": 1, "user_item_categories": 1}
    assert (test.samples_rows, test.rows, test.clicks, test.conversions) == (3, 3, 1, 0)
    assert (test.cold_user_rows, test.cold_item_rows) == (2, 1)
    assert {k: v for k, v in test.oov_rows.items() if v} == {
        "position": 1, "user_item_brands": 1, "user_item_intentions": 1}
    assert set(train.oov_rows) == {f.name for f in F.FIELDS if f.feature in (F.SIDE, F.RANK)}

    runs = spark.table(cfg.table(T.IMPRESSIONS_RUNS.name)).where(f"run_id = '{first.run_id}'").collect()
    assert sorted((r.split, r.samples_rows, r.rows, r.clicks, r.cold_user_rows) for r in runs) == [
        ("test", 3, 3, 1, 2), ("train", 6, 6, 3, 1)]
    r = runs[0]
    assert (r.samples_version, r.feature_vocab_version) == (
        table_version(spark, cfg.table(T.SAMPLES.name)), table_version(spark, cfg.table(T.FEATURE_VOCAB.name)))
    assert (r.history_length, r.item_intention_length) == (L, K)
    text = impressions.format_summary(first)
    assert "train.user_item_categories 1" in text and "test.position 1" in text
    assert text.splitlines()[2].split() == ["train", "6", "6", "3", "1", "1", "1", "4"]


def test_rerun_writes_identical_tables_as_new_versions(spark, impressions_lake):
    cfg, first, second, tables = impressions_lake
    for name, rows in tables.items():
        again = spark.table(cfg.table(name))
        assert_df_equality(again, spark.createDataFrame(rows, again.schema), ignore_row_order=True, ignore_metadata=True)
    assert [s.output_version for s in second.splits] == [s.output_version + 1 for s in first.splits]
    assert [s.oov_rows for s in second.splits] == [s.oov_rows for s in first.splits]
    assert spark.table(cfg.table(T.IMPRESSIONS_RUNS.name)).count() == 4


def test_the_counts_sql_runs_alone_after_a_run(spark, impressions_lake):
    cfg, first, *_ = impressions_lake
    ((_, df),) = list(run_statements(spark, sql_file("impressions/03_counts.sql"), cfg))
    assert [(r.split, r.samples_rows, r.rows, r.conversions) for r in df.collect()] == [
        ("train", 6, 6, 1), ("test", 3, 3, 0)]


def test_running_before_the_filter_names_the_filter_job(spark, cfg):
    write_samples(spark, cfg, LAKE_ROWS[:1])
    write_user_contexts(spark, cfg, contexts_from_samples(LAKE_ROWS[:1]))
    with pytest.raises(MissingTableError, match=r"user_vocab does not exist yet: run `python -m lakerec.jobs.filter`"):
        impressions.run(spark, cfg)


def test_cli_prints_the_summary_table(spark, impressions_lake, capsys):
    cfg, *_ = impressions_lake
    impressions_job.main(["--lake", str(cfg.lake_path), "--database", cfg.database,
                          "--set", f"filter.history_length={L}", "--set", f"filter.item_intention_length={K}"])
    out = capsys.readouterr().out
    assert out.splitlines()[3].split() == ["test", "3", "3", "1", "0", "2", "1", "3"]
    assert f"wrote {TRAIN} v2, {TEST} v2; impressions_runs +2 rows" in out
