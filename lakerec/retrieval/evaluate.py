"""The evaluate stage: a training run's exported model on test_interactions, against the baselines.

    result, table = run(spark, cfg)           # the champion of mlflow.registered_model
    result, table = run(spark, cfg, run_id)   # a training run's model

The model is the registered champion (or the version mlflow.model_version names, or a run's
logged model: lakerec.retrieval.export.load_for), what serving loads, ranked over the whole
catalogue by lakerec.retrieval.catalogue_ranks beside most-popular, random and Spark ALS
(lakerec.retrieval.als, fitted here on train_interactions; `evaluate.als: false` skips it);
metrics, the table and the plots go back into the run.

With `evaluate.exclude_seen` (see `exclude_seen`) each user's training items are left out of
their ranking, for the model and every baseline.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from lakerec.config import Config
from lakerec.errors import InputDataError
from lakerec.retrieval import data, tracking
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.evaluate")

# What each ranked row carries besides the query tower's columns.
RANKED_COLUMNS = ["query_key", "item_id", "item_index", "user_index", "is_cold_user", "is_cold_item"]
# Protocols whose published numbers rank the whole catalogue (TFRS does not remove seen items).
KEEP_SEEN_PROTOCOLS = ("tfrs-tutorial",)


def exclude_seen(spark, cfg: Config, protocol: str | None = None) -> bool:
    """Whether to leave each user's training items out of their ranking.

    `evaluate.exclude_seen` when set (true/false, `--exclude-seen/--no-exclude-seen`); when
    None (auto): off for a run of a KEEP_SEEN_PROTOCOLS protocol, on for MovieLens tables,
    off otherwise (Ali-CCP: a user can click an item again). MovieLens tables are told by
    the table property lakerec.split that lakerec.jobs.movielens sets on train_interactions,
    not by the database's name: the property travels with the table whatever the database
    is called (movielens_1m, a Unity Catalog catalog.schema) and no Ali-CCP table has it.

    Args:
        spark: the session.
        cfg: configuration (evaluate.exclude_seen, database).
        protocol: the training run's protocol, if any.
    """
    from lakerec.movielens import SPLIT_PROPERTY

    if cfg.evaluate.exclude_seen is not None:
        return cfg.evaluate.exclude_seen
    if protocol in KEEP_SEEN_PROTOCOLS:
        return False
    return data.table_property(spark, cfg.table(T.TRAIN_INTERACTIONS.name), SPLIT_PROPERTY) is not None


def run_protocol(run_id: str) -> str | None:
    """The protocol a training run recorded (its `protocol` parameter), None for none."""
    from mlflow.tracking import MlflowClient

    value = MlflowClient().get_run(run_id).data.params.get("protocol")
    return None if value in (None, "none") else value


def seen_items(train_df, test_df):
    """The items to leave out of each user's ranking in an evaluation (catalogue_ranks.SeenItems, by user_index).

    Args:
        train_df: train_interactions: every distinct (user, item) pair is seen.
        test_df: test_interactions: a user's test positives stay in their ranking even if
            seen (catalogue_ranks' rule).
    """
    from pyspark.sql import functions as F

    from lakerec.retrieval.catalogue_ranks import SeenItems

    def pairs(df):  # distinct pairs: at most the table's rows, two integers each, through Arrow
        out = df.where(F.col("item_index") > 0).select("user_index", "item_index").distinct().toPandas()
        return out["user_index"].to_numpy(), out["item_index"].to_numpy()

    train_df.sparkSession.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    return SeenItems.from_pairs(*pairs(train_df), kept=pairs(test_df))


def run(spark, cfg: Config, run_id: str | None = None, *, catalogue=None, tables: dict | None = None,
        log_to_mlflow: bool = True) -> tuple[dict, str]:
    """Evaluate a training run's exported model on test_interactions, against the baselines.

    Args:
        spark: the session.
        cfg: configuration (database, `train.ks`, `train.seed`, `evaluate.*`, MLflow store).
        run_id: the training run; default the registry's (export.load_for: mlflow.model_version, else
            the champion of mlflow.registered_model).
        catalogue: item ids and training counts (computed from the tables if None).
        tables: the input DataFrames, if already read.
        log_to_mlflow: log the metrics, the table and the plots into the run.

    Returns:
        (the evaluation dict, the table as text).

    Raises:
        InputDataError: test_interactions is empty.
    """
    from lakerec.retrieval import catalogue_ranks, export

    tracking.configure(cfg)
    module, spec, run_id = export.load_for(cfg, run_id)
    tables = tables or data.read_inputs(spark, cfg, (T.TRAIN_INTERACTIONS.name, T.TEST_INTERACTIONS.name))
    item_ids = module.item_ids.numpy()
    if catalogue is None:
        catalogue = catalogue_ranks.Catalogue(
            item_ids, data.item_train_counts(tables[T.TRAIN_INTERACTIONS.name], len(item_ids)))
    test = tables[T.TEST_INTERACTIONS.name]
    if test.limit(1).count() == 0:
        raise InputDataError(f"{cfg.table(T.TEST_INTERACTIONS.name)} is empty: nothing to evaluate")
    cols = spec.serving_columns()
    wanted = list(dict.fromkeys(RANKED_COLUMNS + cols))
    # A fixed row order (sorted, so Petastorm's files and row groups come in key order):
    # batch composition can move float round-off, and reruns must give the same numbers.
    df = test.select("*", data.query_key_column()).orderBy("query_key", "item_id", "item_index")
    start = time.monotonic()
    train_df = tables[T.TRAIN_INTERACTIONS.name]
    excluding = exclude_seen(spark, cfg, run_protocol(run_id))
    seen = seen_items(train_df, test) if excluding else None
    factors = None
    if cfg.evaluate.als:
        from lakerec.retrieval import als

        factors = als.fit(spark, train_df, cfg.evaluate, spec.num_users, len(item_ids))
    with data.converted(spark, df, cfg, wanted, spec.array_lengths()) as feed:
        # One reader thread: the same batches in the same order every time.
        factory = data.dataset_factory(feed, cfg.train.eval_batch_size, num_epochs=1, shuffle=False, workers=1)
        with factory() as ds:
            rows = catalogue_ranks.collect_ranks(module.query_embeddings, cols, module.candidates.numpy(), ds,
                                                 seen=seen)
    result = catalogue_ranks.evaluate(rows, catalogue, cfg.train.ks, cfg.train.seed, seen=seen, als=factors)
    if factors is not None:
        result["als"] = {"rank": cfg.evaluate.als_rank, "reg_param": cfg.evaluate.als_reg_param,
                         "alpha": cfg.evaluate.als_alpha, "max_iter": cfg.evaluate.als_max_iter,
                         "seed": cfg.evaluate.als_seed, "fit_seconds": factors.seconds}
    result["seconds"] = time.monotonic() - start
    text = catalogue_ranks.format_table(result)
    log.info("evaluated run %s on %s rows in %.1fs", run_id, f"{result['rows']['all']:,}", result["seconds"])
    if log_to_mlflow:
        log_evaluation(run_id, result, text, catalogue.train_counts)
    return result, text


def log_evaluation(run_id: str, result: dict, text: str, train_counts) -> None:
    """Log an evaluation into its training run: metrics, evaluation/ (text, JSON, table), plots/.

    Args:
        run_id: the training run the evaluated model came from.
        result: what catalogue_ranks.evaluate returned.
        text: the table as catalogue_ranks.format_table renders it.
        train_counts: training positives per item index (the popularity plot).
    """
    import mlflow
    import pandas as pd

    from lakerec.retrieval import catalogue_ranks, plots

    table_rows = [
        {"segment": seg, "method": method, "rows": result["rows"][seg], **values}
        for seg, by_method in result["metrics"].items() for method, values in by_method.items()
    ]
    with tracking.in_run(run_id):
        mlflow.log_metrics(catalogue_ranks.flat_metrics(result))
        mlflow.set_tag("lakerec.evaluation", f"exclude_seen={str(result.get('exclude_seen', False)).lower()} "
                                             f"als={'als' in result}".lower())
        if "als" in result:
            mlflow.log_metric("test/als_fit_seconds", result["als"]["fit_seconds"])
        mlflow.log_text(text, "evaluation/evaluation.txt")
        mlflow.log_dict(result, "evaluation/evaluation.json")
        mlflow.log_table(pd.DataFrame(table_rows), "evaluation/evaluation_table.json")
        with tempfile.TemporaryDirectory(prefix="lakerec-plots-") as tmp:
            mlflow.log_artifact(str(plots.recall_curve(result["curves"], Path(tmp) / "recall_at_k.png")), "plots")
            mlflow.log_artifact(str(plots.popularity_long_tail(train_counts, Path(tmp) / "item_popularity.png")),
                                "plots")
