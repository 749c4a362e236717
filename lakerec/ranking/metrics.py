"""Ranking metrics over a scored impressions DataFrame, computed in Spark (nothing is collected).

A scored frame has one row per impression: `user_id`, `click`, `conversion` and up to three
scores, `p_click`, `p_conversion` (given a click) and `p_ctcvr` (click and conversion). A
score column that is NULL/NaN on every row is a score the method does not give (its metrics
are None); one that is NULL/NaN on only some rows is an error, never silently skipped.

    ctr_auc      AUC of p_click against click, over every impression
    gauc         per-user AUC of p_click, weighted by the user's impressions, over users with
                 both a click and a non-click (rows without a user_id belong to no user)
    log_loss     mean -[y ln p + (1 - y) ln(1 - p)] of p_click, p clipped to [1e-7, 1 - 1e-7]
    calibration  mean p_click / observed click rate (1.0 = calibrated)
    cvr_auc      AUC of p_conversion against conversion, over clicked impressions
    ctcvr_auc    AUC of p_ctcvr against click-and-conversion, over every impression

AUC is the Mann-Whitney statistic: the share of (positive, negative) pairs the score orders
correctly, a tie counting half. Exact, from rows grouped by score: per distinct score, its
positives win against the negatives strictly below it and tie with the negatives at it. The
global AUC cuts the distinct scores into quantile ranges (approxQuantile: only the cut points
need be approximate), counts within each range with a window partitioned by range, and adds
the negatives of the lower ranges from the per-range totals (at most AUC_RANGES rows on the
driver); GAUC partitions the same window by user. Those per-range totals also give the ROC
curve's points for the plot.
"""

from __future__ import annotations

import math

from lakerec.errors import InputDataError

SCORES = ("p_click", "p_conversion", "p_ctcvr")
AUC_RANGES = 100  # quantile ranges of the global AUC (and points of the ROC curve)
EPSILON = 1e-7  # log loss clipping
DECILES = 10


def _valid(col: str):
    from pyspark.sql import functions as F

    return F.col(col).isNotNull() & ~F.isnan(F.col(col))


def _pair_wins(df, score: str, label: str, keys: list[str]):
    """Per key: positives, negatives and Mann-Whitney wins (ties half) of `score` on `label`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    groups = df.groupBy(*keys, score).agg(
        F.sum(F.col(label)).cast("double").alias("pos"),
        F.sum(1 - F.col(label)).cast("double").alias("neg"),
    )
    below = Window.partitionBy(*keys).orderBy(score).rowsBetween(Window.unboundedPreceding, -1)
    groups = groups.withColumn("neg_below", F.coalesce(F.sum("neg").over(below), F.lit(0.0)))
    return groups.groupBy(*keys).agg(
        F.sum("pos").alias("pos"), F.sum("neg").alias("neg"),
        F.sum(F.col("pos") * (F.col("neg_below") + 0.5 * F.col("neg"))).alias("wins"),
    )


AUC_PROBABILITIES = [i / AUC_RANGES for i in range(1, AUC_RANGES)]
QUANTILE_ERROR = 0.001  # approxQuantile's relative error


def quantile_cuts(df, scores: list[str]) -> dict[str, list[float]]:
    """The AUC_PROBABILITIES quantiles of each score column, in one pass (approxQuantile of several columns)."""
    return dict(zip(scores, df.approxQuantile(scores, AUC_PROBABILITIES, QUANTILE_ERROR))) if scores else {}


def auc(df, score: str, label: str, quantiles: list[float] | None = None) -> dict:
    """Exact AUC of `score` on the 0/1 `label` column, with the ROC curve's points.

    Args:
        quantiles: the score's AUC_PROBABILITIES quantiles on `df` (quantile_cuts), when the
            caller has them; else computed here.

    Returns:
        {"auc": float or None (one class only), "positives", "negatives",
         "roc": {"fpr": [...], "tpr": [...]}} (one point per quantile range, from the top).
    """
    from pyspark.sql import functions as F

    quantiles = quantile_cuts(df, [score])[score] if quantiles is None else quantiles
    cuts = sorted(set(quantiles))
    # Range r holds the scores above exactly r cut points: monotone in the score.
    ranged = df.select(score, label, (F.lit(0) if not cuts else sum(
        (F.col(score) > F.lit(c)).cast("int") for c in cuts)).alias("_range"))
    rows = sorted(_pair_wins(ranged, score, label, ["_range"]).collect(), key=lambda r: r["_range"])
    pos = sum(r["pos"] for r in rows)
    neg = sum(r["neg"] for r in rows)
    wins, neg_below = 0.0, 0.0
    for r in rows:
        wins += r["wins"] + r["pos"] * neg_below
        neg_below += r["neg"]
    fpr, tpr, tp, fp = [0.0], [0.0], 0.0, 0.0
    for r in reversed(rows):  # thresholds from the highest range down
        tp, fp = tp + r["pos"], fp + r["neg"]
        fpr.append(fp / neg if neg else float("nan"))
        tpr.append(tp / pos if pos else float("nan"))
    value = wins / (pos * neg) if pos and neg else None
    return {"auc": value, "positives": int(pos), "negatives": int(neg), "roc": {"fpr": fpr, "tpr": tpr}}


def gauc(df, score: str, label: str, user: str = "user_id") -> dict:
    """Impression-weighted mean of per-user AUC over users with both labels.

    Returns:
        {"gauc": float or None, "users": users with both labels, "all_users": users with a row}.
    """
    from pyspark.sql import functions as F

    per_user = _pair_wins(df.where(F.col(user).isNotNull()), score, label, [user])
    row = per_user.agg(
        F.count(F.lit(1)).alias("all_users"),
        F.sum(F.when((F.col("pos") > 0) & (F.col("neg") > 0), 1).otherwise(0)).alias("users"),
        F.sum(F.when((F.col("pos") > 0) & (F.col("neg") > 0),
                     (F.col("pos") + F.col("neg")) * F.col("wins") / (F.col("pos") * F.col("neg")))).alias("num"),
        F.sum(F.when((F.col("pos") > 0) & (F.col("neg") > 0), F.col("pos") + F.col("neg"))).alias("den"),
    ).first()
    value = row["num"] / row["den"] if row["den"] else None
    return {"gauc": value, "users": int(row["users"] or 0), "all_users": int(row["all_users"] or 0)}


def calibration_by_decile(df, score: str = "p_click", label: str = "click",
                          quantiles: list[float] | None = None) -> list[dict]:
    """Rows cut into deciles of the prediction: per decile its rows, mean prediction, observed rate.

    Args:
        quantiles: the score's AUC_PROBABILITIES quantiles (quantile_cuts), whose every tenth
            is a decile's cut, when the caller has them; else the deciles are computed here.
    """
    from pyspark.sql import functions as F

    step = AUC_RANGES // DECILES
    quantiles = (df.approxQuantile(score, [i / DECILES for i in range(1, DECILES)], QUANTILE_ERROR)
                 if quantiles is None else quantiles[step - 1::step])
    cuts = sorted(set(quantiles))
    decile = F.lit(0) if not cuts else sum((F.col(score) > F.lit(c)).cast("int") for c in cuts)
    rows = (df.groupBy(decile.alias("decile"))
            .agg(F.count(F.lit(1)).alias("rows"), F.avg(score).alias("mean_predicted"),
                 F.avg(F.col(label).cast("double")).alias("observed"))
            .orderBy("decile").collect())
    return [{"decile": int(r["decile"]) + 1, "rows": int(r["rows"]), "mean_predicted": float(r["mean_predicted"]),
             "observed": float(r["observed"])} for r in rows]


def _present(df, cols: list[str], *extra) -> tuple[dict[str, bool], object]:
    """Which score columns the frame gives, with its counts and the `extra` aggregates, in one pass.

    Returns:
        ({column: given}, the aggregated row: rows, clicks, conversions and the `extra` columns).

    Raises:
        InputDataError: a score is NULL or NaN on only some of the rows it must score.
    """
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("rows"), F.sum("click").alias("clicks"), F.sum("ctcvr").alias("conversions")]
    for col in cols:
        aggs.append(F.sum(_valid(col).cast("int")).alias(f"valid:{col}"))
        aggs.append(F.sum((_valid(col) & (F.col("click") == 1)).cast("int")).alias(f"clicked:{col}"))
    row = df.agg(*aggs, *extra).first()
    rows, clicks = int(row["rows"] or 0), int(row["clicks"] or 0)
    out = {}
    for col in cols:
        valid = int(row[f"valid:{col}"] or 0)
        # p_conversion is given a click: it need only be there on clicked rows.
        have, need = (int(row[f"clicked:{col}"] or 0), clicks) if col == "p_conversion" else (valid, rows)
        if have and have < need:
            raise InputDataError(f"{col} is NULL or NaN on {need - have:,} of {need:,} rows: a scorer must score "
                                 "every row it is given")
        out[col] = have > 0
    return out, row


def ranking_metrics(scored, *, probability: bool = True, deciles: bool = True) -> dict:
    """Every metric of the module doc for one scored frame.

    Few passes over the frame: one for the counts, the scores' presence, log loss and
    calibration; one for the quantiles of p_click and p_ctcvr (their AUC ranges and the
    deciles); then one per AUC, the GAUC and the deciles (p_conversion, over clicked rows, has
    its own quantiles).

    Args:
        scored: user_id, click, conversion and the score columns the method gives (SCORES;
            absent columns count as not given).
        probability: the scores are probabilities (log loss and calibration make sense);
            False for a raw score such as the two-tower dot product.
        deciles: also compute calibration by decile (for the plot).

    Returns:
        {"rows", "clicks", "conversions", "ctr_auc", "gauc", "gauc_users", "log_loss",
         "calibration", "cvr_auc", "ctcvr_auc", "roc" (of p_click), "deciles"}; a metric the
        scores cannot give is None.
    """
    from pyspark.sql import functions as F

    cols = [c for c in SCORES if c in scored.columns]
    base = scored.select("user_id", F.col("click").cast("int").alias("click"),
                         (F.col("click") * F.col("conversion")).cast("int").alias("ctcvr"),
                         F.col("conversion").cast("int").alias("conversion"),
                         *[F.col(c).cast("double").alias(c) for c in cols])
    extra = []
    if "p_click" in cols and probability:  # read only when p_click is given (then it is on every row)
        p = F.least(F.greatest(F.col("p_click"), F.lit(EPSILON)), F.lit(1 - EPSILON))
        extra = [F.avg(-(F.col("click") * F.log(p) + (1 - F.col("click")) * F.log(1 - p))).alias("log_loss"),
                 F.avg("p_click").alias("mean_p"), F.avg(F.col("click").cast("double")).alias("rate")]
    given, counts = _present(base, cols, *extra)
    out: dict = {"rows": int(counts["rows"]), "clicks": int(counts["clicks"] or 0),
                 "conversions": int(counts["conversions"] or 0), "ctr_auc": None, "gauc": None, "gauc_users": 0,
                 "log_loss": None, "calibration": None, "cvr_auc": None, "ctcvr_auc": None, "roc": None,
                 "deciles": None}
    if out["rows"] == 0:
        raise InputDataError("no scored rows: nothing to evaluate")
    quantiles = quantile_cuts(base, [c for c in ("p_click", "p_ctcvr") if given.get(c)])
    if given.get("p_click"):
        a = auc(base, "p_click", "click", quantiles["p_click"])
        g = gauc(base, "p_click", "click")
        out.update(ctr_auc=a["auc"], roc=a["roc"], gauc=g["gauc"], gauc_users=g["users"])
        if probability:
            out["log_loss"] = float(counts["log_loss"])
            out["calibration"] = float(counts["mean_p"] / counts["rate"]) if counts["rate"] else None
            if deciles:
                out["deciles"] = calibration_by_decile(base, "p_click", "click", quantiles["p_click"])
    if given.get("p_conversion"):
        out["cvr_auc"] = auc(base.where(F.col("click") == 1), "p_conversion", "conversion")["auc"]
    if given.get("p_ctcvr"):
        out["ctcvr_auc"] = auc(base, "p_ctcvr", "ctcvr", quantiles["p_ctcvr"])["auc"]
    return out


def finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
