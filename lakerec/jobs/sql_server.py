"""Serve the lake over JDBC/ODBC: Spark's Thrift server, for beeline, Python clients and BI tools.

    python -m lakerec.jobs.sql_server --lake lake                 # 127.0.0.1:10000
    python -m lakerec.jobs.sql_server --lake lake --sql-port 10001
    beeline -u jdbc:hive2://127.0.0.1:10000/default -e "SELECT count(*) FROM aliccp.samples"

Runs in the foreground until Ctrl-C (or SIGTERM); while it runs, `python -m lakerec.jobs.sql`
on the same lake sends its queries to it instead of starting Spark (lakerec.sql_endpoint).
"""

from __future__ import annotations

import logging
import signal
import threading

from lakerec import cli, sql_endpoint
from lakerec.errors import SetupError
from lakerec.spark import get_spark

log = logging.getLogger("lakerec.sql_server")


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("sql_server", "Serve the lake over JDBC/ODBC (Spark's Thrift server).",
                   ("sql_server.host", "sql_server.port"))
    args = p.parse_args(argv)

    def body():
        cfg = cli.config_from_args(args)
        host, port = cfg.sql_server.host, cfg.sql_server.port
        lake = cfg.lake_path
        other = sql_endpoint.running(lake)
        if other:
            raise SetupError(f"the lake's SQL endpoint already runs at {other.jdbc_url} (pid {other.pid})")
        sql_endpoint.set_address(host, port)
        spark = get_spark(cfg)
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        try:
            ep, server = sql_endpoint.start(spark, lake, host, port)
        except Exception as e:
            raise SetupError(f"the SQL endpoint could not start on {host}:{port}: "
                             f"{str(e).strip().splitlines()[0]} (another --sql-port?)") from None
        try:
            if not sql_endpoint.wait_listening(lake):
                raise SetupError(f"the SQL endpoint did not listen on {host}:{port}: is the port taken? "
                                 "(choose another with --sql-port)")
            log.info("SQL endpoint on %s (lake %s): Ctrl-C stops it", ep.jdbc_url, lake)
            done.wait()
            log.info("stopping the SQL endpoint")
        finally:
            sql_endpoint.forget(lake)
            server.stop()
            spark.stop()

    cli.run_main("sql_server", body)


if __name__ == "__main__":
    main()
