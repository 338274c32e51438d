"""Rounding weights to what the layer computes, not to the nearest step (GPTQ): the voice transformer's int8 linears, the bf16 front end.

Nearest rounding (what ``quantize_dynamic`` does) errs on every weight the same way for every frame and every clip, so
the errors do not average out: on real speech they were most of the int8 voice model's error (full-size random-init
wav2vec2-base, 240 RAVDESS clips: weights alone rounded, 1 - cosine 1.4e-4 and a calibrated head's probabilities moved
up to 0.019; activations alone rounded, 7e-6 and 0.004). GPTQ (Frantar et al., 2023, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", ICLR) rounds the weights of one input column at a time and moves
what each rounding lost onto the columns not yet rounded, weighted by the inputs' second moments ``H = X^T X`` measured
on calibration recordings (the probes). The grid is unchanged (per-output-channel symmetric int8, scale = max |w| / 127,
as ONNX Runtime's ``quantize_dynamic`` makes it), so the quantized graph's kernels are the same; only its int8 weight
tensors are replaced (``rewrite``). Columns are rounded in order of decreasing input energy (the diagonal of ``H``; the
paper's "act order"): the large inputs' errors then have the most columns left to be made up on (GPTQ on 24 real probes,
138 RAVDESS recordings of other actors: mean 1 - cosine 1.18e-5 -> 1.14e-5, 99th percentile 1.85e-5 -> 1.64e-5).

The same rounding serves the bf16 conv front end (``frontend``; ``round_bf16``): rounding its weights to the nearest bf16
value was half of its error on real speech (weights of its layers 1-3 alone: 1 - cosine 1.2e-6 of 2.6e-6, the first
layer's 0.4e-6; rounding the activations to bf16, 0.2e-6: per-frame errors average out in the pooling, a weight's error is
the same in every frame). GPTQ on the grid of bf16 values takes the former 1.2e-6 to 0.1e-6.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DAMP = 0.01  # of the mean diagonal of H, added to it (the inputs' second moments from a few thousand frames are not full rank)
BLOCK = 128  # columns rounded together before their errors are passed on (the algorithm's lazy batch)
QMAX = 127
# every 4th output frame of a convolution: 28 probe windows still give 11,000-45,000 frames per layer for its 1,536 inputs
# (wav2vec2-base), at a quarter of the 52 GFLOPs per window that all of them cost
CONV_FRAME_STEP = 4


def layer_inputs(module, inputs):
    """A Linear's or Conv1d's input as the rows of its matrix product: (frames, in) for a Linear; for a Conv1d (B, C, T),
    each output frame's k input frames, frame-major (row j * C + c: ``frontend.ConvFrontEnd``'s weight layout)."""
    import torch

    if isinstance(module, torch.nn.Conv1d):
        kernel, stride = module.kernel_size[0], module.stride[0]
        return inputs.unfold(2, kernel, stride).permute(0, 2, 3, 1).reshape(-1, kernel * inputs.shape[1])
    return inputs.reshape(-1, inputs.shape[-1])


def second_moments(model, modules: dict, feeds: list[dict]) -> dict:
    """{name: X^T X (float64, in x in)} of each of ``modules``' inputs (name -> torch Linear or Conv1d, ``layer_inputs``)
    over ``feeds``' frames, the eager fp32 ``model.features`` run on each feed. A convolution's thousands of frames per
    window are thinned (``CONV_FRAME_STEP``) and multiplied in float32 (a window's sum), then summed in float64."""
    import torch

    moments = {}

    def hook(name):
        def add(module, inputs, _output):
            frames = layer_inputs(module, inputs[0])
            if name not in moments:
                moments[name] = torch.zeros(frames.shape[1], frames.shape[1], dtype=torch.float64)
            if isinstance(module, torch.nn.Conv1d):
                frames = frames[::CONV_FRAME_STEP]
                moments[name] += (frames.T @ frames).double()
            else:
                frames = frames.double()
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


def round_columns(weight, moments, quantize, damp: float = DAMP, block: int = BLOCK):
    """GPTQ of one layer: ``weight`` (out, in) rounded by ``quantize`` (a column (out,) -> its values on the grid), one input
    column at a time in order of decreasing ``moments``' diagonal, each rounding's error passed on to the columns not yet
    rounded; ``moments`` its inputs' X^T X (in, in). Returns the rounded weights (out, in), float32."""
    import torch

    weight = torch.as_tensor(weight, dtype=torch.float32)
    moments = torch.as_tensor(moments, dtype=torch.float64)
    order = torch.argsort(torch.diag(moments), descending=True, stable=True)
    weight, moments = weight[:, order].clone(), moments[order][:, order].clone()
    columns = weight.shape[1]
    dead = torch.diag(moments) == 0  # inputs that were always zero: any rounding is as good
    moments[dead, dead] = 1.0
    moments += damp * torch.diag(moments).mean() * torch.eye(columns, dtype=torch.float64)
    # the upper Cholesky factor of H^-1: row i says how column i's rounding error is spread over the later columns
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(moments)), upper=True).float()
    rounded = torch.zeros_like(weight)
    for start in range(0, columns, block):
        stop = min(start + block, columns)
        part, errors, local = weight[:, start:stop].clone(), torch.zeros(weight.shape[0], stop - start), inverse[start:stop, start:stop]
        for index in range(stop - start):
            column = part[:, index]
            rounded[:, start + index] = value = quantize(column)
            error = (column - value) / local[index, index]
            part[:, index:] -= error[:, None] * local[index, index:][None, :]
            errors[:, index] = error
        weight[:, stop:] -= errors @ inverse[start:stop, stop:]
    unordered = torch.empty_like(rounded)
    unordered[:, order] = rounded
    return unordered


def round_weights(weight, moments, damp: float = DAMP, block: int = BLOCK):
    """GPTQ of one linear layer: ``weight`` (out, in), ``moments`` its inputs' X^T X (in, in) -> (int8 weights (out, in),
    float32 scales (out,)) on the per-output-channel symmetric grid (scale = max |w| / 127)."""
    import torch

    weight = torch.as_tensor(weight, dtype=torch.float32)
    scale = (weight.abs().amax(1) / QMAX).clamp_min(torch.finfo(torch.float32).tiny)
    rounded = round_columns(weight, moments, lambda column: torch.round(column / scale).clamp(-QMAX, QMAX) * scale, damp, block)
    return torch.round(rounded / scale[:, None]).to(torch.int8).numpy(), scale.numpy()


def round_bf16(weight, moments, damp: float = DAMP, block: int = BLOCK):
    """GPTQ of ``weight`` (out, in) onto the bf16 values (each rounded to the nearest of them, before its error is passed
    on), ``moments`` its inputs' X^T X: a bf16 tensor (out, in)."""
    import torch

    return round_columns(weight, moments, lambda column: column.to(torch.bfloat16).float(), damp, block).to(torch.bfloat16)


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
