"""Which speakers each model has seen, from the split speakers its checkpoint records.

Evaluation must never test a model on speakers it trained or selected on: another ``--split-seed``,
``--fold`` or ``--protocol`` than the one the models were trained with reshuffles the speakers, and a
test split made that way holds training speakers. ``seen_speakers`` finds them; ``evaluate_models``
refuses (or, with ``allow_seen_speakers``, says so in every report). ``card_refusal`` says why an
evaluation may not go into the models' card: only their own test split, as recorded, may.
"""
from __future__ import annotations

import math

from ..data.splits import speaker_ids, speaker_key
from ..errors import DataError
from ..models.checkpoint import read_checkpoint_config

SHOWN = 8  # speakers named in a one-line message


def recorded_splits(folder) -> dict[str, set]:
    """{split: speaker keys} that the checkpoint in ``folder`` records ({} for checkpoints of emolib before 0.3)."""
    data = read_checkpoint_config(folder)[1].get("data") or {}
    return {split: {speaker_key(speaker) for speaker in speakers} for split, speakers in (data.get("split_speakers") or {}).items()}


def seen_speakers(found: dict, actors, split: str) -> dict[str, list]:
    """{kind: speakers} of ``actors`` (the evaluated ``split``'s speakers) that each checkpoint of ``found`` had in another split
    (training, or validation for model selection); kinds without overlap are left out."""
    evaluated = {speaker_key(actor) for actor in actors}
    seen = {}
    for kind, folder in found.items():
        other = set().union(*[speakers for name, speakers in recorded_splits(folder).items() if name != split])
        overlap = evaluated & other
        if overlap:
            seen[kind] = speaker_ids(overlap)
    return seen


def refuse_seen(seen: dict[str, list], found: dict, split: str) -> None:
    """One line naming the first model that saw speakers of ``split`` and those speakers."""
    if not seen:
        return
    kind, speakers = next(iter(seen.items()))
    shown = ", ".join(map(str, speakers[:SHOWN])) + (f" and {len(speakers) - SHOWN} more" if len(speakers) > SHOWN else "")
    raise DataError(f"{found[kind]}: the {kind} model trained or selected on speakers {shown} of this {split} split; evaluate with the "
                    f"split it was trained with (same --split-seed, --fold and --protocol), or pass --allow-seen-speakers")


def card_refusal(found: dict, report: dict) -> str | None:
    """Why ``report`` may not be written into the models' card (None when it may): the card holds the models' own test split only."""
    if report.get("split") != "test":
        return f"the {report.get('split')} split is not the test split"
    if report.get("label_map"):
        return "a label-mapped (cross-corpus) evaluation describes other data"
    if report.get("seen_speakers"):
        return "the test speakers include speakers the models trained on (--allow-seen-speakers)"
    evaluated = {speaker_key(actor) for actor in report.get("actors", [])}
    for kind, folder in found.items():
        test = recorded_splits(folder).get("test")
        if test is not None and test != evaluated:
            return f"these are not the test speakers the {kind} model recorded"
    if any(not isinstance(metrics.get("uar"), (int, float)) or math.isnan(metrics["uar"]) for metrics in report["models"].values()):
        return "a model has no score on this data (no clip of its label set)"
    return None
