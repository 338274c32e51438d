"""Data and training commands: ``emolib synth``, ``index``, ``train``, ``evaluate`` and ``demo``.

The CLI translates its arguments into the typed options of ``emolib.train.options`` and calls ``emolib.train.recipes``.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from ..data.manifest import LAYOUTS
from ..data.splits import DEFAULT_PROTOCOL, HICMAE, HICMAE_FOLDS, PROTOCOLS
from ..errors import EmolibError
from ..models.choices import LAYER_CHOICES, POOLING_CHOICES, TEMPORAL_CHOICES
from ..train.presets import BALANCE_CHOICES, RECIPES
from .registry import command
from .types import non_negative_int, positive_float, positive_int


SYNTH_LAYOUTS = ("cremad", "ravdess", "folders")
LAYOUT_HELP = ("corpus layout: cremad (AudioWAV/, VideoFlash/), ravdess (Actor_NN/ with RAVDESS names), folders (DATA/<label>/*.wav|*.mp4|*.flv, "
               "with --speaker-pattern), or auto (default: told apart by the file names)")


@command("synth", "write a synthetic dataset: CREMA-D layout, RAVDESS layout or a folder per label")
def _synth(parser):
    parser.add_argument("out", help="output folder")
    parser.add_argument("--layout", choices=SYNTH_LAYOUTS, default="cremad")
    parser.add_argument("--actors", type=positive_int, default=None, help="number of actors / speakers (default: the demo size, 6 for the other layouts)")
    parser.add_argument("--labels", default=None, help="ravdess: RAVDESS emotions (default neutral,happy,angry); folders: any names "
                                                       "(default calm,cheerful,irritated)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--temporal", action="store_true", help="cremad: each face's expression rises and falls, its apex in a minority of "
                                                               "the frames (for the frames / temporal pooling options)")

    def run(args):
        from ..data.synth import layouts
        from ..data.synth.corpus import DEFAULT_ACTORS, make_synthetic_cremad
        from ..labels import check_labels, parse_label_list

        labels = check_labels(parse_label_list(args.labels), "--labels") if args.labels else None
        if args.layout == "cremad":
            if labels:
                raise EmolibError("--labels: the synthetic CREMA-D always has its six emotions")
            root = make_synthetic_cremad(args.out, actors=DEFAULT_ACTORS if args.actors is None else args.actors, seed=args.seed,
                                         temporal=args.temporal)
        elif args.layout == "ravdess":
            root = layouts.make_synthetic_ravdess(args.out, args.actors or layouts.DEFAULT_SPEAKERS, labels or layouts.DEFAULT_RAVDESS_LABELS, args.seed)
        else:
            root = layouts.make_synthetic_folders(args.out, args.actors or layouts.DEFAULT_SPEAKERS, labels or layouts.DEFAULT_FOLDER_LABELS, args.seed)
        print(f"wrote a synthetic {args.layout}-layout dataset to {root}")

    return run


@command("index", "index a corpus (CREMA-D, RAVDESS or a folder per label) into a manifest (CSV or Parquet)")
def _index(parser):
    parser.add_argument("data", nargs="?", default=None, help="corpus folder; default: CREMA-D auto-detected under /kaggle/input")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help=LAYOUT_HELP)
    parser.add_argument("--speaker-pattern", default=None, help="folders layout: a regular expression that finds the speaker in a file name, "
                                                                "e.g. '^(\\d+)_' (group 1, or a group named speaker)")
    parser.add_argument("--video-dir", default=None, help="CREMA-D: video root when it differs from DATA")
    parser.add_argument("--out", default="manifest.csv", help="manifest file: .csv, or .parquet")
    parser.add_argument("--fold", type=non_negative_int, default=None, help="use fold K (0-based) of k-fold splits instead of train/val/test")
    parser.add_argument("--folds", type=positive_int, default=5)
    parser.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL, help="default: sex-stratified speaker splits; hicmae: HiCMAE's 5-fold partition of CREMA-D")
    parser.add_argument("--seed", type=non_negative_int, default=0)

    def run(args):
        from ..data.manifest import index_dataset, summarize, write_manifest

        result = index_dataset(args.data, video_dir=args.video_dir, fold=args.fold, folds=args.folds, seed=args.seed, protocol=args.protocol,
                               layout=args.layout, speaker_pattern=args.speaker_pattern)
        write_manifest(result.manifest, args.out)
        print(summarize(result))
        print(f"manifest: {args.out}")

    return run


def _add_data_arguments(parser, cross_validation: bool = False) -> None:
    parser.add_argument("--data", default=None, help="a corpus folder (CREMA-D, RAVDESS, a folder per label) or a manifest file (.csv, .parquet); "
                                                     "default: CREMA-D auto-detected under /kaggle/input")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help=LAYOUT_HELP)
    parser.add_argument("--speaker-pattern", default=None, help="folders layout: a regular expression that finds the speaker in a file name")
    parser.add_argument("--label-order", default=None, metavar="A,B,C",
                        help="the order of the label set (default: a known corpus's own order, else sorted); every label of the data must be named")
    parser.add_argument("--video-dir", default=None, help="CREMA-D: video root when it differs from DATA")
    parser.add_argument("--fold", type=non_negative_int, default=None, help="use fold K (0-based) of actor-disjoint k-fold splits")
    if cross_validation:
        parser.add_argument("--folds", type=positive_int, default=None, metavar="K",
                            help="actor-disjoint K-fold cross-validation: train all three models per fold, report mean and std")
    else:
        parser.add_argument("--folds", type=positive_int, default=5, help="number of folds for --fold")
    parser.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of the actor split")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL,
                        help="default: sex-stratified 70/15/15 actor split (or --folds); hicmae: the 5-fold speaker-independent partition "
                             "of HiCMAE and AVF-MAE++ (fold K = paper fold K+1), validation carved from the training actors")
    parser.add_argument("--include-defective", action="store_true",
                        help="keep the files CREMA-D's README lists as defective (left out by default)")
    choices = ("intended", "perceived", "both") if cross_validation else ("intended", "perceived")
    parser.add_argument("--labels", choices=choices, default="intended",
                        help="intended: the file name's emotion; perceived: CREMA-D raters' majority vote of the model's modality "
                             "(voice-only, face-only, audio-visual votes; clips without a majority dropped)"
                             + ("; both: report the two side by side" if cross_validation else ""))
    parser.add_argument("--cache", default=None, help="cache folder for face crops and features (default ~/.cache/emolib or $EMOLIB_CACHE)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")


def _add_training_arguments(parser) -> None:
    parser.add_argument("--backbone", default=None, help="hub name, local directory or 'tiny' (voice default facebook/wav2vec2-base, face default resnet50)")
    parser.add_argument("--face-weights", default=None, help="weights of the face ResNet: a torchvision enum name, a local .safetensors/.pth file, or none (random init); default IMAGENET1K_V2")
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--lr", type=positive_float, default=None, help="learning rate of the heads")
    parser.add_argument("--encoder-lr", type=positive_float, default=None, help="learning rate of a fine-tuned pretrained encoder")
    parser.add_argument("--freeze", choices=("none", "cnn", "all"), default=None,
                        help="none: fine-tune all; cnn: freeze the convolutional front (voice default); all: frozen encoder + cached features (the CPU path)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--workers", type=non_negative_int, default=None, help="processes for face preparation (0: in this process)")
    parser.add_argument("--restart", action="store_true", help="delete the model folder's checkpoint and resume state, then start over")
    recipe = parser.add_argument_group("recipe (docs/recipe.md): a preset, and its options, each overriding the preset")
    recipe.add_argument("--recipe", choices=RECIPES, default=None,
                        help="seed (default): last layer, mean pooling, 3 frames, mean over frames; best: weighted layers, attentive statistics "
                             "pooling over speech, 16 frames with attention pooling")
    recipe.add_argument("--layers", choices=LAYER_CHOICES, default=None, help="voice: the last encoder layer, or a learned weighted sum of all layers")
    recipe.add_argument("--pooling", choices=POOLING_CHOICES, default=None, help="voice: mean, mean+std (stats) or attentive statistics pooling")
    recipe.add_argument("--speech-only", action=argparse.BooleanOptionalAction, default=None,
                        help="voice: pool over the frames Silero VAD marks as speech (needs the silero-vad package)")
    recipe.add_argument("--frames", type=positive_int, default=None, help="face: frames per clip, sampled evenly (seed 3, best 16; at most 64)")
    recipe.add_argument("--temporal", choices=TEMPORAL_CHOICES, default=None,
                        help="face: pool the frames' embeddings by their mean, attention, or a 2-layer transformer with attention pooling")
    recipe.add_argument("--balance", choices=BALANCE_CHOICES, default=None, help="fusion: none, or OGM-GE gradient modulation of the stronger modality")
    parser.add_argument("--license", default=None, metavar="ID",
                        help="the licence the models folder's card states (a Hugging Face licence id, e.g. odbl, cc-by-nc-sa-4.0, mit); "
                             "default: the training data's (CREMA-D odbl, RAVDESS cc-by-nc-sa-4.0, synthetic mit, else other)")
    parser.add_argument("--speaker-norm", choices=("on", "off"), default=None,
                        help="--backbone egemaps: standardise the features by each speaker's own statistics (default on: in training, "
                             "and in evaluation, which knows each clip's speaker) or by the corpus's only (off)")


def data_options(args):
    """The DataOptions of the parsed data arguments."""
    from ..train.options import DataOptions

    return DataOptions(args.data, args.video_dir, args.fold, args.folds or DataOptions.folds, args.split_seed, args.protocol, args.include_defective,
                       args.labels, args.layout, args.speaker_pattern, args.label_order, getattr(args, "label_map", None))


def model_options(args):
    """The ModelOptions of the parsed training arguments."""
    from ..train.options import ModelOptions

    return ModelOptions(args.backbone, args.face_weights, args.freeze, args.epochs, args.batch_size, args.lr, args.encoder_lr,
                        args.seed, args.device, args.workers, args.restart, getattr(args, "init_from", None), args.recipe, args.layers, args.pooling,
                        args.speech_only, args.frames, args.temporal, args.balance, getattr(args, "finetune", False),
                        getattr(args, "voice_lr", None), getattr(args, "face_lr", None), getattr(args, "speaker_norm", None))


@command("train", "train the voice, face or fusion model")
def _train(parser):
    parser.add_argument("kind", choices=("voice", "face", "fusion"))
    parser.add_argument("--out", default="models", help="models folder; the model goes to OUT/KIND/")
    _add_data_arguments(parser)
    _add_training_arguments(parser)
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="voice/face: start from this trained checkpoint's encoder (e.g. models/voice) with a new head for this data's labels")
    parser.add_argument("--finetune", action="store_true",
                        help="fusion: train the voice and face models' encoders together with the fusion head (GPU); the fine-tuned models are "
                             "saved in OUT/fusion/voice and OUT/fusion/face and serve the folder from then on")
    parser.add_argument("--voice-lr", type=positive_float, default=None, help="fusion --finetune: the voice encoder's learning rate (default: its own)")
    parser.add_argument("--label-map", default=None, metavar="MAP",
                        help="train on other label names: 'calm=,surprised=,neutral=NEU,...' or a file of FROM,TO lines (an empty target "
                             "leaves the label out; labels not named keep theirs), e.g. RAVDESS on CREMA-D's six codes")
    parser.add_argument("--face-lr", type=positive_float, default=None, help="fusion --finetune: the face encoder's learning rate (default: its own)")

    def run(args):
        from ..train.checks import check_train_options
        from ..train.options import load_manifest_for
        from ..train.recipes import train_with

        check_train_options(args.kind, model_options(args))  # before the data is read (train_with checks again for library callers)
        data = data_options(args)
        manifest = load_manifest_for(data)
        if args.license:  # once the data is known good; before training, whose card carries it
            from ..eval.card import set_license

            set_license(args.out, args.license)
        history = train_with(args.kind, manifest, args.out, model_options(args), args.cache, labels=args.labels, label_order=args.label_order,
                             about=data.about())
        best = max(history, key=lambda row: row["val_uar"]) if history else None
        if best:
            print(f"{args.kind}: best val UAR {best['val_uar']:.3f} (val acc {best['val_accuracy']:.3f}) at epoch {best['epoch']}")
        if history and "dominant" in history[-1]:
            print(f"OGM-GE: {history[-1]['dominant']} dominated the last epoch (voice/face score ratio {history[-1]['balance_ratio']:.2f})")

    return run


@command("evaluate", "evaluate trained models on the test split (or k-fold cross-validation)")
def _evaluate(parser):
    parser.add_argument("--models", default="models", help="folder with voice/, face/, fusion/ checkpoints")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                        help="the split evaluated (default test); all: every clip, for a corpus the models never heard (cross-corpus; "
                             "no speaker split needed)")
    _add_data_arguments(parser, cross_validation=True)
    _add_training_arguments(parser)
    parser.add_argument("--label-map", default=None, metavar="MAP",
                        help="cross-corpus: map the data's labels onto the models' ('calm=NEU,surprised=' or a file of FROM,TO lines; "
                             "an empty target drops the label); labels neither mapped nor known to the models are dropped and reported")
    parser.add_argument("--by", action="append", default=[], metavar="COLUMN", help="also break the metrics down by this manifest column (repeatable)")
    parser.add_argument("--allow-seen-speakers", action="store_true",
                        help="evaluate even when the split holds speakers the models trained or selected on (another --split-seed, --fold or "
                             "--protocol than training); every report then says so and the model card is not updated")

    def run(args):
        from ..train.checks import check_evaluate_options
        from ..train.recipes import cross_validate, evaluate_split

        if args.folds or (args.protocol == HICMAE and args.fold is None):
            cross_validate(data_options(args), args.folds or HICMAE_FOLDS, args.models, args.out, model_options(args), args.cache)
        else:
            check_evaluate_options(args.models, model_options(args))
            if args.license:
                from ..eval.card import set_license

                set_license(args.models, args.license)
            evaluate_split(replace(data_options(args), label_map=None), args.models, args.out, args.split, args.cache, args.device, args.label_map, args.by,
                           args.allow_seen_speakers, args.recipe, speaker_norm=args.speaker_norm != "off")

    return run


@command("demo", "synthetic CREMA-D -> train voice, face, fusion (tiny) -> evaluate -> results table")
def _demo(parser):
    parser.add_argument("--work", default="work", help="working folder for data, models and reports")
    parser.add_argument("--actors", type=positive_int, default=None)
    parser.add_argument("--epochs", type=positive_int, default=None)
    parser.add_argument("--device", default="auto")

    def run(args):
        from ..train.recipes import run_demo

        run_demo(args.work, actors=args.actors, epochs=args.epochs, device=args.device)

    return run




@command("rehearse", "dress rehearsal of the Kaggle run: synthetic CREMA-D at real proportions, one epoch of each model, timings and memory")
def _rehearse(parser):
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--clips", type=positive_int, default=None, help="synthetic clips (default 546 with full-size models, 96 with tiny; "
                                                                       "at least 48: the projection scales one epoch of them to CREMA-D)")
    parser.add_argument("--recipe", choices=RECIPES, default="best")
    parser.add_argument("--size", choices=("full", "tiny"), default=None, help="full-size random-init models (default on a GPU) or tiny (on a CPU)")
    parser.add_argument("--work", default="work/rehearsal", help="folder for the data, models and rehearsal.json")

    def run(args):
        from ..train.rehearse import rehearse

        rehearse(args.work, args.device, args.clips, args.recipe, args.size)

    return run
