"""Retrain runs bookkeeping (`retrain_runs`): the store's named operations.

A run row says who runs (pid, host), how far it got (progress, message) and how it ended.
`begin` refuses a second 'running' run in the same transaction that inserts, so two
processes cannot both start one.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from store.versions import LIVE_KEY


def _now() -> str:
    from store.workspace import now_iso
    return now_iso()


def running(ws: Any) -> list[dict]:
    """Runs whose row still says 'running' (their process may have died)."""
    return ws.query("SELECT * FROM retrain_runs WHERE status = 'running' ORDER BY id")


def latest(ws: Any, limit: int = 5) -> list[dict]:
    """The latest runs, newest first."""
    return ws.query("SELECT * FROM retrain_runs ORDER BY id DESC LIMIT ?", (int(limit),))


def begin(ws: Any, *, trigger: str, pid: int, host: str) -> tuple[int | None, dict | None]:
    """(new run id, None), or (None, the running run) when one is running already (nothing written).
    The run records the version live when it starts as `previous`."""
    def start(conn: sqlite3.Connection) -> tuple[int | None, dict | None]:
        busy = conn.execute("SELECT * FROM retrain_runs WHERE status = 'running' ORDER BY id DESC LIMIT 1").fetchone()
        if busy is not None:
            return None, dict(busy)
        live = conn.execute("SELECT value FROM settings WHERE key = ?", (LIVE_KEY,)).fetchone()
        cur = conn.execute("INSERT INTO retrain_runs (started_at, trigger, pid, host, previous, message) "
                           "VALUES (?, ?, ?, ?, ?, 'starting')", (_now(), trigger, pid, host, live[0] if live else None))
        return int(cur.lastrowid), None

    return ws.write(start)


def set_version(ws: Any, run_id: int, version: str) -> None:
    """The version id the run is building (before it exists), so an interrupted run can fail it."""
    ws.write(lambda c: c.execute("UPDATE retrain_runs SET version = ? WHERE id = ?", (version, run_id)))


def set_progress(ws: Any, run_id: int, fraction: float, message: str) -> None:
    ws.write(lambda c: c.execute("UPDATE retrain_runs SET progress = ?, message = ? WHERE id = ?",
                                 (round(float(fraction), 4), message[:200], run_id)))


_END_FIELDS = {"version", "went_live", "progress", "message", "error"}


def finish(ws: Any, run_id: int, status: str, **fields: Any) -> None:
    """End a run: status ('succeeded' / 'failed'), finished_at, and any of version, went_live,
    progress, message, error."""
    unknown = set(fields) - _END_FIELDS
    if unknown:
        raise ValueError(f"unknown retrain_runs fields {sorted(unknown)}; expected some of {sorted(_END_FIELDS)}")
    sets = {"status": status, "finished_at": _now(), **fields}
    ws.write(lambda c: c.execute(f"UPDATE retrain_runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                                 (*sets.values(), run_id)))


def mark_interrupted(ws: Any, run: dict, reason: str) -> None:
    """A run whose process died: 'interrupted' with `reason`; the version it was building (if
    registered, 'ready' and not live) becomes 'failed', in one transaction."""
    def mark(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE retrain_runs SET status = 'interrupted', finished_at = ?, error = ? "
                     "WHERE id = ? AND status = 'running'", (_now(), reason, run["id"]))
        live = conn.execute("SELECT value FROM settings WHERE key = ?", (LIVE_KEY,)).fetchone()
        if run["version"] and (live is None or live[0] != run["version"]):
            conn.execute("UPDATE model_versions SET status = 'failed', notes = ? WHERE id = ? AND status = 'ready'",
                         (f"retrain run {run['id']} {reason}", run["version"]))

    ws.write(mark)
