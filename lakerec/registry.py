"""The model registry: which version is live (the `champion` alias), the gate that moves it, and
the one function every stage uses to name the model it loads.

    found = resolve(cfg, TWO_TOWER)            # the champion of mlflow.registered_model
    found = resolve(cfg, RANKER, version=3)    # a chosen version (--ranker-version 3)
    decision = promote_if_better(name, version, run_id, metric="validation/recall_at_100",
                                 baseline="most-popular", baseline_metric="most_popular/validation/recall_at_100")

A new version takes the alias only when its validation metric beats most-popular's (item
CTR's, for the ranker) on the same validation slice, logged in the same run, and the current
champion's, when the champion was validated on the same slice (the run tag TAG_SLICE: the
table version and the slice's settings). A champion validated on another slice (new data, other
settings) has no comparable number: the candidate is then judged against the baseline alone, and
the reason says so. The decision and why go into the run's and the version's tags
(TAG_DECISION, TAG_REASON).

`resolve` reads the alias once and hands back the pinned version (`models:/<name>/<version>`):
a stage that loads the model in several places (the driver and Spark workers) then loads the
same one even if the alias moves meanwhile, and records which.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import NamedTuple

from lakerec.config import Config
from lakerec.errors import LakeRecError
from lakerec.retrieval.tracking import TAG_DATABASE

log = logging.getLogger("lakerec.registry")

CHAMPION = "champion"
TAG_DECISION = "lakerec.champion"  # "promoted" or "not promoted", on the run and the model version
TAG_REASON = "lakerec.champion_reason"
TAG_SLICE = "lakerec.validation_slice"  # what the run's validation metrics were measured on


class Kind(NamedTuple):
    """A registered model kind: its config keys, what trains it, and the flag that picks a version."""

    name_key: str  # mlflow.<field> holding the registry name
    version_key: str  # mlflow.<field> holding a chosen version (None: the champion)
    job: str  # the job that trains and registers it
    flag: str  # the CLI option of version_key


TWO_TOWER = Kind("registered_model", "model_version", "train", "--model-version")
RANKER = Kind("registered_ranker", "ranker_version", "rank", "--ranker-version")


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A registered model version, as a stage loads it.

    Attributes:
        name: the registry name.
        version: its version (a string, as MLflow gives it).
        run_id: the run that logged it.
        uri: `models:/<name>/<version>`, what to load.
        by_alias: it was found as the champion (not chosen by version).
    """

    name: str
    version: str
    run_id: str
    uri: str
    by_alias: bool

    def __str__(self) -> str:
        return f"{self.name}@{CHAMPION} (version {self.version})" if self.by_alias else f"{self.name} version {self.version}"


def resolve(cfg: Config, kind: Kind, version: int | None = None, *, required: bool = True) -> Resolved | None:
    """The model version a stage loads: `version` if given, else cfg's chosen version, else the champion.

    Args:
        cfg: configuration (mlflow.registered_model / registered_ranker, model_version /
            ranker_version, database); MLflow already points at the store (tracking.configure).
        kind: TWO_TOWER or RANKER.
        version: a version that wins over cfg's.
        required: without a chosen version, a missing model or champion raises (True) or gives None.

    Returns:
        The Resolved version, or None (only when not required and nothing was chosen).

    Raises:
        LakeRecError: no such model, version or champion (saying what to run), or the version
            was trained on another database than cfg.database.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = getattr(cfg.mlflow, kind.name_key)
    version = version if version is not None else getattr(cfg.mlflow, kind.version_key)
    train = f"`python -m lakerec.jobs.{kind.job}`"
    if not name:
        if version is None and not required:
            return None
        raise LakeRecError(f"mlflow.{kind.name_key} is empty, so no registered model to load: pass "
                           f"--{kind.name_key.replace('_', '-')} NAME" + (" or --run-id" if kind is TWO_TOWER else ""))
    client = MlflowClient()
    try:
        if version is not None:
            found, by_alias = client.get_model_version(name, str(version)), False
        else:
            found, by_alias = client.get_model_version_by_alias(name, CHAMPION), True
    except MlflowException:
        if version is None and not required:
            return None
        raise LakeRecError(_missing(client, name, version, kind, train)) from None
    database = _run_tags(client, found.run_id).get(TAG_DATABASE)
    if database is not None and database != cfg.database:
        if version is None and not required:
            log.info("%s@%s was trained on database %s, not %s: not used", name, CHAMPION, database, cfg.database)
            return None
        raise LakeRecError(f"{name} version {found.version} was trained on database {database}, not {cfg.database}: "
                           f"register one model per database (--{kind.name_key.replace('_', '-')})")
    return Resolved(name, str(found.version), found.run_id, f"models:/{name}/{found.version}", by_alias)


def _run_tags(client, run_id: str | None) -> dict[str, str]:
    """A run's tags; {} when the version names no run this store holds (registered from elsewhere)."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_run(run_id).data.tags) if run_id else {}
    except MlflowException:
        return {}


def _missing(client, name: str, version: int | None, kind: Kind, train: str) -> str:
    """Why nothing was found, and what to do."""
    from mlflow.exceptions import MlflowException

    try:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        versions = []
    if not versions:
        return f"no model registered as {name}: run {train} first"
    listed = ", ".join(map(str, versions))
    if version is not None:
        return f"{name} has no version {version} (versions: {listed})"
    return (f"{name} has no {CHAMPION} yet (versions {listed}): no version beat its baseline on validation "
            f"(each run's tag {TAG_REASON} says why). Train a better one with {train}, or pick a version "
            f"with {kind.flag} N")


# --------------------------------------------------------------------------- the gate

def validation_slice(table: str, version: int, **settings) -> str:
    """TAG_SLICE's value: the table the slice is carved from, its version and the slice's settings."""
    return " ".join([f"{table}@v{version}", *(f"{k}={v}" for k, v in sorted(settings.items()))])


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether a new version took the champion alias, and why (one line)."""

    promoted: bool
    reason: str

    def __str__(self) -> str:
        return f"{'promoted to' if self.promoted else 'not'} {CHAMPION}: {self.reason}"


def run_metric(run, key: str) -> float | None:
    """A run's validation metric: the best epoch's (`best_<key>`, early stopping) or else its last value."""
    metrics = run.data.metrics
    value = metrics.get(f"best_{key}", metrics.get(key))
    return None if value is None else float(value)


def promote_if_better(name: str, version: str, run_id: str, *, metric: str, baseline: str,
                      baseline_metric: str) -> Decision:
    """Give `name` version `version` the champion alias if it beats the baseline and the champion.

    Both numbers are read back from the store: the candidate's and the baseline's from its run
    (`run_metric` of `metric`, and `baseline_metric`), the champion's from the champion's run.
    The decision is written as tags on the run and on the model version.

    Args:
        name, version: the newly registered model version.
        run_id: the run that logged it (holds the metrics and TAG_SLICE).
        metric: the validation metric, higher is better (`validation/recall_at_100`).
        baseline: the baseline's name in the reason (`most-popular`).
        baseline_metric: the run's metric holding the baseline's value on the same slice.

    Returns:
        The Decision.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    value, base = run_metric(run, metric), run.data.metrics.get(baseline_metric)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    if value is None:
        decision = Decision(False, f"the run logged no {metric} (no validation slice: its validation_fraction is 0)")
    elif base is None:
        decision = Decision(False, f"the run logged no {baseline_metric} to compare {metric} with")
    elif not value > base:
        decision = Decision(False, f"{metric} {value:.4f} does not beat {baseline}'s {base:.4f}")
    elif champion is None:
        decision = Decision(True, f"first {CHAMPION}: {metric} {value:.4f} beats {baseline}'s {base:.4f}")
    else:
        decision = _against_champion(client, run, champion, metric, value, f"{baseline}'s {base:.4f}")
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    for key, value in ((TAG_DECISION, "promoted" if decision.promoted else "not promoted"), (TAG_REASON, decision.reason)):
        client.set_tag(run_id, key, value)
        client.set_model_version_tag(name, version, key, value)
    log.info("%s version %s %s", name, version, decision)
    return decision


def _against_champion(client, run, champion, metric: str, value: float, beaten: str) -> Decision:
    """The decision for a candidate that beat its baseline, against the current champion."""
    from mlflow.exceptions import MlflowException

    try:
        theirs = client.get_run(champion.run_id) if champion.run_id else None
    except MlflowException:  # registered from a run this store does not hold
        theirs = None
    other = run_metric(theirs, metric) if theirs is not None else None
    here = run.data.tags.get(TAG_SLICE)
    there = theirs.data.tags.get(TAG_SLICE) if theirs is not None else None
    if other is None or here is None or here != there:
        why = "logged no " + metric if other is None else f"was validated on another slice ({there or 'unknown'})"
        return Decision(True, f"{metric} {value:.4f} beats {beaten}; champion version {champion.version} {why}, "
                              "so only the baseline was compared")
    if value > other:
        return Decision(True, f"{metric} {value:.4f} beats champion version {champion.version}'s {other:.4f} "
                              f"and {beaten}")
    return Decision(False, f"{metric} {value:.4f} does not beat champion version {champion.version}'s {other:.4f} "
                           f"(it beats {beaten})")
