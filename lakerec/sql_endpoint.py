"""The lake's SQL endpoint: Spark's Thrift JDBC/ODBC server (HiveServer2 protocol) on the lake.

`python -m lakerec.jobs.sql_server` opens the project's Spark session (`get_spark`: Delta, the
lake's shared catalog) and starts `HiveThriftServer2` inside it, on 127.0.0.1:10000 unless
configured (`sql_server.host`, `sql_server.port`). Each JDBC/ODBC connection gets its own SQL
session (its own temporary views) in that one Spark application, so queries start at once.

While it runs, its address and process id are recorded in `<lake>/sql_server.json`;
`jobs.sql` finds it there and sends its statements to it (PyHive, see `RemoteResult`)
instead of starting Spark itself. The record is removed when the server stops, and a record
whose process is gone or whose port does not answer is ignored.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from lakerec.scratch import alive

log = logging.getLogger("lakerec.sql_endpoint")

STATE = "sql_server.json"
SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


@dataclass(frozen=True)
class Endpoint:
    lake: str
    host: str
    port: int
    pid: int

    @property
    def client_host(self) -> str:
        """Where a client on this machine connects (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:hive2://{self.client_host}:{self.port}/default"


def state_path(lake: Path) -> Path:
    return lake / STATE


def running(lake: Path) -> Endpoint | None:
    """The lake's SQL endpoint if one is up (its record names this lake, its process lives, its port answers)."""
    lake = lake.resolve()
    try:
        data = json.loads(state_path(lake).read_text())
        ep = Endpoint(str(data["lake"]), str(data["host"]), int(data["port"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if ep.lake != str(lake) or not alive(ep.pid):
        return None
    try:
        with socket.create_connection((ep.client_host, ep.port), timeout=1.0):
            return ep
    except OSError:
        return None


def set_address(host: str, port: int) -> None:
    """Where the server will listen: read by it from the JVM's environment (as Spark documents
    for its Thrift server), so this is called before the Spark session starts. Session
    settings (`hive.server2.thrift.port`) do not reach a server started in a running session."""
    os.environ["HIVE_SERVER2_THRIFT_BIND_HOST"] = host
    os.environ["HIVE_SERVER2_THRIFT_PORT"] = str(port)


def start(spark, lake: Path, host: str, port: int) -> tuple[Endpoint, object]:
    """Start the Thrift server in this process's Spark session and record it in the lake.

    The session's JVM must have been started after `set_address(host, port)`.

    Returns:
        (the endpoint, the JVM server object, whose `stop()` ends it).
    """
    jvm_class = spark._jvm
    for part in SERVER_CLASS.split("."):
        jvm_class = getattr(jvm_class, part)
    server = jvm_class.startWithContext(spark._jsparkSession.sqlContext())
    lake = lake.resolve()
    ep = Endpoint(str(lake), host, port, os.getpid())
    tmp = state_path(lake).with_suffix(".tmp")
    tmp.write_text(json.dumps({"lake": ep.lake, "host": host, "port": port, "pid": ep.pid}) + "\n")
    tmp.replace(state_path(lake))
    return ep, server


def wait_listening(lake: Path, timeout: float = 60.0) -> Endpoint | None:
    """The endpoint once its port answers (the server binds it in a thread of its own), else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ep = running(lake)
        if ep:
            return ep
        time.sleep(0.25)
    return None


def forget(lake: Path) -> None:
    """Remove the lake's endpoint record if it is this process's."""
    path = state_path(lake.resolve())
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(path.read_text())["pid"] == os.getpid():
            path.unlink()


def connect(ep: Endpoint):
    """A DB-API connection to the endpoint (PyHive; SASL PLAIN with any user name, no password)."""
    from pyhive import hive

    logging.getLogger("pyhive").setLevel(logging.WARNING)  # it logs every statement at INFO
    return hive.connect(host=ep.client_host, port=ep.port, username=getpass.getuser(), auth="NONE")


class RemoteResult:
    """A statement's result read from the endpoint, shaped like the DataFrame `jobs.sql` prints
    (`columns`, `limit(n).collect()`, `count()`), so one formatter serves both paths."""

    def __init__(self, conn, sql: str):
        self._conn, self._sql = conn, sql
        self._cursor = conn.cursor()
        self._cursor.execute(sql)
        self.columns = [d[0] for d in (self._cursor.description or [])]
        self._limit: int | None = None
        self._buffered: list | None = None
        if self.columns == ["Result"]:  # how Spark's server shows a statement without rows (DDL)
            try:
                self._buffered = self._cursor.fetchall()
            except TypeError:  # PyHive on a result of no columns
                self._buffered = []
            if not self._buffered:
                self.columns = []

    def limit(self, n: int) -> "RemoteResult":
        self._limit = n
        return self

    def collect(self) -> list:
        from pyspark.sql import Row

        if self._buffered is not None:
            raw = self._buffered if self._limit is None else self._buffered[: self._limit]
        else:
            raw = self._cursor.fetchall() if self._limit is None else self._cursor.fetchmany(self._limit)
        row = Row(*self.columns)
        return [row(*values) for values in raw]

    def count(self) -> int:
        with contextlib.closing(self._conn.cursor()) as c:
            c.execute(f"SELECT count(*) FROM ({self._sql}) AS q")
            return int(c.fetchone()[0])
