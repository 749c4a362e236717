"""Ranker training examples per second: Petastorm feed against the same rows from memory.

    .venv/bin/python bench/rank_feed.py [--rows 100000] [--batch-size 2048] [--steps 40] [--workers 2] [--lake DIR]

Writes planted impressions (tests/impression_fixtures.py) into a scratch lake, then trains
the same ranker (esmm, rank defaults, same seed, batch size and step count) twice per feed,
alternating, as bench/train_feed.py does for the two-tower model:
    petastorm   the production feed of lakerec.jobs.rank (make_spark_converter -> make_tf_dataset)
    in-memory   the same rows read once into numpy, through the same tf.data steps
The first epoch is not timed, the second is; the better of each feed's two runs counts.
Prints examples/s and the ratio petastorm / in-memory (issue 11's target: >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import lakerec  # noqa: F401,E402  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from bench.train_feed import feed_rates  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=40, help="timed steps per run")
    p.add_argument("--workers", type=int, default=2, help="Petastorm reader threads")
    p.add_argument("--lake", help="scratch lake (default: a temporary folder, removed afterwards)")
    args = p.parse_args(argv)

    import tensorflow as tf

    from lakerec.config import load_config, override
    from lakerec.ranking import train
    from lakerec.ranking.model import build_model
    from lakerec.retrieval import data
    from lakerec.spark import get_spark
    from tests.impression_fixtures import write_planted_impressions

    lake = Path(args.lake) if args.lake else Path(tempfile.mkdtemp(prefix="lakerec-bench-"))
    cfg = override(load_config(lake=str(lake), database="bench_rank_feed"), spark__master="local[*]",
                   rank__batch_size=args.batch_size, rank__reader_workers=args.workers, rank__validation_fraction=0)
    spark = get_spark(cfg)
    try:
        write_planted_impressions(spark, cfg, n_train=args.rows, n_test=10, n_users=2_000, n_items=1_000)
        inputs = train.read_inputs(spark, cfg)
        spec, rc = inputs.spec, cfg.rank

        def make_model():
            tf.keras.utils.set_random_seed(1)
            return build_model(spec, rc)

        with data.converted(spark, inputs.fit_rows, cfg, list(spec.training_columns), spec.lengths) as feed:
            pet, mem = feed_rates(feed, make_model, args.batch_size, args.steps, rc.shuffle_buffer, args.workers)
        print(f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, batch {args.batch_size}, {args.steps} timed "
              f"steps, Petastorm workers {args.workers}, {inputs.counts['rows']:,} rows")
        print(f"{'petastorm ex/s':>16}{'in-memory ex/s':>16}{'ratio':>8}")
        print(f"{pet:>16,.0f}{mem:>16,.0f}{pet / mem:>8.2f}   (target >= 0.9: {'met' if pet / mem >= 0.9 else 'NOT met'})")
    finally:
        spark.stop()
        if not args.lake:
            shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()
