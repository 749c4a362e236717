"""The Spark factory, the persistent catalog, config loading and the SQL job."""

from __future__ import annotations

import subprocess
import sys

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


def test_catalog_persists_across_processes(tmp_path):
    """A table registered by one process is found by name from a new one (Derby in the lake)."""
    lake = tmp_path / "lake"
    make = (
        "from lakerec.config import load_config; from lakerec.spark import get_spark; from lakerec.tables import write_table;"
        f"cfg=load_config(lake=r'{lake}');s=get_spark(cfg);"
        "write_table(s.createDataFrame([(1,),(2,),(3,)],'n int'), cfg.table('persisted'))"
    )
    subprocess.run([sys.executable, "-c", make], cwd=REPO, check=True, capture_output=True)
    out = subprocess.run(
        [sys.executable, "-m", "lakerec.jobs.sql", "SELECT sum(n) AS total FROM aliccp.persisted", "--lake", str(lake),
         "--format", "csv"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-2:] == ["total", "6"]
    missing = subprocess.run(
        [sys.executable, "-m", "lakerec.jobs.sql", "SELECT * FROM aliccp.nope", "--lake", str(lake)],
        cwd=REPO, capture_output=True, text=True,
    )
    assert missing.returncode == 2
    assert "aliccp.nope does not exist" in missing.stderr and "Traceback" not in missing.stderr


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
