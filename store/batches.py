"""Decisions taken as one and undone as one: `decision_batches` (bulk auto-accept, grid pages,
Label Studio imports, their undos). The batch row and its decisions are written in the caller's
`Workspace.write` transaction (`conn`)."""
from __future__ import annotations

import sqlite3

from store._conn import Db, conn_of, rows
from store.workspace import now_iso

_NOT_UNDONE = "NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id)"


def create(conn: sqlite3.Connection, batch_id: str, kind: str, reviewer: str, *, model_version: str | None,
           threshold: float | None = None, undoes_batch: str | None = None, n_decisions: int = 0,
           note: str = "") -> None:
    conn.execute("INSERT INTO decision_batches (id, kind, reviewer, model_version, threshold, undoes_batch, "
                 "n_decisions, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (batch_id, kind, reviewer, model_version, threshold, undoes_batch, int(n_decisions), note,
                  now_iso()))


def add_decisions(conn: sqlite3.Connection, batch_id: str, n: int) -> None:
    conn.execute("UPDATE decision_batches SET n_decisions = n_decisions + ? WHERE id = ?", (int(n), batch_id))


def get(db: Db, batch_id: str) -> dict | None:
    row = conn_of(db).execute("SELECT * FROM decision_batches WHERE id = ?", (batch_id,)).fetchone()
    return None if row is None else dict(row)


def recent_ids(db: Db, limit: int = 5) -> list[str]:
    """The latest batches but undo batches, newest first (for an error naming what exists)."""
    return [r[0] for r in conn_of(db).execute(
        "SELECT id FROM decision_batches WHERE kind != 'undo' ORDER BY created_at DESC LIMIT ?", (int(limit),))]


def owner(db: Db, batch_id: str, kind: str) -> str | None:
    row = conn_of(db).execute("SELECT reviewer FROM decision_batches WHERE id = ? AND kind = ?",
                              (batch_id, kind)).fetchone()
    return None if row is None else row[0]


def product_ids(db: Db, batch_id: str) -> list[str]:
    """Products of the batch's decisions, in the order they were written."""
    return [r[0] for r in conn_of(db).execute("SELECT product_id FROM decisions WHERE batch_id = ? ORDER BY id",
                                              (batch_id,))]


def decision_ids(db: Db, batch_id: str) -> list[int]:
    """The batch's own decisions (undo rows of it left out), in order."""
    return [int(r[0]) for r in conn_of(db).execute(
        "SELECT id FROM decisions WHERE batch_id = ? AND action != 'undo' ORDER BY id", (batch_id,))]


def still_in_effect(db: Db, decision_ids: list[int]) -> list[dict]:
    """id, product_id, model_version of those of the decisions not undone."""
    if not decision_ids:
        return []
    return rows(db, f"SELECT d.id, d.product_id, d.model_version FROM decisions d WHERE d.id IN "
                    f"({','.join('?' * len(decision_ids))}) AND {_NOT_UNDONE} ORDER BY d.id", decision_ids)


def auto_accept_candidates(db: Db, version: str, threshold: float) -> list[dict]:
    """product_id, top1, top1_prob, top5 (JSON), source_label of `version`'s predictions at or above
    the threshold on products with no standing label decision, surest first."""
    return rows(db, "SELECT pr.product_id, pr.top1, pr.top1_prob, pr.top5, p.source_label FROM predictions pr "
                    "JOIN products p ON p.id = pr.product_id "
                    "WHERE pr.model_version = ? AND pr.top1_prob >= ? AND NOT EXISTS ("
                    "  SELECT 1 FROM effective_decisions e WHERE e.product_id = pr.product_id "
                    "  AND e.action IN ('accept', 'correct', 'auto_accept')) "
                    "ORDER BY pr.top1_prob DESC, pr.product_id", (version, float(threshold)))


def labelled(db: Db, product_ids: list[str]) -> set[str]:
    """Those of the products with a standing label decision."""
    if not product_ids:
        return set()
    return {r[0] for r in conn_of(db).execute(
        f"SELECT product_id FROM effective_decisions WHERE product_id IN ({','.join('?' * len(product_ids))}) "
        "AND action IN ('accept', 'correct', 'auto_accept')", list(product_ids))}


def listing(db: Db, limit: int = 20) -> list[dict]:
    """Recent batches, newest first, with how many of their decisions are still in effect."""
    return rows(db, "SELECT b.*, (SELECT count(*) FROM decisions d WHERE d.batch_id = b.id AND d.action != 'undo' "
                    f"  AND {_NOT_UNDONE}) AS in_effect "
                    "FROM decision_batches b ORDER BY b.created_at DESC, b.rowid DESC LIMIT ?", (int(limit),))
