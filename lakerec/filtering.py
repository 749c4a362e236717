"""Frequency filtering, vocabularies and the training tables, in SQL on the lake.

The work is done by the SQL files under lakerec/sql/filter/, numbered in the order they
run; each one defines temporary views the next one reads, and a user can read and run
them (`python -m lakerec.jobs.sql -f FILE --param ...`). This module binds their parameters,
repeats steps 1 and 2 for --kcore, materialises the views that later steps read many
times, and writes the result:

    01_item_counts.sql   keep the train rows whose item has >= min_item_count impressions
    02_user_counts.sql   then the rows whose user has >= min_user_count impressions among them
    03_vocabularies.sql  user_vocab, the kept items, feature_vocab (index 0 = out of vocabulary)
    04_features.sql      positives of both splits, and the rows whose fields are mapped; then the
                         shared ../map_features.sql: side features as indices, top-L histories
    05_tables.sql        item_vocab and the interactions of both splits, and their counts
    06_summary.sql       (for users) the same counts, read back from the written tables

Tables written (Delta, overwritten): user_vocab, item_vocab, feature_vocab,
train_interactions, test_interactions; `filter_runs` gets one row per run (appended).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession

from lakerec.config import Config, FilterConf
from lakerec.errors import LakeRecError
from lakerec.schema import tables as T
from lakerec.schema.fields import SPLITS
from lakerec.spark import named_jobs
from lakerec.sqlfiles import SQL_DIR, bind_view, run_views, view_names
from lakerec import lake_runs
from lakerec.tables import append_table, table_versions, write_table

log = logging.getLogger("lakerec.filter")

OUTPUT_TABLES = tuple(t.name for t in T.TRAINING_INPUTS)  # overwritten by every run
RUNS_TABLE = T.FILTER_RUNS.name  # appended: one row per run
UPSTREAM_TABLES = (T.SAMPLES, T.USER_CONTEXTS)
ROW_COLUMNS = ("sample_id", "user_id", "item_id", "click", "conversion")

# Views that later statements read several times (and k-core rebinds): computed once, then
# held as a local checkpoint so that every reader sees the same rows and the plan stays short.
# (user_vocab, item_vocab and feature_vocab are views here, named after the tables they become.)
# featured_rows, a semi-join of samples read by three statements of map_features.sql: steps 4
# and map_features on 1M impressions 12.7-14.7 s lazy, 11.0-12.4 s checkpointed (side by side).
MATERIALIZED = frozenset({
    "rows_after_items", "kept_rows", "user_order", "item_order", T.USER_VOCAB.name, "kept_items",
    "positives", "featured_rows", "featured", "user_histories", T.ITEM_VOCAB.name, "interactions",
})
# feature_vocab is cached instead (lakerec.sqlfiles.cache_view): map_features.sql joins every
# exploded list to it, and the planner must know how small it really is. Measured on 1M
# impressions, side by side: map_features.sql 16.9-20.6 s checkpointed, 10.1-12.4 s cached.
CACHED = frozenset({T.FEATURE_VOCAB.name})

# The shared step that maps a set of rows' fields through feature_vocab (the impressions job runs it too).
MAP_FEATURES = "map_features.sql"

STEPS_TYPE = T.STEPS_TYPE
RUNS_SCHEMA = T.FILTER_RUNS.ddl


class EmptyFilterError(LakeRecError):
    """The thresholds (or the label) leave nothing to train on."""


@dataclass(frozen=True)
class StepCounts:
    """Rows, users and items before and after one filter step of one round."""

    round: int
    step: str  # "items" or "users"
    threshold: int
    rows_before: int
    rows_after: int
    users_before: int
    users_after: int
    items_before: int
    items_after: int

    @property
    def removed_nothing(self) -> bool:
        return self.rows_after == self.rows_before

    def describe(self) -> str:
        return (
            f"round {self.round} {self.step} (>= {self.threshold}): rows {self.rows_before:,} -> {self.rows_after:,}, "
            f"users {self.users_before:,} -> {self.users_after:,}, items {self.items_before:,} -> {self.items_after:,}"
        )


@dataclass(frozen=True)
class FilterResult:
    """What the frequency filter kept: the `kept_rows` view, and the counts of every step."""

    kept: DataFrame
    steps: tuple[StepCounts, ...]
    rounds: int


@dataclass
class FilterSummary:
    """One filter run, as recorded in `filter_runs` and printed at the end of the job."""

    run_id: str
    started_at: datetime
    duration_s: float
    samples_version: int
    user_contexts_version: int
    label: str
    min_item_count: int
    min_user_count: int
    kcore: bool
    history_length: int
    item_intention_length: int
    rounds: int
    rows_in: int
    users_in: int
    items_in: int
    rows_out: int
    users_out: int
    items_out: int
    steps: list[StepCounts]
    train_positives: int
    test_rows: int
    test_positives: int
    test_cold_user_rows: int
    test_cold_item_rows: int
    test_cold_rows: int
    feature_vocab_sizes: dict[str, int] = field(default_factory=dict)
    output_versions: dict[str, int] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["steps"] = [asdict(s) for s in self.steps]
        return row


def run_sql(
    spark: SparkSession,
    cfg: Config,
    name: str,
    params: dict[str, Any] | None = None,
    skip_views: frozenset[str] = frozenset(),
) -> list[list[Row]]:
    """Run one file of lakerec/sql/filter/ (or MAP_FEATURES); return the rows of each of its SELECT statements.

    Statements that create a view in `skip_views` are not run (the caller bound that view);
    views in MATERIALIZED are checkpointed, and those in CACHED cached, as soon as they are created.
    """
    relative = name if name == MAP_FEATURES else f"filter/{name}"
    return run_views(spark, cfg, relative, params, skip_views, MATERIALIZED, CACHED)


def _step(round_: int, rows: list[list[Row]]) -> StepCounts:
    r = rows[-1][0]
    return StepCounts(round_, r.step, int(r.threshold), r.rows_before, r.rows_after, r.users_before,
                      r.users_after, r.items_before, r.items_after)


def _empty_message(conf: FilterConf, steps: list[StepCounts]) -> str:
    if steps and steps[0].rows_before == 0:
        return "samples has no train rows to filter: ingest the train split first (`python -m lakerec.jobs.ingest`)"
    lines = "; ".join(s.describe() for s in steps)
    return (
        f"the thresholds keep nothing (min_item_count={conf.min_item_count}, min_user_count={conf.min_user_count}"
        f"{', k-core' if conf.kcore else ''}): {lines}. Lower --min-item-count / --min-user-count."
    )


def frequency_filter(spark: SparkSession, cfg: Config, rows: DataFrame | None = None) -> FilterResult:
    """Keep items with >= N impressions, then users with >= M among them; with kcore, repeat.

    A round is the item step (01_item_counts.sql) then the user step (02_user_counts.sql).
    Without kcore one round runs. With kcore, rounds repeat on the rows kept so far and stop
    at the first step after the first round's item step that removes nothing: then every
    kept item has >= N and every kept user >= M impressions among the kept rows.

    Args:
        cfg: `cfg.filter` holds the thresholds and kcore; `cfg.database` the samples table.
        rows: the impressions to filter (`sample_id, user_id, item_id, click, conversion`);
            None reads the train split of `samples` (01_item_counts.sql's first statement).

    Returns:
        The kept rows (the `kept_rows` view), the counts of every step, and the rounds run.

    Raises:
        EmptyFilterError: no rows to filter, or a step keeps nothing (the message has the
            counts of every step so far).
    """
    conf = cfg.filter
    skip: frozenset[str] = frozenset()
    if rows is not None:
        bind_view(rows.select(*ROW_COLUMNS), "filter_rows")
        skip = frozenset({"filter_rows"})
    steps: list[StepCounts] = []
    round_ = 0
    while True:
        round_ += 1
        item_step = _step(round_, run_sql(spark, cfg, "01_item_counts.sql", {"min_item_count": conf.min_item_count}, skip))
        steps.append(item_step)
        log.info(item_step.describe())
        if item_step.rows_after == 0:
            raise EmptyFilterError(_empty_message(conf, steps))
        if conf.kcore and round_ > 1 and item_step.removed_nothing:
            break  # kept_rows of the round before already meets both thresholds
        user_step = _step(round_, run_sql(spark, cfg, "02_user_counts.sql", {"min_user_count": conf.min_user_count}))
        steps.append(user_step)
        log.info(user_step.describe())
        if user_step.rows_after == 0:
            raise EmptyFilterError(_empty_message(conf, steps))
        if not conf.kcore or user_step.removed_nothing:
            break
        spark.table("kept_rows").createOrReplaceTempView("filter_rows")  # already materialized
        skip = frozenset({"filter_rows"})
    return FilterResult(spark.table("kept_rows"), tuple(steps), round_)


def build_tables(spark: SparkSession, cfg: Config) -> tuple[dict[str, DataFrame], Row, dict[str, int]]:
    """Vocabularies and interactions of the rows in `kept_rows` (steps 3 to 5).

    Returns:
        The frames to write by table name (the contract of docs/tables.md), the counts of
        positives and cold test rows, and the size of each side feature's vocabulary.

    Raises:
        EmptyFilterError: no kept train row has the label (no positives to train on).
    """
    conf = cfg.filter
    (sizes,) = run_sql(spark, cfg, "03_vocabularies.sql")
    if not sizes[0][conf.label + "s"]:
        raise EmptyFilterError(
            f"no kept train row has {conf.label} = 1 ({sizes[0].users:,} users, {sizes[0].items:,} items kept): "
            "lower the thresholds or choose another --label"
        )
    params = {
        "label": conf.label,
        "history_length": conf.history_length,
        "item_intention_length": conf.item_intention_length,
    }
    run_sql(spark, cfg, "04_features.sql", params)
    run_sql(spark, cfg, MAP_FEATURES, params)
    counts, feature_sizes = run_sql(spark, cfg, "05_tables.sql", params)
    interactions = spark.table("interactions")
    frames = {
        **{t.name: spark.table(t.name) for t in (T.USER_VOCAB, T.ITEM_VOCAB, T.FEATURE_VOCAB)},
        **{T.INTERACTIONS[s].name: interactions.where(interactions.split == s).drop("split") for s in SPLITS},
    }
    return frames, counts[0], {r.feature: r.ids for r in feature_sizes}


def temp_views() -> list[str]:
    """The temporary views the filter SQL files create (dropped at the end of a run)."""
    files = sorted(p.name for p in (SQL_DIR / "filter").glob("*.sql"))
    return [v for name in files for v in view_names(f"filter/{name}")] + view_names(MAP_FEATURES)


def _append(df: DataFrame, name: str) -> None:
    append_table(df, name)


def run(spark: SparkSession, cfg: Config) -> FilterSummary:
    """Filter the train split of `samples`, build the vocabularies and training tables, record the run.

    Re-running on the same input writes the same tables (Delta overwrites, deterministic
    indices) and appends one more row to `filter_runs`.

    Raises:
        MissingTableError: `samples` or `user_contexts` is missing (run `python -m lakerec.jobs.ingest`).
        EmptyFilterError: the thresholds keep nothing, or no kept row is a positive.

    A threshold out of range or an unknown label is refused earlier, when the config is built.
    """
    conf = cfg.filter
    started, t0 = datetime.now(timezone.utc).replace(tzinfo=None), time.monotonic()
    versions = lake_runs.check_inputs(spark, cfg, UPSTREAM_TABLES)  # present, and each one complete run
    samples = T.SAMPLES.name
    log.info(
        "filtering %s (version %d): min_item_count=%d min_user_count=%d label=%s kcore=%s",
        cfg.table(samples), versions[samples], conf.min_item_count, conf.min_user_count, conf.label, conf.kcore,
    )
    with lake_runs.recorded(spark, cfg, T.FILTER):
        try:
            result = frequency_filter(spark, cfg)
            frames, c, feature_sizes = build_tables(spark, cfg)
            for name in OUTPUT_TABLES:
                with named_jobs(spark, f"filter: write {name}"):
                    write_table(frames[name], cfg.table(name), T.table(name).partitioned_by)
            found = table_versions(spark, [cfg.table(n) for n in OUTPUT_TABLES])  # read side by side, once
            output_versions = {n: found[cfg.table(n)] for n in OUTPUT_TABLES}
        finally:
            for view in temp_views():
                spark.catalog.dropTempView(view)
        summary = _summary(cfg, started, t0, versions, result, c, feature_sizes, output_versions)
        _append(spark.createDataFrame([summary.as_row()], RUNS_SCHEMA), cfg.table(RUNS_TABLE))
    return summary


def _summary(cfg: Config, started: datetime, t0: float, versions: dict[str, int], result: FilterResult, c: Row,
             feature_sizes: dict[str, int], output_versions: dict[str, int]) -> FilterSummary:
    """The run's filter_runs row."""
    conf = cfg.filter

    first, last = result.steps[0], result.steps[-1]
    return FilterSummary(
        run_id=uuid.uuid4().hex,
        started_at=started,
        duration_s=round(time.monotonic() - t0, 3),
        samples_version=versions[T.SAMPLES.name],
        user_contexts_version=versions[T.USER_CONTEXTS.name],
        label=conf.label,
        min_item_count=conf.min_item_count,
        min_user_count=conf.min_user_count,
        kcore=conf.kcore,
        history_length=conf.history_length,
        item_intention_length=conf.item_intention_length,
        rounds=result.rounds,
        rows_in=first.rows_before,
        users_in=first.users_before,
        items_in=first.items_before,
        rows_out=last.rows_after,
        users_out=last.users_after,
        items_out=last.items_after,
        steps=list(result.steps),
        train_positives=c.train_positives,
        test_rows=c.test_rows,
        test_positives=c.test_positives,
        test_cold_user_rows=c.test_cold_user_rows,
        test_cold_item_rows=c.test_cold_item_rows,
        test_cold_rows=c.test_cold_rows,
        feature_vocab_sizes=feature_sizes,
        output_versions=output_versions,
    )


def format_summary(s: FilterSummary) -> str:
    """The short report the job prints: rows in and out per step, positives, cold rows, time."""
    lines = [
        f"filter {s.run_id[:8]}: samples v{s.samples_version}, label={s.label}, "
        f"min_item_count={s.min_item_count}, min_user_count={s.min_user_count}, "
        f"{'k-core' if s.kcore else 'single pass'}, {s.rounds} round{'s' if s.rounds != 1 else ''}",
        *(f"  {step.describe()}" for step in s.steps),
        f"  kept: {s.rows_out:,} of {s.rows_in:,} train rows, {s.users_out:,} of {s.users_in:,} users, "
        f"{s.items_out:,} of {s.items_in:,} items",
        f"  positives ({s.label} = 1): train {s.train_positives:,}, test {s.test_positives:,} "
        f"of {s.test_rows:,} test rows",
        f"  test positives not in the train vocabulary (kept, flagged): unknown user {s.test_cold_user_rows:,}, "
        f"unknown item {s.test_cold_item_rows:,}, either {s.test_cold_rows:,}",
        "  feature vocabularies: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s.feature_vocab_sizes.items())),
        "  wrote " + ", ".join(f"{k} v{v}" for k, v in s.output_versions.items()) + f"; {RUNS_TABLE} +1 row",
        f"  time {s.duration_s:.1f}s",
    ]
    return "\n".join(lines)

