"""The two-tower retrieval model: towers passed in, in-batch softmax with corrections.

Every positive (user, item) row of a batch is scored against every item of the batch.
Three switches, each from the config:
    logQ correction        logit_ij -= log p_j, p_j the item's share of training rows:
                           popular items are over-represented as in-batch negatives, and
                           this removes that bias (Yi et al. 2019, "sampling-bias-corrected").
    remove accidental hits an in-batch "negative" that is the row's own item is masked.
    temperature            logits / t before the softmax.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from lakerec.config import TrainConf
from lakerec.retrieval.features import FeatureSpec
from lakerec.retrieval.towers import build_towers

ITEM_KEY = "item_index"


def item_probabilities(counts: np.ndarray) -> np.ndarray:
    """Sampling probability of each item index as an in-batch candidate: count / total."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("item counts are all zero: there is nothing to train on")
    return (counts / total).astype(np.float32)


class TwoTowerModel(tfrs.Model):
    """A TFRS retrieval model over a query tower and a candidate tower.

    Args:
        query_tower: feature dict -> [batch, dim] (reads the user columns).
        candidate_tower: feature dict -> [batch, dim] (reads the item columns).
        item_probabilities: [num_items] sampling probability per item index, for the logQ
            correction; None switches the correction off.
        temperature: softmax temperature (1.0 = none).
        remove_accidental_hits: mask in-batch negatives that equal the row's positive.
    """

    def __init__(
        self,
        query_tower: tf.keras.Model,
        candidate_tower: tf.keras.Model,
        item_probabilities: np.ndarray | None = None,
        temperature: float = 1.0,
        remove_accidental_hits: bool = False,
    ):
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self._item_probabilities = (
            None if item_probabilities is None else tf.constant(item_probabilities, dtype=tf.float32)
        )
        self.remove_accidental_hits = remove_accidental_hits
        self.mean_loss = tf.keras.metrics.Mean(name="mean_loss")
        self.task = tfrs.tasks.Retrieval(
            temperature=None if temperature == 1.0 else float(temperature),
            remove_accidental_hits=remove_accidental_hits,
            loss_metrics=[self.mean_loss],
        )

    def candidate_sampling_probability(self, item_ids: tf.Tensor) -> tf.Tensor | None:
        if self._item_probabilities is None:
            return None
        return tf.gather(self._item_probabilities, tf.cast(item_ids, tf.int32))

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        """Summed in-batch softmax cross-entropy of the batch (TFRS Retrieval's loss).

        An optional `sample_weight` feature weights each row's term.
        """
        query = self.query_tower(features, training=training)
        candidate = self.candidate_tower(features, training=training)
        item_ids = features[ITEM_KEY]
        return self.task(
            query,
            candidate,
            sample_weight=features.get("sample_weight"),
            candidate_sampling_probability=self.candidate_sampling_probability(item_ids),
            candidate_ids=item_ids if self.remove_accidental_hits else None,
            compute_metrics=False,
        )


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """adagrad | adam | sgd, by name (the config's `train.optimizer`)."""
    name = name.lower()
    if name == "adagrad":
        return tf.keras.optimizers.Adagrad(learning_rate)
    if name == "adam":
        return tf.keras.optimizers.Adam(learning_rate)
    if name == "sgd":
        return tf.keras.optimizers.SGD(learning_rate)
    from lakerec.errors import ConfigError

    raise ConfigError(f"train.optimizer must be adagrad, adam or sgd, got {name!r}")


def build_model(spec: FeatureSpec, tc: TrainConf, probabilities: np.ndarray | None) -> TwoTowerModel:
    """A compiled TwoTowerModel for a spec and the training settings.

    Args:
        spec: which columns each tower reads, and the vocabulary sizes.
        tc: the training settings (dimension, hidden units, loss switches, optimizer).
        probabilities: each item index's share of the training rows; used only with
            `tc.logq_correction`.

    Returns:
        The model, compiled with `tc`'s optimizer.
    """
    query, candidate = build_towers(spec, tc.embedding_dim, tc.hidden_units)
    model = TwoTowerModel(
        query, candidate,
        item_probabilities=probabilities if tc.logq_correction else None,
        temperature=tc.temperature,
        remove_accidental_hits=tc.remove_accidental_hits,
    )
    model.compile(optimizer=make_optimizer(tc.optimizer, tc.learning_rate))
    return model
