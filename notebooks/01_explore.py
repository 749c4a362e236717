# Databricks notebook source
# MAGIC %md
# MAGIC # 01 · Explore the Ali-CCP lake
# MAGIC
# MAGIC SQL over the Delta tables that `lakerec.jobs.ingest` wrote: the click/conversion funnel, CTR by
# MAGIC position, the items' long tail and how often each field is present. The queries are those of
# MAGIC `lakerec/sql/examples.sql` (run them yourself with `python -m lakerec.jobs.sql -f lakerec/sql/examples.sql`);
# MAGIC the plotting is in `lakerec/notebook_plots.py`.
# MAGIC
# MAGIC **Parameters** (widgets on Databricks; `LAKEREC_<NAME>` environment variables locally):
# MAGIC `conf` the config file, `lake` the lake root, `database` the tables' database (on Unity Catalog `catalog.schema`).

# COMMAND ----------

# lakerec is installed: `make setup` locally (editable), the bundle's wheel on Databricks.
from lakerec import notebook as nb
from lakerec.spark import get_spark

params = nb.parameters(conf=nb.default_conf(), lake="", database="")
cfg = nb.config(params)
spark = get_spark(cfg)
nb.show_markdown(f"Database `{cfg.database}`, lake `{cfg.lake}`, config `{params['conf']}`")

# COMMAND ----------

# MAGIC %md ## The funnel: impressions, clicks and conversions per split

# COMMAND ----------

queries = nb.example_queries(spark, cfg)
funnel = nb.query(queries, "Impressions, clicks and conversions per split").toPandas()
nb.show(funnel)

# COMMAND ----------

# MAGIC %md ## CTR by position
# MAGIC
# MAGIC Position (field 301) is where the item was shown; a lower position gets more attention, so the
# MAGIC click-through rate should fall with it.

# COMMAND ----------

ctr_by_position = nb.query(queries, "CTR and CVR by position").toPandas()
nb.show(ctr_by_position)
nb.show_figure(nb.plot_ctr_by_position(ctr_by_position))

# COMMAND ----------

# MAGIC %md ## The items' long tail
# MAGIC
# MAGIC A few items take most impressions; the deciles table and the curves show how few. This is why the
# MAGIC most-popular baseline is hard to beat, and why the filter job drops rare items.

# COMMAND ----------

deciles = nb.query(queries, "Item popularity deciles").toPandas()
nb.show(deciles)
tail = nb.long_tail(spark, cfg).toPandas()
nb.show_figure(nb.plot_long_tail(tail))

# COMMAND ----------

# MAGIC %md ## Field coverage
# MAGIC
# MAGIC The share of impressions where each field is present (the rest are missing, as in the published
# MAGIC data set): the model's side features are only as useful as their coverage.

# COMMAND ----------

coverage = nb.query(queries, "Field coverage").toPandas()
nb.show(coverage, limit=100)
nb.show_figure(nb.plot_field_coverage(coverage))

# COMMAND ----------

nb.finish(spark, cfg)
