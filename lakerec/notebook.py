"""What the notebooks under notebooks/ do, kept here so that cells stay thin and testable.

The notebooks are Databricks `.py` source (`# Databricks notebook source`, cells split by
`# COMMAND ----------`, markdown as `# MAGIC %md`). They run in three places:

- as Databricks notebooks (opened from the bundle's files, or as the notebook job): their
  parameters are widgets, tables and figures go to `display`, Spark is the cluster's;
- in local Jupyter: convert once, then open the .ipynb (parameters from LAKEREC_<NAME>
  environment variables, else the defaults written in the notebook):

      python -m lakerec.notebook notebooks/02_train.py             # -> notebooks/02_train.ipynb

- headless, executed end to end by nbclient (what the tests do):

      python -m lakerec.notebook notebooks/01_explore.py --execute --param lake=lake

Locally a notebook's Spark session holds the lake's Derby catalog, which admits one process
at a time: each notebook ends with `finish(spark, cfg)`, which stops the local session so
that the next job or notebook can open the lake.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from lakerec.config import REPO_ROOT, Config, load_config, override
from lakerec.errors import LakeRecError

log = logging.getLogger("lakerec.notebook")

HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"
ENV_PREFIX = "LAKEREC_"
KERNEL_NAME = "lakerec-python"

# Notebook parameter -> config key (see lakerec.config.load_config); an empty value keeps
# the config file's setting.
CONFIG_KEYS = {
    "lake": "lake",
    "database": "database",
    "raw": "raw",
    "experiment": "mlflow__experiment",
    "registered_model": "mlflow__registered_model",
    "epochs": "train__epochs",
    "batch_size": "train__batch_size",
    "embedding_dim": "train__embedding_dim",
    "features": "train__features",
    "learning_rate": "train__learning_rate",
}


# --------------------------------------------------------------------------- where we run

def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def _notebook_global(name: str) -> Any:
    """A name the notebook's namespace holds (Databricks puts `dbutils`, `display` there)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.user_ns.get(name)


def _dbutils():
    dbutils = _notebook_global("dbutils")
    if dbutils is None and on_databricks():
        from pyspark.dbutils import DBUtils  # only on Databricks
        from pyspark.sql import SparkSession

        dbutils = DBUtils(SparkSession.builder.getOrCreate())
    return dbutils


# --------------------------------------------------------------------------- parameters and config

def default_conf() -> str:
    """conf/databricks.yml on Databricks, conf/local.yml elsewhere (both in the repository)."""
    return str(REPO_ROOT / "conf" / ("databricks.yml" if on_databricks() else "local.yml"))


def parameters(**defaults: Any) -> dict[str, str]:
    """The notebook's parameters, as strings.

    On Databricks each one is a text widget (a job's base_parameters fill them); elsewhere
    the environment variable LAKEREC_<NAME> wins over the default given here.

    Args:
        **defaults: parameter name -> default value.

    Returns:
        name -> value ("" for an empty one).
    """
    dbutils = _dbutils()
    if dbutils is not None:
        for name, default in defaults.items():
            dbutils.widgets.text(name, "" if default is None else str(default), name)
        return {name: dbutils.widgets.get(name).strip() for name in defaults}
    return {
        name: os.environ.get(f"{ENV_PREFIX}{name.upper()}", "" if default is None else str(default)).strip()
        for name, default in defaults.items()
    }


def _from_repo(path: str) -> str:
    """A relative local path is relative to the repository root (where the jobs run from),
    not to notebooks/ where a notebook's kernel starts; URLs and absolute paths stay."""
    if not path or "://" in path or Path(path).is_absolute():
        return path
    return str(REPO_ROOT / path)


def config(params: Mapping[str, str]) -> Config:
    """The Config a notebook runs with: `conf` (a YAML file) and the parameters that override it."""
    overrides = {CONFIG_KEYS[k]: v for k, v in params.items() if k in CONFIG_KEYS and str(v).strip() != ""}
    cfg = load_config(_from_repo(params.get("conf", "")) or None, **overrides)
    return override(cfg, lake=_from_repo(cfg.lake))


def publish(key: str, value: Any) -> None:
    """Hand a value to the job's next tasks ({{tasks.<task>.values.<key>}}); nothing locally."""
    dbutils = _dbutils()
    if dbutils is not None:
        dbutils.jobs.taskValues.set(key=key, value=value)


def finish(spark, cfg: Config) -> None:
    """End of a notebook: stop a local session (it holds the lake's catalog); keep a cluster's."""
    if cfg.spark.master is not None:
        spark.stop()


# --------------------------------------------------------------------------- display

def show(df, limit: int = 50) -> None:
    """A Spark or pandas DataFrame as a table: Databricks' `display`, else the notebook's HTML."""
    databricks_display = _notebook_global("display") if on_databricks() else None
    if hasattr(df, "sparkSession"):
        df = df.limit(limit)
        if databricks_display is not None:
            databricks_display(df)
            return
        df = df.toPandas()  # a bounded number of rows
    else:
        df = df.head(limit)
    from IPython.display import display

    display(df)


def show_markdown(text: str) -> None:
    from IPython.display import Markdown, display

    display(Markdown(text))


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (no pyplot, no display backend needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def show_figure(fig) -> None:
    from IPython.display import Image, display

    display(Image(data=figure_png(fig), format="png"))


def show_image(path: str | Path) -> None:
    from IPython.display import Image, display

    display(Image(filename=str(path)))


def _figure(width: float = 9, height: float = 4):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


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
    """The statements of lakerec/sql/examples.sql as DataFrames, by their title."""
    from lakerec.sqlfiles import run_statements, sql_file

    return {st.title: df for st, df in run_statements(spark, sql_file(EXAMPLES_FILE), cfg)}


def query(queries: Mapping[str, Any], title_start: str):
    """The DataFrame whose title starts with `title_start`."""
    found = [df for title, df in queries.items() if title and title.startswith(title_start)]
    if len(found) != 1:
        raise LakeRecError(f"{EXAMPLES_FILE} has {len(found)} statements titled {title_start!r}...: expected one")
    return found[0]


def long_tail(spark, cfg: Config):
    from lakerec.sqlfiles import render

    return spark.sql(render(LONG_TAIL_SQL, cfg))


def plot_ctr_by_position(rows):
    """CTR per position (bars) and impressions per position (line), one panel per split.

    Args:
        rows: pandas frame of the "CTR and CVR by position" query (split, position,
            impressions, ctr, ...).
    """
    splits = sorted(rows["split"].unique(), key=lambda s: (s != "train", s))
    fig = _figure(5 * max(1, len(splits)), 4)
    for i, split in enumerate(splits, start=1):
        part = rows[rows["split"] == split].dropna(subset=["position"]).sort_values("position")
        # Positions are feature ids of field 301, in display order: label them as they are.
        labels = part["position"].astype("int64").astype(str).tolist()
        ax = fig.add_subplot(1, len(splits), i)
        ax.bar(labels, part["ctr"].astype(float), color="tab:blue")
        ax.set(xlabel="position (feature id of field 301)", ylabel="CTR", title=f"CTR by position ({split})")
        ax.tick_params(axis="x", labelrotation=30)
        twin = ax.twinx()
        twin.plot(labels, part["impressions"].astype(float), color="tab:orange", marker="o")
        twin.set_ylabel("impressions", color="tab:orange")
    fig.tight_layout()
    return fig


def plot_long_tail(curve):
    """Impressions per item by popularity rank (log-log) and the cumulative share of impressions."""
    fig = _figure(10, 4)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.loglog(curve["item_rank"], curve["impressions"], marker=".", linestyle="-")
    left.set(xlabel="item rank", ylabel="train impressions", title="item popularity (log-log)")
    left.grid(True, alpha=0.3)
    right.plot(curve["share_of_items"], curve["share_of_impressions"])
    right.plot([0, 1], [0, 1], color="gray", linestyle=":", label="equal exposure")
    top = curve[curve["share_of_items"] <= 0.2]
    if len(top):
        share = float(top["share_of_impressions"].iloc[-1])
        right.set_title(f"the top 20% of items get {share:.0%} of the impressions")
    right.set(xlabel="share of items (most shown first)", ylabel="share of impressions")
    right.legend()
    fig.tight_layout()
    return fig


def plot_field_coverage(rows):
    """Share of impressions carrying each field, train and test side by side.

    Args:
        rows: pandas frame of the "Field coverage" query (split, field, coverage).
    """
    table = rows.pivot(index="field", columns="split", values="coverage").astype(float)
    table = table[sorted(table.columns, key=lambda s: (s != "train", s))]
    order = list(dict.fromkeys(rows["field"]))  # the query's field order
    table = table.reindex(order[::-1])
    fig = _figure(8, 0.3 * len(table) + 1.5)
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / max(1, len(table.columns))
    for i, split in enumerate(table.columns):
        ax.barh([y + i * height for y in range(len(table))], table[split], height=height, label=split)
    ax.set_yticks([y + height * (len(table.columns) - 1) / 2 for y in range(len(table))], table.index)
    ax.set(xlabel="share of impressions with the field", xlim=(0, 1.05), title="field coverage")
    ax.legend()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- 02_train

def evaluation_frame(result: dict):
    """The model-versus-baselines table as a pandas frame: one row per segment and method."""
    import pandas as pd

    rows = [
        {"segment": seg, "method": method, "rows": result["rows"][seg], **values}
        for seg, by_method in result["metrics"].items() for method, values in by_method.items()
    ]
    return pd.DataFrame(rows)


def run_plots(run_id: str, into: str | Path) -> list[Path]:
    """Download the run's plots/ artifacts (training curves, recall@K, popularity) into a folder."""
    import mlflow

    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots", dst_path=str(into))
    first = ("training_curves.png", "recall_at_k.png")  # the curves, then the rest by name
    return sorted(Path(local).glob("*.png"), key=lambda p: (first.index(p.name) if p.name in first else 2, p.name))


def run_link(spark, cfg: Config, run_id: str) -> str:
    """Markdown that leads to the run: the workspace's MLflow UI, or how to open the local one."""
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
    """The given user (checked against user_vocab), or the one with the most training positives."""
    from lakerec.sqlfiles import render
    from lakerec.tables import read_table

    vocab = read_table(spark, cfg.table("user_vocab"), job="filter")
    if user_id not in (None, ""):
        try:
            uid = int(user_id)
        except ValueError:
            raise LakeRecError(f"user_id must be a number, got {user_id!r}") from None
        if vocab.where(f"user_id = {uid}").limit(1).count() == 0:
            some = [r.user_id for r in vocab.orderBy("user_id").limit(5).collect()]
            raise LakeRecError(f"user {uid} is not in {cfg.table('user_vocab')}; try one of {some}")
        return uid
    row = spark.sql(render(MOST_ACTIVE_USER_SQL, cfg)).first()
    if row is None:
        raise LakeRecError(f"{cfg.table('train_interactions')} is empty: run the filter job first")
    return int(row.user_id)


def user_history(spark, cfg: Config, user_id: int):
    from lakerec.sqlfiles import render

    return spark.sql(render(HISTORY_SQL, cfg, {"user_id": str(int(user_id))}))


def _recommendations_cover(spark, cfg: Config, run_id: str, user_id: int, k: int) -> bool:
    from lakerec.tables import table_exists

    name = cfg.table("recommendations")
    if not table_exists(spark, name):
        return False
    row = spark.sql(
        f"SELECT max(rank) AS deepest FROM {name} WHERE run_id = '{run_id}' AND user_id = {int(user_id)}"
    ).first()
    return row is not None and row.deepest is not None and row.deepest >= k


def top_k(spark, cfg: Config, user_id: int, k: int = 10, run_id: str | None = None):
    """The user's top-k items of a training run (default: the newest finished one).

    Read from the `recommendations` table if it holds this run's top-k for the user (the
    workflow's recommend task writes it); otherwise the recommend job runs first.

    Returns:
        (run_id, DataFrame of rank, item_id, score, item features, in_history, clicked_in_test).
    """
    from lakerec.retrieval import recommend as recommend_job
    from lakerec.sqlfiles import render
    from lakerec.retrieval import tracking

    if k < 1:
        raise LakeRecError(f"k must be at least 1 (got {k})")
    tracking.configure(cfg)
    run_id = run_id or tracking.latest_training_run(cfg)
    if not _recommendations_cover(spark, cfg, run_id, user_id, k):
        log.info("recommendations of run %s do not cover the top %d: running the recommend job", run_id, k)
        recommend_job.run(spark, cfg, k=max(k, 100), run_id=run_id)
    sql = render(TOP_K_SQL, cfg, {"user_id": str(int(user_id)), "run_id": run_id, "k": str(int(k))})
    return run_id, spark.sql(sql)


# --------------------------------------------------------------------------- source <-> notebook

def read_source(path: str | Path):
    """A Databricks `.py` notebook source as an nbformat v4 notebook.

    Cells are split at `# COMMAND ----------`; a cell whose lines all start with `# MAGIC`
    and whose first line is `%md` becomes a markdown cell; any other magic is refused
    (the notebooks keep to plain Python so that they run the same everywhere).
    """
    import nbformat

    text = Path(path).read_text()
    if not text.startswith(HEADER):
        raise LakeRecError(f"{path} is not Databricks notebook source (its first line must be {HEADER!r})")
    cells = []
    for chunk in re.split(rf"^{re.escape(CELL_SEPARATOR)}[ \t]*$", text[len(HEADER):], flags=re.M):
        source = chunk.strip("\n")
        if not source.strip():
            continue
        lines = source.splitlines()
        if all(ln.startswith(MAGIC) for ln in lines):
            body = [ln[len(MAGIC):].removeprefix(" ") for ln in lines]
            if not body[0].startswith("%md"):
                raise LakeRecError(f"{path}: only %md magic cells are supported, found {body[0].split()[0]!r}")
            body[0] = body[0][3:].lstrip()
            cells.append(nbformat.v4.new_markdown_cell("\n".join(body).strip("\n")))
        else:
            cells.append(nbformat.v4.new_code_cell(source))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _kernel_manager_class(workdir: Path):
    """A kernel manager class whose only kernel runs on this interpreter (the venv's), whatever
    kernelspecs the user has installed; nbclient creates, owns and shuts down its kernel."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets import default

    spec_dir = workdir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "LakeRec (this Python)",
        "language": "python",
    }))

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _this_python_specs(self):
            return KernelSpecManager(kernel_dirs=[str(workdir / "kernels")], ensure_native_kernel=False)

    return ThisPythonKernelManager


def execute(
    path: str | Path,
    params: Mapping[str, str] | None = None,
    *,
    extra_cells: Iterable[str] = (),
    timeout: int = 1800,
    env: Mapping[str, str] | None = None,
):
    """Execute a notebook source end to end in a fresh kernel; raise on the first failing cell.

    Args:
        path: the `.py` source.
        params: notebook parameters, passed as LAKEREC_<NAME> environment variables.
        extra_cells: code cells appended after the notebook's own (the tests read results).
        timeout: seconds one cell may take.
        env: the kernel's environment (default: this process's).

    Returns:
        The executed notebook (outputs included).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (the message shows which and why).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path).resolve()
    nb = read_source(path)
    for source in extra_cells:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    kernel_env = dict(os.environ if env is None else env)
    kernel_env.update({f"{ENV_PREFIX}{k.upper()}": str(v) for k, v in (params or {}).items()})
    kernel_env.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS needs Keras 2, as in the Makefile
    kernel_env.setdefault("PYSPARK_PYTHON", sys.executable)
    with tempfile.TemporaryDirectory(prefix="lakerec-kernel-") as tmp:
        client = NotebookClient(
            nb, kernel_name=KERNEL_NAME, kernel_manager_class=_kernel_manager_class(Path(tmp)),
            timeout=timeout, allow_errors=False, shutdown_kernel="graceful",
            resources={"metadata": {"path": str(path.parent)}},  # the kernel starts in notebooks/
        )
        client.execute(env=kernel_env)
    return nb


def main(argv: list[str] | None = None) -> None:
    from lakerec import cli

    p = argparse.ArgumentParser(
        prog="python -m lakerec.notebook",
        description="Convert a Databricks .py notebook to .ipynb for Jupyter, or execute it end to end.",
    )
    p.add_argument("notebook", help="notebook source, e.g. notebooks/01_explore.py")
    p.add_argument("-o", "--out", help="the .ipynb to write (default: next to the source)")
    p.add_argument("--execute", action="store_true", help="run every cell (fails on the first error)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a notebook parameter, e.g. lake=lake or epochs=1 (repeatable)")
    args = p.parse_args(argv)

    def body():
        import nbformat

        source = Path(args.notebook)
        if not source.is_file():
            raise LakeRecError(f"notebook {source} not found")
        params = {}
        for kv in args.param:
            if "=" not in kv:
                raise LakeRecError(f"--param {kv!r}: expected NAME=VALUE")
            k, v = kv.split("=", 1)
            k = k.strip()
            # Paths on the command line are relative to where it runs, not to the kernel's folder.
            params[k] = str(Path(v).resolve()) if k in ("lake", "conf") and v and "://" not in v else v
        out = Path(args.out) if args.out else source.with_suffix(".ipynb")
        nb = execute(source, params) if args.execute else read_source(source)
        nbformat.write(nb, out)
        print(f"{'executed' if args.execute else 'converted'} {source} -> {out}")

    cli.run_main("notebook", body)


if __name__ == "__main__":
    main()
