"""Audio and video in step: a stream that starts late is placed where it plays, a window past the end of the video has no
face input, in `timeline`, `annotate`'s decoding, `live --stream --from-file` and the file capture alike."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from emolib.audio import SAMPLE_RATE
from emolib.infer.predictor import Predictor
from emolib.infer.timeline import main_rows, predict_timeline, timeline_inputs
from emolib.live.capture import FileCapture
from emolib.live.stream import StreamEngine, stream_file
from emolib.media import timed_media, window_frame_indices

from media import face_frames, write_video, write_wav
from test_predict import make_untrained_models, speechlike, write_av_clip

LATE = 2.94  # seconds of video before the sound starts, as in the report

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (installed by .ci/run)")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_untrained_models(tmp_path_factory.mktemp("sync") / "models")


@pytest.fixture(scope="module")
def late_audio(tmp_path_factory):
    """An 8 s MP4 of a face whose AAC sound (1 s of loud speech-like audio, then 2 s quieter) starts 2.94 s into the file."""
    folder = tmp_path_factory.mktemp("late")
    video = write_video(folder / "face.flv", face_frames(240, index_patch=False))
    sound = write_wav(folder / "speech.wav", np.concatenate([speechlike(1.0, seed=5), 0.1 * speechlike(2.0, seed=7)]))
    out = folder / "late.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-itsoffset", str(LATE), "-i", str(sound), "-map", "0:v", "-map", "1:a",
                    "-c:v", "mpeg4", "-c:a", "aac", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    """A 2 s video of a face with 10 s of sound."""
    return write_av_clip(tmp_path_factory.mktemp("short") / "short.mp4", face_frames(60, index_patch=False), speechlike(10.0, seed=6))


def test_a_late_sound_plays_where_the_container_says(late_audio):
    media = timed_media(late_audio)
    assert media.video_start == 0.0 and LATE - 0.1 < media.audio_start <= LATE  # AAC's priming samples play first
    first = media.audio_between(0.0, 4.0)
    assert len(first) == pytest.approx((4.0 - media.audio_start) * SAMPLE_RATE, abs=2)  # not 4 s: the sound starts at 2.94 s
    assert media.audio_between(0.0, 2.5) is None and "no audio in 0-2.5 s" in media.window_notes(0.0, 2.5)[0]
    inputs = timeline_inputs(late_audio, window=4.0, hop=1.0, frames=3)
    assert len(inputs.clips[0]) == len(first) and len(inputs.clips[3]) == pytest.approx((media.audio_end - 3.0) * SAMPLE_RATE, abs=2)


def test_timeline_stream_and_capture_hear_the_late_sound_at_its_time(models, late_audio):
    predictor = Predictor.from_dir(models, fast=False)
    timeline = main_rows(predict_timeline(predictor, late_audio, progress=False))
    media = timed_media(late_audio)
    aligned = media.audio_between(0.0, 4.0)
    rms = float(np.sqrt(np.mean(np.square(aligned, dtype=np.float64))))
    assert timeline["audio_rms"].iloc[0] == pytest.approx(rms, rel=1e-4)
    whole = media.wave[: 4 * SAMPLE_RATE]  # what a reader that ignores the start time hears in 0-4 s
    assert abs(timeline["audio_rms"].iloc[0] - float(np.sqrt(np.mean(np.square(whole, dtype=np.float64))))) > 0.03  # the quiet part is not in 0-4 s
    updates = stream_file(StreamEngine(predictor, hop=1.0, smoothing=0.0), late_audio, realtime=False)
    assert len(updates) == len(timeline)
    labels = predictor.labels
    np.testing.assert_allclose([[update.raw[label] for label in labels] for update in updates],
                               timeline[[f"prob_{label}" for label in labels]].to_numpy(float), atol=1e-4)
    capture = FileCapture(video=late_audio).capture(4.0)
    assert len(capture.audio) == len(aligned) and capture.frame is not None


def test_a_window_past_the_end_of_the_video_has_no_face(models, short_video):
    predictor = Predictor.from_dir(models, fast=False)
    timeline = main_rows(predict_timeline(predictor, short_video, progress=False))
    assert list(timeline["start"]) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    past = timeline[timeline["start"] >= 2.0]
    assert not past["face_found"].any() and (past["modalities"] == "voice").all()
    assert past["notes"].str.contains("no video in").all()
    assert timeline["face_found"].iloc[0] and timeline["modalities"].iloc[0] == "voice+face"
    updates = stream_file(StreamEngine(predictor, hop=1.0, smoothing=0.0), short_video, realtime=False)
    assert [update.no_face for update in updates] == [not found for found in timeline["face_found"]]
    labels = predictor.labels
    np.testing.assert_allclose([[update.raw[label] for label in labels] for update in updates],
                               timeline[[f"prob_{label}" for label in labels]].to_numpy(float), atol=1e-4)
    assert FileCapture(video=short_video, offset=5.0).capture(4.0).frame is None


def test_window_frames_keep_to_the_part_of_the_window_with_video():
    assert window_frame_indices(3.0, 7.0, 30.0, 60, 3) == []  # a 2 s video: nothing of it plays in 3-7 s
    assert window_frame_indices(1.0, 5.0, 30.0, 60, 2) == [37, 52]  # spread over 1-2 s, where it plays
    assert window_frame_indices(0.0, 4.0, 30.0, 120, 3, video_start=1.0) == [15, 45, 75]  # a video that starts 1 s in
