"""Packaging: dependency lists agree, the package imports lightly, the CLI entry points work."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])


def conda_requirements() -> set[str]:
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    return {line for line in pip if not line.startswith("-e")}


def test_environment_yml_matches_pyproject():
    assert conda_requirements() == pyproject_requirements()


IMPORT_TO_DISTRIBUTION = {"cv2": "opencv-python", "sklearn": "scikit-learn", "IPython": "ipython", "skimage": "scikit-image",
                          "huggingface_hub": "huggingface_hub", "silero_vad": "silero-vad"}


def imported_packages() -> set[str]:
    """Top-level third-party packages that emolib's modules import (anywhere, lazily too)."""
    import ast

    names = set()
    for path in (REPO / "emolib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"emolib"}


def test_every_imported_package_is_declared():
    import re

    declared = {re.split(r"[<>=!~\[ ]", requirement)[0].lower() for requirement in pyproject_requirements()}
    missing = {name for name in imported_packages() if IMPORT_TO_DISTRIBUTION.get(name, name).lower() not in declared}
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_opencv_is_capped_below_5():
    assert "opencv-python>=4.8,<5" in pyproject_requirements()


def test_import_is_light_and_has_no_side_effects():
    code = ("import sys, emolib, emolib.cli.main, emolib.audio, emolib.video, emolib.faces; "
            "heavy = [m for m in ('torch', 'cv2', 'sounddevice', 'transformers', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == ""
    assert emolib_labels() == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]


def emolib_labels():
    import emolib

    return list(emolib.EMOTIONS)


def test_module_and_console_script_run():
    for command in ([sys.executable, "-m", "emolib", "--help"], [str(Path(sys.executable).parent / "emolib"), "--help"]):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        for name in ("index", "synth", "train", "evaluate", "predict", "live", "timeline", "demo"):
            assert name in result.stdout


def test_package_data_ships_the_cremad_metadata():
    from emolib.cremad import asset_path

    for name in ("VideoDemographics.csv", "summaryTable.csv", "SentenceFilenames.csv", "LICENSE.txt"):
        assert asset_path(name).stat().st_size > 100
