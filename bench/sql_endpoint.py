"""`python -m lakerec.jobs.sql` answered by the lake's SQL endpoint vs by a Spark session of its own.

    nice python bench/sql_endpoint.py [--queries 3]

Ingests a small generated lake (under bench/out/sql_endpoint), then runs the same query
--queries times as a person would, in a fresh `jobs.sql` process each time: first with
`--no-endpoint` (each run starts Spark), then with `jobs.sql_server` running on the lake (each
run is a PyHive client). Prints the wall time per query of both, their ratio, and whether the
answers were the same.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "sql_endpoint"
QUERY = "SELECT split, count(*) AS n, avg(click) AS ctr FROM aliccp.samples GROUP BY split ORDER BY split"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=True)


def _timed_queries(lake: Path, n: int, *flags: str) -> tuple[list[float], str]:
    times, out = [], ""
    for _ in range(n):
        start = time.monotonic()
        out = _run("lakerec.jobs.sql", QUERY, "--lake", str(lake), "--format", "csv", *flags).stdout
        times.append(time.monotonic() - start)
    return times, out.strip().splitlines()[-3:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=3)
    args = p.parse_args()
    from lakerec import metastore, sql_endpoint

    if OUT.exists():
        metastore.stop(OUT / "lake")
        shutil.rmtree(OUT)
    lake, raw = OUT / "lake", OUT / "raw"
    _run("lakerec.jobs.generate", "--out", str(raw), "--impressions", "2000", "--users", "100", "--items", "300")
    _run("lakerec.jobs.ingest", "--lake", str(lake), "--raw", str(raw))

    own, own_answer = _timed_queries(lake, args.queries, "--no-endpoint")
    server = subprocess.Popen([sys.executable, "-m", "lakerec.jobs.sql_server", "--lake", str(lake)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if sql_endpoint.wait_listening(lake, timeout=300) is None:
            raise SystemExit("the SQL endpoint did not start")
        served, served_answer = _timed_queries(lake, args.queries)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
        metastore.stop(lake)
    a, b = statistics.median(own), statistics.median(served)
    print(f"load average {os.getloadavg()[0]:.1f}; median of {args.queries} queries, each a fresh jobs.sql process")
    print(f"own Spark session: {a:6.2f} s/query  ({', '.join(f'{t:.1f}' for t in own)})")
    print(f"SQL endpoint:      {b:6.2f} s/query  ({', '.join(f'{t:.2f}' for t in served)})")
    print(f"ratio: {a / b:.1f}x faster through the endpoint; same answer: {own_answer == served_answer}")


if __name__ == "__main__":
    main()
