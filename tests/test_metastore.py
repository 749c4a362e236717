"""The lake's catalog server (lakerec.metastore): one per lake, found again, replaced when stale.

No Spark here: the server is a small JVM of its own, started in about a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from lakerec import metastore
from lakerec.scratch import alive
from tests.conftest import REPO


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), f"process {pid} still runs"


def test_one_server_per_lake_found_again_and_replaced_when_stale(tmp_path):
    lake = tmp_path / "lake"
    first = metastore.ensure(lake)
    assert metastore.ensure(lake) == first  # found, not started twice
    record = json.loads(metastore.state_path(lake).read_text())
    assert record == {"lake": str(lake.resolve()), "port": first.port, "pid": first.pid}
    assert first.url == f"jdbc:derby://127.0.0.1:{first.port}/metastore_db;create=true"

    os.kill(first.pid, signal.SIGKILL)  # a crash: the record stays behind
    _wait_gone(first.pid)
    assert metastore.running(lake) is None
    second = metastore.ensure(lake)
    assert second.pid != first.pid and metastore.running(lake) == second  # the record replaced
    # (on the recorded port when it is free again, which the kernel does not always grant at once)

    # A copy of the lake carries the record, which names the original: it starts its own server.
    copy = tmp_path / "copy"
    copy.mkdir()
    metastore.state_path(copy).write_text(metastore.state_path(lake).read_text())
    assert metastore.running(copy) is None
    third = metastore.ensure(copy)
    assert third.pid != second.pid and third.port != second.port
    assert metastore.running(lake) == second

    assert metastore.stop(copy) == third and metastore.running(copy) is None
    _wait_gone(third.pid)


def test_the_metastore_job_reports_and_stops_the_server(tmp_path):
    lake = tmp_path / "lake"

    def job(action: str) -> str:
        out = subprocess.run([sys.executable, "-m", "lakerec.jobs.metastore", action, "--lake", str(lake)],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert job("status") == f"no catalog server runs for {lake}"
    started = job("start")
    server = metastore.running(lake)
    assert started == f"catalog server of {lake}: jdbc:derby://127.0.0.1:{server.port}/metastore_db (pid {server.pid})"
    assert job("status") == started
    assert job("stop") == f"stopped the catalog server of {lake} (pid {server.pid})"
    _wait_gone(server.pid)
    assert job("status") == f"no catalog server runs for {lake}"


def test_the_server_ends_when_its_lake_folder_is_deleted(tmp_path):
    import shutil

    lake = tmp_path / "lake"
    server = metastore.ensure(lake)
    shutil.rmtree(lake)
    _wait_gone(server.pid, timeout=30)  # the watchdog looks every 5 s

    # Deleted and made again at the same path (a script starting over): the old server's files
    # are gone, so it ends too, and the new lake gets a server of its own.
    server = metastore.ensure(lake)
    shutil.rmtree(lake)
    lake.mkdir()
    _wait_gone(server.pid, timeout=30)
    assert metastore.ensure(lake).pid != server.pid
    metastore.stop(lake)
