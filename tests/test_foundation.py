"""The Spark factory, the persistent catalog, config loading and the SQL job."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakerec import sqlfiles
from lakerec.jobs import sql as sql_job
from lakerec.config import load_config, override
from lakerec.errors import ConfigError
from lakerec.tables import write_table, table_version
from tests.conftest import REPO


def test_delta_table_round_trip_and_versions(spark, cfg):
    name = cfg.table("numbers")
    write_table(spark.createDataFrame([(1, "a"), (2, "b")], "n int, split string"), name, ("split",))
    assert table_version(spark, name) == 0
    write_table(spark.createDataFrame([(3, "b")], "n int, split string"), name, ("split",), "split = 'b'")
    assert sorted(r.n for r in spark.table(name).collect()) == [1, 3]
    assert table_version(spark, name) == 1
    fmt = spark.sql(f"DESCRIBE DETAIL {name}").first()
    assert fmt.format == "delta" and fmt.partitionColumns == ["split"]


def test_split_statements_keeps_titles():
    text = "-- first\nSELECT 1;\n\n-- second one\nSELECT 2 AS x;\n"
    sts = sqlfiles.split_statements(text)
    assert [(s.title, s.sql) for s in sts] == [("first", "SELECT 1"), ("second one", "SELECT 2 AS x")]


def test_render_refuses_unknown_placeholder(base_cfg):
    assert sqlfiles.render("SELECT * FROM ${database}.t", base_cfg) == "SELECT * FROM lakerec_test.t"
    with pytest.raises(Exception, match="--param missing"):
        sqlfiles.render("SELECT ${missing}", base_cfg)


def test_config_refuses_unknown_keys_and_bad_types(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("filter:\n  min_item_cont: 3\n")
    with pytest.raises(ConfigError, match="min_item_cont"):
        load_config(bad)
    bad.write_text("filter:\n  kcore: maybe\n")
    with pytest.raises(ConfigError, match="filter.kcore"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yml")


def test_flags_override_the_file():
    cfg = load_config(REPO / "conf" / "local.yml", lake="/x/y", filter__min_item_count=7, database=None)
    assert cfg.lake == "/x/y" and cfg.filter.min_item_count == 7 and cfg.database == "aliccp"
    assert override(cfg, train__epochs=9).train.epochs == 9


# A JVM or Python log line: `13:36:09 WARN ...`, `13:36:09.746 [main] WARN ...`, `WARNING: ...`.
_LOG_LINE = re.compile(r"^(\d{2}:\d{2}:\d{2}|\d{2}/\d{2}/\d{2}|WARN|WARNING|ERROR|INFO)\b")


def test_catalog_persists_across_processes(tmp_path):
    """A table registered by one process is found by name from a new one (Derby in the lake).

    And `jobs.sql --format csv` writes only data to stdout, the Spark start and every JVM log
    line on stderr: the whole of stdout parses as CSV. Floats are exact, a cut at --limit is
    said on stderr.
    """
    lake = tmp_path / "lake"
    make = (
        "from lakerec.config import load_config; from lakerec.spark import get_spark; from lakerec.tables import write_table;"
        f"cfg=load_config(lake=r'{lake}');s=get_spark(cfg);"
        "write_table(s.createDataFrame([(1,0.1234567891),(2,1/3),(3,None)],'n int, x double'), cfg.table('persisted'))"
    )
    subprocess.run([sys.executable, "-c", make], cwd=REPO, check=True, capture_output=True)
    out = subprocess.run(
        [sys.executable, "-m", "lakerec.jobs.sql", "SELECT n, x, sum(n) OVER () AS total FROM aliccp.persisted ORDER BY n",
         "--lake", str(lake), "--format", "csv", "--limit", "2"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    logged = [line for line in out.stdout.splitlines() if _LOG_LINE.match(line)]
    assert not logged, f"log lines on stdout: {logged}"
    assert list(csv.reader(io.StringIO(out.stdout))) == [["n", "x", "total"], ["1", "0.1234567891", "6"],
                                                          ["2", repr(1 / 3), "6"]]
    assert "(first 2 of 3 rows)" in out.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "lakerec.jobs.sql", "SELECT * FROM aliccp.nope", "--lake", str(lake)],
        cwd=REPO, capture_output=True, text=True,
    )
    assert missing.returncode == 2
    assert "aliccp.nope does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_sql_job_json_is_one_object_per_line_at_full_precision(spark, cfg, capsys):
    sql_job.main(["SELECT id, CAST(id AS DOUBLE) / 3 AS third, array(id, id) AS pair, NULL AS none FROM range(4)",
                  "--lake", cfg.lake, "--database", cfg.database, "--format", "json", "--limit", "3"])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert rows == [{"id": i, "third": i / 3, "pair": [i, i], "none": None} for i in range(3)]
    assert captured.err.strip().splitlines()[-1] == "(first 3 of 4 rows)"


def test_read_jobs_refuse_a_lake_that_is_not_there_before_spark_starts(tmp_path):
    """A mistyped --lake is one line, not a new empty lake; the jobs that create a lake still may."""
    for job, lake, message in (("sql", tmp_path / "typo", "no lake at"), ("filter", tmp_path, "is not a lake")):
        out = subprocess.run([sys.executable, "-m", f"lakerec.jobs.{job}", *(["SELECT 1"] if job == "sql" else []),
                              "--lake", str(lake)], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "jobs.ingest" in lines[0], lines
    assert not (tmp_path / "typo").exists() and not (tmp_path / "metastore_db").exists()


def test_sql_job_runs_several_files_in_order(spark, cfg, tmp_path, capsys):
    first, second = tmp_path / "a.sql", tmp_path / "b.sql"
    first.write_text("-- make a view\nCREATE OR REPLACE TEMP VIEW nums AS SELECT id FROM range(${n});\n")
    second.write_text("-- total\nSELECT sum(id) AS total FROM nums;\n")
    sql_job.main(["-f", str(first), "-f", str(second), "--param", "n=5", "--lake", cfg.lake,
                  "--database", cfg.database, "--format", "csv"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["-- total", "total", "10"]  # the DDL prints nothing


def test_missing_java_is_one_clear_message(tmp_path):
    """Without Java on PATH (and no JAVA_HOME) a job says what to install, with no trace."""
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # nothing on PATH, no JAVA_HOME
    (tmp_path / "lake" / "metastore_db").mkdir(parents=True)  # a lake, so the read job gets as far as Spark
    out = subprocess.run([sys.executable, "-m", "lakerec.jobs.sql", "SELECT 1", "--lake", str(tmp_path / "lake")],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert "Java was not found" in out.stderr and "Traceback" not in out.stderr


def test_uncached_delta_jars_say_how_to_fetch_them(tmp_path, monkeypatch):
    from lakerec import jars
    from lakerec.errors import SetupError

    monkeypatch.setenv("LAKEREC_JARS_DIR", str(tmp_path))
    with pytest.raises(SetupError, match="python -m lakerec.jars"):
        jars.delta_jars(fetch=False)


def test_maintenance_zorders_the_ingest_tables_and_vacuums_when_configured(spark, cfg):
    """`delta.zorder` and `delta.vacuum_retention_hours` (off by default): OPTIMIZE ZORDER BY the
    registry's columns, then VACUUM, which leaves only the current version's files."""
    from lakerec.tables import maintain
    from tests.builders import contexts_from_samples, sample, write_user_contexts

    assert maintain(spark, cfg, "ingest") == []  # the defaults: nothing
    rows = [sample(i, u, 100 + u) for i, u in enumerate((1, 2, 3, 1), 1)]
    for _ in range(2):  # two versions: the first one's files are what VACUUM removes
        write_user_contexts(spark, cfg, contexts_from_samples(rows))
    name = cfg.table("user_contexts")
    on = override(cfg, delta__zorder=True, delta__vacuum_retention_hours=0)
    try:
        assert maintain(spark, on, "ingest") == [f"OPTIMIZE {name} ZORDER BY (common_feature_index)",
                                                 f"VACUUM {name} RETAIN 0 HOURS"]
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    history = spark.sql(f"DESCRIBE HISTORY {name}").collect()
    optimize = next(h for h in history if h.operation == "OPTIMIZE")
    assert optimize.operationParameters["zOrderBy"] == '["common_feature_index"]'
    location = spark.sql(f"DESCRIBE DETAIL {name}").first().location.removeprefix("file:")
    on_disk = {str(p.relative_to(location)) for p in Path(location).rglob("*.parquet")}
    current = {f.removeprefix(f"file:{location}/") for f in spark.table(name).inputFiles()}
    assert on_disk == current


def test_tensorflow_imports_without_native_lines_on_stderr():
    """TensorFlow's start-up lines (oneDNN, CUDA drivers, absl) ignore TF_CPP_MIN_LOG_LEVEL;
    importing it after lakerec says nothing (--verbose / LAKEREC_VERBOSE=1 shows them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LAKEREC_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    out = subprocess.run([sys.executable, "-c", "import lakerec, tensorflow as tf; print(int(tf.constant(2) * 3))"],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout == "6\n", out.stderr
    assert out.stderr == ""
