"""A workspace.db that passed `PRAGMA quick_check` and has not changed since is not read whole
again, in this process or the next; one changed since (damaged pages included) is checked again.

Real workspace files; whether quick_check ran is read from store.health's log, and "the next
process" is a real `python` subprocess.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from store import Workspace, health
from store.health import WorkspaceDamaged

ROOT = Path(__file__).resolve().parent.parent
CHECKED = "passed quick_check in"
SKIPPED = "unchanged since it passed quick_check"


def a_workspace(root: Path, n: int = 4000) -> Path:
    """A workspace of `n` products with long titles (a few MB: pages in the middle to damage),
    left untouched long enough that its timestamps are outside the coarse-clock window."""
    ws = Workspace(root)
    rows = [(f"p{i}", f"Produit {i} " + "bâche piscine tubulaire " * 20, "2026-01-01T00:00:00+00:00")
            for i in range(n)]
    ws.write(lambda c: c.executemany("INSERT INTO products (id, title, imported_at) VALUES (?, ?, ?)", rows))
    ws.close()
    time.sleep(health.RACY_NS / 1e9 + 0.3)     # setup, not a check: older than the racy window
    return root


def opened(root: Path, caplog) -> list[str]:
    """Open and close the workspace; what store.health logged about its check."""
    caplog.clear()
    Workspace(root).close()
    return [r.getMessage() for r in caplog.records if r.name == "store.health"]


def damage(db: Path, n_pages: int = 3) -> None:
    """Random bytes over pages in the middle of the file (its size stays the same)."""
    size, page = db.stat().st_size, 4096
    rng = np.random.default_rng(7)
    with db.open("r+b") as fh:
        for p in range(size // page // 2, size // page // 2 + n_pages):
            fh.seek(p * page)
            fh.write(rng.bytes(page))


def test_an_unchanged_workspace_is_checked_once_in_this_process_and_the_next(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="store.health")
    root = a_workspace(tmp_path / "ws")
    db = root / "workspace.db"
    first = opened(root, caplog)
    assert any(CHECKED in m for m in first), first
    assert health.passed_file(db).exists()
    again = opened(root, caplog)                       # same process, file unchanged
    assert any(SKIPPED in m for m in again) and not any(CHECKED in m for m in again), again

    # the next process (a CLI command, a relaunch) trusts the pass recorded beside the file
    code = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format='%(message)s'); "
            "from store import Workspace; Workspace(sys.argv[1]).close()")
    run = subprocess.run([sys.executable, "-c", code, str(root)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert SKIPPED in run.stderr and CHECKED not in run.stderr, run.stderr


def test_a_file_damaged_after_a_cached_pass_is_still_refused(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="store.health")
    root = a_workspace(tmp_path / "ws")
    db = root / "workspace.db"
    assert db.stat().st_size > 1_000_000
    assert any(CHECKED in m for m in opened(root, caplog))
    assert any(SKIPPED in m for m in opened(root, caplog))     # the pass is cached...
    stat = db.stat()
    damage(db)
    # ...and the damage hides its tracks as `cp -p` or `touch -d` would: same size, same mtime
    os.utime(db, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (db.stat().st_size, db.stat().st_mtime_ns, db.stat().st_ino) == (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(WorkspaceDamaged, match="quick_check.*nothing was written"):
        Workspace(root)
    with pytest.raises(WorkspaceDamaged):             # and again: a failure is never cached
        Workspace(root)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_a_file_changed_moments_before_its_check_is_checked_again_next_time(tmp_path, caplog):
    """File times are coarse (a clock tick, 2 s on FAT): a pass on a file written moments ago is
    not remembered, or a write in the same tick after the check would look unchanged."""
    caplog.set_level(logging.DEBUG, logger="store.health")
    root = a_workspace(tmp_path / "ws", n=10)
    ws = Workspace(root)
    ws.write(lambda c: c.execute("UPDATE products SET title = 'Piscine' WHERE id = 'p1'"))
    ws.close()
    fresh = opened(root, caplog)
    assert any(CHECKED in m and "checked again next time" in m for m in fresh), fresh
    assert not any(SKIPPED in m for m in opened(root, caplog))
