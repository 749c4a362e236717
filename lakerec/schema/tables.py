"""The table registry: every table and view of the lake, its columns, partitioning and writer.

docs/tables.md describes the same tables for a person (a test keeps the two in step); this
module is what code reads. Columns that hold a field are derived from the field registry
(lakerec.schema.fields), so a new field shows up in every table that carries it.

    from lakerec.schema import tables as T

    T.SAMPLES.name                 # "samples": name a table without spelling it
    cfg.table(T.SAMPLES.name)      # "aliccp.samples"
    T.SAMPLES.ddl                  # "split string, sample_id bigint, ..." for spark.createDataFrame
    T.SAMPLES.partitioned_by       # ("split",)
    T.SAMPLES.job                  # "ingest": `python -m lakerec.jobs.ingest` writes it
    T.table("user_vocab")          # look one up by name (KeyError naming the known ones)
    T.INTERACTIONS[T.TEST]         # test_interactions

Types are Spark SQL types as `DataType.simpleString()` prints them, which is also DDL that
`spark.createDataFrame(rows, T.X.ddl)` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from lakerec.schema import fields as F
from lakerec.schema.fields import CANDIDATE, COMMON, QUERY, SKELETON, TEST, TRAIN

WEIGHTED_IDS = "array<struct<id:bigint,weight:double>>"  # `{id, weight}` in docs/tables.md
# The features of a line its named columns do not hold exactly (lakerec.aliccp.parse): a field
# the registry does not know, or a plain field whose VALUE is not 1.0. `{field, id, weight}`.
OTHER_FEATURES = "other_features"
OTHER_FEATURES_TYPE = "array<struct<field:string,id:bigint,weight:double>>"
INDEX = "int"
IDS = "array<int>"
WEIGHTS = "array<float>"

# The jobs (`python -m lakerec.jobs.<job>`) that write tables.
INGEST = "ingest"
FILTER = "filter"
MOVIELENS = "movielens"
RECOMMEND = "recommend"
IMPRESSIONS = "impressions"


@dataclass(frozen=True)
class Column:
    """One column: its name, Spark SQL type and what it holds (one line)."""

    name: str
    type: str
    comment: str = ""


@dataclass(frozen=True)
class Table:
    """One table (or view) of the lake.

    Attributes:
        name: the table's name in the configured database (`cfg.table(name)` qualifies it).
        columns: in the order the writing job writes them.
        job: the job that writes it (`python -m lakerec.jobs.<job>`), named when the table is missing.
        grain: what one row is.
        partitioned_by: Delta partition columns.
        view: a view over other tables, not stored data.
        also_written_by: other jobs writing the same schema (MovieLens, into its own database).
        zorder_by: the columns `OPTIMIZE ... ZORDER BY` clusters the table's files by, when
            `delta.zorder` is on (lakerec.tables.maintain); () for none.
        stats_columns: the columns Delta keeps file statistics of (min, max, nulls), which
            queries skip files by (`delta.dataSkippingStatsColumns`); () for Delta's default,
            the first 32. Collecting them is a cost of every write, so a wide table names
            its keys and Z-order columns only.
    """

    name: str
    columns: tuple[Column, ...]
    job: str
    grain: str
    partitioned_by: tuple[str, ...] = ()
    view: bool = False
    also_written_by: tuple[str, ...] = ()
    zorder_by: tuple[str, ...] = ()
    stats_columns: tuple[str, ...] = ()

    def __post_init__(self):
        names = self.column_names
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate columns")
        missing = [p for p in self.partitioned_by if p not in names]
        if missing:
            raise ValueError(f"{self.name}: partition columns {missing} are not columns")
        wrong = [z for z in self.zorder_by if z not in names or z in self.partitioned_by]
        if wrong:
            raise ValueError(f"{self.name}: Z-order columns {wrong} are not columns, or are partition columns")
        unknown = [c for c in self.stats_columns if c not in names]
        unkept = [z for z in self.zorder_by if self.stats_columns and z not in self.stats_columns]
        if unknown or unkept:  # Z-ordering needs the statistics of its columns
            raise ValueError(f"{self.name}: statistics columns {unknown} are not columns, or Z-order columns "
                             f"{unkept} have no statistics")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def ddl(self) -> str:
        """`name type, ...`: a schema for spark.createDataFrame."""
        return ", ".join(f"{c.name} {c.type}" for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}; columns are {', '.join(self.column_names)}")

    def qualified(self, database: str) -> str:
        return f"{database}.{self.name}"


def _c(spec: str, comment: str = "") -> tuple[Column, ...]:
    """Columns from `name type, name type` (a comment shared by all of them)."""
    out = []
    for part in spec.split(", "):
        name, type_ = part.split(" ", 1)
        out.append(Column(name, type_, comment))
    return tuple(out)


# --------------------------------------------------------------------------- field-derived columns

def raw_field_columns(file: str) -> tuple[Column, ...]:
    """Every field of a raw file as the named column(s) ingest writes, in registry order."""
    out = []
    for f in F.fields_of(file):
        if f.multi:
            out.append(Column(f.name, WEIGHTED_IDS, f"field {f.code}: every id with its weight, empty when absent"))
        else:
            out.append(Column(f.name, "bigint", f"field {f.code}: the feature id, null when absent"))
            if f.weight_column:
                out.append(Column(f.weight_column, "double", f"field {f.code}: its VALUE (ln-count weight)"))
    return tuple(out)


def other_features_column() -> Column:
    return Column(OTHER_FEATURES, OTHER_FEATURES_TYPE,
                  "features no column above holds exactly: an unknown field, or a plain field whose VALUE is not 1.0")


def user_single_columns() -> tuple[Column, ...]:
    """The user's single-valued fields, as samples copies them from user_contexts."""
    return tuple(c for c in raw_field_columns(COMMON) if c.type != WEIGHTED_IDS)


def user_multi_columns() -> tuple[Column, ...]:
    """The user's history arrays (user_contexts; samples_wide joins them back)."""
    return tuple(c for c in raw_field_columns(COMMON) if c.type == WEIGHTED_IDS)


def side_feature_columns(tower: str, length: str) -> tuple[Column, ...]:
    """A tower's side features in the filter's tables: indices, then fixed-length arrays.

    Args:
        tower: QUERY or CANDIDATE.
        length: the config key that sets the arrays' length (named in the comment).
    """
    out = []
    for f in F.side_features(tower):
        if f.multi:
            out.append(Column(f.ids_column, IDS, f"field {f.code}: top-L known ids by weight, 0-padded to {length}"))
            out.append(Column(f.weights_column, WEIGHTS, f"field {f.code}: their weights, 0.0-padded"))
        else:
            out.append(Column(f.index_column, INDEX, f"field {f.code}: feature_vocab index (0 = missing/OOV)"))
    return tuple(out)


def rank_feature_columns(length: str) -> tuple[Column, ...]:
    """The ranker's own fields (position, the cross fields) in the impressions tables.

    A single-valued field is its feature_vocab index, plus `<name>_weight` (float, 0.0 when
    absent) if its VALUE is a weight; a multi-valued one is a fixed-length ids/weights pair.

    Args:
        length: the config key that sets the arrays' length (named in the comment).
    """
    out = []
    for f in F.rank_features():
        if f.multi:
            out.append(Column(f.ids_column, IDS, f"field {f.code}: top-L known ids by weight, 0-padded to {length}"))
            out.append(Column(f.weights_column, WEIGHTS, f"field {f.code}: their weights, 0.0-padded"))
        else:
            out.append(Column(f.index_column, INDEX, f"field {f.code}: feature_vocab index (0 = missing/OOV)"))
            if f.weight_column:
                out.append(Column(f.weight_column, "float", f"field {f.code}: its VALUE (ln-count), 0.0 when absent"))
    return tuple(out)


# --------------------------------------------------------------------------- ingest

# The exploded views: one row per feature, over samples and user_contexts, which hold every
# feature once (lakerec/sql/ingest/skeleton_features.sql, common_features.sql).
SKELETON_FEATURES = Table(
    "skeleton_features",
    _c("split string", "train or test")
    + _c("sample_id bigint", "the impression")
    + _c("field string", "raw field code (lakerec.schema.fields)")
    + _c("feature_id bigint, value double", "one FIELD\\x02FEATURE_ID\\x03VALUE feature of the line"),
    INGEST, "one row per feature of a valid skeleton line (a view over samples)", view=True,
)
COMMON_FEATURES = Table(
    "common_features",
    _c("split string", "train or test")
    + _c("common_feature_index string", "the user context")
    + _c("field string", "raw field code (lakerec.schema.fields)")
    + _c("feature_id bigint, value double", "one FIELD\\x02FEATURE_ID\\x03VALUE feature of the line"),
    INGEST, "one row per feature of a valid common line (a view over user_contexts)", view=True,
)
USER_CONTEXTS = Table(
    "user_contexts",
    _c("split string", "train or test")
    + _c("common_feature_index string", "the key impressions join on")
    + raw_field_columns(COMMON)
    + (other_features_column(),),
    INGEST, "one row per valid common line", partitioned_by=("split",), zorder_by=("common_feature_index",),
    stats_columns=("common_feature_index", "user_id"),
)
SAMPLES = Table(
    "samples",
    _c("split string", "train or test")
    + _c("sample_id bigint", "1..N in file order")
    + _c("click int, conversion int", "label, 0 or 1")
    + _c("common_feature_index string", "the user context (user_contexts)")
    + tuple(Column(c.name, c.type, c.comment + " (joined from user_contexts)") for c in user_single_columns())
    + raw_field_columns(SKELETON)
    + (other_features_column(),),
    INGEST, "one row per valid impression", partitioned_by=("split",), zorder_by=("user_id", "item_id"),
    stats_columns=("sample_id", "click", "conversion", "common_feature_index", "user_id", "item_id"),
)
SAMPLES_WIDE = Table(
    "samples_wide",
    SAMPLES.columns + user_multi_columns(),
    INGEST, "samples joined with user_contexts (adds the history arrays)", view=True,
)
QUARANTINE = Table(
    "quarantine",
    _c("split string", "train or test")
    + _c("file string", "skeleton or common")
    + _c("line_number bigint", "1-based, in the raw file")
    + _c("raw_line string", "the line as read")
    + _c("reason string", "the first rule it breaks (lakerec.aliccp.reasons)"),
    INGEST, "one row per rejected line", partitioned_by=("split",),
)
INGEST_REPORT = Table(
    "ingest_report",
    _c("split string, file string, path string", "which raw file")
    + _c("lines_read bigint, rows_written bigint, rows_quarantined bigint", "lines read = written + quarantined")
    + _c("features_written bigint", "features of the valid lines (rows of the exploded view)")
    + _c("quarantined_by_reason map<string,bigint>", "rejected lines per reason")
    + _c("duration_s double", "seconds")
    + _c("ingested_at timestamp", "UTC"),
    INGEST, "one row per split and file",
)

# --------------------------------------------------------------------------- filter (and MovieLens)

_COUNTS = _c("impressions bigint, clicks bigint, conversions bigint", "over the kept train impressions")

USER_VOCAB = Table(
    "user_vocab",
    _c("user_id bigint", "field 101")
    + _c("user_index int", "1..U, contiguous, most impressions first; 0 = out of vocabulary")
    + _COUNTS,
    FILTER, "one row per kept user", also_written_by=(MOVIELENS,),
)
ITEM_VOCAB = Table(
    "item_vocab",
    _c("item_id bigint", "field 205")
    + _c("item_index int", "1..I, contiguous, most impressions first; 0 = out of vocabulary")
    + _COUNTS
    + side_feature_columns(CANDIDATE, "filter.item_intention_length"),
    FILTER, "one row per kept item, features from its first kept train impression", also_written_by=(MOVIELENS,),
)
FEATURE_VOCAB = Table(
    "feature_vocab",
    _c("feature string", "the side feature (field name) the vocabulary serves")
    + _c("raw_id bigint", "the raw feature id")
    + _c("index int", "1.. per feature, most impressions first; 0 = missing/OOV")
    + _c("impressions bigint", "kept train impressions with the id"),
    FILTER, "one row per side feature and id", also_written_by=(MOVIELENS,),
)
_INTERACTION_COLUMNS = (
    _c("sample_id bigint, user_id bigint, item_id bigint", "the positive impression (user_id null when absent)")
    + _c("user_index int, item_index int", "user_vocab / item_vocab index; 0 = not in the train vocabulary")
    + _c("is_cold_user boolean, is_cold_item boolean", "the index is 0")
    + side_feature_columns(QUERY, "filter.history_length")
    + side_feature_columns(CANDIDATE, "filter.item_intention_length")
)
TRAIN_INTERACTIONS = Table(
    "train_interactions", _INTERACTION_COLUMNS, FILTER, "one row per positive of the kept train rows",
    also_written_by=(MOVIELENS,),
)
TEST_INTERACTIONS = Table(
    "test_interactions", _INTERACTION_COLUMNS, FILTER,
    "one row per positive of the test split, mapped with the train vocabularies", also_written_by=(MOVIELENS,),
)

STEPS_TYPE = (
    "array<struct<round:int,step:string,threshold:int,rows_before:bigint,rows_after:bigint,"
    "users_before:bigint,users_after:bigint,items_before:bigint,items_after:bigint>>"
)
FILTER_RUNS = Table(
    "filter_runs",
    _c("run_id string, started_at timestamp, duration_s double", "the run")
    + _c("samples_version bigint, user_contexts_version bigint", "Delta versions read")
    + _c("label string, min_item_count int, min_user_count int, kcore boolean, history_length int, "
         "item_intention_length int", "the settings")
    + _c("rounds int", "filter rounds run")
    + _c("rows_in bigint, users_in bigint, items_in bigint, rows_out bigint, users_out bigint, items_out bigint",
         "train rows, users and items before and after")
    + (Column("steps", STEPS_TYPE, "counts before and after every step of every round"),)
    + _c("train_positives bigint, test_rows bigint, test_positives bigint", "positives per split")
    + _c("test_cold_user_rows bigint, test_cold_item_rows bigint, test_cold_rows bigint",
         "test positives outside the train vocabulary")
    + _c("feature_vocab_sizes map<string,bigint>", "ids per side feature")
    + _c("output_versions map<string,bigint>", "Delta versions written"),
    FILTER, "one row per run (appended)",
)

# --------------------------------------------------------------------------- impressions (the ranker's tables)

_IMPRESSION_COLUMNS = (
    _c("sample_id bigint, user_id bigint, item_id bigint", "the impression (user_id null when absent)")
    + _c("click int, conversion int", "label, 0 or 1")
    + _c("user_index int, item_index int", "user_vocab / item_vocab index; 0 = not in the train vocabulary")
    + _c("is_cold_user boolean, is_cold_item boolean", "the index is 0")
    + side_feature_columns(QUERY, "filter.history_length")
    + side_feature_columns(CANDIDATE, "filter.item_intention_length")
    + rank_feature_columns("filter.item_intention_length")
)
TRAIN_IMPRESSIONS = Table(
    "train_impressions", _IMPRESSION_COLUMNS, IMPRESSIONS,
    "one row per valid train impression, clicked or not, mapped with the train vocabularies",
)
TEST_IMPRESSIONS = Table(
    "test_impressions", _IMPRESSION_COLUMNS, IMPRESSIONS,
    "one row per valid test impression, clicked or not, mapped with the train vocabularies",
)
IMPRESSIONS_RUNS = Table(
    "impressions_runs",
    _c("run_id string, started_at timestamp, duration_s double", "the run")
    + _c("samples_version bigint, user_contexts_version bigint, feature_vocab_version bigint", "Delta versions read")
    + _c("history_length int, item_intention_length int", "the settings")
    + _c("split string", "train or test")
    + _c("samples_rows bigint, rows bigint", "valid impressions in samples, rows written (always equal)")
    + _c("clicks bigint, conversions bigint", "labels of the rows written")
    + _c("cold_user_rows bigint, cold_item_rows bigint", "rows whose user / item is not in the train vocabulary")
    + _c("oov_rows map<string,bigint>", "per field: rows where it is present but not in feature_vocab (index 0)")
    + _c("output_version bigint", "Delta version written"),
    IMPRESSIONS, "one row per run and split (appended)",
)

# --------------------------------------------------------------------------- recommend

RECOMMENDATIONS = Table(
    "recommendations",
    _c("user_id bigint", "a vocabulary user")
    + _c("rank int", "1..k")
    + _c("item_id bigint", "the recommended item")
    + _c("score float", "query . candidate")
    + _c("p_click float, p_conversion float", "the ranker's pCTR and pCVR given a click (null: not re-ranked)")
    + _c("run_id string", "the MLflow run whose two-tower retrieved")
    + _c("ranker string", "the ranker's model URI that ordered the list (null: the two-tower's order)"),
    RECOMMEND, "one row per user and rank",
)

# --------------------------------------------------------------------------- every job that writes several tables

LAKE_RUNS = Table(
    "lake_runs",
    _c("run_id string", "one run of a job (two rows: started, then complete)")
    + _c("job string", "ingest, filter, impressions or movielens")
    + _c("state string", "started (before its first write) or complete (after its last)")
    + _c("at timestamp", "UTC")
    + _c("scope string", "what the run covered (ingest: its splits)")
    + _c("versions map<string,bigint>", "the Delta version of each table the job writes, at that moment"),
    # Every job of lakerec.lake_runs.RECORDED_JOBS appends to it; ingest, the first, creates it.
    INGEST, "one row per start and per completion of a run (appended; lakerec.lake_runs)",
)

ALL: tuple[Table, ...] = (
    SKELETON_FEATURES, COMMON_FEATURES, USER_CONTEXTS, SAMPLES, SAMPLES_WIDE, QUARANTINE, INGEST_REPORT,
    USER_VOCAB, ITEM_VOCAB, FEATURE_VOCAB, TRAIN_INTERACTIONS, TEST_INTERACTIONS, FILTER_RUNS,
    TRAIN_IMPRESSIONS, TEST_IMPRESSIONS, IMPRESSIONS_RUNS, RECOMMENDATIONS, LAKE_RUNS,
)
TABLES: dict[str, Table] = {t.name: t for t in ALL}

# The interactions table of each split.
INTERACTIONS: dict[str, Table] = {TRAIN: TRAIN_INTERACTIONS, TEST: TEST_INTERACTIONS}
# The impressions table of each split (the ranker's inputs).
IMPRESSIONS_OF: dict[str, Table] = {TRAIN: TRAIN_IMPRESSIONS, TEST: TEST_IMPRESSIONS}
# The five tables training reads (the filter writes them; MovieLens writes the same five).
TRAINING_INPUTS: tuple[Table, ...] = (USER_VOCAB, ITEM_VOCAB, FEATURE_VOCAB, TRAIN_INTERACTIONS, TEST_INTERACTIONS)


def table(name: str) -> Table:
    """The registered table `name` (unqualified), or a KeyError naming the known ones."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a lake table; the lake's tables are {', '.join(TABLES)}") from None


def written_by(job: str) -> tuple[Table, ...]:
    """The tables (and views) one job writes, in registry order."""
    return tuple(t for t in ALL if t.job == job or job in t.also_written_by)


def stored() -> tuple[Table, ...]:
    """The Delta tables (the views are re-created by the job that owns them)."""
    return tuple(t for t in ALL if not t.view)
