"""The scoring API: a trained ranker, loaded from MLflow, scoring impressions rows.

    ranker = load_ranker("models:/lakerec-ranker@champion")   # or runs:/<id>/ranker, models:/name/N
    ranker.columns      # the impressions columns predict() reads (never position)
    ranker.objective    # "ctr" or "esmm"
    scores = ranker.predict(test_impressions_pandas)
    scores["p_click"], scores["p_conversion"], scores["p_ctcvr"]   # (n,) float64 each

p_conversion is pCVR given a click (NaN with the ctr objective) and p_ctcvr = p_click x
p_conversion. `predict` takes a pandas DataFrame (Spark's toPandas / mapInPandas: array
columns as object arrays of lists or arrays) or a dict of numpy arrays; every column in
`columns` must be there, others are ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Ranker:
    """A trained ranker, loaded (see load_ranker).

    Attributes:
        columns: the impressions columns predict() reads (no position).
        objective: "ctr" or "esmm".
        model_uri: where it was loaded from.
    """

    def __init__(self, impl: Any, model_uri: str):
        self._impl = impl
        self.columns: tuple[str, ...] = tuple(impl.columns)
        self.objective: str = impl.objective
        self.model_uri = model_uri

    def predict(self, frame) -> dict[str, np.ndarray]:
        """{"p_click", "p_conversion", "p_ctcvr"}: (n,) arrays for the n rows of `frame`.

        Raises:
            ValueError: a column of `columns` is missing, or an array column has the wrong length.
        """
        return self._impl.score(frame)

    def __repr__(self) -> str:
        return f"Ranker({self.model_uri!r}, objective={self.objective!r})"


def load_ranker(model_uri: str) -> Ranker:
    """The ranker logged at an MLflow model URI (runs:/..., models:/name/N, models:/name@alias).

    Uses the tracking and registry URIs MLflow is set to (lakerec.retrieval.tracking.configure).
    """
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    return Ranker(model.unwrap_python_model(), model_uri)
