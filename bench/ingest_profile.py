"""Where the time of ingest and filter goes: Spark's own job and stage metrics, per named step.

    python bench/ingest_profile.py [--impressions 1000000]

Runs one ingest of the generated train split (the same files as bench/ingest.py) and then
the filter, with Spark's event log on, then reads the log: for each step the jobs are named
by (`lakerec.spark.named_jobs`: "ingest: parse and count skeleton", "ingest: write
samples", "filter/03_vocabularies.sql: item_vocab", ...), the jobs it ran, their
wall time, and the executors' CPU time (the JVM's own per-task measure, all cores summed)
and task time (CPU plus waiting: I/O, garbage collection, a busy machine). What the jobs
do not cover is driver time: query planning, Delta commits, metastore calls.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

from ingest import OUT, REPO, ensure_data


def read_event_log(folder: Path, since_ms: float, until_ms: float) -> dict[str, dict[str, float]]:
    """Per job description: jobs, wall seconds, executor CPU and task seconds of the jobs submitted in the window."""
    (log,) = [p for p in folder.iterdir() if p.is_file()]
    desc, start, stages_of, cpu, run = {}, {}, {}, defaultdict(float), defaultdict(float)
    steps: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in log.read_text().splitlines():
        e = json.loads(line)
        kind = e["Event"]
        if kind == "SparkListenerJobStart":
            job = e["Job ID"]
            desc[job] = (e.get("Properties") or {}).get("spark.job.description") or "(unnamed: lake_runs, catalog)"
            start[job] = e["Submission Time"]
            stages_of[job] = e["Stage IDs"]
        elif kind == "SparkListenerStageCompleted":
            info = e["Stage Info"]
            for acc in info.get("Accumulables", []):
                if acc.get("Name") == "internal.metrics.executorCpuTime":
                    cpu[info["Stage ID"]] += int(acc["Value"]) / 1e9
                elif acc.get("Name") == "internal.metrics.executorRunTime":
                    run[info["Stage ID"]] += int(acc["Value"]) / 1e3
        elif kind == "SparkListenerJobEnd":
            job = e["Job ID"]
            if not since_ms <= start[job] <= until_ms:
                continue
            s = steps[desc[job]]
            s["jobs"] += 1
            s["wall_s"] += (e["Completion Time"] - start[job]) / 1e3
            s["cpu_s"] += sum(cpu[st] for st in stages_of[job])
            s["task_s"] += sum(run[st] for st in stages_of[job])
    return steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impressions", type=int, default=1_000_000)
    p.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting to try")
    p.add_argument("--no-filter", action="store_true", help="profile the ingest only")
    args = p.parse_args()

    from lakerec import filtering, ingest
    from lakerec.config import load_config, override
    from lakerec.spark import get_spark

    raw = ensure_data(args.impressions)
    work = OUT / "work_profile"
    shutil.rmtree(work, ignore_errors=True)
    events = work / "events"
    events.mkdir(parents=True)
    cfg = load_config(REPO / "conf" / "local.yml", lake=str(work / "lake"))
    tried = dict(kv.split("=", 1) for kv in args.spark_conf)
    cfg = override(cfg, spark__extra={**cfg.spark.extra, **tried, "spark.eventLog.enabled": "true",
                                      "spark.eventLog.dir": events.as_uri()})
    spark = get_spark(cfg)
    spark.range(1).count()
    t_ingest = time.time()
    reports = ingest.run(spark, cfg, str(raw), ("train",))
    t_filter = time.time()
    if not args.no_filter:
        filtering.run(spark, cfg)
    t_end = time.time()
    spark.stop()  # flushes the event log
    impressions = next(r.lines_read for r in reports if r.file == "skeleton")
    for job, t0, t1 in (("ingest", t_ingest, t_filter), ("filter", t_filter, t_end))[:1 if args.no_filter else 2]:
        steps = read_event_log(events, t0 * 1e3, t1 * 1e3)
        total = t1 - t0
        print(f"\n{job}, {impressions:,} impressions: {total:.1f}s ({impressions / total:,.0f}/s), Spark start excluded")
        print(f"{'step':<48} {'jobs':>5} {'wall s':>8} {'CPU s':>8} {'task s':>8}")
        for name, s in sorted(steps.items(), key=lambda kv: -kv[1]["wall_s"]):
            print(f"{name[:48]:<48} {s['jobs']:>5.0f} {s['wall_s']:>8.1f} {s['cpu_s']:>8.1f} {s['task_s']:>8.1f}")
        in_jobs = sum(s["wall_s"] for s in steps.values())
        print(f"{'driver (planning, commits, catalog)':<48} {'':>5} {total - in_jobs:>8.1f}")


if __name__ == "__main__":
    main()
