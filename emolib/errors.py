"""Errors emolib raises for bad input: each message is one line naming the file and the problem."""


class EmolibError(Exception):
    """Base of every expected failure; the CLI prints it as one line and exits with code 2."""


class DataError(EmolibError, ValueError):
    """A dataset folder, manifest or metadata file is unusable."""


class AudioError(EmolibError, ValueError):
    """An audio file or array is unusable."""


class VideoError(EmolibError, ValueError):
    """A video file or image is unusable."""


class ModelError(EmolibError, ValueError):
    """Weights or a checkpoint cannot be loaded."""


class CaptureError(EmolibError, RuntimeError):
    """A camera or microphone is missing or refused."""
