"""The ranker's per-epoch validation: AUC and log loss on the slice carved from train_impressions."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lakerec.ranking.features import LABELS
from lakerec.ranking.model import P_CLICK, P_CONVERSION, P_CTCVR

PREFIX = "validation/"


def score_rows(model, rows: dict[str, np.ndarray], columns, batch_size: int = 8192) -> dict[str, np.ndarray]:
    """The in-memory model's scores for rows held as numpy arrays (scoring columns only)."""
    parts: dict[str, list] = {}
    n = len(rows[columns[0]])
    for start in range(0, n, batch_size):
        out = model({c: tf.constant(rows[c][start:start + batch_size]) for c in columns}, training=False)
        for k, v in out.items():
            parts.setdefault(k, []).append(v.numpy().astype(np.float64))
    return {k: np.concatenate(v) for k, v in parts.items()}


def validation_metrics(scores: dict[str, np.ndarray], click: np.ndarray, conversion: np.ndarray) -> dict[str, float]:
    """ctr_auc, ctr_log_loss; with pCVR also ctcvr_auc, ctcvr_log_loss and cvr_auc (clicked rows).

    A metric whose labels are all one class is left out (AUC is undefined there).
    """
    from sklearn.metrics import log_loss, roc_auc_score

    def both(y, p, name):
        out = {}
        if 0 < y.sum() < len(y):
            out[f"{name}_auc"] = float(roc_auc_score(y, p))
        if len(y):
            out[f"{name}_log_loss"] = float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
        return out

    click = np.asarray(click).astype(np.int64)
    values = both(click, scores[P_CLICK], "ctr")
    if P_CONVERSION in scores:
        ctcvr = click * np.asarray(conversion).astype(np.int64)
        values.update(both(ctcvr, scores[P_CTCVR], "ctcvr"))
        clicked = click == 1
        cvr = both(ctcvr[clicked], scores[P_CONVERSION][clicked], "cvr")
        values.update({k: v for k, v in cvr.items() if k.endswith("_auc")})
    return values


class RankValidation(tf.keras.callbacks.Callback):
    """After each epoch, the metrics of validation_metrics on in-memory validation rows, added to the logs.

    Attributes:
        by_epoch: each epoch's metrics, keyed by the 1-based epoch.

    Args:
        rows: the validation rows (the scoring columns and the labels) as numpy arrays.
        columns: what the model reads.
    """

    def __init__(self, rows: dict[str, np.ndarray], columns):
        super().__init__()
        self.rows, self.columns = rows, tuple(columns)
        self.by_epoch: dict[int, dict[str, float]] = {}  # 1-based epoch -> its metrics (with PREFIX)

    def on_epoch_end(self, epoch, logs=None):
        scores = score_rows(self.model, self.rows, self.columns)
        metrics = validation_metrics(scores, self.rows[LABELS[0]], self.rows[LABELS[1]])
        self.by_epoch[epoch + 1] = {PREFIX + k: v for k, v in metrics.items()}
        if logs is not None:
            logs.update(self.by_epoch[epoch + 1])
