"""The training step: fit(dataset factory, model factory, params), with a checkpoint per epoch.

It depends on nothing but its arguments, so the same function can run on the driver or
inside a barrier task of a distributed runner (each worker passing a factory that opens
its own Petastorm shard, and building the model inside its strategy's scope).

A checkpoint holds the model, the optimizer (its slots and step counter) and the number
of epochs done. `resume=True` restores the latest one and continues from the next epoch,
so the epoch count and the optimizer's step continue where the interrupted run stopped.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import tensorflow as tf

from lakerec.errors import LakeRecError

log = logging.getLogger("lakerec.train")


@dataclass(frozen=True)
class FitParams:
    epochs: int
    steps_per_epoch: int
    batch_size: int
    verbose: int | None = None  # None: progress bar on a terminal, one line per epoch otherwise
    keep_checkpoints: int = 2  # the newest epochs' checkpoints kept while the run goes (train.keep_checkpoints)


@dataclass
class FitResult:
    """What happened in fit(): per-epoch logs and the counts for the summary."""

    history: dict[str, list[float]] = field(default_factory=dict)
    initial_epoch: int = 0
    epochs_done: int = 0
    steps: int = 0  # the optimizer's step counter at the end (continues across resumes)
    seconds: float = 0.0
    examples: int = 0
    # With a validation slice: the epoch whose weights the model holds (1-based), its value,
    # and the epoch after which early stopping ended the fit (None: it ran all epochs).
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_epoch: int | None = None

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


class _EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves the checkpoint at the end of every epoch, before any later callback runs."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch_var: tf.Variable):
        super().__init__()
        self.manager, self.epoch_var = manager, epoch_var

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_var.assign(epoch + 1)
        path = self.manager.save(checkpoint_number=epoch + 1)
        log.debug("checkpoint %s", path)


class _Recorder(tf.keras.callbacks.Callback):
    def __init__(self, result: FitResult):
        super().__init__()
        self.result = result
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            self.result.history.setdefault(k, []).append(float(v))
        self.result.history.setdefault("epoch_seconds", []).append(time.monotonic() - self._t0)
        self.result.epochs_done = epoch + 1


def has_checkpoint(checkpoint_dir: str | Path) -> bool:
    return tf.train.latest_checkpoint(str(checkpoint_dir)) is not None


def _build_variables(model: tf.keras.Model, ds) -> None:
    """Create the variables (towers, optimizer slots) from one batch, so a restore fills them at once.

    A model other than the two-tower one says how with `build_from_batch(batch)`.
    """
    first = next(iter(ds.take(1)))
    if hasattr(model, "build_from_batch"):
        model.build_from_batch(first)
    else:
        model.query_tower(first)
        model.candidate_tower(first)
    model.optimizer.build(model.trainable_variables)


def load_latest(
    dataset_factory: Callable,
    model_factory: Callable[[], tf.keras.Model],
    checkpoint_dir: str | Path,
) -> tf.keras.Model:
    """The model (and its optimizer) of the latest checkpoint in `checkpoint_dir`.

    How the driver takes over the model a distributed run trained: its chief's last
    checkpoint. The dataset factory only gives one batch to create the variables with.
    """
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest is None:
        raise LakeRecError(
            f"no checkpoint in {checkpoint_dir} after training: the checkpoint folder (train.checkpoint_dir, "
            "default <lake>/checkpoints) must be storage that the driver and every worker share"
        )
    model = model_factory()
    with dataset_factory() as ds:
        _build_variables(model, ds)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    tf.train.Checkpoint(model=model, optimizer=model.optimizer, epochs_done=epoch_var).restore(
        latest).assert_existing_objects_matched()
    return model


def fit(
    dataset_factory: Callable,
    model_factory: Callable[[], tf.keras.Model],
    params: FitParams,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[tf.keras.callbacks.Callback] = (),
    restore_from: str | Path | None = None,
) -> tuple[tf.keras.Model, FitResult]:
    """Train a compiled model for `params.epochs` epochs of `params.steps_per_epoch` steps.

    Args:
        dataset_factory: zero-argument callable returning a context manager over an
            endless tf.data.Dataset of feature-dict batches.
        model_factory: zero-argument callable returning a compiled model (its optimizer set).
        params: epochs, steps per epoch, batch size, verbosity.
        checkpoint_dir: where the per-epoch checkpoints go (None: no checkpoints).
        resume: restore the latest checkpoint in `checkpoint_dir` and continue after it.
        callbacks: more Keras callbacks; they run after the checkpoint is written, so a
            callback that stops the run leaves the epoch's checkpoint behind.
        restore_from: with resume, the folder to restore from when it is not
            `checkpoint_dir` (a non-chief worker of a distributed run restores the chief's
            checkpoint but writes its own into a scratch folder).

    Returns:
        The trained model and a FitResult.
    """
    result = FitResult()
    model = model_factory()
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    cbs: list[tf.keras.callbacks.Callback] = []
    with dataset_factory() as ds:
        if checkpoint_dir is not None:
            _build_variables(model, ds)
            ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epochs_done=epoch_var)
            manager = tf.train.CheckpointManager(ckpt, str(checkpoint_dir), max_to_keep=params.keep_checkpoints)
            if resume:
                source = restore_from if restore_from is not None else checkpoint_dir
                latest = tf.train.latest_checkpoint(str(source))
                if latest is None:
                    raise LakeRecError(f"--resume: no checkpoint in {source}; start the run without --resume")
                ckpt.restore(latest).assert_existing_objects_matched()
                result.initial_epoch = int(epoch_var.numpy())
                log.info("resuming from %s: %d epoch(s) done, optimizer step %d",
                         latest, result.initial_epoch, int(model.optimizer.iterations.numpy()))
            cbs.append(_EpochCheckpoint(manager, epoch_var))
        cbs.append(_Recorder(result))
        cbs.extend(callbacks)
        if result.initial_epoch >= params.epochs:
            log.info("all %d epochs were already done", params.epochs)
        else:
            verbose = params.verbose if params.verbose is not None else (1 if sys.stdout.isatty() else 2)
            start = time.monotonic()
            model.fit(
                ds,
                epochs=params.epochs,
                initial_epoch=result.initial_epoch,
                steps_per_epoch=params.steps_per_epoch,
                callbacks=cbs,
                verbose=verbose,
            )
            result.seconds = time.monotonic() - start
            result.examples = (result.epochs_done - result.initial_epoch) * params.steps_per_epoch * params.batch_size
    result.epochs_done = max(result.epochs_done, result.initial_epoch)
    result.steps = int(model.optimizer.iterations.numpy())
    return model, result
