"""Actor-disjoint, sex-stratified, deterministic train/val/test and k-fold splits.

Every clip of an actor lands in the same split, so a model is always tested on
voices and faces it never saw. Splits depend only on the actor ids, their sex and
the seed (numpy's RandomState over sorted ids), so they are identical on any machine.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15
DEFAULT_FOLDS = 5
UNKNOWN_SEX = "unknown"
DEFAULT_PROTOCOL = "default"
HICMAE = "hicmae"
PROTOCOLS = (DEFAULT_PROTOCOL, HICMAE)
HICMAE_FOLDS = 5
HICMAE_FIRST_ACTOR = 1001
HICMAE_FOLD_ACTORS = 18
HICMAE_LAST_ACTOR = 1091
HICMAE_VAL_FRACTION = VAL_FRACTION / (1 - TEST_FRACTION)  # of the training actors: the papers have no validation split


def speaker_key(value):
    """A speaker id as a dict key: an int for a whole number (CREMA-D's 1001, RAVDESS's 12), else its text."""
    if isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer()):
        return int(value)
    return str(value)


def speaker_ids(actors) -> list:
    """The sorted distinct speaker ids of ``actors`` as plain ints or strings (``speaker_key``; JSON-ready)."""
    return sorted({speaker_key(actor) for actor in actors})


def speakers_by_split(manifest: pd.DataFrame) -> dict[str, list]:
    """``{split: speaker_ids}`` of every split in ``manifest``: train, val, test first, then any others by name."""
    present = [split for split in manifest["split"].unique() if split]
    names = [split for split in SPLITS if split in present] + sorted(set(present) - set(SPLITS))
    return {split: speaker_ids(manifest.loc[manifest["split"] == split, "actor"]) for split in names}


def split_warnings(manifest: pd.DataFrame) -> list[str]:
    """What makes a split of ``manifest`` a poor basis for training or for a result: a split with a single speaker
    (its metrics describe one person), a label without a training clip (the model can never learn it)."""
    warnings = []
    if "split" not in manifest.columns:
        return warnings
    for split, speakers in speakers_by_split(manifest).items():
        if len(speakers) == 1:
            warnings.append(f"the {split} split has one speaker ({speakers[0]}): its results describe one person")
    if "emotion" in manifest.columns and (manifest["split"] == "train").any():
        trained = set(manifest.loc[manifest["split"] == "train", "emotion"].astype(str))
        for label in sorted(set(manifest["emotion"].astype(str)) - trained):
            warnings.append(f"label {label} has no clip in the train split: no model can learn it")
    return warnings


def actor_sexes(actors) -> dict[int, str]:
    """Normalise ``actor -> sex`` (dict, Series, or a DataFrame with a ``sex`` column) to ``{actor: stratum}``.

    Strata are lower-cased; a missing sex becomes ``"unknown"``. Repeated actors keep their first known sex.
    """
    if isinstance(actors, pd.DataFrame):
        actors = actors["sex"] if "sex" in actors.columns else pd.Series(UNKNOWN_SEX, index=actors.index)
    strata: dict[int, str] = {}
    for actor, sex in actors.items():
        actor, stratum = speaker_key(actor), sex_stratum(sex)
        if strata.get(actor, UNKNOWN_SEX) == UNKNOWN_SEX:
            strata[actor] = stratum
    return strata


def sex_stratum(sex) -> str:
    """The stratum name of one sex value: lower-cased text, or ``"unknown"`` when missing or empty."""
    if sex is None or (np.ndim(sex) == 0 and pd.isna(sex)):
        return UNKNOWN_SEX
    return str(sex).strip().lower() or UNKNOWN_SEX


def split_actors(actors, val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION, seed=0) -> dict[int, str]:
    """Assign each actor to train, val or test (about 70/15/15), stratified by sex.

    ``actors`` maps actor id to sex. Every split is non-empty; fewer than 3 actors raise DataError.
    """
    strata = actor_sexes(actors)
    _check_fractions(val_fraction, test_fraction)
    if len(strata) < len(SPLITS):
        raise DataError(f"train/val/test splits need at least {len(SPLITS)} actors, got {len(strata)}")
    order = _interleave(strata, np.random.RandomState(seed))
    n_test = _clamp(round(len(order) * test_fraction), 1, len(order) - 2)
    n_val = _clamp(round(len(order) * val_fraction), 1, len(order) - n_test - 1)
    return _label(order, test=order[:n_test], val=order[n_test : n_test + n_val])


def kfold_actors(actors, folds=DEFAULT_FOLDS, fold=0, seed=0, val_fraction=VAL_FRACTION) -> dict[int, str]:
    """Fold ``fold`` (0-based) of actor-disjoint, sex-stratified k-fold splits.

    The test actors of the ``folds`` folds are disjoint groups that together cover every actor once;
    the other actors are split into val (about ``val_fraction`` of all actors) and train.
    """
    strata = actor_sexes(actors)
    _check_folds(len(strata), folds, fold)
    rng = np.random.RandomState(seed)
    dealt = [actor for group in _shuffled_strata(strata, rng) for actor in group]
    test = set(dealt[fold::folds])
    rest = {actor: stratum for actor, stratum in strata.items() if actor not in test}
    if len(rest) < 2:
        raise DataError(f"fold {fold} of {folds} leaves {len(rest)} actor for train and val; need at least 2 (use fewer folds)")
    order = _interleave(rest, rng)
    n_val = _clamp(round(len(strata) * val_fraction), 1, len(order) - 1)
    return _label(strata, test=test, val=order[:n_val])


def hicmae_test_actors(fold: int) -> list[int]:
    """The test actors of fold ``fold`` (0-based) of HiCMAE's / AVF-MAE++'s 5-fold speaker-independent partition of CREMA-D.

    Paper fold k (1-5) tests actors 1001+18(k-1) .. 1001+18k-1; the last fold also tests actor 1091.
    """
    if not 0 <= fold < HICMAE_FOLDS:
        raise DataError(f"fold={fold} is out of range for the {HICMAE} protocol (expected 0..{HICMAE_FOLDS - 1}, paper folds 1-5)")
    first = HICMAE_FIRST_ACTOR + HICMAE_FOLD_ACTORS * fold
    actors = list(range(first, first + HICMAE_FOLD_ACTORS))
    return actors + [HICMAE_LAST_ACTOR] if fold == HICMAE_FOLDS - 1 else actors


def hicmae_actors(actors, fold: int, seed: int = 0) -> dict[int, str]:
    """Fold ``fold`` of the hicmae protocol: its test actors, and a sex-stratified validation split carved
    from the remaining (training) actors, never from the test fold (the papers have none)."""
    strata = actor_sexes(actors)
    test = set(hicmae_test_actors(fold)) & set(strata)
    rest = {actor: stratum for actor, stratum in strata.items() if actor not in test}
    if not test:
        raise DataError(f"fold {fold} of the {HICMAE} protocol tests actors {min(hicmae_test_actors(fold))}-"
                        f"{max(hicmae_test_actors(fold))}, none of which is in this data")
    if len(rest) < 2:
        raise DataError(f"fold {fold} of the {HICMAE} protocol leaves {len(rest)} actor for train and val; need at least 2")
    order = _interleave(rest, np.random.RandomState(seed))
    n_val = _clamp(round(len(rest) * HICMAE_VAL_FRACTION), 1, len(rest) - 1)
    return _label(strata, test=test, val=order[:n_val])


def assign_splits(manifest: pd.DataFrame, fold=None, folds=DEFAULT_FOLDS, seed=0, protocol: str = DEFAULT_PROTOCOL) -> pd.DataFrame:
    """A copy of ``manifest`` with its ``split`` column filled from the ``actor`` and ``sex`` columns.

    ``fold=None`` gives train/val/test (split_actors); an integer gives that fold of kfold_actors,
    or with ``protocol="hicmae"`` that fold of hicmae_actors.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")
    if "actor" not in manifest.columns:
        raise DataError("manifest has no 'actor' column to split on")
    sexes = manifest["sex"] if "sex" in manifest.columns else pd.Series(UNKNOWN_SEX, index=manifest.index)
    per_actor = pd.Series(sexes.to_numpy(), index=manifest["actor"].to_numpy())
    if protocol == HICMAE:
        mapping = hicmae_actors(per_actor, 0 if fold is None else fold, seed=seed)
    elif fold is None:
        mapping = split_actors(per_actor, seed=seed)
    else:
        mapping = kfold_actors(per_actor, folds=folds, fold=fold, seed=seed)
    out = manifest.copy()
    out["split"] = [mapping[speaker_key(actor)] for actor in out["actor"]]
    return out


def _shuffled_strata(strata: dict[int, str], rng: np.random.RandomState) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for actor in sorted(strata):
        groups.setdefault(strata[actor], []).append(actor)
    return [[groups[name][index] for index in rng.permutation(len(groups[name]))] for name in sorted(groups)]


def _interleave(strata: dict[int, str], rng: np.random.RandomState) -> list[int]:
    """Shuffled actors ordered so that every run of consecutive actors holds each stratum in proportion."""
    keyed = []
    for index, group in enumerate(_shuffled_strata(strata, rng)):
        offset = rng.random_sample()
        keyed += [((position + offset) / len(group), index, actor) for position, actor in enumerate(group)]
    return [actor for *_, actor in sorted(keyed)]


def _label(actors, test, val) -> dict[int, str]:
    test, val = set(test), set(val)
    return {actor: "test" if actor in test else "val" if actor in val else "train" for actor in sorted(actors)}


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(int(value), high))


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction}: each must be in (0, 1) and their sum below 1"
        )


def _check_folds(actors: int, folds: int, fold: int) -> None:
    if folds < 2:
        raise DataError(f"folds={folds}: k-fold splits need at least 2 folds")
    if not 0 <= fold < folds:
        raise DataError(f"fold={fold} is out of range for {folds} folds (expected 0..{folds - 1})")
    if actors < folds:
        raise DataError(f"{folds}-fold splits need at least {folds} actors, got {actors}")
