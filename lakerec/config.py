"""Typed configuration: one YAML file per deployment target under conf/, flags override it.

`load_config("conf/local.yml", lake="/tmp/lake2")` returns a frozen `Config`. Unknown keys
are refused (a typo in a YAML file must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from lakerec.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF = REPO_ROOT / "conf" / "local.yml"


@dataclass(frozen=True)
class SparkConf:
    master: str | None = "local[*]"  # None: use the platform's session (Databricks, Synapse)
    app_name: str = "lakerec"
    shuffle_partitions: int = 4
    driver_memory: str = "8g"
    # Local Hive metastore (Derby) inside the lake. False on platforms with their own catalog.
    local_metastore: bool = True
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FilterConf:
    min_item_count: int = 501
    min_user_count: int = 51
    label: str = "click"
    kcore: bool = False
    history_length: int = 16  # top-L ids of each history field, by weight
    item_intention_length: int = 8


@dataclass(frozen=True)
class TrainConf:
    epochs: int = 3
    batch_size: int = 1024
    embedding_dim: int = 32
    learning_rate: float = 0.05
    optimizer: str = "adagrad"
    features: str = "all"  # ids | all
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    temperature: float = 1.0
    seed: int = 42
    eval_batch_size: int = 4096
    ks: tuple[int, ...] = (10, 50, 100)
    workers: int = 1  # training processes: 1 = in the driver; N > 1 = N Spark barrier tasks (train/distributed.py)
    gpu: bool = False  # with workers > 1: one GPU per barrier task (Spark GPU scheduling)
    hidden_units: tuple[int, ...] = (64,)  # MLP over the concatenated features (features: all)
    shuffle_buffer: int = 10_000  # rows in the Petastorm reader's shuffling queue
    reader_workers: int = 2  # Petastorm reader threads
    monitor_rows: int = 2048  # test rows scored after each epoch for the curves (0: off)
    checkpoint_dir: str | None = None  # None: <lake>/checkpoints
    petastorm_cache: str | None = None  # URL; None: file://<lake>/petastorm_cache


@dataclass(frozen=True)
class MlflowConf:
    tracking_uri: str | None = None  # None: sqlite:///<lake>/mlflow.db
    experiment: str = "lakerec"
    registered_model: str = "lakerec-two-tower"


@dataclass(frozen=True)
class Config:
    target: str = "local"
    lake: str = "lake"  # lake root: tables, metastore, MLflow store, caches
    database: str = "aliccp"
    raw: str | None = None  # where the raw Ali-CCP files are (local dir, abfss://...)
    spark: SparkConf = field(default_factory=SparkConf)
    filter: FilterConf = field(default_factory=FilterConf)
    train: TrainConf = field(default_factory=TrainConf)
    mlflow: MlflowConf = field(default_factory=MlflowConf)

    @property
    def lake_path(self) -> Path:
        """The lake root as an absolute local path (local targets only)."""
        return Path(self.lake).expanduser().resolve()

    def table(self, name: str) -> str:
        """Fully qualified table name in the configured database."""
        return f"{self.database}.{name}"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.lake_path / 'mlflow.db'}"


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        path = f"{where}.{name}" if where else name
        if is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, path)
        else:
            kwargs[name] = _coerce(hint, value, path)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{where}: may not be empty")
    if args and type(None) in args:  # Optional[X]
        hint = next(a for a in args if a is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float, str):
        if hint is not str and isinstance(value, bool):
            raise ConfigError(f"{where}: expected a {hint.__name__}, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a {hint.__name__}, got {value!r}") from None
    return value


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> Config:
    """Load a target's YAML into a Config; keyword overrides (from flags) win.

    Args:
        path: YAML file; defaults to conf/local.yml.
        **overrides: top-level keys (`lake`, `database`, `raw`) or `section__key` pairs
            (`filter__min_item_count=5`). None values are ignored, so argparse defaults
            that were not given do not override the file.

    Returns:
        The frozen configuration.
    """
    conf_path = Path(path) if path else DEFAULT_CONF
    if not conf_path.is_file():
        raise ConfigError(f"config file {conf_path} not found (pass --conf PATH, e.g. conf/local.yml)")
    try:
        data = yaml.safe_load(conf_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {conf_path} is not valid YAML: {e}") from None
    cfg = _build(Config, data, "")
    return override(cfg, **overrides)


def override(cfg: Config, **overrides: Any) -> Config:
    """Return cfg with flag overrides applied (see load_config)."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if "__" in key:
            section, name = key.split("__", 1)
            sections.setdefault(section, {})[name] = value
        else:
            top[key] = value
    for section, values in sections.items():
        current = getattr(cfg, section, None)
        if not is_dataclass(current):
            raise ConfigError(f"unknown config section {section!r}")
        merged = {**dataclasses.asdict(current), **values}
        top[section] = _build(type(current), merged, section)
    if top:
        base = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        base.update(top)
        cfg = Config(**base)
    return cfg
