"""The one schema (lakerec/schema/): nothing spells a field code or a table name outside it,
the tables the jobs write are exactly the registry's, the SQL files' lists render, and
docs/tables.md documents the registry's tables."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from lakerec import filtering, ingest, sqlfiles
from lakerec.config import override
from lakerec.schema import fields as F
from lakerec.schema import tables as T
from tests.conftest import REPO

pytestmark = pytest.mark.heavy(seconds=65)

CODES = frozenset(f.code for f in F.FIELDS)
TABLE_NAMES = frozenset(T.TABLES)
SCANNED = ("lakerec", "notebooks", "bench", "conf")
SCHEMA_DIR = Path("lakerec") / "schema"
SQL_TABLE = re.compile(r"\$\{database\}\.(\w+)")
SQL_QUOTED = re.compile(r"'([^']*)'")

# Files allowed to spell a field code or table name (none: name them through lakerec.schema).
ALLOWED_LITERALS: dict[str, frozenset[str]] = {}


def python_sources() -> list[Path]:
    out = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO)
            if SCHEMA_DIR not in rel.parents and "__pycache__" not in rel.parts:
                out.append(rel)
    return out


def sql_sources() -> list[Path]:
    return sorted(p.relative_to(REPO) for p in (REPO / "lakerec").rglob("*.sql"))


def literals_in_python(source: str) -> tuple[set[str], set[str]]:
    """(field codes and table names spelled as string constants, tables named as `${database}.X` in them)."""
    spelled, sql_tables = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in CODES or node.value in TABLE_NAMES:
                spelled.add(node.value)
            sql_tables |= set(SQL_TABLE.findall(node.value))
    return spelled, sql_tables


def literals_in_sql(text: str) -> tuple[set[str], set[str]]:
    """(field codes quoted in the SQL, tables named as `${database}.X`)."""
    return {q for q in SQL_QUOTED.findall(text) if q in CODES}, set(SQL_TABLE.findall(text))


def test_the_scanner_finds_codes_and_table_names():
    spelled, tables = literals_in_python(
        'X = ("205", "train_interactions", f"{db}.samples", "item_id")\n'
        'Q = "SELECT * FROM ${database}.nope"\n"""docstring naming samples"""\n'
    )
    assert spelled == {"205", "train_interactions"} and tables == {"nope"}
    assert literals_in_sql("SELECT * FROM ${database}.samples WHERE field = '301' AND x = 'click'") == (
        {"301"}, {"samples"})


def test_no_field_code_or_table_name_is_spelled_outside_the_registry():
    problems, seen = [], set()
    for rel in python_sources():
        spelled, sql_tables = literals_in_python((REPO / rel).read_text())
        key = rel.as_posix()
        allowed = ALLOWED_LITERALS.get(key)
        if allowed is not None:
            seen.add(key)
            if spelled != allowed:
                problems.append(f"{key}: spells {sorted(spelled)}, its ALLOWED_LITERALS entry says {sorted(allowed)}")
        elif spelled:
            problems.append(f"{key}: spells {sorted(spelled)}; name them through lakerec.schema")
        if sql_tables - TABLE_NAMES:
            problems.append(f"{key}: SQL names unregistered tables {sorted(sql_tables - TABLE_NAMES)}")
    for rel in sql_sources():
        codes, tables = literals_in_sql((REPO / rel).read_text())
        if codes:
            problems.append(f"{rel.as_posix()}: quotes field codes {sorted(codes)}")
        if not tables <= TABLE_NAMES:
            problems.append(f"{rel.as_posix()}: names unregistered tables {sorted(tables - TABLE_NAMES)}")
    missing = set(ALLOWED_LITERALS) - seen
    assert not missing, f"ALLOWED_LITERALS names files that are gone (delete the entries): {sorted(missing)}"
    assert not problems, "\n".join(problems)
    assert len(python_sources()) > 40 and len(sql_sources()) >= 8  # the scan really read the tree


# --------------------------------------------------------------------------- the registry itself

def test_field_tags_pick_what_the_towers_read():
    assert F.names(role=F.USER, multi=False, id=False) == (
        "user_profile", "user_group", "user_gender", "user_age", "user_consumption", "user_consumption_2",
        "user_is_occupied", "user_geography")
    assert F.names(tower=F.QUERY, multi=True) == ("user_categories", "user_shops", "user_brands", "user_intentions")
    assert F.names(tower=F.CANDIDATE, feature=F.SIDE) == ("item_category", "item_shop", "item_intention", "item_brand")
    assert F.id_field(F.QUERY).index_column == "user_index" and F.id_field(F.CANDIDATE).code == "205"
    assert F.names(feature=F.RANK) == ("position", "user_item_categories", "user_item_shops", "user_item_brands",
                                       "user_item_intentions")  # the ranker's inputs, no tower reads them
    assert F.names(role=F.CROSS) == F.names(feature=F.RANK)[1:]
    assert all(f.tower is None for f in F.rank_features()) and F.names(feature=F.NONE) == ()
    assert F.BY_NAME["user_item_categories"].weight_column == "user_item_categories_weight"
    assert F.BY_NAME["user_item_intentions"].weight_column is None  # multi: weights live in the array
    assert F.raw_file_name(F.SKELETON, F.TEST) == "sample_skeleton_test.csv" and F.SPLITS == ("train", "test")
    with pytest.raises(ValueError, match="unknown tag"):
        F.select(role="users")


def test_the_registry_derives_the_schemas_that_were_typed_by_hand():
    from tests.test_filter import INTERACTIONS_SCHEMA  # typed out field by field before the registry existed

    assert T.TRAIN_INTERACTIONS.ddl == T.TEST_INTERACTIONS.ddl == INTERACTIONS_SCHEMA
    assert T.ITEM_VOCAB.ddl == (
        "item_id bigint, item_index int, impressions bigint, clicks bigint, conversions bigint, "
        "item_category_index int, item_shop_index int, item_brand_index int, "
        "item_intention_ids array<int>, item_intention_weights array<float>")
    weighted = "array<struct<id:bigint,weight:double>>"
    assert T.USER_CONTEXTS.ddl == (
        "split string, common_feature_index string, user_id bigint, user_profile bigint, user_group bigint, "
        "user_gender bigint, user_age bigint, user_consumption bigint, user_consumption_2 bigint, "
        "user_is_occupied bigint, user_geography bigint, "
        f"user_categories {weighted}, user_shops {weighted}, user_brands {weighted}, user_intentions {weighted}, "
        "other_features array<struct<field:string,id:bigint,weight:double>>")
    assert T.SAMPLES.column_names[-14:-1] == (
        "item_id", "item_category", "item_shop", "item_intention", "item_brand", "position",
        "user_item_categories", "user_item_categories_weight", "user_item_shops", "user_item_shops_weight",
        "user_item_brands", "user_item_brands_weight", "user_item_intentions")
    assert T.SAMPLES.column_names[-1] == "other_features"
    assert T.SAMPLES_WIDE.column_names[-4:] == ("user_categories", "user_shops", "user_brands", "user_intentions")
    assert T.table("samples") is T.SAMPLES and T.INTERACTIONS[F.TEST] is T.TEST_INTERACTIONS
    with pytest.raises(KeyError, match="not a lake table"):
        T.table("sample")
    assert [t.name for t in T.written_by(T.MOVIELENS)] == [t.name for t in T.TRAINING_INPUTS]


# --------------------------------------------------------------------------- the jobs write the registry's tables

def assert_matches_registry(spark, cfg, table: T.Table) -> None:
    df = spark.table(cfg.table(table.name))
    actual = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
    assert actual == [(c.name, c.type) for c in table.columns], table.name
    if not table.view:
        detail = spark.sql(f"DESCRIBE DETAIL {cfg.table(table.name)}").first()
        assert (detail.format, detail.partitionColumns) == ("delta", list(table.partitioned_by)), table.name


@pytest.fixture(scope="module")
def pipeline_lake(spark, base_cfg, tmp_path_factory):
    """The ingest test's raw lines (train, and a test split of their first lines), ingested, then filtered."""
    from tests.test_ingest import COMMON_LINES, SKELETON_LINES, write_raw

    cfg = override(base_cfg, database=f"schema_{os.getpid()}", filter__min_item_count=1,
                   filter__min_user_count=1, filter__history_length=3, filter__item_intention_length=2,
                   ingest__max_quarantine_share=1.0)  # the lines plant every kind of error
    spark.sql(f"DROP DATABASE IF EXISTS {cfg.database} CASCADE")
    spark.sql(f"CREATE DATABASE {cfg.database}")
    raw = tmp_path_factory.mktemp("schema_raw")
    write_raw(raw, "train", COMMON_LINES, SKELETON_LINES)
    write_raw(raw, "test", COMMON_LINES[:1], SKELETON_LINES[:2])
    ingest.run(spark, cfg, str(raw))
    summary = filtering.run(spark, cfg)
    return cfg, summary


def test_ingest_and_filter_write_exactly_the_registry_tables(spark, pipeline_lake):
    cfg, summary = pipeline_lake
    assert summary.train_positives == 1 and summary.test_positives == 1  # the tables hold rows, not just a schema
    written = set(T.written_by(T.INGEST) + T.written_by(T.FILTER))
    for table in written:
        assert_matches_registry(spark, cfg, table)
    stored = {t.name for t in spark.catalog.listTables(cfg.database) if not t.isTemporary}
    assert stored == {t.name for t in written}
    for table in written:  # Delta keeps file statistics of the columns the registry names (default: the first 32)
        if table.stats_columns:
            props = dict(spark.sql(f"SHOW TBLPROPERTIES {cfg.table(table.name)}").collect())
            assert props["delta.dataSkippingStatsColumns"] == ",".join(table.stats_columns), table.name


def test_movielens_writes_the_filter_schema(spark, cfg, tmp_path):
    from lakerec.movielens import load
    from tests.test_movielens import U_DATA

    (tmp_path / "u.data").write_text(U_DATA)
    load(spark, cfg, tmp_path / "u.data", split="time")
    for table in T.written_by(T.MOVIELENS):
        assert_matches_registry(spark, cfg, table)


# --------------------------------------------------------------------------- SQL placeholders

# What the jobs pass with --param (filtering.py, impressions.py); everything else comes from the registry.
JOB_PARAMS = {"min_item_count": "2", "min_user_count": "2", "label": "click", "history_length": "3",
              "item_intention_length": "2", "split": "train"}


def test_every_placeholder_of_every_sql_file_has_a_value(base_cfg):
    lists = sqlfiles.schema_placeholders()
    used = set()
    for rel in sql_sources():
        text = (REPO / rel).read_text()
        names = sqlfiles.placeholders(text)
        used |= names
        unknown = names - set(lists) - set(JOB_PARAMS) - {"database"}
        assert not unknown, f"{rel}: no value for {sorted(unknown)}"
        rendered = sqlfiles.render(text, base_cfg, JOB_PARAMS)
        assert "${" not in rendered, rel
    assert used >= set(lists), f"placeholders no SQL file uses: {sorted(set(lists) - used)}"
    # the files of a step that takes no parameter run as they are (`python -m lakerec.jobs.sql -f FILE`)
    for name in ("filter/03_vocabularies.sql", "ingest/samples_wide.sql", "filter/06_summary.sql",
                 "impressions/03_counts.sql"):
        assert "${" not in sqlfiles.render(sqlfiles.sql_file(name), base_cfg), name


def test_placeholders_render_the_lists_the_files_held_by_hand(base_cfg):
    lists = sqlfiles.schema_placeholders()
    flat = {k: re.sub(r"\s+", " ", v) for k, v in lists.items()}
    assert flat["row_single_stack"] == (
        "15, 'user_profile', user_profile, 'user_group', user_group, 'user_gender', user_gender, "
        "'user_age', user_age, 'user_consumption', user_consumption, 'user_consumption_2', user_consumption_2, "
        "'user_is_occupied', user_is_occupied, 'user_geography', user_geography, "
        "'item_category', item_category, 'item_shop', item_shop, 'item_brand', item_brand, "
        "'position', position, 'user_item_categories', user_item_categories, 'user_item_shops', user_item_shops, "
        "'user_item_brands', user_item_brands")
    assert flat["user_multi_stack"] == ("4, 'user_categories', user_categories, 'user_shops', user_shops, "
                                        "'user_brands', user_brands, 'user_intentions', user_intentions")
    assert flat["row_multi_pivot"] == "'item_intention' AS item_intention, 'user_item_intentions' AS user_item_intentions"
    assert flat["rank_columns"] == (
        "position_index, user_item_categories_index, "
        "CAST(coalesce(user_item_categories_weight, 0) AS FLOAT) AS user_item_categories_weight, "
        "user_item_shops_index, CAST(coalesce(user_item_shops_weight, 0) AS FLOAT) AS user_item_shops_weight, "
        "user_item_brands_index, CAST(coalesce(user_item_brands_weight, 0) AS FLOAT) AS user_item_brands_weight, "
        "user_item_intentions_ids, user_item_intentions_weights")
    assert flat["item_side_columns"] == ("item_category_index, item_shop_index, item_brand_index, "
                                         "item_intention_ids, item_intention_weights")
    rendered = sqlfiles.render("${user_multi_arrays}", base_cfg, {"history_length": "5"})
    assert rendered.splitlines()[0] == "coalesce(user_categories_ids, array_repeat(0, 5)) AS user_categories_ids,"
    # a --param of the same name replaces a list
    assert sqlfiles.render("SELECT ${item_side_columns}", base_cfg, {"item_side_columns": "1"}) == "SELECT 1"


# --------------------------------------------------------------------------- docs/tables.md

_TYPE_WORDS = {"array", "struct", "map", "bigint", "int", "string", "double", "float", "boolean", "timestamp"}


def _documented_columns(cell: str) -> set[str]:
    """Column names in a docs cell's backticks (`a, b bigint`), types and `<...>` left out."""
    out = set()
    for group in re.findall(r"`([^`]*)`", cell):
        while re.search(r"<[^<>]*>", group):
            group = re.sub(r"<[^<>]*>", "", group)
        for part in group.split(","):
            words = part.split()
            if words and re.fullmatch(r"[a-z][a-z0-9_]*", words[0]) and words[0] not in _TYPE_WORDS:
                out.add(words[0])
    return out


def test_docs_tables_md_documents_exactly_the_registry():
    documented: set[str] = set()
    header: list[str] = []
    problems = []
    for line in (REPO / "docs" / "tables.md").read_text().splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        names = re.findall(r"`(\w+)`", cells[0])
        row = dict(zip(header, cells))
        for name in names:
            table = T.TABLES.get(name)
            if table is None:
                problems.append(f"docs/tables.md documents {name}, which the registry does not have")
                continue
            if ("(view)" in cells[0]) != table.view:
                problems.append(f"{name}: view in one place only")
            if "partitioned by" in row:
                parts = tuple(p.strip() for p in row["partitioned by"].strip("`").split(",") if p.strip())
                if parts != table.partitioned_by:
                    problems.append(f"{name}: docs partition by {parts}, the registry by {table.partitioned_by}")
            elif table.partitioned_by:
                problems.append(f"{name}: the registry partitions by {table.partitioned_by}, docs say nothing")
            # a column is named as itself, or by its field (`user_shops` for user_shops_ids/_weights);
            # a cell may also name the table a column comes from
            columns = set(table.column_names)
            known = columns | {f.name for f in F.FIELDS if set(f.model_columns) <= columns} | TABLE_NAMES
            unknown = _documented_columns(row.get("columns", "")) - known
            if unknown:
                problems.append(f"{name}: docs list columns the registry does not have: {sorted(unknown)}")
            documented.add(name)
    assert not problems, "\n".join(problems)
    assert set(documented) == TABLE_NAMES, f"undocumented: {sorted(TABLE_NAMES - set(documented))}"
