"""SQL for adjudication: each reviewer's vote per product, the admins' rulings, and recording one.

A ruling is an ordinary append-only decision row (action 'accept' or 'correct') marked
`via = 'adjudication'`; the label rule (store/labels.py) takes a product's latest ruling still in
effect as its label, whatever the votes. No new action or table: every reader of decisions
(queue, stats, export) already understands the row, and an undo row takes a ruling back.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

VIA = "adjudication"

# each reviewer's latest label-setting decision still in effect, per product; rulings left out
_VOTES = f"""
    SELECT product_id, reviewer, category, id, comment, created_at, action FROM (
        SELECT e.product_id, e.reviewer, e.category, e.id, e.comment, e.created_at, e.action,
               ROW_NUMBER() OVER (PARTITION BY e.product_id, e.reviewer ORDER BY e.id DESC) AS rn
        FROM effective_decisions e
        WHERE e.action IN ('accept', 'correct', 'auto_accept') AND coalesce(e.via, '') != '{VIA}')
    WHERE rn = 1"""

_RULINGS = f"""
    SELECT product_id, reviewer, category, id, comment, created_at FROM (
        SELECT e.product_id, e.reviewer, e.category, e.id, e.comment, e.created_at,
               ROW_NUMBER() OVER (PARTITION BY e.product_id ORDER BY e.id DESC) AS rn
        FROM effective_decisions e
        WHERE e.action IN ('accept', 'correct') AND e.via = '{VIA}')
    WHERE rn = 1"""


def votes(ws: Any) -> list[dict]:
    """Every (product, reviewer) latest effective vote: product_id, reviewer, category, id,
    comment, created_at, action; ordered by product then decision id."""
    return ws.query(_VOTES + " ORDER BY product_id, id")


def disputed_votes(ws: Any) -> list[dict]:
    """The votes of products whose reviewers' votes name two or more categories."""
    return ws.query(f"""
        WITH v AS ({_VOTES})
        SELECT v.* FROM v WHERE v.product_id IN (
            SELECT product_id FROM v GROUP BY product_id HAVING count(DISTINCT category) > 1)
        ORDER BY v.product_id, v.id""")


def rulings(ws: Any, product_ids: list[str] | None = None) -> dict[str, dict]:
    """product id -> its latest ruling in effect (reviewer = the admin, category, id, comment)."""
    if product_ids is not None and not product_ids:
        return {}
    where, params = "", []
    if product_ids is not None:
        where = f" AND product_id IN ({','.join('?' * len(product_ids))})"
        params = [str(p) for p in product_ids]
    return {r["product_id"]: r for r in ws.query(_RULINGS + where, params)}


def products_info(ws: Any, product_ids: list[str], version: str | None) -> dict[str, dict]:
    """id -> title, image_path, source_label and the live version's top1 / top1_prob (or None)."""
    if not product_ids:
        return {}
    marks = ",".join("?" * len(product_ids))
    rows = ws.query(f"""
        SELECT p.id, p.title, p.image_path, p.source_label, pr.top1, pr.top1_prob, pr.top5
        FROM products p LEFT JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = ?
        WHERE p.id IN ({marks})""", [version, *product_ids])
    return {r["id"]: r for r in rows}


def product_exists(ws: Any, product_id: str) -> bool:
    return ws.scalar("SELECT 1 FROM products WHERE id = ?", (str(product_id),)) is not None


def record_ruling(ws: Any, product_id: str, admin: str, category: int, *, comment: str = "",
                  idempotency_key: str | None = None) -> dict:
    """Append the ruling as a decision: 'accept' when it is the live model's top-1, else 'correct'."""
    version = ws.live_version()

    def write(conn: sqlite3.Connection) -> dict:
        top = conn.execute("SELECT top1, top5 FROM predictions WHERE product_id = ? AND model_version = ?",
                           (str(product_id), version)).fetchone() if version else None
        action = "accept" if top is not None and int(top[0]) == int(category) else "correct"
        return ws.record_decision(product_id, admin, action, category=int(category), model_version=version,
                                  shown_top5=json.loads(top[1]) if top is not None else None, comment=comment,
                                  idempotency_key=idempotency_key, conn=conn, via=VIA)

    return ws.write(write)
