"""Synthetic CREMA-D: a small, learnable stand-in for the real data set, in its layout.

``make_synthetic_cremad(out)`` writes ``AudioWAV/*.wav`` (16 kHz mono PCM16, 2.2-2.8 s),
``VideoFlash/*.flv`` (FLV1, 480x360, 30 fps, a drawn face talking in sync with the audio),
``VideoDemographics.csv`` (CREMA-D's columns) and ``README.txt``. Clip names are real CREMA-D
names, ``ACTOR_SENTENCE_EMOTION_LEVEL``: sentence IEO at LO/MD/HI, the others at XX, NEU
always XX. The default size (DEFAULT_ACTORS x 6 emotions x CLIPS_PER_EMOTION = 660 clips)
lets the whole demo pipeline run in minutes on two CPU cores.

Design, so that models trained on it behave like real ones:

1. Per-actor variation, so that actor-disjoint splits matter: voice pitch (by sex, plus
   a per-actor offset), vocal-tract length (formant scale), loudness, brightness,
   breathiness and tempo; face size and aspect, skin, hair, hairline, eyebrow thickness,
   lighting, position in the frame, background and shirt colour; and a per-actor resting
   expression.
2. Noise: background noise in the audio; a random strength of every cue in every clip
   (LO/MD/HI scale it, XX draws it); pixel noise; head motion of a few pixels; a mouth
   that opens with each syllable; FLV compression.
3. Modality-specific confusions. Each modality sorts the six emotions into three pairs:

   ======  ==========  ============================================================
   voice   {ANG, HAP}  loud, high, fast, bright
           {DIS, NEU}  moderate: the actor's neutral voice
           {FEA, SAD}  quiet, slow, dark, breathy, trembling
   face    {ANG, DIS}  brows lowered and knitted, narrowed eyes, pressed lips
           {HAP, SAD}  brows raised, wide open mouth
           {NEU, FEA}  relaxed brows, open eyes, closed mouth
   ======  ==========  ============================================================

   Within a pair only a weak, noisy cue differs (voice: pitch glide and pitch; face:
   mouth corners, mouth width and eye opening). Its value in a clip is the emotion's
   side of the pair (-1 or +1) plus Gaussian noise of WITHIN_PAIR_SPREAD, so even an
   ideal observer tells the two apart in only about 70 % of the clips. Every emotion has
   its own (voice pair, face pair), so fusion can tell all six apart while each single
   modality gets its three pairs and little more: about 55-70 % accuracy for one
   modality, 85 % or more for both (chance is 1/6). The pairs and cues: ``synth.emotions``.

A clip draws its randomness from ``(seed, stem)`` and an actor from ``(seed, actor)``, so a
clip depends neither on the other clips, nor on their order, nor on the number of workers,
and the same seed gives the same bytes (with the same OpenCV/FFmpeg build).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ...cremad import EMOTIONS, SENTENCES, parse_name
from ...errors import DataError
from .emotions import apex_curve, face_expression, voice_cues
from .face import FPS, Expression, FaceLook, iter_frames, random_face_look, write_flv
from .voice import SAMPLE_RATE, VoiceTraits, random_voice_traits, sentence_vowels, synthesize_speech

DEFAULT_ACTORS = 22
CLIPS_PER_EMOTION = 5
FIRST_ACTOR = 1001
MAX_ACTORS = 9999 - FIRST_ACTOR + 1
PARALLEL_MIN_CLIPS = 48
DURATION_S = (2.2, 2.8)
REAL_DURATION_S = (1.3, 5.0)  # realistic mode: CREMA-D's sentence lengths
MP3_BITRATE, MP3_RATE = "64k", 22050
LEVEL_INTENSITY = {"LO": 0.7, "MD": 0.85, "HI": 1.0}
XX_INTENSITY = (0.7, 1.0)
LEVELED_SENTENCE = "IEO"
RACES = ("Caucasian", "African American", "Asian", "Unknown")
RACE_WEIGHTS = (0.6, 0.25, 0.1, 0.05)
AGES = (20, 74)



@dataclass(frozen=True)
class Actor:
    """One synthetic actor: demographics, voice and face."""

    actor: int
    age: int
    sex: str
    race: str
    ethnicity: str
    voice: VoiceTraits
    face: FaceLook
    resting: Expression


@dataclass(frozen=True)
class Clip:
    """A synthesized clip: float32 audio at SAMPLE_RATE and BGR video frames at FPS."""

    stem: str
    audio: np.ndarray
    frames: list[np.ndarray]


def make_synthetic_cremad(out, actors: int = DEFAULT_ACTORS, seed: int = 0, clips_per_emotion: int = CLIPS_PER_EMOTION,
                          video: bool = True, workers: int | None = None, progress: bool = True, temporal: bool = False,
                          realistic: bool = False, limit: int | None = None) -> Path:
    """Write a synthetic CREMA-D tree to ``out`` and return its path (see the module docstring).

    ``actors`` actors (ids from FIRST_ACTOR) each get ``clips_per_emotion`` clips of every
    emotion; ``video=False`` skips VideoFlash/. ``workers`` processes share the clips (default:
    the available CPUs, or 1 for small trees); the output does not depend on it. README.txt is
    written last, so its presence marks a complete tree. ``temporal``: each face's expression rises and
    falls (``apex_curve``), the apex in a minority of the frames; the rest shows the actor's resting face.
    ``realistic`` (``emolib rehearse``): CREMA-D's sentence lengths (REAL_DURATION_S) and, like its VideoFlash files, the
    clip's sound as an MP3 track in the FLV (needs ffmpeg). ``limit``: keep that many of the planned clips, evenly spread
    over the actors and emotions.
    """
    if not 1 <= actors <= MAX_ACTORS:
        raise DataError(f"actors must be 1..{MAX_ACTORS}, got {actors}")
    if seed < 0:
        raise DataError(f"seed must be 0 or more, got {seed}")
    cast = [make_actor(FIRST_ACTOR + index, seed) for index in range(actors)]
    stems = plan_clips([actor.actor for actor in cast], seed, clips_per_emotion)
    if limit is not None and limit < len(stems):
        stems = [stems[index] for index in np.linspace(0, len(stems) - 1, max(1, limit)).round().astype(int)]
    if realistic and video and shutil.which("ffmpeg") is None:
        raise DataError("a realistic synthetic CREMA-D puts MP3 sound in its FLV files: install ffmpeg")
    root = Path(out)
    (root / "AudioWAV").mkdir(parents=True, exist_ok=True)
    if video:
        (root / "VideoFlash").mkdir(parents=True, exist_ok=True)
    (root / "README.txt").unlink(missing_ok=True)
    write_demographics(root / "VideoDemographics.csv", cast)
    jobs = [(root, stem, seed, video, temporal, realistic) for stem in stems]
    if workers is None:
        workers = _available_cpus() if len(jobs) >= PARALLEL_MIN_CLIPS else 1
    for _ in _progress(_run(_write_clip, jobs, workers), len(jobs), progress):
        pass
    (root / "README.txt").write_text(_readme(seed, cast, len(stems), clips_per_emotion, video, temporal))
    return root


def plan_clips(actor_ids, seed: int, clips_per_emotion: int = CLIPS_PER_EMOTION) -> list[str]:
    """Clip stems: for every actor and emotion, ``clips_per_emotion`` distinct (sentence, level) choices."""
    if not 1 <= clips_per_emotion <= len(SENTENCES):
        raise DataError(f"clips_per_emotion must be 1..{len(SENTENCES)}, got {clips_per_emotion}")
    stems = []
    for actor in actor_ids:
        rng = clip_rng(seed, actor, "plan")
        for emotion in EMOTIONS:
            choices = _sentence_levels(emotion)
            picked = rng.choice(len(choices), size=clips_per_emotion, replace=False)
            stems += [f"{actor}_{choices[i][0]}_{emotion}_{choices[i][1]}" for i in sorted(picked)]
    return stems


def make_actor(actor: int, seed: int) -> Actor:
    """The actor ``actor`` (an id from FIRST_ACTOR) of the data set drawn with ``seed``."""
    rng = clip_rng(seed, actor, "actor")
    sex = ("Male", "Female")[(actor + seed) % 2]
    race = RACES[rng.choice(len(RACES), p=RACE_WEIGHTS)]
    resting = Expression(brow_raise=rng.normal(0, 0.2), brow_tilt=rng.normal(0, 0.15), eye_open=1 + rng.normal(0, 0.08),
                         mouth_open=abs(rng.normal(0, 0.05)), mouth_curve=rng.normal(0, 0.1), mouth_width=np.exp(rng.normal(0, 0.06)))
    return Actor(
        actor=actor,
        age=int(rng.integers(AGES[0], AGES[1] + 1)),
        sex=sex,
        race=race,
        ethnicity="Hispanic" if rng.random() < 0.15 else "Not Hispanic",
        voice=random_voice_traits(rng, sex),
        face=random_face_look(rng, sex, race),
        resting=resting,
    )


def synthesize_clip(stem: str, seed: int = 0, video: bool = True, temporal: bool = False) -> Clip:
    """Synthesize the clip named ``stem`` (a CREMA-D name) of the data set drawn with ``seed`` (``temporal``: see make_synthetic_cremad)."""
    audio, frames = _clip_streams(stem, seed, video, temporal)
    return Clip(stem, audio, [frame.copy() for frame in frames])


def write_demographics(path, cast: list[Actor]) -> None:
    """Write the actors as a CREMA-D VideoDemographics.csv."""
    lines = ['"ActorID","Age","Sex","Race","Ethnicity"']
    lines += [f'{a.actor},{a.age},"{a.sex}","{a.race}","{a.ethnicity}"' for a in cast]
    Path(path).write_text("\n".join(lines) + "\n")


def clip_rng(seed: int, *parts) -> np.random.Generator:
    """A random generator that depends only on the seed and the parts (an actor id, a stem, a purpose)."""
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest[:16], np.uint32).tolist()])


def _clip_streams(stem, seed, video, temporal=False, realistic=False):
    name = parse_name(stem)
    actor = make_actor(name.actor, seed)
    rng = clip_rng(seed, name.stem)
    intensity = LEVEL_INTENSITY[name.level] if name.level in LEVEL_INTENSITY else rng.uniform(*XX_INTENSITY)
    duration = rng.uniform(*(REAL_DURATION_S if realistic else DURATION_S))
    cues = voice_cues(name.emotion, intensity, rng)
    audio, envelope = synthesize_speech(actor.voice, cues, sentence_vowels(name.sentence, seed), duration, rng)
    if not video:
        return audio, iter(())
    times = (np.arange(int(round(duration * FPS))) + 0.5) / FPS
    talk = envelope[np.minimum((times * SAMPLE_RATE).astype(int), len(envelope) - 1)]
    expression = face_expression(name.emotion, intensity, actor.resting, rng)
    if temporal:
        return audio, iter_frames(actor.face, expression, talk, rng, apex_curve(len(talk), clip_rng(seed, name.stem, "apex")), actor.resting)
    return audio, iter_frames(actor.face, expression, talk, rng)


def _write_clip(job) -> str:
    import soundfile

    root, stem, seed, video, temporal, realistic = job
    audio, frames = _clip_streams(stem, seed, video, temporal, realistic)
    wav = root / "AudioWAV" / f"{stem}.wav"
    soundfile.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
    if video:
        flv = root / "VideoFlash" / f"{stem}.flv"
        write_flv(flv, frames)
        if realistic:
            _mux_mp3(flv, wav)
    return stem


def _mux_mp3(flv: Path, wav: Path) -> None:
    """Put ``wav`` into ``flv`` as an MP3 track, as in CREMA-D's VideoFlash files (the video stream is copied)."""
    muxed = flv.with_suffix(".mux.flv")
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(flv), "-i", str(wav), "-map", "0:v", "-map", "1:a",
               "-c:v", "copy", "-c:a", "libmp3lame", "-b:a", MP3_BITRATE, "-ar", str(MP3_RATE), str(muxed)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        muxed.unlink(missing_ok=True)
        raise DataError(f"{flv}: ffmpeg could not add the MP3 track ({result.stderr.strip().splitlines()[-1:] or 'no message'})")
    muxed.replace(flv)


def _sentence_levels(emotion: str) -> list[tuple[str, str]]:
    if emotion == "NEU":
        return [(sentence, "XX") for sentence in SENTENCES]
    leveled = [(LEVELED_SENTENCE, level) for level in LEVEL_INTENSITY]
    return leveled + [(sentence, "XX") for sentence in SENTENCES if sentence != LEVELED_SENTENCE]


def _readme(seed: int, cast: list[Actor], clips: int, clips_per_emotion: int, video: bool, temporal: bool = False) -> str:
    layout = "AudioWAV/*.wav (16 kHz mono PCM16), " + ("VideoFlash/*.flv (FLV1, 480x360, 30 fps), " if video else "")
    return (
        "Synthetic CREMA-D: NOT real recordings.\n\n"
        f"Made by emolib.data.synth.corpus.make_synthetic_cremad with seed={seed}: {len(cast)} actors "
        f"({cast[0].actor}-{cast[-1].actor}), {clips} clips.\n"
        f"Same data again: make_synthetic_cremad(OUT, actors={len(cast)}, seed={seed}, "
        f"clips_per_emotion={clips_per_emotion}, video={video}{', temporal=True' if temporal else ''})\n\n"
        + ("Temporal mode: each face's expression rises and falls; the apex fills a minority of the frames.\n\n" if temporal else "")
        + "Voices are synthesized syllables (harmonic tones through formant filters); faces are drawn with OpenCV.\n"
        "Voice and face each confuse a different three pairs of emotions, so only their fusion tells all six apart\n"
        "(see the emolib.data.synth.corpus module docstring).\n"
        f"Layout: {layout}VideoDemographics.csv.\n"
    )


def _run(function, jobs, workers):
    if workers <= 1 or len(jobs) <= 1:
        yield from map(function, jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_quiet_worker) as pool:
        yield from pool.map(function, jobs, chunksize=4)


def _quiet_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _progress(iterable, total, enabled, desc: str = "synthetic CREMA-D"):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="clip", disable=not enabled)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
