"""Static checks of the notebooks (fast: nothing is executed; nbmake runs them) and of emolib.train.notebook."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from emolib.train import notebook
from emolib.train.options import DEFAULTS
from emolib.train.recipes import DEMO_EPOCHS

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
PIPELINE = ("01_data_exploration", "02_voice_training", "03_face_training", "04_fusion_training", "05_evaluation")
PARAMETERS = {"kaggle", "data", "out", "backbone", "epochs", "batch_size", "device"}
MAX_CODE_CELLS = 20
DEFINITION = re.compile(r"^\s*(async\s+def|def|class)\s|\blambda\b", re.MULTILINE)


def read(path: Path):
    return nbformat.read(path, as_version=4)


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def python_source(cell) -> str:
    """The cell's source with IPython magics and shell escapes blanked out, for ast."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())


def assigned_values(cell) -> dict:
    """Names assigned at the top level of a cell, with their literal values (or ... when not literal)."""
    values = {}
    for node in ast.parse(python_source(cell)).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        values[target.id] = ...
    return values


def is_parameters(cell) -> bool:
    return "parameters" in cell.metadata.get("tags", [])


def test_pipeline_notebooks_exist():
    names = {path.stem for path in NOTEBOOKS}
    assert set(PIPELINE) <= names, f"missing: {sorted(set(PIPELINE) - names)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
class TestNotebook:
    def test_valid_nbformat_with_python3_kernel(self, path):
        nb = read(path)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3"

    def test_outputs_are_stripped(self, path):
        for index, cell in enumerate(code_cells(read(path))):
            assert cell.outputs == [], f"code cell {index} has outputs"
            assert cell.execution_count is None, f"code cell {index} has an execution count"

    def test_parameters_cell(self, path):
        cells = code_cells(read(path))
        if path.stem not in PIPELINE:  # other notebooks (e.g. the live demo) only need a parameters cell
            assert any(is_parameters(cell) for cell in cells), "no code cell tagged 'parameters'"
            return
        first = cells[0]
        assert is_parameters(first), "the first code cell must be tagged 'parameters'"
        values = assigned_values(first)
        assert PARAMETERS <= values.keys(), f"parameters cell does not set {sorted(PARAMETERS - values.keys())}"
        assert values["kaggle"] is False, "the defaults must be the local (synthetic) ones"
        assert values["out"] == "../work", "the default output folder is the `make demo` work folder"
        assert str(values["data"]).startswith("../work/"), "the default data is the demo's synthetic set"
        assert values["epochs"] is None, "epochs=None picks the demo's count, so the suite reuses the demo models"
        assert [is_parameters(cell) for cell in cells].count(True) == 1

    def test_no_definitions_in_code_cells(self, path):
        for index, cell in enumerate(code_cells(read(path))):
            tree = ast.parse(python_source(cell))
            defined = [type(node).__name__ for node in ast.walk(tree)
                       if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
            assert not defined, f"code cell {index} defines {defined}: move it into the emolib package"
            assert not DEFINITION.search(cell.source), f"code cell {index} contains def/class/lambda"

    def test_small_and_explained(self, path):
        nb = read(path)
        assert 0 < len(code_cells(nb)) < MAX_CODE_CELLS
        markdown = [cell for cell in nb.cells if cell.cell_type == "markdown" and cell.source.strip()]
        assert markdown, "notebooks explain their steps in markdown cells"

    def test_never_reads_shared_folders(self, path):
        for cell in code_cells(read(path)):
            assert "../shared" not in cell.source


def test_local_defaults_match_the_demo():
    for kind in ("voice", "face", "fusion"):
        p = notebook.resolve_parameters(False, kind=kind, data="../work/cremad-synth", out="../work", backbone="tiny")
        assert p.epochs == DEMO_EPOCHS[kind] and p.train.epochs == DEMO_EPOCHS[kind]
        assert p.batch_size == DEFAULTS[kind].batch_size
        assert p.train.encoder_lr == p.train.lr  # tiny encoders learn at the head's rate, as in the demo
        work = Path("../work").resolve()
        assert p.models == work / "models" and p.cache == work / "cache" and p.data == work / "cremad-synth"
        assert p.manifest == work / "manifest.csv" and p.reports == work / "reports"
        assert p.face_weights is None and p.kaggle is False
    assert notebook.resolve_parameters(False, kind="voice", backbone="tiny").freeze == "none"


def test_explicit_values_win_and_none_means_default():
    p = notebook.resolve_parameters(False, kind="face", backbone="resnet18", epochs=3, batch_size=4, device="cpu")
    assert (p.epochs, p.batch_size, p.device) == (3, 4, "cpu")
    assert (p.train.epochs, p.train.batch_size, p.train.device) == (3, 4, "cpu")
    assert p.freeze == "none"
    p = notebook.resolve_parameters(False, kind="voice", backbone="facebook/wav2vec2-base")
    assert p.epochs == DEFAULTS["voice"].epochs and p.freeze == "cnn"
    assert notebook.resolve_parameters(False, kind=None).train is None


def test_kaggle_block():
    voice = notebook.resolve_parameters(True, kind="voice", data="../work/cremad-synth", out="../work", backbone="tiny", epochs=2)
    assert voice.data is None  # index_dataset(None) auto-detects CREMA-D under /kaggle/input
    assert voice.out == Path(notebook.KAGGLE_OUT) and str(voice.models).startswith("/kaggle/working/")
    assert voice.device == "cuda" and voice.train.device == "cuda"
    assert voice.backbone == "facebook/wav2vec2-base" and voice.freeze == "cnn"
    assert voice.cache == Path(notebook.KAGGLE_CACHE) and voice.recipe == "best"  # crops are remade each session, outside the 20 GB
    assert voice.epochs == 2, "epochs and batch_size keep the notebook's values"
    face = notebook.resolve_parameters(True, kind="face", backbone="tiny")
    assert (face.backbone, face.face_weights, face.freeze) == ("resnet50", "IMAGENET1K_V2", "none")
    assert face.epochs == DEFAULTS["face"].epochs
    fusion = notebook.resolve_parameters(True, kind="fusion")
    assert fusion.epochs == DEFAULTS["fusion"].epochs and fusion.synthetic is False


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        notebook.resolve_parameters(False, kind="audio")


def test_ensure_data_only_creates_the_demo_folder(tmp_path):
    other = tmp_path / "my-data"
    assert notebook.ensure_data(other) == other and not other.exists()
    assert notebook.ensure_data(None) is None
