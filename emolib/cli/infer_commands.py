"""Inference commands: ``emolib predict``, ``emolib timeline``, ``emolib live`` and ``emolib bench``.

Registered with cli.py's ``@command`` when ``build_parser`` imports this module. Results go to
stdout; progress, countdowns and warnings to stderr (``predict --json`` prints exactly one JSON
object on stdout).
"""
from __future__ import annotations

import contextlib
import json
import sys
import time

from ..audio import WINDOW_SECONDS
from ..train.presets import RECIPES
from .registry import command
from .types import probability, non_negative_float, non_negative_int, positive_float, positive_int

DEFAULT_MODELS = "models"


def _add_model_arguments(parser) -> None:
    parser.add_argument("--models", default=DEFAULT_MODELS, help="folder with voice/, face/ and/or fusion/ checkpoints (default: models), "
                                                                 "or a Hugging Face Hub repository OWNER/NAME holding one")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto, ...")
    parser.add_argument("--single", choices=("model", "fusion"), default="model",
                        help="with one modality missing: use that modality's own model (default) or the fusion model with presence flags")
    parser.add_argument("--no-fast", dest="fast", action="store_false",
                        help="plain eager PyTorch fp32 instead of the cached ONNX Runtime fast path (int8 for full-size encoders; see BENCHMARKS.md)")
    parser.add_argument("--allow-mismatched-fusion", action="store_true",
                        help="use a fusion model beside voice/face checkpoints it was not trained on (every prediction's notes say so)")
    _add_speech_argument(parser)


def _add_speech_argument(parser) -> None:
    parser.add_argument("--min-speech", type=non_negative_float, default=None, metavar="SECONDS",
                        help="seconds of speech (Silero VAD) an input or window needs for the voice model; less counts as no audio "
                             "(default: the voice model's own rule, 0.25 s for a model trained on speech, off for older or synthetic "
                             "ones; 0 turns it off)")
    parser.add_argument("--abstain", type=probability, default=None, metavar="P",
                        help="say \"uncertain\" when the top calibrated probability is below P (the probabilities are still given; "
                             "default: never)")
    parser.add_argument("--speaker-norm", choices=("on", "off"), default="on",
                        help="an eGeMAPS voice model: standardise its features by the speaker's own statistics where the speaker is "
                             "known (a stream's or a file's speech windows; an annotate list's speaker column), else the corpus's "
                             "(default on; off: always the corpus's); every output says which was used")


def _predictor(args):
    from ..infer.predictor import Predictor

    return Predictor.from_pretrained(args.models, device=args.device, single=args.single, fast=args.fast,
                                     allow_mismatched_fusion=args.allow_mismatched_fusion, min_speech=args.min_speech,
                                     speaker_norm=args.speaker_norm != "off", abstain=args.abstain)


def _check_inputs(*paths) -> None:
    """Fail on a missing, empty or non-file input before any model is loaded."""
    from ..errors import EmolibError, check_input_file

    for path in paths:
        if path is not None:
            check_input_file(path, EmolibError)


def _quiet_plots() -> None:
    import matplotlib

    matplotlib.use("Agg")


@command("predict", "predict the emotion of an audio file, an image and/or a video (its frames and audio track)")
def _predict(parser):
    parser.add_argument("--audio", default=None, help="speech file (wav, flac, ...); overrides a video's audio track")
    parser.add_argument("--image", default=None, help="image with a face (jpg, png, ...)")
    parser.add_argument("--video", default=None, help="video (mp4, flv, ...): face frames and, unless --audio is given, its audio track")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--whole-image", action="store_true", help="the image (or each frame) is an already-cropped face: no detection")
    _add_model_arguments(parser)

    def run(args):
        from ..errors import EmolibError
        from ..infer.display import format_prediction

        if not (args.audio or args.image or args.video):
            raise EmolibError("nothing to predict: give --audio, --image and/or --video")
        if args.image and args.video:
            raise EmolibError(f"{args.image}: give --image or --video, not both")
        _check_inputs(args.audio, args.image, args.video)
        stdout = sys.stdout
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            prediction = _predictor(args).predict_files(audio=args.audio, image=args.image, video=args.video, whole_image=args.whole_image)
        if args.json:
            stdout.write(prediction.to_json() + "\n")
            stdout.flush()
            for note in prediction.notes:
                print(f"emolib predict: note: {note}", file=sys.stderr)
        else:
            print(format_prediction(prediction))

    return run


@command("timeline", "emotions over time in a long video: sliding windows -> timeline.csv and timeline.png")
def _timeline(parser):
    parser.add_argument("video", help="video file (its audio track is used unless --audio is given)")
    parser.add_argument("--out", default="timeline", help="output folder for timeline.csv and timeline.png (default: timeline)")
    parser.add_argument("--audio", default=None, help="speech file to use instead of the video's audio track")
    parser.add_argument("--window", type=positive_float, default=None, help="window length in seconds (default: the voice model's, 4 s)")
    parser.add_argument("--hop", type=positive_float, default=1.0, help="seconds between window starts (default: 1)")
    _add_model_arguments(parser)

    def run(args):
        from pathlib import Path

        from ..infer.timeline import main_rows, write_timeline

        _check_inputs(args.video, args.audio)
        _quiet_plots()
        table = main_rows(write_timeline(_predictor(args), args.video, args.out, audio=args.audio, window=args.window, hop=args.hop))
        labels = table["label"].fillna("").astype(str)
        counts = labels[labels != ""].value_counts()
        summary = ", ".join(f"{label} {count}" for label, count in counts.items()) or "no usable window"
        print(f"{len(table)} windows: {summary}")
        print(f"timeline: {Path(args.out) / 'timeline.csv'}, {Path(args.out) / 'timeline.png'}")

    return run


@command("annotate", "emotion timelines for a whole archive (folder, glob or CSV/Parquet list) -> a Parquet dataset, on Ray Data")
def _annotate(parser):
    parser.add_argument("source", help="a folder (searched recursively), a glob, or a .csv/.parquet list of media files (column 'path')")
    parser.add_argument("--out", default="annotations", help="output folder: windows/*.parquet and errors/*.parquet (default: annotations)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="folder with voice/, face/ and/or fusion/ checkpoints (default: models), "
                                                                 "or a Hugging Face Hub repository OWNER/NAME holding one")
    parser.add_argument("--workers", type=positive_int, default=2, help="model actors (each loads the models once; default 2)")
    parser.add_argument("--cpus-per-worker", type=positive_float, default=0.5,
                        help="CPUs reserved per model actor (fractional: leaves CPUs to the decoding tasks; default 0.5)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per model actor (e.g. 1, or 0.5 to share one; default 0: CPU)")
    parser.add_argument("--window", type=positive_float, default=WINDOW_SECONDS, help=f"window length in seconds (default {WINDOW_SECONDS:g})")
    parser.add_argument("--hop", type=positive_float, default=1.0, help="seconds between window starts (default: 1)")
    parser.add_argument("--ray-address", default=None, help="join an existing Ray cluster (default: start Ray on this machine's cores)")
    _add_speech_argument(parser)

    def run(args):
        from ..infer.annotate import annotate

        from ..infer.hub import models_folder

        counts = annotate(args.source, models_folder(args.models), args.out, args.workers, args.window, args.hop, args.ray_address, args.gpus_per_worker,
                          args.cpus_per_worker, min_speech=args.min_speech, speaker_norm=args.speaker_norm != "off", abstain=args.abstain)
        replaced = f", replacing {counts['replaced']} made from other bytes or settings" if counts["replaced"] else ""
        print(f"{counts['files']} files: {counts['annotated']} annotated ({counts['audio_hours']:.3f} h of audio){replaced}, "
              f"{counts['skipped']} already done, {counts['failed']} failed (see {args.out}/errors)")
        print(f"windows: {args.out}/windows (pandas.read_parquet)")

    return run


@command("live", "webcam frame + microphone recording -> emotion (Ctrl-C stops --loop)")
def _live(parser):
    parser.add_argument("--camera", type=non_negative_int, default=0, help="OpenCV camera index (default 0)")
    parser.add_argument("--mic", default=None, help="microphone name (substring) or index; list them with `python -m sounddevice`")
    parser.add_argument("--seconds", type=positive_float, default=WINDOW_SECONDS, help=f"seconds of audio to record (default {WINDOW_SECONDS:g})")
    parser.add_argument("--countdown", type=non_negative_int, default=3, help="seconds of countdown before recording (default 3)")
    parser.add_argument("--loop", action="store_true", help="record and predict again and again until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="print one JSON object per prediction (per update with --stream)")
    parser.add_argument("--stream", action="store_true", help="predict continuously: a rolling window, one update every --hop (Ctrl-C stops)")
    parser.add_argument("--from-file", default=None, metavar="VIDEO", help="--stream: play this video (or sound) file instead of the camera "
                                                                           "and microphone, in real time")
    parser.add_argument("--fast-as-possible", action="store_true", help="--from-file: do not wait for real time; predict every window")
    parser.add_argument("--hop", type=positive_float, default=1.0, help="--stream: seconds between updates (default 1; 0.5 allowed)")
    parser.add_argument("--smoothing", type=non_negative_float, default=0.5, help="--stream: weight of the past in the moving average of "
                                                                                  "the probabilities (0: off; default 0.5)")
    parser.add_argument("--margin", type=non_negative_float, default=0.1, help="--stream: how far another label must lead before the shown "
                                                                               "label changes (default 0.1)")
    _add_model_arguments(parser)

    def run(args):
        if args.stream or args.from_file:
            return _stream(args)
        from ..live.capture import LocalCapture
        from ..infer.predictor import PredictionError
        from ..infer.display import format_prediction

        capture = LocalCapture(args.camera, args.mic)
        capture.check()  # fail fast, naming every missing device and the flag that picks another
        predictor = _predictor(args)
        try:
            while True:
                _countdown(args.countdown)
                frame, audio, rate = capture.capture(args.seconds, progress=_progress_bar)
                print(file=sys.stderr)
                try:
                    prediction = predictor.predict(audio, rate, frame, audio_name="microphone", image_name=f"camera {args.camera}")
                except PredictionError as error:
                    if not args.loop:
                        raise
                    print(f"emolib live: {error}", file=sys.stderr)
                else:
                    print(prediction.to_json() if args.json else format_prediction(prediction), flush=True)
                if not args.loop:
                    break
                print("-" * 40, file=sys.stderr)
        except KeyboardInterrupt:
            print("emolib live: stopped", file=sys.stderr)
        finally:
            capture.close()

    return run


def _stream(args) -> int:
    """``emolib live --stream``: one line (or JSON object) per update, from a file or the camera and microphone."""
    from ..live.stream import StreamEngine, stream_file, stream_local

    if args.from_file:
        _check_inputs(args.from_file)
    engine = StreamEngine(_predictor(args), hop=args.hop, smoothing=args.smoothing, margin=args.margin)

    def show(update):
        print(json.dumps(update.to_dict(), allow_nan=False, default=float) if args.json else update.line(), flush=True)

    try:
        if args.from_file:
            stream_file(engine, args.from_file, realtime=not args.fast_as_possible, on_update=show)
        else:
            from ..live.capture import LocalCapture

            capture = LocalCapture(args.camera, args.mic)
            capture.check()
            stream_local(engine, capture, on_update=show)
    except KeyboardInterrupt:
        print("emolib live: stopped", file=sys.stderr)
    if engine.updates:
        print(f"emolib live: {len(engine.updates)} updates, {engine.skipped} hops skipped", file=sys.stderr)
    return 0


@command("bench", "measure the fast CPU path vs eager fp32 (latency, accuracy, face prep, features, memory) -> BENCHMARKS.md")
def _bench(parser):
    parser.add_argument("--out", default="BENCHMARKS.md", help="markdown report to write (default BENCHMARKS.md)")
    parser.add_argument("--models", default=None, help="trained voice/, face/, fusion/ checkpoints: compare test-split UAR of eager vs fast")
    parser.add_argument("--data", default=None, help="synthetic CREMA-D tree (default: a small one made under --work)")
    parser.add_argument("--runs", type=positive_int, default=20, help="live predictions per path (default 20)")
    parser.add_argument("--work", default=None, help="folder for the full-size random-init checkpoints (default $EMOLIB_CACHE/bench)")
    parser.add_argument("--clips", type=positive_int, default=120, help="clips for the face-preparation throughput (default 120)")
    parser.add_argument("--feature-clips", type=positive_int, default=16, help="clips for the feature-extraction throughput (default 16)")
    parser.add_argument("--workers", type=non_negative_int, default=None, help="face-preparation worker processes (default min(4, CPUs))")
    parser.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime threads (default: physical cores)")
    parser.add_argument("--json", default=None, help="also write the raw figures as JSON to this file")
    parser.add_argument("--faces", action="store_true",
                        help="only measure face detection on real photographs and synthetic frames (its section of --out)")
    parser.add_argument("--annotate", action="store_true",
                        help="only measure `emolib annotate` throughput with 1 and 2 model actors (needs --models; its section of --out)")
    parser.add_argument("--stream", action="store_true",
                        help="only measure the live stream in real time at hop 1 s and 0.5 s with the full-size models (its section of --out)")
    parser.add_argument("--real", default=None, metavar="DIR",
                        help="only measure speech detection on real recordings against room noise, and VP6 decoding: DIR holds "
                             "ravdess/Actor_NN/*.flac and cremad/VideoFlash, cremad/AudioMP3 (e.g. tests/data/real; its section of --out)")
    parser.add_argument("--fast-real", default=None, metavar="DIR",
                        help="only check the fast voice files of the full-size random-init encoder against eager on real speech "
                             "(DIR/ravdess/Actor_NN/*.flac): embeddings, a head trained on real labels, each variant (its section of --out)")
    parser.add_argument("--per-actor", type=positive_int, default=12,
                        help="with --fast-real: recordings per actor, evenly spread over each actor's (default 12; 60 is all of "
                             "RAVDESS speech)")
    parser.add_argument("--recipe", choices=RECIPES, default=None,
                        help="only measure live latency, eager vs fast, of full-size models built as this training recipe makes them "
                             "(e.g. best: weighted layers, attentive statistics, speech-only voice; 16-frame face with attention; its section of --out)")

    def run(args):
        import shlex

        from ..bench.run import (run_annotate_bench, run_bench, run_face_bench, run_fast_real_bench, run_real_bench, run_recipe_bench,
                                 run_stream_bench)

        if args.fast_real:
            run_fast_real_bench(args.fast_real, args.out, args.work, per_actor=args.per_actor,
                                command=f"emolib bench --fast-real {shlex.quote(args.fast_real)} --per-actor {args.per_actor} "
                                        f"--out {shlex.quote(args.out)}")
            print(f"benchmarks: {args.out}")
            return

        if args.real:
            run_real_bench(args.real, args.out, args.work, command=f"emolib bench --real {shlex.quote(args.real)} --out {shlex.quote(args.out)}")
            print(f"benchmarks: {args.out}")
            return

        if args.recipe:
            command = f"emolib bench --recipe {args.recipe} --runs {args.runs} --out {shlex.quote(args.out)}" \
                + (f" --threads {args.threads}" if args.threads else "")
            run_recipe_bench(args.out, args.recipe, args.work, args.runs, args.threads, command)
            print(f"benchmarks: {args.out}")
            return

        if args.stream:
            run_stream_bench(args.out, args.data, args.work, command=f"emolib bench --stream --out {shlex.quote(args.out)}"
                             + (f" --data {shlex.quote(args.data)}" if args.data else ""))
            print(f"benchmarks: {args.out}")
            return

        if args.annotate:
            run_annotate_bench(args.out, args.models, args.data, args.work,
                               command=f"emolib bench --annotate --models {shlex.quote(str(args.models))} --out {shlex.quote(args.out)}"
                               + (f" --data {shlex.quote(args.data)}" if args.data else ""))
            print(f"benchmarks: {args.out}")
            return

        if args.faces:
            run_face_bench(args.out, args.data, args.work, command=f"emolib bench --faces --out {shlex.quote(args.out)}"
                           + (f" --data {shlex.quote(args.data)}" if args.data else ""))
            print(f"benchmarks: {args.out}")
            return

        given = [("--out", args.out), ("--models", args.models), ("--data", args.data), ("--runs", args.runs), ("--work", args.work),
                 ("--clips", args.clips), ("--feature-clips", args.feature_clips), ("--workers", args.workers), ("--threads", args.threads)]
        command = "emolib bench " + " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in given if value is not None)
        run_bench(args.out, args.models, args.data, args.runs, args.work, args.clips, args.feature_clips, args.workers,
                  args.threads, command=command, json_out=args.json)
        print(f"benchmarks: {args.out}")

    return run


def _countdown(seconds: int) -> None:
    for left in range(seconds, 0, -1):
        print(f"\rrecording in {left}...   ", end="", file=sys.stderr, flush=True)
        time.sleep(1)


def _progress_bar(elapsed: float, seconds: float, width: int = 30) -> None:
    done = int(width * min(1.0, elapsed / seconds))
    print(f"\rrecording [{'#' * done}{'.' * (width - done)}] {max(0.0, seconds - elapsed):4.1f} s left ",
          end="", file=sys.stderr, flush=True)
