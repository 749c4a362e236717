"""Typed configuration: one YAML file per deployment target under conf/, flags override it.

`load_config("conf/local.yml", lake="/tmp/lake2")` returns a frozen `Config`. The dataclass
defaults below are the base; a target's file holds only what differs from them. Every value
is checked once, when a Config is built (from a file, flags or `--set KEY=VALUE`): unknown
keys are refused (a typo must not silently fall back to a default), types are coerced, and
the rules declared on each field (`POSITIVE`, `Literal[...]` choices) raise one ConfigError
that names the flag and the key (`--epochs or train.epochs must be a positive integer, got 0`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin, get_type_hints

import yaml

from lakerec.errors import ConfigError
from lakerec.options import describe

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF = REPO_ROOT / "conf" / "local.yml"


# Field rules, checked by `_validate` whenever a section is built.
POSITIVE = {"min": 1}  # a whole number >= 1
NON_NEGATIVE = {"min": 0}
GREATER_THAN_ZERO = {"gt": 0}  # a number > 0
FRACTION = {"min": 0, "lt": 1}  # 0 <= x < 1
SHARE = {"min": 0, "max": 1}  # 0 <= x <= 1
POSITIVE_EACH = {"each_min": 1, "non_empty": True}  # a non-empty list of whole numbers >= 1


class _Validated:
    """Mixin: check every field against its declared rule and Literal choices after __init__."""

    def __post_init__(self) -> None:
        section = _SECTIONS.get(type(self), "")
        hints = get_type_hints(type(self))
        problems = []
        for f in fields(self):
            value, key = getattr(self, f.name), f"{section}.{f.name}" if section else f.name
            problem = _check(hints[f.name], f.metadata, value)
            if problem:
                problems.append(f"{describe(key)} must be {problem}, got {value!r}")
        if problems:
            raise ConfigError("; ".join(problems))


def _check(hint: Any, rule: Mapping[str, Any], value: Any) -> str | None:
    """What `value` must be, if it breaks its type's choices or its rule; None when it is fine."""
    if get_origin(hint) is Literal and value not in get_args(hint):
        return "one of " + ", ".join(map(str, get_args(hint)))
    if value is None:
        return None
    if "min" in rule and value < rule["min"]:
        return "a positive integer" if rule["min"] == 1 else f"at least {rule['min']}"
    if "max" in rule and value > rule["max"]:
        return f"at most {rule['max']}"
    if "gt" in rule and not value > rule["gt"]:
        return f"> {rule['gt']}"
    if "lt" in rule and not value < rule["lt"]:
        return f"< {rule['lt']}"
    if rule.get("non_empty") and not value:
        return "a non-empty list"
    if "each_min" in rule and any(v < rule["each_min"] for v in value):
        return f"a list of whole numbers >= {rule['each_min']}"
    return None


@dataclass(frozen=True)
class SparkConf(_Validated):
    master: str | None = None  # None: the platform's session (Databricks, Synapse); local[*] on a machine
    app_name: str = "lakerec"
    shuffle_partitions: int = field(default=4, metadata=POSITIVE)
    # The local JVM's heap (its resident memory grows to about this before it collects): sized for a
    # laptop; ingest's cache spills to disk past it, so its peak does not grow with the input.
    driver_memory: str = "4g"
    # A local Hive metastore (Derby) inside the lake, for local targets; platforms have their own catalog.
    local_metastore: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestConf(_Validated):
    # Refused before anything is replaced (exit status 2), unless `force`: a file whose share of
    # quarantined lines exceeds this (gzip bytes saved as .csv quarantine every line) ...
    max_quarantine_share: float = field(default=0.05, metadata={"min": 0, "max": 1})  # 1: never refuse
    # ... or a run that would replace a split with fewer than this share of the rows it holds.
    min_replace_ratio: float = field(default=0.5, metadata=FRACTION)
    force: bool = False


@dataclass(frozen=True)
class FilterConf(_Validated):
    min_item_count: int = field(default=501, metadata=POSITIVE)
    min_user_count: int = field(default=51, metadata=POSITIVE)
    label: Literal["click", "conversion"] = "click"
    kcore: bool = False
    history_length: int = field(default=16, metadata=POSITIVE)  # top-L ids of each history field, by weight
    item_intention_length: int = field(default=8, metadata=POSITIVE)


@dataclass(frozen=True)
class TrainConf(_Validated):
    epochs: int = field(default=3, metadata=POSITIVE)
    batch_size: int = field(default=1024, metadata=POSITIVE)
    embedding_dim: int = field(default=32, metadata=POSITIVE)
    learning_rate: float = field(default=0.05, metadata=GREATER_THAN_ZERO)
    optimizer: Literal["adagrad", "adam", "sgd"] = "adagrad"
    features: Literal["ids", "all"] = "all"
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    temperature: float = field(default=1.0, metadata=GREATER_THAN_ZERO)
    seed: int = 42
    eval_batch_size: int = field(default=4096, metadata=POSITIVE)
    ks: tuple[int, ...] = field(default=(10, 50, 100), metadata=POSITIVE_EACH)
    # training processes: 1 = in the driver; N > 1 = N Spark barrier tasks (retrieval/distributed.py)
    workers: int = field(default=1, metadata=POSITIVE)
    gpu: bool = False  # with workers > 1: one GPU per barrier task (Spark GPU scheduling)
    # MLP over the concatenated features (features: all)
    hidden_units: tuple[int, ...] = field(default=(64,), metadata={"each_min": 1})
    shuffle_buffer: int = field(default=10_000, metadata=NON_NEGATIVE)  # rows in the reader's shuffling queue
    reader_workers: int = field(default=2, metadata=POSITIVE)  # Petastorm reader threads
    monitor_rows: int = field(default=2048, metadata=NON_NEGATIVE)  # test rows scored per epoch (0: off)
    # Popularity-aware scoring (README "Robust across data regimes"): a learned per-item bias
    # added to q.c (exported as one more embedding dimension: q' = [q, 1], c' = [c, b]) ...
    item_bias: bool = True
    # ... and beta * log p_j (p_j: the item's smoothed share of train clicks) added at
    # scoring time only (training still sees the logQ-corrected logits).
    popularity_prior: float = field(default=0.0, metadata=NON_NEGATIVE)
    # Validation slice carved from train_interactions (seeded; a user's only positive stays
    # in train): early stopping and the sweep's metric read it, never the test split. 0 = off.
    validation_fraction: float = field(default=0.1, metadata=FRACTION)
    validation_rows: int = field(default=20_000, metadata=POSITIVE)  # validation rows scored per epoch, at most
    # Stop after N epochs without a better validation metric and keep the best epoch's weights (0 = off).
    early_stopping_patience: int = field(default=2, metadata=NON_NEGATIVE)
    validation_metric: Literal["recall", "ndcg"] = "recall"  # at K = max(ks): early stopping, the sweep

    @property
    def validation_key(self) -> str:
        """The per-epoch log key early stopping and the sweep read: `validation/recall_at_100`."""
        return f"validation/{self.validation_metric}_at_{max(self.ks)}"
    checkpoint_dir: str | None = None  # None: <lake>/checkpoints
    keep_checkpoints: int = field(default=2, metadata=POSITIVE)  # per run, the newest epochs' (retrieval and ranker)
    # A finished run's checkpoints are dropped once its model is exported (nothing resumes it); true keeps them.
    keep_finished_checkpoints: bool = False
    petastorm_cache: str | None = None  # URL; None: file://<lake>/scratch/<pid>/petastorm_cache


def _default_space() -> dict[str, list]:
    return {"learning_rate": [0.05, 0.1], "temperature": [0.5, 1.0], "popularity_prior": [0.0, 0.5]}


@dataclass(frozen=True)
class SweepConf(_Validated):
    """A search over training settings (lakerec.retrieval.sweep), scored on the validation slice."""

    # train key -> the values to try, e.g. {learning_rate: [0.05, 0.1], embedding_dim: [32, 64]}
    space: dict[str, list] = field(default_factory=_default_space)
    method: Literal["grid", "random"] = "grid"  # grid: every combination (a seeded subset past max_trials)
    metric: Literal["recall", "ndcg"] = "recall"  # validation metric at K = max(train.ks)
    max_trials: int = field(default=8, metadata=POSITIVE)
    seed: int = 0
    out: str | None = None  # the overlay's path; None: <lake>/sweeps/<parent run name>.yml


@dataclass(frozen=True)
class EvaluateConf(_Validated):
    # Drop each user's training items from their ranking (metrics and recommendations).
    # None: auto = on for MovieLens tables (train_interactions carries the table property
    # lakerec.split that lakerec.jobs.movielens writes), off otherwise (Ali-CCP: a user can
    # click an item again) and off for runs of the tfrs-tutorial protocol.
    exclude_seen: bool | None = None
    # The Spark ALS baseline (pyspark.ml.recommendation.ALS, implicit feedback) in every table.
    als: bool = True
    als_rank: int = field(default=64, metadata=POSITIVE)
    als_reg_param: float = field(default=1.0, metadata=NON_NEGATIVE)
    als_alpha: float = field(default=40.0, metadata=NON_NEGATIVE)
    als_max_iter: int = field(default=15, metadata=POSITIVE)
    als_seed: int = 42
    als_blocks: int = field(default=4, metadata=POSITIVE)  # user and item blocks (Spark tasks per ALS step)


@dataclass(frozen=True)
class RankConf(_Validated):
    """The ranking stage (lakerec.ranking): a multi-task click/conversion model over train_impressions."""

    # ---- the model and its training (`python -m lakerec.jobs.rank`)
    # ctr: one pCTR head; esmm: pCTR and pCVR heads over every impression, the loss on click
    # (pCTR) and on click-and-conversion (pCTR x pCVR), as in ESMM (SIGIR 2018).
    objective: Literal["ctr", "esmm"] = "esmm"
    epochs: int = field(default=3, metadata=POSITIVE)
    batch_size: int = field(default=2048, metadata=POSITIVE)
    embedding_dim: int = field(default=8, metadata=POSITIVE)  # per categorical field
    learning_rate: float = field(default=0.001, metadata=GREATER_THAN_ZERO)
    optimizer: Literal["adagrad", "adam", "sgd"] = "adam"
    cross_layers: int = field(default=2, metadata=NON_NEGATIVE)  # DCN-v2 cross layers (0: deep part only)
    deep_layers: tuple[int, ...] = field(default=(128, 64), metadata={"each_min": 1})
    # A shallow position tower added to the CTR logit while training; scoring leaves it out.
    position_bias: bool = True
    position_l2: float = field(default=1e-3, metadata=NON_NEGATIVE)  # keeps the position logits centred on 0
    # L2 on the embeddings each training batch looks up (lakerec.ranking.model). Measured and
    # off: on the demo lake its best setting's gain was within the run-to-run spread (README "Ranking").
    embedding_l2: float = field(default=0.0, metadata=NON_NEGATIVE)
    # Share of training rows whose cross fields are blanked (as on a never-impressed pair), so
    # the model also learns to score retrieved candidates, which have none; 1.0 = never use
    # them. Training batches only: scoring is unchanged (lakerec.ranking.cross_dropout).
    cross_dropout: float = field(default=0.0, metadata=SHARE)
    validation_fraction: float = field(default=0.05, metadata=FRACTION)  # slice of train for early stopping
    validation_rows: int = field(default=50_000, metadata=POSITIVE)  # validation rows scored per epoch, at most
    # What early stopping maximises on the validation slice; auto: ctcvr_auc with esmm (it
    # moves with both heads), ctr_auc with ctr.
    validation_metric: Literal["auto", "ctr_auc", "ctcvr_auc"] = "auto"
    early_stopping_patience: int = field(default=1, metadata=NON_NEGATIVE)
    seed: int = 42
    workers: int = field(default=1, metadata=POSITIVE)  # as train.workers
    gpu: bool = False
    shuffle_buffer: int = field(default=20_000, metadata=NON_NEGATIVE)
    reader_workers: int = field(default=2, metadata=POSITIVE)
    # ---- evaluation (`python -m lakerec.jobs.evaluate_ranker`) and the two-stage run
    eval_batch_size: int = field(default=8192, metadata=POSITIVE)
    candidates: int = field(default=200, metadata=POSITIVE)  # retrieved per user, then re-ranked
    # p_click, p_ctcvr (esmm), or expected_clicks = p_click x the item's smoothed share of
    # train impressions (how often it is shown): the clicks a list is judged on happened where
    # items were shown, and pCTR alone, by design, knows nothing of that (lakerec.ranking.rerank).
    rerank_by: Literal["p_click", "p_ctcvr", "expected_clicks"] = "expected_clicks"
    # A candidate's cross fields (user_item_*): computed = from the user's history and the
    # item's side fields, as the log computes them, through maps learned on train_impressions;
    # absent = index 0 / weight 0 for every candidate (lakerec.ranking.candidate_crosses).
    candidate_crosses: Literal["computed", "absent"] = "computed"
    ctr_prior_strength: float = field(default=20.0, metadata=NON_NEGATIVE)  # item-CTR baseline smoothing
    logistic_regression: bool = True  # the Spark MLlib baseline on the same features
    lr_reg_param: float = field(default=0.0, metadata=NON_NEGATIVE)
    lr_max_iter: int = field(default=50, metadata=POSITIVE)
    # `recommend` re-ranks its candidates (rank.candidates per user) with the champion
    # ranker when there is one (lakerec.ranking.rerank), and writes its p_click / p_conversion.
    rerank_recommendations: bool = True
    two_stage: bool = True  # the evaluation also runs retrieval + re-ranking (needs a registered two-tower)


@dataclass(frozen=True)
class MlflowConf(_Validated):
    tracking_uri: str | None = None  # None: sqlite:///<lake>/mlflow.db
    experiment: str = "lakerec"
    registered_model: str = "lakerec-two-tower"
    registered_ranker: str = "lakerec-ranker"  # the ranking model's registry name
    # The versions the stages load (lakerec.registry.resolve); None: each model's `champion` alias.
    model_version: int | None = field(default=None, metadata=POSITIVE)
    ranker_version: int | None = field(default=None, metadata=POSITIVE)
    # The recommender the service answers with (lakerec.serving): both stages and the user snapshot.
    registered_recommender: str = "lakerec-recommender"


@dataclass(frozen=True)
class ServeConf(_Validated):
    """The recommender model (lakerec.serving) and its local server (`python -m lakerec.jobs.serve`)."""

    # exact: q . c over every item (what `recommend` computes); hnsw: a FAISS HNSW graph
    # built when the model loads (lakerec.serving.index), faster on big catalogues.
    index: Literal["exact", "hnsw"] = "exact"
    # The graph's degree and search beam (raised to the depth asked where that is larger):
    # recall@100 against exact on two draws of 100,000 generated items (bench/serve.py) was
    # 0.891 at M 32 / efSearch 256, 0.925 at 32 / 512, 0.947 at 64 / 256, 0.969 and 0.948 at
    # 64 / 512, 0.972 and 0.955 at 64 / 1024 (about 1.7 ms of CPU per query).
    hnsw_m: int = field(default=64, metadata=POSITIVE)
    hnsw_ef_search: int = field(default=1024, metadata=POSITIVE)
    host: str = "127.0.0.1"  # loopback: nothing outside this machine reaches the server unless asked
    port: int = field(default=5000, metadata=POSITIVE)
    workers: int = field(default=1, metadata=POSITIVE)  # server processes, each with its own model copy


@dataclass(frozen=True)
class DeltaConf(_Validated):
    """Table maintenance at the end of a job's writes (lakerec.tables.maintain), before its run is recorded complete."""

    # OPTIMIZE ... ZORDER BY the columns the table registry names (samples by user_id, item_id)
    # after ingest: fewer, clustered files for lookups by user or item. A rewrite of the
    # tables, so off for the small local lakes.
    zorder: bool = False
    # VACUUM ... RETAIN N HOURS after each job's writes: files older versions alone need are
    # deleted (time travel past N hours ends). None: never. Under 168 (Delta's 7-day safety
    # check) is allowed here, for local lakes: no other reader may be on an older version.
    vacuum_retention_hours: float | None = field(default=None, metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class SqlServerConf(_Validated):
    """The lake's SQL endpoint (`python -m lakerec.jobs.sql_server`): Spark's Thrift JDBC/ODBC server."""

    host: str = "127.0.0.1"  # loopback: nothing outside this machine reaches it unless asked
    port: int = field(default=10000, metadata=POSITIVE)  # HiveServer2's usual port


@dataclass(frozen=True)
class Config(_Validated):
    target: str = "local"
    lake: str = "lake"  # lake root: tables, metastore, MLflow store, caches
    database: str = "aliccp"
    raw: str | None = None  # where the raw Ali-CCP files are (local dir, abfss://...)
    # Read tables whose writer's last run did not finish (lakerec.lake_runs), with a warning.
    allow_incomplete: bool = False
    spark: SparkConf = field(default_factory=SparkConf)
    ingest: IngestConf = field(default_factory=IngestConf)
    filter: FilterConf = field(default_factory=FilterConf)
    train: TrainConf = field(default_factory=TrainConf)
    evaluate: EvaluateConf = field(default_factory=EvaluateConf)
    sweep: SweepConf = field(default_factory=SweepConf)
    rank: RankConf = field(default_factory=RankConf)
    mlflow: MlflowConf = field(default_factory=MlflowConf)
    serve: ServeConf = field(default_factory=ServeConf)
    delta: DeltaConf = field(default_factory=DeltaConf)
    sql_server: SqlServerConf = field(default_factory=SqlServerConf)

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


# The key prefix of each section, for messages ("train.epochs").
_SECTIONS = {SparkConf: "spark", IngestConf: "ingest", FilterConf: "filter", TrainConf: "train", EvaluateConf: "evaluate",
             SweepConf: "sweep", RankConf: "rank", MlflowConf: "mlflow", ServeConf: "serve", DeltaConf: "delta",
             SqlServerConf: "sql_server", Config: ""}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        path = f"{where}.{name}" if where else name
        if is_dataclass(hint):
            kwargs[name] = value if isinstance(value, hint) else _build(hint, value or {}, path)
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
    if origin is Literal:
        return value  # the choices are checked with the other rules (_Validated)
    if origin is list:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{where}: expected a non-empty list, got {value!r}")
        return list(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if len(args) == 2 and args[1] is not str:  # e.g. the sweep's space: values kept as YAML gave them
            return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
        # Spark reads "true"/"false": YAML's booleans would otherwise become "True"/"False".
        return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # a widget or env value
            return value.strip().lower() == "true"
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float, str):
        if hint is not str and isinstance(value, bool):
            raise ConfigError(f"{where}: expected a {hint.__name__}, got {value!r}")
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a {hint.__name__}, got {value!r}") from None
    return value


def field_type(key: str) -> Any:
    """The type of a dotted config key (`train.epochs` -> int), Optional unwrapped."""
    cls, hint = Config, None
    for part in key.split("."):
        hints = get_type_hints(cls)
        if part not in hints:
            raise ConfigError(f"unknown config key {key!r}")
        hint = hints[part]
        cls = hint
    args = get_args(hint)
    if args and type(None) in args and get_origin(hint) is not Literal:
        hint = next(a for a in args if a is not type(None))
    return hint


def check_value(key: str, value: Any) -> Any:
    """One setting's value coerced and checked against its field's rule, as building a config would.

    Lets a command-line flag refuse a bad value while arguments are parsed, with the same
    message a config file would get.

    Raises:
        ConfigError: `--epochs or train.epochs must be a positive integer, got 0`.
    """
    section, _, name = key.rpartition(".")
    cls = next((c for c, prefix in _SECTIONS.items() if prefix == section), None)
    if cls is None or name not in {f.name for f in fields(cls)}:
        raise ConfigError(f"unknown config key {key!r}")
    hint = get_type_hints(cls)[name]
    value = _coerce(hint, value, key)
    problem = _check(hint, next(f for f in fields(cls) if f.name == name).metadata, value)
    if problem:
        raise ConfigError(f"{describe(key)} must be {problem}, got {value!r}")
    return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from `--set`: the value is read as YAML (`0.5`, `true`, `[128, 64]`, `null`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. train.temperature=0.5), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(path: str | os.PathLike | None = None, values: Mapping[str, Any] | None = None,
                **overrides: Any) -> Config:
    """Load a target's YAML into a Config; overrides (from flags or `--set`) win.

    Args:
        path: YAML file; defaults to conf/local.yml.
        values: dotted keys (`train.temperature`, `spark.extra.spark.ui.enabled`) to values.
        **overrides: top-level keys (`lake`, `database`, `raw`) or `section__key` pairs
            (`filter__min_item_count=5`). None values are ignored in both, so flags that
            were not given do not override the file.

    Returns:
        The frozen, validated configuration.

    Raises:
        ConfigError: the file is missing or not YAML, a key is unknown, or a value breaks its rule.
    """
    conf_path = Path(path) if path else DEFAULT_CONF
    if not conf_path.is_file():
        raise ConfigError(f"config file {conf_path} not found (pass --conf PATH, e.g. conf/local.yml)")
    try:
        data = yaml.safe_load(conf_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {conf_path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {conf_path}: expected a mapping of sections, got {type(data).__name__}")
    _set_all(data, _dotted(values, overrides))
    return _build(Config, data, "")


def override(cfg: Config, values: Mapping[str, Any] | None = None, **overrides: Any) -> Config:
    """cfg with overrides applied, validated again (arguments as in load_config)."""
    changes = _dotted(values, overrides)
    if not changes:
        return cfg
    data = dataclasses.asdict(cfg)
    _set_all(data, changes)
    return _build(Config, data, "")


def _dotted(values: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = {k.replace("__", ".", 1): v for k, v in overrides.items() if v is not None}
    out.update({k: v for k, v in (values or {}).items() if v is not None})
    return out


def _set_all(data: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Write dotted keys into the nested mapping; a key into a dict setting keeps its dots."""
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if not name:
            data[key] = value
            continue
        node = data.get(section)
        if node is None:
            node = data[section] = {}
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {section} is not a section")
        head, _, rest = name.partition(".")
        if rest and isinstance(node.get(head, {}), dict):  # spark.extra.<a spark key with dots>
            node.setdefault(head, {})
            node[head] = {**(node[head] or {}), rest: value}
        else:
            node[name] = value
