"""Real workspaces for the review-workflow tests: products of the Rakuten sample scored by a really
trained model version (labeler/samples.py), built once per process, then copied per test (a copy
of a SQLite file is a fresh, independent database).
"""
from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

from labeler.samples import build_workspace, insert_products, sample_products  # noqa: F401 - tests import them here

_LOCK = threading.Lock()
_TEMPLATES: dict[tuple, Path] = {}


def copy_workspace(sample_dir: Path, dest: Path, per_category: int | None = 12, *, train: bool = True) -> Path:
    """A fresh copy of the (cached) template workspace at `dest`."""
    key = (str(sample_dir), per_category, train)
    with _LOCK:
        template = _TEMPLATES.get(key)
        if template is None:
            base = Path(tempfile.mkdtemp(prefix="review-template-"))
            atexit.register(shutil.rmtree, base, True)
            template = _TEMPLATES[key] = build_workspace(base / "ws", sample_dir, per_category, train=train)
    shutil.copytree(template, dest)
    # the copy must not carry a stale WAL: the template was checkpointed and closed
    with sqlite3.connect(dest / "workspace.db") as conn:
        conn.execute("PRAGMA integrity_check")
    return dest
