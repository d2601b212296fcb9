"""SQL for category guides: the candidate example products of a category.

A candidate is a product a human reviewer put in the category (an effective 'accept' or
'correct' naming it; bulk auto-accepts are not a human's word) that the live model also ranks
first there, surest first. `labeler.guides` then keeps those whose label by the label rule is
still the category.
"""
from __future__ import annotations

from typing import Any


def candidates(ws: Any, category: int, version: str | None, limit: int) -> list[dict]:
    """Up to `limit` rows (id, title, image_path, prob) by the live model's probability, descending;
    without a live version, the latest reviewed ones (prob None)."""
    reviewed = ("EXISTS (SELECT 1 FROM effective_decisions e WHERE e.product_id = p.id "
                "AND e.action IN ('accept', 'correct') AND e.category = :cat)")
    if version:
        rows = ws.query(f"""
            SELECT p.id, p.title, p.image_path, pr.top1_prob AS prob
            FROM predictions pr JOIN products p ON p.id = pr.product_id
            WHERE pr.model_version = :v AND pr.top1 = :cat AND {reviewed}
            ORDER BY pr.top1_prob DESC, p.rowid LIMIT :n""", {"v": version, "cat": int(category), "n": int(limit)})
        if rows:
            return rows
    return ws.query(f"""
        SELECT p.id, p.title, p.image_path, NULL AS prob FROM products p
        WHERE {reviewed} ORDER BY p.rowid DESC LIMIT :n""", {"cat": int(category), "n": int(limit)})


def labels_of(ws: Any, product_ids: list[str]) -> dict[str, int]:
    """The label-rule label of a few products (reviewed ones only)."""
    from store.labels import resolve_labels
    return resolve_labels(ws, reviewed_only=True, ids=list(product_ids)) if product_ids else {}
