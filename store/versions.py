"""Model versions, the live pointer and its history: the store's named operations.

`set_live` is the ONE way the live pointer moves: it checks the version is 'ready', points
`settings.live_model_version` at it and appends who/when/why to `live_history`, in one
transaction, whoever calls it (train, retrain, rollback, the app's make-live, the demo).
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from store.health import WorkspaceError

LIVE_KEY = "live_model_version"


def _now() -> str:
    from store.workspace import now_iso
    return now_iso()


# -- reading ------------------------------------------------------------------------------------
def live(ws: Any) -> str | None:
    """The version serving now (None before the first training)."""
    return ws.scalar("SELECT value FROM settings WHERE key = ?", (LIVE_KEY,))


def get(ws: Any, version_id: str) -> dict:
    """One version with its `config` and `metrics` decoded; WorkspaceError listing the known ids."""
    rows = ws.query("SELECT * FROM model_versions WHERE id = ?", (version_id,))
    if not rows:
        raise WorkspaceError(f"unknown model version {version_id!r}; known: {', '.join(ids(ws)) or 'none'}")
    row = rows[0]
    row["config"] = json.loads(row["config"])
    row["metrics"] = json.loads(row["metrics"])
    return row


def ids(ws: Any) -> list[str]:
    """Every version id, oldest first."""
    return [r["id"] for r in ws.query("SELECT id FROM model_versions ORDER BY created_at, id")]


def all_versions(ws: Any) -> list[dict]:
    """Every version (decoded, with a `live` flag), oldest first."""
    current = live(ws)
    out = []
    for version_id in ids(ws):
        v = get(ws, version_id)
        v["live"] = v["id"] == current
        out.append(v)
    return out


def exists(ws: Any, version_id: str | None) -> bool:
    return version_id is not None and ws.scalar("SELECT 1 FROM model_versions WHERE id = ?",
                                                (version_id,)) is not None


def paths(ws: Any) -> list[Path]:
    """Where every version's files are (the demo's removal deletes them)."""
    return [Path(r["path"]) for r in ws.query("SELECT path FROM model_versions")]


def history(ws: Any, limit: int = 20) -> list[dict]:
    """The latest moves of the live pointer, newest first: at, version, previous, reason, who, why."""
    return ws.query("SELECT at, version, previous, reason, who, why FROM live_history ORDER BY id DESC LIMIT ?",
                    (int(limit),))


# -- writing ------------------------------------------------------------------------------------
def new_id(ws: Any) -> str:
    """The next version id: a running number and the UTC time (`v003-20261130T101500`)."""
    n = int(ws.scalar("SELECT count(*) FROM model_versions")) + 1
    return f"v{n:03d}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"


def register(ws: Any, version_id: str, path: Path | str, *, config: dict | None = None,
             metrics: dict | None = None, n_train: int | None = None, n_decisions: int | None = None,
             duration_s: float | None = None, parent: str | None = None, notes: str = "",
             status: str = "ready", make_live: bool = False, who: str = "", why: str = "",
             reason: str = "registered") -> dict:
    """Add a version row; make_live: also move the live pointer to it (with history) in the same
    transaction."""
    row = {"id": version_id, "created_at": _now(), "parent": parent, "path": str(path),
           "config": json.dumps(config or {}), "metrics": json.dumps(metrics or {}),
           "n_train": n_train, "n_decisions": n_decisions, "duration_s": duration_s,
           "status": status, "notes": notes}

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute(f"INSERT INTO model_versions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                     tuple(row.values()))
        if make_live and status == "ready":
            _move(conn, version_id, reason=reason, who=who, why=why)

    ws.write(insert)
    return get(ws, version_id)


def set_live(ws: Any, version_id: str, who: str = "", why: str = "", *, reason: str = "") -> str | None:
    """Point the live pointer at a 'ready' version and append who/when/why to `live_history`,
    in one transaction; returns the version live before. WorkspaceError for an unknown version
    or one that is not 'ready' (nothing written)."""
    return ws.write(lambda conn: _move(conn, version_id, reason=reason or "set live", who=who, why=why))


def _move(conn: sqlite3.Connection, version_id: str, *, reason: str, who: str, why: str) -> str | None:
    row = conn.execute("SELECT status FROM model_versions WHERE id = ?", (version_id,)).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("SELECT id FROM model_versions ORDER BY created_at, id")]
        raise WorkspaceError(f"unknown model version {version_id!r}; known: {', '.join(known) or 'none'}")
    if row[0] != "ready":
        raise WorkspaceError(f"model version {version_id} is {row[0]}; only a 'ready' version can serve")
    prev = conn.execute("SELECT value FROM settings WHERE key = ?", (LIVE_KEY,)).fetchone()
    prev = prev[0] if prev else None
    conn.execute("INSERT INTO settings(key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (LIVE_KEY, version_id))
    conn.execute("INSERT INTO live_history (at, version, previous, reason, who, why) VALUES (?, ?, ?, ?, ?, ?)",
                 (_now(), version_id, prev, reason, who or "", why or ""))
    return prev


def update_record(ws: Any, version_id: str, *, metrics: dict, config: dict, duration_s: float, notes: str) -> None:
    """Replace what a version says about itself (retrain adds its comparison and changes)."""
    ws.write(lambda c: c.execute(
        "UPDATE model_versions SET metrics = ?, config = ?, duration_s = ?, notes = ? WHERE id = ?",
        (json.dumps(metrics), json.dumps(config), duration_s, notes, version_id)))


def mark_failed(ws: Any, version_id: str, notes: str, *, unless_live: bool = True) -> bool:
    """Mark a version 'failed' (it never serves); unless_live: leave the live one alone. True when
    a row changed."""
    def mark(conn: sqlite3.Connection) -> bool:
        if unless_live:
            current = conn.execute("SELECT value FROM settings WHERE key = ?", (LIVE_KEY,)).fetchone()
            if current is not None and current[0] == version_id:
                return False
        return conn.execute("UPDATE model_versions SET status = 'failed', notes = ? WHERE id = ?",
                            (notes, version_id)).rowcount > 0

    return ws.write(mark)
