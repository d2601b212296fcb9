"""Can workspace.db be trusted and written? Asked before anything writes to it.

`check` runs SQLite's `PRAGMA quick_check` (every page of every table and index, no cross-check
of index content) on a connection opened with `mode=ro`, so a damaged file is never written to,
not even by the checkpoint a read-write connection runs on close. `write_problem` asks the file
system whether this process may write the file and its folder: permission bits for an ordinary
user, and for root too a read-only file system (EROFS) or an immutable file (chattr +i, EPERM).

Each problem becomes ONE line for the user naming the file, the problem and what to do; the CLI
and launch.py print `WorkspaceError`s that way.
"""
from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

RESTORE_HINT = ("stop the app and copy your latest backup over it (README, 'Backup and restore'; "
                "backups come from `python -m labeler backup --out FILE`)")


class WorkspaceError(Exception):
    """A user-facing problem with the workspace (missing, empty, unknown version...)."""


class WorkspaceDamaged(WorkspaceError):
    """workspace.db fails SQLite's own check; nothing was written to it."""


class WorkspaceReadOnly(WorkspaceError):
    """This process cannot write workspace.db (permissions, read-only disk, immutable file)."""


_ERRNO_WORDS = {errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
                errno.EPERM: "operation not permitted (an immutable file?)"}


def _open_for_write_error(path: Path) -> str | None:
    """Why `path` cannot be opened for writing, or None; opening (no write, no truncation) is harmless."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        return _ERRNO_WORDS.get(exc.errno, exc.strerror or str(exc))
    os.close(fd)
    return None


def write_problem(db: Path) -> str | None:
    """Why this process cannot write `db` (or create it, and its -wal/-shm files), else None."""
    if db.exists():
        why = _open_for_write_error(db)
        if why:
            return f"the file cannot be written: {why}"
        for suffix in ("-wal", "-shm"):
            side = db.with_name(db.name + suffix)
            if side.exists() and _open_for_write_error(side):
                return f"{side.name} cannot be written: {_open_for_write_error(side)}"
    if not os.access(db.parent, os.W_OK):
        return f"its folder {db.parent} is not writable"
    return None


def read_only_message(db: Path, problem: str) -> str:
    return (f"{db} is read-only for this process ({problem}); nothing was written to it. This command "
            f"writes: make it writable (chmod u+w on the file and its folder, or remount the disk "
            f"read-write) or work on a copy of the workspace folder. Read-only commands (versions, "
            f"export, predict, backup) work as is.")


def damaged_message(db: Path, detail: str) -> str:
    return (f"{db} is damaged (SQLite quick_check: {detail}); nothing was written to it. To fix: "
            f"{RESTORE_HINT}, or salvage what is readable with `sqlite3 {db} .recover | sqlite3 recovered.db`")


def _ro_uris(db: Path) -> list[str]:
    uri = f"file:{quote(str(db.resolve()))}?mode=ro"
    # A WAL database in a folder nobody may write has no -shm to share: SQLite then needs
    # immutable=1 (nobody can be writing it either: a writer would need that -shm file).
    return [uri, uri + "&immutable=1"]


def read_only_uri(db: Path) -> str:
    return _ro_uris(db)[0]


def check(db: Path) -> str:
    """Run `PRAGMA quick_check` read-only; returns the read-only URI that opened the file.

    Raises WorkspaceDamaged (one line) when SQLite finds any problem or cannot read the file as a
    database at all."""
    last: sqlite3.Error | None = None
    for uri in _ro_uris(db):
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_CANTOPEN":
                last = exc
                continue
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
                raise WorkspaceDamaged(f"{db} is not a usable SQLite workspace ({exc}); nothing was written to "
                                       f"it. Point --workspace at another folder, or {RESTORE_HINT}") from exc
            raise WorkspaceDamaged(damaged_message(db, str(exc))) from exc
        finally:
            conn.close()
        if rows != ["ok"]:
            detail = "; ".join(" ".join(r.split()) for r in rows[:2]) + (f" (+{len(rows) - 2} more)" if len(rows) > 2 else "")
            raise WorkspaceDamaged(damaged_message(db, detail))
        return uri
    raise WorkspaceError(f"{db} cannot be opened ({last}); check the permissions of the file and its folder")


def pending_migrations(conn: sqlite3.Connection, names: list[str]) -> list[str]:
    """Migrations not yet applied to this database (read-only query)."""
    try:
        done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    except sqlite3.OperationalError:
        done = set()
    return [n for n in names if n not in done]


def raise_as_workspace_error(exc: sqlite3.Error, db: Path) -> None:
    """Re-raise sqlite3's read-only and corruption errors as one-line WorkspaceErrors; else return."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_READONLY"):
        raise WorkspaceReadOnly(read_only_message(db, f"SQLite: {exc}")) from exc
    if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
        raise WorkspaceDamaged(damaged_message(db, str(exc))) from exc
