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

import pyspark
import pytest

from lakerec import sqlfiles
from lakerec.jobs import sql as sql_job
from lakerec.config import load_config, override
from lakerec.errors import ConfigError
from lakerec.tables import write_table, table_version
from tests.conftest import REPO

pytestmark = pytest.mark.heavy(seconds=130)


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
    # A second process opens the new lake at the same moment: Hive creates its catalog tables
    # once, under the lake's lock, with no deadlock traces (lakerec.metastore.locked).
    # (A session of its own, not jobs.sql: a read job refuses a lake that does not exist yet.)
    opener = ("from lakerec.config import load_config, override; from lakerec.spark import get_spark;"
              f"cfg=override(load_config(lake=r'{lake}'), spark__master='local[1]');"
              "print(get_spark(cfg).sql('SELECT 1 AS one').first().one)")
    other = subprocess.Popen([sys.executable, "-c", opener], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    made = subprocess.run([sys.executable, "-c", make], cwd=REPO, capture_output=True, text=True)
    other_out = other.communicate(timeout=600)[0]
    assert made.returncode == 0, _tail(made.stderr)
    assert other.returncode == 0, _tail(other_out)
    for text in (made.stdout + made.stderr, other_out):
        assert not [ln for ln in text.splitlines() if ln.lstrip().startswith("at ")]  # no Java stack frames
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


def test_sql_job_json_is_one_object_per_line_at_full_precision(spark, cfg, capsys):
    sql_job.main(["SELECT id, CAST(id AS DOUBLE) / 3 AS third, array(id, id) AS pair, NULL AS none FROM range(4)",
                  "--lake", cfg.lake, "--database", cfg.database, "--format", "json", "--limit", "3"])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert rows == [{"id": i, "third": i / 3, "pair": [i, i], "none": None} for i in range(3)]
    assert captured.err.strip().splitlines()[-1] == "(first 3 of 4 rows)"


def test_sql_job_names_a_missing_table_in_one_line(spark, cfg, capsys):
    with pytest.raises(SystemExit) as exit_:
        sql_job.main([f"SELECT * FROM {cfg.database}.nope", "--lake", cfg.lake, "--database", cfg.database])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{cfg.database}.nope does not exist" in err and "Traceback" not in err


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


def _job(module: str, *args: str, lake) -> subprocess.Popen:
    """A job in its own process on `lake` (one core, a small driver: several run at once)."""
    return subprocess.Popen(
        [sys.executable, "-m", f"lakerec.jobs.{module}", *args, "--lake", str(lake),
         "--set", "spark.master=local[1]", "--set", "spark.driver_memory=1g"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _tail(err: str) -> str:
    """The end of a job's stderr without Spark's progress bars."""
    return "\n".join(ln for ln in err.replace("\r", "\n").splitlines() if "[Stage" not in ln and ln.strip())[-3000:]


def test_a_job_writes_while_two_processes_query_one_lake(spark, cfg, base_cfg):
    """Several processes on one lake: while two `jobs.sql` processes query it, this test's
    session (which keeps the catalog open throughout: embedded Derby admitted one process)
    writes a new table (the SQL endpoint's test has a process read another's new table)."""
    name = cfg.table("shared")
    write_table(spark.createDataFrame([(i,) for i in range(1, 101)], "n int"), name)
    query = f"SELECT sum(n) AS total, count(*) AS rows FROM {name}"
    readers = [_job("sql", query, "--format", "csv", lake=base_cfg.lake) for _ in range(2)]
    written = cfg.table("written")
    write_table(spark.range(5000).selectExpr("id", "id % 7 AS k"), written)
    for reader in readers:
        out, err = reader.communicate(timeout=600)
        assert reader.returncode == 0, _tail(err)
        assert out.strip().splitlines()[-2:] == ["total,rows", "5050,100"]
    row = spark.sql(f"SELECT count(*) AS n, sum(k) AS k FROM {written}").first()
    assert (row.n, row.k) == (5000, sum(i % 7 for i in range(5000)))


def test_a_catalog_another_process_opened_directly_is_one_line(spark, tmp_path):
    """A lake whose Derby files another JVM opened embedded (an older LakeRec) is refused at
    once with one line, before Hive would retry for 40 s printing stack traces."""
    from lakerec import metastore
    from lakerec.errors import SetupError
    from lakerec.spark import _check_catalog

    from py4j.protocol import Py4JJavaError

    held = tmp_path / "held"
    held.mkdir()
    embedded = f"jdbc:derby:;databaseName={held}/metastore_db"
    manager = spark._jvm.java.sql.DriverManager
    manager.getConnection(embedded + ";create=true").close()  # booted in this JVM until shut down
    try:
        server = metastore.ensure(held)
        with pytest.raises(SetupError, match="is open in another process") as e:
            _check_catalog(spark, server, held)
        assert "\n" not in str(e.value)
    finally:
        with pytest.raises(Py4JJavaError, match="08006"):  # Derby's answer to a clean shutdown
            manager.getConnection(embedded + ";shutdown=true")
    _check_catalog(spark, server, held)  # released: the server opens it now
    assert spark.range(3).count() == 3  # and the session is untouched
    assert metastore.stop(held) == server and metastore.running(held) is None


def test_sql_endpoint_answers_two_clients_while_a_job_writes(spark, cfg, base_cfg, tmp_path):
    """`jobs.sql_server` serves the lake: `jobs.sql` (PyHive, no Spark of its own) and beeline
    (JDBC, as BI tools connect) query at once while this process writes a table, and see it."""
    import signal
    import socket

    from lakerec import sql_endpoint

    name = cfg.table("served")
    write_table(spark.createDataFrame([(i,) for i in range(1, 11)], "n int"), name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = _job("sql_server", "--sql-port", str(port), lake=base_cfg.lake)
    try:
        ep = sql_endpoint.wait_listening(spark_lake := Path(base_cfg.lake), timeout=300)
        assert ep is not None and ep.port == port and ep.host == "127.0.0.1", _tail(server.stderr.read())
        query = f"SELECT sum(n) AS total, count(*) AS rows FROM {name}"
        client = subprocess.Popen([sys.executable, "-m", "lakerec.jobs.sql", query, "--lake", base_cfg.lake,
                                   "--format", "csv"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        beeline = subprocess.Popen([str(Path(pyspark.__file__).parent / "bin" / "beeline"), "-u", ep.jdbc_url,
                                    "--silent=true", "--outputformat=csv2", "-e", query],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        write_table(spark.createDataFrame([(7,), (8,)], "n int"), cfg.table("written_meanwhile"))
        out, err = client.communicate(timeout=300)
        assert client.returncode == 0, _tail(err)
        assert "sent to the lake's SQL endpoint" in err  # answered by the server, no Spark here
        assert out.strip().splitlines() == ["total,rows", "55,10"]
        b_out, b_err = beeline.communicate(timeout=300)
        assert beeline.returncode == 0, b_err[-2000:]
        # beeline prints its prompt ("0: jdbc:hive2://...> ") before the header
        assert [ln.split("> ", 1)[-1] for ln in b_out.splitlines() if ln.strip()][-2:] == ["total,rows", "55,10"]
        seen = sql_job_rows(ep, f"SELECT sum(n) FROM {cfg.table('written_meanwhile')}")
        assert seen == [(15,)]  # the write of another process, through the shared catalog
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    assert server.returncode == 0
    assert sql_endpoint.running(spark_lake) is None and not sql_endpoint.state_path(spark_lake).exists()


def sql_job_rows(ep, sql: str) -> list[tuple]:
    import contextlib

    from lakerec import sql_endpoint

    with contextlib.closing(sql_endpoint.connect(ep)) as conn:
        return [tuple(r) for r in sql_endpoint.RemoteResult(conn, sql).collect()]


DELTALAKE_REQUIREMENTS = REPO / "requirements-deltalake.txt"

# Run by the delta-rs environment's Python: the table read by path, with no Spark and no catalog.
READ_WITH_DELTA_RS = """
import json, sys
import deltalake, duckdb
dt = deltalake.DeltaTable(sys.argv[1])
rows = sorted([r["n"], r["user"], r["score"], r["ids"], r["split"]] for r in dt.to_pyarrow_table().to_pylist())
ds = dt.to_pyarrow_dataset()
by_split = duckdb.sql("SELECT split, count(*), sum(n) FROM ds GROUP BY split ORDER BY split").fetchall()
print(json.dumps({"version": dt.version(), "files": len(dt.file_uris()), "rows": rows, "duckdb": by_split}))
"""


@pytest.fixture(scope="module")
def deltalake_python() -> Path:
    """The Python of .venv-deltalake (`make setup` makes it; made here when missing or stale)."""
    venv = REPO / ".venv-deltalake"
    python, marker = venv / "bin" / "python", venv / ".installed"
    wanted = DELTALAKE_REQUIREMENTS.read_text()
    if not (python.exists() and marker.is_file() and marker.read_text() == wanted):
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True,
                           text=True, timeout=300)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(DELTALAKE_REQUIREMENTS)],
                           check=True, capture_output=True, text=True, timeout=900)
        except subprocess.CalledProcessError as e:
            last = (e.stderr or e.stdout or "").strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"pip could not install {DELTALAKE_REQUIREMENTS.name} (no package index here?): {last[0]}")
        marker.write_text(wanted)
    return python


def test_delta_rs_and_duckdb_read_a_table_the_session_wrote(spark, cfg, deltalake_python):
    """The lake's tables are plain Delta: delta-rs (and DuckDB over it) read one by path and
    see the live rows only, not the files a replaced partition left behind."""
    from urllib.parse import urlparse

    name = cfg.table("engines")
    schema = "n int, user string, score double, ids array<int>, split string"
    rows = [(i, f"u{i}", i / 4, [i, i + 1], "train" if i % 2 else "test") for i in range(10)]
    write_table(spark.createDataFrame(rows, schema), name, ("split",))
    write_table(spark.createDataFrame([(100, "u100", 25.0, [100], "test")], schema), name, ("split",), "split = 'test'")
    location = Path(urlparse(spark.sql(f"DESCRIBE DETAIL {name}").first().location).path)
    on_disk = len(list(location.rglob("*.parquet")))
    out = subprocess.run([str(deltalake_python), "-c", READ_WITH_DELTA_RS, str(location)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout)
    expected = sorted([r.n, r.user, r.score, list(r.ids), r.split] for r in spark.table(name).collect())
    assert seen["rows"] == expected and len(expected) == 6  # 5 train rows + the replacing test row
    assert seen["version"] == table_version(spark, name) == 1
    assert seen["files"] < on_disk  # the replaced partition's files are still there, and not read
    assert seen["duckdb"] == [["test", 1, 100], ["train", 5, 1 + 3 + 5 + 7 + 9]]
