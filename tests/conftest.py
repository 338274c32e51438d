"""Shared fixtures. No test may touch the network: hub access is forced offline here."""
from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("EMOLIB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The run's own user cache (fast files of in-memory models, bench inputs): set in the process environment so the notebook
# kernels nbmake starts inherit it too; never the user's ~/.cache/emolib. Removed when the run ends.
USER_CACHE = tempfile.mkdtemp(prefix="emolib-test-cache-")
os.environ["EMOLIB_CACHE"] = USER_CACHE

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_WORK = Path(os.environ.get("EMOLIB_WORK", REPO / "work"))


def pytest_unconfigure(config):
    shutil.rmtree(USER_CACHE, ignore_errors=True)


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
