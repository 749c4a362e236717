"""A candidate's cross fields, computed from the user's history through maps learned on train rows.

The planted log: item category s is user_categories index 10 + s in a history and
user_item_categories index 100 + s on a row (item intention s likewise: 20 + s, 200 + s), so
the maps can only be learned, never assumed; a cross carries the history entry's weight.
One row of the log is a random "filled" cross (its weight matches a wrong history entry),
as the generator writes to reach the published missing rates: the modes outvote it.
"""

from __future__ import annotations

import pytest

from lakerec.ranking import candidate_crosses as C
from lakerec.schema import fields as F
from lakerec.schema import tables as T

L = 4  # history and intention arrays
CAT, INT = F.BY_NAME["item_category"], F.BY_NAME["item_intention"]
H_CAT, H_INT = F.BY_NAME["user_categories"], F.BY_NAME["user_intentions"]
X_CAT, X_INT = F.BY_NAME["user_item_categories"], F.BY_NAME["user_item_intentions"]
HISTORY = {"A": {H_CAT: [(11, 1.1), (12, 0.69)], H_INT: [(21, 1.1)]},
           "B": {H_CAT: [(13, 0.69), (11, 1.6)], H_INT: [(22, 0.69), (21, 1.6)]},
           "C": {H_CAT: [(12, 0.5), (13, 2.0)], H_INT: [(22, 1.3), (21, 0.4)]}}
# (user, item category, item intentions, the logged category cross, the logged intention crosses)
LOG = [("A", 1, [1, 2], (101, 1.1), [(201, 1.1)]),
       ("A", 2, [2, 3], (102, 0.69), []),
       ("A", 2, [1, 4], (102, 0.69), [(201, 1.1)]),
       ("A", 3, [], None, []),
       ("B", 3, [1, 2, 3], (103, 0.69), [(201, 1.6), (202, 0.69)]),
       ("B", 1, [2, 5], (101, 1.6), [(202, 0.69)]),
       ("B", 2, [], (102, 0.69), [])]  # filled: category 2 is not in B's history
# Candidates of user C: item_id -> (category, intentions).
CANDIDATES = {1: (2, [1, 2, 9]), 2: (1, [4]), 3: (3, [])}


def padded(pairs, length=L):
    ids, weights = [i for i, _ in pairs], [w for _, w in pairs]
    return ids + [0] * (length - len(ids)), weights + [0.0] * (length - len(weights))


def history_columns(user):
    out = {}
    for f in F.select(role=F.USER, multi=True):
        out[f.ids_column], out[f.weights_column] = padded(HISTORY[user].get(f, []))
    return out


def frame(spark, rows, columns):
    """A DataFrame of the named columns with the impressions tables' types; a column not given is 0 / padding."""
    types = [T.TRAIN_IMPRESSIONS.column(c).type for c in columns]
    zero = {t: [0.0 if "float" in t else 0] * L if t.startswith("array") else 0.0 if t in ("float", "double") else 0
            for t in types}
    data = [tuple(r.get(c, zero[t]) for c, t in zip(columns, types)) for r in rows]
    return spark.createDataFrame(data, ", ".join(f"{c} {t}" for c, t in zip(columns, types)))


def side_and_history_columns():
    return ["user_id", "item_id", *[c for f in F.side_features() for c in f.model_columns]]


@pytest.fixture(scope="module")
def computed(spark):
    train_rows = []
    for user, category, intentions, cross, crosses in LOG:
        row = {CAT.index_column: category, INT.ids_column: padded([(i, 1.0) for i in intentions])[0],
               **history_columns(user)}
        if cross:
            row[X_CAT.index_column], row[X_CAT.weight_column] = cross
        row[X_INT.ids_column], row[X_INT.weights_column] = padded(crosses)
        train_rows.append(row)
    cross_columns = [c for f in F.rank_features() if f.role == F.CROSS
                     for c in f.model_columns + ((f.weight_column,) if f.weight_column else ())]
    train = frame(spark, train_rows, side_and_history_columns() + cross_columns)
    keys = C.learn_keys(train)
    pairs = frame(spark, [{"user_id": 7, "item_id": item, CAT.index_column: category,
                           INT.ids_column: padded([(i, 1.0) for i in intentions])[0], **history_columns("C")}
                          for item, (category, intentions) in CANDIDATES.items()], side_and_history_columns())
    rows = {r["item_id"]: r.asDict() for r in C.with_computed_crosses(pairs, keys, L).collect()}
    absent = C.with_absent_crosses(pairs, L).collect()
    served = served_crosses(C.keys_frame(keys), pairs.toPandas())
    return ({name: sorted(tuple(r) for r in k.collect()) for name, k in keys.items()}, rows, absent, cross_columns,
            served)


def served_crosses(keys, pairs):
    """The service's computation (numpy, one request's pairs) of the same pairs, by item_id."""
    import numpy as np

    arrays = {c: np.stack(pairs[c].to_numpy()) if isinstance(pairs[c].iloc[0], (list, np.ndarray))
              else pairs[c].to_numpy() for c in pairs.columns}
    out = C.computed_cross_arrays(keys, arrays, arrays, L)
    return {int(item): {c: v[row].tolist() for c, v in out.items()} for row, item in enumerate(pairs["item_id"])}


def test_the_maps_are_learned_from_the_log_and_outvote_a_filled_cross(computed):
    keys, *_ = computed
    assert keys["user_item_categories"] == [(1, 101, 11), (2, 102, 12), (3, 103, 13)]
    assert keys["user_item_intentions"] == [(1, 201, 21), (2, 202, 22)]
    assert keys["user_item_shops"] == keys["user_item_brands"] == []  # never logged: always absent


def test_a_candidate_carries_the_cross_of_its_side_value_met_in_the_users_history(computed):
    _, rows, *_ = computed
    # Item 1: category 2 is history entry 12 (weight 0.5) of user C; intentions 2 and 1 are 22 (1.3) and 21 (0.4),
    # largest weight first; intention 9 was never logged.
    one = rows[1]
    assert (one[X_CAT.index_column], one[X_CAT.weight_column]) == (102, pytest.approx(0.5))
    assert one[X_INT.ids_column] == [202, 201, 0, 0]
    assert one[X_INT.weights_column] == pytest.approx([1.3, 0.4, 0.0, 0.0])
    # Item 2: category 1 (history entry 11) is not in C's history, intention 4 has no cross: all absent.
    two = rows[2]
    assert (two[X_CAT.index_column], two[X_CAT.weight_column]) == (0, 0.0)
    assert two[X_INT.ids_column] == [0] * L and two[X_INT.weights_column] == [0.0] * L
    # Item 3: category 3 is history entry 13, weight 2.0.
    assert (rows[3][X_CAT.index_column], rows[3][X_CAT.weight_column]) == (103, pytest.approx(2.0))
    for r in rows.values():  # the crosses the log never carried stay absent
        for f in (F.BY_NAME["user_item_shops"], F.BY_NAME["user_item_brands"]):
            assert (r[f.index_column], r[f.weight_column]) == (0, 0.0)


def test_the_absent_option_blanks_every_cross_column(computed):
    _, rows, absent, cross_columns, _ = computed
    assert len(absent) == len(rows)
    for r in absent:
        for c in cross_columns:
            assert r[c] in (0, 0.0, [0] * L, [0.0] * L)


def test_the_service_computes_the_same_crosses_without_spark(computed):
    _, rows, _, cross_columns, served = computed
    assert set(served) == set(rows)
    for item, row in rows.items():
        for c in cross_columns:
            assert served[item][c] == pytest.approx(row[c]), (item, c)
    assert C.absent_cross_arrays(2, L).keys() == set(cross_columns)
