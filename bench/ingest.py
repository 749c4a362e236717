"""Ingest throughput: LakeRec (Spark + Delta, lossless) vs the seed/Merlin loader vs DuckDB.

    python bench/ingest.py [--sizes 1000000,4000000,8000000] [--methods lakerec,baseline,duckdb]

All three read the same generated train split (both files; generated once per size into
bench/out and reused). Each runs in its own process; the parent samples the whole process
tree's resident memory (PSS, the Spark JVM included) every second. Spark's session start is timed
apart from the ingest itself (its fixed jobs and commits are in). Prints impressions per
second, the ratios to the baseline and to DuckDB, how the rate holds up from one size to the
next (linear cost: the same rate), and whether peak memory grows with the input.
bench/ingest_profile.py breaks one run down by step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
METHODS = ("lakerec", "baseline", "duckdb")


def run_lakerec(raw: Path, work: Path) -> dict:
    from lakerec import ingest
    from lakerec.config import load_config
    from lakerec.spark import get_spark

    cfg = load_config(REPO / "conf" / "local.yml", lake=str(work / "lake"))
    t0 = time.monotonic()
    spark = get_spark(cfg)
    spark.range(1).count()
    startup = time.monotonic() - t0
    t0 = time.monotonic()
    reports = ingest.run(spark, cfg, str(raw), ("train",))
    seconds = time.monotonic() - t0
    skel = next(r for r in reports if r.file == "skeleton")
    rows = sum(r.features_written for r in reports)
    return {"seconds": seconds, "startup_s": startup, "impressions": skel.rows_written + skel.rows_quarantined,
            "rows_out": rows, "lossless": True}


def run_baseline(raw: Path, work: Path) -> dict:
    from aliccp_baseline import load_split

    t0 = time.monotonic()
    n = load_split(raw, "train", work / "baseline")
    return {"seconds": time.monotonic() - t0, "impressions": n, "rows_out": n, "lossless": False}


def run_duckdb(raw: Path, work: Path) -> dict:
    import duckdb

    out = work / "duckdb"
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads={os.cpu_count() or 2}")
    csv = "read_csv('{path}', delim=',', header=false, quote='', escape='', auto_detect=false, columns={cols})"
    skel = csv.format(path=raw / "sample_skeleton_train.csv", cols="{'sample_id':'BIGINT','click':'INT','conversion':'INT',"
                      "'common_feature_index':'VARCHAR','feature_num':'INT','feature_list':'VARCHAR'}")
    common = csv.format(path=raw / "common_features_train.csv",
                        cols="{'common_feature_index':'VARCHAR','feature_num':'INT','feature_list':'VARCHAR'}")
    explode = (
        "SELECT {key}, split_part(f, chr(2), 1) AS field, "
        "CAST(split_part(split_part(f, chr(2), 2), chr(3), 1) AS BIGINT) AS feature_id, "
        "CAST(split_part(f, chr(3), 2) AS DOUBLE) AS value "
        "FROM (SELECT {key}, unnest(string_split(feature_list, chr(1))) AS f FROM {src})"
    )
    t0 = time.monotonic()
    con.execute(f"COPY ({explode.format(key='common_feature_index', src=common)}) TO '{out}/common_features.parquet'")
    con.execute(f"COPY ({explode.format(key='sample_id', src=skel)}) TO '{out}/skeleton_features.parquet'")
    con.execute(f"COPY (SELECT sample_id, click, conversion, common_feature_index FROM {skel}) TO '{out}/samples.parquet'")
    seconds = time.monotonic() - t0
    n = con.execute(f"SELECT count(*) FROM '{out}/samples.parquet'").fetchone()[0]
    rows = con.execute(
        f"SELECT (SELECT count(*) FROM '{out}/common_features.parquet') + (SELECT count(*) FROM '{out}/skeleton_features.parquet')"
    ).fetchone()[0]
    return {"seconds": seconds, "impressions": n, "rows_out": rows, "lossless": "ids+weights, no validation"}


def resident(proc: psutil.Process) -> int:
    """A process's share of resident memory (PSS): the JVM forks a child for each helper command
    it runs (Hadoop's local file system), and for a moment that child maps all the JVM's pages;
    summing plain RSS counted the JVM twice whenever a sample caught one."""
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return proc.memory_info().rss  # not Linux


def measure(method: str, raw: Path, work: Path) -> dict:
    """Run one method in a child process; sample the tree's peak resident memory (PSS), and what held it."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result_file = work / "result.json"
    proc = psutil.Popen([sys.executable, __file__, "--worker", method, "--raw", str(raw), "--work", str(work)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, parts = 0, {}
    while proc.poll() is None:
        try:
            procs = [proc] + proc.children(recursive=True)
            now = {p.pid: (p.name(), resident(p)) for p in procs if p.is_running()}
        except psutil.Error:
            continue
        total = sum(rss for _, rss in now.values())
        if total > peak:
            peak, parts = total, {}
            for name, rss in now.values():
                parts[name] = parts.get(name, 0) + rss
        time.sleep(1.0)  # reading PSS walks the JVM's page tables under its memory lock: not too often
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr.read().decode()[-3000:]}")
    result = json.loads(result_file.read_text())
    result["peak_rss_mb"] = peak / 2**20
    result["peak_parts"] = " + ".join(f"{name} {rss / 2**20:,.0f}" for name, rss in sorted(parts.items(), key=lambda kv: -kv[1]))
    return result


def ensure_data(impressions: int) -> Path:
    from lakerec.aliccp.generator import generate

    raw = OUT / f"raw_{impressions}"
    if not (raw / "sample_skeleton_train.csv").exists():
        print(f"generating {impressions:,} impressions into {raw} ...", flush=True)
        generate(raw, ("train",), impressions=impressions, users=max(2000, impressions // 100),
                 items=max(5000, impressions // 40), seed=7)
    return raw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000000,4000000,8000000", help="impressions per input, comma-separated")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--raw", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fn = {"lakerec": run_lakerec, "baseline": run_baseline, "duckdb": run_duckdb}[args.worker]
        result = fn(Path(args.raw), Path(args.work))
        (Path(args.work) / "result.json").write_text(json.dumps(result))
        return

    methods = args.methods.split(",")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    results = {}
    for size in sizes:
        raw = ensure_data(size)
        mb = sum(f.stat().st_size for f in raw.glob("*.csv")) / 2**20
        print(f"\n== {size:,} impressions ({mb:,.0f} MiB of raw files), train split", flush=True)
        for m in methods:
            r = results[(m, size)] = measure(m, raw, OUT / f"work_{m}")
            extra = f" (+{r['startup_s']:.1f}s Spark start)" if "startup_s" in r else ""
            print(f"{m:<9} {r['seconds']:8.1f}s{extra}  {r['impressions'] / r['seconds']:>10,.0f} impressions/s  "
                  f"peak memory {r['peak_rss_mb']:>7,.0f} MiB ({r['peak_parts']})  rows out {r['rows_out']:>11,}  lossless: {r['lossless']}",
                  flush=True)
        for ref in ("baseline", "duckdb"):
            if ref in methods and "lakerec" in methods:
                r, b = results[("lakerec", size)], results[(ref, size)]
                ratio = (r["impressions"] / r["seconds"]) / (b["impressions"] / b["seconds"])
                print(f"ratio lakerec/{ref} impressions per second: {ratio:.2f}x")
    for small, large in zip(sizes, sizes[1:]):
        print(f"\n{small:,} -> {large:,} impressions: rate (linear cost: 1.00x) and peak memory")
        for m in methods:
            a, b = results[(m, small)], results[(m, large)]
            rate = (b["impressions"] / b["seconds"]) / (a["impressions"] / a["seconds"])
            print(f"{m:<9} rate {rate:.2f}x, peak memory {a['peak_rss_mb']:,.0f} MiB -> {b['peak_rss_mb']:,.0f} MiB "
                  f"({b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x)")


if __name__ == "__main__":
    main()
