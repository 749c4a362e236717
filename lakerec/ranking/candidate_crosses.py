"""A retrieved candidate's cross fields, computed the way the log computes them (or left absent).

    pairs = with_crosses(spark, cfg, pairs)   # pairs: user_id, item_id, the user's and the item's columns

On Ali-CCP an impression carries user_item_categories (508) when the impressed item's
category is in the user's behaviour history (user_categories, 109_14), with that history
entry's weight (an ln-count) and an id of its own, one per category; likewise
user_item_shops / user_item_brands (509 / 702, single-valued) and user_item_intentions (853:
one entry per item intention found in the history). The ranker learns these as its
strongest signal, but a (user, candidate) pair from retrieval was never impressed, so no log
line holds them. Scoring it with them absent (index 0, weight 0) is a train/serve skew:
every candidate looks like the rows whose item the user had no history with.

`rank.candidate_crosses` = computed (the default) rebuilds them from what serving has, the
user's context (their history arrays, the top filter.history_length ids by weight, as the
ranker reads them) and the candidate's side fields, through two maps per cross field,
learned from train_impressions (`learn_keys`) rather than from how any id space is laid out,
so they hold on the published files as on generated ones:

    cross index -> item side value   the item-side value present on every row that carries
                                     the cross index (the mode of their co-occurrence: exact
                                     for a single-valued field; for intentions, where a row
                                     lists several, the true one is on all of its rows, the
                                     others only on some); each item-side value then takes
                                     its best-supported cross index
    cross index -> history index     on the rows that carry the cross with weight w, the entry
                                     of the same row's history whose weight is w (mode): the
                                     log copies the history's weight into the cross

A candidate then carries the cross of its item-side value when the mapped history index is
in the user's history arrays, with that entry's weight; intentions keep their largest
weights first, padded to filter.item_intention_length, as the impressions tables hold them.
Nothing about the candidate's test outcome is read, only the user's context and train rows.
What it cannot reproduce: an item-side value in the user's history beyond the top L ids is
absent here but present in the log (which crosses the whole history), and the generator's
random thinning / topping-up of crosses to the published missing rates. On the demo lake
(bench/cross_fidelity.py) that reproduces 78% / 86% of the logged shop / brand crosses
exactly but 32% of the category and 19% of the intention ones (the history has 40 ids per
field, the arrays 16); reading the full history from user_contexts would close most of it.

`rank.candidate_crosses` = absent keeps the old scoring (`with_absent_crosses`). Measured on
the demo lake (`python bench/rank_quality.py --compare-crosses`, README "Ranking evaluation"):
two-stage recall@10 / NDCG@10 with the ranker 0.368 / 0.354 computed, 0.191 / 0.137 absent,
against 0.310 / 0.300 for retrieval alone.

Spark built-ins only (aggregations, a broadcast map column, higher-order array functions):
the maps are as small as the vocabularies, the pairs never leave the executors and are read
once.
"""

from __future__ import annotations

from lakerec.config import Config
from lakerec.schema import fields as F
from lakerec.schema import tables as T

COMPUTED = "computed"
ABSENT = "absent"


def _fields(cross: str) -> tuple[F.Field, F.Field, F.Field]:
    item, history = F.CROSSES[cross]
    return F.BY_NAME[cross], F.BY_NAME[item], F.BY_NAME[history]


def _entries(ids: str, weights: str):
    """array<struct<id, weight>> of a padded ids/weights pair, padding (id 0) dropped."""
    from pyspark.sql import functions as Fn

    pairs = Fn.zip_with(Fn.col(ids), Fn.col(weights), lambda i, w: Fn.struct(i.alias("id"), w.alias("weight")))
    return Fn.filter(pairs, lambda e: e["id"] > 0)


def _cross_entries(f: F.Field):
    from pyspark.sql import functions as Fn

    if f.multi:
        return _entries(f.ids_column, f.weights_column)
    entry = Fn.struct(Fn.col(f.index_column).alias("id"), Fn.col(f.weight_column).cast("float").alias("weight"))
    return Fn.filter(Fn.array(entry), lambda e: e["id"] > 0)


def _item_values(f: F.Field):
    from pyspark.sql import functions as Fn

    values = Fn.col(f.ids_column) if f.multi else Fn.array(Fn.col(f.index_column))
    return Fn.filter(values, lambda v: v > 0)


def _mode(counts, key: str, value: str):
    """Per `key`, the `value` with the largest count (ties: the smaller value); columns key, value, n."""
    from pyspark.sql import Window
    from pyspark.sql import functions as Fn

    order = Window.partitionBy(key).orderBy(Fn.col("n").desc(), Fn.col(value))
    return counts.withColumn("_r", Fn.row_number().over(order)).where("_r = 1").drop("_r")


def learn_keys(train) -> dict:
    """Per cross field, the learned map: a DataFrame (item, cross, history) of indices (module doc).

    Args:
        train: train_impressions (the cross, item side and history columns are read).
    """
    from pyspark.sql import functions as Fn

    keys = {}
    for name in F.CROSSES:
        cross, item, history = _fields(name)
        rows = (train.select(Fn.explode(_cross_entries(cross)).alias("c"), _item_values(item).alias("s"),
                             _entries(history.ids_column, history.weights_column).alias("h")))
        to_item = _mode(rows.select(Fn.col("c.id").alias("cross"), Fn.explode("s").alias("item"))
                        .groupBy("cross", "item").agg(Fn.count(Fn.lit(1)).alias("n")), "cross", "item")
        per_item = _mode(to_item, "item", "cross").select("item", "cross")
        same_weight = rows.select(Fn.col("c.id").alias("cross"),
                                  Fn.explode(Fn.filter("h", lambda e: e["weight"] == Fn.col("c.weight"))).alias("e"))
        to_history = _mode(same_weight.groupBy("cross", Fn.col("e.id").alias("history"))
                           .agg(Fn.count(Fn.lit(1)).alias("n")), "cross", "history")
        keys[name] = per_item.join(to_history.select("cross", "history"), "cross").select("item", "cross", "history")
    return keys


def _history_weight(history: F.Field, index):
    """The weight of history index `index` in the row's history arrays, null when it is not there."""
    from pyspark.sql import functions as Fn

    found = Fn.filter(_entries(history.ids_column, history.weights_column), lambda e: e["id"] == index)
    return Fn.when(Fn.size(found) > 0, found[0]["weight"])


def with_computed_crosses(pairs, keys: dict, length: int):
    """`pairs` with every cross column computed from the user's history and the item's side fields.

    Each map becomes one map column, item-side value -> (cross, history), on a one-row frame
    broadcast to the pairs; the rest is array functions on each pair's own columns.

    Args:
        pairs: one row per (user, candidate): the user's history arrays and the item's side
            columns (two_stage.user_columns, two_stage.item_columns).
        keys: learn_keys' maps.
        length: the intention arrays' length (filter.item_intention_length).
    """
    from pyspark.sql import functions as Fn

    maps = None
    for name, key in keys.items():
        one = key.agg(Fn.map_from_entries(Fn.collect_list(Fn.struct("item", Fn.struct("cross", "history"))))
                      .alias(f"_map_{name}"))
        maps = one if maps is None else maps.crossJoin(one)
    out = pairs.crossJoin(Fn.broadcast(maps))
    for name in keys:
        cross, item, history = _fields(name)
        lookup = Fn.col(f"_map_{name}")
        if not cross.multi:
            key = lookup[Fn.col(item.index_column)]
            weight = _history_weight(history, key["history"])
            out = (out.withColumn(cross.index_column, Fn.when(weight.isNotNull(), key["cross"]).otherwise(0)
                                  .cast("int"))
                   .withColumn(cross.weight_column, Fn.coalesce(weight, Fn.lit(0.0)).cast("float")))
            continue
        met = Fn.transform(Fn.filter(Fn.transform(_item_values(item), lambda v: lookup[v]), lambda k: k.isNotNull()),
                           lambda k: Fn.struct((-_history_weight(history, k["history"])).alias("neg_weight"),
                                               k["cross"].alias("id")))
        top = Fn.slice(Fn.sort_array(Fn.array_distinct(Fn.filter(met, lambda e: e["neg_weight"].isNotNull()))),
                       1, length)
        pad = Fn.greatest(Fn.lit(0), Fn.lit(length) - Fn.size(top))
        out = (out.withColumn("_top", top)
               .withColumn(cross.ids_column, Fn.concat(Fn.transform("_top", lambda t: t["id"]),
                                                       Fn.array_repeat(Fn.lit(0), pad)))
               .withColumn(cross.weights_column,
                           Fn.concat(Fn.transform("_top", lambda t: (-t["neg_weight"]).cast("float")),
                                     Fn.array_repeat(Fn.lit(0.0).cast("float"), pad)))
               .drop("_top"))
    return out.drop(*[f"_map_{name}" for name in keys])


def with_absent_crosses(pairs, length: int):
    """`pairs` with every cross column absent: index 0, weight 0.0, zero arrays of `length`."""
    from pyspark.sql import functions as Fn

    out = pairs
    for f in F.rank_features():
        if f.role != F.CROSS:
            continue
        for column in f.model_columns + ((f.weight_column,) if f.weight_column else ()):
            kind = T.TEST_IMPRESSIONS.column(column).type
            if kind.startswith("array"):
                value = Fn.array_repeat(Fn.lit(0).cast(kind[6:-1]), length)
            else:
                value = Fn.lit(0).cast(kind)
            out = out.withColumn(column, value)
    return out


def with_crosses(spark, cfg: Config, pairs):
    """`pairs` with the cross columns as rank.candidate_crosses says (computed from train_impressions, or absent)."""
    from lakerec.tables import read_table

    length = cfg.filter.item_intention_length
    if cfg.rank.candidate_crosses == ABSENT:
        return with_absent_crosses(pairs, length)
    return with_computed_crosses(pairs, learn_keys(read_table(spark, cfg.table(T.TRAIN_IMPRESSIONS.name))), length)


def describe(mode: str) -> str:
    """The note the two-stage table prints about its candidates' cross fields."""
    if mode == ABSENT:
        return "cross fields absent for every candidate (index 0, weight 0: rank.candidate_crosses=absent)"
    return ("cross fields computed from the user's history and the candidate's side fields through maps learned "
            "on train_impressions (rank.candidate_crosses=computed)")


# --------------------------------------------------------------------------- one request (the service)

def keys_frame(keys: dict):
    """learn_keys' maps as one pandas frame (cross field, item, cross, history): what the service carries."""
    from pyspark.sql import functions as Fn

    union = None
    for name, key in keys.items():
        one = key.select(Fn.lit(name).alias("field"), "item", "cross", "history")
        union = one if union is None else union.unionByName(one)
    return union.toPandas()


def computed_cross_arrays(keys, users: dict, items: dict, length: int) -> dict:
    """with_computed_crosses on numpy arrays: the cross columns of n (user, candidate) pairs.

    The same rule, for the service (lakerec.serving.recommender), which scores one request's
    candidates without Spark; tests/test_candidate_crosses.py checks both agree.

    Args:
        keys: keys_frame's frame (field, item, cross, history).
        users: the user's history columns, one row per pair ([n, L] ids and weights).
        items: the item's side columns, one row per pair.
        length: the intention arrays' length (filter.item_intention_length).

    Returns:
        {column: array} of every cross column, in the impressions tables' dtypes.
    """
    import numpy as np
    import pandas as pd

    out = {}
    for name in F.CROSSES:
        cross, item, history = _fields(name)
        key = keys[keys["field"] == name]
        lookup = pd.Index(key["item"].to_numpy(np.int64))
        to_cross, to_history = key["cross"].to_numpy(np.int32), key["history"].to_numpy(np.int64)
        hist_ids = np.asarray(users[history.ids_column], np.int64)
        hist_weights = np.asarray(users[history.weights_column], np.float32)

        def history_weight(rows, wanted):
            """The weight of history index `wanted` in each row's history (nan: not there)."""
            match = (hist_ids[rows] == wanted[:, None]) & (wanted[:, None] > 0)
            first = match.argmax(axis=1)
            return np.where(match.any(axis=1), hist_weights[rows, first], np.nan).astype(np.float32)

        if not cross.multi:
            values = np.asarray(items[item.index_column], np.int64)
            at = np.where(values > 0, lookup.get_indexer(values), -1)
            rows = np.arange(len(values))
            weight = np.full(len(values), np.nan, np.float32)
            has = at >= 0
            weight[has] = history_weight(rows[has], to_history[at[has]])
            found = ~np.isnan(weight)
            crossed = to_cross[np.maximum(at, 0)] if len(to_cross) else np.zeros(len(values), np.int32)
            out[cross.index_column] = np.where(found, crossed, 0).astype(np.int32)
            out[cross.weight_column] = np.where(found, weight, 0.0).astype(np.float32)
            continue
        values = np.asarray(items[item.ids_column], np.int64)
        n = len(values)
        at = np.where(values > 0, lookup.get_indexer(values.ravel()).reshape(values.shape), -1)
        ids, weights = np.zeros((n, length), np.int32), np.zeros((n, length), np.float32)
        pair, slot = np.nonzero(at >= 0)
        if len(pair):
            met = at[pair, slot]
            weight = history_weight(pair, to_history[met])
            keep = ~np.isnan(weight)
            found = pd.DataFrame({"pair": pair[keep], "neg_weight": -weight[keep], "id": to_cross[met[keep]]})
            # array_distinct, then sort_array of (neg_weight, id) ascending, then the first `length`.
            found = found.drop_duplicates().sort_values(["pair", "neg_weight", "id"], kind="stable")
            found["slot"] = found.groupby("pair").cumcount()
            found = found[found["slot"] < length]
            ids[found["pair"], found["slot"]] = found["id"].to_numpy(np.int32)
            weights[found["pair"], found["slot"]] = (-found["neg_weight"]).to_numpy(np.float32)
        out[cross.ids_column], out[cross.weights_column] = ids, weights
    return out


def absent_cross_arrays(n: int, length: int) -> dict:
    """with_absent_crosses on numpy arrays: every cross column of n pairs absent."""
    import numpy as np

    out = {}
    for f in F.rank_features():
        if f.role != F.CROSS:
            continue
        for column in f.model_columns + ((f.weight_column,) if f.weight_column else ()):
            kind = T.TEST_IMPRESSIONS.column(column).type
            dtype = {"int": np.int32, "float": np.float32}[kind[6:-1] if kind.startswith("array") else kind]
            out[column] = np.zeros((n, length) if kind.startswith("array") else n, dtype)
    return out
