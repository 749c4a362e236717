"""MLflow pyfunc wrapper of the ranker's SavedModel (logged as code by lakerec.ranking.export).

Self-contained on purpose: it imports only TensorFlow, numpy, pandas and MLflow, so the
registered model loads and scores where the lakerec package is not installed.

    model = mlflow.pyfunc.load_model("models:/lakerec-ranker/1")
    model.predict(test_impressions_frame)   # -> columns p_click, p_conversion, p_ctcvr

Every scoring column (the model's `columns`, position never among them) must be present;
other columns are ignored. Array columns may be 2-D numpy arrays or object arrays of
lists/arrays (what pandas gives for Spark array columns); a null array counts as missing
(zeros). With the ctr objective p_conversion and p_ctcvr are NaN.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

BATCH_ROWS = 8192
META_FILE = "ranker.json"
OUTPUTS = ("p_click", "p_conversion", "p_ctcvr")


def _array_column(values, name: str, width: int, dtype) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.ndim == 2 and values.dtype != object:
        arr = values.astype(dtype, copy=False)
    else:
        rows = [np.zeros(width, dtype) if v is None or (np.isscalar(v) and pd.isna(v)) else np.asarray(v, dtype)
                for v in values]
        bad = [i for i, r in enumerate(rows) if r.shape != (width,)]
        if bad:
            raise ValueError(f"column {name}: every value must be a list of {width} numbers (row {bad[0]} is not)")
        arr = np.stack(rows) if rows else np.zeros((0, width), dtype)
    if arr.shape[1:] != (width,):
        raise ValueError(f"column {name}: expected {width} values per row, got shape {arr.shape}")
    return arr


def model_inputs(frame, inputs: dict) -> tuple[dict[str, np.ndarray], int]:
    """The model's input arrays from a DataFrame or a dict of arrays, and the row count.

    Args:
        frame: pandas DataFrame or {column: array}.
        inputs: column -> (numpy dtype, width or None for a scalar column).

    Raises:
        ValueError: a scoring column is missing, or an array has the wrong width.
    """
    columns = frame.columns if isinstance(frame, pd.DataFrame) else frame.keys()
    missing = [c for c in inputs if c not in columns]
    if missing:
        raise ValueError(f"the ranker needs the column(s) {', '.join(missing)} (as in test_impressions)")
    out, n = {}, None
    for name, (dtype, width) in inputs.items():
        values = frame[name]
        if isinstance(values, pd.Series):
            values = values.to_numpy()
        elif isinstance(values, (list, tuple)) and width:
            values = np.array(values, dtype=object)
        else:
            values = np.asarray(values)
        if width:
            out[name] = _array_column(values, name, width, dtype)
        else:
            if values.dtype == object:  # None where a value is missing
                values = pd.Series(values).fillna(0).to_numpy()
            out[name] = np.nan_to_num(values.astype(np.float64)).astype(dtype)
        if n is not None and len(out[name]) != n:
            raise ValueError(f"column {name} has {len(out[name])} rows, the others {n}")
        n = len(out[name])
    return out, n or 0


class RankerModel(PythonModel):
    """The ranker as MLflow serves it; `score` is what lakerec.ranking.scoring.Ranker calls."""

    def load_context(self, context):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf

        path = context.artifacts["saved_model"]
        self.module = tf.saved_model.load(path)
        with open(os.path.join(path, "assets.extra", META_FILE)) as f:
            meta = json.load(f)
        self.objective = meta["objective"]
        self.spec = meta["spec"]
        signature = self.module.signatures["serving_default"].structured_input_signature[1]
        self.inputs = {name: (spec.dtype.as_numpy_dtype, int(spec.shape[1]) if len(spec.shape) == 2 else None)
                       for name, spec in signature.items()}
        self.columns = tuple(meta["columns"])

    def score(self, frame) -> dict[str, np.ndarray]:
        import tensorflow as tf

        arrays, n = model_inputs(frame, {c: self.inputs[c] for c in self.columns})
        parts: dict[str, list] = {k: [] for k in OUTPUTS}
        for start in range(0, n, BATCH_ROWS):
            batch = {k: tf.constant(v[start:start + BATCH_ROWS]) for k, v in arrays.items()}
            result = self.module.score(batch)
            p_click = result["p_click"].numpy().astype(np.float64)
            parts["p_click"].append(p_click)
            if "p_conversion" in result:
                parts["p_conversion"].append(result["p_conversion"].numpy().astype(np.float64))
            else:
                parts["p_conversion"].append(np.full_like(p_click, np.nan))
            parts["p_ctcvr"].append(parts["p_click"][-1] * parts["p_conversion"][-1])
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return pd.DataFrame(self.score(model_input))


set_model(RankerModel())
