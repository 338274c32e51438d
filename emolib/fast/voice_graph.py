"""The voice model's fast graph: its inputs, the ONNX export for the checkpoint's window and its int8 variants.

Which layer groups run in what precision, and why: ``emolib.fast.export``'s docstring; the bf16 front end that runs before
an int8-bf16 graph: ``frontend``; the GPTQ rounding of the int8 weights: ``gptq``.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import gptq
from .cache import INT8_BF16, front_end_weights
from .probes import default_probes
from .session import CONV_FEATURES, POSITIONS, VOICE_INPUTS
from .torch_onnx import quiet, to_onnx

# the transformer's linear layers: attention q/k/v/out projections and the feed-forward pair (any wav2vec2-family naming)
VOICE_INT8_NODES = re.compile(r"/encoder/.*layers\.\d+/.*(proj|dense|fc\d?|linear)[^/]*/(MatMul|Gemm)")


def voice_arrays(wave: np.ndarray, settings) -> dict[str, np.ndarray]:
    """transforms.voice_inputs of ``wave`` as arrays with a batch axis: input_values (1, N) float32, attention_mask (1, N)
    int64 and, for a speech-only model, speech_mask (1, N) int64."""
    from ..transforms import voice_inputs

    return {name: value.numpy()[None] for name, value in voice_inputs(wave, settings).items()}


def voice_input_names(settings) -> list[str]:
    """The voice graph's inputs: the speech mask only when the model pools over speech frames."""
    return [name for name in VOICE_INPUTS if name != "speech_mask" or getattr(settings, "speech_only", False)]


def _voice_module(model, names: list[str]):
    """The exported voice graph: ``names``' tensors -> pooled features, as VoiceModel.features. Inside ``_after_front_end``,
    ``conv_features`` stand for the waveform and ``positions`` for the positional convolution's output."""
    import torch

    class VoiceFeatures(torch.nn.Module):
        def __init__(self, voice):
            super().__init__()
            self.voice = voice

        def forward(self, *tensors):
            inputs = dict(zip(names, tensors))
            if CONV_FEATURES in inputs:
                inputs["input_values"] = inputs.pop(CONV_FEATURES)
            if POSITIONS in inputs:
                self.voice.encoder.encoder.pos_conv_embed.given = inputs.pop(POSITIONS)
            return self.voice.features(**inputs)

    return VoiceFeatures(model).eval()


@contextlib.contextmanager
def _after_front_end(model, outputs):
    """``model`` whose encoder starts where ``frontend.VoiceFrontEnd`` stops, while the graph is exported: the feature
    extractor is swapped for a transpose of the given conv features (B, T', C), and, when the front end's ``outputs`` name
    ``positions``, the positional convolution module for one that returns them."""
    import torch

    class FrontEndOutput(torch.nn.Module):
        def forward(self, conv_features):
            return conv_features.transpose(1, 2)

    class GivenPositions(torch.nn.Module):
        given = None

        def forward(self, hidden):
            return self.given

    encoder = model.encoder
    extractor, positional = encoder.feature_extractor, encoder.encoder.pos_conv_embed
    encoder.feature_extractor = FrontEndOutput()
    if POSITIONS in outputs:
        encoder.encoder.pos_conv_embed = GivenPositions()
    try:
        yield model
    finally:
        encoder.feature_extractor, encoder.encoder.pos_conv_embed = extractor, positional


def front_end(model, path: Path | None = None):
    """The bf16 front end of a voice model (``frontend.VoiceFrontEnd``; its weights must be loaded), with the rounded
    weights the int8-bf16 file at ``path`` was built with (``front_end_weights``), if it has them."""
    from .frontend import VoiceFrontEnd

    rounded, weights = None, None if path is None else front_end_weights(path)
    if weights is not None and weights.is_file():
        from safetensors.torch import load_file

        rounded = {int(name.rsplit(".", 1)[1]): tensor for name, tensor in load_file(str(weights)).items()}
    return VoiceFrontEnd(model, rounded)


def export_voice(model, settings, path: Path, variant: str, workdir: Path, probes=None, rounding: str = "gptq") -> None:
    """Write the voice graph for ``settings``' window to ``path``.

    int8: the transformer layers' linear layers (attention projections and feed-forward) get
    int8 weights and dynamic int8 activations; the conv feature encoder and the feature
    projection stay fp32 (``emolib.fast.export``'s docstring says why); the int8 weights are rounded by GPTQ
    (``gptq``) on ``probes``' speech windows (default: the packaged probes), or to the nearest step with
    ``rounding="nearest"``. int8-bf16: the same graph without the conv feature encoder and, where its form allows, the
    positional convolution, which run in bf16 before it (``frontend.VoiceFrontEnd``; its inputs are ``conv_features``,
    (1, T', C), and ``positions``, (1, T', D)); with GPTQ, the conv layers' bf16 weights are rounded on the same probes and
    written next to ``path`` (``front_end_weights``).
    """
    import torch

    samples = int(round(settings.window_seconds * settings.sample_rate))
    names = voice_input_names(settings)
    dummy = {"input_values": torch.zeros(1, samples), "attention_mask": torch.ones(1, samples, dtype=torch.long),
             "speech_mask": torch.ones(1, samples, dtype=torch.long)}
    fp32 = workdir / "voice-fp32.onnx"
    if variant == INT8_BF16:
        front = front_end(model)
        dummy.update({name: torch.from_numpy(value) for name, value in front(dummy["input_values"].numpy(), dummy["attention_mask"].numpy()).items()})
        graph_names = list(front.outputs) + [name for name in names if name != "input_values"]
        with _after_front_end(model, front.outputs):
            to_onnx(_voice_module(model, graph_names), tuple(dummy[name] for name in graph_names), fp32, graph_names, ["features"])
    else:
        to_onnx(_voice_module(model, names), tuple(dummy[name] for name in names), fp32, names, ["features"])
    if variant == "fp32":
        os.replace(fp32, path)
        return
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32), load_external_data=False)
    nodes = [node for node in graph.graph.node if node.op_type in ("MatMul", "Gemm")]
    keep_fp32 = [node.name for node in nodes if not VOICE_INT8_NODES.search(node.name)]
    linears = _linears(model, [node for node in nodes if VOICE_INT8_NODES.search(node.name)])
    del graph
    with quiet():
        # per-channel weights: half the pooled-embedding error of per-tensor ones on real speech (1 - cosine 2.9e-4 -> 1.3e-4,
        # full-size random-init encoder, 30 RAVDESS clips), at the same speed
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_exclude=keep_fp32, per_channel=True)
    if rounding == "gptq" and linears:
        windows = (probes or default_probes()).speech_windows()
        modules = {name: module for name, (module, _) in linears.items()}
        convs = {}
        if variant == INT8_BF16:
            from .frontend import gptq_weights, rounded_layers

            extractor = model.encoder.feature_extractor
            convs = {index: extractor.conv_layers[index].conv for index in rounded_layers(extractor)}  # named by layer index
        moments = gptq.second_moments(model, {**modules, **convs}, [voice_arrays(wave, settings) for wave in windows])
        gptq.rewrite(path, {weight: gptq.round_weights(module.weight.detach(), moments[name])
                            for name, (module, weight) in tqdm(linears.items(), desc="voice int8 weights (GPTQ)", leave=False)})
        if convs:
            from safetensors.torch import save_file

            rounded = gptq_weights(extractor, {index: moments[index] for index in convs})
            save_file({f"conv_layers.{index}": weight for index, weight in rounded.items()}, str(front_end_weights(path)))


def _linears(model, nodes) -> dict:
    """{module name: (torch Linear, the graph's weight initializer)} for the exported MatMul ``nodes`` whose scope names a
    Linear of ``model`` (the TorchScript exporter names nodes after the module path; ``gptq.rewrite`` checks the shapes)."""
    import torch

    found = {}
    for node in nodes:
        name = ".".join(node.name.strip("/").split("/")[:-1])
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(module, torch.nn.Linear) and node.op_type == "MatMul":
            found[name] = (module, node.input[1])
    return found
