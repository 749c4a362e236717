"""What the notebooks under notebooks/ compute: their SQL, the run's artifacts, a user's top-K.

One section per notebook. The SQL is in named constants with `${database}` and `${param}`
placeholders, filled by `lakerec.sqlfiles.render`, so that a reader sees each statement whole.
`lakerec.notebook` re-exports the functions: the notebooks call them as nb.<name>.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from lakerec.config import Config
from lakerec.errors import LakeRecError
from lakerec.schema import tables as T

# The same logger as lakerec.notebook's: a notebook's messages keep one name.
log = logging.getLogger("lakerec.notebook")


# --------------------------------------------------------------------------- 01_explore

EXAMPLES_FILE = "examples.sql"

# Item popularity as a curve: rank, impressions and the cumulative share of impressions, at
# every rank up to 100 and then at about 1,000 evenly spaced ranks (so the result stays small
# on the full data set's hundreds of thousands of items).
LONG_TAIL_SQL = """
WITH items AS (
  SELECT item_id, count(*) AS impressions
  FROM ${database}.samples
  WHERE split = 'train' AND item_id IS NOT NULL
  GROUP BY item_id
), ranked AS (
  SELECT impressions,
         row_number() OVER (ORDER BY impressions DESC, item_id) AS item_rank,
         sum(impressions) OVER (ORDER BY impressions DESC, item_id ROWS UNBOUNDED PRECEDING) AS cumulative,
         sum(impressions) OVER () AS total,
         count(*) OVER () AS items
  FROM items
)
SELECT item_rank, impressions, items,
       cumulative / total AS share_of_impressions,
       item_rank / items AS share_of_items
FROM ranked
WHERE item_rank <= 100 OR item_rank = items OR item_rank % greatest(1, CAST(items / 1000 AS INT)) = 0
ORDER BY item_rank
"""


def example_queries(spark, cfg: Config) -> dict[str, Any]:
    """The statements of lakerec/sql/examples.sql as DataFrames, by their title.

    Args:
        spark: the notebook's SparkSession.
        cfg: its Config (the database the statements read).

    Returns:
        title -> DataFrame, lazily evaluated, in the file's order.
    """
    from lakerec.sqlfiles import run_statements, sql_file

    return {st.title: df for st, df in run_statements(spark, sql_file(EXAMPLES_FILE), cfg)}


def query(queries: Mapping[str, Any], title_start: str):
    """The DataFrame whose title starts with `title_start`.

    Args:
        queries: what `example_queries` returned.
        title_start: the start of one statement's title.

    Returns:
        That statement's DataFrame.

    Raises:
        LakeRecError: no statement, or more than one, has a title starting so.
    """
    found = [df for title, df in queries.items() if title and title.startswith(title_start)]
    if len(found) != 1:
        raise LakeRecError(f"{EXAMPLES_FILE} has {len(found)} statements titled {title_start!r}...: expected one")
    return found[0]


def long_tail(spark, cfg: Config):
    """The items' popularity curve of LONG_TAIL_SQL over the train split of `samples`.

    Args:
        spark: the notebook's SparkSession.
        cfg: its Config.

    Returns:
        DataFrame of item_rank, impressions, items, share_of_impressions, share_of_items.
    """
    from lakerec.sqlfiles import render

    return spark.sql(render(LONG_TAIL_SQL, cfg))


# --------------------------------------------------------------------------- 02_train

def evaluation_frame(result: dict):
    """The model-versus-baselines table as a pandas frame: one row per segment and method.

    Args:
        result: the training job's evaluation (its "rows" and "metrics" by segment).

    Returns:
        pandas frame of segment, method, rows and one column per metric.
    """
    import pandas as pd

    rows = [
        {"segment": seg, "method": method, "rows": result["rows"][seg], **values}
        for seg, by_method in result["metrics"].items() for method, values in by_method.items()
    ]
    return pd.DataFrame(rows)


def run_plots(run_id: str, into: str | Path) -> list[Path]:
    """Download the run's plots/ artifacts into a folder (the two-tower's curves, recall@K, popularity; the ranker's ROC and calibration).

    Args:
        run_id: the MLflow run.
        into: the folder to download into.

    Returns:
        The PNG files: the training curves, recall@K, then the rest by name.
    """
    import mlflow

    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots", dst_path=str(into))
    first = ("training_curves.png", "recall_at_k.png")  # the curves, then the rest by name
    return sorted(Path(local).glob("*.png"), key=lambda p: (first.index(p.name) if p.name in first else 2, p.name))


def ranking_frame(result: dict):
    """The ranker-versus-baselines table of lakerec.ranking.evaluate as a pandas frame: one row per method.

    Args:
        result: the ranker's evaluation (`lakerec.ranking.evaluate.run`, the rank stage's "evaluation").

    Returns:
        pandas frame of method, rows and one column per metric of the printed table (NaN where
        a method has no value, e.g. CVR AUC of a click-only score), in the table's order.
    """
    import pandas as pd

    from lakerec.ranking.evaluate import COLUMNS, METHODS

    methods = result["methods"]
    return pd.DataFrame([
        {"method": name, "rows": methods[name]["rows"], **{title: methods[name][key] for title, key in COLUMNS}}
        for name in METHODS if name in methods
    ])


def epoch_metrics(run_id: str, names: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()):
    """A run's per-epoch metrics (MLflow step = epoch) as a pandas frame: one row per epoch.

    Args:
        run_id: the MLflow run.
        names: metric names to keep (e.g. "loss").
        prefixes: keep also every metric whose name starts with one of these (e.g. "validation/").

    Returns:
        pandas frame of epoch and one column per kept metric, by epoch.
    """
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    kept = [k for k in sorted(client.get_run(run_id).data.metrics) if k in names or k.startswith(tuple(prefixes))]
    by_epoch: dict[int, dict] = {}
    for name in kept:
        for m in client.get_metric_history(run_id, name):
            by_epoch.setdefault(m.step, {"epoch": m.step})[name] = m.value
    return pd.DataFrame([by_epoch[e] for e in sorted(by_epoch)], columns=["epoch", *kept])


def run_link(spark, cfg: Config, run_id: str) -> str:
    """Markdown that leads to the run: the workspace's MLflow UI, or how to open the local one.

    Args:
        spark: the notebook's SparkSession (on Databricks it knows the workspace's URL).
        cfg: its Config (the tracking URI and experiment).
        run_id: the MLflow run.

    Returns:
        Markdown text for `show_markdown`.
    """
    from mlflow.tracking import MlflowClient

    from lakerec.retrieval import tracking

    tracking.configure(cfg)
    run = MlflowClient().get_run(run_id)
    experiment = run.info.experiment_id
    if cfg.tracking_uri == "databricks" or cfg.tracking_uri.startswith("databricks"):
        host = spark.conf.get("spark.databricks.workspaceUrl", None)
        url = f"https://{host}/ml/experiments/{experiment}/runs/{run_id}"
        return f"MLflow run [{run.info.run_name}]({url}) in experiment `{cfg.mlflow.experiment}`"
    return (
        f"MLflow run `{run.info.run_name}` (`{run_id}`) in experiment `{cfg.mlflow.experiment}`. Open it with\n\n"
        f"    mlflow ui --backend-store-uri {cfg.tracking_uri}\n\n"
        f"then http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}"
    )


# --------------------------------------------------------------------------- 03_recommend

MOST_ACTIVE_USER_SQL = """
SELECT user_id, count(*) AS positives
FROM ${database}.train_interactions
GROUP BY user_id
ORDER BY positives DESC, user_id
LIMIT 1
"""

# The user's training positives, newest first, with each item's popularity.
HISTORY_SQL = """
SELECT t.sample_id, t.item_id, t.item_category_index, t.item_shop_index, t.item_brand_index,
       v.impressions AS item_impressions, v.clicks AS item_clicks
FROM ${database}.train_interactions t
LEFT JOIN ${database}.item_vocab v ON v.item_id = t.item_id
WHERE t.user_id = ${user_id}
ORDER BY t.sample_id DESC
"""

# The user's top-K of one run, each item marked if it is in the user's training history or
# among the user's test positives (a hit).
TOP_K_SQL = """
WITH history AS (
  SELECT DISTINCT item_id FROM ${database}.train_interactions WHERE user_id = ${user_id}
), test_clicks AS (
  SELECT DISTINCT item_id FROM ${database}.test_interactions WHERE user_id = ${user_id}
)
SELECT r.rank, r.item_id, r.score, v.item_category_index, v.item_shop_index, v.item_brand_index,
       v.impressions AS item_impressions,
       h.item_id IS NOT NULL AS in_history,
       t.item_id IS NOT NULL AS clicked_in_test
FROM ${database}.recommendations r
LEFT JOIN ${database}.item_vocab v ON v.item_id = r.item_id
LEFT JOIN history h ON h.item_id = r.item_id
LEFT JOIN test_clicks t ON t.item_id = r.item_id
WHERE r.user_id = ${user_id} AND r.run_id = '${run_id}' AND r.rank <= ${k}
ORDER BY r.rank
"""


def pick_user(spark, cfg: Config, user_id: str | int | None) -> int:
    """The given user (checked against user_vocab), or the one with the most training positives.

    Args:
        spark: the notebook's SparkSession.
        cfg: its Config.
        user_id: a user id, or None or "" for the most active user.

    Returns:
        The user id.

    Raises:
        LakeRecError: the id is not a number or not in user_vocab, or there are no training positives.
    """
    from lakerec.sqlfiles import render
    from lakerec.tables import read_table

    vocab = read_table(spark, cfg.table(T.USER_VOCAB.name), job="filter")
    if user_id not in (None, ""):
        try:
            uid = int(user_id)
        except ValueError:
            raise LakeRecError(f"user_id must be a number, got {user_id!r}") from None
        if vocab.where(f"user_id = {uid}").limit(1).count() == 0:
            some = [r.user_id for r in vocab.orderBy("user_id").limit(5).collect()]
            raise LakeRecError(f"user {uid} is not in {cfg.table(T.USER_VOCAB.name)}; try one of {some}")
        return uid
    row = spark.sql(render(MOST_ACTIVE_USER_SQL, cfg)).first()
    if row is None:
        raise LakeRecError(f"{cfg.table(T.TRAIN_INTERACTIONS.name)} is empty: run the filter job first")
    return int(row.user_id)


def user_history(spark, cfg: Config, user_id: int):
    """The user's training positives, newest first, with each item's popularity (HISTORY_SQL).

    Args:
        spark: the notebook's SparkSession.
        cfg: its Config.
        user_id: the user.

    Returns:
        DataFrame of sample_id, item_id, the item's features, item_impressions, item_clicks.
    """
    from lakerec.sqlfiles import render

    return spark.sql(render(HISTORY_SQL, cfg, {"user_id": str(int(user_id))}))


def _recommendations_cover(spark, cfg: Config, run_id: str, user_id: int, k: int) -> bool:
    """Whether the `recommendations` table holds at least the top k of this run for the user."""
    from lakerec.tables import table_exists

    name = cfg.table(T.RECOMMENDATIONS.name)
    if not table_exists(spark, name):
        return False
    row = spark.sql(
        f"SELECT max(rank) AS deepest FROM {name} WHERE run_id = '{run_id}' AND user_id = {int(user_id)}"
    ).first()
    return row is not None and row.deepest is not None and row.deepest >= k


def top_k(spark, cfg: Config, user_id: int, k: int = 10, run_id: str | None = None):
    """The user's top-k items of a training run (default: the champion two-tower's).

    Read from the `recommendations` table if it holds this run's top-k for the user (the
    workflow's recommend task writes it); otherwise the recommend job runs first.

    Args:
        spark: the notebook's SparkSession.
        cfg: its Config.
        user_id: the user.
        k: how many items.
        run_id: the training run (default: the run of mlflow.model_version, else of the champion of
            mlflow.registered_model; lakerec.registry.resolve).

    Returns:
        (run_id, DataFrame of rank, item_id, score, item features, in_history, clicked_in_test).
    """
    from lakerec import registry
    from lakerec.retrieval import recommend as recommend_job
    from lakerec.sqlfiles import render
    from lakerec.retrieval import tracking

    if k < 1:
        raise LakeRecError(f"k must be at least 1 (got {k})")
    tracking.configure(cfg)
    run_id = run_id or registry.resolve(cfg, registry.TWO_TOWER).run_id
    if not _recommendations_cover(spark, cfg, run_id, user_id, k):
        log.info("recommendations of run %s do not cover the top %d: running the recommend job", run_id, k)
        recommend_job.run(spark, cfg, k=max(k, 100), run_id=run_id)
    sql = render(TOP_K_SQL, cfg, {"user_id": str(int(user_id)), "run_id": run_id, "k": str(int(k))})
    return run_id, spark.sql(sql)
