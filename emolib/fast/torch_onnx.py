"""Writing ONNX files from PyTorch modules for the fast path: the TorchScript exporter in eval mode and without its chatter, and
the calibration readers ONNX Runtime's static quantizer takes."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from .cache import OPSET


@contextlib.contextmanager
def quiet():
    """Silence the exporters' and quantizer's warnings and log lines."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime"), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def to_onnx(module, args: tuple, path: Path, input_names, output_names, dynamic_axes=None) -> None:
    """torch.onnx.export (TorchScript exporter, opset 17) with the model in eval mode throughout.

    The exporter puts the top module back in its previous mode afterwards, and ``train(True)``
    on a wrapper would also switch the wrapped model to training (dropout on); the wrapper is
    created in eval mode so nothing changes.
    """
    import torch

    modes = [(submodule, submodule.training) for submodule in module.modules()]
    with quiet(), torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    for submodule, mode in modes:
        submodule.training = mode


def calibration_reader(feeds: list[dict]):
    """An onnxruntime CalibrationDataReader over a list of input feeds."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    return Reader()
