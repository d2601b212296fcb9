"""Shared fixtures: real temporary workspaces and the real Rakuten sample beside the project."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from labeler.samples import SAMPLE    # ../shared/data/rakuten-sample beside the project, or RAKUTEN_SAMPLE


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def workspace(ws_path: Path):
    from store import Workspace
    ws = Workspace(ws_path)
    yield ws
    ws.close()


@pytest.fixture
def browser():
    """Headless Debian chromium (labeler.local_app.launch_chromium), closed after the test."""
    from labeler.local_app import CHROMIUM, launch_chromium
    if not CHROMIUM.exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: apt-get install -y chromium (see .ci/run)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE / "X_train_update.csv").exists():
        pytest.fail(f"Rakuten sample not found at {SAMPLE}; set RAKUTEN_SAMPLE to its folder")
    return SAMPLE


# A native library's thread is sometimes still joinable when the interpreter tears down after the
# app-server tests (gradio + torch + the heatmap prefetch threads): C++ then aborts with
# "terminate called without an active exception" *after* every test has passed, and the run
# exits 134 (seen on about one run in two of tests/test_concurrency_api.py, with or without this
# session's changes). The results are final by then, so leave with pytest's own status without
# running native destructors.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _EXIT_STATUS and not os.environ.get("LABELER_TEST_NATIVE_EXIT"):
        import sys
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
