"""The voice model's convolutional front end in bf16 (PyTorch, oneDNN), for CPUs with native bf16.

The wav2vec2-family feature encoder (seven 1-D convolutions, 512 channels, GELU; the first one followed by
a per-channel GroupNorm in the ``group`` models) is 35-60 % of the int8 voice model's time in ONNX Runtime,
whose CPU kernels have no bf16 convolution. Static int8 there moved real speech's pooled embeddings to
cosine 0.65 (BENCHMARKS.md): quiet frames (the silences of real recordings) have activations far below
a per-tensor int8 step, and the feature projection's LayerNorm scales each frame back to unit size. bf16
keeps a relative precision (8 bits of mantissa) for every value, loud or quiet, so it does not have
that failure; on CPUs with AMX or AVX512-BF16 its matrix products run 4-6x faster than fp32.

``ConvFrontEnd`` computes exactly what the encoder's ``feature_extractor`` does, restated for speed:

- the first layer (1 input channel, kernel 10, stride 5) and its GroupNorm are one matrix product: the
  per-channel mean and variance of a linear convolution follow from the mean and covariance of the
  waveform's k-sample patches (k x k, in float64), so the norm's scale and shift are folded into the
  weights and bias before the product; GELU follows;
- every other layer is a matrix product over a strided view of the (time, channels) activations: k
  consecutive frames are k*C contiguous values, so no im2col copy is made for stride = kernel, and one
  for overlapping kernels;
- activations stay (batch, time, channels), the layout the products want and the encoder goes on with;
- the bf16 weights are rounded by GPTQ (``gptq.round_bf16``), not to the nearest bf16 value: rounded to the nearest, they
  were half of the front end's error on real speech (``gptq``'s docstring). The layers' weights are rounded once, when the
  fast file is built, on the probes' speech (``rounded``; stored next to the ONNX file); the first layer's, which the
  GroupNorm folding makes anew for each input, on each input's own waveform patches (their 10 x 10 second moments);
- the last layers (from ``FP32_FROM`` on) run in float32: they are a tenth of the front end's work (their inputs are
  already 8x-16x shorter) and bf16 there was half of the front end's error on real speech (full-size random-init
  wav2vec2-base, 240 RAVDESS clips, transformer fp32: 1 - cosine of pooled embeddings 1.3e-5 -> 0.7e-5, a calibrated
  head's largest probability change 0.0063 -> 0.0034; ``emolib bench --fast-real``).

Its big intermediates (13-20 MB each for a 4 s window) go to buffers kept for the last input shape (``_buffer``):
allocated afresh on every call, they were returned to the system and page-faulted back each time, which made the front end
26-28 ms instead of 19 ms once an ONNX Runtime session shared the process (full-size wav2vec2-base, one 4 s window, 2 threads).

``PositionalConv``: the transformer's positional convolution (a grouped Conv1d, kernel 128, over the projected frames;
1.9 GFLOPs for 4 s) in bf16 too: 2.3 ms against 10 ms in fp32 (ONNX Runtime or PyTorch), and on real speech it moved
the pooled embeddings by a tenth of what the bf16 conv front end does (240 RAVDESS clips, full-size random-init
wav2vec2-base, transformer fp32: mean 1 - cosine 2.7e-6 -> 2.9e-6, largest of a calibrated head's probability changes
0.0043 -> 0.0046). ``VoiceFrontEnd`` runs both, and the feature projection between them, before the int8 graph.

``supported(extractor)`` says whether an encoder's front end has this form, ``positional_supported(encoder)`` whether its
positional convolution has; ``bf16_cpu()`` whether this CPU runs bf16 natively (the fast path uses the front end only
then; elsewhere ONNX Runtime runs it fp32).
"""
from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from . import gptq
from .session import CONV_FEATURES, POSITIONS

DTYPE = torch.bfloat16
FP32_FROM = 4  # layers from this index on run in float32 (see the module docstring)


def bf16_cpu() -> bool:
    """True when this CPU has native bf16 arithmetic (AMX tiles or AVX512-BF16) and PyTorch's oneDNN can use it."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        native = any(probe() for probe in probes if probe is not None)
    except Exception:  # noqa: BLE001 - an unusual build: no bf16 front end
        return False
    return bool(native and torch.backends.mkldnn.is_available())


def product_weight(conv) -> torch.Tensor:
    """A Conv1d's weights as the matrix its strided product takes, float32: (out, in, k) -> (k * in, out), row j * in + c
    multiplying frame j's channel c (the frame-major layout of ``gptq.layer_inputs``)."""
    kernel = conv.kernel_size[0]
    return conv.weight.detach().float().permute(2, 1, 0).reshape(kernel * conv.in_channels, conv.out_channels).contiguous()


def _norm_kind(layer) -> str | None:
    norm = getattr(layer, "layer_norm", None)
    if norm is None:
        return None
    if isinstance(norm, nn.GroupNorm):
        return "group" if norm.num_groups == norm.num_channels else "other"
    return "layer" if isinstance(norm, nn.LayerNorm) else "other"


def _exact_gelu(module) -> bool:
    """True for a GELU module computing the exact (erf) form, as the bf16 code does (HF's GELUActivation or torch's GELU)."""
    return type(module).__name__ in ("GELUActivation", "GELU") and getattr(module, "approximate", "none") == "none"


def supported(extractor) -> bool:
    """True when ``extractor`` (a wav2vec2-family feature encoder) is convolutions + GELU with at most a per-channel
    GroupNorm on the first layer, or a LayerNorm over channels on every layer."""
    layers = list(getattr(extractor, "conv_layers", []))
    if not layers:
        return False
    for index, layer in enumerate(layers):
        conv = getattr(layer, "conv", None)
        if not isinstance(conv, nn.Conv1d) or conv.groups != 1 or conv.padding != (0,) or conv.dilation != (1,):
            return False
        if not _exact_gelu(getattr(layer, "activation", None)):
            return False
        kind = _norm_kind(layer)
        if kind == "other" or (kind == "group" and index != 0):
            return False
    return layers[0].conv.in_channels == 1


class ConvFrontEnd(nn.Module):
    """``extractor``'s output, transposed to (B, T', C) (the layout the encoder goes on with), from waveforms (B, N), its
    products in ``dtype``; see the module docstring."""

    def __init__(self, extractor, dtype: torch.dtype = DTYPE, fp32_from: int = FP32_FROM, rounded: dict | None = None):
        """``rounded``: {layer index: its weights (k * in, out) in ``dtype``} to use instead of the nearest rounding (GPTQ's,
        ``rounded_layers``); the GroupNorm'd first layer's are rounded per input when ``dtype`` is bf16."""
        super().__init__()
        if not supported(extractor):
            raise ValueError("this voice encoder's front end is not a plain wav2vec2-style convolution stack")
        self.fold_rounding = dtype == torch.bfloat16
        self.kernels, self.strides, self.norms, self.biases, self.cast = [], [], [], [], []
        for index, layer in enumerate(extractor.conv_layers):
            conv = layer.conv
            kernel, stride = conv.kernel_size[0], conv.stride[0]
            weight = product_weight(conv)
            if index == 0:
                self.first = weight  # float32: the first layer's weights are rescaled per input before the cast
            self.cast.append(weight.to(dtype if index < fp32_from else torch.float32).contiguous())  # in the product's dtype
            self.biases.append(None if conv.bias is None else conv.bias.detach().float())
            self.kernels.append(kernel)
            self.strides.append(stride)
            kind = _norm_kind(layer)
            norm = layer.layer_norm if kind else None
            self.norms.append(None if norm is None else (kind, norm.weight.detach().float(), norm.bias.detach().float(), norm.eps))
        for index, weight in (rounded or {}).items():
            if index not in rounded_layers(extractor, dtype, fp32_from) or weight.shape != self.cast[index].shape or weight.dtype != dtype:
                raise ValueError(f"rounded weights of conv layer {index} do not fit this front end")
            self.cast[index] = weight.contiguous()
        self._workspace, self._shape, self._lock = {}, None, threading.Lock()

    @torch.inference_mode()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        with self._lock:  # one call at a time uses the buffers
            if tuple(waves.shape) != self._shape:
                self._workspace, self._shape = {}, tuple(waves.shape)
            hidden = self._first(waves.float())
            for index in range(1, len(self.kernels)):
                hidden = self._layer(index, hidden)
            return hidden.to(torch.float32, copy=True)  # never a buffer

    def _buffer(self, role: str, shape, dtype: torch.dtype) -> torch.Tensor:
        """A (shape, dtype) view of the workspace's buffer for ``role``, grown to the largest use and reused by later calls.

        Roles: the layers' outputs alternate between "even" and "odd" (a layer reads the other's), "windows" holds one layer's
        im2col matrix at a time, "input" one layer's input cast to its weights' dtype: ~40 MB for a 4 s window, where a buffer
        per layer and role took ~70 MB and ran 1.5 ms slower."""
        size = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        flat = self._workspace.get(role)
        if flat is None or flat.numel() < size:
            flat = self._workspace[role] = torch.empty(size, dtype=torch.uint8)
        return flat[:size].view(dtype).view(tuple(shape))

    def _first(self, waves: torch.Tensor) -> torch.Tensor:
        """Layer 0 (+ its per-channel GroupNorm folded into the product) + GELU: (B, N) -> (B, T, C) in ``dtype``."""
        kernel, stride, weight, bias, norm = self.kernels[0], self.strides[0], self.first, self.biases[0], self.norms[0]
        dtype = self.cast[0].dtype
        patches = waves.unfold(1, kernel, stride)  # (B, T, k), a view
        if norm is not None and norm[0] == "group":
            _, gamma, beta, eps = norm
            wide = patches.double()
            mean = wide.mean(1)  # (B, k)
            centred = wide - mean[:, None]
            covariance = centred.transpose(1, 2) @ centred / patches.shape[1]  # (B, k, k)
            weight64 = weight.double()  # (k, C)
            conv_bias = 0.0 if bias is None else bias.double()
            channel_mean = mean @ weight64 + conv_bias  # (B, C)
            channel_var = torch.einsum("kc,bkl,lc->bc", weight64, covariance, weight64)
            scale = gamma.double() / torch.sqrt(channel_var + eps)  # (B, C)
            shift = beta.double() - channel_mean * scale + conv_bias * scale
            folded = weight64[None] * scale[:, None, :]  # (B, k, C)
            if self.fold_rounding:  # GPTQ on this input's patches: their second moments are covariance + mean mean^T
                second = covariance + mean[:, :, None] * mean[:, None, :]
                folded = torch.stack([gptq.round_bf16(item.T, moments).T for item, moments in zip(folded, second)])
            hidden = self._buffer("even", (patches.shape[0], patches.shape[1], weight.shape[1]), dtype)
            torch.baddbmm(shift[:, None, :].to(dtype), patches.to(dtype), folded.to(dtype), out=hidden)
        else:
            hidden = self._buffer("even", (patches.shape[0], patches.shape[1], weight.shape[1]), dtype)
            torch.matmul(patches.to(dtype), self.cast[0], out=hidden)
            if bias is not None:
                hidden.add_(bias.to(dtype))
            hidden = self._layer_norm(0, hidden)
        return torch.ops.aten.gelu_(hidden)

    def _layer(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.kernels[index], self.strides[index]
        batch, frames, channels = hidden.shape
        out_frames = (frames - kernel) // stride + 1
        weight = self.cast[index]
        if hidden.dtype != weight.dtype or not hidden.is_contiguous():
            hidden = self._buffer("input", hidden.shape, weight.dtype).copy_(hidden)
        windows = hidden.as_strided((batch, out_frames, kernel * channels), (frames * channels, stride * channels, 1))
        if kernel != stride:  # overlapping windows: one matrix of them (im2col)
            windows = self._buffer("windows", windows.shape, weight.dtype).copy_(windows)
        out = self._buffer("odd" if index % 2 else "even", (batch, out_frames, weight.shape[1]), weight.dtype)
        for item in range(batch):  # each item's windows are one matrix, whatever the batch stride
            torch.mm(windows[item], weight, out=out[item])
        if self.biases[index] is not None:
            out.add_(self.biases[index].to(weight.dtype))
        return torch.ops.aten.gelu_(self._layer_norm(index, out))

    def _layer_norm(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        norm = self.norms[index]
        if norm is None:
            return hidden
        _, gamma, beta, eps = norm
        return nn.functional.layer_norm(hidden.float(), gamma.shape, gamma, beta, eps).to(hidden.dtype)


def rounded_layers(extractor, dtype: torch.dtype = DTYPE, fp32_from: int = FP32_FROM) -> list[int]:
    """The conv layers whose fixed ``dtype`` weights GPTQ rounds when a fast file is built: those before ``fp32_from``, but
    a first layer with a GroupNorm (its weights are rounded per input)."""
    if dtype != torch.bfloat16:
        return []
    first_folded = _norm_kind(extractor.conv_layers[0]) == "group"
    return [index for index in range(min(fp32_from, len(extractor.conv_layers))) if not (index == 0 and first_folded)]


def gptq_weights(extractor, moments: dict) -> dict:
    """{layer index: its weights (k * in, out) in bf16, rounded by GPTQ} for ``moments`` = {layer index: X^T X of its input
    windows, frame-major (``gptq.layer_inputs``)}: what ``ConvFrontEnd`` takes as ``rounded``."""
    rounded = {}
    for index, moment in moments.items():
        rounded[index] = gptq.round_bf16(product_weight(extractor.conv_layers[index].conv).T, moment).T.contiguous()
    return rounded


def positional_supported(encoder) -> bool:
    """True when ``encoder`` (a wav2vec2-family model) adds a plain positional convolution (Conv1d, trim, exact GELU; no
    batch norm) to its projected conv features: ``PositionalConv`` computes it."""
    positional = getattr(getattr(encoder, "encoder", None), "pos_conv_embed", None)
    conv = getattr(positional, "conv", None)
    if not isinstance(conv, nn.Conv1d) or conv.stride != (1,) or conv.dilation != (1,) or not hasattr(encoder, "feature_projection"):
        return False
    return _exact_gelu(getattr(positional, "activation", None)) and {name for name, _ in positional.named_children()} == {"conv", "padding", "activation"}


class PositionalConv(nn.Module):
    """The output of an encoder's positional convolution module (``pos_conv_embed``) for projected frames (B, T, D), its
    convolution in ``dtype`` (the weight-normed weights computed once), trim and GELU in float32."""

    def __init__(self, positional, dtype: torch.dtype = DTYPE):
        super().__init__()
        conv = positional.conv
        # run as a (1, k) Conv2d on channels-last frames: oneDNN's 2-D kernels took 2.3 ms where its 1-D ones took 3.8 ms
        # (wav2vec2-base's 768 channels in 16 groups, kernel 128, 199 frames, bf16, 2 threads of a Xeon with AMX)
        self.weight = conv.weight.detach()[:, :, None, :].to(dtype).contiguous(memory_format=torch.channels_last)
        self.bias = None if conv.bias is None else conv.bias.detach().to(dtype)
        self.padding, self.groups = conv.padding[0], conv.groups
        self.trim, self.activation = positional.padding, positional.activation

    @torch.inference_mode()
    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        frames = hidden.to(self.weight.dtype).transpose(1, 2)[:, :, None, :]  # (B, D, 1, T): channels-last, no copy
        out = nn.functional.conv2d(frames, self.weight, self.bias, padding=(0, self.padding), groups=self.groups)[:, :, 0, :]
        return self.activation(self.trim(out.float())).transpose(1, 2).contiguous()


class VoiceFrontEnd:
    """What runs in PyTorch before an int8-bf16 voice graph: from the window's arrays, the conv features (B, T', C) and, when
    the encoder's positional convolution has the plain form, its output (B, T', D): the graph inputs named in ``outputs``.

    The positional convolution's input is the encoder's own: the model's feature projection (float32) of the conv features,
    the frames outside the attention mask zeroed where the model gives the encoder its mask (``VoiceModel.encoder_mask``).
    The graph projects the conv features again (0.6 ms) rather than taking the projection: its own code is then the model's.
    """

    def __init__(self, model, rounded: dict | None = None):
        """``rounded``: the conv layers' GPTQ-rounded bf16 weights (``ConvFrontEnd``), as the fast file's build made them."""
        encoder = model.encoder
        self.model = model
        self.conv = ConvFrontEnd(encoder.feature_extractor, rounded=rounded)
        self.positional = PositionalConv(encoder.encoder.pos_conv_embed) if positional_supported(encoder) else None
        self.outputs = (CONV_FEATURES, POSITIONS) if self.positional is not None else (CONV_FEATURES,)

    @torch.inference_mode()
    def __call__(self, input_values: np.ndarray, attention_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        features = self.conv(torch.from_numpy(np.asarray(input_values, dtype=np.float32)))
        out = {CONV_FEATURES: features.numpy()}
        if self.positional is not None:
            projected = self.model.encoder.feature_projection(features)
            hidden = projected[0] if isinstance(projected, tuple) else projected
            mask = self.model.encoder_mask(None if attention_mask is None else torch.from_numpy(np.asarray(attention_mask)))
            if mask is not None:
                frames = self.model.encoder._get_feature_vector_attention_mask(hidden.shape[1], mask)
                hidden = hidden * frames[..., None].to(hidden.dtype)
            out[POSITIONS] = self.positional(hidden).numpy()
        return out
