"""Named training protocols: presets of `train.*` settings that reproduce a published setup.

Flags and `--set` given with a protocol still win (lakerec.jobs.train applies them on top).
Every setting is validated where the config is built (lakerec.config), not here.
"""

from __future__ import annotations

import logging

from lakerec.config import Config, override
from lakerec.errors import ConfigError
from lakerec.movielens import SPLIT_PROPERTY
from lakerec.retrieval.data import table_property
from lakerec.schema import tables as T

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
        split = table_property(spark, cfg.table(T.TRAIN_INTERACTIONS.name), SPLIT_PROPERTY)
        if split != TUTORIAL_SPLIT:
            log.warning("protocol tfrs-tutorial expects the random 80/20 split with seed 42 "
                        "(python -m lakerec.jobs.movielens --split random); these tables have split=%s", split)
