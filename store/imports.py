"""Import batches, the products they bring, their problems, and labels imported from other
tools: the store's named operations."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

INSERT_CHUNK = 1000     # products per executemany (progress is reported between chunks)


class NewProduct(Protocol):
    """One product as an import brings it (`labeler.importer.ProductRecord`). `title` is '' for a
    product with only a photo or a description (m080: the schema wants one of the three)."""
    id: str
    title: str
    description: str
    image_path: str | None
    image_sha1: str | None
    source_label: int | None
    source_row: str | None


@dataclass(frozen=True)
class Problem:
    """One `import_problems` row."""
    file: str
    line: str | None
    field: str
    reason: str


def product_ids(ws: Any) -> set[str]:
    """Every stored product id."""
    return {r[0] for r in ws.conn.execute("SELECT id FROM products")}


def first_batch_with(ws: Any, fingerprint: str) -> int | None:
    """The first batch that imported files with this fingerprint (None: never imported)."""
    return ws.scalar("SELECT min(id) FROM import_batches WHERE fingerprint = ?", (fingerprint,))


def batches(ws: Any) -> list[dict]:
    """id, source of every import batch, oldest first."""
    return ws.query("SELECT id, source FROM import_batches ORDER BY id")


def products_of_batches(ws: Any, batch_ids: Sequence[int]) -> list[str]:
    """Product ids (import order) brought by these batches."""
    if not batch_ids:
        return []
    return [r[0] for r in ws.conn.execute(
        f"SELECT id FROM products WHERE batch_id IN ({','.join('?' * len(batch_ids))}) ORDER BY rowid",
        list(batch_ids))]


def store_batch(ws: Any, *, source: str, fingerprint: str, n_rows: int, n_skipped: int,
                products: Sequence[NewProduct], problems: Sequence[Problem],
                progress: Callable[[int, int], None] | None = None) -> tuple[int, list[NewProduct]]:
    """One import batch in ONE transaction: the batch row, the products not stored yet (checked
    again inside the transaction) and the problems. Returns (batch id, the products written).
    progress(done, total) is called between chunks of products."""
    from store.workspace import now_iso

    def write(conn: sqlite3.Connection) -> tuple[int, list[NewProduct]]:
        imported_at = now_iso()
        existing = {r[0] for r in conn.execute("SELECT id FROM products")}
        new = [p for p in products if p.id not in existing]
        cur = conn.execute(
            "INSERT INTO import_batches (source, fingerprint, started_at, n_rows, n_imported, n_skipped) "
            "VALUES (?, ?, ?, ?, ?, ?)", (source, fingerprint, imported_at, n_rows, len(new), n_skipped))
        batch = int(cur.lastrowid)
        for start in range(0, len(new), INSERT_CHUNK):
            chunk = new[start:start + INSERT_CHUNK]
            conn.executemany(
                "INSERT INTO products (id, title, description, image_path, image_sha1, source_label, batch_id, "
                "source_row, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(p.id, p.title, p.description, p.image_path, p.image_sha1, p.source_label, batch,
                  p.source_row, imported_at) for p in chunk])
            if progress is not None:
                progress(start + len(chunk), len(new))
        conn.executemany("INSERT INTO import_problems (batch_id, file, row, field, reason) VALUES (?, ?, ?, ?, ?)",
                         [(batch, p.file, p.line, p.field, p.reason) for p in problems])
        return batch, new

    return ws.write(write)


def remove_everything(ws: Any, *, settings: Sequence[str]) -> None:
    """Empty a workspace of its catalog and all learnt from it, in one transaction: products,
    import batches, model versions, retrain and label-issue runs, live history, every row that
    points at those (found from SQLite's own foreign keys), and the named `settings` keys.
    Decisions are append-only: the caller makes sure there are none."""
    def referencing(conn: sqlite3.Connection, parent: str) -> list[str]:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [t for t in tables if t != parent
                for fk in conn.execute(f"PRAGMA foreign_key_list('{t}')") if fk[2] == parent]

    def delete(conn: sqlite3.Connection) -> None:
        for parent in ("products", "model_versions", "import_batches", "label_issue_runs", "retrain_runs"):
            for table in referencing(conn, parent):
                if table != "decisions":
                    conn.execute(f"DELETE FROM '{table}'")
        for table in ("label_issue_runs", "retrain_runs", "live_history", "model_versions", "products",
                      "import_batches"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute(f"DELETE FROM settings WHERE key IN ({','.join('?' * len(settings))})", tuple(settings))

    ws.write(delete)


@dataclass(frozen=True)
class ImportedLabel:
    """One label from another tool, as a decision to record (`record_imported_labels`)."""
    product_id: str
    reviewer: str
    category: int
    action: str                  # 'accept' (the model's top-1 agreed) or 'correct'
    model_version: str | None
    comment: str
    lead_time_ms: int | None
    idempotency_key: str


def record_imported_labels(ws: Any, labels: Sequence[ImportedLabel], *, batch_id: str, kind: str,
                           reviewer: str, model_version: str | None, note: str, via: str) -> tuple[int, int]:
    """Record labels as decisions of one `decision_batches` row, in one transaction. A label
    already stored (same idempotency key), or equal to what its reviewer's latest label decision
    says, is skipped. Returns (written, already present); the batch row exists only if written."""
    from store.workspace import now_iso

    def tx(conn: sqlite3.Connection) -> tuple[int, int]:
        written = already = 0
        for item in labels:
            if conn.execute("SELECT 1 FROM decisions WHERE idempotency_key = ?", (item.idempotency_key,)).fetchone():
                already += 1
                continue
            current = conn.execute(
                "SELECT category FROM effective_decisions WHERE product_id = ? AND reviewer = ? "
                "AND action IN ('accept', 'correct', 'auto_accept') ORDER BY id DESC LIMIT 1",
                (item.product_id, item.reviewer)).fetchone()
            if current is not None and int(current[0]) == item.category:
                already += 1
                continue
            if written == 0:
                conn.execute("INSERT INTO decision_batches (id, kind, reviewer, model_version, note, created_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (batch_id, kind, reviewer, model_version, note, now_iso()))
            ws.record_decision(item.product_id, item.reviewer, item.action, category=item.category,
                               model_version=item.model_version, comment=item.comment,
                               lead_time_ms=item.lead_time_ms, idempotency_key=item.idempotency_key, conn=conn,
                               batch_id=batch_id, via=via)
            written += 1
        if written:
            conn.execute("UPDATE decision_batches SET n_decisions = ? WHERE id = ?", (written, batch_id))
        return written, already

    return ws.write(tx)
