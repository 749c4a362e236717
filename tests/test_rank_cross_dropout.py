"""Cross dropout without Spark: the drawn rows lose every cross column and nothing else, the model trained
through it never sees a cross, and scoring reads the crosses as given."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lakerec.config import RankConf
from lakerec.errors import ConfigError
from lakerec.ranking.cross_dropout import drop_crosses, with_cross_dropout
from lakerec.ranking.features import cross_columns, ranker_fields
from lakerec.ranking.model import build_model
from lakerec.schema import fields as F
from tests.test_rank_model import batch, tiny_spec

N = 2000


def crossed_batch(n: int = N) -> dict[str, np.ndarray]:
    """A training batch whose cross columns are all non-zero, so a blanked row shows."""
    rows = batch(tiny_spec(), n=n, seed=5)
    for c in cross_columns():
        rows[c] = np.maximum(rows[c], 1).astype(rows[c].dtype) if rows[c].dtype.kind == "i" else rows[c] + 0.5
    return rows


def blanked_rows(out: dict) -> np.ndarray:
    """Per row: True where every cross column is zero."""
    return np.all([np.asarray(out[c]).reshape(len(out[c]), -1).max(axis=1) == 0 for c in cross_columns()], axis=0)


def test_cross_columns_are_the_registry_cross_fields():
    cross = [f for f in ranker_fields() if f.role == F.CROSS]
    assert len(cross) == 4 and {f.name for f in cross} == {"user_item_categories", "user_item_shops",
                                                          "user_item_brands", "user_item_intentions"}
    assert set(cross_columns()) == {"user_item_categories_index", "user_item_categories_weight",
                                    "user_item_shops_index", "user_item_shops_weight", "user_item_brands_index",
                                    "user_item_brands_weight", "user_item_intentions_ids",
                                    "user_item_intentions_weights"}


def test_the_drawn_rows_lose_every_cross_column_and_keep_the_rest():
    rows = crossed_batch()
    ds = tf.data.Dataset.from_tensors(rows).repeat(3)
    outs = [{k: v.numpy() for k, v in b.items()} for b in drop_crosses(ds, 0.3, seed=11)]
    masks = []
    for out in outs:
        blank = blanked_rows(out)
        masks.append(blank)
        assert 0.25 < blank.mean() < 0.35, blank.mean()  # ~0.3 of 2000 rows (sd 0.01)
        for c in cross_columns():
            # A blanked row: all zero (index 0, weight 0, zero arrays); any other row: as it came.
            assert not np.asarray(out[c])[blank].any(), c
            np.testing.assert_array_equal(out[c][~blank], rows[c][~blank])
        for c in set(rows) - set(cross_columns()):  # ids, side fields, position, labels: untouched
            np.testing.assert_array_equal(out[c], rows[c])
    assert not np.array_equal(masks[0], masks[1])  # each batch draws its own rows
    again = [blanked_rows({k: v.numpy() for k, v in b.items()}) for b in drop_crosses(ds, 0.3, seed=11)]
    other = [blanked_rows({k: v.numpy() for k, v in b.items()}) for b in drop_crosses(ds, 0.3, seed=12)]
    for a, b in zip(masks, again):
        np.testing.assert_array_equal(a, b)  # seeded
    assert not np.array_equal(masks[0], other[0])


def test_rate_one_blanks_every_row_and_rate_zero_none():
    rows = crossed_batch(200)
    ds = tf.data.Dataset.from_tensors(rows)
    (out,) = [{k: v.numpy() for k, v in b.items()} for b in drop_crosses(ds, 1.0, seed=0)]
    assert blanked_rows(out).all()
    assert drop_crosses(ds, 0.0, seed=0) is ds


def test_a_model_trained_through_it_never_sees_a_cross():
    """With rate 1 no cross embedding row ever gets a gradient; with rate 0 they do (the test can fail)."""
    spec = tiny_spec()
    rows = crossed_batch(512)
    cross_names = {f"{f.name}_embedding" for f in ranker_fields() if f.role == F.CROSS}

    def train(rate: float):
        tf.keras.utils.set_random_seed(0)
        model = build_model(spec, RankConf(learning_rate=0.05, cross_dropout=rate))
        model.build_from_batch(rows)
        layers = model.inputs_layer.single_layers + model.inputs_layer.multi_layers
        before = {layer.name: layer.embedding.embeddings.numpy().copy() for layer in layers}

        def factory():
            from contextlib import nullcontext
            return nullcontext(tf.data.Dataset.from_tensor_slices(rows).batch(128).repeat())

        with with_cross_dropout(factory, rate, seed=1)() as ds:
            model.fit(ds, epochs=1, steps_per_epoch=8, verbose=0)
        return {layer.name: not np.array_equal(before[layer.name], layer.embedding.embeddings.numpy())
                for layer in layers}

    moved = train(1.0)
    assert set(moved) > cross_names
    assert not any(moved[n] for n in cross_names), moved
    assert moved["item_category_embedding"] and moved["user_profile_embedding"]
    assert all(train(0.0)[n] for n in cross_names)


def test_scoring_reads_the_crosses_as_given():
    spec = tiny_spec()
    rows = crossed_batch(64)
    tf.keras.utils.set_random_seed(0)
    model = build_model(spec, RankConf(cross_dropout=1.0))
    model.build_from_batch(rows)
    scores = model(rows)["p_click"].numpy()
    np.testing.assert_array_equal(scores, model(rows)["p_click"].numpy())  # no draw at scoring
    blank = {c: (np.zeros_like(v) if c in cross_columns() else v) for c, v in rows.items()}
    assert not np.allclose(scores, model(blank)["p_click"].numpy())  # the crosses still reach the model


def test_the_setting_is_a_share():
    assert RankConf(cross_dropout=1.0).cross_dropout == 1.0 and RankConf(cross_dropout=0.0).cross_dropout == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="cross_dropout"):
            RankConf(cross_dropout=bad)
