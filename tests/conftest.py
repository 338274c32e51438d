"""Shared fixtures. No test may touch the network: hub access is forced offline here."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("EMOLIB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_WORK = Path(os.environ.get("EMOLIB_WORK", REPO / "work"))


@pytest.fixture(scope="session")
def trained_demo() -> Path:
    """The `make demo` work folder (synthetic data, tiny voice/face/fusion models, test report).

    Runs the demo pipeline once per session, or reuses a finished one: the notebooks executed
    by nbmake read the same folder (../work), so the suite trains each model only once.
    """
    from emolib.train.recipes import run_demo

    if not (DEMO_WORK / "reports" / "metrics.json").exists():
        run_demo(DEMO_WORK, progress=False)
    return DEMO_WORK
