"""emolib: multimodal emotion recognition from speech and faces, trained on CREMA-D.

Heavy submodules (torch, transformers, OpenCV) are imported only when used: ``from emolib import Predictor`` loads
the predictor on first use of the name (PEP 562), so ``import emolib`` stays light.
"""
from .cremad import EMOTIONS, EMOTION_NAMES

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "EMOTION_NAMES", "Predictor", "load_model", "__version__"]


def load_model(path, **kwargs):
    """Rebuild a voice, face or fusion model from a checkpoint directory (see emolib.models.checkpoint)."""
    from .models.checkpoint import load_model as _load_model

    return _load_model(path, **kwargs)


def __getattr__(name: str):
    if name == "Predictor":
        from .infer.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'emolib' has no attribute {name!r}")
