"""MLflow pyfunc wrapper of the retrieval SavedModel (logged as code by lakerec.retrieval.export).

Self-contained on purpose: it imports only TensorFlow, numpy, pandas and MLflow, so the
registered model loads where the lakerec package is not installed.

    model = mlflow.pyfunc.load_model("models:/lakerec-two-tower/1")
    model.predict(pd.DataFrame({"user_id": [1001, 1002]}), params={"k": 10})
    # -> columns user_id, item_ids (list of k ids, best first), scores (list of k floats)

Feature columns other than user_id are optional: a missing column means "missing" (0).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

BATCH_ROWS = 4096


class _Spec:
    """The parts of lakerec.retrieval.features.FeatureSpec that serving needs."""

    def __init__(self, data: dict):
        self.data = data
        self.features = data["features"]

    def to_json(self) -> str:
        return json.dumps(self.data, sort_keys=True)


class TwoTowerRecommender(PythonModel):
    def load_context(self, context):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf

        path = context.artifacts["saved_model"]
        self.module = tf.saved_model.load(path)
        with open(os.path.join(path, "assets.extra", "feature_spec.json")) as f:
            raw = json.load(f)
        try:  # inside lakerec: the real FeatureSpec; elsewhere a stand-in
            from lakerec.retrieval.features import FeatureSpec

            self.spec = FeatureSpec(**raw)
        except ImportError:
            self.spec = _Spec(raw)
        signature = self.module.signatures["serving_default"].structured_input_signature[1]
        self._inputs = {name: spec for name, spec in signature.items() if name != "k"}

    def _batch(self, frame: pd.DataFrame) -> dict:
        import tensorflow as tf

        out = {}
        n = len(frame)
        for name, spec in self._inputs.items():
            dtype = spec.dtype.as_numpy_dtype
            if name not in frame.columns:
                if name == "user_id":
                    raise ValueError("model input needs a user_id column")
                out[name] = np.zeros([n] + list(spec.shape[1:]), dtype=dtype)
                continue
            col = frame[name]
            if len(spec.shape) == 2:
                width = int(spec.shape[1])
                rows = [np.zeros(width, dtype) if v is None or (np.isscalar(v) and pd.isna(v)) else np.asarray(v, dtype)
                        for v in col]
                bad = [i for i, r in enumerate(rows) if r.shape != (width,)]
                if bad:
                    raise ValueError(f"column {name}: every value must be a list of {width} numbers (row {bad[0]})")
                out[name] = np.stack(rows) if rows else np.zeros((0, width), dtype)
            else:
                out[name] = col.fillna(0).to_numpy().astype(dtype)
        return {k: tf.constant(v) for k, v in out.items()}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        import tensorflow as tf

        frame = pd.DataFrame(model_input).reset_index(drop=True)
        k = int((params or {}).get("k", 100))
        ids, scores = [], []
        for start in range(0, len(frame), BATCH_ROWS):
            result = self.module.recommend(self._batch(frame.iloc[start:start + BATCH_ROWS]), tf.constant(k, tf.int32))
            ids.extend(result["item_ids"].numpy().tolist())
            scores.extend(result["scores"].numpy().tolist())
        return pd.DataFrame({"user_id": frame["user_id"].astype("int64"), "item_ids": ids, "scores": scores})


set_model(TwoTowerRecommender())
