"""Copy a live workspace.db with SQLite's online backup API, safe while the app writes.

The source is read through its own read-only connection holding ONE read transaction: in WAL
mode that pins a snapshot, so every step of the copy sees the same database (the app keeps
writing meanwhile, its writes simply are not in this backup) and the copy never restarts. The
copy goes to a temporary file beside the destination, is checked with `PRAGMA quick_check`,
then renamed into place: a half-written backup never carries the final name.

Restore (README, 'Backup and restore'): stop the app, copy the backup over workspace.db and
delete workspace.db-wal and workspace.db-shm if present.
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from store.health import WorkspaceError

Progress = Callable[[float, str], None]
PAGES_PER_STEP = 1024


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size_bytes: int
    pages: int
    products: int
    decisions: int


def backup_database(source_uri: str, dest: Path, *, progress: Progress | None = None,
                    pages_per_step: int = PAGES_PER_STEP) -> BackupResult:
    """Write a consistent copy of the database at `source_uri` (a `file:...?mode=ro` URI) to `dest`."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    src = sqlite3.connect(source_uri, uri=True, isolation_level=None, timeout=30)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()   # the read snapshot starts here
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            def step(status: int, remaining: int, total: int) -> None:
                if progress is not None and total:
                    progress((total - remaining) / total, f"{total - remaining}/{total} pages")

            src.backup(dst, pages=pages_per_step, progress=step, sleep=0)
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
            problems = [r[0] for r in dst.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise WorkspaceError(f"the backup copy at {tmp} fails SQLite's check ({'; '.join(problems)}); "
                                     "it was not kept: check the disk and retry")
            products = int(dst.execute("SELECT count(*) FROM products").fetchone()[0])
            decisions = int(dst.execute("SELECT count(*) FROM decisions").fetchone()[0])
            dst.execute("PRAGMA journal_mode=DELETE")   # one self-contained file, nothing beside it
        finally:
            dst.close()
        src.execute("COMMIT")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    os.replace(tmp, dest)
    return BackupResult(dest, dest.stat().st_size, pages, products, decisions)
