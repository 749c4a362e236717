"""The ranker's serving artifact: a SavedModel whose `score` function reads the scoring columns.

    score(features) -> {"p_click": [B]} (+ "p_conversion", "p_ctcvr" with esmm)

`features` holds exactly RankSpec.columns (no position: scoring never reads it), typed as
the impressions tables type them. The spec and the objective are stored next to it
(assets.extra/ranker.json). In MLflow the SavedModel is wrapped as a pyfunc model
(lakerec/ranking/pyfunc_model.py, logged as code: nothing is pickled) and registered under
`mlflow.registered_ranker`; lakerec.ranking.scoring.load_ranker loads it back.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import tensorflow as tf

from lakerec.ranking.features import RankSpec
from lakerec.schema import tables as T

# The pyfunc has an explicit signature; an input example would only load and run the model at logging time.
warnings.filterwarnings("ignore", message=".*input example was not provided.*")

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
META_FILE = "ranker.json"  # pyfunc_model.META_FILE reads it (that module imports no lakerec)
MODEL_NAME = "ranker"  # the pyfunc's name inside its run: runs:/<run_id>/ranker
_TF_TYPES = {"int": tf.int32, "float": tf.float32, "array<int>": tf.int32, "array<float>": tf.float32}


def input_signature(spec: RankSpec) -> dict[str, tf.TensorSpec]:
    """TensorSpecs of the scoring columns, typed from the impressions table's registry schema."""
    out = {}
    for col in spec.columns:
        kind = T.TRAIN_IMPRESSIONS.column(col).type
        shape = [None, spec.lengths[col]] if kind.startswith("array") else [None]
        out[col] = tf.TensorSpec(shape, _TF_TYPES[kind], name=col)
    return out


class ScoringModule(tf.Module):
    """The trained RankingModel behind one `score(features)` function."""

    def __init__(self, model, spec: RankSpec):
        super().__init__(name="ranker")
        self.model = model
        self.score = tf.function(lambda features: self.model(features, training=False),
                                 input_signature=[input_signature(spec)])


def save(model, spec: RankSpec, objective: str, path: str | Path) -> Path:
    """Write the SavedModel (serving signature = score) and its metadata."""
    path = Path(path)
    module = ScoringModule(model, spec)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.score.get_concrete_function()})
    extra = path / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    meta = {"objective": objective, "columns": list(spec.columns), "spec": json.loads(spec.to_json())}
    (extra / META_FILE).write_text(json.dumps(meta, sort_keys=True))
    return path


def column_spec(col: str, required: bool = True):
    """The MLflow ColSpec of an impressions column, in the wide types pandas and JSON give (long, double)."""
    from mlflow.types.schema import Array, ColSpec

    kind = T.TRAIN_IMPRESSIONS.column(col).type
    base = "double" if "float" in kind else "long"
    return ColSpec(Array(base) if kind.startswith("array") else base, col, required=required)


def pyfunc_signature(spec: RankSpec):
    """Inputs: every scoring column (wide types, as pandas and JSON give them); outputs: the three scores."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = [column_spec(col) for col in spec.columns]
    outputs = [ColSpec("double", name) for name in ("p_click", "p_conversion", "p_ctcvr")]
    return ModelSignature(Schema(inputs), Schema(outputs))


def log_pyfunc(saved_model_dir: str | Path, spec: RankSpec, registered_model: str | None):
    """Log the SavedModel as a pyfunc model of the active run; register it if named.

    Returns:
        MLflow's ModelInfo (model_uri, registered_model_version, ...).
    """
    from lakerec.retrieval.export import log_saved_model

    return log_saved_model(MODEL_NAME, PYFUNC_CODE, saved_model_dir, pyfunc_signature(spec), registered_model)
