"""Where each field's raw ids live in the generator's one global id space, by field name.

The generator names fields ("item_id"), never their raw codes: `code(name)` looks the code
up in the field table (`lakerec.aliccp.fields`) where a line or a statistic needs it.
"""

from __future__ import annotations

from lakerec.schema.fields import BY_NAME, COMMON, Field, fields_of


def code(name: str) -> str:
    """The raw field code that the files carry for a named field (see `fields.FIELDS`)."""
    return BY_NAME[name].code


# Each field's ids live in their own range of one global id space: name -> (first id, span).
# The spans bound the vocabulary sizes; the layout echoes the published files (gender ids
# around 3438768, item ids 4e6..8.3e6, position 9351665..). The order is the order of
# `id_ranges` in oracle.json.
ID_RANGES: dict[str, tuple[int, int]] = {
    "user_id": (100_000, 2_900_000),
    "user_categories": (3_000_000, 10_000),
    "user_item_categories": (3_010_000, 10_000),
    "user_intentions": (3_100_000, 150_000),
    "user_item_intentions": (3_250_000, 150_000),
    "user_profile": (3_438_600, 100),
    "user_group": (3_438_700, 20),
    "user_gender": (3_438_767, 3),
    "user_age": (3_438_770, 10),
    "user_consumption": (3_438_780, 4),
    "user_consumption_2": (3_438_784, 4),
    "user_is_occupied": (3_438_788, 3),
    "user_geography": (3_438_791, 5),
    "item_category": (3_440_000, 10_000),
    "item_intention": (3_500_000, 150_000),
    "item_brand": (3_700_000, 250_000),
    "item_id": (4_000_000, 4_300_000),
    "user_brands": (8_300_000, 250_000),
    "user_item_brands": (8_550_000, 250_000),
    "position": (9_351_665, 4),
    "item_shop": (10_000_000, 700_000),
    "user_shops": (10_700_000, 700_000),
    "user_item_shops": (11_400_000, 700_000),
}
MAX_USERS = ID_RANGES["user_id"][1]
MAX_ITEMS = ID_RANGES["item_id"][1]

# The user's single-valued fields besides user_id, in table order: the columns of the
# oracle's `user_profile_ids`.
PROFILE_FIELDS: tuple[Field, ...] = tuple(f for f in fields_of(COMMON) if not f.multi and f.name != "user_id")


def first_id(name: str) -> int:
    """The raw id of vocabulary index 0 of a named field (raw id = first id + index)."""
    return ID_RANGES[name][0]


def id_ranges_by_code() -> dict[str, list[int]]:
    """The id layout as oracle.json records it: raw code -> [first id, span]."""
    return {code(name): list(r) for name, r in ID_RANGES.items()}
