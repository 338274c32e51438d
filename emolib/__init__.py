"""emolib: multimodal emotion recognition from speech and faces, trained on CREMA-D.

Heavy submodules (torch, transformers, OpenCV) are imported only when used.
"""
from .cremad import EMOTIONS, EMOTION_NAMES

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "EMOTION_NAMES", "load_model", "__version__"]


def load_model(path, **kwargs):
    """Rebuild a voice, face or fusion model from a checkpoint directory (see emolib.models.checkpoint)."""
    from .models.checkpoint import load_model as _load_model

    return _load_model(path, **kwargs)
