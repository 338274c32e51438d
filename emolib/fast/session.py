"""ONNX Runtime sessions of the fast path: availability, threads, and one session per encoder.

Threads: each session uses ``threads`` intra-op threads (default: the physical cores this
process may use; ``$EMOLIB_THREADS`` overrides) and does not spin-wait: spinning gains 5-15% on
an idle machine but collapses when other processes share the cores (with a busy neighbour,
eager ResNet-50 took 2.6 s with PyTorch's 2 spinning OpenMP threads and 0.13 s with 1 thread).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ModelError

# what transforms.voice_inputs gives, in the exported graph's order (speech_mask only for speech-only models)
VOICE_INPUTS = ("input_values", "attention_mask", "speech_mask")
# a graph after a bf16 front end (``frontend.VoiceFrontEnd``) takes its conv features in place of the waveform, and the
# positional convolution's output when the front end computes that too
CONV_FEATURES = "conv_features"
POSITIONS = "positions"
FRONT_END_OUTPUTS = (CONV_FEATURES, POSITIONS)
# ONNX Runtime's fused residual-add + LayerNorm kernel (SkipLayerNormalization) took 0.44 ms per (199, 768) call on 2 threads
# of a Xeon with AVX-512, its own Add + LayerNormalization 0.13 ms: left unfused, the full-size int8 voice graph ran in 55.6
# instead of 64.1 ms (wav2vec2-base's 25 norms; one run, alternated; ``emolib bench``'s voice profile shows the operators)
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def available() -> tuple[bool, str]:
    """(True, "") when onnxruntime and onnx import, else (False, why)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return False, f"fast path unavailable ({error.name or error} not installed; pip install onnxruntime onnx)"
    return True, ""


def physical_cores() -> int:
    """Physical cores this process may use ($EMOLIB_THREADS overrides), at least 1."""
    override = os.environ.get("EMOLIB_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology / "physical_package_id").read_text().strip() + ":" + (topology / "core_id").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def session_options(threads: int | None = None):
    """ONNX Runtime options: ``threads`` intra-op threads, no spin-waiting, all graph optimizations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def new_session(path, options):
    """An ONNX Runtime CPU session of the graph at ``path`` with ``options``, the fusions in DISABLED_OPTIMIZERS off."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS))


class FastModel:
    """One cached ONNX Runtime session for a voice or face model, with its build record.

    ``front``: for a graph that takes ``conv_features`` (and ``positions``), the ``frontend.VoiceFrontEnd`` that makes them
    from the window's arrays, run in PyTorch before the session.
    """

    def __init__(self, kind: str, path: Path, record: dict, threads: int | None = None, front=None):
        self.kind, self.path, self.record = kind, Path(path), record
        self.variant = record.get("variant", "fp32")
        self.session = new_session(path, session_options(threads))
        graph_inputs = [node.name for node in self.session.get_inputs()]
        if tuple(name for name in graph_inputs if name in FRONT_END_OUTPUTS) != (tuple(front.outputs) if front is not None else ()):
            raise ModelError(f"fast voice graph {self.path} and its PyTorch front end do not match")
        self.front = front
        # what a feed must give (read once, not per prediction)
        self.inputs = [name for name in graph_inputs if name not in FRONT_END_OUTPUTS] + (["input_values"] if front is not None else [])

    def __repr__(self) -> str:
        return f"FastModel({self.kind}, {self.variant}, {self.path})"

    def voice_features(self, inputs) -> np.ndarray:
        """Pooled features (B, D) of ``inputs``: a mapping with ``transforms.voice_inputs``' arrays, batched (B, N); other keys
        (a dataset item's label) are ignored. The voice inputs given must be the graph's: a speech mask for a graph without one
        (or none for one with it) is refused rather than dropped."""
        return self.session.run(None, self.graph_feed(inputs))[0]

    def graph_feed(self, inputs) -> dict:
        """The session's feed for voice ``inputs``: the arrays it takes, with the conv front end run first when it has one."""
        given = {name: np.asarray(inputs[name]) for name in VOICE_INPUTS if name in inputs}
        if sorted(given) != sorted(self.inputs):
            raise ModelError(f"fast voice graph {self.path} takes {', '.join(self.inputs)}; given {', '.join(given)}")
        if self.front is not None:
            given.update(self.front(given.pop("input_values"), given.get("attention_mask")))
        return given

    def face_embeddings(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]
