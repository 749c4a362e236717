"""MovieLens side files (u.user/u.item, users.dat/movies.dat) on hand-written files.

Every expected index below is worked out by hand from the files and the vocabulary rule
(per feature, index 1..n over the train ratings, most ratings first, ties by raw_id).
"""

from __future__ import annotations

import logging

import pytest

from lakerec.config import override
from lakerec.errors import InputDataError

pytestmark = pytest.mark.heavy(seconds=135)

# 100K ratings; --split time with test fraction 0.25 keeps the first 6 for train. Test: user 4
# (cold, in u.user) rates item 10; user 1 rates item 40 (cold, in u.item).
U_DATA = """\
1\t10\t5\t100
1\t20\t4\t101
1\t30\t3\t102
2\t10\t4\t103
2\t30\t2\t104
3\t20\t5\t105
4\t10\t3\t106
1\t40\t4\t107
"""
# User 3 is missing (rated, so counted); user 99 rated nothing. Ages 24, 53, 17 fall in
# the 1M groups 18, 50, 1. Train ratings: user 1 has 3, user 2 has 2.
U_USER = """\
1|24|F|technician|85711
2|53|M|other|02139
4|17|M|student|T8H1N
99|30|F|writer|55455
"""
_URL = "http://us.imdb.com/M/title-exact?x"


def _flags(*genres: int) -> str:
    return "|".join("1" if i in genres else "0" for i in range(19))


# Genre positions: 2 Adventure, 3 Animation, 4 Children's, 5 Comedy, 8 Drama, 9 Fantasy,
# 14 Romance, 15 Sci-Fi, 17 War; 0 is "unknown" (no genre). Movie 20's title is latin-1.
U_ITEM = (
    f"10|Toy Story (1995)|01-Jan-1995||{_URL}|{_flags(3, 4, 5)}\n"
    f"20|Cité des enfants perdus, La (1995)|01-Jan-1995||{_URL}|{_flags(2, 8, 9, 15)}\n"
    f"30|Casablanca (1942)|01-Jan-1942||{_URL}|{_flags(8, 14, 17)}\n"
    f"40|unknown|||{_URL}|{_flags(0)}\n"
)

# 1M: --split time with test fraction 1/3 keeps the first 4 for train. User 4 and movie 3
# are in neither side file.
RATINGS_DAT = """\
1::1::5::978300760
1::2::3::978300761
2::1::4::978300762
3::2::4::978300763
2::3::5::978300764
4::2::3::978300765
"""
USERS_DAT = "1::F::1::10::48067\r\n2::M::56::16::70072\r\n3::M::25::15::V3N4P\r\n"
MOVIES_DAT = (
    "1::Toy Story (1995)::Comedy|Animation|Children's\n"
    "2::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi\n"
    "4::Casablanca (1942)::Drama|Romance|War\n"
)

USER_COLS = ("user_age_index", "user_gender_index", "user_is_occupied_index", "user_geography_index")
ITEM_COLS = ("item_category_index", "item_brand_index", "item_shop_index", "item_intention_ids",
             "item_intention_weights")


def _write(folder, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("latin-1"))
    return folder


def _by(rows, key, cols):
    return {getattr(r, key): tuple(getattr(r, c) for c in cols) for r in rows}


def _vocab(spark, cfg, feature):
    rows = spark.table(cfg.table("feature_vocab")).where(f"feature = '{feature}'").collect()
    return {r.raw_id: (r["index"], r.impressions) for r in rows}


def test_100k_side_files_fill_the_towers_columns(spark, cfg, tmp_path, caplog):
    from lakerec import movielens

    cfg = override(cfg, filter__item_intention_length=3)
    folder = _write(tmp_path / "ml-100k", {"u.data": U_DATA, "u.user": U_USER, "u.item": U_ITEM})
    with caplog.at_level(logging.WARNING, logger="lakerec.movielens"):
        s = movielens.load(spark, cfg, folder / "u.data", split="time", test_fraction=0.25)
    assert (s.train, s.test, s.side_files) == (6, 2, ("u.user", "u.item"))
    assert (s.users_without_features, s.items_without_features) == (1, 0)
    assert "1 rated users are not in" in caplog.text

    # Train ratings per value: F 3 (user 1), M 2 (user 2): the count orders, not the raw_id.
    assert _vocab(spark, cfg, "user_gender") == {2: (1, 3), 1: (2, 2)}
    assert _vocab(spark, cfg, "user_age") == {18: (1, 3), 50: (2, 2)}
    assert _vocab(spark, cfg, "user_is_occupied") == {20: (1, 3), 14: (2, 2)}  # technician, other
    assert _vocab(spark, cfg, "user_geography") == {8: (1, 3), 0: (2, 2)}
    assert _vocab(spark, cfg, "item_brand") == {1995: (1, 4), 1942: (2, 2)}
    assert _vocab(spark, cfg, "item_category") == {1990: (1, 4), 1940: (2, 2)}
    # Drama (8) is on two movies (4 ratings); the rest, 2 ratings each, go by raw_id.
    assert _vocab(spark, cfg, "item_intention") == {
        8: (1, 4), 2: (2, 2), 3: (3, 2), 4: (4, 2), 5: (5, 2), 9: (6, 2), 14: (7, 2), 15: (8, 2), 17: (9, 2)}

    rows = spark.table(cfg.table("train_interactions")).collect() + spark.table(cfg.table("test_interactions")).collect()
    assert _by(rows, "user_id", USER_COLS) == {
        1: (1, 1, 1, 1),
        2: (2, 2, 2, 2),
        3: (0, 0, 0, 0),  # not in u.user
        4: (0, 2, 0, 0),  # cold: age group 1, student and 'T' never rated in train; M is known
    }
    items = {
        10: (1, 1, 0, [3, 4, 5], [1.0, 1.0, 1.0]),  # Animation, Children's, Comedy
        20: (1, 1, 0, [2, 1, 6], [1.0, 1.0, 1.0]),  # Adventure, Drama, Fantasy (Sci-Fi cut at length 3)
        30: (2, 2, 0, [1, 7, 9], [1.0, 1.0, 1.0]),  # Drama, Romance, War
        40: (0, 0, 0, [0, 0, 0], [0.0, 0.0, 0.0]),  # no date, genre "unknown"
    }
    assert _by(rows, "item_id", ITEM_COLS) == items
    vocab_items = spark.table(cfg.table("item_vocab")).collect()
    assert _by(vocab_items, "item_id", ITEM_COLS) == {k: v for k, v in items.items() if k != 40}
    # Ali-CCP columns MovieLens has nothing for stay 0.
    row = rows[0]
    assert row.user_profile_index == 0 and row.user_categories_ids == [0] * cfg.filter.history_length


def test_1m_side_files_and_the_latin1_title(spark, cfg, tmp_path):
    from lakerec import movielens
    from lakerec.movielens import read_lines

    cfg = override(cfg, filter__item_intention_length=3)
    folder = _write(tmp_path / "ml-1m", {"ratings.dat": RATINGS_DAT, "users.dat": USERS_DAT,
                                         "movies.dat": MOVIES_DAT})
    titles = [r.line for r in read_lines(spark, folder / "movies.dat").collect()]
    assert "City of Lost Children, The (Cité des enfants perdus, La) (1995)" in titles[1]

    s = movielens.load(spark, cfg, folder / "ratings.dat", split="time", test_fraction=1 / 3)
    assert (s.train, s.test, s.side_files) == (4, 2, ("users.dat", "movies.dat"))
    assert (s.users_without_features, s.items_without_features) == (1, 1)

    # Ties (2 users each) go by raw_id: M (1) before F (2).
    assert _vocab(spark, cfg, "user_gender") == {1: (1, 2), 2: (2, 2)}
    assert _vocab(spark, cfg, "user_age") == {1: (1, 2), 25: (2, 1), 56: (3, 1)}
    assert _vocab(spark, cfg, "user_geography") == {4: (1, 2), 7: (2, 1), 31: (3, 1)}  # '4', '7', 'V'
    assert _vocab(spark, cfg, "item_intention") == {2: (1, 2), 3: (2, 2), 4: (3, 2), 5: (4, 2), 15: (5, 2)}
    rows = spark.table(cfg.table("train_interactions")).collect() + spark.table(cfg.table("test_interactions")).collect()
    assert _by(rows, "user_id", USER_COLS) == {1: (1, 2, 1, 1), 2: (3, 1, 3, 2), 3: (2, 1, 2, 3), 4: (0, 0, 0, 0)}
    assert _by(rows, "item_id", ITEM_COLS) == {
        1: (1, 1, 0, [2, 3, 4], [1.0, 1.0, 1.0]),  # Comedy|Animation|Children's, in raw_id order
        2: (1, 1, 0, [1, 5, 0], [1.0, 1.0, 0.0]),  # Adventure|Sci-Fi, padded
        3: (0, 0, 0, [0, 0, 0], [0.0, 0.0, 0.0]),  # not in movies.dat
    }


def test_features_all_trains_on_the_side_features(spark, cfg, tmp_path):
    from mlflow.tracking import MlflowClient

    from lakerec import movielens
    from lakerec.retrieval import train
    from lakerec.retrieval.features import build_spec
    from lakerec.retrieval.data import read_inputs
    from tests.train_fixtures import FAST_TRAIN

    cfg = override(cfg, filter__item_intention_length=3, mlflow__registered_model="movielens-side-test",
                   **{**FAST_TRAIN, "train__epochs": 1, "train__monitor_rows": 0, "train__ks": (1, 2)})
    folder = _write(tmp_path / "ml-100k", {"u.data": U_DATA, "u.user": U_USER, "u.item": U_ITEM})
    movielens.load(spark, cfg, folder / "u.data", split="time", test_fraction=0.25)

    spec, _ = build_spec(spark, "all", read_inputs(spark, cfg))
    sizes = {k: v for k, v in spec.vocab_sizes.items() if v > 1}
    assert sizes == {"user_age": 3, "user_gender": 3, "user_is_occupied": 3, "user_geography": 3,
                     "item_category": 3, "item_brand": 3, "item_intention": 10}
    assert spec.intention_length == 3

    out = train.run(spark, cfg, run_name="ml-side")
    params = MlflowClient().get_run(out["run_id"]).data.params
    assert params["train.features"] == "all" and out["fit"].epochs_done == 1
    assert "model" in out["evaluation"]["metrics"]["all"]


def test_missing_side_files_load_with_zeros(spark, cfg, tmp_path, caplog):
    from lakerec import movielens

    folder = _write(tmp_path / "ml-100k", {"u.data": U_DATA, "u.item": U_ITEM})
    with caplog.at_level(logging.WARNING, logger="lakerec.movielens"):
        s = movielens.load(spark, cfg, folder / "u.data", split="time", test_fraction=0.25)
    assert s.side_files == ("u.item",) and s.users_without_features == 0
    assert [m for m in caplog.messages if "not found beside" in m] == [
        "u.user not found beside u.data: user side features are 0 (the GroupLens zip holds it)"]
    rows = spark.table(cfg.table("train_interactions")).collect()
    assert {tuple(getattr(r, c) for c in USER_COLS) for r in rows} == {(0, 0, 0, 0)}
    assert {r.item_id: r.item_category_index for r in rows} == {10: 1, 20: 1, 30: 2}

    bare = _write(tmp_path / "bare", {"u.data": U_DATA})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lakerec.movielens"):
        s = movielens.load(spark, cfg, bare / "u.data", split="time", test_fraction=0.25)
    assert [m for m in caplog.messages if "not found beside" in m] == [
        "u.user and u.item not found beside u.data: user and item side features are 0; train with --features ids "
        "(the GroupLens zip holds them)"]
    assert s.side_files == ()
    assert spark.table(cfg.table("feature_vocab")).count() == 0
    rows = spark.table(cfg.table("test_interactions")).collect()
    assert {(r.user_gender_index, r.item_brand_index, tuple(r.item_intention_ids)) for r in rows} == {
        (0, 0, (0,) * cfg.filter.item_intention_length)}


@pytest.mark.parametrize("name, text, match", [
    ("u.user", "1|24|F|technician|85711\n2|53|X|other|02139\n", r"u\.user line 2: the gender is not M or F"),
    ("u.user", "1|24|F|technician|85711\n\n2|old|M|other|02139\n", r"u\.user line 3: the age is not a number"),
    ("u.user", "1|24|F|technician\n", r"u\.user line 1: not 5 fields.*user id \| age"),
    ("u.user", "1|24|F|technician|85711\n1|25|M|other|02139\n", r"line 2: the user id appears on an earlier line"),
    ("u.item", f"10|Toy Story (1995)|01-Jan-1995||{_URL}|{_flags(3)}\n20|x|||{_URL}|0|1\n",
     r"u\.item line 2: not 24 fields"),
    ("u.item", f"10|Toy Story (1995)|01-Jan-1995||{_URL}|{_flags(3).replace('1', 'y')}\n",
     r"u\.item line 1: a genre flag is not 0 or 1"),
])
def test_malformed_100k_side_files_name_the_line(spark, cfg, tmp_path, name, text, match):
    from lakerec import movielens

    folder = _write(tmp_path / "ml-100k", {"u.data": U_DATA, name: text})
    with pytest.raises(InputDataError, match=match):
        movielens.load(spark, cfg, folder / "u.data", split="time", test_fraction=0.25)


@pytest.mark.parametrize("name, text, match", [
    ("users.dat", "1::F::1::10::48067\n2::M::56::sixteen::70072\n", r"users\.dat line 2: the occupation is not a number"),
    ("movies.dat", "1::Toy Story (1995)::Comedy\nx::Heat (1995)::Action\n", r"movies\.dat line 2: the movie id"),
    ("movies.dat", "1::Toy Story (1995)\n", r"movies\.dat line 1: not 3 fields.*MovieID::Title"),
])
def test_malformed_1m_side_files_name_the_line(spark, cfg, tmp_path, name, text, match):
    from lakerec import movielens

    folder = _write(tmp_path / "ml-1m", {"ratings.dat": RATINGS_DAT, name: text})
    with pytest.raises(InputDataError, match=match):
        movielens.load(spark, cfg, folder / "ratings.dat", split="time", test_fraction=1 / 3)
