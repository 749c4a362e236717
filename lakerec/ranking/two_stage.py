"""Two stages: the two-tower retrieves rank.candidates items per test user, the ranker re-orders them.

    result = run(spark, cfg, ranker_uri, two_tower_run_id, loader=load_ranker)
    print(format_table(result))

For each test user with at least one click (rows without a user_id belong to no user): the
user's context is their newest test impression (highest sample_id): its user index, profile
and history columns feed both the two-tower's query tower (the exported module's `recommend`,
exactly as served) and the ranker. Each candidate's item columns come from item_vocab.
Recall@K and NDCG@K (K = 10, binary relevance: the user's distinct clicked test items, all of
them in the denominator, retrievable or not) are reported for
    retrieval alone      the two-tower's order
    retrieval + ranker   the same candidates ordered by the ranker's rank.rerank_by (p_click,
                         p_ctcvr (esmm), or expected_clicks = p_click x the item's exposure:
                         lakerec.ranking.rerank)
    retrieval + oracle   the same candidates ordered by the generator's truth for the same
                         order: its position-averaged click probability (p_click), times its
                         conversion probability (p_ctcvr), or times the chance the user is
                         shown the item (expected_clicks: lakerec.aliccp.oracle
                         clicked_probability); omitted with a note when the data was not
                         generated.
Candidate features: a (user, candidate) pair that was never impressed has no cross fields
(508/509/702/853) and no position, so every candidate is scored with them absent (index 0,
weight 0, empty arrays): the same for every candidate, so nothing about the test clicks leaks
into the order, at the price of the signal the cross fields carry on real impressions.

At scale: one Spark job over the users (mapInPandas, users in batches of
rank.eval_batch_size // rank.candidates, each worker loading both models once); per-user
metrics are averaged in Spark, nothing is collected but the item catalogue.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from lakerec.config import Config
from lakerec.errors import InputDataError
from lakerec.ranking import baselines as B
from lakerec.ranking import rerank as R
from lakerec.schema import fields as F
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.evaluate_ranker")

K = 10
STAGES = ("retrieval alone", "retrieval + ranker", "retrieval + oracle")
_SLUGS = ("retrieval", "ranker", "oracle")
ORACLE_NPZ = "oracle.npz"
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
# The oracle's truth for each re-ranking order (lakerec.aliccp.oracle.Oracle methods).
ORACLE_ORDER = {"p_click": "click_probability", "p_ctcvr": "ctcvr_probability",
                R.EXPECTED_CLICKS: "clicked_probability"}


def user_columns() -> list[str]:
    """The user's columns of an impression: ids, cold flag, profile and history."""
    return ["user_id", F.id_field(F.QUERY).index_column, "is_cold_user",
            *[c for f in F.side_features(F.QUERY) for c in f.model_columns]]


def item_columns() -> list[str]:
    """The item's columns of an impression, as item_vocab holds them."""
    return ["item_id", F.id_field(F.CANDIDATE).index_column,
            *[c for f in F.side_features(F.CANDIDATE) for c in f.model_columns]]


def absent_cross_values(length: int) -> dict:
    """The cross fields of a pair never impressed: index 0, weight 0.0, zero-padded arrays."""
    out = {}
    for f in F.rank_features():
        if f.role == F.CONTEXT:
            continue
        for col in f.model_columns + ((f.weight_column,) if f.weight_column else ()):
            kind = T.TEST_IMPRESSIONS.column(col).type
            if kind.startswith("array"):
                out[col] = np.zeros(length, np.float32 if "float" in kind else np.int32)
            else:
                out[col] = 0.0 if kind in ("float", "double") else 0
    return out


def _metrics(ranked: np.ndarray, clicked: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user: recall@k and NDCG@k of the ranked item ids [users, n] against their clicked ids."""
    recall, ndcg = np.zeros(len(clicked)), np.zeros(len(clicked))
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    for u, items in enumerate(clicked):
        relevant = set(int(i) for i in items)
        top = ranked[u, :k]
        hits = np.array([int(i) in relevant for i in top], dtype=bool)
        recall[u] = hits.sum() / len(relevant)
        ndcg[u] = discounts[:len(top)][hits].sum() / discounts[:min(len(relevant), k)].sum()
    return recall, ndcg


def oracle_source(cfg: Config, oracle):
    """The oracle to re-rank with: the object given, the path of the generator's npz, or None."""
    if oracle is not None:
        return oracle
    if cfg.raw and "://" not in cfg.raw and (Path(cfg.raw) / B.ORACLE_FOLDER / ORACLE_NPZ).is_file():
        return str(Path(cfg.raw) / B.ORACLE_FOLDER)
    return None


def users_frame(test):
    """One row per test user with clicks: their newest test context and their distinct clicked items."""
    from pyspark.sql import Window
    from pyspark.sql import functions as Fn

    with_user = test.where(Fn.col("user_id").isNotNull())
    clicked = (with_user.where(Fn.col("click") == 1).groupBy("user_id")
               .agg(Fn.array_distinct(Fn.collect_list("item_id")).alias("clicked_items")))
    newest = Window.partitionBy("user_id").orderBy(Fn.col("sample_id").desc())
    context = (with_user.withColumn("_n", Fn.row_number().over(newest)).where("_n = 1")
               .select(*user_columns()))
    return clicked.join(context, "user_id")


def run(spark, cfg: Config, ranker_uri: str, two_tower_run: str, *, loader=None, oracle=None,
        k: int = K) -> dict:
    """Retrieval alone, retrieval + ranker and retrieval + oracle on the test users with clicks.

    Args:
        spark: the session.
        cfg: configuration (rank.candidates, rank.rerank_by, rank.eval_batch_size, tables, MLflow).
        ranker_uri: the ranker's model URI (loaded by `loader`).
        two_tower_run: the training run whose exported two-tower retrieves.
        loader: model URI -> Ranker (default lakerec.ranking.scoring.load_ranker).
        oracle: an Oracle-like object (click_probability, ctcvr_probability, clicked_probability);
            None: the generator's oracle under cfg.raw, or no oracle row.
        k: the cut-off of recall and NDCG.

    Returns:
        {"users", "candidates", "rerank_by", "k", "metrics": {stage: {"recall@k", "ndcg@k"}},
         "notes", "seconds"}.
    """
    import pandas as pd
    import tensorflow as tf
    from pyspark.sql import functions as Fn

    from lakerec.aliccp.oracle import Oracle
    from lakerec.ranking import evaluate as E
    from lakerec.tables import read_table

    start = time.monotonic()
    loader = loader or E.default_loader()
    ranker = E._load(ranker_uri, loader, cfg.tracking_uri)
    rerank_by, n_candidates, tracking_uri = cfg.rank.rerank_by, cfg.rank.candidates, cfg.tracking_uri
    R.check_order(rerank_by, ranker.objective, ranker_uri)
    test = read_table(spark, cfg.table(T.TEST_IMPRESSIONS.name))
    cross = absent_cross_values(cfg.filter.item_intention_length)
    available = set(user_columns()) | set(item_columns()) | set(cross) | {"is_cold_item"}
    cols = E.check_ranker(ranker, available)
    _, spec = B.load_two_tower(two_tower_run, tracking_uri)
    serving, lengths = spec.serving_columns(), spec.array_lengths()
    vocab = read_table(spark, cfg.table(T.ITEM_VOCAB.name)).select(*item_columns(), "impressions")
    items = vocab.toPandas().set_index("item_id", drop=False)  # the catalogue, as the two-tower's index
    items["exposure"] = R.exposure(items["impressions"].to_numpy(np.float64), float(items["impressions"].sum()),
                                   len(items))
    truth = oracle_source(cfg, oracle)
    notes = [f"candidates: {n_candidates} per user from two-tower run {two_tower_run}; cross fields and position "
             "absent for every candidate (never impressed)"]
    if truth is None:
        notes.append(f"oracle: no {B.ORACLE_FOLDER}/{ORACLE_NPZ} under raw ({cfg.raw}): omitted (generated data only)")

    def rerank(batches):
        module, _ = E.worker_cached(("two-tower", two_tower_run),
                                    lambda: B.load_two_tower(two_tower_run, tracking_uri))
        model = E.worker_cached(("ranker", ranker_uri, loader), lambda: E._load(ranker_uri, loader, tracking_uri))
        judge = E.worker_cached(("oracle", truth), lambda: Oracle.load(truth)) if isinstance(truth, str) else truth
        for pdf in batches:
            n = len(pdf)
            ids = module.recommend(B.query_tensors(pdf, serving, lengths), tf.constant(n_candidates, tf.int32))
            ids = ids["item_ids"].numpy()
            width = ids.shape[1]
            rows = np.repeat(np.arange(n), width)
            frame = pdf[user_columns()].iloc[rows].reset_index(drop=True)
            cand = items.loc[ids.reshape(-1)].reset_index(drop=True)
            for c in item_columns():
                frame[c] = cand[c].to_numpy()
            frame["is_cold_item"] = False
            for c, v in cross.items():
                frame[c] = [v] * len(frame) if isinstance(v, np.ndarray) else v
            predicted = {k: np.asarray(v, np.float64) for k, v in model.predict(frame[cols]).items()}
            scores = R.order_scores(predicted, cand["exposure"].to_numpy(np.float64), rerank_by).reshape(n, width)
            clicked = list(pdf["clicked_items"])
            out = {"user_id": pdf["user_id"].to_numpy(np.int64),
                   "relevant": np.array([len(set(c)) for c in clicked], np.int32)}
            orders = {"retrieval": np.arange(width)[None, :].repeat(n, 0),
                      "ranker": np.argsort(-scores, axis=1, kind="stable")}
            if judge is not None:
                truth_of = getattr(judge, ORACLE_ORDER[rerank_by])
                try:
                    p = truth_of(frame["user_id"].to_numpy(np.int64), frame["item_id"].to_numpy(np.int64))
                except KeyError as e:
                    raise InputDataError(f"the oracle does not know an id of the test users or items: {e}") from None
                orders["oracle"] = np.argsort(-np.asarray(p).reshape(n, width), axis=1, kind="stable")
            for slug in _SLUGS:
                if slug in orders:
                    recall, ndcg = _metrics(np.take_along_axis(ids, orders[slug], axis=1), clicked, k)
                else:
                    recall = ndcg = np.full(n, np.nan)
                out[f"recall_{slug}"], out[f"ndcg_{slug}"] = recall, ndcg
            yield pd.DataFrame(out)

    schema = "user_id bigint, relevant int, " + ", ".join(
        f"recall_{s} double, ndcg_{s} double" for s in _SLUGS)
    previous = spark.conf.get(ARROW_BATCH, None)
    spark.conf.set(ARROW_BATCH, str(max(1, cfg.rank.eval_batch_size // n_candidates)))
    try:
        per_user = users_frame(test).mapInPandas(rerank, schema)
        row = per_user.agg(Fn.count(Fn.lit(1)).alias("users"), *[
            Fn.avg(Fn.col(f"{m}_{s}")).alias(f"{m}_{s}") for s in _SLUGS for m in ("recall", "ndcg")]).first()
    finally:
        if previous is None:
            spark.conf.unset(ARROW_BATCH)
        else:
            spark.conf.set(ARROW_BATCH, previous)
    if not row["users"]:
        raise InputDataError(f"{cfg.table(T.TEST_IMPRESSIONS.name)} has no clicks of known users: no two-stage run")
    metrics = {}
    for stage, slug in zip(STAGES, _SLUGS):
        if row[f"recall_{slug}"] is not None:
            metrics[stage] = {f"recall@{k}": float(row[f"recall_{slug}"]), f"ndcg@{k}": float(row[f"ndcg_{slug}"])}
    result = {"users": int(row["users"]), "candidates": n_candidates, "rerank_by": rerank_by, "k": k,
              "metrics": metrics, "notes": notes, "seconds": time.monotonic() - start}
    log.info("two-stage over %s users in %.1fs", f"{result['users']:,}", result["seconds"])
    return result


def format_table(result: dict) -> str:
    k = result["k"]
    lines = [f"Two stages over {result['users']:,} test users with clicks: top {result['candidates']} by the "
             f"two-tower, re-ranked by {result['rerank_by']}",
             f"{'method':<22}{f'recall@{k}':>11}{f'NDCG@{k}':>11}"]
    lines.append("-" * len(lines[-1]))
    for stage in STAGES:
        if stage in result["metrics"]:
            v = result["metrics"][stage]
            lines.append(f"{stage:<22}{v[f'recall@{k}']:>11.4f}{v[f'ndcg@{k}']:>11.4f}")
    lines += [f"  {n}" for n in result["notes"]]
    return "\n".join(lines)

