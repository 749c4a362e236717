"""The ranker's baselines, each scoring the same test_impressions rows as the ranker.

Every baseline returns a frame of KEYS plus the score columns it gives (metrics.SCORES):

    item CTR             the item's train CTR smoothed toward the global CTR with prior strength
                         s (rank.ctr_prior_strength): (clicks + s * ctr) / (impressions + s); an
                         item with no train impression gets the global CTR. Its CVR likewise:
                         (conversions + s * cvr) / (clicks + s); p_ctcvr = p_click * p_conversion.
                         Items are matched by raw item_id, so items outside the vocabulary count.
    logistic regression  Spark MLlib LogisticRegression (distributed) on the ranker's features:
                         every categorical index (user, item, side and cross fields, never
                         position) one-hot and every multi-valued field's ids multi-hot, as
                         `field=id` tokens through CountVectorizer (binary, sparse), plus the
                         single-valued cross fields' weights. One model for click on every
                         train impression, one for conversion on the clicked ones.
    two-tower            the retrieval model of the registry (registered_two_tower): its query
                         embedding of the impression's user context . the item's candidate
                         embedding (an item outside the vocabulary gets the OOV row, zero: score
                         0). A raw score: ranking metrics only.
    oracle               on generated data, the generator's true probabilities of each impression
                         (<raw>/oracle/impressions_<split>.parquet): p_click at the shown position,
                         and the position-free p_click as its own row.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lakerec.config import Config, RankConf
from lakerec.schema import fields as F

log = logging.getLogger("lakerec.evaluate_ranker")

KEYS = ("sample_id", "user_id", "item_id", "click", "conversion")
KEYS_DDL = "sample_id bigint, user_id bigint, item_id bigint, click int, conversion int"
# Written by the generator beside its oracle.npz (lakerec.aliccp.oracle), one per split.
ORACLE_FOLDER = "oracle"
ORACLE_IMPRESSIONS = "impressions_{split}.parquet"


# --------------------------------------------------------------------------- item CTR

def item_ctr(train, test, prior_strength: float):
    """Smoothed per-item train CTR and CVR as scores of the test rows (module doc)."""
    from pyspark.sql import functions as Fn

    ctcvr = (Fn.col("click") * Fn.col("conversion"))
    totals = train.agg(Fn.count(Fn.lit(1)).alias("n"), Fn.sum("click").alias("c"), Fn.sum(ctcvr).alias("v")).first()
    n, c, v = int(totals["n"] or 0), int(totals["c"] or 0), int(totals["v"] or 0)
    ctr = c / n if n else 0.0
    cvr = v / c if c else 0.0
    s = float(prior_strength)
    per_item = train.groupBy("item_id").agg(
        Fn.count(Fn.lit(1)).alias("_n"), Fn.sum("click").alias("_c"), Fn.sum(ctcvr).alias("_v"))
    p_click = Fn.when(Fn.col("_n") + s > 0, (Fn.col("_c") + s * ctr) / (Fn.col("_n") + s))
    p_cvr = Fn.when(Fn.col("_c") + s > 0, (Fn.col("_v") + s * cvr) / (Fn.col("_c") + s))
    scored = (test.select(*KEYS).join(per_item, "item_id", "left")
              .select(*KEYS, Fn.coalesce(p_click, Fn.lit(ctr)).alias("p_click"),
                      Fn.coalesce(p_cvr, Fn.lit(cvr)).alias("p_conversion")))
    return scored.withColumn("p_ctcvr", Fn.col("p_click") * Fn.col("p_conversion")), {"global_ctr": ctr,
                                                                                       "global_cvr": cvr}


# --------------------------------------------------------------------------- logistic regression

def ranker_fields() -> tuple[F.Field, ...]:
    """The fields the ranker scores with: ids, side features, cross fields; never the context (position)."""
    ids = (F.id_field(F.QUERY), F.id_field(F.CANDIDATE))
    return ids + F.side_features() + tuple(f for f in F.rank_features() if f.role != F.CONTEXT)


def feature_tokens():
    """One array<string> column of `column=index` tokens: the categorical features, one-hot/multi-hot."""
    from pyspark.sql import functions as Fn

    singles = [f.index_column for f in ranker_fields() if not f.multi]
    parts = [Fn.array(*[Fn.concat(Fn.lit(c + "="), Fn.col(c).cast("string")) for c in singles])]
    for f in ranker_fields():
        if f.multi:
            parts.append(Fn.transform(Fn.filter(Fn.col(f.ids_column), lambda x: x > 0),
                                      lambda x, c=f.ids_column: Fn.concat(Fn.lit(c + "="), x.cast("string"))))
    return Fn.concat(*parts).alias("_tokens")


def weight_columns() -> list[str]:
    """The single-valued cross fields' weights (numeric LR inputs)."""
    return [f.weight_column for f in ranker_fields() if not f.multi and f.weight_column]


def logistic_regression(train, test, conf: RankConf):
    """Spark MLlib logistic regression baselines for click and conversion (module doc).

    Returns:
        (scored test frame, {"features": vector size, "click_iterations", "conversion_iterations"}).
    """
    from pyspark import StorageLevel
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import CountVectorizer, VectorAssembler
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as Fn

    weights = weight_columns()

    def prepared(df):
        return df.select(*KEYS, feature_tokens(), *[Fn.col(w).cast("double").alias(w) for w in weights])

    featurize = Pipeline(stages=[
        CountVectorizer(inputCol="_tokens", outputCol="_cats", binary=True, vocabSize=1 << 20),
        VectorAssembler(inputCols=["_cats", *weights], outputCol="_features"),
    ]).fit(prepared(train))
    fit_rows = (featurize.transform(prepared(train))
                .select("_features", Fn.col("click").cast("double").alias("click"),
                        Fn.col("conversion").cast("double").alias("conversion"))
                .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        def fit(rows, label):
            return LogisticRegression(featuresCol="_features", labelCol=label, maxIter=conf.lr_max_iter,
                                      regParam=conf.lr_reg_param, family="binomial").fit(rows)

        click_model = fit(fit_rows, "click")
        clicked = fit_rows.where("click = 1")
        conv = clicked.agg(Fn.sum("conversion").alias("v"), Fn.count(Fn.lit(1)).alias("n")).first()
        conversion_model = fit(clicked, "conversion") if conv["v"] and conv["v"] < conv["n"] else None
    finally:
        fit_rows.unpersist()
    scored = click_model.transform(featurize.transform(prepared(test)))
    scored = scored.withColumn("p_click", vector_to_array("probability")[1]).drop("probability", "rawPrediction",
                                                                                  "prediction")
    if conversion_model is not None:
        scored = conversion_model.transform(scored).withColumn("p_conversion", vector_to_array("probability")[1])
        scored = scored.withColumn("p_ctcvr", Fn.col("p_click") * Fn.col("p_conversion"))
    else:  # no conversions (or only conversions) among the clicked train rows: no CVR model to fit
        scored = scored.withColumn("p_conversion", Fn.lit(None).cast("double")).withColumn(
            "p_ctcvr", Fn.lit(None).cast("double"))
    info = {"features": len(featurize.stages[0].vocabulary) + len(weights),
            "click_iterations": click_model.summary.totalIterations,
            "conversion_model": conversion_model is not None}
    return scored.select(*KEYS, "p_click", "p_conversion", "p_ctcvr"), info


# --------------------------------------------------------------------------- two-tower

def registered_two_tower(cfg: Config) -> tuple[str | None, str]:
    """(the run id of the registry's two-tower, or None; a note).

    The version mlflow.model_version names (which must exist), else the champion of
    mlflow.registered_model (lakerec.registry.resolve).
    """
    from lakerec import registry

    found = registry.resolve(cfg, registry.TWO_TOWER, required=False)
    if found is None:
        return None, (f"two-tower: no {registry.CHAMPION} of {cfg.mlflow.registered_model or '(no registry name)'} "
                      "for this database: run `python -m lakerec.jobs.train` first")
    return found.run_id, f"two-tower: {found} (run {found.run_id})"


def use_store(tracking_uri: str | None) -> None:
    """Point MLflow at the store inside a Spark worker (the driver's set-up does not travel)."""
    if tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        if tracking_uri.startswith("sqlite:"):
            mlflow.set_registry_uri(tracking_uri)


def load_two_tower(run_id: str, tracking_uri: str | None):
    """(module, FeatureSpec) of a training run's exported model."""
    from lakerec.retrieval import export

    use_store(tracking_uri)
    return export.load_from_run(run_id)


def query_tensors(frame, columns: list[str], lengths: dict[str, int]) -> dict:
    """The two-tower's serving inputs from a pandas frame (arrays stacked to [rows, length])."""
    import numpy as np
    import tensorflow as tf

    out = {}
    for c in columns:
        if c == "user_id":
            out[c] = tf.constant(frame[c].fillna(0).to_numpy(np.int64))
        elif c in lengths:
            dtype = np.float32 if c.endswith("_weights") else np.int32
            values = [np.asarray(v, dtype) for v in frame[c]]
            out[c] = tf.constant(np.stack(values) if values else np.zeros((0, lengths[c]), dtype))
        else:
            out[c] = tf.constant(frame[c].fillna(0).to_numpy(np.int32))
    return out


def two_tower_scores(test, run_id: str, tracking_uri: str | None):
    """q . c of each test row under a training run's exported model (mapInPandas, one load per worker)."""
    import numpy as np
    import pandas as pd

    from lakerec.ranking.evaluate import worker_cached

    _, spec = load_two_tower(run_id, tracking_uri)
    cols, lengths = spec.serving_columns(), spec.array_lengths()
    wanted = list(dict.fromkeys([*KEYS, "item_index", *cols]))

    def score(batches):
        module, _ = worker_cached(("two-tower", run_id), lambda: load_two_tower(run_id, tracking_uri))
        candidates = module.candidates.numpy()
        for pdf in batches:
            q = module.query_embeddings(query_tensors(pdf, cols, lengths)).numpy()
            index = pdf["item_index"].fillna(0).to_numpy(np.int64)
            index = np.where((index > 0) & (index < len(candidates)), index, 0)
            out = pdf[list(KEYS)].copy()
            out["p_click"] = (q * candidates[index]).sum(axis=1).astype(np.float64)
            yield pd.DataFrame(out)

    return test.select(*wanted).mapInPandas(score, f"{KEYS_DDL}, p_click double")


# --------------------------------------------------------------------------- oracle

def oracle_path(cfg: Config, split: str) -> str | None:
    """The generator's per-impression truth for a split, or None when cfg.raw has none."""
    if not cfg.raw:
        return None
    path = f"{cfg.raw.rstrip('/')}/{ORACLE_FOLDER}/{ORACLE_IMPRESSIONS.format(split=split)}"
    if "://" not in path and not Path(path).exists():
        return None
    return path


def oracle_scores(spark, cfg: Config, test, split: str = F.TEST):
    """({"oracle": frame, "oracle (no position)": frame} or {}, a note).

    Omitted with a note when the file is absent or does not cover every test row (a partial
    oracle would be scored on other rows than the rest of the table).
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as Fn

    path = oracle_path(cfg, split)
    if path is None:
        return {}, f"oracle: no {ORACLE_FOLDER}/{ORACLE_IMPRESSIONS.format(split=split)} under raw ({cfg.raw}): " \
                   "omitted (generated data only)"
    try:
        truth = spark.read.parquet(path)
    except AnalysisException:
        return {}, f"oracle: {path} cannot be read: omitted"
    joined = test.select(*KEYS).join(
        truth.select("sample_id", "p_click", "p_click_no_position", "p_conversion_given_click", "p_ctcvr"),
        "sample_id", "inner")
    rows, matched = test.count(), joined.count()
    if matched != rows:
        return {}, f"oracle: {path} covers {matched:,} of {rows:,} test rows: omitted (regenerate the data)"
    conv = Fn.col("p_conversion_given_click").alias("p_conversion")
    return {
        "oracle": joined.select(*KEYS, "p_click", conv, "p_ctcvr"),
        "oracle (no position)": joined.select(*KEYS, Fn.col("p_click_no_position").alias("p_click"), conv,
                                              "p_ctcvr"),
    }, f"oracle: the generator's true probabilities ({path})"
