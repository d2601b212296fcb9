"""What the store's named operations run on: a `Workspace` (a read on this thread's connection)
or the connection a `Workspace.write` callback was given (inside that open transaction)."""
from __future__ import annotations

import sqlite3
from typing import Any, Union

Db = Union[sqlite3.Connection, Any]    # a sqlite3.Connection or a store.workspace.Workspace


def conn_of(db: Db) -> sqlite3.Connection:
    """The connection to run a statement on (a Workspace's per-thread one, or `db` itself)."""
    return db if isinstance(db, sqlite3.Connection) else db.conn


def rows(db: Db, sql: str, params: Any = ()) -> list[dict]:
    return [dict(r) for r in conn_of(db).execute(sql, params)]


def counter(db: Db, name: str) -> int:
    """A named generation of `counters` (m065): bumped in the transaction of each write it counts."""
    row = conn_of(db).execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])
