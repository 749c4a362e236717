"""The sweep stage: a grid or random search over training settings, scored on the validation slice.

    out = run(spark, cfg, base_conf="conf/local.yml")   # the `sweep:` section says what to try

Every trial is `lakerec.retrieval.train.run` with some `train.*` keys changed, as an MLflow
child run under one parent run; its score is the best epoch's validation metric
(`sweep.metric` at K = max(train.ks)) on the slice carved from train_interactions
(`train.validation_fraction`, which must be > 0). The test split is never read for a
choice: trials neither monitor test rows nor evaluate. The best settings are written as a
YAML overlay: the base config file with the best `train.*` keys set, so it is complete and
`--conf <overlay>` is all another job needs.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import yaml

from lakerec.config import DEFAULT_CONF, Config, SweepConf, TrainConf, override
from lakerec.errors import ConfigError

log = logging.getLogger("lakerec.sweep")

# Settings a trial may not change: where it runs and what it stores, not what it learns.
FIXED = ("checkpoint_dir", "petastorm_cache", "workers", "gpu", "validation_fraction", "monitor_rows", "ks")


def check_space(space: Mapping[str, list]) -> None:
    """Raise ConfigError unless every key is a train setting a trial may change, with a list of values."""
    known = {f.name for f in dataclasses.fields(TrainConf)}
    if not space:
        raise ConfigError("sweep.space is empty: give train keys and the values to try, e.g. "
                          "{learning_rate: [0.05, 0.1]}")
    for key, values in space.items():
        name = key.removeprefix("train.")
        if name not in known:
            raise ConfigError(f"sweep.space: {key!r} is not a train setting; known: {sorted(known)}")
        if name in FIXED:
            raise ConfigError(f"sweep.space: train.{name} cannot be swept (it does not change what is learned "
                              "or it would change the validation slice)")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.space.{key}: expected a non-empty list of values, got {values!r}")


def trials(sc: SweepConf) -> list[dict[str, Any]]:
    """The settings of each trial, in order (`train` key -> value).

    grid: every combination, or a seeded random subset of max_trials of them.
    random: up to max_trials distinct draws, each value uniform from its list (seeded).
    """
    check_space(sc.space)
    keys = sorted(k.removeprefix("train.") for k in sc.space)
    lists = [sc.space.get(k, sc.space.get(f"train.{k}")) for k in keys]
    rng = random.Random(sc.seed)
    grid = [dict(zip(keys, combo)) for combo in itertools.product(*lists)]
    if sc.method == "grid":
        if len(grid) <= sc.max_trials:
            return grid
        return [grid[i] for i in sorted(rng.sample(range(len(grid)), sc.max_trials))]
    rng.shuffle(grid)
    return grid[:sc.max_trials]


def given_train_keys(cfg: Config, base_conf: str | Path | None) -> dict[str, Any]:
    """The train keys where cfg differs from its base file (what flags and --set changed)."""
    from lakerec.config import load_config

    base = dataclasses.asdict(load_config(base_conf).train)
    return {k: v for k, v in dataclasses.asdict(cfg.train).items()
            if base.get(k) != v and k not in ("checkpoint_dir", "petastorm_cache", "workers", "gpu")}


def overlay(base_conf: str | Path | None, best: Mapping[str, Any]) -> dict:
    """The base config file's mapping with the best train keys set (what the overlay file holds)."""
    path = Path(base_conf) if base_conf else DEFAULT_CONF
    data = yaml.safe_load(path.read_text()) or {}
    train = dict(data.get("train") or {})
    train.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in best.items()})
    # A config file holds only what differs from the defaults (a default value is left out).
    defaults = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(TrainConf()).items()}
    data["train"] = {k: v for k, v in train.items() if defaults.get(k) != v}
    return data


def write_overlay(path: Path, base_conf: str | Path | None, best: Mapping[str, Any], header: str) -> str:
    """Write the overlay YAML; returns its text."""
    text = header + yaml.safe_dump(overlay(base_conf, best), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def run(spark, cfg: Config, *, base_conf: str | Path | None = None, run_name: str | None = None) -> dict:
    """Run the sweep of `cfg.sweep`; log each trial as a child run; write the best settings' overlay.

    Args:
        spark: the session.
        cfg: configuration; `cfg.sweep` says what to try, `cfg.train` holds the settings that
            the trials share.
        base_conf: the config file cfg came from (the overlay is a copy of it); default conf/local.yml.
        run_name: the parent run's name; default `sweep-<UTC time>`.

    Returns:
        {"run_id" (the parent), "trials": [{"settings", "score", "run_id", "best_epoch"}],
         "best": settings, "score", "overlay": path, "text": the overlay's YAML}.

    Raises:
        ConfigError: the space names an unknown or fixed key, or there is no validation slice.
    """
    import mlflow

    from lakerec.retrieval import tracking, train

    sc = cfg.sweep
    if cfg.train.validation_fraction <= 0:
        raise ConfigError("the sweep scores trials on the validation slice: set train.validation_fraction > 0")
    settings = trials(sc)
    run_name = run_name or f"sweep-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    key = f"validation/{sc.metric}_at_{max(cfg.train.ks)}"
    out_path = Path(sc.out) if sc.out else cfg.lake_path / "sweeps" / f"{run_name}.yml"
    tracking.configure(cfg)
    results = []
    with mlflow.start_run(run_name=run_name) as parent:
        mlflow.set_tags({tracking.TAG_STAGE: "sweep", tracking.TAG_RUN_NAME: run_name,
                         tracking.TAG_DATABASE: cfg.database})
        mlflow.log_params({"sweep.method": sc.method, "sweep.metric": key, "sweep.trials": len(settings),
                           "sweep.seed": sc.seed, "sweep.space": yaml.safe_dump(dict(sc.space), default_flow_style=True,
                                                                                 width=10_000).strip()})
        for i, trial in enumerate(settings, 1):
            # No test rows in a trial: no monitoring sample, no evaluation.
            trial_cfg = override(cfg, {**{f"train.{k}": v for k, v in trial.items()},
                                       "train.validation_metric": sc.metric, "train.monitor_rows": 0})
            log.info("trial %d/%d: %s", i, len(settings), trial)
            out = train.run(spark, trial_cfg, run_name=f"{run_name}-{i:02d}", evaluate_after=False,
                            export_after=False, nested=True)
            fit = out["fit"]
            score = float("nan") if fit.best_value is None else fit.best_value
            results.append({"settings": trial, "score": score, "run_id": out["run_id"], "best_epoch": fit.best_epoch})
            mlflow.log_metric(key, score, step=i)
            log.info("trial %d/%d: %s = %.4f (best epoch %s)", i, len(settings), key, score, fit.best_epoch)
        scored = [r for r in results if r["score"] == r["score"]]
        if not scored:
            raise ConfigError("no trial produced a validation score: is the validation slice empty?")
        best = max(scored, key=lambda r: r["score"])
        # What the trials shared beyond the base file (flags, --set), then the best trial's
        # keys; its best epoch becomes the epoch count, so the overlay trains what was
        # measured (early stopping stays on and may stop it there again).
        chosen = {**given_train_keys(cfg, base_conf), **best["settings"]}
        if best["best_epoch"] and "epochs" not in best["settings"]:
            chosen["epochs"] = best["best_epoch"]
        header = (f"# Written by the sweep {run_name} (MLflow run {parent.info.run_id}): the base config "
                  f"{Path(base_conf) if base_conf else DEFAULT_CONF} with the best of {len(results)} trials,\n"
                  f"# {key} = {best['score']:.4f} on the validation slice. Use with --conf {out_path}\n")
        text = write_overlay(out_path, base_conf, chosen, header)
        mlflow.log_params({f"best.{k}": v for k, v in chosen.items()})
        mlflow.log_metric(f"best_{key}", best["score"])
        mlflow.log_text(text, "sweep/best.yml")
    log.info("sweep %s: best %s = %.4f with %s; overlay %s", run_name, key, best["score"], chosen, out_path)
    return {"run_id": parent.info.run_id, "trials": results, "best": chosen, "score": best["score"],
            "overlay": out_path, "text": text}
