"""Label sets: which emotions a corpus, a manifest and a checkpoint use, in which order.

A label set comes from the data: the names in a manifest's ``label`` column, in a stable order
(a known corpus keeps its own order: CREMA-D's six codes, RAVDESS's eight names; any other set is
sorted), which the user may override. Every checkpoint stores its label set; training,
evaluation, prediction and the live demo read it from there.
"""
from __future__ import annotations

from pathlib import Path

from .cremad import EMOTION_NAMES
from .cremad import EMOTIONS as CREMAD_LABELS
from .errors import DataError
from .ravdess import EMOTIONS as RAVDESS_LABELS

KNOWN_ORDERS = (CREMAD_LABELS, RAVDESS_LABELS)
RESERVED = ("pred", "")
MIN_LABELS = 2
DROP = ""  # a label map's target that drops the label


def check_labels(labels, where: str = "labels") -> tuple[str, ...]:
    """``labels`` as a tuple of distinct, non-empty names (at least two); DataError saying what is wrong."""
    labels = tuple(str(label) for label in labels)
    problems = [label for label in labels if label.strip() != label or label in RESERVED or "," in label]
    if problems:
        raise DataError(f"{where}: unusable label name {problems[0]!r} (names must be non-empty, without commas or "
                        f"surrounding spaces, and not {RESERVED[0]!r})")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise DataError(f"{where}: label {repeated[0]!r} appears twice")
    if len(labels) < MIN_LABELS:
        raise DataError(f"{where}: a classifier needs at least {MIN_LABELS} labels, got {list(labels)}")
    return labels


def label_order(names, order=None, where: str = "labels") -> tuple[str, ...]:
    """The label set of the label names ``names`` (an iterable, e.g. a manifest column).

    ``order`` (a list or "a,b,c") fixes the order and must name every label present; without it a
    set inside a known corpus's vocabulary keeps that corpus's order, any other set is sorted.
    """
    present = set(str(name) for name in names)
    if order is not None:
        order = check_labels(parse_label_list(order) if isinstance(order, str) else order, where)
        missing = sorted(present - set(order))
        if missing:
            raise DataError(f"{where}: the data has labels the given order leaves out: {', '.join(missing)}")
        return order
    for known in KNOWN_ORDERS:
        if present <= set(known):
            return check_labels([label for label in known if label in present], where)
    return check_labels(sorted(present), where)


def parse_label_list(text: str) -> tuple[str, ...]:
    """``"a,b,c"`` -> ("a", "b", "c")."""
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


def encode_labels(manifest, labels, where: str = "manifest"):
    """A copy of ``manifest`` whose ``label`` column holds each row's index in ``labels`` (from its ``emotion`` name).

    DataError naming the labels that are not in ``labels``.
    """
    labels = tuple(labels)
    unknown = sorted(set(manifest["emotion"].astype(str)) - set(labels))
    if unknown:
        raise DataError(f"{where}: labels {', '.join(unknown)} are not in the label set {', '.join(labels)} "
                        f"(map them with --label-map, or drop those rows)")
    out = manifest.copy()
    out["label"] = [labels.index(str(name)) for name in out["emotion"]]
    return out


def parse_label_map(spec) -> dict[str, str]:
    """A label map from ``"calm=neutral,surprised="`` (inline) or a file of ``from,to`` / ``from=to`` lines.

    An empty target drops the label; a file may start with a byte-order mark. DataError naming a malformed entry, or an empty map.
    """
    if isinstance(spec, dict):
        return {str(key): str(value) for key, value in spec.items()}
    path = Path(str(spec))
    text = path.read_text(encoding="utf-8-sig") if path.is_file() else str(spec).replace(",", "\n") if "=" in str(spec) else None
    if text is None:
        raise DataError(f"{spec}: not a label map (give FROM=TO pairs, e.g. 'calm=NEU,surprised=', or a file of FROM,TO lines)")
    mapping = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        separator = "=" if "=" in line else ","
        source, found, target = line.partition(separator)
        if not found or not source.strip():
            raise DataError(f"{spec}: malformed label map entry {line!r} (expected FROM=TO or FROM,TO)")
        mapping[source.strip()] = target.strip()
    if not mapping:
        raise DataError(f"{spec}: the label map is empty (give FROM=TO pairs, or leave --label-map out)")
    return mapping


def map_labels(manifest, mapping: dict, labels) -> tuple:
    """Rows of ``manifest`` with each ``emotion`` renamed by ``mapping`` and kept when it is one of ``labels``.

    Returns (the kept rows re-encoded against ``labels``, {original label: clips dropped}). A label
    mapped to "" is dropped; a label neither mapped nor in ``labels`` is dropped too, and counted.
    """
    labels = tuple(labels)
    renamed = manifest["emotion"].astype(str).map(lambda name: mapping.get(name, name))
    keep = renamed.isin(labels)
    dropped = manifest.loc[~keep, "emotion"].astype(str).value_counts().sort_index()
    out = manifest[keep].assign(emotion=renamed[keep])
    return encode_labels(out, labels).reset_index(drop=True), {str(name): int(count) for name, count in dropped.items()}


def rename_labels(manifest, mapping: dict) -> tuple:
    """Training on another corpus's label names: ``manifest`` with each ``emotion`` renamed by ``mapping`` (labels it does not name
    keep theirs), the rows mapped to "" left out; and {original label: clips left out}."""
    renamed = manifest["emotion"].astype(str).map(lambda name: mapping.get(name, name))
    keep = renamed != ""
    dropped = manifest.loc[~keep, "emotion"].astype(str).value_counts().sort_index()
    return manifest[keep].assign(emotion=renamed[keep]).reset_index(drop=True), {str(name): int(count) for name, count in dropped.items()}


def display_name(label: str) -> str:
    """A readable name: CREMA-D's codes spelt out (ANG -> anger), any other label as it is."""
    return EMOTION_NAMES.get(label, label)
