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


def test_opencv_is_capped_below_5():
    assert "opencv-python>=4.8,<5" in pyproject_requirements()


def test_import_is_light_and_has_no_side_effects():
    code = ("import sys, emolib, emolib.cli, emolib.audio, emolib.video, emolib.faces; "
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
