"""Make a workspace read-only for this process, for real, and undo it afterwards.

An ordinary user: chmod (444 on the file; 555 on the folder too for kind='folder'). Root ignores
permission bits, so as root the file is made immutable (`chattr +i`, refused even to root) or
the folder bind-mounted read-only on itself (EROFS); where neither is allowed the test skips.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _sh(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(ws_path: Path, kind: str = "file") -> Iterator[str]:
    """Yields the words the refusal should contain for this way of being read-only."""
    db = ws_path / "workspace.db"
    if os.geteuid() != 0:
        os.chmod(db, 0o444)
        if kind == "folder":
            os.chmod(ws_path, 0o555)
        try:
            yield "permission denied" if kind == "file" else "not writable"
        finally:
            os.chmod(ws_path, 0o755)
            os.chmod(db, 0o644)
    elif kind == "file":
        if not _sh("chattr", "+i", str(db)):
            pytest.skip("running as root, which ignores chmod, and chattr +i is not available here")
        try:
            yield "immutable"
        finally:
            _sh("chattr", "-i", str(db))
    else:
        if not _sh("mount", "--bind", "-o", "ro", str(ws_path), str(ws_path)):
            pytest.skip("running as root, which ignores chmod, and a read-only bind mount is not allowed here")
        try:
            yield "read-only file system"
        finally:
            _sh("umount", "-l", str(ws_path))
