"""The append-only decision log: named operations on `decisions` (and the views over it).

Writes: `append` inserts one row; functions taking `conn` run inside the caller's
`Workspace.write` transaction, so a decision commits together with the reservation it releases.
Replay: every appended decision gets the next value of the 'decisions' counter in its own
transaction (`decision_seq`, trigger of m065); `since(seq)` returns what was appended after a
position, in commit order, whatever ids the rows carry. Triggers refuse UPDATE and DELETE.
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Iterable

from store._conn import Db, conn_of, counter, rows
from store.workspace import ACTIONS, WorkspaceError, now_iso

LABELS = "('accept', 'correct', 'auto_accept')"        # the actions that give a category
_NOT_UNDONE = "NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id)"


# -- writes ---------------------------------------------------------------------------------------
def append(conn: sqlite3.Connection, product_id: str, reviewer: str, action: str, *, category: int | None = None,
           undoes: int | None = None, model_version: str | None = None, shown_top5: list | None = None,
           comment: str = "", lead_time_ms: int | None = None, idempotency_key: str | None = None,
           batch_id: str | None = None, via: str | None = None) -> dict:
    """Append one decision in the open transaction; a key already stored returns that row."""
    if action not in ACTIONS:
        raise WorkspaceError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    key = idempotency_key or uuid.uuid4().hex
    existing = by_key(conn, key)
    if existing is not None:
        return existing
    row = {"product_id": str(product_id), "reviewer": reviewer, "action": action,
           "category": None if category is None else int(category), "undoes": undoes,
           "model_version": model_version, "shown_top5": None if shown_top5 is None else json.dumps(shown_top5),
           "comment": comment or "", "lead_time_ms": lead_time_ms, "idempotency_key": key,
           "created_at": now_iso()}
    if batch_id is not None:
        row["batch_id"] = batch_id
    if via is not None:
        row["via"] = via
    cur = conn.execute(f"INSERT INTO decisions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
    return get(conn, cur.lastrowid)


# -- single rows ----------------------------------------------------------------------------------
def by_key(db: Db, key: str) -> dict | None:
    row = conn_of(db).execute("SELECT * FROM decisions WHERE idempotency_key = ?", (key,)).fetchone()
    return None if row is None else dict(row)


def get(db: Db, decision_id: int) -> dict | None:
    row = conn_of(db).execute("SELECT * FROM decisions WHERE id = ?", (decision_id,)).fetchone()
    return None if row is None else dict(row)


def latest_undoable(db: Db, reviewer: str) -> dict | None:
    """The reviewer's latest own decision not undone (an admin's auto-accepts are undone by batch)."""
    row = conn_of(db).execute(
        f"SELECT d.* FROM decisions d WHERE d.reviewer = ? AND d.action NOT IN ('undo', 'auto_accept') "
        f"AND {_NOT_UNDONE} ORDER BY d.id DESC LIMIT 1", (reviewer,)).fetchone()
    return None if row is None else dict(row)


def first_label_holder(db: Db, product_id: str) -> str | None:
    """The reviewer of the product's earliest label decision still standing, if any."""
    row = conn_of(db).execute(
        f"SELECT d.reviewer FROM decisions d WHERE d.product_id = ? AND d.action IN {LABELS} "
        f"AND {_NOT_UNDONE} ORDER BY d.id LIMIT 1", (str(product_id),)).fetchone()
    return None if row is None else row[0]


# -- replay ---------------------------------------------------------------------------------------
def position(db: Db) -> int:
    """How many decisions were appended (the 'decisions' counter): a replay's high-water mark."""
    return counter(db, "decisions")


def since(db: Db, seq: int) -> list[tuple]:
    """(seq, id, product, reviewer, action, category, undoes) of every decision appended after
    position `seq`, in commit order."""
    return conn_of(db).execute(
        "SELECT s.seq, d.id, d.product_id, d.reviewer, d.action, d.category, d.undoes FROM decision_seq s "
        "JOIN decisions d ON d.id = s.decision_id WHERE s.seq > ? ORDER BY s.seq", (seq,)).fetchall()


# -- reads for screens and stats ------------------------------------------------------------------
def recent(db: Db, reviewer: str, limit: int = 10) -> list[dict]:
    """The reviewer's latest decisions not undone, newest first, with the product's title."""
    return rows(db, "SELECT e.*, p.title FROM effective_decisions e JOIN products p ON p.id = e.product_id "
                    "WHERE e.reviewer = ? ORDER BY e.id DESC LIMIT ?", (reviewer, int(limit)))


def disagreements(db: Db) -> list[dict]:
    """Products where reviewers' latest standing accept/correct name different categories."""
    return rows(db,
        "SELECT product_id, group_concat(reviewer || '=' || category, ', ') AS votes FROM ("
        "  SELECT e.product_id, e.reviewer, e.category FROM effective_decisions e "
        "  WHERE e.action IN ('accept', 'correct') AND e.id = (SELECT max(f.id) FROM effective_decisions f "
        "    WHERE f.product_id = e.product_id AND f.reviewer = e.reviewer AND f.action IN ('accept', 'correct'))"
        ") GROUP BY product_id HAVING count(DISTINCT category) > 1 ORDER BY product_id")


def reviewed_labels(db: Db) -> list[dict]:
    """Standing accept/correct decisions, oldest first, with the top-5 the reviewer was shown."""
    return rows(db, "SELECT id, product_id, reviewer, action, category, model_version, shown_top5, created_at "
                    "FROM effective_decisions WHERE action IN ('accept', 'correct') ORDER BY id")


def label_deciders(db: Db) -> list[tuple[str, str]]:
    """(product, reviewer) pairs with a standing label decision (bulk auto-accepts included)."""
    return [(r[0], r[1]) for r in conn_of(db).execute(
        f"SELECT DISTINCT product_id, reviewer FROM effective_decisions WHERE action IN {LABELS}")]


def standing_by_action(db: Db) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn_of(db).execute(
        "SELECT action, count(*) FROM effective_decisions GROUP BY action")}


def undo_count(db: Db) -> int:
    return int(conn_of(db).execute("SELECT count(*) FROM decisions WHERE action = 'undo'").fetchone()[0])


def reviewer_count(db: Db) -> int:
    """Reviewers with a decision standing."""
    return int(conn_of(db).execute("SELECT count(DISTINCT reviewer) FROM effective_decisions").fetchone()[0])


def timeline(db: Db) -> list[dict]:
    """reviewer, created_at, lead_time_ms of every standing decision, per reviewer in order."""
    return rows(db, "SELECT reviewer, created_at, lead_time_ms FROM effective_decisions ORDER BY reviewer, id")


def rows_by_id(db: Db, ids: Iterable[int]) -> dict[int, dict]:
    """id -> (id, category, reviewer, created_at, action) of the given decisions."""
    ids = [int(i) for i in ids]
    if not ids:
        return {}
    return {r["id"]: r for r in rows(db, f"SELECT id, category, reviewer, created_at, action FROM decisions "
                                         f"WHERE id IN ({','.join('?' * len(ids))})", ids)}


def product_history(db: Db, product_id: str) -> list[dict]:
    """Every decision on the product but undo rows, oldest first, with `undone` set."""
    c = conn_of(db)
    undone = {r[0] for r in c.execute("SELECT undoes FROM decisions WHERE product_id = ? AND action = 'undo'",
                                      (str(product_id),))}
    return [{**r, "undone": r["id"] in undone} for r in rows(
        c, "SELECT id, reviewer, action, category, comment, created_at, via FROM decisions "
           "WHERE product_id = ? AND action != 'undo' ORDER BY id", (str(product_id),))]


def current_label(db: Db, product_id: str) -> int | None:
    """The product's label by the `current_labels` view (latest standing label, else imported)."""
    row = conn_of(db).execute("SELECT category FROM current_labels WHERE product_id = ?",
                              (str(product_id),)).fetchone()
    return None if row is None else row[0]
