"""Stored predictions, one row per (product, model version): the store's named operations."""
from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable, Iterator


def save(ws: Any, model_version: str, rows: Iterable[dict], *, source: str | None = None) -> int:
    """rows: product_id, top5 [[code, p]...], probs [k floats], voters {name: [[code, p]...]},
    top1, top1_prob, margin, entropy, disagreement. source: which model made them
    ('out-of-fold' or 'model trained on all labels'), shown on the card. Replaces earlier rows
    of the same (product, version)."""
    from store.workspace import now_iso
    created = now_iso()
    values = [(str(r["product_id"]), model_version, json.dumps(r["top5"]), json.dumps(r["probs"]),
               json.dumps(r.get("voters", {})), int(r["top1"]), float(r["top1_prob"]), float(r["margin"]),
               float(r["entropy"]), int(r.get("disagreement", 0)), created, source) for r in rows]

    def insert(conn: sqlite3.Connection) -> int:
        conn.executemany(
            "INSERT OR REPLACE INTO predictions (product_id, model_version, top5, probs, voters, top1, "
            "top1_prob, margin, entropy, disagreement, created_at, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            values)
        return len(values)

    return ws.write(insert)


def get(ws: Any, product_id: str, model_version: str | None = None) -> dict | None:
    """One product's prediction by `model_version` (default: the live one), JSON fields decoded."""
    from store import versions
    version = model_version or versions.live(ws)
    if version is None:
        return None
    rows = ws.query("SELECT * FROM predictions WHERE product_id = ? AND model_version = ?",
                    (str(product_id), version))
    if not rows:
        return None
    row = rows[0]
    for k in ("top5", "probs", "voters"):
        row[k] = json.loads(row[k])
    return row


def scored_ids(ws: Any, model_version: str) -> set[str]:
    """Products `model_version` stored a prediction for."""
    return {r[0] for r in ws.conn.execute("SELECT product_id FROM predictions WHERE model_version = ?",
                                          (model_version,))}


def unscored_ids(ws: Any, model_version: str) -> list[str]:
    """Products (import order) without a prediction from `model_version` (imported since it was made)."""
    return [r[0] for r in ws.conn.execute(
        "SELECT p.id FROM products p LEFT JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = ? "
        "WHERE pr.product_id IS NULL ORDER BY p.rowid", (model_version,))]


def outcomes(ws: Any, model_version: str) -> Iterator[dict]:
    """product_id, top1, voters (decoded), source of every prediction `model_version` stored, one
    row at a time as the caller reads them (a catalog's worth of decoded JSON never sits in
    memory): what comparing two versions needs."""
    cursor = ws.conn.execute("SELECT product_id, top1, voters, source FROM predictions WHERE model_version = ?",
                             (model_version,))
    for pid, top1, voters, source in cursor:
        yield {"product_id": pid, "top1": int(top1), "voters": json.loads(voters), "source": source}


def top5_by_product(ws: Any, model_version: str) -> dict[str, list]:
    """product id -> [[code, p], ...] of `model_version`."""
    return {pid: json.loads(top5) for pid, top5 in ws.conn.execute(
        "SELECT product_id, top5 FROM predictions WHERE model_version = ?", (model_version,))}


def top1_by_product(ws: Any, model_version: str) -> dict[str, int]:
    """product id -> top-1 code of `model_version`."""
    return {pid: int(top1) for pid, top1 in ws.conn.execute(
        "SELECT product_id, top1 FROM predictions WHERE model_version = ?", (model_version,))}
