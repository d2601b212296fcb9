"""Catalog reads for the review side: products with the live version's predictions, read in bulk
for the queue (in pages) and browse caches, and the generations those caches are keyed on.

Cache invalidation is by counters (m065): 'catalog' moves with every product or prediction
written, 'label_issues' with every stored detection run, each bumped by a trigger in the writing
transaction, so a cache compares one integer instead of guessing from max(rowid)."""
from __future__ import annotations

from typing import Iterator

from store._conn import Db, conn_of, counter, rows

GRID_ORDERS = {"surest": "pr.top1_prob DESC, p.rowid", "least_sure": "pr.top1_prob ASC, p.rowid"}


def generation(db: Db) -> int:
    """Moves whenever products or predictions are written."""
    return counter(db, "catalog")


def issues_generation(db: Db) -> int:
    """Moves whenever a label-issue detection run is stored."""
    return counter(db, "label_issues")


def count_products(db: Db) -> int:
    return int(conn_of(db).execute("SELECT count(*) FROM products").fetchone()[0])


def count_versions(db: Db) -> int:
    return int(conn_of(db).execute("SELECT count(*) FROM model_versions").fetchone()[0])


def queue_batches(db: Db, version: str | None, size: int) -> Iterator[list[tuple]]:
    """(id, source_label, probs JSON or None, text top-1, image top-1) of every product in import
    order, with `version`'s prediction where it has one, `size` products at a time (a keyset walk
    by rowid): what the ranked queue is built from, one page of JSON in memory at a time."""
    conn, last = conn_of(db), -1
    while True:
        found = conn.execute(
            "SELECT p.rowid, p.id, p.source_label, pr.probs, json_extract(pr.voters, '$.text[0][0]'), "
            "json_extract(pr.voters, '$.image[0][0]') FROM products p "
            "LEFT JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = ? "
            "WHERE p.rowid > ? ORDER BY p.rowid LIMIT ?", (version, last, size)).fetchall()
        if not found:
            return
        last = int(found[-1][0])
        yield [tuple(r)[1:] for r in found]


def browse_rows(db: Db, version: str | None) -> list[tuple]:
    """(rowid, id, title, imported, predicted, confidence or None, disagreement) of every product in
    import order: the browse columns. rowid is the key full-text search answers with."""
    return conn_of(db).execute(
        "SELECT p.rowid, p.id, p.title, coalesce(p.source_label, 0), coalesce(pr.top1, 0), pr.top1_prob, "
        "coalesce(pr.disagreement, 0) "
        "FROM products p LEFT JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = ? "
        "ORDER BY p.rowid", (version,)).fetchall()


def page_rows(db: Db, ids: list[str], version: str | None) -> dict[str, dict]:
    """product -> title, imported, image_path, predicted, confidence for a page of products."""
    if not ids:
        return {}
    return {r["product_id"]: r for r in rows(
        db, "SELECT p.id AS product_id, p.title, p.source_label AS imported, p.image_path, pr.top1 AS predicted, "
            "pr.top1_prob AS confidence FROM products p LEFT JOIN predictions pr ON pr.product_id = p.id "
            f"AND pr.model_version = ? WHERE p.id IN ({','.join('?' * len(ids))})", [version, *ids])}


def latest_issue_run(db: Db) -> int | None:
    """Latest label-issue detection run, None when none ran."""
    return conn_of(db).execute("SELECT max(id) FROM label_issue_runs").fetchone()[0]


def flagged(db: Db, run: int) -> frozenset[str]:
    """Products the run flagged as suspect labels."""
    return frozenset(r[0] for r in conn_of(db).execute(
        "SELECT product_id FROM label_issues WHERE run_id = ? AND flagged = 1", (run,)))


def undecided_in_category(db: Db, version: str, category: int, order: str, limit: int) -> tuple[int, list[tuple]]:
    """(how many products `version` puts in `category` with no standing label decision, the first
    `limit` of them not reserved by anyone as (id, title, image_path, top1_prob, top5 JSON)) in
    `order` (a GRID_ORDERS key): what a grid page is made of."""
    c = conn_of(db)
    base = ("FROM predictions pr JOIN products p ON p.id = pr.product_id "
            "WHERE pr.model_version = :v AND pr.top1 = :c "
            "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.product_id = pr.product_id "
            "  AND d.action IN ('accept', 'correct', 'auto_accept') "
            "  AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id))")
    params = {"v": version, "c": int(category)}
    remaining = int(c.execute(f"SELECT count(*) {base}", params).fetchone()[0])
    found = c.execute(f"SELECT p.id, p.title, p.image_path, pr.top1_prob, pr.top5 {base} "
                      "AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.product_id = pr.product_id) "
                      f"ORDER BY {GRID_ORDERS[order]} LIMIT :n", {**params, "n": int(limit)}).fetchall()
    return remaining, [tuple(r) for r in found]
