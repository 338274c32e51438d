"""BlazeFace, MediaPipe's face detector, run by ONNX Runtime: every face with 6 keypoints.

The two models ship in ``emolib/assets/blazeface`` (Apache-2.0; README there says where they come
from and how MediaPipe's TFLite files were converted to ONNX): ``short`` (128 px input, faces within
about 2 m) and ``full`` (192 px, small and distant faces). ONNX Runtime runs them 1.4-1.7x faster per
frame than OpenCV's TFLite reader (``cv2.dnn``, which read the original files; the outputs agree within
4e-4), one session per model and process. The image is letterboxed to a square, scaled to [-1, 1] and
run once; each of the model's
SSD anchors (laid out as MediaPipe's SsdAnchorsCalculator does) regresses a box and 6 keypoints
relative to itself, and a score. Overlapping detections are merged by MediaPipe's weighted
non-maximum suppression (score-weighted mean of the boxes and keypoints of each cluster).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from .errors import ModelError

KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")  # the subject's right eye is on the image's left
MODELS = {  # name: (file, input size, anchor strides, anchors per layer, MediaPipe's score threshold)
    "short": ("face_detection_short_range.onnx", 128, (8, 16, 16, 16), 2, 0.5),
    "full": ("face_detection_full_range.onnx", 192, (4,), 1, 0.6),
}
SCORE_CLIP = 100.0
# images per network run; per image, against one at a time (2-core Xeon): short range 1.29x at 8, 1.24x at 16; full range
# 1.35x at 8, 1.40x at 16, 1.18x at 32
BATCH = 16
REGRESSION_VALUES = 16  # box (cx, cy, w, h) + 6 keypoints (x, y)


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x, y, w, h) in image pixels, ``score`` in [0, 1], ``keypoints`` (6, 2) pixels (``KEYPOINTS``;
    None for a detector without keypoints)."""

    box: tuple
    score: float = 1.0
    keypoints: np.ndarray | None = None


def anchors(size: int, strides: tuple, per_layer: int) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1]: layers of the same stride share a grid of ceil(size / stride) cells, each with
    ``per_layer`` anchors per layer (MediaPipe's SSD anchors with fixed anchor size, aspect ratio 1)."""
    centres, layer = [], 0
    while layer < len(strides):
        stride, count = strides[layer], 0
        while layer < len(strides) and strides[layer] == stride:
            count += per_layer
            layer += 1
        cells = math.ceil(size / stride)
        grid = (np.arange(cells) + 0.5) / cells
        xs, ys = np.meshgrid(grid, grid)
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), count, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _spec(model: str) -> tuple:
    if model not in MODELS:
        raise ModelError(f"BlazeFace model {model!r}: expected one of {', '.join(MODELS)}")
    return MODELS[model]


@lru_cache(maxsize=None)
def model_anchors(model: str) -> np.ndarray:
    """The anchor centres of ``model`` ("short" or "full"), once per process."""
    _, size, strides, per_layer, _ = _spec(model)
    return anchors(size, strides, per_layer)


@lru_cache(maxsize=None)
def load(model: str, single: bool = False):
    """The ONNX Runtime session of ``model`` ("short" or "full"), once per process: ONNX Runtime's threads (one per
    physical core; ``$EMOLIB_THREADS`` overrides), not spin-waiting (as the fast path's sessions: robust on a shared machine).

    ``single``: the session for one image at a time, on one thread: waking a second thread cost more than it gave on one
    image (2-core Xeon, ms per image, 2 threads / 1 thread: short range 1.38 / 1.07, full range 4.09 / 3.49; batches of 16:
    0.86 / 1.27 and 2.76 / 4.56)."""
    import onnxruntime as ort

    path = resources.files("emolib") / "assets" / "blazeface" / _spec(model)[0]
    if not path.is_file():
        raise ModelError(f"{path}: BlazeFace model missing from the emolib package (reinstall emolib)")
    options = ort.SessionOptions()
    threads = os.environ.get("EMOLIB_THREADS", "").strip()
    options.intra_op_num_threads = 1 if single else int(threads) if threads.isdigit() and int(threads) > 0 else 0
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(batch_axis(path.read_bytes()), options, providers=["CPUExecutionProvider"])


def batch_axis(model_bytes: bytes) -> bytes:
    """The converted model with its first axis open: any number of images per run (the files, as converted, take one).

    The axis is named on the inputs and outputs, the shapes inferred inside the graph are dropped (ONNX Runtime infers
    them again), the reshapes to (1, -1, k) keep the batch instead (0: copy the input's axis) and the full-range model's
    upsamplings take their batch from their input. The weights and every computing operator are unchanged: an image's outputs are the same bytes in a batch of 16 as alone (``test_blazeface``)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes)
    for value in list(graph.graph.input) + list(graph.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "images"
    del graph.graph.value_info[:]
    constants = {tensor.name: tensor for tensor in graph.graph.initializer}
    nodes = []
    for node in graph.graph.node:
        if node.op_type == "Reshape" and node.input[1] in constants:
            shape = numpy_helper.to_array(constants[node.input[1]]).copy()
            if shape[0] == 1:  # (shared by several reshapes: changed once)
                shape[0] = 0
                constants[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
        if node.op_type == "Resize" and len(node.input) == 4 and node.input[3] in constants:
            # the full-range model's upsampling to fixed (1, C, H, W) sizes: the input's own batch, then (C, H, W)
            sizes = numpy_helper.to_array(constants[node.input[3]])
            name = node.name or node.output[0]
            graph.graph.initializer.extend([numpy_helper.from_array(sizes[1:].astype(np.int64), f"{name}/sizes_chw"),
                                            numpy_helper.from_array(np.array([0], np.int64), f"{name}/zero"),
                                            numpy_helper.from_array(np.array([1], np.int64), f"{name}/one")])
            nodes += [onnx.helper.make_node("Shape", [node.input[0]], [f"{name}/shape"]),
                      onnx.helper.make_node("Slice", [f"{name}/shape", f"{name}/zero", f"{name}/one"], [f"{name}/batch"]),
                      onnx.helper.make_node("Concat", [f"{name}/batch", f"{name}/sizes_chw"], [f"{name}/sizes"], axis=0)]
            node.input[3] = f"{name}/sizes"
        nodes.append(node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    return graph.SerializeToString()


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """``image`` (RGB uint8) padded to a centred square and resized to ``size``: (NCHW float32 in [-1, 1], square side, x pad, y pad).

    Resized first, then padded (the same pixels as padding the full image, at a fraction of the copying)."""
    import cv2

    height, width = image.shape[:2]
    side = max(height, width)
    left, top = (side - width) // 2, (side - height) // 2
    scale = size / side
    inner_w, inner_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(image, (inner_w, inner_h), interpolation=interpolation)
    pad_left, pad_top = (size - inner_w) // 2, (size - inner_h) // 2
    square = cv2.copyMakeBorder(small, pad_top, size - inner_h - pad_top, pad_left, size - inner_w - pad_left, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    pixels = square.astype(np.float32) / 127.5 - 1.0
    # the square's own origin: the padding actually used, in image pixels
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None]), float(side), pad_left / scale, pad_top / scale


def raw_outputs(images: list[np.ndarray], model: str) -> list[tuple[np.ndarray, np.ndarray, float, float, float]]:
    """The network's (scores (N,), regressions (N, 16)) for each of ``images`` and its letterbox (side, x pad, y pad); the
    images run ``BATCH`` at a time."""
    session = load(model, single=len(images) == 1)
    boxes = [letterbox(image, MODELS[model][1]) for image in images]
    results = []
    for start in range(0, len(boxes), BATCH):
        part = boxes[start : start + BATCH]
        blob = np.concatenate([box[0] for box in part])
        outputs = session.run(None, {session.get_inputs()[0].name: blob})  # told apart by shape: the output names differ between the models
        scores = next(output for output in outputs if output.shape[-1] == 1).reshape(len(part), -1).astype(np.float64)
        regressions = next(output for output in outputs if output.shape[-1] == REGRESSION_VALUES).reshape(len(part), -1, REGRESSION_VALUES)
        results += [(scores[index], regressions[index], *part[index][1:]) for index in range(len(part))]
    return results


def decode(scores: np.ndarray, regressions: np.ndarray, anchor_centres: np.ndarray, size: int, threshold: float):
    """(scores, boxes (M, 4) as x0, y0, x1, y1, keypoints (M, 6, 2)) in [0, 1] square coordinates, for the anchors above ``threshold``."""
    probabilities = 1.0 / (1.0 + np.exp(-np.clip(scores, -SCORE_CLIP, SCORE_CLIP)))
    keep = probabilities >= threshold
    values, centres = regressions[keep] / size, anchor_centres[keep]
    cx, cy = values[:, 0] + centres[:, 0], values[:, 1] + centres[:, 1]
    half_w, half_h = values[:, 2] / 2, values[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    keypoints = values[:, 4:].reshape(-1, len(KEYPOINTS), 2) + centres[:, None, :]
    return probabilities[keep], boxes, keypoints


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x0, y0, x1, y1) box with each of ``boxes``."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    overlap = width * height
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return overlap / np.maximum((box[2] - box[0]) * (box[3] - box[1]) + areas - overlap, 1e-9)


def weighted_nms(scores, boxes, keypoints, threshold: float):
    """MediaPipe's weighted NMS: each cluster (IoU above ``threshold`` with its best box) becomes the score-weighted mean
    of its boxes and keypoints, with the best score. Returns [(score, box, keypoints)], best first."""
    order = np.argsort(-scores)
    scores, boxes, keypoints = scores[order], boxes[order], keypoints[order]
    merged, remaining = [], np.arange(len(scores))
    while len(remaining):
        overlaps = iou(boxes[remaining[0]], boxes[remaining])
        cluster, remaining = remaining[overlaps > threshold], remaining[overlaps <= threshold]
        if not len(cluster):  # a degenerate box overlaps nothing, not even itself
            cluster, remaining = remaining[:1], remaining[1:]
        weights = scores[cluster][:, None]
        merged.append((float(scores[cluster[0]]), (boxes[cluster] * weights).sum(0) / weights.sum(),
                       (keypoints[cluster] * weights[:, :, None]).sum(0) / weights.sum()))
    return merged


def candidates(images: list[np.ndarray], model: str, threshold: float | None = None) -> list:
    """For each image: (scores, boxes, keypoints) of ``model``'s anchors above ``threshold`` (None: MediaPipe's for it), in the
    letterbox square's [0, 1] coordinates (the same square for both models), and the letterbox (side, x pad, y pad)."""
    anchor_centres = model_anchors(model)
    size, default_threshold = MODELS[model][1], MODELS[model][4]
    return [(decode(scores, regressions, anchor_centres, size, default_threshold if threshold is None else threshold), (side, left, top))
            for scores, regressions, side, left, top in raw_outputs(images, model)]


def detect(image: np.ndarray, model: str = "short", threshold: float | None = None, nms_iou: float = 0.3) -> list[Face]:
    """Every face BlazeFace ``model`` finds in an RGB uint8 image, best first; boxes clipped to the image, keypoints as found.

    ``model`` "both" runs the short- and the full-range model and merges their detections with one weighted NMS (a face both
    find becomes the score-weighted mean of their boxes): near faces and small, distant ones alike, as in a group photo."""
    return detect_many([image], model, threshold, nms_iou)[0]


def detect_many(images: list[np.ndarray], model: str = "short", threshold: float | None = None, nms_iou: float = 0.3) -> list[list[Face]]:
    """``detect`` of each image, the networks run on ``BATCH`` images at a time."""
    if not images:
        return []
    if model == "both":
        found = zip(candidates(images, "short", threshold), candidates(images, "full", threshold))
        return [faces_in_image(weighted_nms(*(np.concatenate([near[0][index], far[0][index]]) for index in range(3)), nms_iou),
                               near[1], image.shape) for image, (near, far) in zip(images, found)]
    return [faces_in_image(weighted_nms(*arrays, nms_iou), letterbox_, image.shape)
            for image, (arrays, letterbox_) in zip(images, candidates(images, model, threshold))]


def faces_in_image(found, letterbox_, shape) -> list[Face]:
    """``weighted_nms``'s detections (square coordinates) as ``Face`` records in image pixels, boxes clipped to the image."""
    side, left, top = letterbox_
    height, width = shape[:2]
    faces = []
    for score, box, points in found:
        x0, y0, x1, y1 = box * side - np.array([left, top, left, top])
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        pixel_box = (int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)))
        faces.append(Face(pixel_box, score, (points * side - np.array([left, top])).astype(np.float32)))
    return faces
