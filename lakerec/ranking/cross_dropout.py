"""Cross dropout: blank the cross fields on a seeded share of the training rows.

    factory = with_cross_dropout(data.dataset_factory(feed, ...), rc.cross_dropout, rc.seed)

A retrieved candidate was never impressed: scored with its cross fields absent (index 0,
weight 0, zero arrays: rank.candidate_crosses=absent, lakerec.ranking.candidate_crosses), while on
train_impressions they are present on many rows and predict clicks strongly. Blanking them
on a share `rate` of the training rows lets the model learn the no-cross case too (rate 1.0:
a ranker that never uses them). It is a map over the training batches only: validation,
evaluation and scoring read the rows as they are.

Seeded: the rows of batch k are drawn with the stateless seed (seed, k), so the same batches
in the same order are blanked alike.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import tensorflow as tf

from lakerec.ranking.features import cross_columns


def blank_crosses(batch: dict, blank: tf.Tensor, columns: tuple[str, ...] | None = None) -> dict:
    """The batch with every cross column set to 0 on the rows where `blank` [B] is True.

    Args:
        batch: feature columns, [B] or [B, L] each.
        blank: bool [B], the rows to blank.
        columns: the cross columns (default: every one the registry tags CROSS).
    """
    out = dict(batch)
    for c in columns if columns is not None else cross_columns():
        if c not in out:
            continue
        x = out[c]
        mask = tf.reshape(blank, [-1] + [1] * (x.shape.rank - 1))
        out[c] = tf.where(mask, tf.zeros_like(x), x)
    return out


def drop_crosses(ds: tf.data.Dataset, rate: float, seed: int) -> tf.data.Dataset:
    """`ds` (feature-dict batches) with the cross fields blanked on a seeded share `rate` of each batch's rows."""
    if rate <= 0:
        return ds
    columns = cross_columns()
    rate = float(rate)

    def step(k, batch):
        n = tf.shape(next(iter(batch.values())))[0]
        u = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), k]))
        return blank_crosses(batch, u < rate, columns)

    return ds.enumerate().map(step, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def with_cross_dropout(factory: Callable, rate: float, seed: int) -> Callable:
    """A dataset factory (lakerec.retrieval.data.dataset_factory) whose batches go through drop_crosses."""
    if rate <= 0:
        return factory

    @contextlib.contextmanager
    def wrapped():
        with factory() as ds:
            yield drop_crosses(ds, rate, seed)

    return wrapped
