"""Analyst queries of the exploded view `skeleton_features` vs the same rows stored as a Delta table.

    python bench/exploded_views.py [--impressions 1000000] [--repeats 3]

The ingest no longer stores the explode: `skeleton_features` is a view over `samples`
(lakerec/sql/ingest/skeleton_features.sql). This measures what that costs a reader. It ingests
the generated train split (the files bench/ingest.py uses) into bench/out/exploded_views,
stores the view's rows as a table partitioned by split and field (the layout the explode had
when it was stored), checks that both hold the same rows, then runs each query on both, one
after the other, and prints the best of --repeats wall times and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import time

from ingest import OUT, REPO, ensure_data

QUERIES = {
    "one field: distinct ids and rows":
        "SELECT count(DISTINCT feature_id), count(*) FROM {t} WHERE split = 'train' AND field = '206'",
    "one impression's features": "SELECT field, feature_id, value FROM {t} WHERE split = 'train' AND sample_id = 123457",
    "rows per field, whole split": "SELECT field, count(*) FROM {t} WHERE split = 'train' GROUP BY field",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impressions", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from lakerec import ingest
    from lakerec.config import load_config
    from lakerec.schema import tables as T
    from lakerec.spark import get_spark

    raw = ensure_data(args.impressions)
    work = OUT / "exploded_views"
    shutil.rmtree(work, ignore_errors=True)
    cfg = load_config(REPO / "conf" / "local.yml", lake=str(work / "lake"))
    spark = get_spark(cfg)
    ingest.run(spark, cfg, str(raw), ("train",))
    view, stored = cfg.table(T.SKELETON_FEATURES.name), cfg.table(f"{T.SKELETON_FEATURES.name}_stored")
    t0 = time.monotonic()
    spark.table(view).write.format("delta").partitionBy("split", "field").saveAsTable(stored)
    print(f"storing the view's rows as a table: {time.monotonic() - t0:.1f}s")
    rows = spark.table(stored).count()
    assert spark.table(view).count() == rows and spark.table(view).exceptAll(spark.table(stored)).isEmpty()
    print(f"{rows:,} rows in both, the same")
    print(f"{'query':<36} {'view s':>8} {'stored s':>9} {'view / stored':>14}")
    for name, sql in QUERIES.items():
        best = {}
        for t in (view, stored):
            times = []
            for _ in range(args.repeats):
                t0 = time.monotonic()
                spark.sql(sql.format(t=t)).collect()
                times.append(time.monotonic() - t0)
            best[t] = min(times)
        print(f"{name:<36} {best[view]:>8.2f} {best[stored]:>9.2f} {best[view] / best[stored]:>13.1f}x")


if __name__ == "__main__":
    main()
