"""Ranking metrics (lakerec.ranking.metrics) on hand-made rows, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from lakerec.errors import InputDataError
from lakerec.ranking import metrics as M

SCHEMA = "user_id bigint, click int, conversion int, p_click double, p_conversion double, p_ctcvr double"
NAN = float("nan")

# (user, click, score): user 1 has tied scores across labels, user 2 one pair ranked wrong,
# user 3 only clicks (skipped by GAUC), one row without a user (in the AUC, in no user's GAUC).
ROWS = [
    (1, 1, 0.9), (1, 0, 0.8), (1, 1, 0.8), (1, 0, 0.3), (1, 1, 0.3),
    (2, 1, 0.2), (2, 0, 0.6),
    (3, 1, 0.5), (3, 1, 0.4),
    (None, 0, 0.1),
]


def frame(spark, rows=ROWS, conversion=None, p_conversion=None, p_ctcvr=None):
    conversion = conversion or [0] * len(rows)
    p_conversion = p_conversion or [NAN] * len(rows)
    p_ctcvr = p_ctcvr or [NAN] * len(rows)
    data = [(u, c, v, float(s), pc, pt) for (u, c, s), v, pc, pt in zip(rows, conversion, p_conversion, p_ctcvr)]
    return spark.createDataFrame(data, SCHEMA)


def test_auc_counts_ties_half_across_quantile_ranges(spark):
    # Positives 0.9 0.8 0.3 0.2 0.5 0.4 against negatives 0.8 0.3 0.6 0.1:
    # wins 4 + 3.5 + 1.5 + 1 + 2 + 2 = 14 of 6 x 4 pairs.
    result = M.auc(frame(spark), "p_click", "click")
    assert result["auc"] == pytest.approx(14 / 24)
    assert (result["positives"], result["negatives"]) == (6, 4)
    roc = result["roc"]
    assert roc["fpr"][0] == roc["tpr"][0] == 0.0 and roc["fpr"][-1] == roc["tpr"][-1] == 1.0
    assert all(b >= a for a, b in zip(roc["fpr"], roc["fpr"][1:]))


def test_auc_of_one_class_is_none(spark):
    only_clicks = frame(spark, [(1, 1, 0.3), (2, 1, 0.4)])
    assert M.auc(only_clicks, "p_click", "click")["auc"] is None


def test_gauc_weights_users_by_impressions_and_skips_one_label_users(spark):
    # User 1: 4 of 6 pairs, 5 impressions; user 2: 0 of 1 pair, 2 impressions; user 3 and the
    # row without a user are left out: (5 x 4/6 + 2 x 0) / 7.
    result = M.gauc(frame(spark), "p_click", "click")
    assert result["gauc"] == pytest.approx((5 * 4 / 6) / 7)
    assert (result["users"], result["all_users"]) == (2, 3)


def test_log_loss_calibration_and_the_conversion_aucs(spark):
    rows = [(1, 1, 0.8), (1, 0, 0.4), (2, 1, 0.6), (2, 0, 0.2)]
    scored = frame(spark, rows, conversion=[1, 0, 0, 0], p_conversion=[0.7, NAN, 0.2, NAN],
                   p_ctcvr=[0.56, 0.01, 0.12, 0.3])
    out = M.ranking_metrics(scored)
    assert out["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.6) + math.log(0.8)) / 4)
    assert out["calibration"] == pytest.approx(0.5 / 0.5)
    assert out["ctr_auc"] == pytest.approx(1.0)  # 0.8, 0.6 above 0.4, 0.2
    assert out["gauc"] == pytest.approx(1.0) and out["gauc_users"] == 2
    # CVR over the two clicked rows only (the NaN of unclicked rows is never read): 0.7 > 0.2.
    assert out["cvr_auc"] == pytest.approx(1.0)
    # CTCVR: one positive (0.56) above all three negatives.
    assert out["ctcvr_auc"] == pytest.approx(1.0)
    assert (out["rows"], out["clicks"], out["conversions"]) == (4, 2, 1)


def test_log_loss_clips_certain_wrong_predictions(spark):
    out = M.ranking_metrics(frame(spark, [(1, 1, 0.0), (1, 0, 0.5)]))
    assert out["log_loss"] == pytest.approx((-math.log(M.EPSILON) - math.log(0.5)) / 2)


def test_scores_a_method_does_not_give_are_none_and_raw_scores_skip_probability_metrics(spark):
    out = M.ranking_metrics(frame(spark), probability=False)
    assert out["ctr_auc"] == pytest.approx(14 / 24)
    assert out["log_loss"] is None and out["calibration"] is None and out["deciles"] is None
    assert out["cvr_auc"] is None and out["ctcvr_auc"] is None


def test_a_score_missing_on_some_rows_is_an_error(spark):
    scored = frame(spark, [(1, 1, 0.8), (1, 0, 0.4)], p_ctcvr=[0.3, NAN])
    with pytest.raises(InputDataError, match="p_ctcvr is NULL or NaN on 1 of 2 rows"):
        M.ranking_metrics(scored)


def test_calibration_by_decile_one_row_per_decile(spark):
    rows = [(1, int(i % 2 == 0), (i + 0.5) / 10) for i in range(10)]
    deciles = M.calibration_by_decile(frame(spark, rows))
    assert [d["decile"] for d in deciles] == list(range(1, 11))
    assert [d["rows"] for d in deciles] == [1] * 10
    assert [d["mean_predicted"] for d in deciles] == pytest.approx([(i + 0.5) / 10 for i in range(10)])
    assert [d["observed"] for d in deciles] == [1.0, 0.0] * 5
    # ranking_metrics cuts the deciles from the quantiles it takes for the AUC (every tenth of
    # 99): on 100 distinct scores, a cut one quantile off would move a row to the next decile.
    many = frame(spark, [(1, int(i % 3 == 0), (i + 0.5) / 100) for i in range(100)])
    assert M.ranking_metrics(many)["deciles"] == M.calibration_by_decile(many)
    assert [d["rows"] for d in M.calibration_by_decile(many)] == [10] * 10
