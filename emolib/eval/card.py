"""Model cards: the ``README.md`` of a trained models folder, in the Hugging Face model-card format.

The front matter (``huggingface_hub.ModelCardData``: library, tags, label set, and the test-split
metrics as ``model-index`` results) and a body that says what the models were trained on (data,
protocol, split speakers), their label set, their metrics on the named split, how to use them,
their intended use and their limitations. The folder can then be uploaded as it is
(``huggingface-cli upload OWNER/NAME MODELS``) and loaded by name (``Predictor.from_pretrained``).
"""
from __future__ import annotations

from pathlib import Path

from ..files import atomic_write
from ..models.checkpoint import MODEL_KINDS, is_checkpoint, read_checkpoint_config
from .provenance import card_refusal

CARD_FILE = "README.md"
CARD_SETTINGS = "card.json"  # a models folder's card choices that no checkpoint records: {"license": ID} (--license)
LICENSES = {"cremad": "odbl", "ravdess": "cc-by-nc-sa-4.0", "synthetic": "mit"}  # by the training data (Hugging Face licence ids)
DATASETS = {"cremad": "CREMA-D", "ravdess": "RAVDESS"}
LICENSE_NOTES = {
    "odbl": "CREMA-D is under the Open Database License (ODbL 1.0); its contents under the Database Contents License (DbCL 1.0). "
            "Models trained on it inherit what those licences ask: attribution, and share-alike for a derived database.",
    "cc-by-nc-sa-4.0": "RAVDESS is under CC BY-NC-SA 4.0: models trained on it are for non-commercial use and shared alike.",
    "mit": "Trained on emolib's synthetic data only.",
    "other": "The training data's licence is not known to emolib: set it with `emolib evaluate --license ID` (a Hugging Face "
             "licence identifier) before sharing these models.",
}
SPARE_CARD_FILE = "MODEL_CARD.md"  # where the card goes when README.md is the user's own
CARD_MARK = "library_name: emolib"
TASKS = {"voice": "audio-classification", "face": "image-classification", "fusion": "audio-classification", "late": "audio-classification"}
METRIC_NAMES = {"accuracy": "accuracy", "uar": "unweighted average recall (balanced accuracy)", "macro_f1": "macro F1"}
LIMITATIONS = (
    "Acted emotions: a corpus of actors portraying emotions on cue is not spontaneous speech; expect lower accuracy on "
    "everyday recordings, other languages, other microphones and cameras, and on speakers unlike those in the training data.",
    "The models output one of their labels for every input, including inputs that show none of them.",
    "Not for decisions about people (hiring, policing, health, education): emotion recognition from faces and voices is "
    "unreliable across individuals and cultures.",
)


def model_card(models_dir, report: dict | None = None) -> str:
    """The model card text of ``models_dir`` (voice/, face/, fusion/ checkpoints), with ``report``'s metrics (metrics.json)."""
    from huggingface_hub import ModelCard, ModelCardData

    models = _checkpoints(models_dir)
    name = Path(models_dir).absolute().name
    labels = next(iter(models.values()))["labels"] if models else []
    data = next((config.get("data") for config in models.values() if config.get("data")), {}) or {}
    license_id = card_license(models_dir, data)
    card_data = ModelCardData(library_name="emolib", model_name=name, tags=["emotion-recognition", "speech-emotion-recognition",
                              "facial-expression-recognition", "multimodal"], pipeline_tag="audio-classification",
                              eval_results=_eval_results(report, data) or None, license=license_id,
                              datasets=[DATASETS[data["layout"]]] if data.get("layout") in DATASETS and not data.get("synthetic") else None,
                              base_model=base_models(models) or None)
    card_data.labels = list(labels)  # kept in the front matter: the label set, in the models' output order
    body = "\n".join(["", f"# {name}: emolib emotion recognition models", "", *_labels_section(labels), *_models_section(models),
                      *_data_section(data, report), *_license_section(license_id), *_results_section(report), *_usage_section(name),
                      *_limitations_section()])
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}").content


def card_license(models_dir, data: dict) -> str:
    """The card's licence: the one the user set (``card.json``, ``--license``), else the training data's (CREMA-D odbl, RAVDESS
    cc-by-nc-sa-4.0, the synthetic set mit), else "other"."""
    import json

    settings = Path(models_dir) / CARD_SETTINGS
    if settings.is_file():
        chosen = json.loads(settings.read_text()).get("license")
        if chosen:
            return str(chosen)
    return LICENSES.get("synthetic" if data.get("synthetic") else data.get("layout"), "other")


def set_license(models_dir, license_id: str) -> None:
    """Record ``--license ID`` for ``models_dir``'s card (``card.json``)."""
    import json

    atomic_write(Path(models_dir) / CARD_SETTINGS, json.dumps({"license": license_id}, indent=2))


def base_models(models: dict) -> list[str]:
    """The backbones the models started from (the voice model's hub name, the face ResNet's), for the card's ``base_model``."""
    names = []
    for kind in ("voice", "face"):
        model = (models.get(kind) or {}).get("model") or {}
        backbone = model.get("backbone")
        if backbone and backbone not in ("tiny", "egemaps") and not str(backbone).startswith("/"):
            names.append(f"{backbone}" if kind == "voice" or "/" in str(backbone) else f"torchvision/{backbone}")
    return names


def write_model_card(models_dir, report: dict | None = None) -> Path | None:
    """Write ``models_dir/README.md`` (``model_card``) atomically and return its path; None when the folder holds no checkpoint.

    ``report`` must be an evaluation of the models' own test split (``refusal`` says why another is not written).
    A README.md that is not an emolib model card is the user's and is left as it is: the card then
    goes to MODEL_CARD.md, with a warning.
    """
    import warnings

    if not _checkpoints(models_dir) or refusal(models_dir, report):
        return None
    path = Path(models_dir) / CARD_FILE
    if path.is_file() and CARD_MARK not in path.read_text(errors="ignore").split("\n---", 1)[0]:
        path = path.with_name(SPARE_CARD_FILE)
        warnings.warn(f"{path.with_name(CARD_FILE)} is not an emolib model card: left as it is; the model card is {path}", stacklevel=2)
    atomic_write(path, model_card(models_dir, report))
    return path


def refusal(models_dir, report: dict | None) -> str | None:
    """Why ``report`` may not go into the card of ``models_dir`` (``provenance.card_refusal``); None when it may, or without a report."""
    if report is None:
        return None
    folders = {kind: Path(models_dir) / kind for kind in _checkpoints(models_dir)}
    return card_refusal(folders, report)


def _checkpoints(models_dir) -> dict[str, dict]:
    found = {}
    for kind in MODEL_KINDS:
        folder = Path(models_dir) / kind
        if is_checkpoint(folder):
            found[kind] = read_checkpoint_config(folder)[1]
    return found


def _eval_results(report: dict | None, data: dict) -> list:
    from huggingface_hub import EvalResult

    if not report:
        return []
    results = []
    for kind, metrics in report["models"].items():
        for metric in ("accuracy", "uar", "macro_f1"):
            results.append(EvalResult(task_type=TASKS[kind], task_name=f"emotion recognition ({kind})", dataset_type=data.get("layout", "custom"),
                                      dataset_name=data.get("name", "custom"), dataset_split=report["split"], metric_type=metric,
                                      metric_value=round(float(metrics[metric]), 4), metric_name=f"{kind} {METRIC_NAMES[metric]}"))
    return results


def _labels_section(labels) -> list[str]:
    return ["## Labels", "", f"{len(labels)} labels, in the order of the models' outputs: " + ", ".join(f"`{label}`" for label in labels), ""]


def _models_section(models: dict) -> list[str]:
    lines = ["## Models", "", "| model | backbone | freeze | recipe | best validation UAR | fine-tuned from |", "|---|---|---|---|---|---|"]
    for kind, config in models.items():
        model = config["model"]
        backbone = model.get("backbone", f"fusion MLP over voice ({model.get('voice_dim')}) + face ({model.get('face_dim')}) embeddings")
        val = config.get("val", {}).get("uar")
        val_text = f"{val:.3f}" if val is not None else "-"
        lines.append(f"| {kind} | {backbone} | {model.get('freeze', '-')} | {_recipe(config)} | {val_text} | {config.get('init_from', '-')} |")
    return lines + [""]


def _recipe(config: dict) -> str:
    """A checkpoint's recipe and the options behind it (docs/recipe.md); checkpoints of earlier versions: seed."""
    model, audio = config["model"], (config.get("preprocessing") or {}).get("audio") or {}
    face = (config.get("preprocessing") or {}).get("face") or {}
    if config["kind"] == "voice":
        details = f"{model.get('layers', 'last')} layers, {model.get('pooling', 'mean')} pooling" + (", speech only" if audio.get("speech_only") else "")
    elif config["kind"] == "face":
        details = f"{face.get('frames', '?')} frames, {model.get('temporal', 'mean')} over frames"
    else:
        details = "joint fine-tuning" if config.get("finetuned") else "on cached embeddings"
    return f"{config.get('recipe', 'seed')} ({details})"


def _data_section(data: dict, report: dict | None) -> list[str]:
    lines = ["## Training data", ""]
    if not data:
        return lines + ["Not recorded (models trained by an emolib before model cards).", ""]
    lines.append(f"- data: {data.get('name', '-')} ({data.get('layout', '-')} layout), {data.get('clips', '-')} clips")
    lines.append(f"- protocol: {data.get('protocol', 'default')}, fold: {data.get('fold')}; speaker-disjoint splits; "
                 f"model selection on the validation split")
    for split, speakers in data.get("split_speakers", {}).items():
        lines.append(f"- {split} speakers ({len(speakers)}): {', '.join(map(str, speakers))}")
    if report and report.get("label_map"):
        lines.append(f"- evaluation label map: {report['label_map']['map']}; dropped clips: {report['label_map']['dropped']}")
    return lines + [""]


def _license_section(license_id: str) -> list[str]:
    return ["## Licence", "", f"`{license_id}`. {LICENSE_NOTES.get(license_id, '')}".rstrip(), ""]


def _results_section(report: dict | None) -> list[str]:
    if not report:
        return ["## Results", "", "Not evaluated yet: `emolib evaluate --models MODELS` writes the test-split metrics here.", ""]
    lines = [f"## Results on the {report['split']} split", "",
             f"{report['clips']} clips of {len(report['actors'])} speakers never seen in training "
             f"({report.get('labels', 'intended')} labels; excluded clips: {len(report.get('excluded', []))}).", "",
             "| model | n | accuracy | UAR | macro-F1 | clips outside the label set |", "|---|---|---|---|---|---|"]
    for kind, metrics in report["models"].items():
        outside = sum(metrics.get("outside_label_set", {}).values())
        lines.append(f"| {kind} | {metrics['n']} | {metrics['accuracy']:.3f} | {metrics['uar']:.3f} | {metrics['macro_f1']:.3f} | {outside} |")
    return lines + [""] + _groups_section(report) + _calibration_section(report)


def _groups_section(report: dict) -> list[str]:
    """Each model's UAR per group of people on the test split (``eval.fairness``)."""
    rows = [(kind, column, group, entry, block) for kind, metrics in report["models"].items()
            for column, block in (metrics.get("fairness") or {}).items() for group, entry in block["groups"].items()]
    if not rows:
        return []
    lines = ["### Results per group of people", "",
             "UAR of each group of the test split (a group under 30 clips is too small to read); the gap is the best group's UAR minus "
             "the worst's; for the face model, the share of the group's videos in which a face was detected.", "",
             "| model | grouped by | group | clips | UAR | gap in this grouping | face detected |", "|---|---|---|---|---|---|---|"]
    for kind, column, group, entry, block in rows:
        small = " (too small)" if entry["too_small"] else ""
        detected = f"{entry['detection_rate']:.2f}" if entry.get("detection_rate") is not None else "-"
        lines.append(f"| {kind} | {column} | {group} | {entry['clips']}{small} | {entry['uar']:.3f} | {block['gap']:.3f} | {detected} |")
    return lines + [""]


def _calibration_section(report: dict) -> list[str]:
    blocks = {kind: metrics["calibration"] for kind, metrics in report["models"].items() if metrics.get("calibration")}
    if not blocks:
        return []
    lines = ["### Calibration", "", "Temperature scaling fitted on the validation split; expected calibration error (15 bins) on the test split "
             "before and after it, negative log-likelihood and Brier score after.", "",
             "| model | temperature | ECE before | ECE after | NLL | Brier |", "|---|---|---|---|---|---|"]
    for kind, block in blocks.items():
        temperature = f"{block['temperature']:.2f}" if block.get("temperature") else "-"
        lines.append(f"| {kind} | {temperature} | {block['ece_before']:.3f} | {block['ece']:.3f} | {block['nll']:.3f} | {block['brier']:.3f} |")
    return lines + [""]


def _usage_section(name: str) -> list[str]:
    return ["## How to use", "", "```python", "from emolib import Predictor", "",
            f'predictor = Predictor.from_pretrained("{name}")  # a local folder or a Hugging Face Hub name OWNER/NAME',
            'print(predictor.predict_files(video="clip.mp4").summary())', "```", "",
            f"or `emolib predict --models {name} --video clip.mp4`.", ""]


def _limitations_section() -> list[str]:
    lines = ["## Intended use", "", "Research and teaching: emotion recognition from speech and faces, and comparing unimodal with fused models.", "",
             "## Limitations", ""]
    return lines + [f"- {limitation}" for limitation in LIMITATIONS] + [""]
