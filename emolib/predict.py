"""Predict an emotion from arrays or files with the trained voice, face and fusion models.

``Predictor.from_dir("models")`` loads whichever of ``voice/``, ``face/`` and ``fusion/`` exist,
and ``predict(audio=..., sample_rate=..., image=...)`` runs exactly the training-time
preprocessing of each checkpoint:

- voice: ``audio.to_model_rate`` (16 kHz mono float32) -> ``transforms.voice_inputs`` with the
  checkpoint's AudioSettings (the same 4 s window, centre-cropped, and normalisation);
- face: each frame -> ``faces.crop_clip_faces`` (Haar detection, a 224 px square crop with the
  checkpoint's margin; frames without a face reuse the nearest frame's box, as the training
  crop cache does) -> ``transforms.face_pixels``; the frames' embeddings are averaged, as in
  training. For a video file, the frames are ``video.read_frames(path, settings.frames)``, the
  frames the face-crop cache used, so ``emolib predict --video`` reproduces ``emolib evaluate``.

Fallbacks (each one is reported in ``Prediction.notes``):

- no face found in any frame: the face model is not used (the centre-crop fallback that
  training uses for face-less clips is not fed to the face model for live prediction: a wall or
  a ceiling would get a confident emotion), and the voice model decides;
- no audio, an empty or too short recording, or silence (``audio.is_silent`` on the window the
  model would see): the face model decides;
- both modalities usable and a fusion model loaded: the fusion model decides (presence flags
  [1, 1]); without a fusion model, the mean of the voice and face probabilities;
- one modality usable: its own model decides (``single="model"``, the default), or the fusion
  model with that modality flagged present and the other zeroed and flagged missing
  (``single="fusion"``; it was trained with modality dropout);
- neither usable: ``PredictionError`` (an EmolibError) saying why.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .audio import MIN_SECONDS, SAMPLE_RATE, fixed_window, is_silent, load_audio, to_model_rate
from .cremad import EMOTION_NAMES, EMOTIONS
from .errors import AudioError, EmolibError, ModelError, VideoError
from .media import read_audio_track
from .predict_display import figure_png, format_prediction, plot_prediction  # noqa: F401  re-exported: notebooks import them from here

MODEL_KINDS = ("voice", "face", "fusion")
SINGLE_CHOICES = ("model", "fusion")


class PredictionError(EmolibError, ValueError):
    """Neither modality is usable (no audio or silence, and no face), so there is nothing to predict from."""


@dataclass
class Prediction:
    """The result of one prediction.

    ``probabilities`` are the final ones (``source``: "fusion", "average", "voice" or "face");
    ``voice``, ``face`` and ``fusion`` hold each model's probabilities when it ran (None otherwise);
    ``modalities`` are the inputs that were used; ``face_box`` (x, y, w, h) is in the pixels of
    frame ``face_frame`` of the input; ``notes`` explain every fallback.
    """

    emotion: str
    probabilities: dict
    source: str
    modalities: list
    voice: dict | None = None
    face: dict | None = None
    fusion: dict | None = None
    present: list | None = None
    face_found: bool | None = None
    face_box: tuple | None = None
    face_frame: int | None = None
    faces: int = 0
    frames: int = 0
    frames_with_face: int = 0
    audio_seconds: float | None = None
    audio_rms: float | None = None
    notes: list = field(default_factory=list)

    @property
    def emotion_name(self) -> str:
        return EMOTION_NAMES[self.emotion]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.emotion])

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (plain floats, ints, lists)."""
        result = asdict(self)
        result["emotion_name"] = self.emotion_name
        result["face_box"] = list(self.face_box) if self.face_box is not None else None
        return result

    def summary(self) -> str:
        """One line: emotion, confidence, and what it came from."""
        used = " + ".join(self.modalities)
        how = {"fusion": f"fusion model on {used}", "average": "mean of voice and face models"}.get(self.source, f"{self.source} model only")
        return f"{self.emotion} ({self.emotion_name}) {self.confidence:.0%} - {how}"


def probability_dict(probabilities) -> dict:
    return {emotion: float(value) for emotion, value in zip(EMOTIONS, np.asarray(probabilities, dtype=np.float64))}


class Predictor:
    """Voice, face and fusion models (any subset) with their training-time preprocessing.

    With ``fast=True`` (the default of ``from_dir``) the voice and face encoders run through the
    cached ONNX Runtime fast path on CPU (``emolib.fastpath``; ``self.fast``), else eager fp32.
    """

    def __init__(self, voice=None, face=None, fusion=None, device: str = "cpu", single: str = "model", models_dir=None,
                 fast: bool = False, quantize: str = "auto", threads: int | None = None):
        import torch

        if single not in SINGLE_CHOICES:
            raise ValueError(f"single must be one of {SINGLE_CHOICES}, got {single!r}")
        if voice is None and face is None:
            raise ModelError(f"{models_dir or 'Predictor'}: no voice or face model to predict with")
        if fusion is not None and (voice is None or face is None):
            raise ModelError(f"{models_dir or 'Predictor'}: the fusion model needs both the voice and the face model")
        if fusion is not None:
            expected = (fusion.config.voice_dim, fusion.config.face_dim)
            if expected != (voice.feature_dim, face.feature_dim):
                raise ModelError(f"{models_dir or 'Predictor'}: fusion expects voice/face features of sizes {expected}, "
                                 f"the models give {(voice.feature_dim, face.feature_dim)} (models from different runs?)")
        self.device = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.voice, self.face, self.fusion = (m.to(self.device).eval() if m is not None else None for m in (voice, face, fusion))
        self.single = single
        self.models_dir = models_dir
        self.audio_settings = self.face_settings = None
        if voice is not None:
            from .transforms import AudioSettings

            self.audio_settings = AudioSettings(**voice.checkpoint["preprocessing"]["audio"])
        if face is not None:
            from .transforms import FaceSettings

            self.face_settings = FaceSettings(**face.checkpoint["preprocessing"]["face"])
        self.fast = None
        if fast and self.device.type == "cpu":
            self.fast = self._load_fast(quantize, threads)

    def _load_fast(self, quantize: str, threads: int | None):
        """The ONNX Runtime fast path (emolib.fastpath), or None (with a warning) when it cannot be used."""
        import warnings

        from .fastpath import FastPath, load_encoder_weights

        try:
            fast = FastPath(self.voice, self.face, self.audio_settings, self.face_settings, quantize=quantize, threads=threads, release=True)
        except Exception as error:  # noqa: BLE001 - the fast path is an optimisation: never fail a prediction over it
            for model in (self.voice, self.face):
                if model is not None:
                    load_encoder_weights(model)
            warnings.warn(f"fast CPU path unavailable ({type(error).__name__}: {error}); using eager PyTorch", stacklevel=3)
            return None
        return fast if (fast.voice or fast.face) else None

    @classmethod
    def from_dir(cls, models_dir, device: str = "cpu", single: str = "model", fast: bool = True, quantize: str = "auto",
                 threads: int | None = None) -> "Predictor":
        """Load ``voice/``, ``face/`` and ``fusion/`` (any subset) from a models folder.

        A single checkpoint folder (with its own config.json) works too. The fusion model's
        encoders are ``models_dir/voice`` and ``models_dir/face``, or else the folders recorded
        in its config (``voice_checkpoint``, ``face_checkpoint``, relative to it).

        ``fast`` (default) runs the voice and face encoders through the cached ONNX Runtime fast
        path on CPU (``emolib.fastpath``: int8 transformer / int8 ResNet for full-size encoders,
        fp32 for small ones; built on first use next to each checkpoint); ``fast=False`` is
        plain eager PyTorch fp32. ``quantize`` ("auto", "int8", "fp32") and ``threads`` tune it.
        """
        import torch

        from .checkpoint import CONFIG_FILE, read_checkpoint_config
        from .checkpoint import load_model as load_checkpoint

        on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())

        def load_model(path):
            if fast and on_cpu:  # reads only what the cached fast files do not replace
                from .fastpath import load_checkpoint as load_for_fast_path

                return load_for_fast_path(path, quantize)
            model = load_checkpoint(path)
            model.checkpoint_dir = Path(path)
            return model

        root = Path(models_dir)
        if not root.is_dir():
            raise ModelError(f"{root}: no such models folder (train models first, e.g. `emolib demo`, or pass --models)")
        models = {}
        if (root / CONFIG_FILE).exists():
            _, config = read_checkpoint_config(root)
            models[config["kind"]] = load_model(root)
            if config["kind"] == "fusion":
                root = root.parent
        for kind in MODEL_KINDS:
            if kind not in models and (root / kind / CONFIG_FILE).exists():
                models[kind] = load_model(root / kind)
        if not models:
            raise ModelError(f"{root}: no trained models (expected voice/, face/ or fusion/ checkpoint folders with {CONFIG_FILE})")
        fusion = models.get("fusion")
        if fusion is not None:
            fusion_dir = root / "fusion"
            for kind in ("voice", "face"):
                relative = fusion.checkpoint.get(f"{kind}_checkpoint")
                if kind not in models and relative and (fusion_dir / relative / CONFIG_FILE).exists():
                    models[kind] = load_model(fusion_dir / relative)
            missing = [kind for kind in ("voice", "face") if kind not in models]
            if missing:
                raise ModelError(f"{root}: the fusion model needs the {' and '.join(missing)} checkpoint it was trained with ({'/, '.join(missing)}/ missing)")
        return cls(models.get("voice"), models.get("face"), fusion, device=device, single=single, models_dir=str(models_dir),
                   fast=fast, quantize=quantize, threads=threads)

    @property
    def kinds(self) -> list[str]:
        """The loaded models, e.g. ["voice", "face", "fusion"]."""
        return [kind for kind in MODEL_KINDS if getattr(self, kind) is not None]

    def __repr__(self) -> str:
        speed = f", {self.fast!r}" if self.fast is not None else ", eager"
        return f"Predictor({', '.join(self.kinds)}; from {self.models_dir or 'memory'}, device {self.device}{speed})"

    # ---------------------------------------------------------------- inputs

    def prepare_audio(self, audio, sample_rate, name: str = "audio array"):
        """(16 kHz wave or None, notes, seconds, rms): the waveform the voice model may use, or why not."""
        if audio is None:
            return None, ["no audio"], None, None
        samples = np.asarray(audio)
        if samples.size == 0:
            return None, [f"{name}: empty recording"], 0.0, None
        if sample_rate is None:
            raise AudioError(f"{name}: sample_rate is required with an audio array (e.g. 16000)")
        wave = to_model_rate(samples, sample_rate, name=name)
        seconds = len(wave) / SAMPLE_RATE
        window_seconds = self.audio_settings.window_seconds if self.audio_settings else 4.0
        window, valid = fixed_window(wave, window_seconds, SAMPLE_RATE)
        rms = float(np.sqrt(np.mean(np.square(window[:valid], dtype=np.float64)))) if valid else 0.0
        if seconds < MIN_SECONDS:
            return None, [f"{name}: {seconds:.2f} s of audio, shorter than the minimum of {MIN_SECONDS:.2f} s"], seconds, rms
        if is_silent(window[:valid]):
            return None, [f"{name}: audio is silent (RMS {rms:.1e}; is the microphone muted?)"], seconds, rms
        return wave, [], seconds, rms

    def prepare_frames(self, image, name: str = "image"):
        """(list of RGB frames or None): a single image (H, W[, C]), a list of them, or an (F, H, W, C) array."""
        from .video import as_rgb

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

    # ---------------------------------------------------------------- models

    def voice_features(self, wave: np.ndarray):
        """Pooled voice embedding (1, D) of a 16 kHz wave, through transforms.voice_inputs."""
        import torch

        from .transforms import voice_inputs

        inputs = voice_inputs(wave, self.audio_settings)
        if self.fast is not None and self.fast.voice is not None:
            return torch.from_numpy(self.fast.voice.voice_features(inputs["input_values"].numpy()[None], inputs["attention_mask"].numpy()[None]))
        with torch.inference_mode():
            return self.voice.features(inputs["input_values"][None].to(self.device), inputs["attention_mask"][None].to(self.device)).float()

    def face_crops(self, frames: list[np.ndarray], detections=None):
        """(crops (F, 224, 224, 3), found (F,), boxes (F, 4)) as the training crop cache makes them."""
        from .faces import crop_clip_faces
        from .transforms import FACE_IMAGE_SIZE

        return crop_clip_faces(frames, FACE_IMAGE_SIZE, self.face_settings.margin, detections)

    def face_features(self, crops: np.ndarray):
        """Pooled face embedding (1, D) of a clip's crops (mean over frames), through transforms.face_pixels."""
        import torch

        from .transforms import face_pixels

        pixels = face_pixels(crops, self.face_settings)
        if self.fast is not None and self.fast.face is not None:
            return torch.from_numpy(self.fast.face.face_embeddings(pixels.numpy()).mean(axis=0, keepdims=True))
        pixels = pixels[None].to(self.device)
        with torch.inference_mode():
            return self.face.features(pixels).float()

    def _classify(self, model, features) -> dict:
        import torch

        with torch.inference_mode():
            return probability_dict(torch.softmax(model.classify(features), dim=1)[0].cpu().numpy())

    def _fuse(self, voice_features, face_features, present: list[int]) -> dict:
        import torch

        voice = voice_features if voice_features is not None else torch.zeros(1, self.fusion.config.voice_dim, device=self.device)
        face = face_features if face_features is not None else torch.zeros(1, self.fusion.config.face_dim, device=self.device)
        flags = torch.tensor([present], dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            return probability_dict(torch.softmax(self.fusion(voice, face, flags), dim=1)[0].cpu().numpy())

    # ---------------------------------------------------------------- predict

    def predict(self, audio=None, sample_rate=None, image=None, audio_name: str = "audio array", image_name: str = "image") -> Prediction:
        """Predict from an audio array (any rate, mono or (frames, channels)) and/or an RGB image or frames.

        ``image`` is an RGB (H, W, 3) array, a list of frames, or an (F, H, W, 3) array; the
        frames' embeddings are averaged like a training clip's. Raises PredictionError when
        neither modality is usable.
        """
        notes: list[str] = []
        wave, audio_notes, seconds, rms = self.prepare_audio(audio, sample_rate, audio_name)
        frames = self.prepare_frames(image, image_name)
        if wave is not None and self.voice is None:
            notes.append(f"no voice model in {self.models_dir}: audio ignored")
            wave = None
        result = {"audio_seconds": seconds, "audio_rms": rms, "frames": len(frames) if frames else 0}
        voice_features = face_features = None
        if wave is not None:
            voice_features = self.voice_features(wave)
            result["voice"] = self._classify(self.voice, voice_features)
        if frames is not None and self.face is None:
            notes.append(f"no face model in {self.models_dir}: image ignored")
        elif frames is not None:
            from .faces import detect_faces

            detections = [detect_faces(frame) for frame in frames]
            crops, found, boxes = self.face_crops(frames, detections)
            result["face_found"] = bool(found.any())
            result["frames_with_face"] = int(found.sum())
            if found.any():
                index = int(np.flatnonzero(found)[0])
                result.update(face_box=tuple(int(v) for v in boxes[index]), face_frame=index, faces=len(detections[index]))
                face_features = self.face_features(crops)
                result["face"] = self._classify(self.face, face_features)
        have_voice, have_face = voice_features is not None, face_features is not None
        if not have_voice and not have_face:
            raise PredictionError(self._nothing_message(audio_notes, frames, result, image_name))
        if not have_face and self.face is not None:
            why = "no image" if frames is None else f"no face found in {image_name}" + (f" ({len(frames)} frames)" if len(frames) > 1 else "")
            notes.append(f"{why}: voice only")
        if not have_voice and self.voice is not None:
            notes.append(f"{'; '.join(audio_notes)}: face only")
        if have_voice and have_face:
            if self.fusion is not None:
                result["present"] = [1, 1]
                result["fusion"] = self._fuse(voice_features, face_features, [1, 1])
                final, source = result["fusion"], "fusion"
            else:
                final = probability_dict((np.array(list(result["voice"].values())) + np.array(list(result["face"].values()))) / 2)
                source = "average"
                notes.append("no fusion model: mean of the voice and face probabilities")
        elif self.single == "fusion" and self.fusion is not None:
            result["present"] = [int(have_voice), int(have_face)]
            result["fusion"] = self._fuse(voice_features, face_features, result["present"])
            final, source = result["fusion"], "fusion"
            notes.append(f"fusion model with the {'face' if have_voice else 'voice'} flagged missing (present {result['present']})")
        else:
            source = "voice" if have_voice else "face"
            final = result[source]
        modalities = [kind for kind, used in (("voice", have_voice), ("face", have_face)) if used]
        emotion = max(final, key=final.get)
        return Prediction(emotion=emotion, probabilities=final, source=source, modalities=modalities, notes=notes, **result)

    def _nothing_message(self, audio_notes, frames, result, image_name) -> str:
        reasons = [note for note in audio_notes if note != "no audio"] or (["no audio"] if self.voice is not None else [])
        if frames is None:
            reasons.append("no image")
        elif self.face is not None and not result.get("face_found"):
            reasons.append(f"no face found in {image_name}")
        if self.voice is None:
            reasons.append("no voice model")
        if self.face is None:
            reasons.append("no face model")
        return "nothing to predict from: " + "; ".join(reasons)

    def predict_files(self, audio=None, image=None, video=None) -> Prediction:
        """Predict from files: a WAV/FLAC ``audio``, an ``image``, and/or a ``video``.

        A video gives the face frames (``read_frames(video, settings.frames)``, as in training)
        and, unless ``audio`` is given, its audio track (decoded with PyAV, converted with
        ``audio.to_model_rate``).
        """
        _, frames, wave, sample_rate, notes = self.load_inputs(audio, image, video)
        audio_name = str(audio or video or "audio")
        image_name = str(image or video or "image")
        prediction = self.predict(wave, sample_rate, frames, audio_name=audio_name, image_name=image_name)
        prediction.notes = notes + prediction.notes
        return prediction

    def load_inputs(self, audio=None, image=None, video=None):
        """(display frame, frames, wave, sample_rate, notes) read from files for ``predict``."""
        from .video import read_frames, read_image

        if image is not None and video is not None:
            raise VideoError(f"{image}: give an image or a video, not both")
        notes, frames, wave, sample_rate = [], None, None, None
        if image is not None and self.face is not None:
            frames = [read_image(image)]
        elif image is not None:
            notes.append(f"no face model in {self.models_dir}: {image} ignored")
        if video is not None and self.face is not None:
            frames = read_frames(video, self.face_settings.frames)
        if audio is not None:
            wave, sample_rate = load_audio(audio), SAMPLE_RATE
        elif video is not None and self.voice is not None:
            track = read_audio_track(video)
            if track is None:
                notes.append(f"{video}: no audio track")
            else:
                wave, sample_rate = track
        display = frames[len(frames) // 2] if frames else None
        return display, frames, wave, sample_rate, notes
