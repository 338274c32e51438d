"""The models folder's card is a Hugging Face model card: huggingface_hub's own parser (offline) reads its licence (from the
training data, or --license), datasets, base models, library name and pipeline tag."""
from __future__ import annotations

import json
import shutil

import pytest
from huggingface_hub import ModelCard

from emolib.cli.main import main
from emolib.eval.card import LICENSE_NOTES, write_model_card

from test_predict import make_untrained_models


def with_data(models, record: dict, backbone: str | None = None):
    """Give the checkpoints in ``models`` a training-data record (and the voice one a hub backbone name), as training writes them."""
    for kind in ("voice", "face", "fusion"):
        path = models / kind / "config.json"
        config = json.loads(path.read_text())
        config["data"] = record
        if backbone and kind == "voice":
            config["model"]["backbone"] = backbone
        path.write_text(json.dumps(config))
    return models


@pytest.mark.parametrize(("record", "license_id", "datasets"), [
    ({"layout": "cremad", "name": "CREMA-D", "clips": 7442}, "odbl", ["CREMA-D"]),
    ({"layout": "ravdess", "name": "ravdess", "clips": 1440}, "cc-by-nc-sa-4.0", ["RAVDESS"]),
    ({"layout": "cremad", "name": "cremad-synth", "clips": 120, "synthetic": True}, "mit", None),
    ({"layout": "folders", "name": "mine", "clips": 50}, "other", None),
])
def test_the_card_licence_comes_from_the_training_data(tmp_path, record, license_id, datasets):
    models = with_data(make_untrained_models(tmp_path / "models"), record, backbone="facebook/wav2vec2-base")
    card = ModelCard.load(write_model_card(models))
    data = card.data.to_dict()
    assert data["license"] == license_id and data.get("datasets") == datasets
    assert data["library_name"] == "emolib" and data["pipeline_tag"] == "audio-classification"
    assert data["base_model"] == ["facebook/wav2vec2-base"]  # the tiny face backbone is no hub model and is left out
    assert LICENSE_NOTES[license_id].split(":")[0] in card.text
    if license_id == "other":
        assert "emolib evaluate --license ID" in card.text


def test_license_on_the_command_line_is_kept_for_every_later_card(trained_demo, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(trained_demo / "models", models, ignore=shutil.ignore_patterns("resume*", "fast"))
    assert ModelCard.load(models / "README.md").data.license == "mit"  # the demo trained on synthetic people
    assert main(["train", "voice", "--license", "apache-2.0", "--data", str(tmp_path / "absent"), "--out", str(models)]) == 2
    assert "absent" in capsys.readouterr().err and not (models / "card.json").exists()  # a refused run records nothing
    data = ["--data", str(trained_demo / "cremad-synth"), "--cache", str(trained_demo / "cache")]
    assert main(["evaluate", *data, "--models", str(models), "--out", str(tmp_path / "reports"), "--license", "apache-2.0"]) == 0
    card = ModelCard.load(models / "README.md")
    assert card.data.license == "apache-2.0" and card.data.eval_results  # the evaluation's card, with the chosen licence
    write_model_card(models)
    assert ModelCard.load(models / "README.md").data.license == "apache-2.0"  # a later card keeps it
