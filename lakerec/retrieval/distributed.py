"""Training on several workers: N Spark barrier tasks running TF MultiWorkerMirroredStrategy.

    check_cluster(spark, cfg.train, petastorm_cache=cfg.train.petastorm_cache)   # before any work: N fits
    rows = even_shards(train_df, N)                        # a multiple of N files, even sizes
    with data.converted(spark, rows, cfg, cols, lengths) as feed:
        model, result = fit_on_workers(feed, model_factory, params, settings, checkpoint_dir, ...)

Both models train through it: the two-tower (train.workers, lakerec.retrieval.train) and
the ranker (rank.workers, lakerec.ranking.train), each with its own model factory, reader
settings (ShardSettings, whose `wrap` adds the ranker's cross dropout to each shard) and
chief callbacks (its validation).

The launcher is spark-tensorflow-distributor's `MirroredStrategyRunner`: it starts the N
tasks as one barrier stage (all start together or none), gives each its TF_CONFIG, resets
TensorFlow's context (Spark reuses Python workers between jobs) and runs the task inside a
`MultiWorkerMirroredStrategy` scope. If one task fails, Spark fails the stage and kills the
others, so a worker blocked in an all-reduce never waits for a dead peer; the driver then
raises `WorkerFailed` with the failed worker's index and error.

Each task
  - reads its own shard of the materialised rows: Petastorm row groups with
    `cur_shard` = its index and `shard_count` = N (disjoint; `even_shards` made them even);
  - batches global_batch / N rows, so one step still consumes the configured batch size
    and the optimizer applies the sum of the N gradients (the scale of one worker's step);
  - runs `loop.fit`: the chief (task 0) checkpoints into the run's folder, the others into
    a scratch folder that is deleted afterwards (every worker must take part in a save);
  - the chief alone runs the monitoring callbacks and returns its FitResult and logs.

No worker talks to MLflow (executors of a Databricks cluster have no credentials for it):
the driver, which holds the run, logs the chief's per-epoch metrics once the runner
returns and loads the chief's last checkpoint for the export. Nothing a non-chief worker
computes is kept beyond its part of the gradients.

The result is not bit-identical to one worker with the same seed: each replica's in-batch
softmax scores its rows against its own global/N candidates (not all `batch_size`), rows
reach the batches in another order (one shuffled shard per worker), and the all-reduce
adds the gradients in another order. tests/test_train_distributed.py bounds the difference.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import tensorflow as tf

from lakerec.errors import ConfigError, LakeRecError
from lakerec.options import describe

log = logging.getLogger("lakerec.train.distributed")

GPU_AMOUNT_CONF = "spark.task.resource.gpu.amount"
# The failed worker's message as it travels back inside Spark's task failure text.
_FAILURE = "lakerec training worker {index} of {count} failed: {error}"
_FAILURE_RE = re.compile(r"lakerec training worker (\d+) of (\d+) failed: ([^\n]*)")


class WorkerFailed(LakeRecError):
    """A training worker raised: the whole run stopped; carries that worker's error."""

    def __init__(self, index: int, count: int, error: str):
        super().__init__(f"training worker {index} of {count} failed: {error} "
                         "(the run stopped on all workers; the worker's traceback is in the Spark log)")
        self.index, self.count, self.error = index, count, error


class _WorkerError(RuntimeError):
    """Raised inside a task: names the worker, so the driver can say which one failed."""


# --------------------------------------------------------------------------- checks (driver)

def task_slots(sc) -> int:
    """How many tasks the cluster runs at once: local[N] -> N, a cluster -> its cores / task.cpus.

    A local master is read from its own string, not from `defaultParallelism`, which
    lakerec's session factory sets to the machine's cores for shuffles.
    """
    m = re.fullmatch(r"local(?:\[(\*|\d+)(?:\s*,\s*\d+)?\])?", sc.master.strip())
    if m:
        n = m.group(1)
        return 1 if n is None else (os.cpu_count() or 1) if n == "*" else int(n)
    return max(1, sc.defaultParallelism // int(sc.getConf().get("spark.task.cpus", "1")))


def _flag(key: str) -> str:
    """A key's command-line flag (`--rank-workers`), or the key itself where it has none."""
    return describe(key).split(" or ")[0]


def check_cluster(spark, conf, *, section: str = "train", petastorm_cache: str | None = None) -> None:
    """Refuse a worker count or GPU request the cluster cannot run, before any work is done.

    Args:
        spark: the session.
        conf: the training settings, with `workers`, `gpu` and `batch_size` (TrainConf, RankConf).
        section: their config section ("train", "rank"): the errors name its flags.
        petastorm_cache: where the workers read the materialised rows (train.petastorm_cache).

    Raises:
        ConfigError: N < 1, N above the cluster's task slots (a barrier stage needs all N
            at once; Spark would otherwise wait minutes before refusing), a batch size that
            does not split evenly over N, or --gpu without Spark GPU scheduling.
    """
    n = conf.workers
    workers, gpu = _flag(f"{section}.workers"), _flag(f"{section}.gpu")
    if n < 1:
        raise ConfigError(f"{workers} ({section}.workers) must be at least 1 (got {n})")
    if n == 1:
        if conf.gpu:
            log.info("%s with one worker: training runs in the driver, on its GPU if TensorFlow sees one", gpu)
        return
    sc = spark.sparkContext
    slots = task_slots(sc)
    if n > slots:
        raise ConfigError(
            f"{workers} {n} needs {n} Spark tasks running at once (barrier mode), but this cluster runs "
            f"{slots} ({sc.master}): use {workers} {slots} or fewer, or more task slots "
            "(local[N] in spark.master, more executor cores)")
    if conf.batch_size % n:
        raise ConfigError(
            f"{section}.batch_size ({_flag(f'{section}.batch_size')}) {conf.batch_size} must split evenly over "
            f"{workers} {n}: each worker batches batch_size / workers rows "
            f"(try {conf.batch_size - conf.batch_size % n or n})")
    cache = petastorm_cache or ""
    if not sc.master.strip().startswith("local") and cache.startswith("file:") and not re.match(
            r"file:(//)?/(dbfs|Volumes)/", cache):
        log.warning("train.petastorm_cache %s is a local folder: on a cluster of several machines each worker "
                    "must read every shard's files; use shared storage (file:///dbfs/..., a volume, abfss://...)",
                    cache)
    if conf.gpu:
        if sc.master.strip().startswith("local"):
            raise ConfigError(
                f"{gpu} with {workers} > 1 needs a Spark cluster with GPU scheduling, which local Spark lacks; "
                f"on one machine, train in the driver ({workers} 1), which uses its GPU")
        amount = sc.getConf().get(GPU_AMOUNT_CONF, None)
        if amount is None or float(amount) != 1:
            raise ConfigError(
                f"{gpu} runs one worker per GPU: set the cluster's Spark conf {GPU_AMOUNT_CONF}=1 "
                f"(and spark.executor.resource.gpu.amount to the GPUs per node); found {amount!r}")


def even_shards(df, workers: int):
    """`df` spread round-robin over a multiple of `workers` partitions of even size.

    Petastorm shards by row group, and every partition becomes at least one file and row
    group, so each worker's shard gets the same number of rows (give or take one per file)
    whatever the table's own file sizes.
    """
    parts = df.rdd.getNumPartitions()
    return df.repartition(workers * max(1, math.ceil(parts / workers)))


# --------------------------------------------------------------------------- worker side

def worker_index() -> tuple[int, int]:
    """(this process's task index, worker count) from TF_CONFIG; (0, 1) outside a distributed run."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = spec.get("cluster", {}).get("worker", [None])
    return int(spec.get("task", {}).get("index", 0)), len(workers)


class OnWorker(tf.keras.callbacks.Callback):
    """Runs `callback`'s epoch and train hooks on worker `index` only (e.g. a crash on one worker).

    In a single-process run the process is worker 0.
    """

    def __init__(self, index: int, callback: tf.keras.callbacks.Callback):
        super().__init__()
        self.index, self.callback = index, callback

    def _here(self) -> bool:
        return worker_index()[0] == self.index

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def on_train_begin(self, logs=None):
        if self._here():
            self.callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self._here():
            self.callback.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self._here():
            self.callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._here():
            self.callback.on_epoch_end(epoch, logs)


class EpochLogs(tf.keras.callbacks.Callback):
    """Keeps each epoch's logs (after the monitoring callbacks added theirs): in the chief for
    the driver, and on the driver (a driver callback) for what the stage reports."""

    def __init__(self):
        super().__init__()
        self.epochs: list[tuple[int, dict[str, float]]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((epoch, {k: float(v) for k, v in (logs or {}).items()}))


@dataclass
class ShardSettings:
    """How each worker reads its shard (the single-worker run's reader settings)."""

    batch_size: int  # global: each of N workers batches batch_size / N rows
    shuffle_buffer: int = 10_000
    reader_workers: int = 2
    seed: int = 42
    # Turns the shard's dataset factory into the one trained on (e.g. the ranker's cross
    # dropout); called in the task, so it is pickled with the job.
    wrap: Callable[[Callable], Callable] | None = None


@dataclass
class _Job:
    feed: Any
    shard: ShardSettings
    model_factory: Callable
    params: Any  # loop.FitParams
    checkpoint_dir: str
    resume: bool
    chief_callbacks: Callable[[], list] | None
    callbacks: list = field(default_factory=list)


@dataclass
class _ChiefResult:
    fit: Any  # loop.FitResult
    epoch_logs: list
    replicas: int  # the strategy's replicas in sync (one per worker on CPU or one GPU each)


def _without_auto_shard(factory):
    """The factory's datasets marked as already sharded: Keras must not shard them again."""
    import contextlib

    @contextlib.contextmanager
    def sharded():
        with factory() as ds:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            yield ds.with_options(options)

    return sharded


def _train_shard(job: _Job, index: int, count: int) -> _ChiefResult | None:
    from lakerec.retrieval import data, loop

    chief = index == 0
    s = job.shard
    if s.batch_size % count:
        raise ValueError(f"batch size {s.batch_size} does not split over {count} workers")
    tf.keras.utils.set_random_seed(s.seed)
    # The same reader seed everywhere: Petastorm shuffles the row-group list with it before
    # taking every count-th group, so the shards are disjoint and cover every group.
    factory = data.dataset_factory(
        job.feed, s.batch_size // count, shuffle_buffer=s.shuffle_buffer, workers=s.reader_workers, seed=s.seed,
        cur_shard=index, shard_count=count)
    factory = _without_auto_shard(s.wrap(factory) if s.wrap else factory)
    scratch = None if chief else tempfile.mkdtemp(prefix=f"lakerec-worker{index}-")
    recorder = EpochLogs()
    callbacks = [*(job.chief_callbacks() if chief and job.chief_callbacks else []), recorder, *job.callbacks]
    params = job.params if chief else dataclasses.replace(job.params, verbose=0)
    try:
        _, result = loop.fit(factory, job.model_factory, params, checkpoint_dir=scratch or job.checkpoint_dir,
                             resume=job.resume, restore_from=job.checkpoint_dir, callbacks=callbacks)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return _ChiefResult(result, recorder.epochs, tf.distribute.get_strategy().num_replicas_in_sync) if chief else None


def _worker_main(job: _Job) -> _ChiefResult | None:
    """The barrier task's body (inside the runner's MultiWorkerMirroredStrategy scope)."""
    index, count = worker_index()
    try:
        return _train_shard(job, index, count)
    except BaseException as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise _WorkerError(_FAILURE.format(index=index, count=count, error=f"{type(e).__name__}: {first}")) from e


# --------------------------------------------------------------------------- driver side

def worker_failure(error: BaseException) -> WorkerFailed | None:
    """The WorkerFailed that a failed barrier stage's error text carries, if any."""
    m = _FAILURE_RE.search(str(error))
    return WorkerFailed(int(m.group(1)), int(m.group(2)), m.group(3).strip()) if m else None


def fit_on_workers(
    feed,
    model_factory: Callable[[], tf.keras.Model],
    params,
    shard: ShardSettings,
    checkpoint_dir: str | Path,
    *,
    workers: int,
    gpu: bool = False,
    resume: bool = False,
    chief_callbacks: Callable[[], list] | None = None,
    callbacks: Sequence[tf.keras.callbacks.Callback] = (),
    driver_callbacks: Sequence[tf.keras.callbacks.Callback] = (),
):
    """Train on `workers` Spark barrier tasks; return the chief's model and FitResult.

    Args:
        feed: the materialised training rows (`data.converted`), read in shards.
        model_factory: builds the compiled model (called in each task, inside the strategy).
        params: loop.FitParams with the global batch size and steps per epoch.
        shard: the reader settings; `shard.batch_size` is the global batch.
        checkpoint_dir: the run's checkpoint folder, shared by the driver and the workers.
        workers: number of barrier tasks (checked by `check_cluster`).
        gpu: one GPU per task (Spark GPU scheduling).
        resume: every worker restores the latest checkpoint in `checkpoint_dir`.
        chief_callbacks: zero-argument callable building the callbacks of the chief only
            (monitoring), called in the task.
        callbacks: callbacks run on every worker (pickled into the tasks).
        driver_callbacks: given each of the chief's epochs (`on_epoch_end(epoch, logs)`)
            on the driver after training, e.g. MLflow logging.

    Returns:
        (the model restored on the driver from the chief's last checkpoint, the chief's FitResult).

    Raises:
        WorkerFailed: a worker raised; its index and error are in the message.
    """
    from spark_tensorflow_distributor import MirroredStrategyRunner

    from lakerec.retrieval import data, loop

    job = _Job(feed, shard, model_factory, params, str(checkpoint_dir), resume, chief_callbacks, list(callbacks))
    log.info("training on %d %s workers (Spark barrier tasks, MultiWorkerMirroredStrategy): %d rows per worker "
             "batch, global batch %d", workers, "GPU" if gpu else "CPU", shard.batch_size // workers,
             shard.batch_size)
    runner = MirroredStrategyRunner(num_slots=workers, local_mode=False, use_gpu=gpu)
    try:
        out = runner.run(_worker_main, job=job)
    except Exception as e:
        failure = worker_failure(e)
        if failure is None:
            raise
        raise failure from e
    if out is None:
        raise LakeRecError("the distributed run's chief (task 0) returned nothing")
    log.info("the chief trained %d epoch(s) with %d replicas in sync in %.1fs",
             out.fit.epochs_done - out.fit.initial_epoch, out.replicas, out.fit.seconds)
    for epoch, logs in out.epoch_logs:
        for cb in driver_callbacks:
            cb.on_epoch_end(epoch, dict(logs))
    one_batch = data.dataset_factory(feed, min(shard.batch_size, 256), num_epochs=1, shuffle=False, workers=1)
    model = loop.load_latest(one_batch, model_factory, checkpoint_dir)
    return model, out.fit
