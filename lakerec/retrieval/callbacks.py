"""Keras callbacks of a training run: per-epoch monitoring and per-epoch MLflow metrics."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from lakerec.retrieval import metrics as M
from lakerec.retrieval.catalogue_ranks import ModelRanker, candidate_matrix


class Monitor(tf.keras.callbacks.Callback):
    """After each epoch, recall@K and top-K accuracy of the current towers on a test sample.

    For the training curves only: nothing is selected or stopped on these numbers (the
    evaluation at the end uses all test rows). The values are added to the epoch's logs,
    so callbacks after this one (MLflow, the history) see them.

    Args:
        items: catalogue columns (item_index + the candidate tower's features).
        num_items: rows of the candidate matrix.
        sample: in-memory test rows (query_key, item_id, item_index, the query columns).
        query_columns: what the query tower reads.
        k: the cut-off.
    """

    def __init__(self, items: dict[str, np.ndarray], num_items: int, sample: dict[str, np.ndarray] | None,
                 query_columns: list[str], k: int):
        super().__init__()
        self.items, self.num_items, self.sample = items, num_items, sample
        self.query_columns, self.k = query_columns, k

    def on_epoch_end(self, epoch, logs=None):
        if self.sample is None or logs is None:
            return
        cands = candidate_matrix(self.model.candidate_tower, self.items, self.num_items)
        queries = self.model.query_tower({c: tf.constant(self.sample[c]) for c in self.query_columns})
        ranks = ModelRanker(cands).ranks(queries, self.sample["item_index"])
        q, r = M.relevant_pairs(self.sample["query_key"], self.sample["item_id"], ranks)
        logs[f"monitor/recall_at_{self.k}"] = M.recall_at_k(q, r, self.k)
        logs[f"monitor/top{self.k}_accuracy"] = M.top_k_accuracy(ranks, self.k)


class MlflowEpochMetrics(tf.keras.callbacks.Callback):
    """Logs the epoch's mean loss (as `loss`) and monitoring metrics to the active run, step = epoch."""

    def on_epoch_end(self, epoch, logs=None):
        import mlflow

        values = {}
        for key, value in (logs or {}).items():
            if key == "mean_loss":
                values["loss"] = value
            elif key == "regularization_loss" or key.startswith("monitor/"):
                values[key] = value
        values = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        if values:
            mlflow.log_metrics(values, step=epoch + 1)


class StopAfterEpoch(tf.keras.callbacks.Callback):
    """Raises after the given epoch (1-based) ends: simulates a crash (tests, demos)."""

    class Interrupted(RuntimeError):
        pass

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epoch:
            raise self.Interrupted(f"interrupted after epoch {epoch + 1}")
