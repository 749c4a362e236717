"""Keras callbacks of a training run: per-epoch monitoring, validation, early stopping, MLflow metrics."""

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


class Validation(tf.keras.callbacks.Callback):
    """After each epoch, recall@K, NDCG@K and top-K accuracy on the validation slice carved from train.

    What early stopping and the sweep read (`validation/recall_at_100`, ...); the test split
    is never involved. Added to the epoch's logs for the callbacks after this one.

    Args:
        items, num_items, query_columns: as for Monitor.
        rows: the validation rows in memory (query_key, item_id, item_index, the query columns).
        ks: the cut-offs.
    """

    PREFIX = "validation/"

    def __init__(self, items: dict[str, np.ndarray], num_items: int, rows: dict[str, np.ndarray] | None,
                 query_columns: list[str], ks):
        super().__init__()
        self.items, self.num_items, self.rows = items, num_items, rows
        self.query_columns, self.ks = query_columns, tuple(ks)

    def scores(self, model) -> dict[str, float]:
        cands = candidate_matrix(model.candidate_tower, self.items, self.num_items)
        queries = model.query_tower({c: tf.constant(self.rows[c]) for c in self.query_columns})
        ranks = ModelRanker(cands).ranks(queries, self.rows["item_index"])
        return logged_names(M.all_metrics(self.rows["query_key"], self.rows["item_id"], ranks, self.ks))

    def on_epoch_end(self, epoch, logs=None):
        if self.rows is None or logs is None:
            return
        logs.update(self.scores(self.model))


def logged_names(values: dict[str, float], prefix: str = Validation.PREFIX) -> dict[str, float]:
    """Metrics as logged: `recall@100` -> `validation/recall_at_100` (MLflow names take no `@`)."""
    return {prefix + k.replace("@", "_at_"): v for k, v in values.items()}


class BestEpoch(tf.keras.callbacks.Callback):
    """Early stopping on a validation metric (higher is better), keeping the best epoch's weights.

    Stops after `patience` epochs without improvement (patience 0: never stops early) and,
    when training ends, restores the weights of the best epoch seen in this fit.

    Attributes:
        best, best_epoch: the best value and its epoch (1-based); None before the first.
        stopped_epoch: the epoch after which it stopped early (1-based), or None.
    """

    def __init__(self, key: str, patience: int):
        super().__init__()
        self.key, self.patience = key, patience
        self.best = self.best_epoch = self.stopped_epoch = None
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.key)
        if value is None or not math.isfinite(float(value)):
            return
        # A tie counts as better: on a small slice equal values are common, and the later
        # epoch has had more training.
        if self.best is None or value >= self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            self._weights = self.model.get_weights()
        elif self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)


class MlflowEpochMetrics(tf.keras.callbacks.Callback):
    """Logs the epoch's mean loss (as `loss`) and monitoring metrics to the active run, step = epoch.

    Args:
        keys: more epoch-log keys to log under their own names (the ranker's per-head losses).
    """

    def __init__(self, keys: tuple[str, ...] = ()):
        super().__init__()
        self.keys = tuple(keys)

    def on_epoch_end(self, epoch, logs=None):
        import mlflow

        values = {}
        for key, value in (logs or {}).items():
            if key == "mean_loss":
                values["loss"] = value
            elif key in self.keys or key == "regularization_loss" or key.startswith(("monitor/", Validation.PREFIX)):
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
