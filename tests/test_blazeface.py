"""Real faces: BlazeFace with keypoints on real photographs, aligned crops, every face tracked across frames, every face in
`predict --json`, and checkpoints made before BlazeFace keeping Haar."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from emolib import blazeface
from emolib.cli.main import main
from emolib.faces import Detector, align_crop, alignment, detect
from emolib.transforms import FaceSettings

from media import face_image

MESSI = Path("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")
# where the astronaut's eyes, nose tip and mouth are in skimage.data.astronaut() (512 x 512), checked by eye on a drawing of them
ASTRONAUT_KEYPOINTS = [(204, 101), (248, 108), (222, 125), (219, 145)]


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def rotated(image: np.ndarray, degrees: float, centre) -> np.ndarray:
    """``image`` rotated by ``degrees`` about ``centre`` on a canvas large enough to keep all of it."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(tuple(float(v) for v in centre), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def test_anchors_are_mediapipes_layout():
    short, full = blazeface.anchors(128, (8, 16, 16, 16), 2), blazeface.anchors(192, (4,), 1)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    np.testing.assert_allclose(short[:2], [[1 / 32, 1 / 32]] * 2)  # two anchors per cell of the 16x16 grid first
    np.testing.assert_allclose(short[512:518], [[1 / 16, 1 / 16]] * 6)  # then six per cell of the 8x8 grid
    np.testing.assert_allclose(full[-1], [1 - 1 / 96, 1 - 1 / 96])


def test_the_astronauts_face_and_keypoints():
    faces = blazeface.detect(astronaut(), "short")
    assert len(faces) == 1 and faces[0].score > 0.8
    x, y, w, h = faces[0].box
    assert abs(x + w / 2 - 225) < 10 and abs(y + h / 2 - 128) < 10 and 80 < w < 120
    np.testing.assert_allclose(faces[0].keypoints[:4], ASTRONAUT_KEYPOINTS, atol=4)


def test_auto_finds_the_small_face_the_short_range_model_misses():
    image = cv2.cvtColor(cv2.imread(str(MESSI)), cv2.COLOR_BGR2RGB)
    assert blazeface.detect(image, "short") == []
    faces = detect(image, Detector(model="auto"))
    assert len(faces) == 1 and 200 < faces[0].box[0] < 260 and faces[0].box[2] < 60


@pytest.mark.parametrize("degrees", [-30, -10, 10, 30])
def test_rotated_faces_are_found_and_come_out_level(degrees):
    image = rotated(astronaut(), degrees, (225, 128))
    faces = detect(image, Detector())
    assert faces, f"no face at {degrees} degrees"
    size = 224
    matrix = alignment(faces[0].keypoints, size)
    eyes = np.hstack([faces[0].keypoints[:2], np.ones((2, 1))]) @ matrix.T
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.03 * size and eyes[0, 0] < eyes[1, 0]  # level, and the right eye on the image's left
    crop = align_crop(image, faces[0].keypoints, size)
    assert crop.shape == (size, size, 3)
    again = detect(crop, Detector(model="short"))  # the aligned crop is an upright face
    assert again and abs(np.degrees(np.arctan2(*(again[0].keypoints[1] - again[0].keypoints[0])[::-1]))) < 8


def test_two_faces_are_two_tracks_with_stable_ids():
    from emolib.tracks import link, main_track, ordered

    frames = [face_image(640, 360, faces=((170 + 3 * i, 180, 140), (460 - 2 * i, 190, 220))) for i in range(8)]
    detections = [detect(frame) for frame in frames]
    assert all(len(faces) == 2 for faces in detections)
    tracks = link(detections)
    assert len(tracks) == 2 and all(len(track.faces) == 8 for track in tracks)
    for track in tracks:  # each track keeps to one face
        centres = [face.box[0] + face.box[2] / 2 for face in track.faces.values()]
        assert max(centres) - min(centres) < 40
    main = main_track(tracks)
    assert main.area == max(track.area for track in tracks) and ordered(tracks)[0] is main
    assert [track.id for track in link(detections)] == [track.id for track in tracks]


def test_predict_json_lists_every_face(tmp_path, capsys):
    from test_predict import make_untrained_models

    models = make_untrained_models(tmp_path / "models")
    image = tmp_path / "two.png"
    cv2.imwrite(str(image), cv2.cvtColor(face_image(640, 360, faces=((170, 180, 140), (460, 190, 220))), cv2.COLOR_RGB2BGR))
    assert main(["predict", "--models", str(models), "--image", str(image), "--json", "--no-fast"]) == 0
    result = json.loads(capsys.readouterr().out)
    faces = result["faces"]
    assert len(faces) == 2 and faces[0]["main"] and not faces[1]["main"] and faces[1]["source"] == "face"
    assert faces[0]["probabilities"] == result["probabilities"] and faces[0]["box"][0] > faces[1]["box"][0]
    assert set(faces[1]["probabilities"]) == set(result["probabilities"]) and faces[1]["label"] in result["probabilities"]


def test_checkpoints_before_blazeface_keep_haar_and_box_crops(tmp_path):
    from emolib.faces import HAAR
    from emolib.infer.predictor import Predictor
    from emolib.transforms import crop_clip
    from test_predict import make_untrained_models

    new = FaceSettings()
    assert new.detector.kind == "blazeface" and new.align
    old_dict = asdict(new)
    old_dict.pop("align")
    for key in ("kind", "model", "score", "nms_iou", "small_face"):
        old_dict["detector"].pop(key)
    old = FaceSettings.from_stored(old_dict)
    assert old.detector == HAAR and not old.align
    models = make_untrained_models(tmp_path / "models")
    config_path = models / "face" / "config.json"
    config = json.loads(config_path.read_text())
    config["preprocessing"]["face"] = old_dict
    config_path.write_text(json.dumps(config))
    predictor = Predictor.from_dir(models / "face", fast=False)
    assert predictor.face_settings.detector.kind == "haar" and not predictor.face_settings.align
    frame = face_image()
    crops, found, boxes = crop_clip([frame], predictor.face_settings)
    haar_crops, _, haar_boxes = crop_clip([frame], FaceSettings(detector=HAAR, align=False))
    np.testing.assert_array_equal(crops, haar_crops)
    np.testing.assert_array_equal(boxes, haar_boxes)


def test_timeline_has_a_row_per_window_and_face_and_the_figure_shows_every_box(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    from emolib.infer.display import plot_prediction
    from emolib.infer.predictor import Predictor
    from emolib.infer.timeline import main_rows, predict_timeline
    from test_predict import make_untrained_models, speechlike, write_av_clip

    models = make_untrained_models(tmp_path / "models")
    frames = [face_image(640, 360, faces=((170 + i % 5, 180, 140), (460, 190, 220))) for i in range(150)]
    video = write_av_clip(tmp_path / "two.mp4", frames, speechlike(5.0))
    predictor = Predictor.from_dir(models, fast=False)
    table = predict_timeline(predictor, video, progress=False)
    assert list(table.groupby("start")["face_id"].apply(list)) == [[0, 1], [0, 1]]
    other = table[table["face_id"] == 1]
    assert (other["source"] == "face").all() and other["voice_pred"].eq("").all() and other["fusion_ANG"].isna().all()
    np.testing.assert_allclose(other[[f"prob_{label}" for label in predictor.labels]].sum(axis=1), 1.0, atol=1e-5)
    assert len(main_rows(table)) == 2 and (main_rows(table)["source"] == "fusion").all()
    prediction = predictor.predict(speechlike(4.0), 16000, frames[0])
    figure = plot_prediction(prediction, frames[0])
    patches = figure.axes[0].patches
    assert len(patches) == 2 and {patch.get_edgecolor()[:3] for patch in patches} == {(0.0, 1.0, 0.4), (1.0, 2 / 3, 0.0)}
    assert "2 faces found" in figure.axes[0].get_title()


def test_both_ranges_find_every_face_of_a_group_photo():
    """A near face used to hide the people behind it: `auto` stopped at the short-range model's one face."""
    from emolib.bench.faces import faces_found, near_and_far_photo

    canvas, regions = near_and_far_photo()
    assert faces_found([face.box for face in detect(canvas, Detector(model="auto"))], regions) == (1, 0)
    assert faces_found([face.box for face in detect(canvas, Detector())], regions) == (4, 0)  # all but the cameraman in profile
    assert Detector().model == "both"


def test_boxes_of_a_large_image_are_in_its_own_pixels(tmp_path, capsys):
    """An 8000x8000 photo is read as a 4096 px working copy; its boxes are reported (and drawn) in the photo's own pixels."""
    from test_predict import make_untrained_models

    models = make_untrained_models(tmp_path / "models")
    big = cv2.resize(astronaut(), (8000, 8000), interpolation=cv2.INTER_LINEAR)
    image = tmp_path / "big.jpg"
    cv2.imwrite(str(image), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    assert main(["predict", "--models", str(models), "--image", str(image), "--json", "--no-fast"]) == 0
    result = json.loads(capsys.readouterr().out)
    x, y, w, h = result["face_box"]
    scale = 8000 / 512  # the astronaut's face, centred near (225, 128) and about 100 px wide in the 512 px original
    assert abs(x + w / 2 - 225 * scale) < 10 * scale and abs(y + h / 2 - 128 * scale) < 10 * scale and 80 * scale < w < 120 * scale
    assert result["faces"][0]["box"] == result["face_box"] and result["image_scale"] == pytest.approx([8000 / 4096] * 2)
    strip = tmp_path / "strip.png"
    cv2.imwrite(str(strip), np.full((50, 6000, 3), 128, dtype=np.uint8))
    assert main(["predict", "--models", str(models), "--image", str(strip), "--whole-image", "--json", "--no-fast"]) == 0
    assert json.loads(capsys.readouterr().out)["face_box"] == [0, 0, 6000, 50]


def test_a_drawn_box_lands_on_the_face_of_a_working_copy():
    from emolib.infer.display import plot_prediction
    from emolib.infer.prediction import Prediction

    small = np.zeros((100, 200, 3), dtype=np.uint8)
    prediction = Prediction("HAP", {"HAP": 1.0}, "face", ["face"], face={"HAP": 1.0}, face_found=True, face_box=(200, 100, 40, 40),
                            faces=[{"id": 0, "box": [200, 100, 40, 40], "label": "HAP", "main": True}], image_scale=[2.0, 2.0])
    figure = plot_prediction(prediction, small)
    axes = figure.axes[0]
    assert axes.images[0].get_extent() == [0, 400, 200, 0]  # the 200x100 copy is stretched over the 400x200 input's pixels
    assert axes.patches[0].get_xy() == (200, 100)


@pytest.mark.parametrize("model", ["short", "full", "both", "auto"])
def test_images_detected_together_get_the_faces_they_get_alone(model, monkeypatch):
    """A batch of real images of different sizes (and more of them than one network run takes) gives each image exactly the
    faces and keypoints it gets alone (on the one-thread session single images use): the batch axis and the threads change
    nothing but speed."""
    from skimage import data

    from emolib.faces import detect_many

    monkeypatch.setattr(blazeface, "BATCH", 3)
    messi = cv2.cvtColor(cv2.imread(str(MESSI)), cv2.COLOR_BGR2RGB)
    people = [data.astronaut(), messi, face_image(), np.ascontiguousarray(data.astronaut()[60:260, 120:330]),
              np.zeros((90, 160, 3), np.uint8), np.ascontiguousarray(messi[:, ::-1])]
    detector = Detector(model=model)
    blazeface.load.cache_clear()
    alone = [detect(image, detector) for image in people]  # one image per run: each model's one-thread session
    ranges = ("short", "full") if model in ("both", "auto") else (model,)
    assert blazeface.load.cache_info().currsize == len(ranges)  # and no other session was made for them
    together = detect_many(people, detector)
    assert all(blazeface.load(name, single=True).get_session_options().intra_op_num_threads == 1
               for name in ranges)
    assert sum(map(bool, alone)) >= 3  # faces in most images (not a batch of empty results)
    for one, batch in zip(alone, together):
        assert [(face.box, face.score) for face in one] == [(face.box, face.score) for face in batch]
        for a, b in zip(one, batch):
            np.testing.assert_array_equal(a.keypoints, b.keypoints)
