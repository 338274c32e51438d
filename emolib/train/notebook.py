"""Notebook conveniences: one parameter block for local (synthetic, tiny) and Kaggle (GPU) runs,
and creating the demo data.

The notebooks' ``parameters`` cell holds the local defaults; ``kaggle = True`` swaps in the Kaggle
block below (``resolve_parameters``), so a Kaggle run is one switch away.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

# The Kaggle block: real CREMA-D auto-detected under /kaggle/input, pretrained backbones, CUDA.
KAGGLE_DATA = None  # None: emolib.data.manifest.index_dataset finds CREMA-D under /kaggle/input
KAGGLE_OUT = "/kaggle/working/emolib"
KAGGLE_DEVICE = "cuda"
KAGGLE_BACKBONES = {"voice": "facebook/wav2vec2-base", "face": "resnet50"}
KAGGLE_FACE_WEIGHTS = "IMAGENET1K_V2"
KAGGLE_FREEZE = {"voice": "cnn", "face": "none"}
KINDS = ("voice", "face", "fusion")
KAGGLE_MEDIA = "/kaggle/working/cremad"
KAGGLE_CACHE = "/kaggle/temp/emolib-cache"  # face crops and features: remade each session (16-frame crops of CREMA-D are ~18 GB,
# more than the 20 GB /kaggle/working keeps with everything else; the session's disk holds about 73 GB)
KAGGLE_RECIPE = "best"  # the Kaggle path trains the recipe the evidence supports (docs/recipe.md)
LOCAL_RECIPE = "seed"  # the local demo's: `make demo` trains the seed recipe, and notebooks 02-04 reuse its models
BENCHMARK_DATA = "hicmae-synth"  # notebook 07's local data: a small synthetic CREMA-D
SYNTH_CLIPS_PER_EMOTION = {BENCHMARK_DATA: 1}  # folders ensure_data writes besides the demo's  # notebook 01's download = True: the official media, fetched once (save the output as a dataset)


def kaggle_block(kind: str | None = None) -> dict:
    """The Kaggle values of the parameters for a notebook about ``kind`` (voice, face, fusion or None)."""
    return {
        "data": KAGGLE_DATA,
        "out": KAGGLE_OUT,
        "device": KAGGLE_DEVICE,
        "backbone": KAGGLE_BACKBONES.get(kind),
        "face_weights": KAGGLE_FACE_WEIGHTS if kind == "face" else None,
        "freeze": KAGGLE_FREEZE.get(kind),
    }


def resolve_parameters(kaggle: bool = False, kind: str | None = None, data=None, out="work", backbone: str | None = "tiny",
                       epochs: int | None = None, batch_size: int | None = None, device: str = "auto",
                       freeze: str | None = None, face_weights: str | None = None, recipe: str | None = None, **extra) -> SimpleNamespace:
    """The notebook's parameters, completed: paths, defaults and the TrainConfig of ``kind``.

    With ``kaggle=True`` the Kaggle block (``kaggle_block(kind)``) replaces data, out, device,
    backbone and face weights; freeze, epochs and batch_size keep the notebook's values (None:
    the Kaggle freeze / the defaults). Paths come back absolute. None means the default: epochs
    are ``recipes.DEMO_EPOCHS[kind]`` for the ``tiny`` backbone (the count of ``make demo``, so
    its finished models are reused) and ``options.DEFAULTS`` otherwise; batch size from ``options.DEFAULTS``; freeze ``none`` for tiny (as the demo) and
    ``options.DEFAULT_FREEZE`` otherwise. Returns a namespace with kaggle, kind, data, out,
    manifest, models, reports, cache (KAGGLE_CACHE on Kaggle: not kept between sessions), backbone, face_weights, freeze, epochs, batch_size, device,
    train (None without a kind), synthetic, recipe (None: KAGGLE_RECIPE on Kaggle, LOCAL_RECIPE locally), plus any
    ``extra`` values unchanged.
    """
    from .presets import check_recipe
    from ..models.backbones import TINY
    from .options import DEFAULT_FREEZE, DEFAULTS, is_synthetic, train_config
    from .recipes import DEMO_EPOCHS

    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)} or None")
    if kaggle:
        block = kaggle_block(kind)
        data, out, device, backbone = block["data"], block["out"], block["device"], block["backbone"]
        face_weights, freeze = block["face_weights"], freeze or block["freeze"]
    tiny = backbone == TINY
    if kind is not None:
        epochs = epochs or (DEMO_EPOCHS[kind] if tiny else DEFAULTS[kind].epochs)
        batch_size = batch_size or DEFAULTS[kind].batch_size
    if kind in DEFAULT_FREEZE:
        freeze = freeze or ("none" if tiny else DEFAULT_FREEZE[kind])
    out = Path(out).expanduser().resolve()
    return SimpleNamespace(
        kaggle=bool(kaggle), kind=kind, data=Path(data).expanduser().resolve() if data is not None else None, out=out,
        manifest=out / "manifest.csv", models=out / "models", reports=out / "reports", cache=Path(KAGGLE_CACHE) if kaggle else out / "cache",
        backbone=backbone, face_weights=None if tiny else face_weights, freeze=freeze,
        epochs=epochs, batch_size=batch_size, device=device,
        train=train_config(kind, backbone, epochs=epochs, batch_size=batch_size, device=device) if kind else None,
        synthetic=is_synthetic(data) if data is not None else False, recipe=check_recipe(recipe or (KAGGLE_RECIPE if kaggle else LOCAL_RECIPE)),
        **extra,
    )


def ensure_data(data, actors: int | None = None, progress: bool = True) -> Path | None:
    """Write a synthetic data set at ``data`` when it is missing and ``data`` is the demo's folder (named
    ``recipes.DEMO_DATA``, i.e. cremad-synth) or notebook 07's (BENCHMARK_DATA: one clip per actor and emotion);
    return ``data``. Any other missing folder is left alone (indexing it then reports it), and None (auto-detect
    on Kaggle) passes through.
    """
    from .options import SYNTHETIC_MARKER
    from .recipes import DEMO_DATA

    if data is None:
        return None
    data = Path(data)
    if data.name in (DEMO_DATA, *SYNTH_CLIPS_PER_EMOTION) and not (data / SYNTHETIC_MARKER).exists():
        from ..data.synth.corpus import CLIPS_PER_EMOTION, DEFAULT_ACTORS, make_synthetic_cremad

        make_synthetic_cremad(data, actors=actors or DEFAULT_ACTORS, clips_per_emotion=SYNTH_CLIPS_PER_EMOTION.get(data.name, CLIPS_PER_EMOTION),
                              progress=progress)
    return data


def fetch_cremad(data=None, to=KAGGLE_MEDIA, progress: bool = True) -> tuple[Path, Path | None]:
    """Notebook 01's ``download = True``: CREMA-D's media from the official sources into ``to`` (once: verified files are skipped),
    then checked against the release list. With CREMA-D's WAVs attached (``data``, or found under /kaggle/input) only the videos
    are fetched. Returns (the data folder, the video folder or None) for ``index_dataset``; DataError when the copy is incomplete."""
    from ..data.cremad_tree import find_kaggle_data
    from ..data.download import download, licence_lines, summary
    from ..data.release import verify
    from ..errors import DataError

    if data is None:
        try:
            data = find_kaggle_data()[0]
        except DataError:
            data = None
    parts = ("video",) if data is not None else ("audio", "video")
    for line in licence_lines(to):
        print(line)
    print(summary(download(to, parts, progress=progress)))
    result = verify(to, parts, progress=progress)
    print(result.summary(to, hashed=False))
    if not result.complete:
        raise DataError(f"{to}: the CREMA-D copy is not complete; run this cell again to continue, or `emolib download cremad --to {to} --source URL`")
    return (Path(data) if data is not None else Path(to)), (Path(to) / "VideoFlash" if data is not None else None)


KERNEL_SMOKE = "kaggle-smoke"  # the Kaggle kernel notebook's folder off Kaggle (under ../work): its tiny CPU run
SMOKE_ACTORS = 6


def on_kaggle(kaggle: bool | None = None) -> bool:
    """``kaggle`` as given, or (None) whether this runs in a Kaggle kernel (its /kaggle/input exists)."""
    return Path("/kaggle/input").is_dir() if kaggle is None else bool(kaggle)


def kernel_steps(kaggle: bool | None = None, recipe: str = KAGGLE_RECIPE, folds: int | None = None, out=None) -> SimpleNamespace:
    """The Kaggle kernel's pipeline as ``emolib`` command lines (``cli.main.main`` runs each): doctor, the CREMA-D videos, the three
    models with ``recipe``, the test-split evaluation, and with ``folds`` a cross-validation. On Kaggle: CREMA-D's audio dataset
    under /kaggle/input, the videos downloaded to /kaggle/working/cremad, pretrained backbones on the GPU, everything written to
    /kaggle/working. Elsewhere: the same steps as a smoke run on a small synthetic set with tiny models on the CPU (``out``,
    default ../work/kaggle-smoke)."""
    from .presets import check_recipe

    recipe = check_recipe(recipe)
    if on_kaggle(kaggle):
        out, data, device = Path("/kaggle/working"), [], "cuda"
        video = ["--video-dir", f"{KAGGLE_MEDIA}/VideoFlash"]
        extra = {"voice": ["--backbone", KAGGLE_BACKBONES["voice"]], "face": ["--backbone", KAGGLE_BACKBONES["face"]], "fusion": []}
        cache, download = ["--cache", KAGGLE_CACHE], ["download", "cremad", "--to", KAGGLE_MEDIA, "--parts", "video"]
    else:
        out = Path(out or Path("..") / "work" / KERNEL_SMOKE).expanduser().resolve()
        synthetic = out / "cremad-synth"
        if not (synthetic / "README.txt").exists():
            from ..data.synth.corpus import make_synthetic_cremad

            make_synthetic_cremad(synthetic, actors=SMOKE_ACTORS, clips_per_emotion=1, progress=False)
        data, video, device, download = ["--data", str(synthetic)], [], "cpu", None
        tiny = ["--backbone", "tiny", "--freeze", "none", "--epochs", "1"]
        extra = {"voice": tiny, "face": tiny, "fusion": ["--epochs", "1"]}
        cache = ["--cache", str(out / "cache")]
    models, reports = out / "models", out / "reports"
    common = data + video + cache + ["--device", device]
    steps = {"doctor": ["doctor", "--device", device, *(["--data", data[1], "--backbone", "tiny", "--face-weights", "none"] if data else
                                                       ["--video-dir", f"{KAGGLE_MEDIA}/VideoFlash"])]}
    if download:
        steps["videos"] = download
    for kind in KINDS:
        steps[f"train {kind}"] = ["train", kind, *common, "--recipe", recipe, *extra[kind], "--out", str(models)]
    steps["evaluate"] = ["evaluate", *common, "--models", str(models), "--out", str(reports)]
    if folds:
        smoke = [] if on_kaggle(kaggle) else extra["voice"]
        steps["cross-validation"] = ["evaluate", *common, "--folds", str(folds), "--recipe", recipe, *smoke, "--models", str(out / "cv"),
                                     "--out", str(reports / "cv")]
    return SimpleNamespace(kaggle=on_kaggle(kaggle), out=out, models=models, reports=reports, steps=steps)


KERNEL_SLUG = "emolib-cremad"
KERNEL_TITLE = "emolib cremad"  # Kaggle derives the slug from the title ("emolib CREMA-D" would be emolib-crema-d): they must agree
KERNEL_NOTEBOOK = "emolib-cremad.ipynb"
KERNEL_DATASETS = ("ejlok1/cremad",)  # Kaggle's CREMA-D audio dataset (AudioWAV); the videos are downloaded by the kernel
DEFAULT_INSTALL = "emolib[egemaps]"


def kernel_metadata(user: str) -> dict:
    """``kernel-metadata.json`` of the pipeline kernel for Kaggle user ``user`` (what ``kaggle kernels push`` reads)."""
    return {"id": f"{user}/{KERNEL_SLUG}", "title": KERNEL_TITLE, "code_file": KERNEL_NOTEBOOK, "language": "python", "kernel_type": "notebook",
            "is_private": True, "enable_gpu": True, "enable_tpu": False, "enable_internet": True, "dataset_sources": list(KERNEL_DATASETS),
            "competition_sources": [], "kernel_sources": [], "model_sources": []}


def write_kernel(out, user: str, recipe: str = KAGGLE_RECIPE, folds: int | None = None, install: str = DEFAULT_INSTALL) -> Path:
    """The folder ``kaggle kernels push -p OUT`` pushes: kernel-metadata.json for ``user`` and the pipeline notebook (the packaged
    template, ``emolib/assets/kaggle``) with ``recipe``, ``folds`` and ``install`` in its parameters cell."""
    import json
    import re
    from importlib import resources

    from ..errors import EmolibError
    from ..files import atomic_write
    from .presets import check_recipe

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", user or ""):
        raise EmolibError(f"--user {user!r}: not a Kaggle user name (letters, digits, - and _)")
    check_recipe(recipe)
    notebook = json.loads((resources.files("emolib") / "assets" / "kaggle" / KERNEL_NOTEBOOK).read_text())
    values = {"recipe": repr(recipe), "folds": repr(folds), "install": repr(install)}
    for cell in notebook["cells"]:
        if "parameters" in cell["metadata"].get("tags", []):
            lines = []
            for line in "".join(cell["source"]).splitlines(keepends=True):
                name = line.split("=", 1)[0].strip()
                if name in values:
                    value, comment = values[name], line.split("#", 1)[1] if "#" in line else ""
                    line = f"{name} = {value}".ljust(len(line.split("#", 1)[0]) - 1) + (f" #{comment}" if comment else "\n")
                lines.append(line)
            cell["source"] = lines
    out = Path(out)
    atomic_write(out / "kernel-metadata.json", json.dumps(kernel_metadata(user), indent=2) + "\n")
    atomic_write(out / KERNEL_NOTEBOOK, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return out
