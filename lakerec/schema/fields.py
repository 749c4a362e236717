"""The Ali-CCP field registry (see ../shared/aliccp-format.md, "Fields"), with tags.

One place that says which raw field id is which named column, which file it lives in,
whether a row may carry several ids for it, whether its VALUE is a weight worth keeping
next to the id, and what the model makes of it. Parser, generator, filter, model, the SQL
files and the table registry (lakerec.schema.tables) all read it; nothing else spells a
field code.

Tags (the way Merlin's schema tags drive its towers: a tower picks its inputs by tag, so a
new field is added once, here):

    role     USER, ITEM, CROSS (user history x impressed item) or CONTEXT (the impression)
    multi    a row may carry several ids, each with its own weight
    weighted the VALUE is a weight (ln-count), not a constant 1.0
    feature  ID (the tower's own id embedding: user_id, item_id), SIDE (a side feature of
             the tower its role names, looked up in feature_vocab), RANK (read by the ranker
             only, looked up in feature_vocab: position, the cross fields) or NONE (kept in
             the lake, read by no model)

    select(role=USER, multi=False, id=False)   # user_profile ... user_geography
    names(tower=CANDIDATE, feature=SIDE)       # ("item_category", "item_shop", "item_intention", "item_brand")

Column names in the lake come from the field name: `<name>` in samples/user_contexts (a
single-valued weighted field adds `<name>_weight`), and in the filter's tables
`<name>_index` for a single-valued side feature, `<name>_ids` and `<name>_weights` for a
multi-valued one (`user_index`, `item_index` for the two id fields).
"""

from __future__ import annotations

from dataclasses import dataclass

# The two raw files of a split, and their names as Tianchi ships them.
SKELETON = "skeleton"
COMMON = "common"
FILES = (COMMON, SKELETON)
FILE_NAMES = {SKELETON: "sample_skeleton_{split}.csv", COMMON: "common_features_{split}.csv"}

# The splits of the data set (one pair of raw files each; every lake table has a split column).
TRAIN = "train"
TEST = "test"
SPLITS = (TRAIN, TEST)

# Separators inside feature_list: FIELD \x02 FEATURE_ID \x03 VALUE, features joined by \x01.
FEATURE_SEP = "\x01"
FIELD_SEP = "\x02"
VALUE_SEP = "\x03"

SKELETON_COLUMNS = 6  # sample_id, click, conversion, common_feature_index, feature_num, feature_list
COMMON_COLUMNS = 3  # common_feature_index, feature_num, feature_list

# Roles: whose attribute a field is.
USER = "user"
ITEM = "item"
CROSS = "cross"
CONTEXT = "context"
ROLES = (USER, ITEM, CROSS, CONTEXT)

# Feature roles: what the models make of a field.
ID = "id"
SIDE = "side"
RANK = "rank"  # the ranker's own inputs (the towers never see them)
NONE = "none"
FEATURE_ROLES = (ID, SIDE, RANK, NONE)

# Towers: a user field feeds the query tower, an item field the candidate tower.
QUERY = "query"
CANDIDATE = "candidate"
TOWER_OF_ROLE = {USER: QUERY, ITEM: CANDIDATE}


def raw_file_name(file: str, split: str) -> str:
    """The name of one raw file (`sample_skeleton_train.csv`)."""
    return FILE_NAMES[file].format(split=split)


def index_column(name: str) -> str:
    """A single-valued side feature's vocabulary index in the filter's tables."""
    return f"{name}_index"


def ids_column(name: str) -> str:
    """A multi-valued side feature's fixed-length array of vocabulary indices."""
    return f"{name}_ids"


def weights_column(name: str) -> str:
    """The weights that go with ids_column(name), position by position."""
    return f"{name}_weights"


def weight_column(name: str) -> str:
    """A single-valued weighted field's VALUE in samples (`user_item_categories_weight`)."""
    return f"{name}_weight"


@dataclass(frozen=True)
class Field:
    """One Ali-CCP feature field.

    Attributes:
        code: the raw field id as it appears in feature_list ("205", "109_14").
        name: the column name used in every table (the SQL column of samples/user_contexts).
        file: SKELETON or COMMON.
        role: USER, ITEM, CROSS or CONTEXT.
        feature: ID, SIDE or NONE (see the module docstring).
        multi: a row may carry several ids for this field.
        weighted: the VALUE is a weight (ln-count) rather than a constant 1.0.
        missing_rate: share of rows where the field is absent (format document).
        cardinality: distinct ids in the full train split (format document).
    """

    code: str
    name: str
    file: str
    role: str
    feature: str = NONE
    multi: bool = False
    weighted: bool = False
    missing_rate: float = 0.0
    cardinality: int = 0

    def __post_init__(self):
        if self.file not in FILES or self.role not in ROLES or self.feature not in FEATURE_ROLES:
            raise ValueError(f"field {self.code}: bad file/role/feature {self.file!r}/{self.role!r}/{self.feature!r}")
        if self.feature == ID and self.multi:
            raise ValueError(f"field {self.code}: an id field is single-valued")

    @property
    def is_id(self) -> bool:
        return self.feature == ID

    @property
    def tower(self) -> str | None:
        """QUERY or CANDIDATE for a tower's input, None for a field no tower reads."""
        return TOWER_OF_ROLE.get(self.role) if self.feature in (ID, SIDE) else None

    @property
    def sql_column(self) -> str:
        """The field's column in samples and user_contexts."""
        return self.name

    @property
    def weight_column(self) -> str | None:
        """The `<name>_weight` column of a single-valued weighted field, else None."""
        return weight_column(self.name) if self.weighted and not self.multi else None

    @property
    def index_column(self) -> str:
        """`user_index` / `item_index` for an id field, `<name>_index` for a single-valued feature."""
        if self.multi:
            raise ValueError(f"{self.name} is multi-valued: it has ids_column and weights_column")
        return index_column(self.name.removesuffix("_id")) if self.is_id else index_column(self.name)

    @property
    def ids_column(self) -> str:
        return ids_column(self.name)

    @property
    def weights_column(self) -> str:
        return weights_column(self.name)

    @property
    def model_columns(self) -> tuple[str, ...]:
        """The columns that hold this field in the filter's tables."""
        return (self.ids_column, self.weights_column) if self.multi else (self.index_column,)


FIELDS: tuple[Field, ...] = (
    Field("101", "user_id", COMMON, USER, ID, missing_rate=0.002, cardinality=294_736),
    Field("121", "user_profile", COMMON, USER, SIDE, missing_rate=0.13, cardinality=98),
    Field("122", "user_group", COMMON, USER, SIDE, missing_rate=0.13, cardinality=14),
    Field("124", "user_gender", COMMON, USER, SIDE, missing_rate=0.13, cardinality=3),
    Field("125", "user_age", COMMON, USER, SIDE, missing_rate=0.13, cardinality=8),
    Field("126", "user_consumption", COMMON, USER, SIDE, missing_rate=0.58, cardinality=4),
    Field("127", "user_consumption_2", COMMON, USER, SIDE, missing_rate=0.13, cardinality=4),
    Field("128", "user_is_occupied", COMMON, USER, SIDE, missing_rate=0.13, cardinality=3),
    Field("129", "user_geography", COMMON, USER, SIDE, missing_rate=0.36, cardinality=5),
    Field("109_14", "user_categories", COMMON, USER, SIDE, multi=True, weighted=True, cardinality=6_086),
    Field("110_14", "user_shops", COMMON, USER, SIDE, multi=True, weighted=True, cardinality=116_741),
    Field("127_14", "user_brands", COMMON, USER, SIDE, multi=True, weighted=True, cardinality=58_015),
    Field("150_14", "user_intentions", COMMON, USER, SIDE, multi=True, weighted=True, cardinality=33_786),
    Field("205", "item_id", SKELETON, ITEM, ID, cardinality=3_078_306),
    Field("206", "item_category", SKELETON, ITEM, SIDE, cardinality=8_581),
    Field("207", "item_shop", SKELETON, ITEM, SIDE, cardinality=604_498),
    Field("210", "item_intention", SKELETON, ITEM, SIDE, multi=True, cardinality=96_258),
    Field("216", "item_brand", SKELETON, ITEM, SIDE, missing_rate=0.29, cardinality=208_179),
    Field("301", "position", SKELETON, CONTEXT, RANK, cardinality=4),
    Field("508", "user_item_categories", SKELETON, CROSS, RANK, weighted=True, missing_rate=0.30, cardinality=7_735),
    Field("509", "user_item_shops", SKELETON, CROSS, RANK, weighted=True, missing_rate=0.78, cardinality=384_343),
    Field("702", "user_item_brands", SKELETON, CROSS, RANK, weighted=True, missing_rate=0.78, cardinality=142_632),
    Field("853", "user_item_intentions", SKELETON, CROSS, RANK, multi=True, weighted=True, missing_rate=0.59,
          cardinality=74_317),
)

BY_CODE: dict[str, Field] = {f.code: f for f in FIELDS}

# What each cross field crosses (format document: 508/509/702/853 cross the user's history
# with the impressed item's category/shop/brand/intentions): cross -> (item side field, history field).
CROSSES: dict[str, tuple[str, str]] = {
    "user_item_categories": ("item_category", "user_categories"),
    "user_item_shops": ("item_shop", "user_shops"),
    "user_item_brands": ("item_brand", "user_brands"),
    "user_item_intentions": ("item_intention", "user_intentions"),
}
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


def select(
    *,
    role: str | None = None,
    file: str | None = None,
    feature: str | None = None,
    tower: str | None = None,
    multi: bool | None = None,
    weighted: bool | None = None,
    id: bool | None = None,  # noqa: A002 (the tag's name)
) -> tuple[Field, ...]:
    """The fields that carry every tag given (None: any), in registry order."""
    for value, allowed in ((role, ROLES), (file, FILES), (feature, FEATURE_ROLES), (tower, (QUERY, CANDIDATE))):
        if value is not None and value not in allowed:
            raise ValueError(f"unknown tag {value!r}: choose from {', '.join(allowed)}")
    return tuple(
        f for f in FIELDS
        if (role is None or f.role == role)
        and (file is None or f.file == file)
        and (feature is None or f.feature == feature)
        and (tower is None or f.tower == tower)
        and (multi is None or f.multi == multi)
        and (weighted is None or f.weighted == weighted)
        and (id is None or f.is_id == id)
    )


def names(**tags) -> tuple[str, ...]:
    """The names of select(**tags)."""
    return tuple(f.name for f in select(**tags))


def fields_of(file: str) -> tuple[Field, ...]:
    """The fields that live in one raw file (SKELETON or COMMON)."""
    return select(file=file)


def id_field(tower: str) -> Field:
    """The id field of a tower (user_id for QUERY, item_id for CANDIDATE)."""
    (field,) = select(tower=tower, feature=ID)
    return field


def side_features(tower: str | None = None, multi: bool | None = None) -> tuple[Field, ...]:
    """The side features (of one tower, or of both: query first), in the order the lake's tables hold them.

    A tower's columns are its single-valued features, then its multi-valued ones; with no
    tower, the query tower's come first. feature_vocab has one vocabulary per field here.
    """
    towers = (tower,) if tower else (QUERY, CANDIDATE)
    out: list[Field] = []
    for t in towers:
        for m in ((False, True) if multi is None else (multi,)):
            out += select(tower=t, feature=SIDE, multi=m)
    return tuple(out)


def rank_features(multi: bool | None = None) -> tuple[Field, ...]:
    """The ranker's own inputs (position, then the cross fields): single-valued first, as the impressions tables hold them."""
    out: list[Field] = []
    for m in ((False, True) if multi is None else (multi,)):
        out += select(feature=RANK, multi=m)
    return tuple(out)
