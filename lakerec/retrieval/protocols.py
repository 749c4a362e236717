"""Named training protocols, and the checks every training setting must pass.

A protocol is a preset of `train.*` settings that reproduces a published setup; flags
given after it still win. `validate_train_conf` refuses settings that cannot train
before any data is read.
"""

from __future__ import annotations

import logging

from lakerec.config import Config, TrainConf, override
from lakerec.errors import ConfigError
from lakerec.movielens import SPLIT_PROPERTY
from lakerec.retrieval.data import table_property
from lakerec.retrieval.features import FEATURE_SETS

log = logging.getLogger("lakerec.train")

# The TFRS basic-retrieval tutorial: ids only, plain in-batch softmax.
PROTOCOLS: dict[str, dict] = {
    "tfrs-tutorial": dict(
        features="ids", embedding_dim=32, optimizer="adagrad", learning_rate=0.1, batch_size=8192, epochs=3,
        logq_correction=False, remove_accidental_hits=False, temperature=1.0,
    ),
}
TUTORIAL_SPLIT = "random:0.2:42"  # what lakerec.jobs.movielens records for its default split


def apply_protocol(cfg: Config, protocol: str | None) -> Config:
    """cfg with a named protocol's training settings (flags applied afterwards still win).

    Raises:
        ConfigError: the protocol is not one of PROTOCOLS.
    """
    if not protocol:
        return cfg
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return override(cfg, **{f"train__{k}": v for k, v in PROTOCOLS[protocol].items()})


def warn_if_split_differs(spark, cfg: Config, protocol: str | None) -> None:
    """Warn when the tables were not split the way the protocol's published numbers were."""
    if protocol == "tfrs-tutorial":
        split = table_property(spark, cfg.table("train_interactions"), SPLIT_PROPERTY)
        if split != TUTORIAL_SPLIT:
            log.warning("protocol tfrs-tutorial expects the random 80/20 split with seed 42 "
                        "(python -m lakerec.jobs.movielens --split random); these tables have split=%s", split)


def validate_train_conf(tc: TrainConf) -> None:
    """Refuse settings that cannot train, with the flag or key to fix.

    Raises:
        ConfigError: naming every setting that is out of range.
    """
    problems = []
    if tc.features not in FEATURE_SETS:
        problems.append(f"--features must be one of {', '.join(FEATURE_SETS)} (got {tc.features!r})")
    for name in ("epochs", "batch_size", "embedding_dim", "eval_batch_size", "reader_workers", "workers"):
        if getattr(tc, name) < 1:
            problems.append(f"train.{name} (--{name.replace('_', '-')}) must be at least 1 (got {getattr(tc, name)})")
    if not tc.temperature > 0:
        problems.append(f"train.temperature must be > 0 (got {tc.temperature})")
    if not tc.learning_rate > 0:
        problems.append(f"train.learning_rate must be > 0 (got {tc.learning_rate})")
    if tc.optimizer.lower() not in ("adagrad", "adam", "sgd"):
        problems.append(f"train.optimizer must be adagrad, adam or sgd (got {tc.optimizer!r})")
    if not tc.ks or any(k < 1 for k in tc.ks):
        problems.append(f"train.ks must be positive cut-offs (got {list(tc.ks)})")
    if any(u < 1 for u in tc.hidden_units):
        problems.append(f"train.hidden_units must be positive (got {list(tc.hidden_units)})")
    if tc.monitor_rows < 0 or tc.shuffle_buffer < 0:
        problems.append("train.monitor_rows and train.shuffle_buffer must be >= 0")
    if problems:
        raise ConfigError("; ".join(problems))
