"""Overlapping timeline windows share their frames: each decoded frame is detected once and each face crop embedded once,
and the rows are those of predicting every window on its own (the main face, the other faces, frames where a face is
missing); annotate's packed inputs hold each frame once."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emolib.infer import people
from emolib.infer.annotate import pack, unpack
from emolib.infer.predictor import Predictor
from emolib.infer.timeline import timeline_inputs, timeline_rows

from media import face_image
from test_predict import make_untrained_models, speechlike, write_av_clip

FRAMES = 16  # the best recipe's and the starter's frames per window: 4 s windows every 1 s share 12 of them


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    """8 s: two faces, one drifting; 1-1.7 s without any face; 5-6 s the second face alone (the main one comes back)."""
    root = tmp_path_factory.mktemp("shared")
    frames = []
    for index in range(240):
        seconds = index / 30
        faces = [] if 1.0 <= seconds < 1.7 else [(150 + index // 2, 170, 170), (370, 200, 120)]
        if 5.0 <= seconds < 6.0:
            faces = faces[1:]
        frames.append(face_image(faces=faces))
    write_av_clip(root / "crowd.mp4", frames, speechlike(8.0, seed=3))
    return root / "crowd.mp4", make_untrained_models(root / "models", face_settings={"frames": FRAMES})


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "eager"])
def test_shared_frames_give_the_rows_of_windows_on_their_own(crowd, monkeypatch, fast):
    video, models = crowd
    predictor = Predictor.from_dir(models, fast=fast)
    inputs = timeline_inputs(video, None, 4.0, 1.0, FRAMES)
    calls = []
    detect_many = people.detect_many
    monkeypatch.setattr(people, "detect_many", lambda frames, detector: calls.extend([1] * len(frames)) or detect_many(frames, detector))

    embedded = []
    embeddings = predictor.frame_embeddings
    monkeypatch.setattr(predictor, "frame_embeddings", lambda crops: embedded.append(len(crops)) or embeddings(crops))

    alone = timeline_rows(predictor, inputs, progress=False, share_frames=False)
    per_window, crops_per_window = len(calls), sum(embedded)
    calls.clear()
    embedded.clear()
    shared = timeline_rows(predictor, inputs, progress=False)

    unique = {number for ids in inputs.frame_ids for number in ids}
    assert per_window == sum(len(ids) for ids in inputs.frame_ids) == len(inputs.starts) * FRAMES
    assert len(calls) == len(unique) < per_window / 2  # every frame detected once (5 windows: 32 frames, not 80)
    # each (frame, face) crop embedded once: every later window reuses at least its main face's 12 frames shared with the one before
    assert sum(embedded) <= crops_per_window - (FRAMES - 4) * (len(inputs.starts) - 1)
    assert (shared["face_id"] == 1).any()  # the other face has rows of its own
    pd.testing.assert_frame_equal(shared, alone, check_exact=False, atol=1e-5, rtol=0)


def test_packed_inputs_hold_each_frame_once(crowd):
    video, _ = crowd
    inputs = timeline_inputs(video, None, 4.0, 1.0, FRAMES)
    packed = pack(inputs)
    back = unpack(packed)
    assert back.frame_ids == inputs.frame_ids and back.starts == inputs.starts
    for images, again in zip(inputs.images, back.images):
        assert len(images) == len(again) and all(np.array_equal(a, b) for a, b in zip(images, again))
    unique = len({number for ids in inputs.frame_ids for number in ids})
    frame_bytes = inputs.images[0][0].nbytes
    assert len(packed) < (unique + 1) * frame_bytes + sum(clip.nbytes for clip in inputs.clips) + 100_000
