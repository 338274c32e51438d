"""The Kaggle kernel folder: `emolib kaggle init` writes what `kaggle kernels push` reads (checked as the kaggle package
checks it), the committed kaggle/ folder is what it writes, and the pipeline notebook's steps are emolib command lines.
The notebook itself runs under nbmake in its tiny CPU mode (`make test` executes kaggle/*.ipynb)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from emolib.cli.main import main
from emolib.train.notebook import kernel_steps

REPO = Path(__file__).resolve().parents[1]


def slugify(text: str) -> str:
    """Kaggle's slug of a title (python-slugify, as the kaggle package uses it)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def test_the_metadata_is_what_kernels_push_reads(tmp_path, capsys):
    assert main(["kaggle", "init", "--user", "someone", "--recipe", "seed", "--folds", "5", "--out", str(tmp_path / "kernel")]) == 0
    said = capsys.readouterr().out
    assert "kaggle kernels push -p" in said and "kaggle kernels status someone/emolib-cremad" in said and "kaggle kernels output" in said
    meta = json.loads((tmp_path / "kernel" / "kernel-metadata.json").read_text())
    # the kaggle package's kernels_push: a title of 5+ characters whose slug is the id's, a code file that exists, an id
    # "owner/slug" without a version, a language and kernel type it knows, lists of "owner/name" sources, booleans
    owner, slug = meta["id"].split("/")
    assert owner == "someone" and len(meta["title"]) >= 5 and slugify(meta["title"]) == slug
    assert (tmp_path / "kernel" / meta["code_file"]).is_file() and meta["language"] == "python" and meta["kernel_type"] == "notebook"
    for key in ("is_private", "enable_gpu", "enable_tpu", "enable_internet"):
        assert isinstance(meta[key], bool)
    assert meta["enable_gpu"] and meta["enable_internet"] and meta["dataset_sources"] == ["ejlok1/cremad"]
    for key in ("dataset_sources", "competition_sources", "kernel_sources", "model_sources"):
        assert isinstance(meta[key], list) and all(re.fullmatch(r"[\w-]+/[\w.-]+", value) for value in meta[key])
    notebook = json.loads((tmp_path / "kernel" / meta["code_file"]).read_text())
    parameters = next(cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", []))
    source = "".join(parameters["source"])
    assert "recipe = 'seed'" in source and "folds = 5" in source and "install = 'emolib[egemaps]'" in source
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in notebook["cells"] if cell["cell_type"] == "code")


def test_the_committed_kernel_folder_is_what_init_writes(tmp_path):
    assert main(["kaggle", "init", "--user", "YOUR_KAGGLE_USERNAME", "--out", str(tmp_path)]) == 0
    for name in ("kernel-metadata.json", "emolib-cremad.ipynb"):
        assert (REPO / "kaggle" / name).read_text() == (tmp_path / name).read_text(), f"kaggle/{name} differs: run emolib kaggle init again"


def test_a_bad_user_name_is_one_line(tmp_path, capsys):
    assert main(["kaggle", "init", "--user", "two words", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_on_kaggle_the_steps_are_the_full_run():
    run = kernel_steps(kaggle=True, recipe="best", folds=5)
    assert list(run.steps) == ["doctor", "videos", "train voice", "train face", "train fusion", "evaluate", "cross-validation"]
    assert run.steps["videos"] == ["download", "cremad", "--to", "/kaggle/working/cremad", "--parts", "video"]
    voice = run.steps["train voice"]
    assert voice[:2] == ["train", "voice"] and "facebook/wav2vec2-base" in voice and "cuda" in voice and "--recipe" in voice
    assert "--video-dir" in voice and str(run.models) == "/kaggle/working/models"
    assert run.steps["cross-validation"][run.steps["cross-validation"].index("--folds") + 1] == "5"
