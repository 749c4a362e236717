"""What the notebooks under notebooks/ call, kept here so that cells stay thin and testable.

The notebooks run in three places, and these helpers hide the difference:

- as Databricks notebooks (opened from the bundle's files, or as the notebook job): their
  parameters are widgets, tables and figures go to `display`, Spark is the cluster's;
- in local Jupyter, on an .ipynb converted by `python -m lakerec.notebook` (see
  `lakerec.notebook_runner`): parameters from LAKEREC_<NAME> environment variables, else
  the defaults written in the notebook;
- headless, executed end to end by nbclient (what the tests do), parameters as locally.

Locally each notebook ends with `finish(spark, cfg)`, which stops the local session to free
the memory its JVM holds (other processes can use the lake meanwhile: its catalog server,
lakerec.metastore, admits several).

What each notebook computes (its SQL, the run's artifacts, a user's top-K) is in
`lakerec.notebook_data`, the figures are in `lakerec.notebook_plots`; both are re-exported
here, so that a notebook imports this one module.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping

from lakerec.config import REPO_ROOT, Config, load_config, override
from lakerec.options import BY_NAME

# The notebooks call everything as nb.<name>: one import in a notebook reaches it all.
from lakerec.notebook_data import (  # noqa: F401
    epoch_metrics,
    evaluation_frame,
    example_queries,
    long_tail,
    pick_user,
    query,
    ranking_frame,
    run_link,
    run_plots,
    top_k,
    user_history,
)
from lakerec.notebook_plots import (  # noqa: F401
    plot_ctr_by_position,
    plot_field_coverage,
    plot_long_tail,
    plot_ranker_curves,
)

# Locally a parameter NAME comes from the environment variable LAKEREC_<NAME>; the runner
# sets them for the kernel it starts.
ENV_PREFIX = "LAKEREC_"

# --------------------------------------------------------------------------- where we run

def on_databricks() -> bool:
    """Whether this process runs on a Databricks cluster (its runtime sets the variable)."""
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
    """Databricks' `dbutils` (widgets, task values), or None outside Databricks."""
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
    """A path as the jobs would read it: a relative local one against the repository root.

    The jobs run from the repository root, a notebook's kernel starts in notebooks/: the
    same `lake` must name the same folder in both. URLs and absolute paths stay as they are.
    """
    if not path or "://" in path or Path(path).is_absolute():
        return path
    return str(REPO_ROOT / path)


def config(params: Mapping[str, str]) -> Config:
    """The Config a notebook runs with: `conf` (a YAML file) and the parameters that override it.

    Args:
        params: what `parameters` returned; a parameter named like an option of
            lakerec.options (`epochs`, `batch_size`, `experiment`...: the flag's name with
            underscores) overrides the file, an empty value keeps the file's setting.

    Returns:
        The Config, its lake resolved against the repository root.
    """
    values = {BY_NAME[k].key: v for k, v in params.items() if k in BY_NAME and str(v).strip() != ""}
    cfg = load_config(_from_repo(params.get("conf", "")) or None, values)
    return override(cfg, lake=_from_repo(cfg.lake))


def publish(key: str, value: Any) -> None:
    """Hand a value to the job's next tasks ({{tasks.<task>.values.<key>}}); nothing locally.

    Args:
        key: the task value's name.
        value: a JSON-serialisable value.
    """
    dbutils = _dbutils()
    if dbutils is not None:
        dbutils.jobs.taskValues.set(key=key, value=value)


def finish(spark, cfg: Config) -> None:
    """End of a notebook: stop a local session (it holds the lake's catalog); keep a cluster's.

    Args:
        spark: the notebook's SparkSession.
        cfg: its Config; a local one names a Spark master.
    """
    if cfg.spark.master is not None:
        spark.stop()


# --------------------------------------------------------------------------- display

def show(df, limit: int = 50) -> None:
    """A Spark or pandas DataFrame as a table: Databricks' `display`, else the notebook's HTML.

    Args:
        df: a Spark or pandas DataFrame.
        limit: the most rows shown (and, for Spark, collected).
    """
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
    """Markdown text as a rendered output of the cell."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (no pyplot, no display backend needed).

    Args:
        fig: a matplotlib Figure, e.g. one of the `plot_*` functions'.

    Returns:
        The PNG file's bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def show_figure(fig) -> None:
    """A matplotlib Figure as a PNG output of the cell (the same on Databricks and Jupyter)."""
    from IPython.display import Image, display

    display(Image(data=figure_png(fig), format="png"))


def show_image(path: str | Path) -> None:
    """An image file (e.g. a run's plot artifact) as an output of the cell."""
    from IPython.display import Image, display

    display(Image(filename=str(path)))

if __name__ == "__main__":
    # `python -m lakerec.notebook` (the command the README documents) converts or executes a
    # notebook source; that tooling lives apart so that the notebooks never import it.
    from lakerec.notebook_runner import main

    main()
