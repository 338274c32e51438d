"""Inference: the Predictor, its inputs and display, timelines of long videos, and the fast ONNX Runtime path."""
