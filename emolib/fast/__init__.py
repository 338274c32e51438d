"""The fast CPU path: voice and face encoders exported to ONNX Runtime (int8 where it holds up), checked against eager
fp32 when built, cached next to each checkpoint; used by inference, evaluation and the frozen-feature path of CPU training."""
