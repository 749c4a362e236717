# Databricks notebook source
# MAGIC %md
# MAGIC # 03 · Recommendations for one user
# MAGIC
# MAGIC Pick a user, look at what they clicked in training, and at their top-K items from the
# MAGIC registered two-tower's `champion` (or the version `model_version`, or a training run's model:
# MAGIC `run_id`). The top-K come from the `recommendations` table that `python -m lakerec.jobs.recommend` writes; if it does not hold this run's
# MAGIC top-K yet, the recommend job runs first.
# MAGIC
# MAGIC **Parameters** (widgets on Databricks; `LAKEREC_<NAME>` environment variables locally):
# MAGIC `user_id` (empty: the user with the most training clicks), `k`, `model_version`, `run_id`.

# COMMAND ----------

# lakerec is installed: `make setup` locally (editable), the bundle's wheel on Databricks.
from lakerec import notebook as nb
from lakerec.spark import get_spark

params = nb.parameters(conf=nb.default_conf(), lake="", database="", user_id="", k="10", model_version="",
                       run_id="")
cfg = nb.config(params)
spark = get_spark(cfg)
user_id = nb.pick_user(spark, cfg, params["user_id"])
k = int(params["k"])
nb.show_markdown(f"User **{user_id}** in `{cfg.database}`")

# COMMAND ----------

# MAGIC %md ## Their history: the items they clicked in the training split

# COMMAND ----------

history = nb.user_history(spark, cfg, user_id).toPandas()
nb.show_markdown(f"{len(history)} training clicks")
nb.show(history)

# COMMAND ----------

# MAGIC %md ## Their top-K
# MAGIC
# MAGIC `in_history`: the user already clicked the item in training; `clicked_in_test`: the user clicked it
# MAGIC in the test split, which the model never saw (a hit).

# COMMAND ----------

run_id, recs = nb.top_k(spark, cfg, user_id, k, params["run_id"] or None)
top = recs.toPandas()
nb.show_markdown(
    f"Top {k} of run `{run_id}`: {int(top['clicked_in_test'].sum())} of them clicked in test, "
    f"{int(top['in_history'].sum())} already in the history"
)
nb.show(top)

# COMMAND ----------

nb.finish(spark, cfg)
