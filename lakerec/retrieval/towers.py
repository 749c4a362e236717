"""Query and candidate towers, built from a FeatureSpec.

With `features="ids"` each tower is one embedding table (the TFRS basic-retrieval model).
With `features="all"` the id embedding is joined by an embedding per single-valued field
and a weighted mean of embeddings per multi-valued field; the concatenation goes through
a small MLP to the shared embedding dimension. Index 0 (missing / out of vocabulary)
embeds to the zero vector, so a cold user or item is represented by its features alone.
"""

from __future__ import annotations

import tensorflow as tf

from lakerec.retrieval.features import (
    ITEM_MULTI, ITEM_SINGLE, USER_MULTI, USER_SINGLE, FeatureSpec, ids_column, index_column, weights_column,
)


def _in_vocabulary(ids: tf.Tensor, size: int) -> tf.Tensor:
    """Indices outside [0, size) become 0 (OOV): serving input must not crash a lookup."""
    ids = tf.cast(ids, tf.int32)
    return tf.where((ids >= 0) & (ids < size), ids, tf.zeros_like(ids))


class MaskedEmbedding(tf.keras.layers.Layer):
    """An embedding table whose row 0 (missing / OOV) is the zero vector."""

    def __init__(self, vocab_size: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.embedding = tf.keras.layers.Embedding(self.vocab_size, dim)

    def call(self, ids):
        ids = _in_vocabulary(ids, self.vocab_size)
        mask = tf.cast(ids > 0, self.embedding.dtype)
        return self.embedding(ids) * tf.expand_dims(mask, -1)


class WeightedMeanEmbedding(tf.keras.layers.Layer):
    """sum_i w_i e(id_i) / sum_i w_i over the non-padding ids of a multi-valued field."""

    def __init__(self, vocab_size: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.embedding = tf.keras.layers.Embedding(self.vocab_size, dim)

    def call(self, ids, weights):
        ids = _in_vocabulary(ids, self.vocab_size)
        w = tf.cast(weights, self.embedding.dtype) * tf.cast(ids > 0, self.embedding.dtype)
        total = tf.reduce_sum(self.embedding(ids) * tf.expand_dims(w, -1), axis=1)
        return tf.math.divide_no_nan(total, tf.reduce_sum(w, axis=1, keepdims=True))


class _Tower(tf.keras.Model):
    """id embedding [+ side-feature embeddings -> MLP] for one side of the model."""

    def __init__(self, id_column: str, id_vocab: int, single: dict, multi: dict, dim: int,
                 hidden_units: tuple[int, ...], side_features: bool, **kwargs):
        super().__init__(**kwargs)
        self.id_column = id_column
        self.side_features = side_features
        if not side_features:
            # Plain lookup: exactly the TFRS tutorial's tower (row 0 is an ordinary row).
            self.id_embedding = tf.keras.layers.Embedding(id_vocab, dim)
            return
        self.id_embedding = MaskedEmbedding(id_vocab, dim, name=f"{id_column}_embedding")
        self.single_columns = sorted(single)
        self.multi_columns = sorted(multi)
        self.single = [MaskedEmbedding(single[c], dim, name=f"{c}_embedding") for c in self.single_columns]
        self.multi = [WeightedMeanEmbedding(multi[c], dim, name=f"{c}_embedding") for c in self.multi_columns]
        self.mlp = tf.keras.Sequential(
            [tf.keras.layers.Dense(u, activation="relu") for u in hidden_units] + [tf.keras.layers.Dense(dim)]
        )

    def call(self, features, training=False):
        ids = features[self.id_column]
        if not self.side_features:
            return self.id_embedding(_in_vocabulary(ids, self.id_embedding.input_dim))
        parts = [self.id_embedding(ids)]
        parts += [layer(features[index_column(c)]) for c, layer in zip(self.single_columns, self.single)]
        parts += [layer(features[ids_column(c)], features[weights_column(c)])
                  for c, layer in zip(self.multi_columns, self.multi)]
        return self.mlp(tf.concat(parts, axis=1), training=training)


def build_towers(spec: FeatureSpec, embedding_dim: int, hidden_units: tuple[int, ...] = ()) -> tuple[tf.keras.Model, tf.keras.Model]:
    """The (query, candidate) towers for a feature spec.

    Args:
        spec: inputs and vocabulary sizes.
        embedding_dim: size of the shared embedding space (and of every feature embedding).
        hidden_units: hidden layers of the MLP on top of the concatenated features
            (`features="all"` only).

    Returns:
        Two Keras models mapping a feature dict to [batch, embedding_dim].
    """
    side = spec.uses_side_features
    sizes = spec.vocab_sizes
    query = _Tower(
        "user_index", spec.num_users,
        {n: sizes[n] for n in USER_SINGLE} if side else {},
        {n: sizes[n] for n in USER_MULTI} if side else {},
        embedding_dim, tuple(hidden_units), side, name="query_tower",
    )
    candidate = _Tower(
        "item_index", spec.num_items,
        {n: sizes[n] for n in ITEM_SINGLE} if side else {},
        {n: sizes[n] for n in ITEM_MULTI} if side else {},
        embedding_dim, tuple(hidden_units), side, name="candidate_tower",
    )
    return query, candidate
