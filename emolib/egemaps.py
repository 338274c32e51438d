"""openSMILE's eGeMAPSv02 functionals, the standard paralinguistic baseline (Eyben et al., 2016), and speaker normalisation.

``functionals`` gives a clip's 88 acoustic parameters (pitch, jitter, shimmer, loudness, spectral balance, formants, rates
of voiced segments ...) from the ``opensmile`` package, which ships openSMILE's own binary: no hub weights, seconds on a
CPU. openSMILE's licence is audEERING's (free for research and education; commercial use needs a licence from them), so it
is an extra: ``pip install 'emolib[egemaps]'``.

Speaker normalisation, the known lever for speaker-independent speech emotion recognition, standardises each parameter
by the speaker's own mean and standard deviation instead of the corpus's. ``SpeakerStats`` is the running estimate: over a
speaker's clips (evaluation, an annotate list with a speaker column) or a session's speech windows (a stream, a timeline);
under ``MIN_CLIPS`` the corpus statistics stored in the model stand in.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import EmolibError

FEATURE_SET = "eGeMAPSv02"
FEATURES = 88
MIN_VERSION = (2, 4)
INSTALL = "pip install 'emolib[egemaps]'"
MIN_CLIPS = 5  # clips or speech windows of a speaker before their own statistics replace the corpus's
MIN_STD = 1e-3  # in corpus standard deviations: a parameter a speaker never varies is scaled by the corpus's spread instead
MIN_SAMPLES = 1600  # 0.1 s at 16 kHz: openSMILE's functionals of less are undefined; such a clip is padded with silence


def opensmile_version() -> str:
    """The installed opensmile's version; EmolibError in one line when it is missing or older than ``MIN_VERSION``."""
    try:
        import opensmile
    except ImportError:
        raise EmolibError(f"the eGeMAPS voice model needs openSMILE: {INSTALL} (audEERING's licence: free for research and "
                          "education, commercial use needs theirs)") from None
    version = getattr(opensmile, "__version__", "0")
    parts = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if parts < MIN_VERSION:
        raise EmolibError(f"opensmile {version} is too old for the eGeMAPS voice model (needs {'.'.join(map(str, MIN_VERSION))} or newer): "
                          f"pip install -U opensmile")
    return version


@lru_cache(maxsize=1)
def _smile():
    import opensmile

    opensmile_version()
    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)


def functionals(wave: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """The 88 eGeMAPSv02 functionals of a mono wave as float32 (a parameter openSMILE leaves undefined is 0)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if len(wave) < MIN_SAMPLES:
        wave = np.concatenate([wave, np.zeros(MIN_SAMPLES - len(wave), dtype=np.float32)])
    values = _smile().process_signal(wave, sample_rate).to_numpy(dtype=np.float32).reshape(-1)
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def feature_names() -> list[str]:
    return list(_smile().feature_names)


class SpeakerStats:
    """The running mean and standard deviation of one speaker's functionals (Welford's algorithm)."""

    def __init__(self, size: int = FEATURES):
        self.count, self.mean, self.squares = 0, np.zeros(size, dtype=np.float64), np.zeros(size, dtype=np.float64)

    def add(self, values: np.ndarray) -> None:
        for row in np.atleast_2d(np.asarray(values, dtype=np.float64)):
            self.count += 1
            delta = row - self.mean
            self.mean += delta / self.count
            self.squares += delta * (row - self.mean)

    @property
    def ready(self) -> bool:
        return self.count >= MIN_CLIPS

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.squares / max(self.count - 1, 1))


def standardise(values: np.ndarray, mean: np.ndarray, std: np.ndarray, floor: np.ndarray | None = None) -> np.ndarray:
    """(values - mean) / std, with std no smaller than ``floor`` (default ``MIN_STD``) so that a constant parameter stays finite."""
    std = np.maximum(np.asarray(std, dtype=np.float64), MIN_STD if floor is None else floor)
    return ((np.asarray(values, dtype=np.float64) - mean) / std).astype(np.float32)


def by_speaker(values: np.ndarray, speakers, corpus_mean: np.ndarray, corpus_std: np.ndarray) -> tuple[np.ndarray, dict]:
    """Each row standardised by its speaker's statistics (over that speaker's rows here), or by the corpus's for a speaker with
    fewer than ``MIN_CLIPS`` rows; and {"speakers": n, "by_corpus": speakers with too few rows}."""
    values = np.asarray(values, dtype=np.float64)
    speakers = np.asarray([str(speaker) for speaker in speakers])
    out = np.empty(values.shape, dtype=np.float32)
    floor = MIN_STD * np.asarray(corpus_std, dtype=np.float64)
    too_few = []
    for speaker in sorted(set(speakers)):
        rows = speakers == speaker
        if rows.sum() >= MIN_CLIPS:
            stats = SpeakerStats(values.shape[1])
            stats.add(values[rows])
            out[rows] = standardise(values[rows], stats.mean, stats.std, np.maximum(floor, 1e-12))
        else:
            out[rows] = standardise(values[rows], corpus_mean, corpus_std)
            too_few.append(speaker)
    return out, {"speakers": len(set(speakers)), "by_corpus": too_few}


def speaker_features(model, inputs: dict, speaker=None, speaker_norm: bool = True):
    """(features (1, D), how they were standardised) of an eGeMAPS voice model for one window's ``transforms.voice_inputs``:
    by the speaker's statistics (``speaker``: the ``SpeakerStats`` this window is added to first) once they are ready, else by
    the model's corpus statistics; ``speaker_norm`` False (or a model trained without it): the corpus statistics always."""
    import torch

    with torch.inference_mode():
        raw = model.frozen_features(inputs["input_values"][None], inputs["attention_mask"][None]).cpu()
        if not (speaker_norm and model.speaker_norm):
            how = "off (the corpus statistics)" if model.speaker_norm else "none (the model trained without it)"
            return model.from_frozen(raw).float(), how
        if speaker is not None:
            speaker.add(raw.numpy())
        if speaker is not None and speaker.ready:
            floor = np.maximum(1e-3 * model.std.numpy(), 1e-12)
            standardised = torch.from_numpy(standardise(raw.numpy(), speaker.mean, speaker.std, floor))
            return model.from_standardised(standardised).float(), f"per speaker: {speaker.count} windows of this speaker so far"
        how = ("the corpus statistics (the speaker is not known)" if speaker is None else
               f"the corpus statistics until {MIN_CLIPS} speech windows of this speaker ({speaker.count} so far)")
        return model.from_frozen(raw).float(), how
