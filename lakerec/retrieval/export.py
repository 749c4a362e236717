"""The serving artifact: the query tower plus an exact index over every vocabulary item.

`RetrievalModule` is saved as a TensorFlow SavedModel with two functions (and the same
two as signatures, for TF Serving):
    recommend(features, k)     -> {"item_ids": int64 [B, k], "scores": float32 [B, k]}
    query_embeddings(features) -> float32 [B, D]
where `features` holds `user_id` (mapped to the model's user index inside, unknown ids
to the OOV row) and, for `features=all` models, the user's profile and history columns
as in the interactions tables. The candidate matrix and the item ids are variables of
the module, so evaluation and batch recommendation read the same numbers that serving
uses. The FeatureSpec is stored next to it (assets.extra/feature_spec.json).

In MLflow the SavedModel is wrapped as a pyfunc model (lakerec/retrieval/pyfunc_model.py,
logged as code: nothing is pickled) and registered under `mlflow.registered_model`.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from lakerec.retrieval.features import FeatureSpec

log = logging.getLogger("lakerec.train.export")

# The pyfunc has an explicit signature (optional feature columns, param k); MLflow's advice
# to add an input example (which would load and run the model at logging time) is moot.
warnings.filterwarnings("ignore", message=".*input example was not provided.*")

SPEC_FILE = "feature_spec.json"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
MODEL_NAME = "model"  # the pyfunc's name inside its run: runs:/<run_id>/model


def serving_signature(spec: FeatureSpec) -> dict[str, tf.TensorSpec]:
    """TensorSpecs of the serving inputs (user_id + the spec's user feature columns)."""
    lengths = spec.array_lengths()
    sig = {}
    for col in spec.serving_columns():
        if col == "user_id":
            sig[col] = tf.TensorSpec([None], tf.int64, name=col)
        elif col in lengths:
            dtype = tf.float32 if col.endswith("_weights") else tf.int32
            sig[col] = tf.TensorSpec([None, lengths[col]], dtype, name=col)
        else:
            sig[col] = tf.TensorSpec([None], tf.int32, name=col)
    return sig


class RetrievalModule(tf.Module):
    """Query tower + user-id lookup + candidate matrix: top-K item ids for user features.

    Args:
        query_tower: feature dict (with user_index) -> [B, D].
        spec: the model's FeatureSpec.
        candidates: [N + 1, D] candidate embeddings by item index (row 0 = OOV).
        item_ids: [N + 1] raw item id by item index.
        user_ids, user_index: the user vocabulary (raw id -> index).
    """

    def __init__(self, query_tower, spec: FeatureSpec, candidates: np.ndarray, item_ids: np.ndarray,
                 user_ids: np.ndarray, user_index: np.ndarray):
        super().__init__(name="retrieval")
        self.query_tower = query_tower
        self.candidates = tf.Variable(np.asarray(candidates, np.float32), trainable=False, name="candidates")
        self.item_ids = tf.Variable(np.asarray(item_ids, np.int64), trainable=False, name="item_ids")
        self.user_lookup = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(np.asarray(user_ids, np.int64)), tf.constant(np.asarray(user_index, np.int32))
            ),
            default_value=0,
        )
        sig = serving_signature(spec)
        self.query_embeddings = tf.function(self._query_embeddings, input_signature=[sig])
        self.recommend = tf.function(self._recommend, input_signature=[sig, tf.TensorSpec([], tf.int32, name="k")])

    def _query_embeddings(self, features):
        feats = {k: v for k, v in features.items() if k != "user_id"}
        feats["user_index"] = self.user_lookup.lookup(features["user_id"])
        return self.query_tower(feats)

    def _recommend(self, features, k):
        queries = self._query_embeddings(features)
        scores = tf.matmul(queries, self.candidates[1:], transpose_b=True)
        k = tf.minimum(k, tf.shape(scores)[1])
        top_scores, top = tf.math.top_k(scores, k=k)
        return {"item_ids": tf.gather(self.item_ids[1:], top), "scores": top_scores}


def save(module: RetrievalModule, spec: FeatureSpec, path: str | Path) -> Path:
    """Write the SavedModel (with its serving signatures) and the FeatureSpec next to it."""
    path = Path(path)
    tf.saved_model.save(
        module,
        str(path),
        signatures={
            "serving_default": module.recommend.get_concrete_function(),
            "query_embeddings": module.query_embeddings.get_concrete_function(),
        },
    )
    extra = path / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / SPEC_FILE).write_text(spec.to_json())
    return path


def load(path: str | Path):
    """(loaded module, FeatureSpec) from a directory written by `save`."""
    path = Path(path)
    module = tf.saved_model.load(str(path))
    spec = FeatureSpec.from_json((path / "assets.extra" / SPEC_FILE).read_text())
    return module, spec


def pyfunc_signature(spec: FeatureSpec, k: int):
    """Input: user_id required, the user feature columns optional (0 = missing); param k."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    lengths = spec.array_lengths()
    inputs = []
    # Wide types (what pandas and JSON give by default); the model casts to its own.
    for col in spec.serving_columns():
        if col == "user_id":
            inputs.append(ColSpec("long", col))
        elif col in lengths:
            inputs.append(ColSpec(Array("double" if col.endswith("_weights") else "long"), col, required=False))
        else:
            inputs.append(ColSpec("long", col, required=False))
    outputs = [ColSpec("long", "user_id"), ColSpec(Array("long"), "item_ids"), ColSpec(Array("float"), "scores")]
    return ModelSignature(Schema(inputs), Schema(outputs), ParamSchema([ParamSpec("k", "long", int(k))]))


def log_pyfunc(saved_model_dir: str | Path, spec: FeatureSpec, k: int, registered_model: str | None):
    """Log the SavedModel as a pyfunc model of the active run; register it if named.

    Returns:
        MLflow's ModelInfo (model_uri, registered_model_version, ...).
    """
    return log_saved_model(MODEL_NAME, PYFUNC_CODE, saved_model_dir, pyfunc_signature(spec, k), registered_model)


def log_saved_model(name: str, code: Path, saved_model_dir: str | Path, signature, registered_model: str | None):
    """Log a SavedModel with its pyfunc wrapper (logged as code) into the active run; register it if named."""
    return log_code_model(name, code, {"saved_model": str(saved_model_dir)}, signature, registered_model)


def log_code_model(name: str, code: Path, artifacts: dict[str, str], signature, registered_model: str | None,
                   **options):
    """Log a pyfunc wrapper (logged as code: nothing is pickled) and its artifacts; register it if named.

    The one place every model (this two-tower, lakerec.ranking's ranker, lakerec.serving's
    recommender) is logged from, with the pins the serving environment needs.

    Args:
        name: the model's name inside the run.
        code: the wrapper's source file (it ends with mlflow.models.set_model).
        artifacts: artifact name -> local path, as the wrapper's context.artifacts sees them.
        signature: the ModelSignature.
        registered_model: the registry name; "" or None logs without registering.
        **options: more of mlflow.pyfunc.log_model's arguments (input_example, code_paths,
            extra_pip_requirements: added to the pins).
    """
    import contextlib
    import io

    import mlflow

    import lakerec

    extra = options.pop("extra_pip_requirements", [])
    # MLflow prints "Successfully registered model ..." / "Created version ..." to stderr
    # itself (not through logging); the jobs say which version they registered in their summary.
    quiet = contextlib.nullcontext() if lakerec.VERBOSE else contextlib.redirect_stderr(io.StringIO())
    with quiet:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts=artifacts,
            signature=signature,
            registered_model_name=registered_model or None,
            pip_requirements=[
                f"tensorflow=={tf.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={__import__('pandas').__version__}",
                f"mlflow=={mlflow.__version__}",
                *extra,
            ],
            **options,
        )


def load_from_run(run_id: str):
    """(module, FeatureSpec) of the pyfunc model logged by a training run."""
    return load_model(f"runs:/{run_id}/{MODEL_NAME}")


def load_for(cfg, run_id: str | None = None):
    """(module, FeatureSpec, run id) of the two-tower a stage uses.

    Args:
        cfg: configuration (the registry names and versions; lakerec.registry.resolve).
        run_id: a training run whose logged model to use; None: the registered version
            mlflow.model_version names, else the champion of mlflow.registered_model.

    Raises:
        LakeRecError: no such version, or no champion yet (saying what to run).
    """
    from lakerec import registry

    if run_id:
        return (*load_from_run(run_id), run_id)
    found = registry.resolve(cfg, registry.TWO_TOWER)
    log.info("two-tower: %s, run %s", found, found.run_id)
    return (*load_model(found.uri), found.run_id)


def load_model(model_uri: str):
    """(module, FeatureSpec) of the two-tower pyfunc at an MLflow model URI (`runs:/<id>/model`,
    `models:/<name>/<version>`) or a local model directory."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    impl = model.unwrap_python_model()
    # The pyfunc is logged as code, so a run keeps the copy it was logged with: one logged
    # before the package became lakerec.retrieval imports lakerec.train.features, fails,
    # and holds the serving-only stand-in. Rebuild the full spec from its JSON either way.
    return impl.module, FeatureSpec.from_json(impl.spec.to_json())


def spec_json(spec: FeatureSpec) -> dict:
    return json.loads(spec.to_json())
