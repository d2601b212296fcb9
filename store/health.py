"""Can workspace.db be trusted and written? Asked before anything writes to it.

`check` runs SQLite's `PRAGMA quick_check` (every page of every table and index, no cross-check
of index content) on a connection opened with `mode=ro`, so a damaged file is never written to,
not even by the checkpoint a read-write connection runs on close. `write_problem` asks the file
system whether this process may write the file and its folder: permission bits for an ordinary
user, and for root too a read-only file system (EROFS) or an immutable file (chattr +i, EPERM).

Each problem becomes ONE line for the user naming the file, the problem and what to do; the CLI
and launch.py print `WorkspaceError`s that way.

A pass is remembered (`workspace.db.checked` beside the file, and in this process): quick_check
reads every page (~2 s for 500 MiB), and a file that has not changed since it passed is not read
again. "Not changed" is the file's and its -wal's device, inode, size, mtime and ctime, all
equal; a file written or replaced since (damaged pages included) differs and is checked again.
Timestamps are coarse (a clock tick): a pass is remembered only for a file last changed well
before the check began, so a change within the same tick cannot hide behind the old stamp.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import time
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


log = logging.getLogger(__name__)
PASSED_SUFFIX = ".checked"      # workspace.db.checked: the stamp of the file that last passed
RACY_NS = 2_000_000_000        # a file changed this close before a check is checked again next time
_passed: dict[str, dict] = {}  # this process's passes: resolved db path -> stamp (files are process-wide)

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


def _stat(path: Path, *, empty_is_none: bool = False) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if empty_is_none and st.st_size == 0:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def stamp(db: Path) -> dict:
    """What says the file has not changed: the database's and its -wal's (dev, inode, size,
    mtime_ns, ctime_ns), and the SQLite library that checked it. An empty -wal holds nothing
    (a read-only connection, the check's own, leaves one behind): it counts as none."""
    return {"db": _stat(db), "wal": _stat(db.with_name(db.name + "-wal"), empty_is_none=True),
            "sqlite": sqlite3.sqlite_version}


def passed_file(db: Path) -> Path:
    return db.with_name(db.name + PASSED_SUFFIX)


def passed_before(db: Path, now: dict) -> bool:
    """Whether the file, as it is now (`stamp`), already passed quick_check (here or in an
    earlier process)."""
    key = str(db.resolve())
    if _passed.get(key) == now:
        return True
    try:
        saved = json.loads(passed_file(db).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if saved != now:
        return False
    _passed[key] = now
    return True


def remember_pass(db: Path, passed: dict, started_ns: int) -> bool:
    """Remember that the file with stamp `passed` (taken before a check begun at `started_ns`)
    passed; not when it was changed within RACY_NS of the check (coarse timestamps). The file
    beside it is a cache: a folder nobody may write keeps it in this process only."""
    stamps = [s for s in (passed["db"], passed["wal"]) if s]
    if not passed["db"] or max(max(s[3], s[4]) for s in stamps) > started_ns - RACY_NS or stamp(db) != passed:
        return False
    _passed[str(db.resolve())] = passed
    target = passed_file(db)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(passed), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:       # a read-only folder or disk: remembered in this process only
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return True


def check(db: Path) -> str:
    """Run `PRAGMA quick_check` read-only; returns the read-only URI that opened the file.

    Raises WorkspaceDamaged (one line) when SQLite finds any problem or cannot read the file as a
    database at all. A file unchanged since it last passed (`passed_before`) is only opened."""
    before, started = stamp(db), time.time_ns()
    trusted = passed_before(db, before)
    last: sqlite3.Error | None = None
    for uri in _ro_uris(db):
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            if trusted:     # one read of the header: does this URI open it
                conn.execute("PRAGMA schema_version").fetchone()
                rows = ["ok"]
            else:
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
        if trusted:
            log.debug("%s is unchanged since it passed quick_check: not read again", db)
        else:
            kept = remember_pass(db, before, started)
            log.info("%s passed quick_check in %.1f s%s", db, (time.time_ns() - started) / 1e9,
                     "" if kept else " (changed moments ago: checked again next time)")
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
