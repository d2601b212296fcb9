"""Writes that build a workspace outside an import: products given as ready rows, a checkpoint
before the folder is copied, and the model-version paths of a copied workspace.

The tests, the benches and the docs' screenshots build real workspaces from the Rakuten sample
without going through the importer (no import batch, no image check: the sample is known good),
and copy cached workspaces whose model versions must then point into the copy.
"""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from store.workspace import Workspace, now_iso


def insert_products(ws: Workspace, rows: Iterable[tuple[str, str, str, str | None, int | None]],
                    *, source: str = "sample") -> int:
    """Insert (id, title, description, image_path, source_label) rows as one transaction; each
    row's `source_row` is `<source>:<id>`. Returns how many were inserted."""
    imported = now_iso()
    values = [(pid, title, description, image, label, f"{source}:{pid}", imported)
              for pid, title, description, image, label in rows]
    ws.write(lambda c: c.executemany(
        "INSERT INTO products (id, title, description, image_path, source_label, source_row, imported_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", values))
    return len(values)


def checkpoint_and_close(ws: Workspace) -> Path:
    """Fold the WAL into workspace.db and close: the folder can then be copied as a whole."""
    root = ws.root
    ws.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ws.close()
    return root


def repoint_model_paths(db: Path, old_root: Path, new_root: Path) -> None:
    """After copying a workspace folder: its model versions' paths point into the copy."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        with conn:
            conn.execute("UPDATE model_versions SET path = replace(path, ?, ?)", (str(old_root), str(new_root)))
