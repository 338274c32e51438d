import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from emolib import faces
from emolib.data import face_cache
from emolib.errors import ModelError, VideoError
from emolib.data.face_cache import load_face_crops, prepare_faces, settings_key
from emolib.faces import FACE_SIZE, Detector, crop_box, crop_face, detect_faces
from emolib.transforms import FaceSettings
from emolib.video import as_rgb, frame_indices, read_frames, read_image

from media import face_frames, face_image, frame_number, no_face_image, write_video

CLIP_FRAMES = 75  # 2.5 s at 30 fps, like CREMA-D


@pytest.fixture(scope="module")
def flv(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "1001_DFA_ANG_XX.flv", face_frames(CLIP_FRAMES))


def video_error(path, count=3) -> str:
    with pytest.raises(VideoError) as caught:
        read_frames(path, count)
    message = str(caught.value)
    assert "\n" not in message
    assert path.name in message
    return message


def write_png(path, image) -> str:
    assert cv2.imwrite(str(path), image)
    return path


def test_read_frames_from_flv1(flv):
    frames = read_frames(flv)
    assert len(frames) == 3
    assert all(frame.shape == (360, 480, 3) and frame.dtype == np.uint8 for frame in frames)
    assert [frame_number(frame) for frame in frames] == frame_indices(CLIP_FRAMES, 3) == [12, 37, 62]
    assert [frame_number(frame) for frame in read_frames(flv, 5)] == [7, 22, 37, 52, 67]


def test_seeking_matches_sequential_decoding(flv):
    capture = cv2.VideoCapture(str(flv))
    decoded = [capture.read()[1] for _ in range(CLIP_FRAMES)]
    capture.release()
    for frame, index in zip(read_frames(flv, 4), frame_indices(CLIP_FRAMES, 4)):
        np.testing.assert_array_equal(frame, cv2.cvtColor(decoded[index], cv2.COLOR_BGR2RGB))


def test_more_frames_than_the_clip_has(tmp_path):
    path = write_video(tmp_path / "tiny.flv", face_frames(2))
    assert [frame_number(frame) for frame in read_frames(path, 4)] == [0, 0, 1, 1]


def test_truncated_flv_falls_back_to_sequential_reading(tmp_path, flv):
    cut = tmp_path / "cut.flv"
    cut.write_bytes(flv.read_bytes()[: flv.stat().st_size // 2])
    numbers = [frame_number(frame) for frame in read_frames(cut)]
    assert len(numbers) == 3 and numbers == sorted(numbers) and numbers[-1] < 62


def test_unknown_frame_count_reads_sequentially(tmp_path):
    path = tmp_path / "raw.mjpeg"
    with open(path, "wb") as file:
        for frame in face_frames(20):
            file.write(cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes())
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) <= 0
    assert [frame_number(frame) for frame in read_frames(path)] == frame_indices(20, 3) == [3, 10, 16]


def test_missing_video(tmp_path):
    assert "no such file" in video_error(tmp_path / "absent.flv")


def test_random_bytes_named_flv(tmp_path):
    path = tmp_path / "noise.flv"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    assert "not a readable video" in video_error(path)


def test_video_without_frames(tmp_path):
    path = tmp_path / "empty.mp4"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48)).release()
    assert path.stat().st_size > 0
    assert "no readable video frames" in video_error(path)


def test_flv_cut_before_first_frame(tmp_path, flv):
    cut = tmp_path / "header.flv"
    cut.write_bytes(flv.read_bytes()[:200])
    message = video_error(cut)
    assert "no readable video frames" in message or "not a readable video" in message


def test_drawn_face_is_detected():
    boxes = detect_faces(face_image(faces=((240, 180, 200),)))
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert abs(x + w / 2 - 240) < 20 and abs(y + h / 2 - 180) < 40 and 150 < w < 230


def test_no_face_falls_back_to_centre_crop():
    image = no_face_image()
    crop = crop_face(image)
    assert not crop.found and crop.faces == 0 and crop.box is None
    assert crop.image.shape == (FACE_SIZE, FACE_SIZE, 3) and crop.image.dtype == np.uint8
    side = int(360 * faces.FALLBACK_FRACTION)
    np.testing.assert_array_equal(crop.image, crop_box(image, ((480 - side) // 2, (360 - side) // 2, side, side), margin=0))


def test_several_faces_largest_wins():
    crop = crop_face(face_image(640, 360, faces=((170, 180, 130), (450, 180, 250))))
    assert crop.found and crop.faces == 2
    x, _, w, _ = crop.box
    assert 400 < x + w / 2 < 500 and w > 150  # the larger face (BlazeFace boxes the face, not the whole drawn head)


def test_grayscale_image(tmp_path):
    grey = cv2.cvtColor(face_image(), cv2.COLOR_RGB2GRAY)
    image = read_image(write_png(tmp_path / "grey.png", grey))
    assert image.shape == (360, 480, 3) and (image[..., 0] == image[..., 2]).all()
    crop = crop_face(image)
    assert crop.found and crop.image.shape == (FACE_SIZE, FACE_SIZE, 3)


def test_rgba_image_is_composited_on_white(tmp_path):
    rgba = np.dstack([face_image(), np.full((360, 480), 255, np.uint8)])
    rgba[:, :40, 3] = 0
    image = read_image(write_png(tmp_path / "alpha.png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)))
    assert image.shape == (360, 480, 3) and image.dtype == np.uint8
    assert (image[:, :40] == 255).all()
    np.testing.assert_array_equal(image[:, 40:], face_image()[:, 40:])
    crop = crop_face(image)
    assert crop.found and crop.image.shape == (FACE_SIZE, FACE_SIZE, 3)


def test_16_bit_image(tmp_path):
    deep = cv2.cvtColor(face_image(), cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    image = read_image(write_png(tmp_path / "deep.png", deep))
    np.testing.assert_array_equal(image, face_image())


def test_unreadable_image(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff" + np.random.default_rng(0).bytes(500))
    with pytest.raises(VideoError, match="photo.jpg: not a readable image") as caught:
        read_image(path)
    assert "\n" not in str(caught.value)


def test_as_rgb_arrays():
    assert as_rgb(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert as_rgb(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
    assert (as_rgb(np.ones((4, 5, 3), np.float32)) == 255).all()
    assert (as_rgb(np.full((4, 5, 3), 0.5)) == 128).all()
    with pytest.raises(VideoError):
        as_rgb(np.zeros((4, 5, 2), np.uint8))


def test_crop_at_image_border_pads_black():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_box(image, (-20, -20, 60, 60), size=50, margin=0)
    assert crop.shape == (50, 50, 3)
    assert (crop[:10, :10] == 0).all() and (crop[30:, 30:] == 200).all()


def test_missing_cascade():
    with pytest.raises(ModelError, match="opencv-python<5"):
        faces.load_cascade("haarcascade_missing.xml")


def count_decodes(monkeypatch) -> list:
    calls = []

    def counting(path, count):
        calls.append(path)
        return read_frames(path, count)

    monkeypatch.setattr(face_cache, "read_frames", counting)
    return calls


def test_prepare_faces_caches_and_reports_bad_videos(tmp_path, flv, monkeypatch):
    bad = tmp_path / "1002_DFA_SAD_XX.flv"
    bad.write_bytes(b"FLV not really")
    manifest = pd.DataFrame(
        {"stem": ["1001_DFA_ANG_XX", "1002_DFA_SAD_XX", "1003_DFA_HAP_XX"], "video_path": [str(flv), str(bad), None]}
    )
    decodes = count_decodes(monkeypatch)
    with pytest.warns(UserWarning, match="1002_DFA_SAD_XX"):
        table = prepare_faces(manifest, tmp_path / "cache", workers=0, progress=False)
    assert list(table.columns) == ["stem", "face_path", "faces_found", "frames", "has_face", "error"]
    assert list(table["stem"]) == ["1001_DFA_ANG_XX", "1002_DFA_SAD_XX"] and len(decodes) == 2
    good, failed = table.iloc[0], table.iloc[1]
    assert good["faces_found"] == 3 and good["frames"] == 3 and good["has_face"] and good["error"] == ""
    assert failed["face_path"] == "" and "1002_DFA_SAD_XX.flv" in failed["error"]
    assert Path(good["face_path"]).parent.name == settings_key(FaceSettings()) and Path(good["face_path"]).name.startswith("1001_DFA_ANG_XX-")
    crops = load_face_crops(good["face_path"])
    assert crops.shape == (3, FACE_SIZE, FACE_SIZE, 3) and crops.dtype == np.uint8
    with np.load(good["face_path"], allow_pickle=False) as archive:
        assert archive["found"].all() and archive["boxes"].shape == (3, 4)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = prepare_faces(manifest.iloc[:1], tmp_path / "cache", workers=0, progress=False)
    assert len(decodes) == 2
    assert again.iloc[0][["face_path", "faces_found", "frames"]].tolist() == good[["face_path", "faces_found", "frames"]].tolist()

    resized = prepare_faces(manifest.iloc[:1], tmp_path / "cache", FaceSettings(image_size=64), workers=0, progress=False)
    assert len(decodes) == 3 and settings_key(FaceSettings(image_size=64)) in resized["face_path"][0]
    assert load_face_crops(resized["face_path"][0]).shape == (3, 64, 64, 3)
    keys = {settings_key(FaceSettings(**change)) for change in ({}, {"margin": 0.4}, {"frames": 5}, {"detector": Detector(min_neighbors=3)})}
    assert len(keys) == 4


def test_corrupt_cache_file(tmp_path):
    path = tmp_path / "1001_DFA_ANG_XX.npz"
    path.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(VideoError, match="1001_DFA_ANG_XX.npz: unreadable face-crop cache file") as caught:
        load_face_crops(path)
    assert "\n" not in str(caught.value)


def test_prepare_faces_with_worker_processes(tmp_path, flv):
    videos = [write_video(tmp_path / f"100{i}_IEO_NEU_XX.flv", face_frames(30, index_patch=False)) for i in range(3)]
    manifest = pd.DataFrame({"stem": [video.stem for video in videos], "video_path": videos})
    table = prepare_faces(manifest, tmp_path / "cache", FaceSettings(frames=2), workers=2, progress=False)
    assert (table["error"] == "").all() and (table["faces_found"] == 2).all()
    serial = prepare_faces(manifest, tmp_path / "serial", FaceSettings(frames=2), workers=0, progress=False)
    for parallel_path, serial_path in zip(table["face_path"], serial["face_path"]):
        np.testing.assert_array_equal(load_face_crops(parallel_path), load_face_crops(serial_path))
