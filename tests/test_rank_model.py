"""The ranking model without Spark: the ESMM loss by hand, pCTCVR = pCTR x pCVR, scores that never read position."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from lakerec.config import RankConf
from lakerec.errors import ConfigError
from lakerec.ranking.features import LABELS, RankSpec, field_columns, position_field, ranker_fields
from lakerec.ranking.model import RankingModel, build_model
from lakerec.schema import tables as T

LENGTH = 3


def tiny_spec() -> RankSpec:
    lengths = {c: LENGTH for f in ranker_fields() if f.multi for c in field_columns(f)}
    return RankSpec({f.name: 5 for f in ranker_fields()}, lengths)


def batch(spec: RankSpec, n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for c in spec.training_columns:
        if c in spec.lengths:
            out[c] = (rng.integers(0, 5, (n, LENGTH)).astype(np.int32) if c.endswith("_ids")
                      else rng.random((n, LENGTH)).astype(np.float32))
        elif T.TRAIN_IMPRESSIONS.column(c).type == "float":
            out[c] = rng.random(n).astype(np.float32)
        else:
            out[c] = rng.integers(0, 2 if c in LABELS else 5, n).astype(np.int32)
    return out


def test_columns_come_from_the_registry_and_scoring_never_reads_position():
    spec = tiny_spec()
    pos = position_field().index_column
    assert pos in spec.training_columns and pos not in spec.columns
    assert set(spec.training_columns) <= set(T.TRAIN_IMPRESSIONS.column_names)
    # Every ID, SIDE and RANK column of the impressions table, bar the training-only position.
    assert set(T.TRAIN_IMPRESSIONS.column_names) - set(spec.training_columns) == {
        "sample_id", "user_id", "item_id", "is_cold_user", "is_cold_item"}
    assert {"user_item_categories_weight", "user_item_intentions_weights"} <= set(spec.columns)
    assert RankSpec.from_json(spec.to_json()) == spec


def test_esmm_loss_matches_the_hand_computed_value():
    model = RankingModel(tiny_spec(), objective="esmm")
    click, conversion = np.array([1, 0, 1]), np.array([1, 0, 0])
    p_ctr, p_cvr = np.array([0.8, 0.3, 0.6]), np.array([0.5, 0.9, 0.25])
    loss = float(model.task_loss(click, conversion, p_ctr, p_cvr))
    # BCE(click, pCTR): rows 1 and 3 clicked.
    ctr = -(math.log(0.8) + math.log(1 - 0.3) + math.log(0.6)) / 3
    # BCE(click x conversion = [1, 0, 0], pCTCVR = [0.4, 0.27, 0.15]).
    ctcvr = -(math.log(0.8 * 0.5) + math.log(1 - 0.3 * 0.9) + math.log(1 - 0.6 * 0.25)) / 3
    assert loss == pytest.approx(ctr + ctcvr, rel=1e-5)
    assert float(model.ctr_loss.result()) == pytest.approx(ctr, rel=1e-5)
    assert float(model.ctcvr_loss.result()) == pytest.approx(ctcvr, rel=1e-5)
    # The ctr objective is the first term alone.
    ctr_only = RankingModel(tiny_spec(), objective="ctr")
    assert float(ctr_only.task_loss(click, conversion, p_ctr)) == pytest.approx(ctr, rel=1e-5)


def test_p_ctcvr_is_p_ctr_times_p_cvr():
    spec = tiny_spec()
    model = RankingModel(spec, objective="esmm")
    out = {k: v.numpy() for k, v in model(batch(spec)).items()}
    assert set(out) == {"p_click", "p_conversion", "p_ctcvr"}
    np.testing.assert_allclose(out["p_ctcvr"], out["p_click"] * out["p_conversion"], rtol=1e-6)
    assert ((out["p_click"] > 0) & (out["p_click"] < 1)).all()
    assert set(RankingModel(spec, objective="ctr")(batch(spec))) == {"p_click"}


def test_scores_do_not_depend_on_position_but_the_training_loss_does():
    spec = tiny_spec()
    pos = position_field().index_column
    model = build_model(spec, RankConf(position_bias=True))
    rows = batch(spec, n=64)
    model.build_from_batch(rows)
    # Give the position tower a real effect, as training would.
    model.position_tower.embedding.embeddings.assign(np.array([[0.0], [0.0], [-1.0], [-2.0], [-3.0]], np.float32))
    moved = dict(rows, **{pos: (rows[pos] % 4) + 1})
    scores = model(rows)["p_click"].numpy()
    np.testing.assert_array_equal(scores, model(moved)["p_click"].numpy())
    without = {c: v for c, v in rows.items() if c != pos}
    np.testing.assert_array_equal(scores, model(without)["p_click"].numpy())
    # The training objective does see it.
    assert float(model.compute_loss(rows)) != pytest.approx(float(model.compute_loss(moved)))


def test_embedding_l2_adds_the_mean_squared_norm_of_the_looked_up_embeddings_in_training_only():
    spec = tiny_spec()
    rows = batch(spec, n=32, seed=2)
    plain = RankingModel(spec, objective="esmm", position_bias=False)
    penalised = RankingModel(spec, objective="esmm", position_bias=False, embedding_l2=0.5)
    plain(rows)
    penalised(rows)
    penalised.set_weights(plain.get_weights())
    x0 = plain.inputs_layer(rows).numpy()
    width = plain.inputs_layer.embedded_width
    assert width == 8 * len(spec.fields()) and x0.shape[1] > width  # the dense weights come after
    expected = 0.5 * float(np.mean(np.sum(x0[:, :width] ** 2, axis=1)))
    assert expected > 0
    base = float(plain.compute_loss(rows, training=True))
    assert float(penalised.compute_loss(rows, training=True)) == pytest.approx(base + expected, rel=1e-5)
    # Not a part of what evaluation or validation sees.
    assert float(penalised.compute_loss(rows)) == pytest.approx(float(plain.compute_loss(rows)), rel=1e-6)


def test_a_few_steps_lower_the_loss_on_a_learnable_batch():
    spec = tiny_spec()
    rows = batch(spec, n=256, seed=1)
    rows["click"] = (rows[position_field().index_column] <= 2).astype(np.int32)  # clicks by position alone
    model = build_model(spec, RankConf(learning_rate=0.05, objective="ctr"))
    ds = tf.data.Dataset.from_tensor_slices(rows).batch(64).repeat()
    history = model.fit(ds, epochs=3, steps_per_epoch=8, verbose=0).history
    assert history["mean_loss"][-1] < history["mean_loss"][0]
    # Learnt by the position tower: ranks positions 1-2 above 3-4.
    logits = model.position_tower(np.arange(1, 5)).numpy()[:, 0]
    assert logits[0] > logits[2] and logits[1] > logits[3]


def test_an_unknown_objective_is_refused():
    with pytest.raises(ConfigError, match="rank.objective"):
        RankingModel(tiny_spec(), objective="cvr")
