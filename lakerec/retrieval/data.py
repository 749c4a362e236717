"""Spark DataFrame -> Petastorm converter -> tf.data of feature dicts; the frames the stages read.

The training rows never pass through the driver's memory as a whole: Petastorm
materialises the selected columns as Parquet in the lake's cache folder once, and each
reader streams row groups from there (and can read one shard of them per worker).

    with converted(spark, df, cfg, columns, lengths) as feed:   # conv.delete() on exit
        factory = dataset_factory(feed, batch_size=1024)
        with factory() as ds:                                     # endless, shuffled
            ...

Fixed-length array columns of one element type travel packed into one array column
(`concat` in Spark, slices in TensorFlow): Petastorm turns every array cell into its own
numpy array in Python, so ten history columns cost ten times the decoding of one.

The second half builds the Spark frames and in-memory arrays the stages read from the
filter's tables: the inputs, the item catalogue, the user vocabulary, each user's latest
context (for recommendations) and a small monitoring sample of test rows.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterator, Sequence

import numpy as np

from lakerec.config import Config
from lakerec.errors import InputDataError
from lakerec import lake_runs
from lakerec.scratch import process_dir
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.train.data")
# Petastorm logs every materialisation at INFO and small-file advice at WARNING.
logging.getLogger("petastorm").setLevel(logging.ERROR)

# Petastorm 0.13 calls pyarrow's legacy dataset API; its deprecation warnings are not ours.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyarrow(\.|$)")

DatasetFactory = Callable[[], ContextManager["object"]]
PACKED_PREFIX = "packed_"  # no leading underscore: Petastorm rows are namedtuples
INPUT_TABLES = tuple(t.name for t in T.TRAINING_INPUTS)


@dataclass
class Feed:
    """A materialised DataFrame and how to read it back as feature dicts.

    Attributes:
        converter: the Petastorm SparkDatasetConverter.
        columns: the feature columns, in order.
        lengths: fixed length of each array column.
        packed: packed column -> the array columns it holds, in order.
    """

    converter: object
    columns: list[str]
    lengths: dict[str, int]
    packed: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.converter)

    @property
    def stored_columns(self) -> list[str]:
        packed = {c for cols in self.packed.values() for c in cols}
        return [c for c in self.columns if c not in packed] + list(self.packed)


def petastorm_cache_url(cfg: Config) -> str:
    """Where Petastorm materialises DataFrames: `train.petastorm_cache`, or this process's scratch folder.

    A killed run cannot delete its cache; in the scratch folder (lakerec.scratch) the next
    session removes it.
    """
    if cfg.train.petastorm_cache:
        return cfg.train.petastorm_cache
    path = process_dir(cfg.lake_path) / "petastorm_cache"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def pack_arrays(df, columns: list[str], lengths: dict[str, int]):
    """(df with the array columns of each element type concatenated, the packing)."""
    from pyspark.sql import functions as F

    types = dict(df.dtypes)
    groups: dict[str, list[str]] = {}
    for c in columns:
        if c in lengths:
            groups.setdefault(types[c], []).append(c)
    packed = {}
    out = [F.col(c) for c in columns if c not in lengths]
    for dtype, cols in groups.items():
        name = PACKED_PREFIX + dtype.replace("array<", "").replace(">", "")
        packed[name] = cols
        out.append(F.concat(*cols).alias(name) if len(cols) > 1 else F.col(cols[0]).alias(name))
    return df.select(*out), packed


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
def converted(spark, df, cfg: Config, columns: list[str], lengths: dict[str, int]) -> Iterator[Feed]:
    """Materialise `columns` of `df` (NULLs filled, arrays packed) for Petastorm.

    Yields:
        A Feed; the materialised copy is deleted on exit, also after an error.
    """
    filled = fill_missing(df, columns, lengths)
    stored, packed = pack_arrays(filled, columns, lengths)
    conv = make_converter(spark, stored, cfg)
    try:
        yield Feed(conv, list(columns), dict(lengths), packed)
    finally:
        conv.delete()


def _as_dict(feed: Feed):
    import tensorflow as tf

    def to_dict(batch):
        out = {}
        for name in feed.stored_columns:
            t = getattr(batch, name)
            if name in feed.packed:  # slice the packed arrays apart again
                parts = feed.packed[name]
                t = tf.ensure_shape(t, [None, sum(feed.lengths[c] for c in parts)])
                start = 0
                for c in parts:
                    out[c] = t[:, start:start + feed.lengths[c]]
                    start += feed.lengths[c]
            else:
                out[name] = t
        return {c: out[c] for c in feed.columns}

    return to_dict


def dataset_factory(
    feed: Feed,
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
        feed: what `converted` yields.
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
        with feed.converter.make_tf_dataset(
            batch_size=batch_size,
            num_epochs=num_epochs,
            workers_count=workers,
            shuffling_queue_capacity=shuffle_buffer if shuffle else 0,
            **reader_kwargs,
        ) as ds:
            yield ds.map(_as_dict(feed), num_parallel_calls=tf.data.AUTOTUNE)

    return factory


def in_memory_dataset(feed: Feed, rows: dict[str, np.ndarray], batch_size: int, shuffle_buffer: int = 10_000,
                      seed: int | None = None):
    """The same feature-dict batches as `dataset_factory`, from rows held in memory.

    Rows travel in the feed's stored layout (arrays packed) through the same shuffle,
    batch and unpacking steps, so only the source differs from the Petastorm pipeline:
    the baseline of bench/train_feed.py.
    """
    import collections

    import tensorflow as tf

    stored = {c: rows[c] for c in feed.stored_columns if c not in feed.packed}
    for name, cols in feed.packed.items():
        stored[name] = np.concatenate([rows[c] for c in cols], axis=1)
    Row = collections.namedtuple("Row", list(stored))
    ds = tf.data.Dataset.from_tensor_slices(Row(**stored))
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    ds = ds.repeat().batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ds.map(_as_dict(feed), num_parallel_calls=tf.data.AUTOTUNE)


def read_all(feed: Feed, batch_size: int = 65_536) -> dict[str, np.ndarray]:
    """Every row of a (catalogue-sized) feed as numpy arrays, in a stable order.

    Used for tables that are needed whole in memory anyway (the item catalogue that the
    index holds, the user vocabulary the export maps ids with), never for training rows.
    """
    factory = dataset_factory(feed, batch_size, num_epochs=1, shuffle=False, workers=1)
    parts: dict[str, list[np.ndarray]] = {c: [] for c in feed.columns}
    with factory() as ds:
        for batch in ds:
            for c in feed.columns:
                parts[c].append(batch[c].numpy())
    empty = {c: np.zeros((0,) + ((feed.lengths[c],) if c in feed.lengths else ())) for c in feed.columns}
    return {c: (np.concatenate(v) if v else empty[c]) for c, v in parts.items()}


# --------------------------------------------------------------------------- the stages' frames

def read_inputs(spark, cfg: Config, names: Sequence[str] = INPUT_TABLES) -> dict:
    """The filter's tables as DataFrames, checked to be one complete run (lakerec.lake_runs).

    Raises:
        MissingTableError: a table is missing (naming the job that writes it).
        IncompleteRunError: the filter's last run did not finish.
    """
    lake_runs.check_inputs(spark, cfg, [T.table(n) for n in names])
    return {n: spark.table(cfg.table(n)) for n in names}


def item_train_counts(train_df, num_items: int) -> np.ndarray:
    """Training positives per item index ([num_items]; index 0 = OOV rows, if any)."""
    counts = np.zeros(num_items, dtype=np.int64)
    for row in train_df.groupBy("item_index").count().collect():
        idx = int(row["item_index"])
        if 0 <= idx < num_items:
            counts[idx] = int(row["count"])
    return counts


def load_items(spark, cfg: Config, item_vocab, spec) -> dict[str, np.ndarray]:
    """The catalogue (item_id + the candidate tower's columns), every vocabulary item."""
    cols = ["item_id"] + spec.candidate_columns()
    with converted(spark, item_vocab, cfg, cols, spec.array_lengths()) as feed:
        items = read_all(feed)
    order = np.argsort(items["item_index"], kind="stable")
    items = {k: v[order] for k, v in items.items()}
    if not np.array_equal(items["item_index"], np.arange(1, len(order) + 1)):
        raise InputDataError(
            f"{cfg.table(T.ITEM_VOCAB.name)}: item_index must run 1..N without gaps or repeats; "
            "rerun `python -m lakerec.jobs.filter`"
        )
    return items


def load_users(spark, cfg: Config, user_vocab) -> tuple[np.ndarray, np.ndarray]:
    """(user_id, user_index) of every vocabulary user: the id lookup the export holds."""
    with converted(spark, user_vocab, cfg, ["user_id", "user_index"], {}) as feed:
        users = read_all(feed)
    return users["user_id"], users["user_index"]


def query_key_column():
    """One key per query: a user in one context (same user id and user features)."""
    from pyspark.sql import functions as F

    from lakerec.retrieval.features import USER_MULTI, USER_SINGLE, ids_column, index_column, weights_column

    cols = ["user_id"] + [index_column(n) for n in USER_SINGLE]
    for n in USER_MULTI:
        cols += [ids_column(n), weights_column(n)]
    return F.xxhash64(*cols).alias("query_key")


def table_property(spark, table: str, key: str) -> str | None:
    """The value of a table property (TBLPROPERTIES), or None where the table has none."""
    for row in spark.sql(f"SHOW TBLPROPERTIES {table}").collect():
        if row["key"] == key:
            return row["value"]
    return None


VALIDATION_FLAG = "_lakerec_validation"


def carve_validation(train_df, fraction: float, seed: int):
    """(fit rows, validation rows): a seeded random `fraction` of each user's train positives.

    Each user keeps at least one positive in the fit rows (the first in a seeded order), so
    a user with a single positive stays in train whole. Deterministic: the same table and
    seed give the same slice (hashes of sample_id, no RNG state).

    Args:
        train_df: train_interactions.
        fraction: expected share of the rows (of users with two or more) to hold out; 0 = none.
        seed: which rows.

    Returns:
        Two DataFrames with train_df's columns.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if fraction <= 0:
        return train_df, train_df.limit(0)
    order = F.xxhash64(F.col("sample_id"), F.lit(seed))
    draw = (F.abs(F.xxhash64(F.col("sample_id"), F.lit(seed + 1))) % 1_000_000) / 1_000_000.0
    first = F.row_number().over(Window.partitionBy("user_id").orderBy(order)) == 1
    flagged = train_df.withColumn(VALIDATION_FLAG, (~first) & (draw < F.lit(float(fraction))))
    return (flagged.where(~F.col(VALIDATION_FLAG)).drop(VALIDATION_FLAG),
            flagged.where(F.col(VALIDATION_FLAG)).drop(VALIDATION_FLAG))


def read_sample(test_df, spec, rows: int) -> dict | None:
    """Up to `rows` test rows (warm items) in memory, for per-epoch monitoring.

    A small bounded sample, so it is collected directly rather than through Petastorm.
    """
    from pyspark.sql import functions as F

    if rows <= 0:
        return None
    cols = ["item_id"] + spec.query_columns() + ["item_index"]
    warm = test_df.where(F.col("item_index") > 0).select("*", query_key_column())
    picked = fill_missing(warm, ["query_key"] + cols, spec.array_lengths()).limit(rows).collect()
    if not picked:
        return None
    lengths = spec.array_lengths()
    out = {"query_key": np.array([r["query_key"] for r in picked], dtype=np.int64)}
    for c in cols:
        values = [r[c] for r in picked]
        if c in lengths:
            out[c] = np.array(values, dtype=np.float32 if c.endswith("_weights") else np.int32).reshape(-1, lengths[c])
        else:
            out[c] = np.array(values, dtype=np.int64 if c == "item_id" else np.int32)
    return out


def users_frame(tables: dict, spec):
    """One row per vocabulary user with the serving columns: the user's latest context.

    The latest context is the user's newest row (test before train, then highest
    sample_id); a user without positive rows gets the missing value (0) everywhere.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cols = spec.serving_columns()
    users = tables[T.USER_VOCAB.name].select("user_id")
    feature_cols = [c for c in cols if c != "user_id"]
    if not feature_cols:
        return users
    both = (tables[T.TEST_INTERACTIONS.name].select("user_id", "sample_id", *feature_cols).withColumn("_src", F.lit(1))
            .unionByName(tables[T.TRAIN_INTERACTIONS.name].select("user_id", "sample_id", *feature_cols)
                         .withColumn("_src", F.lit(0))))
    w = Window.partitionBy("user_id").orderBy(F.col("_src").desc(), F.col("sample_id").desc())
    latest = both.withColumn("_n", F.row_number().over(w)).where("_n = 1").drop("_n", "_src", "sample_id")
    out = users.join(latest, "user_id", "left")
    lengths = spec.array_lengths()
    fills = []
    for c in cols:
        if c == "user_id":
            fills.append(F.col(c))
        elif c in lengths:
            zero = F.lit(0.0).cast("float") if c.endswith("_weights") else F.lit(0).cast("int")
            fills.append(F.coalesce(F.col(c), F.array_repeat(zero, lengths[c])).alias(c))
        else:
            fills.append(F.coalesce(F.col(c), F.lit(0).cast("int")).alias(c))
    return out.select(*fills)
