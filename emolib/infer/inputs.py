"""What the Predictor accepts: audio arrays, images or frames, and files, checked and converted.

Audio becomes the 16 kHz mono waveform the voice model may use (or the reason it may not);
images become RGB frames; files are read with the same readers training uses.
"""
from __future__ import annotations

import numpy as np

from ..audio import MIN_SECONDS, SAMPLE_RATE, WINDOW_SECONDS, fixed_window, is_silent, to_model_rate
from ..errors import AudioError, VideoError
from ..media import input_audio, stream_kinds
from ..video import as_rgb, read_frames, read_image_scaled


def prepare_audio(audio, sample_rate, settings=None, name: str = "audio array"):
    """(16 kHz wave or None, notes, seconds, rms): the waveform the voice model may use, or why not.

    ``settings`` (AudioSettings) gives the window whose RMS decides whether the audio is silent.
    """
    if audio is None:
        return None, ["no audio"], None, None
    samples = np.asarray(audio)
    if samples.size == 0:
        return None, [f"{name}: empty recording"], 0.0, None
    if sample_rate is None:
        raise AudioError(f"{name}: sample_rate is required with an audio array (e.g. 16000)")
    wave = to_model_rate(samples, sample_rate, name=name)
    seconds = len(wave) / SAMPLE_RATE
    window, valid = fixed_window(wave, settings.window_seconds if settings else WINDOW_SECONDS, SAMPLE_RATE)
    rms = float(np.sqrt(np.mean(np.square(window[:valid], dtype=np.float64)))) if valid else 0.0
    if seconds < MIN_SECONDS:
        return None, [f"{name}: {seconds:.2f} s of audio, shorter than the minimum of {MIN_SECONDS:.2f} s"], seconds, rms
    if is_silent(window[:valid]):
        return None, [f"{name}: audio is silent (RMS {rms:.1e}; is the microphone muted?)"], seconds, rms
    return wave, [], seconds, rms


def speech_rule(wave, min_speech: float, name: str = "audio array", heard: bool = True, seconds: float | None = None,
                threshold: float | None = None):
    """(wave or None, notes, seconds of speech or None): ``speech.has_speech`` applied to a wave ``prepare_audio`` kept; with
    ``min_speech`` 0 the rule is off and nothing is measured. ``seconds``: the window's speech, already measured over its whole
    file or stream (``speech.seconds_in``); else measured on ``wave`` with Silero's segment logic at ``threshold``. Audio
    ``prepare_audio`` found silent or too short (``heard`` but no wave) has 0 s of speech."""
    if min_speech <= 0:
        return wave, [], None
    if wave is None:
        return None, [], 0.0 if heard else None
    from ..speech import SEGMENT_THRESHOLD, has_speech, speech_seconds

    seconds = speech_seconds(wave, threshold or SEGMENT_THRESHOLD) if seconds is None else float(seconds)
    if has_speech(seconds, min_speech):
        return wave, [], seconds
    return None, [f"{name}: no speech ({seconds:.2f} s of speech, fewer than {min_speech:g} s)"], seconds


def prepare_frames(image, name: str = "image"):
    """(list of RGB frames or None): a single image (H, W[, C]), a list of them, or an (F, H, W, C) array."""
    if image is None:
        return None
    if isinstance(image, np.ndarray) and image.ndim == 4:
        frames = list(image)
    elif isinstance(image, (list, tuple)):
        frames = list(image)
    else:
        frames = [image]
    if not frames:
        return None
    try:
        return [as_rgb(frame) for frame in frames]
    except VideoError as error:
        raise VideoError(f"{name}: {str(error).split(': ', 1)[-1]}") from None


def load_inputs(predictor, audio=None, image=None, video=None):
    """(display frame, frames, wave, sample_rate, notes, image scale) read from files for ``predictor.predict``.

    A video gives ``settings.frames`` frames (``video.read_frames``, as the training crop cache);
    the sound is ``media.input_audio(audio, video)``, read only when the predictor has a voice model.
    The image scale maps the frames' pixels to the file's own (a very large image is read as a smaller working copy).
    """
    if image is not None and video is not None:
        raise VideoError(f"{image}: give an image or a video, not both")
    notes, frames, scale = [], None, None
    if image is not None and predictor.face is not None:
        picture, scale = read_image_scaled(image)
        frames = [picture]
    elif image is not None:
        notes.append(f"no face model in {predictor.models_dir}: {image} ignored")
    if video is not None and predictor.face is not None:
        if stream_kinds(video) != {"audio"}:  # a video, or unreadable: read_frames says why
            frames = read_frames(video, predictor.face_settings.frames)
        else:
            notes.append(f"{video}: no video stream (audio only)")
    wave = None
    if audio is not None or (video is not None and predictor.voice is not None):
        wave, audio_notes = input_audio(audio, video)
        notes += audio_notes
    display = frames[len(frames) // 2] if frames else None
    return display, frames, wave, SAMPLE_RATE, notes, scale
