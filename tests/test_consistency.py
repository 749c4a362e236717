"""A killed ingest or filter never leaves a lake that readers take for whole (lakerec.lake_runs).

Real kills: a job process runs (tests/lake_steps.py) until a chosen Delta commit appears in
the lake, then the test sends SIGKILL to its process group (Python and the Spark JVM), once
in the middle of an ingest (between its tables) and once in the middle of a filter. After each
kill, the next process's jobs refuse to read (exit status 2, one line naming the job to re-run)
and `jobs.sql` warns; a re-run repairs. (One kill per job: each further commit point is the same mechanism,
a run record started and never completed, and costs a Spark process of the suite's time.)
Its own lake: the processes open the lake's catalog, which the test session's Spark holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lakerec.aliccp.generator import generate
from tests.conftest import REPO

pytestmark = pytest.mark.heavy(seconds=275)

DB = "aliccp"  # the jobs' default database


def commit(lake, table: str, version: int):
    return lake / "warehouse" / f"{DB}.db" / table / "_delta_log" / f"{version:020d}.json"


def steps(lake, *steps_, kill_at=None, timeout=600):
    """Run the steps in one process; with kill_at, SIGKILL it as soon as that commit file exists.

    Returns (exit status per finished step, facts or None, stderr).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAKEREC_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "lake_steps.py"), str(lake), *steps_],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if kill_at is not None:
        deadline = time.monotonic() + timeout
        while not kill_at.exists():
            assert proc.poll() is None, f"ended before {kill_at} was committed: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, f"no {kill_at} after {timeout}s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=timeout)
    status = {}
    found = None
    for line in out.splitlines():
        if line.startswith("step "):
            _, name, _, code = line.split()
            status.setdefault(name, []).append(int(code))
        elif line.startswith("facts "):
            found = json.loads(line[len("facts "):])
    if kill_at is None:
        assert proc.returncode == 0, err[-3000:]
    return status, found, err


@pytest.fixture(scope="module")
def raws(tmp_path_factory):
    """Two different logs: the lake holds A's tables, and B's run is killed on the way."""
    a, b = tmp_path_factory.mktemp("raw_a"), tmp_path_factory.mktemp("raw_b")
    generate(a, ("train",), impressions=600, users=60, items=120, seed=1)
    generate(b, ("train",), impressions=900, users=80, items=200, seed=2)
    return a, b


def test_kills_in_ingest_and_filter_stop_readers_until_a_rerun_repairs(tmp_path, raws):
    a, b = raws
    lake = tmp_path / "lake with space"  # and the lake's path holds a space: quoted everywhere

    # 1. A complete ingest of A, then B's ingest killed after samples (B's already, user_contexts
    #    still A's). (No filter of A: what follows refuses because of the ingest, and the filter
    #    kill below needs only the complete filter run of step 2 before it.)
    status, _, _ = steps(lake, f"ingest:{a}", f"ingest:{b}", kill_at=commit(lake, "samples", 1))
    assert status == {"ingest": [0]}

    # 2. The next job refuses to read the mixed lake, a query warns; a re-run of the ingest repairs
    #    and filter runs; then a stricter filter is killed after item_vocab (before the training tables).
    status, found, err = steps(lake, "filter:2", "sql:SELECT count(*) AS n FROM aliccp.samples_wide", f"ingest:{b}",
                               "filter:2", "facts", "filter:3", kill_at=commit(lake, "item_vocab", 1))
    assert status == {"filter": [2, 0], "sql": [0], "ingest": [0]}, err[-2000:]
    assert "error: the ingest run (train) started at" in err and "did not finish" in err
    assert "Re-run `python -m lakerec.jobs.ingest`" in err and "Traceback" not in err
    assert "warning: the ingest run (train)" in err  # jobs.sql, before its rows
    assert found["samples"] > 0 and found["samples_without_context"] == 0
    assert found["max_item_index"] <= found["items"]
    repaired = found

    # 3. The ranker's tables refuse the half-written vocabularies until the filter is re-run;
    #    then everything downstream reads one run's tables.
    status, found, err = steps(lake, "impressions", "filter:3", "impressions", "facts")
    assert status == {"impressions": [2, 0], "filter": [0]}, err[-2000:]
    assert "the filter run started at" in err and "Re-run `python -m lakerec.jobs.filter`" in err
    assert found["samples"] == repaired["samples"] and found["samples_without_context"] == 0
    assert found["max_item_index"] <= found["items"] < repaired["items"]  # the stricter run's vocabulary, whole
    # Every killed session's scratch folder is gone: each new session swept the dead ones.
    assert [p.name for p in (lake / "scratch").iterdir()] == []
