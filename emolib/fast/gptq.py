"""Rounding int8 weights to what the layer computes, not to the nearest step (GPTQ), for the voice transformer's linears.

Nearest rounding (what ``quantize_dynamic`` does) errs on every weight the same way for every frame and every clip, so
the errors do not average out: on real speech they were most of the int8 voice model's error (full-size random-init
wav2vec2-base, 240 RAVDESS clips: weights alone rounded, 1 - cosine 1.4e-4 and a calibrated head's probabilities moved
up to 0.019; activations alone rounded, 7e-6 and 0.004). GPTQ (Frantar et al., 2023, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", ICLR) rounds the weights of one input column at a time and moves
what each rounding lost onto the columns not yet rounded, weighted by the inputs' second moments ``H = X^T X`` measured
on calibration recordings (the probes). The grid is unchanged (per-output-channel symmetric int8, scale = max |w| / 127,
as ONNX Runtime's ``quantize_dynamic`` makes it), so the quantized graph's kernels are the same; only its int8 weight
tensors are replaced (``rewrite``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DAMP = 0.01  # of the mean diagonal of H, added to it (the inputs' second moments from a few thousand frames are not full rank)
BLOCK = 128  # columns rounded together before their errors are passed on (the algorithm's lazy batch)
QMAX = 127


def second_moments(model, modules: dict, feeds: list[dict]) -> dict:
    """{name: X^T X (float64, in x in)} of each of ``modules``' inputs (name -> torch Linear) over ``feeds``' frames, the
    eager fp32 ``model.features`` run on each feed."""
    import torch

    moments = {name: torch.zeros(module.in_features, module.in_features, dtype=torch.float64) for name, module in modules.items()}

    def hook(name):
        def add(_module, inputs, _output):
            frames = inputs[0].reshape(-1, inputs[0].shape[-1]).double()
            moments[name].addmm_(frames.T, frames)
        return add

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        with torch.inference_mode():
            for feed in feeds:
                model.features(**{key: torch.from_numpy(value) for key, value in feed.items()})
    finally:
        for handle in handles:
            handle.remove()
    return moments


def round_weights(weight, moments, damp: float = DAMP, block: int = BLOCK):
    """GPTQ of one linear layer: ``weight`` (out, in), ``moments`` its inputs' X^T X (in, in) -> (int8 weights (out, in),
    float32 scales (out,)) on the per-output-channel symmetric grid (scale = max |w| / 127)."""
    import torch

    weight = torch.as_tensor(weight, dtype=torch.float32).clone()
    scale = (weight.abs().amax(1) / QMAX).clamp_min(torch.finfo(torch.float32).tiny)
    moments = torch.as_tensor(moments, dtype=torch.float64).clone()
    columns = weight.shape[1]
    dead = torch.diag(moments) == 0  # inputs that were always zero: any rounding is as good
    moments[dead, dead] = 1.0
    moments += damp * torch.diag(moments).mean() * torch.eye(columns, dtype=torch.float64)
    # the upper Cholesky factor of H^-1: row i says how column i's rounding error is spread over the later columns
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(moments)), upper=True).float()
    codes = torch.zeros_like(weight, dtype=torch.int8)
    for start in range(0, columns, block):
        stop = min(start + block, columns)
        part, errors, local = weight[:, start:stop].clone(), torch.zeros(weight.shape[0], stop - start), inverse[start:stop, start:stop]
        for index in range(stop - start):
            column = part[:, index]
            code = torch.round(column / scale).clamp(-QMAX, QMAX)
            codes[:, start + index] = code.to(torch.int8)
            error = (column - code * scale) / local[index, index]
            part[:, index:] -= error[:, None] * local[index, index:][None, :]
            errors[:, index] = error
        weight[:, stop:] -= errors @ inverse[start:stop, stop:]
    return codes.numpy(), scale.numpy()


def rewrite(quantized_path: Path, weights: dict) -> None:
    """Replace the int8 weights and scales of ``quantize_dynamic``'s per-channel output at ``quantized_path`` in place:
    ``weights`` maps a float initializer's name (the MatMul's (in, out) weight) to (codes (out, in) int8, scales (out,))."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(quantized_path))
    initializers = {tensor.name: tensor for tensor in graph.graph.initializer}
    for name, (codes, scales) in weights.items():
        quantized, scale, zero = (initializers[f"{name}_quantized"], initializers[f"{name}_scale"], initializers[f"{name}_zero_point"])
        old_codes, old_scales = numpy_helper.to_array(quantized), numpy_helper.to_array(scale)
        if old_codes.shape != codes.T.shape or old_scales.shape != scales.shape or np.any(numpy_helper.to_array(zero) != 0):
            raise ValueError(f"{name}: the quantized graph's weights are not per-channel symmetric int8 of shape {codes.T.shape}")
        quantized.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(codes.T), quantized.name))
        scale.CopyFrom(numpy_helper.from_array(scales.astype(old_scales.dtype), scale.name))
    onnx.save(graph, str(quantized_path))
