"""The face model's fast graph: the per-frame ResNet exported to ONNX, fp32 or int8 static (calibrated on the probes' faces).

Why int8 static with 7-bit weights: ``emolib.fast.export``'s docstring.
"""
from __future__ import annotations

import os
from pathlib import Path

from .torch_onnx import calibration_reader, quiet, to_onnx


def _face_module(model):
    """The exported face graph: pixels (F, 3, S, S) -> per-frame embeddings (F, D); the clip mean is taken outside."""
    return model.encoder


def export_face(model, settings, path: Path, variant: str, workdir: Path, probes=None) -> None:
    """Write the per-frame face graph to ``path`` (fp32, or int8 static QDQ calibrated on ``probes.calibration_faces``)."""
    import torch

    from ..transforms import face_pixels

    fp32 = workdir / "face-fp32.onnx"
    pixels = torch.zeros(1, 3, settings.image_size, settings.image_size)
    to_onnx(_face_module(model), (pixels,), fp32, ["pixels"], ["embeddings"], {"pixels": {0: "frames"}, "embeddings": {0: "frames"}})
    if variant == "fp32":
        os.replace(fp32, path)
        return
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = [{"pixels": face_pixels(crop, settings).numpy()} for crop in probes.calibration_faces]
    prepared = workdir / "face-prepared.onnx"
    with quiet():
        # folds the exporter's Identity weight aliases, which would otherwise leave a third of the convs unquantized
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # reduce_range (7-bit weights): without VNNI, x86 u8s8 kernels add pairs of products in saturating int16; full-range
        # weights overflowed there (trained tiny face model: mean probability error 0.024 -> 0.006 with it), at no cost in speed
        quantize_static(str(prepared), str(path), calibration_reader(feeds), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
