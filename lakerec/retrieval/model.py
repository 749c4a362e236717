"""The two-tower retrieval model: towers passed in, in-batch softmax with corrections.

Every positive (user, item) row of a batch is scored against every item of the batch.
Three switches, each from the config:
    logQ correction        logit_ij -= log p_j, p_j the item's share of training rows:
                           popular items are over-represented as in-batch negatives, and
                           this removes that bias (Yi et al. 2019, "sampling-bias-corrected").
    remove accidental hits an in-batch "negative" that is the row's own item is masked.
    temperature            logits / t before the softmax.

Popularity-aware scoring (train.item_bias, train.popularity_prior): with these the towers
are wrapped so that the score stays one dot product, q' . c' = q . c + b_j (+ beta log p_j):
    query      q' = [q, 1]
    candidate  c' = [c, b_j + beta * log p_j]   (the prior only outside training)
so the exported candidate matrix holds the bias as one more column and exact retrieval,
evaluation and serving need no change. Why: the dot product alone has no cheap way to say
"this item is popular for everyone"; on sparse data (about one click per user) the id
embeddings learn little more than that, and the plain model loses to most-popular.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from lakerec.config import TrainConf
from lakerec.retrieval.features import FeatureSpec
from lakerec.retrieval.towers import build_towers

ITEM_KEY = "item_index"


def log_popularity(counts: np.ndarray) -> np.ndarray:
    """log of each item index's add-one smoothed share of the training clicks (finite for unseen items)."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.log((counts + 1.0) / (counts.sum() + counts.size)).astype(np.float32)


class QueryWithBiasSlot(tf.keras.Model):
    """q' = [q, 1]: the query tower's output with a constant last coordinate."""

    def __init__(self, tower: tf.keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.tower = tower

    def call(self, features, training=False):
        q = self.tower(features, training=training)
        return tf.concat([q, tf.ones_like(q[:, :1])], axis=1)


class CandidateWithBias(tf.keras.Model):
    """c' = [c, b_j + prior_j]: a learned bias per item index (zero-initialised) and a fixed prior.

    Args:
        tower: the candidate tower.
        num_items: item index vocabulary size (index 0 = OOV).
        learned: learn the bias b_j (False: b_j = 0).
        prior: [num_items] added outside training only (scoring, export), or None.
    """

    def __init__(self, tower: tf.keras.Model, num_items: int, learned: bool = True,
                 prior: np.ndarray | None = None, **kwargs):
        super().__init__(**kwargs)
        self.tower = tower
        self.num_items = int(num_items)
        self.bias = tf.keras.layers.Embedding(self.num_items, 1, embeddings_initializer="zeros",
                                              name="item_bias") if learned else None
        self._prior = None if prior is None else tf.constant(np.asarray(prior, np.float32))

    def call(self, features, training=False):
        c = self.tower(features, training=training)
        ids = tf.cast(features[ITEM_KEY], tf.int32)
        ids = tf.where((ids >= 0) & (ids < self.num_items), ids, tf.zeros_like(ids))
        b = self.bias(ids) if self.bias is not None else tf.zeros_like(c[:, :1])
        if self._prior is not None and not training:
            b = b + tf.expand_dims(tf.gather(self._prior, ids), -1)
        return tf.concat([c, b], axis=1)


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


def build_model(spec: FeatureSpec, tc: TrainConf, probabilities: np.ndarray | None,
                popularity: np.ndarray | None = None) -> TwoTowerModel:
    """A compiled TwoTowerModel for a spec and the training settings.

    Args:
        spec: which columns each tower reads, and the vocabulary sizes.
        tc: the training settings (dimension, hidden units, loss switches, optimizer).
        probabilities: each item index's share of the training rows; used only with
            `tc.logq_correction`.
        popularity: training clicks per item index, for `tc.popularity_prior` (default:
            derived from `probabilities`).

    Returns:
        The model, compiled with `tc`'s optimizer.
    """
    query, candidate = build_towers(spec, tc.embedding_dim, tc.hidden_units)
    if tc.item_bias or tc.popularity_prior:
        prior = None
        if tc.popularity_prior:
            if popularity is None:
                if probabilities is None:
                    raise ValueError("train.popularity_prior needs the items' training counts")
                popularity = np.asarray(probabilities, np.float64) * 1e6
            prior = tc.popularity_prior * log_popularity(popularity)
        query = QueryWithBiasSlot(query, name="scored_query_tower")
        candidate = CandidateWithBias(candidate, spec.num_items, learned=tc.item_bias, prior=prior,
                                      name="scored_candidate_tower")
    model = TwoTowerModel(
        query, candidate,
        item_probabilities=probabilities if tc.logq_correction else None,
        temperature=tc.temperature,
        remove_accidental_hits=tc.remove_accidental_hits,
    )
    model.compile(optimizer=make_optimizer(tc.optimizer, tc.learning_rate))
    return model
