"""One SQLite file per workspace; every write goes through `Workspace.write` (BEGIN IMMEDIATE).

Decisions are insert-only (triggers refuse UPDATE/DELETE); a product's label is derived from
them. Connections are per thread so Gradio's worker threads never share one.

Opening checks the file before anything touches it (store/health.py): `PRAGMA quick_check` on a
read-only connection, so a damaged database raises `WorkspaceDamaged` with nothing written to it;
a file or folder this process cannot write raises `WorkspaceReadOnly`, unless the caller only
reads (`read_only=True`: versions, export, predict), which then opens it with `mode=ro`.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import sqlite_utils

from store import health, migrations, predictions, versions
from store.health import WorkspaceDamaged, WorkspaceError, WorkspaceReadOnly  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)
T = TypeVar("T")
DB_NAME = "workspace.db"
ACTIONS = ("accept", "correct", "skip", "undo", "auto_accept")
LABEL_ACTIONS = ("accept", "correct", "auto_accept")   # the actions that set a product's label


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Workspace:
    """A folder holding `workspace.db`, model versions under `models/` and caches."""

    def __init__(self, root: Path | str, *, create: bool = True, read_only: bool = False):
        """read_only: the caller only reads; a workspace this process cannot write is then opened
        read-only instead of refused (writes raise `WorkspaceReadOnly`)."""
        self.root = Path(root)
        if not self.root.exists():
            if not create:
                raise WorkspaceError(f"workspace {self.root} does not exist; run `python -m labeler import` first")
            self.root.mkdir(parents=True)
        elif not self.root.is_dir():
            raise WorkspaceError(f"workspace {self.root} is a file, expected a folder")
        self.db_path = self.root / DB_NAME
        self.models_dir = self.root / "models"
        self.cache_dir = self.root / "cache"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.read_only = False
        self._ro_uri = ""
        problem = health.write_problem(self.db_path)
        if problem and not read_only:
            raise WorkspaceReadOnly(health.read_only_message(self.db_path, problem))
        if self.db_path.exists() and self.db_path.stat().st_size > 0:
            self._ro_uri = health.check(self.db_path)       # WorkspaceDamaged; reads only
        if problem:
            if not self._ro_uri:
                raise WorkspaceReadOnly(health.read_only_message(self.db_path, problem))
            self.read_only = True
            pending = health.pending_migrations(self.conn, [name for name, _ in migrations.MIGRATIONS])
            if pending:
                raise WorkspaceReadOnly(f"{self.db_path} is read-only ({problem}) and was written by an older "
                                        f"version of the labeler: it needs upgrading ({', '.join(pending)}), "
                                        "which writes to it; make it writable once and run any command")
            return
        try:
            migrations.apply(self.conn)
        except sqlite3.DatabaseError as exc:
            health.raise_as_workspace_error(exc, self.db_path)
            raise WorkspaceError(f"{self.db_path} is not a usable SQLite workspace ({exc}); "
                                 "point --workspace at another folder") from exc

    # -- connections -------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None and self.read_only:
            conn = sqlite3.connect(self._ro_uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        elif conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils view of this thread's connection (reads, table introspection)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite_utils.Database(self.conn)
            self._local.db = db
        return db

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            self._local.db = None

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """The one write path: `fn` runs in a BEGIN IMMEDIATE transaction, all or nothing.

        A read-only or damaged database raises `WorkspaceReadOnly` / `WorkspaceDamaged` (one line
        for the user) instead of sqlite3's own errors."""
        if self.read_only:
            raise WorkspaceReadOnly(f"{self.db_path} was opened read-only (this process cannot write it); "
                                    "make the file and its folder writable to change it")
        conn = self.conn
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                health.raise_as_workspace_error(exc, self.db_path)
                raise
            try:
                out = fn(conn)
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                health.raise_as_workspace_error(exc, self.db_path)
                raise
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return out

    def query(self, sql: str, params: Sequence[Any] | dict = ()) -> list[dict]:
        try:
            return [dict(r) for r in self.conn.execute(sql, params)]
        except sqlite3.DatabaseError as exc:
            health.raise_as_workspace_error(exc, self.db_path)
            raise

    def scalar(self, sql: str, params: Sequence[Any] | dict = ()) -> Any:
        try:
            row = self.conn.execute(sql, params).fetchone()
        except sqlite3.DatabaseError as exc:
            health.raise_as_workspace_error(exc, self.db_path)
            raise
        return None if row is None else row[0]

    def backup(self, dest: Path | str, *, progress: Callable[[float, str], None] | None = None):
        """A checked copy of the database at `dest`, made with SQLite's online backup API while
        other connections keep writing (store/backup.py); returns a `BackupResult`."""
        from store.backup import backup_database
        return backup_database(self._ro_uri or health.read_only_uri(self.db_path), Path(dest), progress=progress)

    # -- settings ----------------------------------------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM settings WHERE key = ?", (key,))
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        self.write(lambda c: c.execute(
            "INSERT INTO settings(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value)))

    # -- products ----------------------------------------------------------------------------
    def product(self, product_id: str) -> dict | None:
        rows = self.query("SELECT * FROM products WHERE id = ?", (str(product_id),))
        return rows[0] if rows else None

    def products(self, ids: Iterable[str] | None = None) -> list[dict]:
        if ids is None:
            return self.query("SELECT * FROM products ORDER BY rowid")
        wanted = [str(i) for i in ids]
        found = {r["id"]: r for r in self.query(
            f"SELECT * FROM products WHERE id IN ({','.join('?' * len(wanted))})", wanted)} if wanted else {}
        return [found[i] for i in wanted if i in found]

    def count_products(self) -> int:
        return int(self.scalar("SELECT count(*) FROM products"))

    def require_products(self) -> None:
        if self.count_products() == 0:
            raise WorkspaceError(f"workspace {self.root} has no products; import a catalog first "
                                 "(`python -m labeler import --texts X.csv --labels Y.csv --images DIR`)")

    # -- decisions ---------------------------------------------------------------------------
    def record_decision(self, product_id: str, reviewer: str, action: str, *, category: int | None = None,
                        undoes: int | None = None, model_version: str | None = None,
                        shown_top5: list | None = None, comment: str = "", lead_time_ms: int | None = None,
                        idempotency_key: str | None = None, conn: sqlite3.Connection | None = None,
                        batch_id: str | None = None, via: str | None = None) -> dict:
        """Append one decision; a retried submit with the same key returns the stored row.

        Pass `conn` (the connection given to a `write` callback) to append inside that open
        transaction, so the decision commits together with the caller's other writes.
        `batch_id` (a `decision_batches` row) groups decisions undone as one; `via` names the
        screen or tool that made it ('grid', 'labelstudio', ...).
        """
        if action not in ACTIONS:
            raise WorkspaceError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        key = idempotency_key or uuid.uuid4().hex
        row = {
            "product_id": str(product_id), "reviewer": reviewer, "action": action,
            "category": None if category is None else int(category), "undoes": undoes,
            "model_version": model_version,
            "shown_top5": None if shown_top5 is None else json.dumps(shown_top5),
            "comment": comment or "", "lead_time_ms": lead_time_ms,
            "idempotency_key": key, "created_at": now_iso(),
        }
        if batch_id is not None:
            row["batch_id"] = batch_id
        if via is not None:
            row["via"] = via

        def insert(conn: sqlite3.Connection) -> dict:
            existing = conn.execute("SELECT * FROM decisions WHERE idempotency_key = ?", (key,)).fetchone()
            if existing is not None:
                return dict(existing)
            cols = ", ".join(row)
            cur = conn.execute(f"INSERT INTO decisions ({cols}) VALUES ({', '.join('?' * len(row))})",
                               tuple(row.values()))
            return dict(conn.execute("SELECT * FROM decisions WHERE id = ?", (cur.lastrowid,)).fetchone())

        return insert(conn) if conn is not None else self.write(insert)

    def decisions(self, *, product_id: str | None = None, reviewer: str | None = None) -> list[dict]:
        where, params = [], []
        if product_id is not None:
            where.append("product_id = ?"); params.append(str(product_id))
        if reviewer is not None:
            where.append("reviewer = ?"); params.append(reviewer)
        sql = "SELECT * FROM decisions" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return self.query(sql, params)

    def current_labels(self, *, reviewed_only: bool = False) -> dict[str, int]:
        """product id -> label by the one rule (`store.labels.resolve_labels`): majority of the
        reviewers' latest effective decisions, a tie to the latest, else the imported label."""
        from store.labels import resolve_labels
        return resolve_labels(self, reviewed_only=reviewed_only)

    # -- model versions (store/versions.py) and predictions (store/predictions.py) -------------
    def new_version_id(self) -> str:
        return versions.new_id(self)

    def register_model_version(self, version_id: str, path: Path | str, *, make_live: bool = True,
                               who: str = "", why: str = "", **fields: Any) -> dict:
        """Add a version row (`store.versions.register`); make_live moves the pointer with history."""
        return versions.register(self, version_id, path, make_live=make_live, who=who, why=why,
                                 reason="registered live", **fields)

    def model_version(self, version_id: str) -> dict:
        return versions.get(self, version_id)

    def model_versions(self) -> list[dict]:
        return versions.all_versions(self)

    def live_version(self) -> str | None:
        return versions.live(self)

    def set_live_version(self, version_id: str, who: str = "", why: str = "", *, reason: str = "") -> str | None:
        """`store.versions.set_live`: the audited move (live_history gets who/why)."""
        return versions.set_live(self, version_id, who, why, reason=reason or "set live")

    def move_live(self, version_id: str, *, reason: str, who: str = "", why: str = "") -> str | None:
        """`store.versions.set_live` under its older name; returns the version live before."""
        return versions.set_live(self, version_id, who, why, reason=reason)

    def live_history(self, limit: int = 20) -> list[dict]:
        return versions.history(self, limit)

    def save_predictions(self, model_version: str, rows: Iterable[dict], *, source: str | None = None) -> int:
        return predictions.save(self, model_version, rows, source=source)

    def prediction(self, product_id: str, model_version: str | None = None) -> dict | None:
        return predictions.get(self, product_id, model_version)


def open_workspace(root: Path | str, *, create: bool = True, read_only: bool = False) -> Workspace:
    return Workspace(root, create=create, read_only=read_only)
