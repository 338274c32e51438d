"""Training and inference cannot drift apart: one no-face policy, the checkpoint's face settings everywhere,
one place that finds models, and the packaged fast-path probes made by the generator."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emolib.data.face_cache import settings_key
from emolib.errors import ModelError
from emolib.faces import Detector
from emolib.infer.predictor import Predictor
from emolib.models.checkpoint import find_models
from emolib.transforms import FaceSettings

from media import face_frames, no_face_image, write_video, write_wav
from test_predict import make_untrained_models, speechlike


def manifest_row(stem: str, audio, video) -> dict:
    actor, _, emotion, _ = stem.split("_")
    return {"stem": stem, "actor": int(actor), "emotion": emotion, "label": ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"].index(emotion),
            "sex": "Female", "age": 30.0, "audio_path": str(audio), "video_path": str(video), "split": "test"}


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    """A clip whose video has no face anywhere and a clip with a face, both with speech."""
    root = tmp_path_factory.mktemp("clips")
    no_face = write_video(root / "1001_DFA_ANG_XX.flv", [no_face_image()] * 30)
    with_face = write_video(root / "1002_DFA_SAD_XX.flv", face_frames(30, index_patch=False))
    rows = [manifest_row("1001_DFA_ANG_XX", write_wav(root / "1001_DFA_ANG_XX.wav", speechlike(2.0, seed=1)), no_face),
            manifest_row("1002_DFA_SAD_XX", write_wav(root / "1002_DFA_SAD_XX.wav", speechlike(2.0, seed=2)), with_face)]
    return pd.DataFrame(rows)


def probabilities(row: pd.Series, kind: str) -> np.ndarray:
    return row[[f"{kind}_{emotion}" for emotion in ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]]].to_numpy(dtype=float)


def test_no_face_clip_gets_the_same_probabilities_from_evaluate_and_predict(two_clips, tmp_path):
    from emolib.eval.evaluation import predict_split

    models = make_untrained_models(tmp_path / "models")
    table = predict_split(two_clips, models, split=None, cache_dir=tmp_path / "cache", device="cpu", progress=False).set_index("stem")
    by_model = Predictor.from_dir(models, fast=False)
    by_fusion = Predictor.from_dir(models, fast=False, single="fusion")
    for stem, clip in two_clips.set_index("stem").iterrows():
        model_choice = by_model.predict_files(audio=clip["audio_path"], video=clip["video_path"])
        fusion_choice = by_fusion.predict_files(audio=clip["audio_path"], video=clip["video_path"])
        evaluated = table.loc[stem]
        np.testing.assert_allclose(probabilities(evaluated, "voice"), list(model_choice.voice.values()), atol=1e-5)
        np.testing.assert_allclose(probabilities(evaluated, "fusion"), list(fusion_choice.fusion.values()), atol=1e-5)
        if model_choice.face is None:
            assert stem == "1001_DFA_ANG_XX" and pd.isna(evaluated["face_pred"])
            assert fusion_choice.present == [1, 0]
        else:
            np.testing.assert_allclose(probabilities(evaluated, "face"), list(model_choice.face.values()), atol=1e-5)
    assert table.loc["1002_DFA_SAD_XX", "face_pred"] in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


CUSTOM_FACE = FaceSettings(image_size=64, frames=2, margin=0.4, detector=Detector(model="full", score=0.55, nms_iou=0.4), align=False)


@pytest.fixture(scope="module")
def custom_face_model(tmp_path_factory):
    """A tiny face model trained (one epoch) with non-default face settings, on a 3-actor synthetic set."""
    from emolib.data.synth.corpus import make_synthetic_cremad
    from emolib.models.nets import FaceConfig
    from emolib.train.fit import train_face
    from emolib.train.options import DataOptions, load_manifest_for
    from emolib.train.trainer import TrainConfig

    root = tmp_path_factory.mktemp("custom")
    data = make_synthetic_cremad(root / "data", actors=3, clips_per_emotion=1, workers=0, progress=False)
    manifest = load_manifest_for(DataOptions(str(data)), quiet=True)
    train_face(manifest, root / "models" / "face", FaceConfig(backbone="tiny", weights=None), TrainConfig(epochs=1, batch_size=8, device="cpu"),
               face=CUSTOM_FACE, cache_dir=root / "cache", workers=0, progress=False)
    return root, manifest


def test_face_settings_chosen_at_training_are_used_by_inference(custom_face_model, monkeypatch):
    import emolib.infer.people as people_module
    import emolib.infer.predictor as predictor_module
    from emolib.eval.evaluation import predict_split

    root, manifest = custom_face_model
    predictor = Predictor.from_dir(root / "models", fast=False)
    assert predictor.face_settings == CUSTOM_FACE
    detectors, crops_made = [], []
    original_detect, original_crop = people_module.detect_many, predictor_module.crop_track

    def detect(frames, detector):
        detectors.append(detector)
        return original_detect(frames, detector)

    def crop(frames, track, size, margin, align):
        crops = original_crop(frames, track, size, margin, align)
        crops_made.append((crops[0].shape, margin, align))
        return crops

    monkeypatch.setattr(people_module, "detect_many", detect)
    monkeypatch.setattr(predictor_module, "crop_track", crop)
    video = manifest["video_path"].iloc[0]
    prediction = predictor.predict_files(video=video)
    assert prediction.frames == CUSTOM_FACE.frames and set(detectors) == {CUSTOM_FACE.detector}
    assert crops_made == [((CUSTOM_FACE.frames, 64, 64, 3), CUSTOM_FACE.margin, CUSTOM_FACE.align)]

    table = predict_split(manifest, root / "models", "test", root / "eval-cache", "cpu", progress=False)
    assert table["face_pred"].notna().any()
    folders = [path.name for path in (root / "eval-cache" / "faces").iterdir()]
    assert folders == [settings_key(CUSTOM_FACE)]


def test_find_models_is_the_one_place_that_locates_checkpoints(tmp_path):
    models = make_untrained_models(tmp_path / "models")
    assert find_models(models) == {kind: models / kind for kind in ("voice", "face", "fusion")}
    assert find_models(models, kinds=("voice",)) == {"voice": models / "voice"}
    assert find_models(models / "face") == {"face": models / "face"}
    elsewhere = tmp_path / "elsewhere"
    (models / "fusion").rename(elsewhere)
    (elsewhere / "config.json").write_text((elsewhere / "config.json").read_text().replace("../voice", "../models/voice").replace("../face", "../models/face"))
    assert set(find_models(elsewhere)) == {"voice", "face", "fusion"}
    (models / "face").rename(tmp_path / "face-gone")
    with pytest.raises(ModelError, match="needs the face checkpoint"):
        find_models(elsewhere)
    with pytest.raises(ModelError, match="no such models folder"):
        find_models(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no trained models"):
        find_models(tmp_path / "empty")


def test_packaged_probes_are_what_the_generator_makes():
    from emolib.data.synth.probes import probe_arrays
    from emolib.fast.probes import default_probes

    made, shipped = probe_arrays(), default_probes()
    assert len(shipped.speech) == len(made["speech"]) == 3
    for ours, theirs in zip(made["speech"], shipped.speech):
        assert len(ours) == len(theirs) and np.abs(ours - theirs).max() < 1e-3
    for name, faces in (("calibration", shipped.calibration_faces), ("check", shipped.check_faces)):
        assert faces.shape == made[name].shape
        assert np.abs(faces.astype(float) - made[name]).mean() < 4.0, f"{name} crops differ from the generator's"
    assert len(shipped.real_speech) == 24 and all(1.0 < len(wave) / 16000 < 6.0 for wave in shipped.real_speech)
    # the voice check runs on every synthetic clip and real recording alone, then the synthetic clips in a row
    assert len(shipped.speech_windows()) == 3 + 24 + 1
    # two actors, none of the test fixture's, each with all eight RAVDESS emotions
    from emolib.fast.probes import real_speech_names

    names = real_speech_names()
    assert len(names) == 24 and {name.split("-")[6].removesuffix(".flac") for name in names} == {"03", "04"}
    actors = {actor: {name.split("-")[2] for name in names if name.endswith(f"-{actor}.flac")} for actor in ("03", "04")}
    assert all(len(emotions) == 8 for emotions in actors.values())
