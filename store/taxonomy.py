"""A workspace's categories in its `categories` table (migration m050), and a version's classes.

Plain rows in, plain rows out: the `Taxonomy` object and its rules live in labeler/taxonomy.py.
No rows = the workspace uses the default taxonomy. Keys: a whole-number code is its own key; a
text code gets the next negative key the first time the workspace sees it and keeps it, even after
it is removed (the row is retired, not deleted), so a key in any stored row always names the
category it named when written.
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any, Iterable, Mapping

from store.health import WorkspaceError

REV_KEY = "taxonomy_rev"
SOURCE_KEY = "taxonomy_source"


class CategoryInUse(WorkspaceError):
    """A change would drop a category that products or decisions still hold."""

    def __init__(self, key: int, n_products: int, n_decisions: int):
        super().__init__(f"category key {key} is used by {n_products} products and {n_decisions} decisions")
        self.key, self.n_products, self.n_decisions = key, n_products, n_decisions


def revision(ws: Any) -> str | None:
    """A token that changes with every change of the workspace's categories; None = none stored."""
    row = ws.conn.execute("SELECT value FROM settings WHERE key = ?", (REV_KEY,)).fetchone()
    return None if row is None else row[0]


def source(ws: Any) -> str | None:
    """The file the stored categories came from (as given at import)."""
    row = ws.conn.execute("SELECT value FROM settings WHERE key = ?", (SOURCE_KEY,)).fetchone()
    return None if row is None else row[0]


def rows(ws: Any) -> list[dict]:
    """The categories in use, in order: code, key, name, description, keywords (list), parent."""
    out = []
    for r in ws.conn.execute("SELECT key, code, name, description, keywords, parent FROM categories "
                             "WHERE retired_at IS NULL ORDER BY position"):
        out.append({"code": r[1], "key": r[0], "name": r[2], "description": r[3],
                    "keywords": json.loads(r[4]), "parent": r[5]})
    return out


def retired(ws: Any) -> list[dict]:
    """Categories removed from the workspace (their keys stay reserved): code, key, name."""
    return [{"code": r[1], "key": r[0], "name": r[2]} for r in ws.conn.execute(
        "SELECT key, code, name FROM categories WHERE retired_at IS NOT NULL ORDER BY key")]


def keys_in_use(conn: sqlite3.Connection) -> dict[int, tuple[int, int]]:
    """key -> (products whose imported label it is, decisions that name it)."""
    used: dict[int, list[int]] = {}
    for key, n in conn.execute("SELECT source_label, count(*) FROM products "
                               "WHERE source_label IS NOT NULL GROUP BY source_label"):
        used.setdefault(int(key), [0, 0])[0] = int(n)
    for key, n in conn.execute("SELECT category, count(*) FROM decisions "
                               "WHERE category IS NOT NULL GROUP BY category"):
        used.setdefault(int(key), [0, 0])[1] = int(n)
    return {k: (v[0], v[1]) for k, v in used.items()}


def replace(ws: Any, categories: Iterable[Mapping[str, Any]], *, source: str = "") -> dict[str, int]:
    """Make `categories` (dicts: code, key (None for a text code without one), name, description,
    keywords, parent; in order) the workspace's categories, in one transaction.

    A text code gets its stored key, or the next negative key. Raises `CategoryInUse` (nothing
    written) when a key that products or decisions hold would no longer be a category. Returns
    code -> key for every category."""
    cats = [dict(c) for c in categories]

    def write(conn: sqlite3.Connection) -> dict[str, int]:
        known = {code: key for key, code in conn.execute("SELECT key, code FROM categories")}
        lowest = min([0] + [k for k in known.values() if k < 0])
        assigned: dict[str, int] = {}
        for c in cats:
            key = c.get("key")
            if key is None or int(key) < 0:
                key = known.get(c["code"])
                if key is None:
                    lowest -= 1
                    key = lowest
            assigned[c["code"]] = int(key)
        wanted = set(assigned.values())
        for key, (n_products, n_decisions) in sorted(keys_in_use(conn).items()):
            if key not in wanted:
                raise CategoryInUse(key, n_products, n_decisions)
        now = _now(conn)
        conn.execute("UPDATE categories SET position = -1 - position WHERE position IS NOT NULL")
        for i, c in enumerate(cats):
            conn.execute(
                "INSERT INTO categories (key, code, position, name, description, keywords, parent, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET code = excluded.code, "
                "position = excluded.position, name = excluded.name, description = excluded.description, "
                "keywords = excluded.keywords, parent = excluded.parent, retired_at = NULL",
                (assigned[c["code"]], c["code"], i, c["name"], c.get("description") or "",
                 json.dumps(list(c.get("keywords") or []), ensure_ascii=False), c.get("parent"), now))
        conn.execute("UPDATE categories SET position = NULL, retired_at = ? WHERE position < 0", (now,))
        _set(conn, REV_KEY, f"{now} {uuid.uuid4().hex[:8]}")
        _set(conn, SOURCE_KEY, source)
        return assigned

    return ws.write(write)


# -- a version's classes -----------------------------------------------------------------------
def set_version_classes(ws: Any, version: str, classes: Iterable[int], *, conn: sqlite3.Connection | None = None) -> None:
    """Record the keys of a version's probability columns, in column order."""
    value = json.dumps([int(k) for k in classes])

    def write(c: sqlite3.Connection) -> None:
        cur = c.execute("UPDATE model_versions SET classes = ? WHERE id = ?", (value, version))
        if cur.rowcount != 1:
            raise WorkspaceError(f"unknown model version {version!r}")

    write(conn) if conn is not None else ws.write(write)


def version_classes(ws: Any, version: str) -> list[int] | None:
    """The keys of a version's probability columns; None for a version that recorded none
    (trained before m050: its columns are the default taxonomy's keys in order)."""
    row = ws.conn.execute("SELECT classes FROM model_versions WHERE id = ?", (version,)).fetchone()
    return None if row is None or row[0] is None else [int(k) for k in json.loads(row[0])]


def _set(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO settings(key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def _now(conn: sqlite3.Connection) -> str:
    return conn.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").fetchone()[0]
