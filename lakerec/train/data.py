"""Spark DataFrame -> Petastorm converter -> tf.data of feature dicts.

The training rows never pass through the driver's memory as a whole: Petastorm
materialises the selected columns as Parquet in the lake's cache folder once, and each
reader streams row groups from there (and can read one shard of them per worker).

    with converted(spark, df, cfg) as conv:                  # conv.delete() on exit
        factory = dataset_factory(conv, spec.training_columns(), lengths, batch_size=1024)
        with factory() as ds:                                 # endless, shuffled
            ...
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import numpy as np

from lakerec.config import Config

log = logging.getLogger("lakerec.train.data")
# Petastorm logs every materialisation at INFO and small-file advice at WARNING.
logging.getLogger("petastorm").setLevel(logging.ERROR)

# Petastorm 0.13 calls pyarrow's legacy dataset API; its deprecation warnings are not ours.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyarrow(\.|$)")

DatasetFactory = Callable[[], ContextManager["object"]]


def petastorm_cache_url(cfg: Config) -> str:
    """Where Petastorm materialises DataFrames: `train.petastorm_cache`, or <lake>/petastorm_cache."""
    if cfg.train.petastorm_cache:
        return cfg.train.petastorm_cache
    path = cfg.lake_path / "petastorm_cache"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def make_converter(spark, df, cfg: Config):
    """A Petastorm converter for `df`, cached inside the lake (booleans become int)."""
    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    from pyspark.sql import functions as F

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, petastorm_cache_url(cfg))
    casts = [
        F.col(f.name).cast("int").alias(f.name) if f.dataType.typeName() == "boolean" else F.col(f.name)
        for f in df.schema.fields
    ]
    return make_spark_converter(df.select(*casts), dtype="float32")


def fill_missing(df, columns: list[str], lengths: dict[str, int]):
    """`df` with `columns` selected and NULLs replaced by the missing value.

    The tables' contract says 0 = missing, but a NULL that slips through must not become
    NaN in Petastorm and garbage after the cast to int: ids -> -1 (unknown), indices -> 0,
    arrays -> zeros of their fixed length.
    """
    from pyspark.sql import functions as F

    types = dict(df.dtypes)
    out = []
    for c in columns:
        t = types[c]
        if c in lengths and t.startswith("array"):
            zero = F.lit(0).cast(t[len("array<"):-1])
            out.append(F.coalesce(F.col(c), F.array_repeat(zero, lengths[c])).alias(c))
        elif t in ("bigint", "int", "smallint", "tinyint"):
            out.append(F.coalesce(F.col(c), F.lit(-1 if c.endswith("_id") else 0).cast(t)).alias(c))
        elif t == "boolean":
            out.append(F.coalesce(F.col(c), F.lit(False)).alias(c))
        else:
            out.append(F.col(c))
    return df.select(*out)


@contextlib.contextmanager
def converted(spark, df, cfg: Config) -> Iterator[object]:
    """`make_converter` that deletes the materialised copy on exit, also after an error."""
    conv = make_converter(spark, df, cfg)
    try:
        yield conv
    finally:
        conv.delete()


def _as_dict(columns: list[str], lengths: dict[str, int]):
    import tensorflow as tf

    def to_dict(batch):
        out = {}
        for name in columns:
            t = getattr(batch, name)
            if name in lengths:  # Petastorm knows arrays only as [None, None]
                t = tf.ensure_shape(t, [None, lengths[name]])
            out[name] = t
        return out

    return to_dict


def dataset_factory(
    conv,
    columns: list[str],
    lengths: dict[str, int],
    batch_size: int,
    *,
    num_epochs: int | None = None,
    shuffle: bool = True,
    shuffle_buffer: int = 10_000,
    workers: int = 2,
    seed: int | None = None,
    cur_shard: int | None = None,
    shard_count: int | None = None,
) -> DatasetFactory:
    """A zero-argument factory of `with factory() as ds:` contexts over feature-dict batches.

    A factory (rather than a dataset) so the training step can open its reader where it
    runs (a barrier task opens its own shard with `cur_shard`/`shard_count`).

    Args:
        conv: a Petastorm SparkDatasetConverter.
        columns: the columns to read, in order.
        lengths: fixed length of each array column.
        batch_size: rows per batch.
        num_epochs: passes over the data; None repeats forever (training).
        shuffle: shuffle row groups and rows (off for evaluation order stability).
        shuffle_buffer: rows in the shuffling queue.
        workers: reader threads.
        seed: reader seed (row-group order).
        cur_shard, shard_count: read only one shard of the row groups.
    """
    import tensorflow as tf

    reader_kwargs = dict(shuffle_row_groups=shuffle, seed=seed)
    if shard_count:
        reader_kwargs.update(cur_shard=cur_shard, shard_count=shard_count)

    @contextlib.contextmanager
    def factory():
        with conv.make_tf_dataset(
            batch_size=batch_size,
            num_epochs=num_epochs,
            workers_count=workers,
            shuffling_queue_capacity=shuffle_buffer if shuffle else 0,
            **reader_kwargs,
        ) as ds:
            yield ds.map(_as_dict(list(columns), lengths), num_parallel_calls=tf.data.AUTOTUNE)

    return factory


def read_all(conv, columns: list[str], lengths: dict[str, int], batch_size: int = 65_536) -> dict[str, np.ndarray]:
    """Every row of a (catalogue-sized) converter as numpy arrays, in a stable order.

    Used for tables that are needed whole in memory anyway (the item catalogue that the
    index holds, the user vocabulary the export maps ids with), never for training rows.
    """
    factory = dataset_factory(conv, columns, lengths, batch_size, num_epochs=1, shuffle=False, workers=1)
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    with factory() as ds:
        for batch in ds:
            for c in columns:
                parts[c].append(batch[c].numpy())
    return {c: (np.concatenate(v) if v else np.zeros((0,) + ((lengths[c],) if c in lengths else ()))) for c, v in parts.items()}


def cache_dir_path(cfg: Config) -> Path | None:
    """The local path of the Petastorm cache (None when it is a remote URL)."""
    url = petastorm_cache_url(cfg)
    return Path(url[len("file://"):]) if url.startswith("file://") else None
