"""The recommendation service against the real local server: latency, throughput, the approximate index's recall.

    nice python bench/serve.py [--items 10000 100000] [--requests 300] [--k 10] [--candidates 200]

Trains both models on a tiny generated lake (tests/pipeline_fixtures.py, under bench/out/serve)
for a real two-tower, ranker and user snapshot, then for each catalogue size N builds a
recommender whose catalogue holds N generated items (each a trained item's embedding plus
Gaussian noise at half the embeddings' spread, with that item's ranker columns), logs it, and
serves it with `mlflow models serve` (lakerec.serving.server), once with the exact index and
once with HNSW. Known users, chosen at random, are asked for the top --k of --candidates over
keep-alive HTTP by 1 client and by 8 concurrent clients: latency p50/p95/p99, requests/s and
the server's CPU time per request (load-independent, unlike wall time on a shared machine).
In process, the HNSW index's recall@100 against the exact top 100 for every snapshot user.

Targets (issue 12): p99 <= 50 ms with one client at 100,000 items; recall@100 >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "serve"
sys.path.insert(0, str(REPO))  # tests/pipeline_fixtures.py
CLIENTS = (1, 8)
RECALL_AT = 100


def generated_items(items, n: int, rng):
    """n items drawn from the trained ones: their columns, their embedding plus noise, new ids."""
    embeddings = np.stack(items["embedding"].to_numpy())
    pick = rng.integers(len(items), size=n)
    out = items.iloc[pick].reset_index(drop=True)
    noise = rng.normal(0.0, 0.5 * embeddings.std(axis=0), size=(n, embeddings.shape[1]))
    out["embedding"] = list((embeddings[pick] + noise).astype(np.float32))
    out["item_id"] = 10**9 + np.arange(n, dtype=np.int64)
    return out  # item_index stays the copied item's: the ranker's id embedding has a row for it


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}


def load_test(url: str, users: np.ndarray, clients: int, requests: int, params: dict, seed: int, pid: int) -> dict:
    """`requests` requests per client from `clients` threads (one keep-alive session each).

    Besides the latencies: the server's CPU milliseconds per request (process `pid` and its
    children), which other jobs on the machine do not inflate the way they inflate wall time.
    """
    import requests as http

    def client(c: int) -> list[float]:
        rng = np.random.default_rng(seed + c)
        session, out = http.Session(), []
        for _ in range(requests):
            body = json.dumps({"dataframe_records": [{"user_id": int(rng.choice(users))}], "params": params})
            t0 = time.perf_counter()
            r = session.post(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
            out.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
        return out

    client(-1)  # warm-up: the first requests build TensorFlow's graphs
    t0, cpu = time.perf_counter(), cpu_seconds(pid)
    with ThreadPoolExecutor(clients) as pool:
        latencies = [s for part in pool.map(client, range(clients)) for s in part]
    wall = time.perf_counter() - t0
    return {**percentiles(latencies), "rps": len(latencies) / wall,
            "cpu_ms": (cpu_seconds(pid) - cpu) * 1000 / len(latencies)}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants so far, from /proc (Linux)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except FileNotFoundError:  # exited meanwhile
        pass
    return total


def recall_at(exact, approx, queries: np.ndarray, k: int = RECALL_AT) -> float:
    """Mean share of the exact top k that the approximate index also returns."""
    want, _ = exact.search(queries, k)
    got, _ = approx.search(queries, k)
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(want.tolist(), got.tolist())]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--requests", type=int, default=300, help="requests per client")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("--trained", help="start from this recommender bundle (lakerec.serving.export.bundle_path) "
                                     "instead of training the tiny lake")
    args = p.parse_args()

    import mlflow
    import pandas as pd

    from lakerec.config import load_config, override
    from lakerec.retrieval import tracking
    from lakerec.serving import export, server
    from lakerec.serving.index import ExactIndex, build_index
    from lakerec.serving.recommender import ITEMS_FILE, Recommender
    from lakerec.spark import get_spark
    from tests.pipeline_fixtures import two_stage_lake

    shutil.rmtree(OUT, ignore_errors=True)
    cfg = load_config(REPO / "conf" / "local.yml", lake=str(OUT), database="bench_serve")
    cfg = override(cfg, spark__master="local[2]", spark__shuffle_partitions=2)
    if args.trained:
        trained = args.trained
    else:
        t0 = time.monotonic()
        spark = get_spark(cfg)
        cfg, stages = two_stage_lake(spark, cfg, OUT / "raw", "bench", k=args.k)
        spark.stop()
        print(f"tiny lake and both models in {time.monotonic() - t0:.0f}s", flush=True)
        tracking.configure(cfg)
        trained = export.bundle_path(export.served_uri(stages["recommend"]["recommender"]), OUT / "trained")
    tracking.configure(cfg)
    base = Recommender.load(trained)
    users = base.users.keys.to_numpy()
    params = {"k": args.k, "candidates": args.candidates}
    rng = np.random.default_rng(0)
    rows, recalls = [], {}
    for n in args.items:
        bundle = OUT / f"bundle_{n}"
        shutil.copytree(trained, bundle)
        items = generated_items(pd.read_parquet(Path(trained) / ITEMS_FILE), n, rng)
        items.to_parquet(bundle / ITEMS_FILE, index=False)
        with mlflow.start_run(run_name=f"bench-serve-{n}"):
            uri = export.log_bundle(bundle, base.settings, None, int(users[0])).model_uri
        embeddings = np.stack(items["embedding"].to_numpy())
        queries = base.queries(pd.DataFrame({"user_id": users}))
        t0 = time.monotonic()
        hnsw = build_index("hnsw", embeddings, m=cfg.serve.hnsw_m, ef_search=cfg.serve.hnsw_ef_search)
        built = time.monotonic() - t0
        recalls[n] = (recall_at(ExactIndex(embeddings), hnsw, queries), built)
        for kind in ("exact", "hnsw"):
            index = {"index": kind, "hnsw_m": cfg.serve.hnsw_m, "hnsw_ef_search": cfg.serve.hnsw_ef_search}
            running = server.start(override(cfg, serve__port=free_port()), uri, index, timeout=900,
                                   stdout=subprocess.DEVNULL, stderr=open(OUT / f"server_{n}_{kind}.log", "w"))
            try:
                for clients in CLIENTS:
                    m = load_test(running.url, users, clients, args.requests if clients == 1 else args.requests // 4,
                                  params, seed=n + clients, pid=running.process.pid)
                    rows.append((n, kind, clients, m))
                    print(f"{n:>8,} {kind:<6} {clients} client(s): p50 {m['p50']:6.1f} ms  p95 {m['p95']:6.1f} ms  "
                          f"p99 {m['p99']:6.1f} ms  {m['rps']:6.1f} req/s  server CPU {m['cpu_ms']:5.1f} ms/request", flush=True)
            finally:
                running.stop()

    load = os.getloadavg()
    print(f"\nRecommender service, top {args.k} of {args.candidates} candidates per request, "
          f"{len(users):,} known users, load average {load[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'items':>8} {'index':<6} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8} "
          f"{'CPU ms/req':>10}")
    for n, kind, clients, m in rows:
        print(f"{n:>8,} {kind:<6} {clients:>7} {m['p50']:>8.1f} {m['p95']:>8.1f} {m['p99']:>8.1f} {m['rps']:>8.1f} "
              f"{m['cpu_ms']:>10.1f}")
    by = {(n, kind, c): m for n, kind, c, m in rows}
    print("\nhnsw / exact, side by side:")
    for n in args.items:
        for c in CLIENTS:
            e, h = by[(n, "exact", c)], by[(n, "hnsw", c)]
            print(f"{n:>8,} items, {c} client(s): p99 x{h['p99'] / e['p99']:.2f}, req/s x{h['rps'] / e['rps']:.2f}")
    for n, (recall, built) in recalls.items():
        print(f"{n:>8,} items: hnsw recall@{RECALL_AT} vs exact {recall:.4f} (graph built in {built:.1f}s, "
              f"M={cfg.serve.hnsw_m}, efSearch={cfg.serve.hnsw_ef_search})")
    print("\nTargets (issue 12):")
    big = max(args.items)
    p99 = by[(big, "exact", 1)]["p99"]
    print(f"{'met   ' if p99 <= 50 else 'MISSED'} p99 {p99:.1f} ms <= 50 ms with one client at {big:,} items (exact)")
    p99 = by[(big, "hnsw", 1)]["p99"]
    print(f"{'met   ' if p99 <= 50 else 'MISSED'} p99 {p99:.1f} ms <= 50 ms with one client at {big:,} items (hnsw)")
    worst = min(r for r, _ in recalls.values())
    print(f"{'met   ' if worst >= 0.95 else 'MISSED'} hnsw recall@{RECALL_AT} {worst:.4f} >= 0.95 of exact")


if __name__ == "__main__":
    main()
