"""Peak memory of ranker training from Petastorm on N and on 2N train_impressions rows.

    .venv/bin/python bench/rank_memory.py [--rows 100000] [--epochs 1] [--batch-size 2048]

For each size a child process writes planted impressions (tests/impression_fixtures.py) into
its own scratch lake and stops; a second, fresh child trains the ranker on them with the
production stage (lakerec.ranking.train.run: Petastorm converter -> make_tf_dataset -> fit
-> export; no evaluation, no validation slice) while a thread samples, every 50 ms, the
resident memory of the training process (TensorFlow, the Petastorm reader) and of its
children (the Spark JVM and Python workers). Writing and training apart keep the generated
tables' pandas frames out of the training process. Prints both peaks per size and the ratio
2N / N: memory that does not grow with the table is a ratio near 1 (issue 11's target:
flat), data held in memory a ratio near 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MIB = 2 ** 20


class PeakRss:
    """Samples this process's RSS and its children's (summed) in a thread; keeps the peaks."""

    def __init__(self, every: float = 0.05):
        import psutil

        self.me, self.every = psutil.Process(), every
        self.own = self.children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        import psutil

        while not self._stop.is_set():
            self.own = max(self.own, self.me.memory_info().rss)
            total = 0
            for child in self.me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    continue  # a Spark Python worker that just ended
            self.children = max(self.children, total)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _config(lake: str, args):
    from lakerec.config import load_config, override

    return override(load_config(lake=lake, database="bench_rank_memory"), spark__master="local[2]",
                    rank__epochs=args.epochs, rank__batch_size=args.batch_size, rank__validation_fraction=0,
                    rank__early_stopping_patience=0, mlflow__registered_ranker="bench-rank-memory")


def write_child(lake: str, rows: int, args) -> None:
    """Child: the planted tables with `rows` training impressions, in a new lake."""
    from lakerec.spark import get_spark
    from tests.impression_fixtures import write_planted_impressions

    cfg = _config(lake, args)
    spark = get_spark(cfg)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.database}")
    write_planted_impressions(spark, cfg, n_train=rows, n_test=10, n_users=2_000, n_items=1_000)
    spark.stop()


def train_child(lake: str, args) -> dict:
    """Child: train on the lake's tables while sampling memory; what it measured."""
    import psutil

    from lakerec.ranking import train
    from lakerec.spark import get_spark

    cfg = _config(lake, args)
    spark = get_spark(cfg)
    before = psutil.Process().memory_info().rss
    start = time.monotonic()
    with PeakRss() as peak:
        out = train.run(spark, cfg, run_name="memory", evaluate_after=False)
    spark.stop()
    return {"rows": out["rows"]["fit"], "seconds": time.monotonic() - start, "before": before,
            "own": peak.own, "children": peak.children, "steps": out["fit"].steps}


def measure(rows: int, args) -> dict:
    lake = tempfile.mkdtemp(prefix="lakerec-bench-memory-")
    common = [str(Path(__file__).resolve()), "--lake", lake, "--epochs", str(args.epochs),
              "--batch-size", str(args.batch_size)]
    try:
        subprocess.run([sys.executable, *common, "--child", "write", "--rows", str(rows)], check=True)
        out = subprocess.run([sys.executable, *common, "--child", "train"], check=True, stdout=subprocess.PIPE,
                             text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(lake, ignore_errors=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000, help="N: the smaller table's training rows")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--child", choices=("write", "train"), help=argparse.SUPPRESS)
    p.add_argument("--lake", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import lakerec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

    if args.child == "write":
        write_child(args.lake, args.rows, args)
        return
    if args.child == "train":
        print(json.dumps(train_child(args.lake, args)))
        return
    small, large = measure(args.rows, args), measure(2 * args.rows, args)
    print(f"ranker training from Petastorm, {args.epochs} epoch(s) of batch {args.batch_size}, local[2]")
    print(f"{'rows':>10}{'steps':>7}{'seconds':>9}{'RSS before MiB':>16}{'peak RSS MiB':>14}{'JVM+workers MiB':>17}")
    for m in (small, large):
        print(f"{m['rows']:>10,}{m['steps']:>7}{m['seconds']:>9.1f}{m['before'] / MIB:>16,.0f}{m['own'] / MIB:>14,.0f}"
              f"{m['children'] / MIB:>17,.0f}")
    print(f"ratio 2N / N: training process peak {large['own'] / small['own']:.2f}, "
          f"JVM and workers {large['children'] / small['children']:.2f}, rows {large['rows'] / small['rows']:.2f}")


if __name__ == "__main__":
    main()
