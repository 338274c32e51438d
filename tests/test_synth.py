"""The synthetic CREMA-D generator: layout, formats, determinism, detectable faces, emotion cues."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from emolib.cremad import EMOTIONS, LEVELS, load_demographics, parse_name
from emolib.errors import DataError
from emolib.data.synth.corpus import FIRST_ACTOR, make_synthetic_cremad, plan_clips, synthesize_clip
from emolib.data.synth.emotions import FACE_PAIRS, VOICE_PAIRS
from emolib.data.synth.face import head_box

ACTORS = 3
CLIPS = 2


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_synthetic_cremad(tmp_path_factory.mktemp("synth") / "cremad", actors=ACTORS, clips_per_emotion=CLIPS, progress=False)


def tree_digest(root: Path, pattern: str = "*") -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob(pattern)):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_layout_and_names(tree):
    wavs = sorted(p.stem for p in (tree / "AudioWAV").glob("*.wav"))
    flvs = sorted(p.stem for p in (tree / "VideoFlash").glob("*.flv"))
    assert wavs == flvs and len(wavs) == ACTORS * len(EMOTIONS) * CLIPS
    names = [parse_name(stem) for stem in wavs]
    assert {name.actor for name in names} == set(range(FIRST_ACTOR, FIRST_ACTOR + ACTORS))
    assert all(sum(n.emotion == e and n.actor == FIRST_ACTOR for n in names) == CLIPS for e in EMOTIONS)
    assert "synthetic" in (tree / "README.txt").read_text().lower()


def test_levels_follow_cremad():
    names = [parse_name(stem) for stem in plan_clips(range(1001, 1011), seed=0, clips_per_emotion=12)]
    assert len({n.stem for n in names}) == len(names)
    assert all(n.level in LEVELS for n in names)
    assert all(n.level == "XX" for n in names if n.emotion == "NEU" or n.sentence != "IEO")
    assert {n.level for n in names if n.sentence == "IEO" and n.emotion != "NEU"} == {"LO", "MD", "HI"}


def test_bad_sizes_are_data_errors(tmp_path):
    with pytest.raises(DataError):
        make_synthetic_cremad(tmp_path, actors=0)
    with pytest.raises(DataError):
        plan_clips([1001], seed=0, clips_per_emotion=13)


def test_wav_format(tree):
    for path in sorted((tree / "AudioWAV").glob("*.wav"))[:8]:
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 2.0 <= info.duration <= 3.0
        audio, _ = soundfile.read(path)
        assert 0.001 < np.sqrt(np.mean(audio**2)) and np.abs(audio).max() < 1.0


def test_flv_format(tree):
    for path in sorted((tree / "VideoFlash").glob("*.flv"))[:4]:
        capture = cv2.VideoCapture(str(path))
        assert capture.isOpened()
        assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (480, 360)
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30, abs=0.5)
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
        assert fourcc.upper() == "FLV1"
        frames = 0
        while capture.read()[0]:
            frames += 1
        assert 65 <= frames <= 85
        assert frames == pytest.approx(capture.get(cv2.CAP_PROP_FRAME_COUNT), abs=1)
        assert soundfile.info(tree / "AudioWAV" / f"{path.stem}.wav").duration == pytest.approx(frames / 30, abs=0.05)


def test_demographics(tree):
    path = tree / "VideoDemographics.csv"
    assert path.read_text().splitlines()[0] == '"ActorID","Age","Sex","Race","Ethnicity"'
    table = load_demographics(str(path))
    assert list(table.index) == list(range(FIRST_ACTOR, FIRST_ACTOR + ACTORS))
    assert set(table.sex) == {"Male", "Female"}
    assert table.age.between(20, 74).all()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first, second, other = (
        make_synthetic_cremad(tmp_path / name, actors=1, clips_per_emotion=1, seed=seed, progress=False)
        for name, seed in (("first", 0), ("second", 0), ("other", 1))
    )
    assert tree_digest(first, "*.flv") == tree_digest(second, "*.flv")
    assert tree_digest(first) == tree_digest(second)
    assert (first / "VideoDemographics.csv").read_bytes() != (other / "VideoDemographics.csv").read_bytes()
    for path in (other / "AudioWAV").glob("*.wav"):
        assert not np.array_equal(soundfile.read(path)[0][:16000], synthesize_clip(path.stem, seed=0, video=False).audio[:16000])


def test_clip_does_not_depend_on_the_rest_of_the_tree_nor_on_workers(tree, tmp_path):
    alone = make_synthetic_cremad(tmp_path / "alone", actors=1, clips_per_emotion=CLIPS, workers=2, progress=False)
    for folder, pattern in (("VideoFlash", "*.flv"), ("AudioWAV", "*.wav")):
        paths = list((alone / folder).glob(pattern))
        assert len(paths) == len(EMOTIONS) * CLIPS
        assert all(path.read_bytes() == (tree / folder / path.name).read_bytes() for path in paths)


def test_haar_cascade_finds_the_faces(tree):
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = []
    for path in sorted((tree / "VideoFlash").glob("*.flv"))[::3]:
        capture = cv2.VideoCapture(str(path))
        for index in (5, 35, 65):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            assert ok
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            found.append(len(cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(60, 60))) > 0)
    assert np.mean(found) >= 0.8


def mean_face(stem: str) -> np.ndarray:
    from emolib.data.synth.corpus import make_actor

    x, y, width, height = head_box(make_actor(parse_name(stem).actor, 0).face)
    frames = synthesize_clip(stem, 0).frames
    return np.mean([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[y : y + height, x : x + width] for f in frames], 0)


def test_face_shows_the_face_pair():
    faces = {emotion: mean_face(f"1001_DFA_{emotion}_XX") for emotion in ("ANG", "DIS", "HAP", "SAD")}
    same_pair = [np.abs(faces["ANG"] - faces["DIS"]).mean(), np.abs(faces["HAP"] - faces["SAD"]).mean()]
    other_pair = np.abs(faces["ANG"] - faces["HAP"]).mean()
    assert ("ANG", "DIS") in FACE_PAIRS and ("HAP", "SAD") in FACE_PAIRS
    assert other_pair > 2 * max(same_pair)
    assert min(same_pair) > 0.2


def test_voice_shows_the_voice_pair():
    def loudness(emotion):
        return np.mean([np.sqrt(np.mean(synthesize_clip(f"1002_{s}_{emotion}_XX", 0, video=False).audio ** 2)) for s in ("DFA", "TIE", "ITS")])

    assert ("ANG", "HAP") in VOICE_PAIRS and ("FEA", "SAD") in VOICE_PAIRS
    for loud, moderate, quiet in (("ANG", "NEU", "SAD"), ("HAP", "DIS", "FEA")):
        assert loudness(loud) > 1.3 * loudness(moderate) > 1.3**2 * loudness(quiet)


def voice_features(audio: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(audio, 400)[::160] * np.hanning(400)
    energy = np.log(np.mean(frames**2, 1) + 1e-8)
    spectrum = np.abs(np.fft.rfft(frames, axis=1)) + 1e-6
    loud = energy > np.median(energy)
    centroid = (spectrum * np.arange(spectrum.shape[1])).sum(1) / spectrum.sum(1)
    flatness = np.exp(np.log(spectrum).mean(1)) / spectrum.mean(1)
    modulation = np.abs(np.fft.rfft(energy - energy.mean(), 512))[5:60]
    return np.array([energy.mean(), energy.std(), np.percentile(energy, 95), centroid[loud].mean(), flatness[loud].mean(), modulation.argmax()])


def face_features(frame: np.ndarray, actor: int) -> np.ndarray:
    from emolib.data.synth.corpus import make_actor

    x, y, width, height = head_box(make_actor(actor, 0).face)
    gray = cv2.cvtColor(frame[y : y + height, x : x + width], cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    gray = (gray - gray.mean()) / gray.std()
    return np.concatenate([gray[:, 8:24].mean(1), cv2.resize(gray, (8, 8), interpolation=cv2.INTER_AREA).ravel()])


def test_each_modality_gets_its_pairs_and_only_both_get_the_emotion():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names = [parse_name(stem) for stem in plan_clips(range(1001, 1009), seed=0, clips_per_emotion=2)]
    voice, face = [], []
    for name in names:
        clip = synthesize_clip(name.stem, 0)
        voice.append(voice_features(clip.audio))
        face.append(face_features(clip.frames[10], name.actor))
    voice, face = np.array(voice), np.array(face)
    label = np.array([name.label for name in names])
    train = np.array([name.actor <= 1005 for name in names])

    def predict(features, targets, c):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(features[train], targets[train])
        return model.predict(features[~train])

    def pair_of(pairs):
        return np.array([next(index for index, pair in enumerate(pairs) if emotion in pair) for emotion in EMOTIONS])

    voice_pair, face_pair = pair_of(VOICE_PAIRS), pair_of(FACE_PAIRS)
    truth = label[~train]
    voice_accuracy = np.mean(predict(voice, label, 1.0) == truth)
    face_accuracy = np.mean(predict(face, label, 0.05) == truth)
    voice_guess, face_guess = predict(voice, voice_pair[label], 1.0), predict(face, face_pair[label], 0.05)
    emotion_of = {(voice_pair[e], face_pair[e]): e for e in range(len(EMOTIONS))}
    both_accuracy = np.mean([emotion_of.get(pair, -1) == e for pair, e in zip(zip(voice_guess, face_guess), truth)])
    assert np.mean(voice_guess == voice_pair[truth]) >= 0.85 and np.mean(face_guess == face_pair[truth]) >= 0.7
    assert max(voice_accuracy, face_accuracy) <= 0.8
    assert both_accuracy >= max(voice_accuracy, face_accuracy) + 0.15


def test_cli_synth(tmp_path, monkeypatch):
    import emolib.data.synth.corpus
    from emolib.cli.main import main

    calls = []

    def small(out, **options):
        calls.append(options)
        return make_synthetic_cremad(out, clips_per_emotion=1, **options)

    monkeypatch.setattr(emolib.data.synth.corpus, "make_synthetic_cremad", small)
    assert main(["synth", str(tmp_path / "s"), "--actors", "2"]) == 0
    assert calls == [{"actors": 2, "seed": 0, "temporal": False}]
    assert main(["synth", str(tmp_path / "t"), "--actors", "1", "--temporal"]) == 0
    assert calls[-1] == {"actors": 1, "seed": 0, "temporal": True} and "Temporal mode" in (tmp_path / "t" / "README.txt").read_text()
    assert len(list((tmp_path / "s" / "AudioWAV").glob("*.wav"))) == len(list((tmp_path / "s" / "VideoFlash").glob("*.flv"))) == 12
    assert (tmp_path / "s" / "README.txt").exists()
    assert main(["synth", str(tmp_path / "bad"), "--seed", "-1"]) == 2
