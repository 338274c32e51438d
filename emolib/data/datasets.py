"""torch Datasets over a manifest: voice clips, face crops, and cached features.

Each item is a dict of tensors with a ``label``; the other keys are the model's inputs (``MODEL_INPUTS``: a
voice item has ``speech_mask`` only when its settings ask for speech-only pooling).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..files import file_identity
from ..media import audio_problem, load_sound
from ..speech import speech_mask
from ..transforms import AudioSettings, FaceSettings, face_pixels, voice_inputs
from .face_cache import load_face_crops

MODEL_INPUTS = {"voice": ("input_values", "attention_mask", "speech_mask"), "face": ("pixels",), "fusion": ("voice", "face", "present")}


def select_split(manifest: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Rows of one split (all rows when ``split`` is None)."""
    rows = manifest if split is None else manifest[manifest["split"] == split]
    return rows.reset_index(drop=True)


def data_identity(manifest: pd.DataFrame, splits=("train", "val")) -> str:
    """A hash of the clips a run trains and selects on: stem, split, label and each file's identity.

    Another data tree, a changed split or a replaced file gives another identity.
    """
    import hashlib

    digest = hashlib.sha1()
    rows = manifest[manifest["split"].isin(splits)].sort_values("stem")
    for row in rows[["stem", "split", "label", "audio_path", "video_path"]].itertuples(index=False):
        sources = [_identity_or_missing(path) for path in (row.audio_path, row.video_path)]
        digest.update("\t".join([row.stem, row.split, str(row.label), *sources]).encode() + b"\n")
    return digest.hexdigest()[:16]


def training_record(manifest: pd.DataFrame, about: dict | None = None) -> dict:
    """What a checkpoint and its model card record about the training data: ``about`` (name, layout, protocol,
    fold), the number of clips and the speakers of each split."""
    from .splits import speakers_by_split

    return {**(about or {}), "clips": int(len(manifest)), "split_speakers": speakers_by_split(manifest)}


def _identity_or_missing(path) -> str:
    if not str(path or "") or str(path) == "nan":
        return "-"
    try:
        return file_identity(path)
    except OSError:
        return "missing"


def face_rows(manifest: pd.DataFrame, faces: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``manifest`` the face model may use: cropped, with a face (``has_face``: the no-face policy), plus ``face_path``."""
    usable = faces[(faces["face_path"].astype(str) != "") & faces["has_face"].astype(bool)][["stem", "face_path"]]
    return manifest.merge(usable, on="stem", how="inner").reset_index(drop=True)


def paired_rows(manifest: pd.DataFrame, faces: pd.DataFrame) -> pd.DataFrame:
    """Rows with audio and a readable video (face found or not): the clips the fusion model sees."""
    cropped = set(faces.loc[faces["face_path"].astype(str) != "", "stem"])
    rows = manifest[(manifest["audio_path"].astype(str) != "") & manifest["stem"].isin(cropped)]
    return rows.reset_index(drop=True)


def _augmentation_rng(train: bool) -> np.random.Generator | None:
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))) if train else None


class VoiceDataset(Dataset):
    """Clips with readable audio -> ``input_values``, ``attention_mask``; random crop when ``train``.

    Every audio file is checked (headers) when the dataset is made: unreadable ones are warned
    about, listed in ``skipped`` and left out, so an epoch never stops on one bad file.
    """

    def __init__(self, manifest: pd.DataFrame, settings: AudioSettings | None = None, train: bool = False):
        import warnings

        rows = manifest[manifest["audio_path"].astype(str) != ""]
        problems = {index: audio_problem(path) for index, path in rows["audio_path"].items()}
        self.skipped = [problem for problem in problems.values() if problem]
        for problem in self.skipped:
            warnings.warn(f"skipping {problem}", stacklevel=2)
        self.rows = rows.loc[[index for index, problem in problems.items() if not problem]].reset_index(drop=True)
        self.settings, self.train = settings or AudioSettings(), train
        self.waves: dict[int, np.ndarray] = {}
        self.speech: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def sources(self) -> list[str]:
        """The identity of each clip's audio file (``files.file_identity``): what a feature cache entry depends on."""
        return [file_identity(path) for path in self.rows["audio_path"]]

    def wave(self, index: int) -> np.ndarray:
        if index not in self.waves:
            self.waves[index] = load_sound(self.rows.at[index, "audio_path"])
        return self.waves[index]

    def speech_mask(self, index: int) -> np.ndarray | None:
        """The clip's speech samples (``speech.speech_mask``), computed once, when the settings pool over speech only."""
        if not self.settings.speech_only:
            return None
        if index not in self.speech:
            self.speech[index] = speech_mask(self.wave(index))
        return self.speech[index]

    def __getitem__(self, index: int) -> dict:
        item = voice_inputs(self.wave(index), self.settings, _augmentation_rng(self.train), self.speech_mask(index))
        return {**item, "label": torch.tensor(int(self.rows.at[index, "label"]))}


def speech_sample(manifest: pd.DataFrame, count: int) -> list[np.ndarray]:
    """Up to ``count`` training clips' 16 kHz waves, evenly spread over the train split (the sample a new voice model's default
    speech rule is chosen on, ``speech.default_rule``); unreadable files are left out."""
    from ..errors import AudioError

    rows = select_split(manifest, "train")
    paths = list(rows.loc[rows["audio_path"].astype(str) != "", "audio_path"])
    picks = sorted(set(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))) if paths else []
    waves = []
    for index in picks:
        try:
            waves.append(load_sound(paths[index]))
        except AudioError:
            continue
    return waves


class FaceDataset(Dataset):
    """Clips with a face in their cached crops -> ``pixels`` (F, 3, S, S). When ``train``: one random jittered frame
    (a model that means its frames), or every frame jittered with ``whole_clips`` (a model with temporal attention)."""

    def __init__(self, manifest: pd.DataFrame, faces: pd.DataFrame, settings: FaceSettings | None = None, train: bool = False,
                 whole_clips: bool = False):
        self.rows = face_rows(manifest, faces)
        self.settings, self.train, self.whole_clips = settings or FaceSettings(), train, whole_clips

    def __len__(self) -> int:
        return len(self.rows)

    def sources(self) -> list[str]:
        """Each clip's crop file, whose name carries its video's identity: what a feature cache entry depends on."""
        return [str(path) for path in self.rows["face_path"]]

    def crops(self, index: int) -> np.ndarray:
        return load_face_crops(self.rows.at[index, "face_path"])

    def __getitem__(self, index: int) -> dict:
        crops = self.crops(index)
        rng = _augmentation_rng(self.train)
        if rng is not None and not self.whole_clips:
            crops = crops[[rng.integers(len(crops))]]
        return {"pixels": face_pixels(crops, self.settings, rng), "label": torch.tensor(int(self.rows.at[index, "label"]))}


class PairedDataset(Dataset):
    """Clips with audio and a readable video -> the voice inputs, the face ``pixels`` and ``present`` (voice, face): the
    joint fine-tuning of both encoders with the fusion head. A clip without a detected face gets zero pixels and
    present [1, 0], as everywhere (``faces.clip_has_face``); augmentation as in VoiceDataset and FaceDataset."""

    def __init__(self, manifest: pd.DataFrame, faces: pd.DataFrame, audio: AudioSettings, face: FaceSettings, train: bool = False,
                 whole_clips: bool = False):
        self.voice = VoiceDataset(paired_rows(manifest, faces), audio, train)
        self.rows = self.voice.rows
        self.faces = FaceDataset(self.rows, faces, face, train, whole_clips)
        self.face_index = {stem: index for index, stem in enumerate(self.faces.rows["stem"])}
        self.frames = 1 if train and not whole_clips else face.frames
        self.size = face.image_size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        item = self.voice[index]
        found = self.face_index.get(self.rows.at[index, "stem"])
        if found is None:
            pixels = torch.zeros(self.frames, 3, self.size, self.size)
        else:
            pixels = self.faces[found]["pixels"]
        return {**item, "pixels": pixels, "present": torch.tensor([1.0, float(found is not None)])}


class FeatureDataset(Dataset):
    """Precomputed tensors (e.g. frozen-encoder embeddings) with labels."""

    def __init__(self, tensors: dict[str, torch.Tensor], labels: torch.Tensor):
        lengths = {len(value) for value in tensors.values()} | {len(labels)}
        if len(lengths) != 1:
            raise ValueError(f"feature tensors have different lengths: {sorted(lengths)}")
        self.tensors, self.labels = tensors, labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {**{name: value[index] for name, value in self.tensors.items()}, "label": self.labels[index]}
