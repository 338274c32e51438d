"""Shared fixtures. No test may touch the network: hub access is forced offline here."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("EMOLIB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The run's own user cache (fast files of in-memory models, bench inputs): set in the process environment so the notebook
# kernels nbmake starts inherit it too; never the user's ~/.cache/emolib. Removed when the run ends.
USER_CACHE = tempfile.mkdtemp(prefix="emolib-test-cache-")
os.environ["EMOLIB_CACHE"] = USER_CACHE
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each (and in every process they start)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_WORK = Path(os.environ.get("EMOLIB_WORK", REPO / "work"))


def pytest_unconfigure(config):
    shutil.rmtree(USER_CACHE, ignore_errors=True)


def pytest_itemcollected(item):
    """With pytest-xdist (`make test` runs two workers, --dist loadgroup): what shares a folder or a service runs in one worker, in
    turn: "work", the make-demo folder (../work) the demo, the notebooks and the tests that read it share; "ray", one local Ray.
    Marked as each item is collected, before xdist turns the groups into node ids."""
    names = set(getattr(item, "fixturenames", ()))
    if str(item.fspath).endswith(".ipynb") or "trained_demo" in names:
        item.add_marker(pytest.mark.xdist_group("work"))
    elif "ray_once" in names or getattr(getattr(item, "module", None), "__name__", "").endswith("test_annotate"):
        item.add_marker(pytest.mark.xdist_group("ray"))


def pytest_collection_finish(session):
    """A worker whose groups did not reach the node ids (pytest-xdist and pytest out of step) would run the shared-folder tests
    in both workers at once and fail at random: stop at once instead."""
    if getattr(session.config.option, "loadgroup", False):
        lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if lost:
            message = (f"pytest-xdist --dist loadgroup did not group {lost[0]} (and {len(lost) - 1} more): install the pytest the "
                       "dev extra names")
            print(message, file=sys.__stderr__, flush=True)  # a worker's exception reaches the controller only as an assertion
            raise pytest.UsageError(message)


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
