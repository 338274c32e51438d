"""Tables and figures of a data set for the notebooks: its clips, splits, waveforms, lengths and faces.

Every public function returns a pandas DataFrame or a matplotlib Figure and reads only what it is
given: a manifest and the face-crop cache. Results tables are ``emolib.eval.tables``.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from ..data.manifest import label_set
from ..labels import display_name
from ..data.splits import SPLITS, UNKNOWN_SEX

MEL_BANDS = 64
MEL_FFT = 400  # 25 ms windows at 16 kHz
MEL_HOP = 160  # 10 ms hop
TOP_DB = 80.0


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _present(manifest: pd.DataFrame, column: str) -> pd.Series:
    return manifest[column].fillna("").astype(str) != ""


def _sexes(manifest: pd.DataFrame) -> pd.Series:
    return manifest["sex"].fillna(UNKNOWN_SEX).astype(str)


def dataset_summary(manifest: pd.DataFrame) -> pd.DataFrame:
    """Clip and actor counts per emotion and in all (last row ``all``).

    Columns: clips, audio+video, audio only, video only (unpaired clips), actors, then for each sex
    ``clips (SEX)`` and ``actors (SEX)``.
    """
    audio, video = _present(manifest, "audio_path"), _present(manifest, "video_path")
    sexes = _sexes(manifest)
    groups = [(emotion, manifest["emotion"] == emotion) for emotion in label_set(manifest)]
    rows = {}
    for name, mask in groups + [("all", pd.Series(True, index=manifest.index))]:
        row = {
            "clips": int(mask.sum()),
            "audio+video": int((mask & audio & video).sum()),
            "audio only": int((mask & audio & ~video).sum()),
            "video only": int((mask & video & ~audio).sum()),
            "actors": int(manifest.loc[mask, "actor"].nunique()),
        }
        for sex in sorted(sexes.unique()):
            row[f"clips ({sex})"] = int((mask & (sexes == sex)).sum())
            row[f"actors ({sex})"] = int(manifest.loc[mask & (sexes == sex), "actor"].nunique())
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "emotion"
    return table


def split_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The actor-disjoint split: per split its actors (count, per sex, ids), clips and clips per emotion."""
    sexes = _sexes(manifest)
    present = [split for split in manifest["split"].unique() if split]
    order = [split for split in SPLITS if split in present] + sorted(set(present) - set(SPLITS))
    rows = {}
    for split in order:
        part = manifest["split"] == split
        actors = sorted(manifest.loc[part, "actor"].unique().tolist())
        row = {"actors": len(actors)}
        row.update({f"actors ({sex})": int(manifest.loc[part & (sexes == sex), "actor"].nunique()) for sex in sorted(sexes.unique())})
        row["clips"] = int(part.sum())
        row.update({emotion: int((part & (manifest["emotion"] == emotion)).sum()) for emotion in label_set(manifest)})
        row["actor ids"] = ", ".join(str(actor) for actor in actors)
        rows[split] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "split"
    return table


def example_clips(manifest: pd.DataFrame, column: str = "audio_path", per_emotion: int = 1, seed: int = 0, same_actor: bool = False) -> pd.DataFrame:
    """Up to ``per_emotion`` clips per emotion that have ``column`` (audio_path or video_path), reproducibly.

    Clips of one emotion come from different actors; with ``same_actor`` every emotion comes from one
    actor who has them all (when there is one), so that differences are the emotion's, not the speaker's.
    """
    rows = manifest[_present(manifest, column)].sample(frac=1.0, random_state=seed)
    if same_actor:
        complete = rows.groupby("actor")["emotion"].nunique()
        complete = complete[complete == rows["emotion"].nunique()]
        if len(complete):
            rows = rows[rows["actor"] == complete.sample(1, random_state=seed).index[0]]
    picked = rows.drop_duplicates(["emotion", "actor"]).groupby("emotion", sort=False).head(per_emotion)
    picked = picked.assign(_order=picked["label"]).sort_values(["_order", "actor"], kind="stable")
    return picked.drop(columns="_order").reset_index(drop=True)


def mel_spectrogram(wave: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """Log-mel spectrogram (MEL_BANDS x frames, dB, at most TOP_DB below the peak) of a mono waveform."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=MEL_FFT, hop_length=MEL_HOP, n_mels=MEL_BANDS)
    power = mel(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
    return torchaudio.transforms.AmplitudeToDB(stype="power", top_db=TOP_DB)(power).numpy()


def plot_waveforms(manifest: pd.DataFrame, seed: int = 0):
    """Waveform (left) and log-mel spectrogram (right) of one clip per emotion, one row per emotion."""
    from ..audio import SAMPLE_RATE
    from ..media import load_sound

    plt = _pyplot()
    examples = example_clips(manifest, "audio_path", 1, seed, same_actor=True)
    figure, axes = plt.subplots(len(examples), 2, figsize=(11, 1.7 * len(examples)), squeeze=False,
                                gridspec_kw={"width_ratios": (1, 1.25)})
    for (wave_ax, mel_ax), row in zip(axes, examples.itertuples()):
        wave = load_sound(row.audio_path)
        seconds = len(wave) / SAMPLE_RATE
        wave_ax.plot(np.arange(len(wave)) / SAMPLE_RATE, wave, lw=0.4, color="#4C72B0")
        wave_ax.set(xlim=(0, seconds), ylabel=f"{row.emotion}\n({display_name(row.emotion)})")
        wave_ax.set_title(row.stem, fontsize=8, loc="right")
        mel_ax.imshow(mel_spectrogram(wave, SAMPLE_RATE), origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, MEL_BANDS))
        mel_ax.set(ylabel="mel band")
    for ax, title in zip(axes[0], ("waveform", "log-mel spectrogram")):
        ax.set_title(title, loc="left")
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
    figure.tight_layout()
    return figure


def clip_lengths(manifest: pd.DataFrame) -> pd.DataFrame:
    """Duration in seconds of every clip with audio (from the file headers, or the decoded sound track of a
    video such as RAVDESS's MP4s; NaN when unreadable)."""
    import soundfile

    from ..audio import SAMPLE_RATE
    from ..errors import EmolibError
    from ..media import load_sound

    rows = manifest[_present(manifest, "audio_path")]
    seconds = []
    for path in rows["audio_path"]:
        try:
            seconds.append(soundfile.info(str(path)).duration)
        except (RuntimeError, OSError, ValueError, soundfile.LibsndfileError):
            try:
                seconds.append(len(load_sound(path)) / SAMPLE_RATE)
            except EmolibError:
                seconds.append(float("nan"))
    return pd.DataFrame({"stem": rows["stem"].to_numpy(), "emotion": rows["emotion"].to_numpy(), "seconds": seconds})


def plot_clip_lengths(manifest: pd.DataFrame):
    """Clip length distribution: histogram over all clips (left) and a box plot per emotion (right)."""
    import seaborn as sns

    from ..audio import WINDOW_SECONDS

    plt = _pyplot()
    lengths = clip_lengths(manifest).dropna()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": (1, 1.4)})
    left.hist(lengths["seconds"], bins=30, color="#4C72B0")
    left.set(xlabel="seconds", ylabel="clips", title=f"all {len(lengths)} clips")
    sns.boxplot(data=lengths, x="emotion", y="seconds", order=list(label_set(manifest)), ax=right, color="#DD8452", fliersize=2)
    right.set(title="per emotion")
    left.axvline(WINDOW_SECONDS, color="grey", ls=":", label=f"voice model window ({WINDOW_SECONDS:g} s)")
    right.axhline(WINDOW_SECONDS, color="grey", ls=":")
    left.legend(fontsize=8)
    figure.tight_layout()
    return figure


def face_crop_paths(rows: pd.DataFrame, cache_dir, settings=None) -> pd.Series:
    """Paths of the cached face crops of ``rows`` (stem, video_path) under ``cache_dir/faces``, indexed by stem; '' when not cached."""
    from ..data.face_cache import cached_crop_paths

    return pd.Series(cached_crop_paths(rows, cache_dir, settings), index=list(rows["stem"]), dtype=str)


def show_crop(ax, path: str, title: str, fontsize: int = 8) -> None:
    """Draw the middle frame of a cached clip's crops (or 'no face crop') on ``ax``."""
    from ..data.face_cache import load_face_crops

    if path:
        crops = load_face_crops(path)
        ax.imshow(crops[len(crops) // 2])
    else:
        ax.text(0.5, 0.5, "no face crop", ha="center", va="center", fontsize=fontsize, transform=ax.transAxes)
    ax.set_title(title, fontsize=fontsize)
    ax.set(xticks=[], yticks=[])


def plot_face_grid(manifest: pd.DataFrame, cache_dir, per_emotion: int = 4, seed: int = 0, settings=None):
    """Face crops (middle frame) of ``per_emotion`` clips of different actors per emotion, one row each.

    Crops come from the face cache under ``cache_dir/faces``; missing ones are cropped (and cached) first.
    """
    from ..data.face_cache import face_index
    from ..transforms import FaceSettings

    plt = _pyplot()
    settings = settings or FaceSettings()
    examples = example_clips(manifest, "video_path", per_emotion, seed)
    face_index(examples, cache_dir, settings, workers=0, progress=False)
    paths = face_crop_paths(examples, cache_dir, settings)
    labels = label_set(manifest)
    figure, axes = plt.subplots(len(labels), per_emotion, figsize=(1.9 * per_emotion, 1.95 * len(labels)), squeeze=False)
    for row_axes, emotion in zip(axes, labels):
        clips = examples[examples["emotion"] == emotion]
        for ax in row_axes[len(clips):]:
            ax.axis("off")
        for ax, clip in zip(row_axes, clips.itertuples()):
            show_crop(ax, paths[clip.stem], f"actor {clip.actor}")
        row_axes[0].set_ylabel(f"{emotion}\n({display_name(emotion)})")
    figure.suptitle("face crops per emotion (Haar detection, middle frame)")
    figure.tight_layout()
    return figure
