"""Training examples per second: Petastorm feed against the same rows from memory.

    .venv/bin/python bench/train_feed.py [--rows 200000] [--batch-size 1024] [--steps 150]
        [--features ids all] [--workers 2] [--lake DIR]

Writes planted training tables into a scratch lake (its own Spark session), then, for each
feature set, trains the same model (same seed, batch size and step count) twice, side by
side in one run:
    petastorm   the production feed: make_spark_converter -> make_tf_dataset (shuffled,
                endless), exactly as lakerec.jobs.train reads train_interactions
    in-memory   the same rows, read once into numpy, through the same tf.data steps
                (from_tensor_slices -> shuffle -> batch -> the same unpacking map):
                lakerec.retrieval.data.in_memory_dataset
The first epoch (tracing, pipeline fill) is not timed; the second is. Each feed runs
twice, alternating, and the better of its two runs counts. Prints examples/s and the
ratio petastorm / in-memory (target >= 0.8).
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


class EpochTimer:
    def __init__(self):
        import tensorflow as tf

        class _Cb(tf.keras.callbacks.Callback):
            def __init__(cb):
                super().__init__()
                cb.seconds = []

            def on_epoch_begin(cb, epoch, logs=None):
                cb._t = time.perf_counter()

            def on_epoch_end(cb, epoch, logs=None):
                cb.seconds.append(time.perf_counter() - cb._t)

        self.callback = _Cb()


def train_rate(dataset_cm, make_model, steps: int, batch: int) -> float:
    """Examples/s of the second of two epochs of `steps` steps."""
    timer = EpochTimer()
    with dataset_cm as ds:
        model = make_model()
        model.fit(ds, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[timer.callback])
    return steps * batch / timer.callback.seconds[1]


def feed_rates(feed, make_model, batch: int, steps: int, shuffle_buffer: int, workers: int) -> tuple[float, float]:
    """(Petastorm, in-memory) examples/s of the same converted rows, the best of two runs each."""
    import contextlib

    from lakerec.retrieval import data

    petastorm = data.dataset_factory(feed, batch, shuffle_buffer=shuffle_buffer, workers=workers, seed=1)
    rows = data.read_all(feed)

    @contextlib.contextmanager
    def in_memory():
        yield data.in_memory_dataset(feed, rows, batch, shuffle_buffer, seed=1)

    rates = {"petastorm": [], "in-memory": []}
    for _ in range(2):
        rates["petastorm"].append(train_rate(petastorm(), make_model, steps, batch))
        rates["in-memory"].append(train_rate(in_memory(), make_model, steps, batch))
    return max(rates["petastorm"]), max(rates["in-memory"])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000, help="training rows (approximately)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=150, help="timed steps per run")
    p.add_argument("--features", nargs="+", default=["ids", "all"], choices=["ids", "all"])
    p.add_argument("--workers", type=int, default=2, help="Petastorm reader threads")
    p.add_argument("--lake", help="scratch lake (default: a temporary folder, removed afterwards)")
    args = p.parse_args(argv)

    import tensorflow as tf

    from lakerec.config import load_config, override
    from lakerec.schema import tables as T
    from lakerec.spark import get_spark
    from lakerec.retrieval import data
    from lakerec.retrieval.features import build_spec
    from lakerec.retrieval.data import item_train_counts, read_inputs
    from lakerec.retrieval.model import build_model, item_probabilities
    from tests.train_fixtures import write_planted_tables

    lake = Path(args.lake) if args.lake else Path(tempfile.mkdtemp(prefix="lakerec-bench-"))
    cfg = override(load_config(lake=str(lake), database="bench_feed"), spark__master="local[*]",
                   spark__driver_memory="6g", train__batch_size=args.batch_size, train__reader_workers=args.workers)
    spark = get_spark(cfg)
    users = max(10, args.rows // 100)
    write_planted_tables(spark, cfg, n_users=users, n_items=5_000, n_topics=50, clicks_per_user=100,
                         test_clicks_per_user=1, cold_users=0, cold_items=0, seed=3)
    tables = read_inputs(spark, cfg)
    print(f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, batch {args.batch_size}, "
          f"{args.steps} timed steps, Petastorm workers {args.workers}")
    print(f"{'features':<10}{'rows':>10}{'petastorm ex/s':>16}{'in-memory ex/s':>16}{'ratio':>8}")
    try:
        for features in args.features:
            spec, counted = build_spec(spark, features, tables)
            probs = item_probabilities(item_train_counts(tables[T.TRAIN_INTERACTIONS.name], spec.num_items))
            tc = override(cfg, train__features=features).train
            cols, lengths = spec.training_columns(), spec.array_lengths()

            def make_model():
                tf.keras.utils.set_random_seed(1)
                return build_model(spec, tc, probs)

            with data.converted(spark, tables[T.TRAIN_INTERACTIONS.name], cfg, cols, lengths) as feed:
                pet, mem = feed_rates(feed, make_model, args.batch_size, args.steps, tc.shuffle_buffer, args.workers)
            print(f"{features:<10}{counted['train_rows']:>10,}{pet:>16,.0f}{mem:>16,.0f}{pet / mem:>8.2f}"
                  f"   (target >= 0.8: {'met' if pet / mem >= 0.8 else 'NOT met'})", flush=True)
    finally:
        spark.stop()
        if not args.lake:
            shutil.rmtree(lake, ignore_errors=True)


if __name__ == "__main__":
    main()
