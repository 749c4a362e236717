"""Training examples per second with 1 worker (the driver) and 2 workers (Spark barrier tasks).

    .venv/bin/python bench/train_workers.py [--rows 100000] [--batch-size 1024] [--epochs 3]
        [--features all] [--master local[2]] [--lake DIR]

Writes planted training tables into a scratch lake (its own Spark session), then runs the
code path of `python -m lakerec.jobs.train` (lakerec.retrieval.train.run, without the evaluation)
on the same tables, with the same seed and global batch size, side by side in one run:
    1 worker    `--workers 1`: the fit runs in the driver process
    2 workers   `--workers 2`: two Spark barrier tasks under MultiWorkerMirroredStrategy,
                each reading its own Petastorm shard and batching batch_size / 2 rows
examples/s counts the epochs after the first (the first one holds graph tracing and, for
the workers, the strategy's set-up), from the chief's per-epoch times. `fit s` is the
chief's whole Keras fit, first epoch included; `run() s` is the whole call (tables read,
Petastorm materialisation, for 2 workers the launch of the tasks and TensorFlow's start in
them, export, MLflow). The ratio is examples/s of 2 workers / 1 worker.

Data parallelism pays when each worker has its own cores or GPU. On a machine with 2
cores the two workers share them with each other and with Spark's JVM, and add an
all-reduce per step, so expect a ratio at or below 1x there; the number is what it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

import lakerec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)


def steady_rate(fit, batch_size: int, steps: int) -> float:
    """Examples/s over the epochs after the first, from the per-epoch wall times."""
    seconds = fit.history["epoch_seconds"][1:]
    return len(seconds) * steps * batch_size / sum(seconds)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000, help="training rows (approximately)")
    p.add_argument("--batch-size", type=int, default=1024, help="global batch (each of 2 workers takes half)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not timed)")
    p.add_argument("--features", default="all", choices=["ids", "all"])
    p.add_argument("--master", default="local[2]", help="Spark master; 2 workers need 2 task slots")
    p.add_argument("--lake", help="scratch lake (default: a temporary folder, removed afterwards)")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is not timed)")

    import tensorflow as tf

    from lakerec.config import load_config, override
    from lakerec.schema import tables as T
    from lakerec.spark import get_spark
    from lakerec.retrieval import train
    from tests.train_fixtures import write_planted_tables

    lake = Path(args.lake) if args.lake else Path(tempfile.mkdtemp(prefix="lakerec-bench-workers-"))
    cfg = override(
        load_config(lake=str(lake), database="bench_workers"), spark__master=args.master, spark__driver_memory="4g",
        train__batch_size=args.batch_size, train__epochs=args.epochs, train__features=args.features,
        train__monitor_rows=0, mlflow__registered_model="", mlflow__experiment="bench-workers",
    )
    spark = get_spark(cfg)
    users = max(10, args.rows // 100)
    planted = write_planted_tables(spark, cfg, n_users=users, n_items=5_000, n_topics=50, clicks_per_user=100,
                                   test_clicks_per_user=1, cold_users=0, cold_items=0, seed=3)
    rows = len(planted.tables[T.TRAIN_INTERACTIONS.name]["sample_id"])
    steps = -(-rows // args.batch_size)
    print(f"{os.cpu_count()} CPU cores, Spark {args.master}, TensorFlow {tf.__version__}, {rows:,} rows, "
          f"features={args.features}, global batch {args.batch_size}, {args.epochs} epochs x {steps} steps "
          f"(epochs 2..{args.epochs} timed)")
    print(f"{'workers':<10}{'examples/s':>12}{'fit s':>8}{'run() s':>11}")
    rates = {}
    try:
        for workers in (1, 2):
            start = time.monotonic()
            out = train.run(spark, override(cfg, train__workers=workers), run_name=f"bench-{workers}w-{int(start)}",
                            evaluate_after=False)
            total = time.monotonic() - start
            rates[workers] = steady_rate(out["fit"], args.batch_size, steps)
            print(f"{workers:<10}{rates[workers]:>12,.0f}{out['fit'].seconds:>8.1f}{total:>11.1f}", flush=True)
        print(f"ratio 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
    finally:
        spark.stop()
        if not args.lake:
            shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()
