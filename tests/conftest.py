"""Shared fixtures: real temporary workspaces and the real Rakuten sample beside the project."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(os.environ.get("RAKUTEN_SAMPLE", ROOT.parent / "shared" / "data" / "rakuten-sample"))


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def workspace(ws_path: Path):
    from store import Workspace
    ws = Workspace(ws_path)
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE / "X_train_update.csv").exists():
        pytest.fail(f"Rakuten sample not found at {SAMPLE}; set RAKUTEN_SAMPLE to its folder")
    return SAMPLE
