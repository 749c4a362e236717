# Databricks notebook source
# MAGIC %md
# MAGIC # 02 · Train the two-tower model
# MAGIC
# MAGIC Trains on the filter job's tables (`train_interactions`, the vocabularies) exactly as
# MAGIC `python -m lakerec.jobs.train` does: Petastorm feeds TensorFlow Recommenders, every epoch is
# MAGIC checkpointed, the run is logged to MLflow and the model is registered (it becomes the `champion`
# MAGIC only if it beats most-popular and the champion on the validation slice). Then the training
# MAGIC curves, the model-versus-baselines table on `test_interactions`, and a link to the run.
# MAGIC
# MAGIC **Parameters** (widgets on Databricks; `LAKEREC_<NAME>` environment variables locally).
# MAGIC Empty means "as in the config file": `epochs`, `batch_size`, `embedding_dim`, `features` (`ids` or `all`),
# MAGIC `experiment` and `registered_model` (on Unity Catalog `catalog.schema.model`), `run_name`.

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
)
cfg = nb.config(params)
spark = get_spark(cfg)
nb.show_markdown(
    f"Database `{cfg.database}`; {cfg.train.epochs} epoch(s), batch {cfg.train.batch_size}, "
    f"dimension {cfg.train.embedding_dim}, features `{cfg.train.features}`; MLflow `{cfg.tracking_uri}`, "
    f"experiment `{cfg.mlflow.experiment}`"
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

nb.finish(spark, cfg)
