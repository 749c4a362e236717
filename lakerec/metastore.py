"""The local catalog's database server: Derby in network-server mode on loopback, one per lake.

Embedded Derby (the database engine inside the Spark driver) lets one process open the lake's
catalog at a time. Instead, the first session on a lake starts a Derby network server that
serves the same database files (`<lake>/metastore_db`, so a lake made by embedded Derby opens
as it was), and every Spark process (jobs, `jobs.sql`, notebooks, the SQL endpoint) is a client
of it. The server:

- listens on 127.0.0.1 only, on a free port chosen at start and recorded with its process id
  in `<lake>/metastore_server.json` (kept when it stops: a restart tries the same port first);
- is a detached process that outlives the job that started it, so the next one finds it at
  once; `python -m lakerec.jobs.metastore stop --lake DIR` stops it (`make clean` too), and
  it stops by itself within seconds of its lake folder being deleted;
- is started again when the recorded one is gone (a reboot, a kill; on the same port if it is
  free): a stale record is recognised by its process, its port and its lake path (a copied or
  moved lake starts its own).

The database files and the server's log (`metastore_server.log`, Derby's own `derby.log`)
stay in the lake folder, so it remains self-contained. There is no password: only processes on
this machine reach loopback, as with the embedded engine, which any of them could open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lakerec import jars
from lakerec.scratch import alive
from lakerec.errors import SetupError

log = logging.getLogger("lakerec.metastore")

HOST = "127.0.0.1"
DATABASE = "metastore_db"  # the folder in the lake, as embedded Derby named it
STATE = "metastore_server.json"
LOG = "metastore_server.log"
CLIENT_DRIVER = "org.apache.derby.jdbc.ClientDriver"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Server:
    lake: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        """The JDBC URL a Hive metastore connects with (the database is created on first use)."""
        return f"jdbc:derby://{HOST}:{self.port}/{DATABASE};create=true"


def state_path(lake: Path) -> Path:
    return lake / STATE


def database_dir(lake: Path) -> Path:
    return lake / DATABASE


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    exe = shutil.which("java")
    if not exe:
        raise SetupError("Java was not found: the catalog server needs Java 17. Install it or set JAVA_HOME.")
    return exe


def _recorded(lake: Path) -> Server | None:
    try:
        data = json.loads(state_path(lake).read_text())
        return Server(str(data["lake"]), int(data["port"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _answers(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def running(lake: Path) -> Server | None:
    """The lake's catalog server if it is up (its record names this lake, its process lives, its port answers)."""
    lake = lake.resolve()
    server = _recorded(lake)
    if server is None or server.lake != str(lake) or not alive(server.pid) or not _answers(server.port):
        return None
    return server


def _free_port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise SetupError("no free port on 127.0.0.1 for the catalog server")


@contextlib.contextmanager
def locked(lake: Path):
    """Serialise between processes on one lake: the server's start and stop, and a session's
    first use of the catalog (on a new lake Hive creates its tables then, and two processes
    creating them at once deadlock in Derby and print pages of stack traces before one wins)."""
    with open(lake / ".metastore.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _spawn(lake: Path, port: int) -> int:
    """Start the server detached (its own session, reparented away from us); return its pid."""
    classpath = os.pathsep.join(str(p) for p in [jars.derby_jar(), *jars.derby_network_jars()])
    cmd = [
        java_executable(), "-Xms16m", "-Xmx256m", "-XX:+UseSerialGC",
        f"-Dderby.system.home={lake}", "-cp", classpath,
        "org.apache.derby.drda.NetworkServerControl", "start", "-h", HOST, "-p", str(port), "-noSecurityManager",
    ]
    # The shell starts the JVM in the background and exits: the JVM is nobody's child, so it
    # survives this process and leaves no zombie behind it. A watchdog beside it ends the
    # server once the lake folder is gone (`rm -r lake`), so no server outlives its files: gone
    # means no longer the same folder (its inode), since a script that deletes a lake often makes
    # a new one at the same path at once (bench/ingest.py did, and each run left a server behind).
    # (The watchdog is a shell of its own, so that its command line does not repeat the server's.)
    inode = 'set -- $(ls -di "$LAKEREC_METASTORE_LAKE" 2>/dev/null)'
    watchdog = (f'{inode}; ino=$1; while kill -0 "$LAKEREC_METASTORE_PID" 2>/dev/null; do '
                f'{inode}; [ -n "$ino" ] && [ "$1" = "$ino" ] || break; sleep 5; done; '
                'kill "$LAKEREC_METASTORE_PID" 2>/dev/null')
    script = (
        '"$@" >>"$LAKEREC_METASTORE_LOG" 2>&1 </dev/null & pid=$!; echo $pid; '
        f"LAKEREC_METASTORE_PID=$pid /bin/sh -c '{watchdog}' >/dev/null 2>&1 </dev/null &"
    )
    out = subprocess.run(
        ["/bin/sh", "-c", script, "sh", *cmd],
        env={**os.environ, "LAKEREC_METASTORE_LOG": str(lake / LOG), "LAKEREC_METASTORE_LAKE": str(lake)},
        capture_output=True, text=True, check=True, start_new_session=True,
    )
    return int(out.stdout.strip())


def _log_tail(lake: Path) -> str:
    try:
        lines = [ln for ln in (lake / LOG).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def ensure(lake: Path, timeout: float = START_TIMEOUT_S) -> Server:
    """The lake's catalog server, started first if it is not running.

    Raises:
        SetupError: the server did not start (Java or the Derby jars missing, or it exited: the
            last line of its log says why).
    """
    lake = lake.resolve()
    lake.mkdir(parents=True, exist_ok=True)
    server = running(lake)
    if server:
        return server
    with locked(lake):
        server = running(lake)  # another process may have started it while we waited
        if server:
            return server
        old = _recorded(lake)
        port = _free_port(old.port if old else None)
        pid = _spawn(lake, port)
        deadline = time.monotonic() + timeout
        while not _answers(port, timeout=0.5):
            if not alive(pid):
                raise SetupError(f"the lake's catalog server (Derby, port {port}) exited: {_log_tail(lake)} "
                                 f"(log: {lake / LOG})")
            if time.monotonic() > deadline:
                _terminate(pid)
                raise SetupError(f"the lake's catalog server (Derby, port {port}) did not answer within "
                                 f"{timeout:.0f}s (log: {lake / LOG})")
            time.sleep(0.2)
        server = Server(str(lake), port, pid)
        tmp = state_path(lake).with_suffix(".tmp")
        tmp.write_text(json.dumps({"lake": server.lake, "port": port, "pid": pid}) + "\n")
        tmp.replace(state_path(lake))
    log.info("started the lake's catalog server (Derby) on %s:%d, pid %d", HOST, port, pid)
    return server


def _terminate(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop(lake: Path, timeout: float = 20.0) -> Server | None:
    """Stop the lake's catalog server (Derby closes the database cleanly); return it, or None if none ran."""
    lake = lake.resolve()
    if not lake.is_dir():
        return None
    with locked(lake):
        server = running(lake)
        if server is None:
            return None
        classpath = os.pathsep.join(str(p) for p in [jars.derby_jar(), *jars.derby_network_jars()])
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [java_executable(), "-cp", classpath, "org.apache.derby.drda.NetworkServerControl",
                 "shutdown", "-h", HOST, "-p", str(server.port)],
                capture_output=True, timeout=timeout,
            )
        deadline = time.monotonic() + timeout
        while alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(server.pid):
            _terminate(server.pid)
    log.info("stopped the lake's catalog server (pid %d)", server.pid)
    return server


def stop_all_under(root: Path) -> list[Server]:
    """Stop every lake's catalog server recorded under `root` (tests: the lakes of a temporary folder)."""
    return [s for p in sorted(root.rglob(STATE)) if (s := stop(p.parent))]
