"""The Ali-CCP field table (see ../shared/aliccp-format.md, "Fields").

One place that says which raw field id is which named column, which file it lives in,
whether a row may carry several ids for it, and whether its VALUE is a weight worth
keeping next to the id. Parser, generator, filter and model all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass

SKELETON = "skeleton"
COMMON = "common"

# Separators inside feature_list: FIELD \x02 FEATURE_ID \x03 VALUE, features joined by \x01.
FEATURE_SEP = "\x01"
FIELD_SEP = "\x02"
VALUE_SEP = "\x03"

SKELETON_COLUMNS = 6  # sample_id, click, conversion, common_feature_index, feature_num, feature_list
COMMON_COLUMNS = 3  # common_feature_index, feature_num, feature_list


@dataclass(frozen=True)
class Field:
    """One Ali-CCP feature field.

    Attributes:
        code: the raw field id as it appears in feature_list ("205", "109_14").
        name: the column name used in every table.
        file: SKELETON or COMMON.
        multi: a row may carry several ids for this field.
        weighted: the VALUE is a weight (ln-count) rather than a constant 1.0.
        missing_rate: share of rows where the field is absent (format document).
        cardinality: distinct ids in the full train split (format document).
    """

    code: str
    name: str
    file: str
    multi: bool = False
    weighted: bool = False
    missing_rate: float = 0.0
    cardinality: int = 0


FIELDS: tuple[Field, ...] = (
    Field("101", "user_id", COMMON, missing_rate=0.002, cardinality=294_736),
    Field("121", "user_profile", COMMON, missing_rate=0.13, cardinality=98),
    Field("122", "user_group", COMMON, missing_rate=0.13, cardinality=14),
    Field("124", "user_gender", COMMON, missing_rate=0.13, cardinality=3),
    Field("125", "user_age", COMMON, missing_rate=0.13, cardinality=8),
    Field("126", "user_consumption", COMMON, missing_rate=0.58, cardinality=4),
    Field("127", "user_consumption_2", COMMON, missing_rate=0.13, cardinality=4),
    Field("128", "user_is_occupied", COMMON, missing_rate=0.13, cardinality=3),
    Field("129", "user_geography", COMMON, missing_rate=0.36, cardinality=5),
    Field("109_14", "user_categories", COMMON, multi=True, weighted=True, cardinality=6_086),
    Field("110_14", "user_shops", COMMON, multi=True, weighted=True, cardinality=116_741),
    Field("127_14", "user_brands", COMMON, multi=True, weighted=True, cardinality=58_015),
    Field("150_14", "user_intentions", COMMON, multi=True, weighted=True, cardinality=33_786),
    Field("205", "item_id", SKELETON, cardinality=3_078_306),
    Field("206", "item_category", SKELETON, cardinality=8_581),
    Field("207", "item_shop", SKELETON, cardinality=604_498),
    Field("210", "item_intention", SKELETON, multi=True, cardinality=96_258),
    Field("216", "item_brand", SKELETON, missing_rate=0.29, cardinality=208_179),
    Field("301", "position", SKELETON, cardinality=4),
    Field("508", "user_item_categories", SKELETON, weighted=True, missing_rate=0.30, cardinality=7_735),
    Field("509", "user_item_shops", SKELETON, weighted=True, missing_rate=0.78, cardinality=384_343),
    Field("702", "user_item_brands", SKELETON, weighted=True, missing_rate=0.78, cardinality=142_632),
    Field("853", "user_item_intentions", SKELETON, multi=True, weighted=True, missing_rate=0.59, cardinality=74_317),
)

BY_CODE: dict[str, Field] = {f.code: f for f in FIELDS}
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


def fields_of(file: str) -> tuple[Field, ...]:
    """The fields that live in one raw file (SKELETON or COMMON)."""
    return tuple(f for f in FIELDS if f.file == file)
