"""The second stage of `recommend`: re-order each user's retrieved candidates by the ranker.

    ranked = rerank(spark, cfg, candidates, ranker_uri, k)   # candidates: user_id, rank, item_id, score

Each (user, candidate) pair gets the ranker's inputs (`candidate_pairs`, which
lakerec.ranking.two_stage scores its candidates with too): the user's columns from their
newest impression (test before train, then the highest sample_id, the rule of retrieval's
users_frame), the item's from item_vocab, the cross fields computed from the user's history
and the item's side fields as the log computes them, or absent (rank.candidate_crosses:
lakerec.ranking.candidate_crosses; on the demo lake the two stages' NDCG@10 is 0.354
computed, 0.137 absent, 0.300 for retrieval alone); never position (scoring does not read
it). The pairs are scored in Spark (evaluate.score_impressions: mapInPandas, the ranker loaded once per
worker), ordered by rank.rerank_by (ties by the retrieval rank), and the top k kept:
user_id, rank (1 = best), item_id, score (the retrieval score), p_click, p_conversion (pCVR
given a click; null for a ctr ranker).

The orders (`rank.rerank_by`):
    p_click          the ranker's pCTR: the chance of a click if the item is shown
    p_ctcvr          pCTR x pCVR (an esmm ranker): the chance of a purchase if shown
    expected_clicks  pCTR x exposure, exposure = the item's share of the kept train
                     impressions, add-one smoothed ((n_i + 1) / (N + I), item_vocab):
                     the clicks a list is judged on (and a user makes) happen where items
                     are shown, and pCTR is by design the probability given a showing. On
                     generated data the oracle's own pCTR order loses to retrieval alone on
                     test clicks, its exposure x pCTR order wins (README "Ranking
                     evaluation").
"""

from __future__ import annotations

from lakerec.config import Config
from lakerec.errors import ConfigError
from lakerec.schema import tables as T

RANKED_DDL = "user_id bigint, rank int, item_id bigint, score float"
EXPECTED_CLICKS = "expected_clicks"


def check_order(by: str, objective: str, where: str) -> None:
    """Refuse p_ctcvr of a ranker without a conversion head."""
    if by == "p_ctcvr" and objective != "esmm":
        raise ConfigError(f"rank.rerank_by p_ctcvr needs an esmm ranker; {where} is {objective!r}")


def exposure(impressions, total: float, n_items: int):
    """The item's add-one smoothed share of the kept train impressions (numbers or a Spark column)."""
    return (impressions + 1.0) / (total + n_items)


def order_scores(predicted: dict, item_exposure, by: str):
    """The score a list is sorted by, from the ranker's outputs (numpy arrays or Spark columns)."""
    if by == EXPECTED_CLICKS:
        return predicted["p_click"] * item_exposure
    return predicted[by]


def user_contexts(spark, cfg: Config):
    """One row per user with impressions: the ranker's user columns from the newest one."""
    from pyspark.sql import Window
    from pyspark.sql import functions as Fn

    from lakerec.ranking.two_stage import user_columns
    from lakerec.tables import read_table

    cols = user_columns()
    both = None
    for order, table in enumerate((T.TRAIN_IMPRESSIONS, T.TEST_IMPRESSIONS)):
        rows = (read_table(spark, cfg.table(table.name)).where(Fn.col("user_id").isNotNull())
                .select("sample_id", *cols).withColumn("_src", Fn.lit(order)))
        both = rows if both is None else both.unionByName(rows)
    newest = Window.partitionBy("user_id").orderBy(Fn.col("_src").desc(), Fn.col("sample_id").desc())
    return both.withColumn("_n", Fn.row_number().over(newest)).where("_n = 1").select(*cols)


def candidate_pairs(spark, cfg: Config, candidates, contexts=None):
    """Each (user, candidate) row of `candidates` with the ranker's inputs and the item's exposure.

    Args:
        spark: the session.
        cfg: configuration (the tables, rank.candidate_crosses, filter.item_intention_length).
        candidates: user_id, item_id and whatever else is to be carried through.
        contexts: one row per user with two_stage.user_columns (default: user_contexts).

    Returns:
        `candidates` joined with the user's columns, the item's (item_vocab) and `exposure`,
        with is_cold_item false and the cross fields as rank.candidate_crosses says
        (lakerec.ranking.candidate_crosses); position is never set (scoring does not read it).
    """
    from pyspark.sql import functions as Fn

    from lakerec.ranking.candidate_crosses import with_crosses
    from lakerec.ranking.two_stage import item_columns
    from lakerec.tables import read_table

    vocab = read_table(spark, cfg.table(T.ITEM_VOCAB.name))
    totals = vocab.agg(Fn.sum("impressions").alias("n"), Fn.count(Fn.lit(1)).alias("items")).first()
    items = vocab.select(*item_columns(), exposure(Fn.col("impressions"), float(totals["n"] or 0),
                                                   int(totals["items"])).alias("exposure"))
    contexts = contexts if contexts is not None else user_contexts(spark, cfg)
    pairs = candidates.join(contexts, "user_id").join(items, "item_id").withColumn("is_cold_item", Fn.lit(False))
    return with_crosses(spark, cfg, pairs)


def rerank(spark, cfg: Config, candidates, ranker_uri: str, k: int, loader=None):
    """The top k of each user's candidates by the ranker's rank.rerank_by (a Spark DataFrame).

    Args:
        spark: the session.
        cfg: configuration (rank.rerank_by, rank.candidate_crosses, the tables, the MLflow store).
        candidates: user_id, rank, item_id, score (the retrieval's order), as a DataFrame.
        ranker_uri: the ranker's MLflow model URI.
        k: rows kept per user.
        loader: model URI -> Ranker (default lakerec.ranking.scoring.load_ranker).

    Raises:
        ConfigError: p_ctcvr asked of a ranker without a conversion head.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as Fn

    from lakerec.ranking import evaluate as E

    loader = loader or E.default_loader()
    pairs = candidate_pairs(spark, cfg, candidates.withColumnRenamed("score", "retrieval_score")
                            .withColumnRenamed("rank", "retrieval_rank"))
    keys = ("user_id", "item_id", "retrieval_rank", "retrieval_score", "exposure")
    scored, ranker = E.score_impressions(pairs, ranker_uri, loader, cfg.tracking_uri, keys=keys,
                                         keys_ddl="user_id bigint, item_id bigint, retrieval_rank int, "
                                                  "retrieval_score float, exposure double")
    check_order(cfg.rank.rerank_by, ranker.objective, ranker_uri)
    by = order_scores({c: Fn.col(c) for c in ("p_click", "p_ctcvr")}, Fn.col("exposure"), cfg.rank.rerank_by)
    order = Window.partitionBy("user_id").orderBy(by.desc(), Fn.col("retrieval_rank"))
    esmm = ranker.objective == "esmm"
    return (scored.withColumn("rank", Fn.row_number().over(order)).where(Fn.col("rank") <= k)
            .select("user_id", Fn.col("rank").cast("int"), "item_id", Fn.col("retrieval_score").alias("score"),
                    Fn.col("p_click").cast("float"),
                    (Fn.col("p_conversion") if esmm else Fn.lit(None)).cast("float").alias("p_conversion")))
