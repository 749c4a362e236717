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
Candidate features: a (user, candidate) pair that was never impressed has no logged cross
fields (508/509/702/853) and no position. rank.candidate_crosses = computed (the default)
rebuilds the cross fields as the log does, from the user's context and the candidate's side
fields (lakerec.ranking.candidate_crosses: maps learned on train_impressions, nothing about
the test clicks read); absent scores every candidate with them absent (index 0, weight 0).
Position is never read when scoring. The pairs are built by lakerec.ranking.rerank
candidate_pairs, as `recommend` builds its own. Measured on the demo lake (`python
bench/rank_quality.py --compare-crosses`, expected_clicks, recall@10 / NDCG@10): retrieval
alone 0.310 / 0.300; + ranker 0.368 / 0.354 with the crosses computed, 0.191 / 0.137 with them
absent; + oracle 0.414 / 0.388.

At scale: the users go through one mapInPandas (users in batches of rank.eval_batch_size //
rank.candidates, each worker loading the two-tower, and the oracle, once) that retrieves the
candidates; the pairs are scored by evaluate.score_impressions, ranked per user with window
functions and the per-user metrics averaged in Spark: nothing is collected.
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
        cfg: configuration (rank.candidates, rank.rerank_by, rank.candidate_crosses,
            rank.eval_batch_size, tables, MLflow).
        ranker_uri: the ranker's model URI (loaded by `loader`).
        two_tower_run: the training run whose exported two-tower retrieves.
        loader: model URI -> Ranker (default lakerec.ranking.scoring.load_ranker).
        oracle: an Oracle-like object (click_probability, ctcvr_probability, clicked_probability);
            None: the generator's oracle under cfg.raw, or no oracle row.
        k: the cut-off of recall and NDCG.

    Returns:
        {"users", "candidates", "rerank_by", "candidate_crosses", "k",
         "metrics": {stage: {"recall@k", "ndcg@k"}}, "notes", "seconds"}.
    """
    import pandas as pd
    import tensorflow as tf
    from pyspark.sql import Window
    from pyspark.sql import functions as Fn

    from lakerec.aliccp.oracle import Oracle
    from lakerec.ranking import evaluate as E
    from lakerec.ranking.candidate_crosses import describe
    from lakerec.tables import read_table

    start = time.monotonic()
    loader = loader or E.default_loader()
    ranker = E._load(ranker_uri, loader, cfg.tracking_uri)
    rerank_by, n_candidates, tracking_uri = cfg.rank.rerank_by, cfg.rank.candidates, cfg.tracking_uri
    R.check_order(rerank_by, ranker.objective, ranker_uri)
    test = read_table(spark, cfg.table(T.TEST_IMPRESSIONS.name))
    _, spec = B.load_two_tower(two_tower_run, tracking_uri)
    serving, lengths = spec.serving_columns(), spec.array_lengths()
    truth = oracle_source(cfg, oracle)
    notes = [f"candidates: {n_candidates} per user from two-tower run {two_tower_run}; "
             f"{describe(cfg.rank.candidate_crosses)}; position absent (never impressed)"]
    if truth is None:
        notes.append(f"oracle: no {B.ORACLE_FOLDER}/{ORACLE_NPZ} under raw ({cfg.raw}): omitted (generated data only)")
    users_per_batch = max(1, cfg.rank.eval_batch_size // n_candidates)

    def retrieve(batches):
        module, _ = E.worker_cached(("two-tower", two_tower_run),
                                    lambda: B.load_two_tower(two_tower_run, tracking_uri))
        judge = E.worker_cached(("oracle", truth), lambda: Oracle.load(truth)) if isinstance(truth, str) else truth
        for batch in batches:
            for lo in range(0, len(batch), users_per_batch):
                pdf = batch.iloc[lo:lo + users_per_batch]
                ids = module.recommend(B.query_tensors(pdf, serving, lengths), tf.constant(n_candidates, tf.int32))
                ids = ids["item_ids"].numpy().astype(np.int64)
                width = ids.shape[1]
                user_ids = np.repeat(pdf["user_id"].to_numpy(np.int64), width)
                out = {"user_id": user_ids, "retrieval_rank": np.tile(np.arange(width, dtype=np.int32), len(pdf)),
                       "item_id": ids.reshape(-1), "truth": np.full(len(user_ids), np.nan)}
                if judge is not None:
                    try:
                        out["truth"] = np.asarray(getattr(judge, ORACLE_ORDER[rerank_by])(user_ids, out["item_id"]),
                                                  np.float64)
                    except KeyError as e:
                        raise InputDataError(
                            f"the oracle does not know an id of the test users or items: {e}") from None
                yield pd.DataFrame(out)

    users = users_frame(test)
    candidates = users.mapInPandas(retrieve, "user_id bigint, retrieval_rank int, item_id bigint, truth double")
    pairs = R.candidate_pairs(spark, cfg, candidates, users.select(*user_columns()))
    scored, _ = E.score_impressions(pairs, ranker_uri, loader, tracking_uri, ranker=ranker,
                                    keys=("user_id", "item_id", "retrieval_rank", "truth", "exposure"),
                                    keys_ddl="user_id bigint, item_id bigint, retrieval_rank int, truth double, "
                                             "exposure double")
    by = R.order_scores({c: Fn.col(c) for c in ("p_click", "p_ctcvr")}, Fn.col("exposure"), rerank_by)
    orders = {"retrieval": None, "ranker": by}
    if truth is not None:
        orders["oracle"] = Fn.col("truth")
    ranked = scored
    for slug, score in orders.items():
        rank = (Fn.col("retrieval_rank") if score is None else
                Fn.row_number().over(Window.partitionBy("user_id").orderBy(score.desc(), "retrieval_rank")) - 1)
        ranked = ranked.withColumn(f"_rank_{slug}", rank)
    ranked = ranked.join(users.select("user_id", "clicked_items"), "user_id").withColumn(
        "_hit", Fn.array_contains("clicked_items", Fn.col("item_id")))
    sums = [Fn.first(Fn.size("clicked_items")).alias("relevant")]
    for slug in orders:
        top = Fn.col("_hit") & (Fn.col(f"_rank_{slug}") < k)
        sums += [Fn.sum(top.cast("double")).alias(f"hits_{slug}"),
                 Fn.sum(Fn.when(top, 1.0 / Fn.log2(Fn.col(f"_rank_{slug}") + 2.0)).otherwise(0.0)).alias(f"dcg_{slug}")]
    per_user = ranked.groupBy("user_id").agg(*sums)
    ideal = Fn.aggregate(Fn.sequence(Fn.lit(0), Fn.least(Fn.col("relevant"), Fn.lit(k)) - 1), Fn.lit(0.0),
                         lambda acc, i: acc + 1.0 / Fn.log2(i + 2.0))
    row = per_user.agg(Fn.count(Fn.lit(1)).alias("users"), *[
        Fn.avg(Fn.col(f"hits_{s}") / Fn.col("relevant")).alias(f"recall_{s}") for s in orders], *[
        Fn.avg(Fn.col(f"dcg_{s}") / ideal).alias(f"ndcg_{s}") for s in orders]).first()
    if not row["users"]:
        raise InputDataError(f"{cfg.table(T.TEST_IMPRESSIONS.name)} has no clicks of known users: no two-stage run")
    metrics = {stage: {f"recall@{k}": float(row[f"recall_{slug}"]), f"ndcg@{k}": float(row[f"ndcg_{slug}"])}
               for stage, slug in zip(STAGES, _SLUGS) if slug in orders}
    result = {"users": int(row["users"]), "candidates": n_candidates, "rerank_by": rerank_by,
              "candidate_crosses": cfg.rank.candidate_crosses, "k": k, "metrics": metrics, "notes": notes,
              "seconds": time.monotonic() - start}
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

