"""emolib.eval.explore on a tiny synthetic CREMA-D (3 actors, one clip per emotion, one video and one audio file removed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import soundfile

from emolib.eval import explore, tables
from emolib.cremad import EMOTIONS
from emolib.eval.evaluation import evaluate_predictions
from emolib.eval.predictions import probability_table
from emolib.data.manifest import index_dataset
from emolib.data.synth.corpus import DURATION_S, make_synthetic_cremad

ACTORS = 3


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = make_synthetic_cremad(tmp_path_factory.mktemp("synth") / "cremad-synth", actors=ACTORS, clips_per_emotion=1,
                                 workers=1, progress=False)
    videos = sorted((root / "VideoFlash").glob("*.flv"))
    audios = sorted((root / "AudioWAV").glob("*.wav"))
    videos[0].unlink()  # an audio-only clip
    audios[-1].unlink()  # a video-only clip
    return index_dataset(root).manifest


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def image_axes(figure) -> list:
    return [ax for ax in figure.axes if ax.images]


def fake_predictions(manifest, kinds=("face",)) -> pd.DataFrame:
    """Predictions in the predictions.csv layout: every third clip wrong, confidences 0.3-0.9."""
    rows = manifest[manifest["video_path"] != ""].reset_index(drop=True)
    table = rows[["stem", "actor", "emotion", "label", "sex", "age", "audio_path", "video_path"]].copy()
    for kind in kinds:
        probabilities = np.full((len(rows), len(EMOTIONS)), 0.02)
        for index, label in enumerate(rows["label"]):
            predicted = (label + 1) % len(EMOTIONS) if index % 3 == 0 else label
            probabilities[index, predicted] = 0.3 + 0.6 * index / len(rows)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        table = table.merge(probability_table(rows["stem"], kind, probabilities, EMOTIONS), on="stem")
    return table


def test_dataset_summary_counts_match_the_manifest(manifest):
    table = explore.dataset_summary(manifest)
    assert list(table.index) == [*EMOTIONS, "all"]
    total = table.loc["all"]
    assert total["clips"] == len(manifest) == ACTORS * len(EMOTIONS)
    assert total["actors"] == manifest["actor"].nunique() == ACTORS
    assert (total["audio only"], total["video only"]) == (1, 1)
    assert total["audio+video"] == len(manifest) - 2
    per_emotion = table.loc[list(EMOTIONS)]
    for column in ("clips", "audio+video", "audio only", "video only"):
        assert per_emotion[column].sum() == total[column]
    assert per_emotion["clips"].tolist() == manifest["emotion"].value_counts()[list(EMOTIONS)].tolist()
    sexes = manifest.drop_duplicates("actor")["sex"].value_counts()
    for sex, actors in sexes.items():
        assert total[f"actors ({sex})"] == actors
        assert total[f"clips ({sex})"] == (manifest["sex"] == sex).sum()
    assert sum(total[f"clips ({sex})"] for sex in sexes.index) == total["clips"]


def test_split_table_shows_the_actor_disjoint_split(manifest):
    table = explore.split_table(manifest)
    assert list(table.index) == ["train", "val", "test"]
    assert table["clips"].sum() == len(manifest)
    assert table["actors"].sum() == ACTORS
    ids = [set(int(actor) for actor in cell.split(", ")) for cell in table["actor ids"]]
    assert set.union(*ids) == set(manifest["actor"]) and sum(map(len, ids)) == ACTORS
    counts = pd.crosstab(manifest["split"], manifest["emotion"])
    for split in table.index:
        assert table.loc[split, list(EMOTIONS)].tolist() == counts.loc[split, list(EMOTIONS)].tolist()
        actors = manifest[manifest["split"] == split].drop_duplicates("actor")["sex"].value_counts()
        assert all(table.loc[split, f"actors ({sex})"] == n for sex, n in actors.items())


def test_example_clips(manifest):
    one = explore.example_clips(manifest, "audio_path", 1, same_actor=True)
    assert one["emotion"].tolist() == list(EMOTIONS)
    assert one["actor"].nunique() == 1 and (one["audio_path"] != "").all()
    many = explore.example_clips(manifest, "video_path", per_emotion=ACTORS + 2)
    assert (many.groupby("emotion")["actor"].nunique() == many.groupby("emotion").size()).all()
    assert len(many) == (manifest["video_path"] != "").sum()  # one clip per actor and emotion here
    assert explore.example_clips(manifest, seed=1)["stem"].tolist() == explore.example_clips(manifest, seed=1)["stem"].tolist()


def test_waveforms_and_mel_spectrograms(manifest):
    figure = explore.plot_waveforms(manifest)
    assert len(figure.axes) == 2 * len(EMOTIONS)
    assert len(image_axes(figure)) == len(EMOTIONS)  # one spectrogram per emotion
    spectrogram = explore.mel_spectrogram(np.random.default_rng(0).normal(size=16000).astype(np.float32))
    assert spectrogram.shape == (explore.MEL_BANDS, 16000 // explore.MEL_HOP + 1)
    assert spectrogram.max() - spectrogram.min() <= explore.TOP_DB + 1e-3


def test_clip_lengths(manifest):
    lengths = explore.clip_lengths(manifest)
    assert len(lengths) == (manifest["audio_path"] != "").sum()
    first = manifest[manifest["audio_path"] != ""].iloc[0]
    assert lengths.iloc[0]["seconds"] == pytest.approx(soundfile.info(first["audio_path"]).duration)
    assert lengths["seconds"].between(DURATION_S[0] - 0.05, DURATION_S[1] + 0.05).all()
    figure = explore.plot_clip_lengths(manifest)
    assert len(figure.axes) == 2


def test_face_grid_crops_and_caches_faces(manifest, cache):
    figure = explore.plot_face_grid(manifest, cache, per_emotion=ACTORS + 1)
    assert len(figure.axes) == len(EMOTIONS) * (ACTORS + 1)
    assert len(image_axes(figure)) == (manifest["video_path"] != "").sum()
    paths = explore.face_crop_paths(manifest, cache)
    assert (paths[manifest.loc[manifest["video_path"] != "", "stem"]] != "").all()
    assert (paths[manifest.loc[manifest["video_path"] == "", "stem"]] == "").all()


def test_prediction_examples_show_correct_and_wrong_faces(manifest, cache):
    explore.plot_face_grid(manifest, cache, per_emotion=ACTORS)  # make sure the crops are cached
    predictions = fake_predictions(manifest)
    wrong = int((predictions["face_pred"] != predictions["emotion"]).sum())
    figure = tables.prediction_examples(predictions, cache, "face", "val", n=4)
    assert len(figure.axes) == 2 * 4
    top, bottom = figure.axes[:4], figure.axes[4:]
    assert sum(bool(ax.images) for ax in top) == 4
    assert sum(bool(ax.images) for ax in bottom) == min(4, wrong)
    assert "val split" in figure._suptitle.get_text()
    titles = [ax.get_title() for ax in top]
    assert all(title.split(",")[0].split()[1] == title.split(",")[1].split()[1] for title in titles)  # true == pred
    assert len({title.split(",")[0] for title in titles}) == 4  # spread over emotions


def test_breakdown_and_comparison_tables(manifest):
    report = evaluate_predictions(fake_predictions(manifest, ("voice", "face", "fusion")), "test", synthetic=True)
    breakdown = tables.breakdown_table(report)
    assert breakdown.columns.names[0] == "test split"
    assert set(breakdown.columns.get_level_values(0)) == {"voice", "face", "fusion"}
    for kind in ("voice", "face", "fusion"):
        n = report["models"][kind]["n"]
        assert breakdown.loc["sex", (kind, "n")].sum() == n
        assert breakdown.loc["age group", (kind, "n")].sum() == n
    comparison = tables.comparison_table(report)
    assert list(comparison.index) == ["voice", "face", "fusion"] and "test split" in comparison.index.name
    best = max(report["models"]["voice"]["uar"], report["models"]["face"]["uar"])
    assert comparison.loc["fusion", "uar_vs_best_unimodal"] == pytest.approx(report["models"]["fusion"]["uar"] - best, abs=1e-3)


def test_human_rater_table_is_reference_only_on_synthetic_data(manifest):
    predictions = fake_predictions(manifest, ("voice", "face", "fusion"))
    report = evaluate_predictions(predictions, "test", synthetic=True)
    if "human_raters" not in report:
        pytest.skip("no CREMA-D votes for these synthetic clip names")
    table = tables.human_rater_table(report)
    assert list(table.index) == ["voice", "face", "fusion"]
    assert "REFERENCE ONLY" in table.index.name and "test split" in table.index.name
    assert table.loc["face", "human raters accuracy"] == pytest.approx(report["human_raters"]["face"], abs=1e-3)
    assert "human_acc (reference only)" in tables.comparison_table(report).columns
    assert len(tables.plot_human_comparison(report).axes) == 1
    report.pop("human_raters")
    assert tables.human_rater_table(report).empty
    assert "human_acc" not in tables.comparison_table(report).columns
