# Databricks notebook source
# MAGIC %md
# MAGIC # 02 · Train the two-tower model and the ranker
# MAGIC
# MAGIC Trains on the filter job's tables (`train_interactions`, the vocabularies) exactly as
# MAGIC `python -m lakerec.jobs.train` does: Petastorm feeds TensorFlow Recommenders, every epoch is
# MAGIC checkpointed, the run is logged to MLflow and the model is registered (it becomes the `champion`
# MAGIC only if it beats most-popular and the champion on the validation slice). Then the training
# MAGIC curves, the model-versus-baselines table on `test_interactions`, and a link to the run.
# MAGIC Then the ranker on the impressions job's tables (`train_impressions`), as
# MAGIC `python -m lakerec.jobs.rank` does, with its baselines table on `test_impressions` and its curves.
# MAGIC
# MAGIC **Parameters** (widgets on Databricks; `LAKEREC_<NAME>` environment variables locally).
# MAGIC Empty means "as in the config file": `epochs`, `batch_size`, `embedding_dim`, `features` (`ids` or `all`),
# MAGIC `experiment` and `registered_model` (on Unity Catalog `catalog.schema.model`), `run_name`; for the
# MAGIC ranker `rank_epochs`, `rank_batch_size`, `logistic_regression` (`true`/`false`: the MLlib baseline),
# MAGIC `candidates` (per user in the two-stage run) and `registered_ranker`.

# COMMAND ----------

# lakerec is installed: `make setup` locally (editable), the bundle's wheel on Databricks.
from lakerec import notebook as nb
from lakerec.spark import get_spark

params = nb.parameters(
    conf=nb.default_conf(),
    lake="",
    database="",
    epochs="",
    batch_size="",
    embedding_dim="",
    features="",
    experiment="",
    registered_model="",
    run_name="",
    rank_epochs="",
    rank_batch_size="",
    logistic_regression="",
    candidates="",
    registered_ranker="",
)
cfg = nb.config(params)
spark = get_spark(cfg)
nb.show_markdown(
    f"Database `{cfg.database}`; {cfg.train.epochs} epoch(s), batch {cfg.train.batch_size}, "
    f"dimension {cfg.train.embedding_dim}, features `{cfg.train.features}`; MLflow `{cfg.tracking_uri}`, "
    f"experiment `{cfg.mlflow.experiment}`; ranker: {cfg.rank.objective}, {cfg.rank.epochs} epoch(s) at most, "
    f"batch {cfg.rank.batch_size}"
)

# COMMAND ----------

# MAGIC %md ## Train, then evaluate against most-popular and random

# COMMAND ----------

from lakerec.retrieval import train

out = train.run(spark, cfg, run_name=params["run_name"] or None)
run_id = out["run_id"]
nb.publish("run_id", run_id)
print(out["table"])

# COMMAND ----------

# MAGIC %md ## Training curves, recall@K and the popularity of the training positives

# COMMAND ----------

import tempfile

with tempfile.TemporaryDirectory() as tmp:
    plots = nb.run_plots(run_id, tmp)
    for path in plots:
        nb.show_image(path)

# COMMAND ----------

# MAGIC %md ## Model versus baselines
# MAGIC
# MAGIC Full-catalogue retrieval on the test split: recall@K and NDCG@K over every item, for all rows,
# MAGIC warm rows, and cold-start rows (a user or item unseen in training).

# COMMAND ----------

evaluation = nb.evaluation_frame(out["evaluation"])
nb.show(evaluation)

# COMMAND ----------

nb.show_markdown(nb.run_link(spark, cfg, run_id) + f"\n\nRegistered model version: `{out['model_version']}`"
                 + (f" ({out['champion']})" if out["champion"] else ""))

# COMMAND ----------

# MAGIC %md ## The ranker: train on the impressions, then evaluate against its baselines
# MAGIC
# MAGIC Click and conversion heads (`rank.objective`) over every impression of `train_impressions`, early
# MAGIC stopping on a validation slice carved from it; registered as `registered_ranker`. Then
# MAGIC `test_impressions` scored by the ranker and its baselines (item CTR, logistic regression, the
# MAGIC two-tower just trained, the oracle on generated data), and the two-stage run: the two-tower's
# MAGIC candidates re-ranked.

# COMMAND ----------

from lakerec.config import override
from lakerec.ranking import train as rank_train

# The ranker goes with the two-tower just trained (its vocabularies, its two-stage candidates),
# whether or not that version passed the gate.
with_tower = override(cfg, mlflow__model_version=int(out["model_version"])) if out["model_version"] else cfg
rank_out = rank_train.run(spark, with_tower)
rank_run_id = rank_out["run_id"]
nb.publish("rank_run_id", rank_run_id)
print(rank_train.summary_text(rank_out))

# COMMAND ----------

ranking = nb.ranking_frame(rank_out["evaluation"])
nb.show(ranking)

# COMMAND ----------

# MAGIC %md ## The ranker's curves: losses and validation AUC by epoch, click ROC, calibration by decile

# COMMAND ----------

from lakerec.ranking.callbacks import PREFIX as VALIDATION

rank_curves = nb.epoch_metrics(rank_run_id, names=("loss", "ctr_loss", "ctcvr_loss"), prefixes=(VALIDATION,))
nb.show_figure(nb.plot_ranker_curves(rank_curves, validation=VALIDATION))
with tempfile.TemporaryDirectory() as tmp:
    rank_plots = nb.run_plots(rank_run_id, tmp)
    for path in rank_plots:
        nb.show_image(path)

# COMMAND ----------

nb.show_markdown(nb.run_link(spark, cfg, rank_run_id) + f"\n\nRegistered ranker version: `{rank_out['model_version']}`")

# COMMAND ----------

nb.finish(spark, cfg)
