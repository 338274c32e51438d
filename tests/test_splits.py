"""Actor-disjoint, sex-stratified, deterministic splits (emolib.data.splits)."""
from collections import Counter

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emolib.cremad import load_demographics
from emolib.errors import DataError
from emolib.data.splits import SPLITS, assign_splits, kfold_actors, split_actors


@pytest.fixture(scope="module")
def real_actors():
    return load_demographics()["sex"]


def actors_in(mapping, split):
    return {actor for actor, name in mapping.items() if name == split}


def test_real_actors_split_70_15_15_disjoint_and_sex_balanced(real_actors):
    mapping = split_actors(real_actors)
    assert set(mapping) == set(real_actors.index)
    groups = {split: actors_in(mapping, split) for split in SPLITS}
    assert sum(len(group) for group in groups.values()) == 91
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"]) and not (groups["val"] & groups["test"])
    assert 60 <= len(groups["train"]) <= 67
    assert 11 <= len(groups["val"]) <= 16 and 11 <= len(groups["test"]) <= 16
    for split, group in groups.items():
        assert set(real_actors[list(group)]) == {"Male", "Female"}, split
        females = (real_actors[list(group)] == "Female").mean()
        assert 0.3 < females < 0.65, split


def test_split_is_deterministic_and_seed_dependent(real_actors):
    assert split_actors(real_actors, seed=0) == split_actors(real_actors, seed=0)
    assert split_actors(real_actors, seed=0) == split_actors(dict(reversed(list(real_actors.items()))), seed=0)
    assert split_actors(real_actors, seed=0) != split_actors(real_actors, seed=1)


def test_split_pins_known_assignment(real_actors):
    # Guards against accidental changes to the algorithm: published splits must not move.
    mapping = split_actors(real_actors, seed=0)
    assert Counter(mapping.values()) == {"train": 63, "val": 14, "test": 14}
    assert sorted(actors_in(mapping, "test")) == [
        1007, 1011, 1018, 1022, 1039, 1040, 1054, 1056, 1058, 1059, 1061, 1070, 1076, 1081,
    ]


def test_three_actors_fill_every_split_and_two_are_refused():
    assert sorted(split_actors({1: "Male", 2: "Female", 3: None}).values()) == ["test", "train", "val"]
    with pytest.raises(DataError, match="at least 3 actors"):
        split_actors({1: "Male", 2: "Female"})


def test_bad_fractions_are_refused():
    with pytest.raises(DataError, match="val_fraction"):
        split_actors({1: "M", 2: "F", 3: "M"}, val_fraction=0.6, test_fraction=0.5)


def test_kfold_every_actor_is_test_exactly_once(real_actors):
    folds = [kfold_actors(real_actors, folds=5, fold=k) for k in range(5)]
    tested = Counter(actor for mapping in folds for actor in actors_in(mapping, "test"))
    assert set(tested) == set(real_actors.index) and set(tested.values()) == {1}
    for mapping in folds:
        test, val, train = (actors_in(mapping, split) for split in ("test", "val", "train"))
        assert not (test & val) and not (test & train) and not (val & train)
        assert test | val | train == set(real_actors.index)
        assert 17 <= len(test) <= 20 and 12 <= len(val) <= 16
        assert set(real_actors[list(test)]) == {"Male", "Female"}


def test_kfold_is_deterministic(real_actors):
    assert kfold_actors(real_actors, fold=2, seed=3) == kfold_actors(real_actors, fold=2, seed=3)
    assert kfold_actors(real_actors, fold=2, seed=3) != kfold_actors(real_actors, fold=2, seed=4)


@pytest.mark.parametrize(
    "folds, fold, actors, message",
    [(1, 0, 10, "at least 2 folds"), (5, 5, 10, "out of range"), (5, -1, 10, "out of range"), (5, 0, 4, "at least 5 actors")],
)
def test_kfold_refuses_bad_arguments(folds, fold, actors, message):
    with pytest.raises(DataError, match=message):
        kfold_actors({actor: "Male" for actor in range(actors)}, folds=folds, fold=fold)


def test_assign_splits_keeps_actors_whole_and_treats_missing_sex_as_a_stratum():
    rows = [{"actor": actor, "sex": sex, "stem": f"{actor}_{clip}"}
            for actor, sex in [(1, "Male"), (2, "Female"), (3, None), (4, "Male"), (5, "Female"), (6, float("nan"))]
            for clip in range(3)]
    manifest = pd.DataFrame(rows)
    out = assign_splits(manifest)
    assert "split" not in manifest.columns
    assert out.groupby("actor")["split"].nunique().eq(1).all()
    assert set(out["split"]) == set(SPLITS)
    per_actor = out.drop_duplicates("actor").set_index("actor")["split"].to_dict()
    assert per_actor == split_actors({1: "Male", 2: "Female", 3: "unknown", 4: "Male", 5: "Female", 6: None})
    fold = assign_splits(manifest, fold=1, folds=3)
    assert fold["split"].eq("test").sum() == 6


@settings(max_examples=60, deadline=None)
@given(
    actors=st.dictionaries(
        st.integers(1000, 9999), st.sampled_from(["Male", "Female", None]), min_size=3, max_size=120
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_split_property_random_actor_sets(actors, seed):
    mapping = split_actors(actors, seed=seed)
    assert set(mapping) == set(actors)
    assert set(mapping.values()) == set(SPLITS)
    assert mapping == split_actors(dict(sorted(actors.items(), reverse=True)), seed=seed)
    sizes = Counter(mapping.values())
    assert sizes["train"] >= sizes["val"] and sizes["train"] >= sizes["test"]


@settings(max_examples=40, deadline=None)
@given(
    actors=st.dictionaries(st.integers(1, 500), st.sampled_from(["Male", "Female"]), min_size=8, max_size=100),
    folds=st.integers(2, 6),
    seed=st.integers(0, 1000),
)
def test_kfold_property_random_actor_sets(actors, folds, seed):
    tested = Counter()
    for fold in range(folds):
        mapping = kfold_actors(actors, folds=folds, fold=fold, seed=seed)
        assert set(mapping) == set(actors)
        assert set(mapping.values()) == set(SPLITS)
        tested.update(actors_in(mapping, "test"))
    assert set(tested) == set(actors) and set(tested.values()) == {1}
