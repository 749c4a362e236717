"""The ranker's evaluation: test_impressions scored by the ranker and its baselines, one table.

    result = run(spark, cfg, model_uri=None, run_id=None)   # default: the champion ranker
    print(result["table"])

Scoring at scale (42M test rows): `mapInPandas` over test_impressions, so rows stream through
Arrow batches of rank.eval_batch_size and nothing reaches the driver. Each Python worker loads
the ranker once (`worker_cached`, kept for the worker's life: Spark reuses Python workers
across tasks) rather than once per batch or per task; a loader runs on the driver only to read
the ranker's `columns` and `objective`. Each scored frame is persisted (memory and disk) while
its metrics read it, so the model runs once per row.

Rows of the table: the ranker, the baselines of lakerec.ranking.baselines (item CTR,
logistic regression, two-tower, and on generated data the oracle), each on the same rows;
columns: lakerec.ranking.metrics. A baseline that cannot be computed says why in a note
under the table. Everything is logged to the MLflow run (metrics, the table, JSON, ROC and
calibration-by-decile plots); run_id default: the run that logged the model, else a new run.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Protocol

from lakerec.config import Config
from lakerec.errors import InputDataError, LakeRecError
from lakerec.ranking import baselines as B
from lakerec.ranking import metrics as M
from lakerec.schema import fields as F
from lakerec.schema import tables as T

log = logging.getLogger("lakerec.evaluate_ranker")

RANKER = "ranker"
ITEM_CTR = "item CTR"
LOGISTIC = "logistic regression"
TWO_TOWER = "two-tower"
METHODS = (RANKER, ITEM_CTR, LOGISTIC, TWO_TOWER, "oracle", "oracle (no position)")
COLUMNS = (("CTR AUC", "ctr_auc"), ("GAUC", "gauc"), ("log loss", "log_loss"), ("calib.", "calibration"),
           ("CVR AUC", "cvr_auc"), ("CTCVR AUC", "ctcvr_auc"))
TAG_STAGE = "lakerec.stage"
STAGE = "evaluate_ranker"
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
# The impression's context (position): a ranker never reads it when scoring.
CONTEXT_COLUMNS = frozenset(c for f in F.select(role=F.CONTEXT) for c in f.model_columns)


class Ranker(Protocol):
    """What lakerec.ranking.scoring.load_ranker returns."""

    columns: tuple[str, ...]
    objective: str

    def predict(self, frame) -> dict:  # p_click, p_conversion (NaN for ctr), p_ctcvr: numpy arrays
        ...


Loader = Callable[[str], Ranker]

_WORKER_CACHE: dict = {}


def worker_cached(key, make: Callable):
    """`make()` once per Python process (a Spark worker lives across tasks), then the same object."""
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = make()
    return _WORKER_CACHE[key]


def default_loader() -> Loader:
    try:
        from lakerec.ranking.scoring import load_ranker
    except ImportError as e:
        raise LakeRecError(f"the ranker's scoring module is not installed ({e}): nothing can load a ranker") from None
    return load_ranker


def default_model_uri(cfg: Config) -> str:
    """The ranker's `models:/<name>/<version>`: mlflow.ranker_version, else the champion of mlflow.registered_ranker."""
    from lakerec import registry

    found = registry.resolve(cfg, registry.RANKER)
    log.info("ranker: %s", found)
    return found.uri


def model_run_id(model_uri: str) -> str | None:
    """The MLflow run that logged a model URI (runs:/ID/... or a registered models:/NAME/VERSION)."""
    m = re.match(r"runs:/([^/]+)/", model_uri)
    if m:
        return m.group(1)
    m = re.match(r"models:/([^/@]+)/(\d+)$", model_uri)
    if m:
        from mlflow.tracking import MlflowClient

        return MlflowClient().get_model_version(m.group(1), m.group(2)).run_id
    return None


def _load(model_uri: str, loader: Loader, tracking_uri: str | None) -> Ranker:
    if model_uri.startswith(("models:", "runs:")):
        B.use_store(tracking_uri)
    return loader(model_uri)


def check_ranker(ranker: Ranker, available) -> list[str]:
    """The ranker's input columns; raises if it reads the position or a column the table lacks."""
    cols = list(ranker.columns)
    reads_context = sorted(set(cols) & CONTEXT_COLUMNS)
    if reads_context:
        raise LakeRecError(f"the ranker reads {reads_context}: position is for training only, never for scoring")
    missing = sorted(set(cols) - set(available))
    if missing:
        raise LakeRecError(f"the ranker reads {missing}, which {T.TEST_IMPRESSIONS.name} does not have")
    return cols


def score_impressions(test, model_uri: str, loader: Loader, tracking_uri: str | None = None,
                      keys: tuple[str, ...] = B.KEYS, keys_ddl: str = B.KEYS_DDL, ranker: Ranker | None = None):
    """(rows scored by the ranker: `keys` + p_click, p_conversion, p_ctcvr; the driver's ranker).

    Streamed with mapInPandas; each worker loads the ranker once (module doc). `keys` are
    the columns carried through (their DDL in keys_ddl): the impression's by default.
    `ranker`: the driver's copy if the caller loaded it already (else it is loaded here).
    """
    import numpy as np
    import pandas as pd

    ranker = ranker if ranker is not None else _load(model_uri, loader, tracking_uri)
    cols = check_ranker(ranker, test.columns)
    wanted = list(dict.fromkeys([*keys, *cols]))

    def predict(batches):
        model = worker_cached(("ranker", model_uri, loader), lambda: _load(model_uri, loader, tracking_uri))
        for pdf in batches:
            out = model.predict(pdf[cols])
            frame = pdf[list(keys)].copy()
            for name in M.SCORES:
                values = np.asarray(out[name], dtype=np.float64) if name in out else np.full(len(pdf), np.nan)
                if values.shape != (len(pdf),):
                    raise ValueError(f"the ranker's {name} has shape {values.shape}, expected ({len(pdf)},)")
                frame[name] = values
            yield pd.DataFrame(frame)

    schema = f"{keys_ddl}, p_click double, p_conversion double, p_ctcvr double"
    return test.select(*wanted).mapInPandas(predict, schema), ranker


def _measured(name: str, frame, probability: bool = True) -> dict:
    from pyspark import StorageLevel

    start = time.monotonic()
    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        out = M.ranking_metrics(frame, probability=probability)
    finally:
        frame.unpersist()
    out["seconds"] = time.monotonic() - start
    log.info("%s: CTR AUC %s in %.1fs", name, _fmt(out["ctr_auc"]), out["seconds"])
    return out


def evaluate_methods(spark, cfg: Config, model_uri: str, loader: Loader, *, train=None, test=None) -> dict:
    """The ranker and every baseline on test_impressions: {"methods": {name: metrics}, "notes", ...}."""
    from lakerec.tables import read_table

    train = train if train is not None else read_table(spark, cfg.table(T.TRAIN_IMPRESSIONS.name))
    test = test if test is not None else read_table(spark, cfg.table(T.TEST_IMPRESSIONS.name))
    if test.limit(1).count() == 0:
        raise InputDataError(f"{cfg.table(T.TEST_IMPRESSIONS.name)} is empty: nothing to evaluate")
    methods, notes = {}, []
    scored, ranker = score_impressions(test, model_uri, loader, cfg.tracking_uri)
    methods[RANKER] = _measured(RANKER, scored)
    frame, info = B.item_ctr(train, test, cfg.rank.ctr_prior_strength)
    methods[ITEM_CTR] = _measured(ITEM_CTR, frame)
    notes.append(f"item CTR: prior strength {cfg.rank.ctr_prior_strength:g} toward the global train CTR "
                 f"{info['global_ctr']:.4f} (CVR {info['global_cvr']:.4f})")
    if cfg.rank.logistic_regression:
        frame, info = B.logistic_regression(train, test, cfg.rank)
        methods[LOGISTIC] = _measured(LOGISTIC, frame)
        notes.append(f"logistic regression: {info['features']:,} features, reg_param {cfg.rank.lr_reg_param:g}"
                     + ("" if info["conversion_model"] else "; no CVR model (no conversions among train clicks)"))
    else:
        notes.append("logistic regression: off (rank.logistic_regression)")
    two_tower_run, note = B.registered_two_tower(cfg)
    notes.append(note)
    if two_tower_run is not None:
        methods[TWO_TOWER] = _measured(TWO_TOWER, B.two_tower_scores(test, two_tower_run, cfg.tracking_uri),
                                       probability=False)
    frames, note = B.oracle_scores(spark, cfg, test)
    notes.append(note)
    for name, frame in frames.items():
        methods[name] = _measured(name, frame)
    return {"methods": methods, "notes": notes, "objective": ranker.objective, "two_tower_run": two_tower_run}


def run(spark, cfg: Config, model_uri: str | None = None, run_id: str | None = None, *,
        loader: Loader | None = None, log_to_mlflow: bool = True, two_stage: bool | None = None,
        oracle=None) -> dict:
    """Evaluate a ranker on test_impressions against the baselines (and the two-stage run).

    Args:
        spark: the session.
        cfg: configuration (database, rank.*, mlflow.*, raw for the oracle).
        model_uri: the ranker (default: default_model_uri, the champion of mlflow.registered_ranker).
        run_id: the MLflow run to log into (default: the one that logged the model, else a new run).
        loader: model URI -> Ranker (default: lakerec.ranking.scoring.load_ranker).
        log_to_mlflow: log metrics, table and plots.
        two_stage: also run lakerec.ranking.two_stage (default rank.two_stage; needs a two-tower).
        oracle: the two-stage oracle (see two_stage.run); None: from cfg.raw if generated.

    Returns:
        {"model_uri", "run_id", "objective", "rows", "methods", "notes", "table", "two_stage", "seconds"}.
    """
    from lakerec.retrieval import tracking

    start = time.monotonic()
    tracking.configure(cfg)
    loader = loader or default_loader()
    model_uri = model_uri or default_model_uri(cfg)
    previous = spark.conf.get(ARROW_BATCH, None)
    spark.conf.set(ARROW_BATCH, str(cfg.rank.eval_batch_size))  # rows per batch the ranker scores
    try:
        result = evaluate_methods(spark, cfg, model_uri, loader)
    finally:
        if previous is None:
            spark.conf.unset(ARROW_BATCH)
        else:
            spark.conf.set(ARROW_BATCH, previous)
    result["model_uri"] = model_uri
    result["rows"] = {k: result["methods"][RANKER][k] for k in ("rows", "clicks", "conversions")}
    result["two_stage"] = None
    if cfg.rank.two_stage if two_stage is None else two_stage:
        from lakerec.ranking import two_stage as TS

        if result["two_tower_run"] is None:
            result["notes"].append("two-stage: skipped, no two-tower registered")
        else:
            result["two_stage"] = TS.run(spark, cfg, model_uri, result["two_tower_run"], loader=loader,
                                         oracle=oracle)
    result["table"] = format_table(result)
    result["seconds"] = time.monotonic() - start
    result["run_id"] = None
    if log_to_mlflow:
        result["run_id"] = log_evaluation(cfg, result, run_id or model_run_id(model_uri))
    return result


def _fmt(value, width: int = 0) -> str:
    text = f"{value:.4f}" if M.finite(value) else "-"
    return f"{text:>{width}}" if width else text


def format_table(result: dict) -> str:
    """Methods as rows, the metrics as columns; notes and the two-stage table underneath."""
    rows = result["rows"]
    ranker = result["methods"][RANKER]
    lines = [f"Ranking on test_impressions: {rows['rows']:,} impressions, {rows['clicks']:,} clicks, "
             f"{rows['conversions']:,} conversions (GAUC over {ranker['gauc_users']:,} users with both labels)"]
    head = f"{'method':<22}" + "".join(f"{title:>11}" for title, _ in COLUMNS)
    lines += [head, "-" * len(head)]
    for name in METHODS:
        if name in result["methods"]:
            label = f"{name} ({result['objective']})" if name == RANKER else name
            lines.append(f"{label:<22}" + "".join(_fmt(result["methods"][name][k], 11) for _, k in COLUMNS))
    base = [m for m in (ITEM_CTR, LOGISTIC, TWO_TOWER) if m in result["methods"]
            and M.finite(result["methods"][m]["ctr_auc"])]
    if base and M.finite(ranker["ctr_auc"]):
        best = max(base, key=lambda m: result["methods"][m]["ctr_auc"])
        mine, theirs = ranker["ctr_auc"], result["methods"][best]["ctr_auc"]
        lines.append(f"ranker {'beats' if mine > theirs else 'does NOT beat'} the best baseline ({best}) on CTR AUC: "
                     f"{mine:.4f} vs {theirs:.4f}")
    lines += [f"  {n}" for n in result["notes"]]
    if result.get("two_stage"):
        from lakerec.ranking import two_stage as TS

        lines += ["", TS.format_table(result["two_stage"])]
    return "\n".join(lines)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def flat_metrics(result: dict) -> dict[str, float]:
    """MLflow-safe names: `rank_test/<method>/<metric>` (and `two_stage/<method>/<metric>`)."""
    flat = {}
    for name, values in result["methods"].items():
        for _, key in COLUMNS:
            if M.finite(values[key]):
                flat[f"rank_test/{_slug(name)}/{key}"] = float(values[key])
    for method, values in ((result.get("two_stage") or {}).get("metrics") or {}).items():
        for key, v in values.items():
            if M.finite(v):
                flat[f"two_stage/{_slug(method)}/{key.replace('@', '_at_')}"] = float(v)
    return flat


def log_evaluation(cfg: Config, result: dict, run_id: str | None) -> str:
    """Log metrics, the table, JSON and the plots into run_id (a new run if None); its id."""
    import mlflow

    from lakerec.retrieval import tracking

    def body():
        mlflow.log_metrics(flat_metrics(result))
        mlflow.log_text(result["table"], "ranking_evaluation/evaluation.txt")
        mlflow.log_dict({k: v for k, v in result.items() if k != "table"}, "ranking_evaluation/evaluation.json")
        with tempfile.TemporaryDirectory(prefix="lakerec-plots-") as tmp:
            mlflow.log_artifact(str(roc_plot(result["methods"], Path(tmp) / "ranking_roc.png")), "plots")
            mlflow.log_artifact(str(calibration_plot(result["methods"], Path(tmp) / "ranking_calibration.png")),
                                "plots")

    if run_id is None:
        with mlflow.start_run(run_name="evaluate-ranker", tags={TAG_STAGE: STAGE,
                                                                tracking.TAG_DATABASE: cfg.database}) as active:
            mlflow.log_param("model_uri", result["model_uri"])
            body()
            return active.info.run_id
    with tracking.in_run(run_id):
        body()
    return run_id


def roc_plot(methods: dict, path: Path) -> Path:
    """CTR ROC curves of every method (from the AUC's quantile ranges)."""
    from lakerec.retrieval import plots  # noqa: F401 (sets the Agg backend)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, values in methods.items():
        if values.get("roc"):
            ax.plot(values["roc"]["fpr"], values["roc"]["tpr"], label=f"{name} ({_fmt(values['ctr_auc'])})")
    ax.plot([0, 1], [0, 1], color="tab:gray", linestyle=":", label="random (0.5)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="click ROC (test_impressions)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def calibration_plot(methods: dict, path: Path) -> Path:
    """Observed click rate against mean predicted p_click, per decile of the prediction."""
    from lakerec.retrieval import plots  # noqa: F401
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for name, values in methods.items():
        if values.get("deciles"):
            x = [d["mean_predicted"] for d in values["deciles"]]
            y = [d["observed"] for d in values["deciles"]]
            top = max(top, *x, *y)
            ax.plot(x, y, marker="o", label=name)
    ax.plot([0, top or 1], [0, top or 1], color="tab:gray", linestyle=":", label="calibrated")
    ax.set(xlabel="mean predicted p_click", ylabel="observed click rate", title="calibration by decile")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
