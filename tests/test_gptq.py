"""GPTQ rounding of the voice transformer's int8 weights (emolib.fast.gptq) and its place in the int8 voice export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from emolib.fast import gptq
from emolib.fast.voice_graph import VOICE_INT8_NODES, _linears, export_voice
from emolib.fast.probes import default_probes
from emolib.models.nets import VoiceConfig, VoiceModel
from emolib.transforms import AudioSettings


def nearest(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.abs(weight).max(1) / 127
    return np.clip(np.round(weight / scale[:, None]), -127, 127).astype(np.int8), scale


def correlated_inputs(rows: int = 3000, columns: int = 64, seed: int = 0) -> np.ndarray:
    """Frames whose features are strongly correlated (as a layer's inputs are), some of them large; one distribution
    (the same mixing), ``seed`` draws the frames."""
    fixed = np.random.default_rng(0)
    mixing = fixed.normal(size=(8, columns)) * fixed.uniform(0.2, 3.0, size=columns)
    generator = np.random.default_rng(seed + 1)
    return (generator.normal(size=(rows, 8)) @ mixing + 0.05 * generator.normal(size=(rows, columns))).astype(np.float32)


def output_error(inputs: np.ndarray, weight: np.ndarray, codes: np.ndarray, scale: np.ndarray) -> float:
    return float(np.linalg.norm(inputs @ (weight - codes * scale[:, None]).T))


def test_gptq_rounding_cuts_the_layer_output_error_on_the_grid_of_nearest_rounding():
    generator = np.random.default_rng(1)
    weight = (0.02 * generator.normal(size=(48, 64))).astype(np.float32)
    calibration, held_out = correlated_inputs(seed=2), correlated_inputs(seed=3)
    codes, scale = gptq.round_weights(torch.from_numpy(weight), torch.from_numpy(calibration.astype(np.float64).T @ calibration))
    near_codes, near_scale = nearest(weight)
    assert codes.dtype == np.int8 and codes.shape == weight.shape and np.abs(codes.astype(int)).max() <= 127
    np.testing.assert_allclose(scale, near_scale, rtol=1e-6)  # the same grid: only the rounding differs
    assert (codes != near_codes).mean() > 0.05
    # on frames it was not fitted on (same distribution), the layer's output error is a fraction of nearest rounding's
    assert output_error(held_out, weight, codes, scale) < 0.6 * output_error(held_out, weight, near_codes, near_scale)


def test_uncorrelated_inputs_leave_nearest_rounding():
    """With independent inputs no column's error can be made up by another: GPTQ is nearest rounding."""
    generator = np.random.default_rng(4)
    weight = generator.normal(size=(16, 32)).astype(np.float32)
    codes, _ = gptq.round_weights(torch.from_numpy(weight), torch.diag(torch.rand(32, dtype=torch.float64) + 0.5))
    np.testing.assert_array_equal(codes, nearest(weight)[0])


def matmul_graph(path, weight_t: np.ndarray) -> None:
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="/encoder/layers.0/fc/MatMul")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight_t.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight_t.shape[1]])],
                              [numpy_helper.from_array(weight_t, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_rewrite_puts_the_codes_into_the_quantized_graph(tmp_path):
    generator = np.random.default_rng(5)
    weight = (0.02 * generator.normal(size=(24, 40))).astype(np.float32)  # (out, in), as torch stores it
    matmul_graph(tmp_path / "fp32.onnx", weight.T.copy())
    quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    inputs = correlated_inputs(200, 40, seed=6)
    codes, scale = gptq.round_weights(torch.from_numpy(weight), torch.from_numpy(inputs.astype(np.float64).T @ inputs))
    gptq.rewrite(tmp_path / "int8.onnx", {"w": (codes, scale)})
    stored = {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(str(tmp_path / "int8.onnx")).graph.initializer}
    np.testing.assert_array_equal(stored["w_quantized"], codes.T)
    np.testing.assert_array_equal(stored["w_scale"], scale)
    session = onnxruntime.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": inputs})[0]
    want = inputs @ (codes * scale[:, None]).T  # the graph computes with the new weights (its activations int8 too)
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()
    with pytest.raises(ValueError, match="w: the quantized graph's weights"):
        gptq.rewrite(tmp_path / "int8.onnx", {"w": (codes[:, :10], scale)})


def test_the_int8_voice_export_carries_gptq_weights(tmp_path):
    """Every int8 transformer linear of the exported voice graph holds the GPTQ codes of its torch weights (calibrated on
    the probes' speech), not nearest rounding's."""
    torch.manual_seed(0)
    model = VoiceModel(VoiceConfig(backbone="tiny", freeze="none", num_labels=6)).eval()
    settings = AudioSettings()
    graphs = {}
    for rounding in ("gptq", "nearest"):
        export_voice(model, settings, tmp_path / f"{rounding}.onnx", "int8", tmp_path, default_probes(), rounding=rounding)
        graphs[rounding] = {tensor.name: numpy_helper.to_array(tensor) for tensor in onnx.load(str(tmp_path / f"{rounding}.onnx")).graph.initializer}
    fp32 = onnx.load(str(tmp_path / "voice-fp32.onnx"), load_external_data=False)
    nodes = [node for node in fp32.graph.node if node.op_type == "MatMul" and VOICE_INT8_NODES.search(node.name)]
    linears = _linears(model, nodes)
    assert len(linears) == len(nodes) == 6 * model.encoder.config.num_hidden_layers
    for name, (module, weight) in linears.items():
        near = graphs["nearest"][f"{weight}_quantized"]
        np.testing.assert_array_equal(near, nearest(module.weight.detach().numpy())[0].T)
        assert (graphs["gptq"][f"{weight}_quantized"] != near).any(), name


def test_fast_sessions_leave_the_residual_norm_unfused(tmp_path):
    """ONNX Runtime fuses residual add + LayerNorm into SkipLayerNormalization, 3x slower on x86 CPUs than its own two
    operators (emolib.fast.session.DISABLED_OPTIMIZERS); the fast path's sessions keep them apart."""
    from emolib.fast.session import new_session, session_options

    width = 32
    nodes = [helper.make_node("Add", ["x", "skip"], ["sum"]), helper.make_node("LayerNormalization", ["sum", "g", "b"], ["y"], axis=-1)]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 8, width]) for name in ("x", "skip")]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, width])],
                              [numpy_helper.from_array(np.ones(width, np.float32), "g"), numpy_helper.from_array(np.zeros(width, np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "norm.onnx"))

    def operators(session_factory, name) -> set:
        options = session_options(1)
        options.optimized_model_filepath = str(tmp_path / name)
        session_factory(options)
        return {node.op_type for node in onnx.load(str(tmp_path / name)).graph.node}

    plain = operators(lambda options: onnxruntime.InferenceSession(str(tmp_path / "norm.onnx"), options, providers=["CPUExecutionProvider"]), "plain.onnx")
    assert "SkipLayerNormalization" in plain  # what ONNX Runtime does by default
    assert "SkipLayerNormalization" not in operators(lambda options: new_session(tmp_path / "norm.onnx", options), "fast.onnx")


# the real recordings the probes held before the 24 (RECIPE_VERSION 5)
SIX_REAL_PROBES = ("03-01-01-01-01-02-03", "03-01-03-02-01-01-04", "03-01-04-01-02-01-03", "03-01-05-02-01-01-03", "03-01-06-01-02-02-04",
                   "03-01-07-01-01-01-04")


def test_the_packaged_real_recordings_calibrate_gptq_for_other_people():
    """GPTQ calibrated on all the packaged real recordings (24 of RAVDESS actors 3 and 4) rounds a full-width wav2vec2
    layer's weights closer to what the layers compute on other people's speech (the fixture's actors 1 and 20) than the
    six the probes held before: the layers' output error on those recordings, summed over the transformer's linears."""
    from dataclasses import replace
    from pathlib import Path

    from transformers import Wav2Vec2Config

    from emolib.audio import load_audio
    from emolib.fast.probes import real_speech_names
    from emolib.fast.voice_graph import voice_arrays

    torch.manual_seed(0)
    model = VoiceModel(VoiceConfig(backbone="w", encoder_config=Wav2Vec2Config(num_hidden_layers=1).to_dict(), freeze="none",
                                   num_labels=6)).eval()
    settings = AudioSettings()
    probes = default_probes()
    assert len(probes.real_speech) == 24
    linears = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and ".layers." in name}
    assert len(linears) == 6

    def moments(waves) -> dict:
        return gptq.second_moments(model, linears, [voice_arrays(wave, settings) for wave in waves])

    others = sorted((Path(__file__).parent / "data" / "real" / "ravdess").glob("Actor_*/*.flac"))[::2]
    assert {path.parent.name for path in others} == {"Actor_01", "Actor_20"}
    test_moments = moments([load_audio(path) for path in others])

    def error_on_others(calibration: dict) -> float:
        total = 0.0
        for name, module in linears.items():
            weight = module.weight.detach().double()
            codes, scale = gptq.round_weights(module.weight.detach(), calibration[name])
            delta = weight - torch.as_tensor(codes, dtype=torch.float64) * torch.as_tensor(scale, dtype=torch.float64)[:, None]
            # ||X delta^T||^2 = trace(delta X^T X delta^T), relative to the layer's own output ||X W^T||^2
            total += float(torch.trace(delta @ test_moments[name] @ delta.T) / torch.trace(weight @ test_moments[name] @ weight.T))
        return total

    names = real_speech_names()
    six = [names.index(f"{name}.flac") for name in SIX_REAL_PROBES]
    before = error_on_others(moments(replace(probes, real_speech=tuple(probes.real_speech[index] for index in six)).speech_windows()))
    now = error_on_others(moments(probes.speech_windows()))
    assert now < 0.85 * before, (now, before)


def test_gptq_rounds_columns_by_input_energy_whatever_their_order():
    """Act order: the columns are rounded from the largest input energy down, so listing the inputs in another order
    (the weights' columns and the moments' rows and columns alike) gives the same rounding of each weight."""
    generator = np.random.default_rng(8)
    weight = (0.02 * generator.normal(size=(24, 40))).astype(np.float32)
    inputs = correlated_inputs(columns=40, seed=9)
    moments = inputs.astype(np.float64).T @ inputs
    order = generator.permutation(40)
    codes, _ = gptq.round_weights(torch.from_numpy(weight), torch.from_numpy(moments))
    shuffled, _ = gptq.round_weights(torch.from_numpy(weight[:, order]), torch.from_numpy(moments[order][:, order]))
    np.testing.assert_array_equal(codes[:, order], shuffled)


def test_gptq_onto_bf16_cuts_the_layer_output_error_of_nearest_bf16():
    """The bf16 front end's weights: GPTQ on the grid of bf16 values against rounding each weight to its nearest one."""
    generator = np.random.default_rng(10)
    weight = (0.02 * generator.normal(size=(48, 64))).astype(np.float32)
    calibration, held_out = correlated_inputs(seed=11), correlated_inputs(seed=12)
    rounded = gptq.round_bf16(torch.from_numpy(weight), torch.from_numpy(calibration.astype(np.float64).T @ calibration))
    nearest_bf16 = torch.from_numpy(weight).to(torch.bfloat16)
    assert rounded.dtype == torch.bfloat16 and rounded.shape == weight.shape
    assert (rounded != nearest_bf16).float().mean() > 0.05

    def error(values: torch.Tensor) -> float:
        return float(np.linalg.norm(held_out @ (weight - values.float().numpy()).T))

    assert error(rounded) < 0.6 * error(nearest_bf16), (error(rounded), error(nearest_bf16))
