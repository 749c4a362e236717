"""The recommender's bundle, and its logging and registration as one MLflow model.

    summary = run(spark, cfg, run_id=..., ranker_uri=..., users=users_frame, k=100, exclude_seen=False)

`recommend` calls it with what it used (lakerec.retrieval.recommend.run(..., recommender=True)),
so the model answers a known user with that user's rows of the table. The bundle (one
artifact, a directory; lakerec.serving.recommender reads it):

    two_tower/        the two-tower's MLflow model (runs:/<run>/model), for its query tower
    ranker/           the ranker's MLflow model (the URI recommend re-ranked with), if any
    users.parquet     each vocabulary user's latest retrieval features (retrieval.data.users_frame)
    contexts.parquet  each user's newest impression context, the ranker's user columns
                      (ranking.rerank.user_contexts), if a ranker
    items.parquet     the catalogue by item_index: item_id, the two-tower's item embedding,
                      the ranker's item_vocab columns, exposure, train_count (most-popular)
    seen.parquet      each user's training items (user_id, item_index), for exclude_seen
    recommender.json  the params' defaults and the rest of serving.recommender.Settings

It is logged in a run of its own (tag lakerec.stage=recommender) as a pyfunc logged as code
(serving/pyfunc_model.py; the lakerec package travels as code_paths: nothing is pickled), with
a signature (user_id; the optional feature columns; params k, exclude_seen, candidates), an
input example, and registered as mlflow.registered_recommender ("" logs without registering).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from lakerec.config import Config
from lakerec.errors import InputDataError
from lakerec.ranking import candidate_crosses as C
from lakerec.ranking import rerank as R
from lakerec.ranking.two_stage import item_columns
from lakerec.schema import tables as T
from lakerec.serving import recommender as S

log = logging.getLogger("lakerec.recommender")

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE = Path(__file__).resolve().parent.parent  # lakerec/, shipped with the model
MODEL_NAME = "recommender"  # the pyfunc's name inside its run: runs:/<run_id>/recommender
STAGE = "recommender"


def signature(settings: S.Settings):
    """user_id (required) and the user's feature columns (optional) in; the ranked rows out; the params."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    from lakerec.ranking.export import column_spec

    inputs = Schema([ColSpec("long", "user_id"), *[column_spec(c, required=False) for c in S.FEATURE_COLUMNS]])
    outputs = Schema([ColSpec("long", "user_id"), ColSpec("integer", "rank"), ColSpec("long", "item_id"),
                      ColSpec("float", "score"), ColSpec("float", "p_click", required=False),
                      ColSpec("float", "p_conversion", required=False), ColSpec("string", "source")])
    params = ParamSchema([ParamSpec("k", "long", settings.k), ParamSpec("exclude_seen", "boolean", settings.exclude_seen),
                          ParamSpec("candidates", "long", settings.candidates)])
    return ModelSignature(inputs, outputs, params)


def items_frame(spark, cfg: Config, module, train_df):
    """The catalogue by item_index (see the module doc) as a pandas frame."""
    import pandas as pd

    from lakerec.retrieval.data import item_train_counts
    from lakerec.tables import read_table

    ids, embeddings = module.item_ids.numpy()[1:], module.candidates.numpy()[1:]
    vocab = read_table(spark, cfg.table(T.ITEM_VOCAB.name)).select(*item_columns(), "impressions").toPandas()
    vocab["exposure"] = R.exposure(vocab["impressions"].to_numpy(np.float64), float(vocab["impressions"].sum()),
                                   len(vocab))
    items = pd.DataFrame({"item_id": ids, "embedding": list(embeddings),
                          "train_count": item_train_counts(train_df, len(ids) + 1)[1:]})
    items = items.merge(vocab.drop(columns="impressions"), on="item_id", how="left")
    if items["item_index"].isna().any() or not np.array_equal(items["item_index"], np.arange(1, len(ids) + 1)):
        raise InputDataError(f"{cfg.table(T.ITEM_VOCAB.name)} is not the catalogue the two-tower was exported with: "
                             "retrain (python -m lakerec.jobs.train) after `python -m lakerec.jobs.filter`")
    return items


def write_bundle(path: Path, settings: S.Settings, two_tower: Path, ranker: Path | None, users, contexts, items,
                 seen, crosses=None) -> Path:
    """The bundle directory (module doc) from model directories and pandas frames."""
    path.mkdir(parents=True)
    shutil.copytree(two_tower, path / S.TWO_TOWER_DIR)
    if ranker is not None:
        shutil.copytree(ranker, path / S.RANKER_DIR)
        contexts.to_parquet(path / S.CONTEXTS_FILE, index=False)
    if crosses is not None:
        crosses.to_parquet(path / S.CROSSES_FILE, index=False)
    users.to_parquet(path / S.USERS_FILE, index=False)
    items.to_parquet(path / S.ITEMS_FILE, index=False)
    seen.to_parquet(path / S.SEEN_FILE, index=False)
    (path / S.SETTINGS_FILE).write_text(settings.to_json())
    return path


def _pins() -> list[str]:
    """The serving environment's pins beyond the two-tower's (parquet; FAISS where installed)."""
    pins = [f"pyarrow=={metadata.version('pyarrow')}"]
    try:
        pins.append(f"faiss-cpu=={metadata.version('faiss-cpu')}")
    except metadata.PackageNotFoundError:  # exact index only
        pass
    return pins


def log_bundle(path: Path, settings: S.Settings, registered_model: str | None, example_user: int):
    """Log the bundle as the pyfunc model of the active run; register it if named. Returns the ModelInfo."""
    import pandas as pd

    from lakerec.retrieval.export import log_code_model

    return log_code_model(MODEL_NAME, PYFUNC_CODE, {S.BUNDLE: str(path)}, signature(settings), registered_model,
                          input_example=pd.DataFrame({"user_id": [int(example_user)]}),
                          code_paths=[str(PACKAGE)], extra_pip_requirements=_pins(),
                          model_config={k: getattr(settings, k) for k in S.INDEX_SETTINGS})


def bundle_path(model_uri: str, dst: str | Path | None = None) -> Path:
    """A local copy of a logged recommender's bundle directory (Recommender.load reads it)."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=None if dst is None else str(dst))) / \
        "artifacts" / S.BUNDLE


def served_uri(summary: dict) -> str:
    """The URI that loads the model `run` logged: the registered version, else the run's copy."""
    if summary["version"]:
        return f"models:/{summary['registered_model']}/{summary['version']}"
    return summary["model_uri"]


def run(spark, cfg: Config, *, run_id: str, ranker_uri: str | None, users, k: int, exclude_seen: bool,
        champion: bool = False) -> dict:
    """Bundle the models and the snapshot `recommend` used, log and register them.

    Args:
        spark: the session.
        cfg: configuration (rank.candidates, rank.rerank_by, serve.*, the tables, MLflow).
        run_id: the two-tower's training run.
        ranker_uri: the ranker recommend re-ranked with, or None.
        users: the users frame recommend scored (retrieval.data.users_frame), a Spark DataFrame.
        k, exclude_seen: what recommend wrote (the params' defaults).
        champion: both models are their registry champions (recommend chose none by flag): the
            registered version then takes the alias `champion` too, which the service loads by
            default (lakerec.serving.server.default_model_uri).

    Returns:
        {"model_uri", "registered_model", "version" (None when not registered), "run_id", "seconds"}.
    """
    import mlflow
    from pyspark.sql import functions as F

    from lakerec.retrieval import export, tracking
    from lakerec.tables import read_table

    start = time.monotonic()
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    settings = S.Settings(k=k, candidates=cfg.rank.candidates, exclude_seen=bool(exclude_seen),
                          rerank_by=cfg.rank.rerank_by, intention_length=cfg.filter.item_intention_length,
                          candidate_crosses=cfg.rank.candidate_crosses,
                          index=cfg.serve.index, hnsw_m=cfg.serve.hnsw_m, hnsw_ef_search=cfg.serve.hnsw_ef_search,
                          two_tower=f"runs:/{run_id}/{export.MODEL_NAME}", ranker=ranker_uri)
    module, _ = export.load_from_run(run_id)
    train = read_table(spark, cfg.table(T.TRAIN_INTERACTIONS.name))
    items = items_frame(spark, cfg, module, train)
    seen = train.where(F.col("item_index") > 0).select("user_id", "item_index").distinct().toPandas()
    snapshot = users.toPandas()
    contexts = R.user_contexts(spark, cfg).toPandas() if ranker_uri else None
    crosses = None
    if ranker_uri and settings.candidate_crosses == C.COMPUTED:  # the maps recommend's re-ranking learned
        crosses = C.keys_frame(C.learn_keys(read_table(spark, cfg.table(T.TRAIN_IMPRESSIONS.name))))
    if snapshot.empty:
        raise InputDataError(f"{cfg.table(T.USER_VOCAB.name)} has no users: nothing to serve")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        two_tower = Path(mlflow.artifacts.download_artifacts(settings.two_tower, dst_path=str(tmp / "two_tower")))
        ranker = Path(mlflow.artifacts.download_artifacts(ranker_uri, dst_path=str(tmp / "ranker"))) if ranker_uri else None
        bundle = write_bundle(tmp / S.BUNDLE, settings, two_tower, ranker, snapshot, contexts, items, seen, crosses)
        with mlflow.start_run(run_name=STAGE, tags={tracking.TAG_STAGE: STAGE, tracking.TAG_DATABASE: cfg.database}) as r:
            mlflow.log_params({"two_tower": settings.two_tower, "ranker": ranker_uri or "none", "k": k,
                               "candidates": settings.candidates, "exclude_seen": settings.exclude_seen,
                               "rerank_by": settings.rerank_by, "index": settings.index})
            mlflow.log_metrics({"users": len(snapshot), "items": len(items)})
            info = log_bundle(bundle, settings, cfg.mlflow.registered_recommender, snapshot["user_id"].iloc[0])
    version = info.registered_model_version
    if champion and version:
        from mlflow.tracking import MlflowClient

        from lakerec.registry import CHAMPION

        MlflowClient().set_registered_model_alias(cfg.mlflow.registered_recommender, CHAMPION, str(version))
    summary = {"model_uri": info.model_uri, "registered_model": cfg.mlflow.registered_recommender or None,
               "version": version, "run_id": r.info.run_id, "champion": bool(champion and version),
               "seconds": time.monotonic() - start}
    log.info("recommender %s (%s users, %s items, ranker %s) in %.1fs", served_uri(summary), f"{len(snapshot):,}",
             f"{len(items):,}", ranker_uri or "none", summary["seconds"])
    return summary
