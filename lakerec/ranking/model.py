"""The ranking model (TFRS): field embeddings, a DCN-v2 cross network beside a deep MLP, pCTR and pCVR heads.

    model = build_model(spec, cfg.rank)          # compiled; loop.fit trains it
    model(features)                              # {"p_click": [B]} (+ "p_conversion", "p_ctcvr" with esmm)

Inputs (lakerec.ranking.features): an embedding per categorical field (row 0 = missing /
OOV embeds to zeros), a weighted mean of embeddings for a multi-valued field (the weights
are its `_weights` array), and the weights as dense inputs: a single-valued cross field's
`<name>_weight`, and log(1 + total weight) of a weighted multi-valued field. Their
concatenation x0 feeds a stack of `tfrs.layers.dcn.Cross` layers and, beside it, a deep
MLP (the parallel DCN-v2 structure); both outputs, concatenated, feed the heads.

Objectives (`rank.objective`):
    ctr   loss = BCE(click, pCTR)
    esmm  loss = BCE(click, pCTR) + BCE(click * conversion, pCTR * pCVR), over every
          impression (ESMM, SIGIR 2018): pCVR = P(conversion | click) is never fitted on
          the clicked rows alone, so it is trained over the space it is scored on. One
          `tfrs.tasks.Ranking` per head; each term is the batch mean: per-example losses
          averaged by `tf.nn.compute_average_loss`, over the global batch when N workers
          each hold batch / N rows (lakerec.retrieval.distributed sums their gradients),
          which a Keras loss with a mean reduction refuses to do under a tf.distribute strategy.

Position bias: the observed click depends on where the item was shown. A shallow position
tower (an embedding of `position_index` to one logit, zero-initialised, L2-penalised by
`rank.position_l2`) is added to the CTR logit in the training loss only (as in "Recommending
What Video to Watch Next", RecSys 2019, and PAL). The loss sees
sigmoid(f(x) + b(position)); scoring returns sigmoid(f(x)), the click probability with the
position effect taken out, and never reads a position input. The L2 penalty pins the
logits' shared offset to the CTR head's bias rather than the position tower, so f(x)
stays calibrated for a typical position. The conversion head never sees position: given a
click, where the item was shown is taken not to matter.
"""

from __future__ import annotations

from typing import get_args

import tensorflow as tf
import tensorflow_recommenders as tfrs

from lakerec.config import RankConf, field_type
from lakerec.errors import ConfigError
from lakerec.ranking.features import LABELS, RankSpec, position_field
from lakerec.retrieval.model import make_optimizer
from lakerec.retrieval.towers import MaskedEmbedding, WeightedMeanEmbedding

OBJECTIVES = get_args(field_type("rank.objective"))  # ctr | esmm
CLICK, CONVERSION = LABELS
P_CLICK, P_CONVERSION, P_CTCVR = "p_click", "p_conversion", "p_ctcvr"


class FieldEmbeddings(tf.keras.layers.Layer):
    """x0: every scoring field embedded (weighted means for multi-valued ones), plus the weights as dense inputs."""

    def __init__(self, spec: RankSpec, dim: int, **kwargs):
        super().__init__(**kwargs)
        fields = spec.fields()
        self.single = [(f.index_column, f.weight_column) for f in fields if not f.multi]
        self.multi = [(f.ids_column, f.weights_column, f.weighted) for f in fields if f.multi]
        self.single_layers = [MaskedEmbedding(spec.vocab_sizes[f.name], dim, name=f"{f.name}_embedding")
                              for f in fields if not f.multi]
        self.multi_layers = [WeightedMeanEmbedding(spec.vocab_sizes[f.name], dim, name=f"{f.name}_embedding")
                             for f in fields if f.multi]
        self.embedded_width = dim * len(fields)  # x0's first columns: the embeddings; then the dense weights

    def call(self, features):
        parts, dense = [], []
        for (index, weight), layer in zip(self.single, self.single_layers):
            parts.append(layer(features[index]))
            if weight:
                dense.append(tf.cast(tf.reshape(features[weight], [-1, 1]), tf.float32))
        for (ids, weights, weighted), layer in zip(self.multi, self.multi_layers):
            parts.append(layer(features[ids], features[weights]))
            if weighted:
                w = tf.cast(features[weights], tf.float32) * tf.cast(tf.cast(features[ids], tf.int32) > 0, tf.float32)
                dense.append(tf.math.log1p(tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 0.0)))
        return tf.concat(parts + dense, axis=1)


class PositionTower(tf.keras.layers.Layer):
    """position_index -> one logit (index 0 = missing -> 0); zero-initialised, L2-penalised."""

    def __init__(self, vocab_size: int, l2: float, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.embedding = tf.keras.layers.Embedding(
            self.vocab_size, 1, embeddings_initializer="zeros",
            embeddings_regularizer=tf.keras.regularizers.l2(l2) if l2 else None, name="position_logit")

    def call(self, position_index):
        ids = tf.reshape(tf.cast(position_index, tf.int32), [-1])
        ids = tf.where((ids > 0) & (ids < self.vocab_size), ids, tf.zeros_like(ids))
        return self.embedding(ids) * tf.expand_dims(tf.cast(ids > 0, tf.float32), -1)


class RankingModel(tfrs.Model):
    """pCTR (and, with esmm, pCVR) over the impressions columns; see the module docstring.

    Args:
        spec: the inputs and their vocabulary sizes.
        objective: "ctr" or "esmm".
        embedding_dim: size of every field's embedding.
        cross_layers: DCN-v2 cross layers (0: none).
        deep_layers: units of the deep MLP's layers (empty: none).
        position_bias: learn the position tower (training loss only).
        position_l2: L2 penalty on the position logits.
        embedding_l2: L2 penalty on the embeddings a training batch looks up (the mean over
            its rows of their squared norms): only the rows a batch touches, so its cost does
            not grow with the vocabularies.
    """

    def __init__(self, spec: RankSpec, objective: str = "esmm", embedding_dim: int = 8, cross_layers: int = 2,
                 deep_layers: tuple[int, ...] = (128, 64), position_bias: bool = True, position_l2: float = 1e-3,
                 embedding_l2: float = 0.0):
        super().__init__()
        self.embedding_l2 = float(embedding_l2)
        if objective not in OBJECTIVES:
            raise ConfigError(f"rank.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.objective = objective
        self.inputs_layer = FieldEmbeddings(spec, embedding_dim, name="field_embeddings")
        self.cross = [tfrs.layers.dcn.Cross(kernel_initializer="glorot_uniform", name=f"cross_{i}")
                      for i in range(cross_layers)]
        self.deep = ([tf.keras.layers.Dense(u, activation="relu", name=f"deep_{i}") for i, u in enumerate(deep_layers)])
        self.ctr_head = tf.keras.layers.Dense(1, name="ctr_logit")
        self.cvr_head = tf.keras.layers.Dense(1, name="cvr_logit") if objective == "esmm" else None
        pos = position_field()
        self.position_column = pos.index_column
        # tfrs.Model adds the penalty to every replica's loss and the replicas' gradients are
        # summed: each replica takes its share (as tf.nn.scale_regularization_loss would).
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.position_tower = PositionTower(spec.vocab_sizes[pos.name], position_l2 / replicas,
                                            name="position_tower") if position_bias else None
        def bce(name):  # per example: task_loss averages over the (global) batch
            return tf.keras.losses.BinaryCrossentropy(reduction=tf.keras.losses.Reduction.NONE, name=name)

        self.ctr_task = tfrs.tasks.Ranking(loss=bce("ctr_bce"))
        self.ctcvr_task = tfrs.tasks.Ranking(loss=bce("ctcvr_bce")) if objective == "esmm" else None
        self.mean_loss = tf.keras.metrics.Mean(name="mean_loss")
        self.ctr_loss = tf.keras.metrics.Mean(name="ctr_loss")
        self.ctcvr_loss = tf.keras.metrics.Mean(name="ctcvr_loss") if objective == "esmm" else None

    def logits(self, features, training: bool = False) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(CTR logit [B, 1] without position, CVR logit [B, 1] or None with ctr)."""
        return self._logits(self.inputs_layer(features), training)

    def _logits(self, x0, training: bool):
        parts = []
        if self.cross:
            x = x0
            for layer in self.cross:
                x = layer(x0, x)
            parts.append(x)
        if self.deep:
            h = x0
            for layer in self.deep:
                h = layer(h, training=training)
            parts.append(h)
        hidden = tf.concat(parts, axis=1) if len(parts) > 1 else (parts[0] if parts else x0)
        return self.ctr_head(hidden), (self.cvr_head(hidden) if self.cvr_head is not None else None)

    def call(self, features, training=False):
        """Scores (position-free): p_click [B], and with esmm p_conversion (given a click) and p_ctcvr."""
        ctr, cvr = self.logits(features, training=training)
        out = {P_CLICK: tf.sigmoid(ctr)[:, 0]}
        if cvr is not None:
            out[P_CONVERSION] = tf.sigmoid(cvr)[:, 0]
            out[P_CTCVR] = out[P_CLICK] * out[P_CONVERSION]
        return out

    def build_from_batch(self, batch) -> None:
        """Create every variable from one batch (before a checkpoint restore)."""
        self(batch)
        if self.position_tower is not None:
            self.position_tower(batch[self.position_column])

    def task_loss(self, click: tf.Tensor, conversion: tf.Tensor, p_ctr: tf.Tensor,
                  p_cvr: tf.Tensor | None = None) -> tf.Tensor:
        """The objective on probabilities ([B] or [B, 1] each): BCE(click, pCTR) (+ BCE(click*conversion, pCTR*pCVR)).

        The metrics (ctr_loss, ctcvr_loss, mean_loss) average the per-example losses over
        the epoch's examples, so on several workers they keep one worker's scale.
        """
        click = tf.reshape(tf.cast(click, tf.float32), [-1, 1])
        p_ctr = tf.reshape(tf.cast(p_ctr, tf.float32), [-1, 1])
        per_example = self.ctr_task(labels=click, predictions=p_ctr)
        self.ctr_loss.update_state(per_example)
        if self.ctcvr_task is not None:
            if p_cvr is None:
                raise ValueError("the esmm objective needs pCVR")
            ctcvr = click * tf.reshape(tf.cast(conversion, tf.float32), [-1, 1])
            ctcvr_loss = self.ctcvr_task(labels=ctcvr, predictions=p_ctr * tf.reshape(tf.cast(p_cvr, tf.float32),
                                                                                      [-1, 1]))
            self.ctcvr_loss.update_state(ctcvr_loss)
            per_example = per_example + ctcvr_loss
        self.mean_loss.update_state(per_example)
        return tf.nn.compute_average_loss(per_example)

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        """The objective on a batch (labels in `click`, `conversion`); the position tower joins the CTR logit."""
        x0 = self.inputs_layer(features)
        ctr, cvr = self._logits(x0, training)
        if self.position_tower is not None and self.position_column in features:
            ctr = ctr + self.position_tower(features[self.position_column])
        loss = self.task_loss(features[CLICK], features[CONVERSION], tf.sigmoid(ctr),
                              tf.sigmoid(cvr) if cvr is not None else None)
        if training and self.embedding_l2:
            looked_up = x0[:, :self.inputs_layer.embedded_width]
            loss += self.embedding_l2 * tf.nn.compute_average_loss(tf.reduce_sum(tf.square(looked_up), axis=1))
        return loss


def build_model(spec: RankSpec, rc: RankConf) -> RankingModel:
    """A RankingModel for a spec and the rank settings, compiled with rc's optimizer."""
    model = RankingModel(spec, objective=rc.objective, embedding_dim=rc.embedding_dim,
                         cross_layers=rc.cross_layers, deep_layers=tuple(rc.deep_layers),
                         position_bias=rc.position_bias, position_l2=rc.position_l2,
                         embedding_l2=rc.embedding_l2)
    model.compile(optimizer=make_optimizer(rc.optimizer, rc.learning_rate))
    return model
