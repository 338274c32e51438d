"""Predict an emotion from arrays or files with the trained voice, face and fusion models.

``Predictor.from_dir("models")`` loads whichever of ``voice/``, ``face/`` and ``fusion/`` exist,
and ``predict(audio=..., sample_rate=..., image=...)`` runs exactly the training-time
preprocessing of each checkpoint:

- voice: ``audio.to_model_rate`` (16 kHz mono float32) -> ``transforms.voice_inputs`` with the
  checkpoint's AudioSettings (the same 4 s window, centre-cropped, and normalisation);
- face: each frame -> ``transforms.crop_clip`` (the checkpoint's detector, crop size, margin and
  alignment; the main face track; frames without it reuse its nearest frame's detection, as the
  training crop cache does; every other face gets the face model's own prediction, ``infer.people``) -> ``transforms.face_pixels``; the frames' embeddings are averaged, as in
  training. For a video file, the frames are ``video.read_frames(path, settings.frames)``, the
  frames the face-crop cache used, so ``emolib predict --video`` reproduces ``emolib evaluate``.

Fallbacks (each one is reported in ``Prediction.notes``):

- no face found in any frame: the face model is not used (the centre-crop fallback that
  training uses for face-less clips is not fed to the face model for live prediction: a wall or
  a ceiling would get a confident emotion), and the voice model decides;
- no audio, an empty or too short recording, silence (``audio.is_silent`` on the window the
  model would see), or too little speech (``speech.has_speech``, Silero VAD; by default the rule the voice checkpoint stores,
  ``min_speech`` overrides it, 0 turns it off): the face model decides;
- both modalities usable and a fusion model loaded: the fusion model decides (presence flags
  [1, 1]); without one, the late fusion a models folder describes in ``starter.json`` (a weighted sum of the
  two models' log-probabilities: the starter models'), else the mean of the voice and face probabilities;
- one modality usable: its own model decides (``single="model"``, the default), or the fusion
  model with that modality flagged present and the other zeroed and flagged missing
  (``single="fusion"``; it was trained with modality dropout);
- neither usable: ``PredictionError`` (an EmolibError) saying why.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..egemaps import speaker_features
from ..errors import ModelError
from ..faces import clip_has_face, crop_track
from ..eval.calibration import UNCERTAIN, abstained
from ..speech import stored_rule
from ..transforms import AudioSettings, FaceSettings
from .batch import is_batch, predictions_table
from .folder import calibration_note, common_labels, folder_settings
from .inputs import load_inputs, prepare_audio, prepare_frames, speech_rule
from .people import find_faces, main_face, other_faces, track_features
from .prediction import Prediction, PredictionError
from .scoring import classify, combine, nothing_message

MODEL_KINDS = ("voice", "face", "fusion")
SINGLE_CHOICES = ("model", "fusion")


class Predictor:
    """Voice, face and fusion models (any subset) with their training-time preprocessing.

    With ``fast=True`` (the default of ``from_dir``) the voice and face encoders run through the
    cached ONNX Runtime fast path on CPU (``emolib.fast.runtime``; ``self.fast``), else eager fp32.
    ``probes`` (``emolib.fast.probes.Probes``) are the inputs a new fast-path export is checked
    and calibrated on; by default the packaged ones.
    """

    def __init__(self, voice=None, face=None, fusion=None, device: str = "cpu", single: str = "model", models_dir=None,
                 fast: bool = False, quantize: str = "auto", threads: int | None = None, probes=None, notes=(), min_speech: float | None = None,
                 speaker_norm: bool = True, abstain: float | None = None):
        from ..devices import pick_device

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
        self.labels = common_labels({"voice": voice, "face": face, "fusion": fusion}, models_dir)
        self.device = pick_device(device)
        self.voice, self.face, self.fusion = (m.to(self.device).eval() if m is not None else None for m in (voice, face, fusion))
        self.single = single
        self.speaker_norm = speaker_norm  # the eGeMAPS voice model: per-speaker standardisation where the speaker is known (False: corpus)
        self.late = None  # {"voice": weight, "face": weight}: late fusion of the log-probabilities without a fusion model
        self.abstain = abstain  # "uncertain" when the top calibrated probability is below it (None or 0: never)
        self.last_speaker_norm = None
        rule = stored_rule(getattr(voice, "checkpoint", None)) if voice is not None else stored_rule(None)
        # seconds of speech (Silero VAD) a window needs for the voice model (0: the rule is off): the voice checkpoint's default
        # (models trained on speech store one; older ones have it off) unless ``min_speech`` is given
        self.min_speech = rule["min_seconds"] if min_speech is None else float(min_speech)
        self.speech_threshold = rule["threshold"]
        self.speech_rule_source = "given" if min_speech is not None else "the voice model's default" if rule["stored"] else \
            "off: the voice model predates stored speech rules"
        self.models_dir = models_dir
        self.notes = list(notes) + [note for kind, model in (("voice", voice), ("face", face), ("fusion", fusion))
                                    if model is not None and (note := calibration_note(kind, getattr(model, "checkpoint", None)))]
        self.audio_settings = AudioSettings.of(voice) if voice is not None else None
        self.face_settings = FaceSettings.of(face) if face is not None else None
        self.fast = None
        if fast and self.device.type == "cpu":
            self.fast = self._load_fast(quantize, threads, probes)

    def _load_fast(self, quantize: str, threads: int | None, probes):
        """The ONNX Runtime fast path (emolib.fast.runtime), or None (with a warning) when it cannot be used."""
        import warnings

        from ..fast.runtime import FastPath, load_encoder_weights

        try:
            fast = FastPath(self.voice, self.face, self.audio_settings, self.face_settings, quantize=quantize, threads=threads,
                            release=True, probes=probes)
        except Exception as error:  # noqa: BLE001 - the fast path is an optimisation: never fail a prediction over it
            for model in (self.voice, self.face):
                if model is not None:
                    load_encoder_weights(model)
            warnings.warn(f"fast CPU path unavailable ({type(error).__name__}: {error}); using eager PyTorch", stacklevel=3)
            return None
        return fast if (fast.voice or fast.face) else None

    @classmethod
    def from_pretrained(cls, name_or_dir, **kwargs) -> "Predictor":
        """``from_dir`` of a local models folder, or of a Hugging Face Hub repository (``owner/name``) downloaded
        with ``huggingface_hub.snapshot_download`` (``infer.hub.models_folder``); offline, a ModelError in one line
        that says how to provide the folder. ``kwargs`` as for ``from_dir``."""
        from .hub import models_folder

        return cls.from_dir(models_folder(name_or_dir), **kwargs)

    @classmethod
    def from_dir(cls, models_dir, device: str = "cpu", single: str = "model", fast: bool = True, quantize: str = "auto",
                 threads: int | None = None, probes=None, allow_mismatched_fusion: bool = False, min_speech: float | None = None,
                 speaker_norm: bool = True, abstain: float | None = None) -> "Predictor":
        """Load the models ``models.checkpoint.find_models(models_dir)`` finds (voice, face, fusion; any subset).

        ``fast`` (default) runs the voice and face encoders through the cached ONNX Runtime fast
        path on CPU (``emolib.fast.runtime``: int8 transformer / int8 ResNet for full-size
        encoders, fp32 for small ones; built on first use next to each checkpoint); ``fast=False``
        is plain eager PyTorch fp32. ``quantize`` ("auto", "int8", "fp32") and ``threads`` tune it.
        A fusion model beside encoders it was not trained on is refused, unless
        ``allow_mismatched_fusion``: then every prediction's notes say so.
        """
        from ..devices import pick_device
        from ..models.checkpoint import find_models, fusion_lineage, load_model

        found = find_models(models_dir, allow_mismatched_fusion=allow_mismatched_fusion)
        notes = [f"{problem} (allowed by --allow-mismatched-fusion)" for problem in fusion_lineage(found)] if "fusion" in found else []
        if fast and pick_device(device).type == "cpu":  # reads only what the cached fast files do not replace
            from ..fast.runtime import load_checkpoint

            models = {kind: load_checkpoint(folder, quantize) for kind, folder in found.items()}
        else:
            models = {kind: load_model(folder) for kind, folder in found.items()}
        folder = folder_settings(models_dir)
        predictor = cls(models.get("voice"), models.get("face"), models.get("fusion"), device=device, single=single,
                        models_dir=str(models_dir), fast=fast, quantize=quantize, threads=threads, probes=probes,
                        notes=notes + ([folder["note"]] if folder.get("note") else []), min_speech=min_speech, speaker_norm=speaker_norm,
                        abstain=abstain)
        predictor.late = folder.get("late_fusion")
        return predictor

    @property
    def kinds(self) -> list[str]:
        """The loaded models, e.g. ["voice", "face", "fusion"]."""
        return [kind for kind in MODEL_KINDS if getattr(self, kind) is not None]

    def __repr__(self) -> str:
        speed = f", {self.fast!r}" if self.fast is not None else ", eager"
        return f"Predictor({', '.join(self.kinds)}; from {self.models_dir or 'memory'}, device {self.device}{speed})"

    # ---------------------------------------------------------------- models

    def voice_features(self, wave: np.ndarray, speaker=None):
        """Pooled voice embedding (1, D) of a 16 kHz wave, through transforms.voice_inputs. The eGeMAPS model's functionals are
        standardised by the speaker's statistics (``speaker``: an ``egemaps.SpeakerStats`` this window is added to first) once
        they are ready, else by its corpus statistics: ``self.last_speaker_norm`` says which.""" 
        import torch

        from ..transforms import voice_inputs

        inputs = voice_inputs(wave, self.audio_settings)
        if hasattr(self.voice, "from_standardised"):
            features, self.last_speaker_norm = speaker_features(self.voice, inputs, speaker, self.speaker_norm)
            return features
        if self.fast is not None and self.fast.voice is not None:
            return torch.from_numpy(self.fast.voice.voice_features({name: value.numpy()[None] for name, value in inputs.items()}))
        with torch.inference_mode():
            return self.voice.features(**{name: value[None].to(self.device) for name, value in inputs.items()}).float()

    def face_features(self, crops: np.ndarray):
        """Pooled face embedding (1, D) of a clip's crops (the model's temporal pooling), through transforms.face_pixels."""
        return self.pooled_face(self.frame_embeddings(crops))

    def frame_embeddings(self, crops: np.ndarray) -> np.ndarray:
        """Per-frame embeddings (F, D) of face crops (F, S, S, 3): what the model's temporal pooling takes."""
        import torch

        from ..transforms import face_pixels

        pixels = face_pixels(crops, self.face_settings)
        if self.fast is not None and self.fast.face is not None:
            return self.fast.face.face_embeddings(pixels.numpy())
        with torch.inference_mode():
            return self.face.frozen_features(pixels[None].to(self.device))[0].float().cpu().numpy()

    def pooled_face(self, embeddings: np.ndarray):
        """The clip embedding (1, D) from per-frame embeddings (F, D)."""
        import torch

        with torch.inference_mode():
            return self.face.from_frozen(torch.from_numpy(np.ascontiguousarray(embeddings))[None].to(self.device)).float()

    # ---------------------------------------------------------------- predict

    def predict(self, audio=None, sample_rate=None, image=None, audio_name: str = "audio array", image_name: str = "image",
                whole_image: bool = False, image_scale=None, speech_seconds: float | None = None, speaker=None, frame_ids=None,
                shared=None) -> Prediction:
        """Predict from an audio array (any rate, mono or (frames, channels)) and/or an RGB image or frames.

        ``whole_image`` treats each image as an already-cropped face (no detection, no margin). ``image_scale`` (x, y): the
        frames are a working copy of an input that many times larger (``video.read_image_scaled``); boxes are reported in the
        input's own pixels. ``speech_seconds``: the audio's speech, measured over the whole file or stream it is a window of
        (``speech.seconds_in``; the timeline and the stream give it), else measured on ``audio``. ``speaker``: the running
        ``egemaps.SpeakerStats`` of the session or file this audio is a window of (an eGeMAPS voice model's speaker normalisation).
        ``frame_ids`` and ``shared`` (``people.SharedFrames``): the frames' numbers in the file that overlapping windows share, so that
        each frame is detected and each face crop embedded once (the timeline; the same result as without).

        ``image`` is an RGB (H, W, 3) array, a list of frames, or an (F, H, W, 3) array; the
        frames' embeddings are averaged like a training clip's. Raises PredictionError when
        neither modality is usable.
        """
        notes: list[str] = list(self.notes)
        wave, audio_notes, seconds, rms = prepare_audio(audio, sample_rate, self.audio_settings, audio_name)
        wave, speech_notes, speech = speech_rule(wave, self.min_speech, audio_name, heard=audio is not None, seconds=speech_seconds,
                                                 threshold=self.speech_threshold)
        audio_notes += speech_notes
        frames = prepare_frames(image, image_name)
        if wave is not None and self.voice is None:
            notes.append(f"no voice model in {self.models_dir}: audio ignored")
            wave = None
        result = {"audio_seconds": seconds, "audio_rms": rms, "speech_seconds": speech, "frames": len(frames) if frames else 0}
        voice_features = face_features = None
        if wave is not None:
            voice_features = self.voice_features(wave, speaker)
            result["voice"] = classify(self.voice, voice_features, self.labels)
            if hasattr(self.voice, "from_standardised"):
                result["speaker_norm"] = self.last_speaker_norm
                notes.append(f"speaker normalisation: {self.last_speaker_norm}")
        if frames is not None and self.face is None:
            notes.append(f"no face model in {self.models_dir}: image ignored")
        elif frames is not None:
            shared = shared if frame_ids is not None and not whole_image else None
            faces = find_faces(frames, self.face_settings, whole_image, frame_ids, shared)
            if shared is None:
                settings = replace(self.face_settings, margin=0.0, align=False) if whole_image else self.face_settings
                crops, found, _ = crop_track(frames, faces.main, settings.image_size, settings.margin, settings.align)  # linked once
            else:  # the main track's crops are embedded (once per frame and face) only if it has any
                found = np.array([faces.main is not None and i in faces.main.faces for i in range(len(frames))], dtype=bool)
            result["face_found"] = clip_has_face(found)
            result["frames_with_face"] = int(found.sum())
            if result["face_found"]:
                index = int(np.flatnonzero(found)[0])
                result.update(face_box=tuple(int(v) for v in faces.main.faces[index].box), face_frame=index,
                              faces=other_faces(self, frames, faces, frame_ids, shared))
                face_features = self.face_features(crops) if shared is None else track_features(self, frames, faces.main, frame_ids, shared)
                result["face"] = classify(self.face, face_features, self.labels)
        have_voice, have_face = voice_features is not None, face_features is not None
        if not have_voice and not have_face:
            raise PredictionError(nothing_message(self, audio_notes, frames, result, image_name))
        if not have_face and self.face is not None:
            why = "no image" if frames is None else f"no face found in {image_name}" + (f" ({len(frames)} frames)" if len(frames) > 1 else "")
            notes.append(f"{why}: voice only")
        if not have_voice and self.voice is not None:
            notes.append(f"{'; '.join(audio_notes)}: face only")
        final, source = combine(self, result, voice_features, face_features, notes)
        modalities = [kind for kind, used in (("voice", have_voice), ("face", have_face)) if used]
        if not np.isfinite(list(final.values())).all():
            raise ModelError(f"{self.models_dir or 'Predictor'}: the {source} model gives non-finite probabilities "
                             f"(its weights hold NaN or infinity); retrain it")
        emotion = max(final, key=final.get)
        if abstained(final, self.abstain):
            notes.append(f"uncertain: the top emotion {emotion} has p={final[emotion]:.2f}, under --abstain {self.abstain:g}")
            emotion, result["abstained"] = UNCERTAIN, True
        if have_face:
            result["faces"] = [main_face(faces, final, source)] + result["faces"]
        prediction = Prediction(emotion=emotion, probabilities=final, source=source, modalities=modalities, notes=notes, **result)
        return prediction.in_input_pixels(image_scale) if image_scale is not None and frames is not None else prediction

    def predict_files(self, audio=None, image=None, video=None, whole_image: bool = False, progress: bool = True):
        """Predict from files: a sound ``audio`` file, an ``image``, and/or a ``video``.

        A video gives the face frames (``read_frames(video, settings.frames)``, as in training)
        and, unless ``audio`` is given, its audio track (``media.input_audio``). One path of each gives a ``Prediction``;
        lists of paths give a pandas DataFrame with one row per input (``infer.batch``: the paths, emotion, confidence,
        ``p_<label>`` probabilities, notes; an input that cannot be predicted from gets its ``error`` instead).
        """
        if is_batch(audio, image, video):
            return predictions_table(lambda **one: self.predict_files(**one, whole_image=whole_image), self.labels, audio, image, video,
                                     progress=progress)
        _, frames, wave, sample_rate, notes, scale = load_inputs(self, audio, image, video)
        audio_name = str(audio or video or "audio")
        image_name = str(image or video or "image")
        prediction = self.predict(wave, sample_rate, frames, audio_name=audio_name, image_name=image_name, whole_image=whole_image,
                                  image_scale=scale)
        prediction.notes = notes + prediction.notes
        return prediction
