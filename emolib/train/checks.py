"""Options that would be dropped without a word are refused in one line, before anything is read or trained.

- ``train``: an option of another model (``--layers`` on face, ``--temporal`` on voice, ``--frames`` on fusion, ...), an
  option of a mode that is off (``--voice-lr`` without ``--finetune``), a combination no model can use (``--finetune`` with
  ``--freeze``; temporal pooling of one frame), and more frames than a clip holds (``MAX_FRAMES``);
- ``evaluate`` of trained models (no cross-validation, which trains): a recipe option that differs from what the
  checkpoints were trained with (a checkpoint fixes its inputs), and a training option, which it would not use.
"""
from __future__ import annotations

from ..errors import ModelError
from .presets import OPTION_NAMES, apply_recipe

MAX_FRAMES = 64  # CREMA-D's clips hold about 36-150 frames (1.2-5 s at 29.97 fps); HiCMAE samples 16, the seed recipe 3
OWNERS = {"layers": "voice", "pooling": "voice", "speech_only": "voice", "frames": "face", "temporal": "face", "face_weights": "face",
          "balance": "fusion", "speaker_norm": "voice"}
EGEMAPS_IGNORES = ("layers", "pooling", "speech_only", "freeze", "encoder_lr", "init_from")  # a wav2vec2's options: the functionals have none
FUSION_IGNORES = ("backbone", "face_weights", "freeze", "encoder_lr")  # the fusion model trains on its encoders, which keep their own
TRAINING_ONLY = ("backbone", "face_weights", "freeze", "epochs", "batch_size", "lr", "encoder_lr", "workers", "restart")
TRAINED = {  # recipe option: (the model kind that has it, where its checkpoint config keeps it, the value of older checkpoints)
    "layers": ("voice", ("model", "layers"), "last"),
    "pooling": ("voice", ("model", "pooling"), "mean"),
    "speech_only": ("voice", ("preprocessing", "audio", "speech_only"), False),
    "frames": ("face", ("preprocessing", "face", "frames"), 3),
    "temporal": ("face", ("model", "temporal"), "mean"),
    "balance": ("fusion", ("training", "balance"), "none"),
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def given(options, names) -> list[str]:
    """The options of ``names`` the user set (None and False are unset)."""
    return [name for name in names if getattr(options, name, None) not in (None, False)]


def check_train_options(kind: str, options) -> None:
    """ModelError in one line when ``emolib train KIND`` would ignore or cannot honour one of ``options`` (a ModelOptions)."""
    foreign = [name for name in given(options, OWNERS) if OWNERS[name] != kind] + (given(options, FUSION_IGNORES) if kind == "fusion" else [])
    foreign = list(dict.fromkeys(foreign))
    if kind == "fusion" and options.finetune and options.freeze is not None:
        raise ModelError(f"--finetune trains both encoders, each keeping the --freeze it was trained with; leave out --freeze {options.freeze}")
    if foreign:
        whose = "; ".join(f"{flag(name)} is for the {OWNERS[name]} model" if name in OWNERS else
                          f"{flag(name)} is not used (the fusion model trains on the voice and face models, which keep their own)"
                          for name in foreign)
        raise ModelError(f"`emolib train {kind}` would ignore {', '.join(flag(name) for name in foreign)} ({whose}); leave "
                         f"{'it' if len(foreign) == 1 else 'them'} out")
    egemaps = kind == "voice" and options.backbone == "egemaps"
    if egemaps and given(options, EGEMAPS_IGNORES):
        raise ModelError(f"--backbone egemaps (openSMILE's functionals and a small head) has no {', '.join(flag(name) for name in given(options, EGEMAPS_IGNORES))}: "
                         "leave it out")
    if kind == "voice" and not egemaps and options.speaker_norm is not None:
        raise ModelError("--speaker-norm is for --backbone egemaps (the wav2vec2 voice model standardises each clip's waveform)")
    if kind != "fusion" and given(options, ("finetune", "voice_lr", "face_lr")):
        raise ModelError("--finetune, --voice-lr and --face-lr apply to `emolib train fusion` (joint fine-tuning of both encoders)")
    if kind == "fusion" and not options.finetune and given(options, ("voice_lr", "face_lr")):
        raise ModelError(f"{' and '.join(flag(name) for name in given(options, ('voice_lr', 'face_lr')))} set the encoders' learning "
                         "rates of joint fine-tuning: add --finetune, or leave them out")
    if kind == "face":
        check_frames(options)


def options_for(kind: str, options):
    """``options`` (a ModelOptions for all three models, as cross-validation has them) with the other models' options unset."""
    from dataclasses import replace

    unset = [name for name in OWNERS if OWNERS[name] != kind] + (list(FUSION_IGNORES) if kind == "fusion" else [])
    return replace(options, **{name: None for name in unset})


def check_frames(options) -> None:
    """More frames than ``MAX_FRAMES``, or temporal pooling (attention, transformer) over one frame, is refused."""
    if options.frames is not None and options.frames > MAX_FRAMES:
        raise ModelError(f"--frames {options.frames}: at most {MAX_FRAMES} frames per clip (CREMA-D's clips hold about 36-150 frames, "
                         f"1.2-5 s at 29.97 fps; the best recipe samples 16)")
    preset = apply_recipe(options)
    if preset.temporal != "mean" and preset.frames < 2:
        source = "" if options.temporal else f" (from --recipe {preset.recipe})"
        raise ModelError(f"--temporal {preset.temporal}{source} pools over a clip's frames; with --frames {preset.frames} there is one: "
                         f"give --frames 2 or more, or --temporal mean")


def check_evaluate_options(models_dir, options) -> None:
    """``emolib evaluate`` of the trained models of ``models_dir`` (no cross-validation): ModelError in one line for a training
    option (it trains nothing) and for a recipe option that is not what the checkpoints were trained with, or whose model is missing."""
    from ..models.checkpoint import find_models, read_checkpoint_config

    training = given(options, TRAINING_ONLY)
    if training:
        raise ModelError(f"{', '.join(flag(name) for name in training)}: training options, and this evaluation trains nothing (the "
                         f"models of {models_dir} are evaluated as they are); leave them out, or cross-validate with --folds K, which trains")
    found = find_models(models_dir)
    for name in [name for name in OPTION_NAMES if getattr(options, name) is not None]:
        kind, where, older = TRAINED[name]
        if kind not in found:
            raise ModelError(f"{flag(name)} is a {kind} model option, and {models_dir} has no {kind} model; leave it out")
        value = stored(read_checkpoint_config(found[kind])[1], where, older)
        if value != getattr(options, name):
            shown = lambda value: ("" if value else "no-") if isinstance(value, bool) else f" {value}"  # noqa: E731
            wanted, trained = shown(getattr(options, name)), shown(value)
            as_flag = (lambda text: f"--{text}{name.replace('_', '-')}") if isinstance(value, bool) else (lambda text: f"{flag(name)}{text}")
            raise ModelError(f"{found[kind]}: trained with {as_flag(trained)}, not {as_flag(wanted)}; a checkpoint fixes its inputs: evaluate "
                             f"without {flag(name)}, or train with {as_flag(wanted)}")


def stored(config: dict, where: tuple, older):
    """The value at ``where`` in a checkpoint config, or ``older`` (what checkpoints made before the option had)."""
    for key in where:
        if not isinstance(config, dict) or key not in config:
            return older
        config = config[key]
    return config
