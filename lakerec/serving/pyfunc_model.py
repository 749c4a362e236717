"""MLflow pyfunc wrapper of the recommender (logged as code by lakerec.serving.export).

    model = mlflow.pyfunc.load_model("models:/lakerec-recommender/1")
    model.predict(pd.DataFrame({"user_id": [100274]}), params={"k": 10, "exclude_seen": False})
    # -> user_id, rank, item_id, score, p_click, p_conversion (null where none), source

The lakerec package travels with the model (code_paths), so this imports it. The model's
config (model_config: index, hnsw_m, hnsw_ef_search) picks the retrieval index; MLflow's
scoring server takes another from the environment (lakerec.jobs.serve --index). A request
lakerec cannot answer (lakerec.errors.RequestError) becomes MLflow's INVALID_PARAMETER_VALUE,
which the scoring server answers with 400 and the message.
"""

from __future__ import annotations

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from lakerec.serving.recommender import BUNDLE, INDEX_SETTINGS, PARAMS



class RecommenderModel(PythonModel):
    def load_context(self, context):
        from lakerec.serving.recommender import Recommender

        config = {k: v for k, v in (context.model_config or {}).items() if k in INDEX_SETTINGS}
        self.recommender = Recommender.load(context.artifacts[BUNDLE], **config)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from lakerec.errors import RequestError

        try:
            out = self.recommender.recommend(pd.DataFrame(model_input),
                                             **{k: v for k, v in (params or {}).items() if k in PARAMS})
        except RequestError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None
        # JSON null, not NaN, where there is no probability (popular rows, a ctr ranker).
        return out.astype({"p_click": object, "p_conversion": object}).where(out.notna(), None)


set_model(RecommenderModel())
