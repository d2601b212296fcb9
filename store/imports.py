"""Import batches, the products they bring, their problems, and labels imported from other
tools: the store's named operations."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

INSERT_CHUNK = 1000     # products per statement (progress is reported between chunks)


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


# -- an import read a chunk at a time --------------------------------------------------------
STAGING = "temp.import_staging"
LABELS = "temp.import_labels"
REFUSED, NEW, STORED = 0, 1, 2          # a staged row's `keep`


class Staging:
    """The products of an import being read, held in SQLite's temp schema of one connection (a
    file of SQLite's own, never the workspace, gone with the connection) until `publish` moves
    them into the workspace in ONE transaction.

    Why: the importer reads, checks and refuses a catalog a chunk at a time, so its memory follows
    the chunk, not the catalog; what it must remember across chunks (every id and index already
    read, with its line, for the duplicate messages) lives here instead of in Python dicts, and
    nothing reaches the workspace until the whole file was read (a file that stops the import
    half-way, such as an unparsable line, still writes nothing). The workspace's write lock is only
    taken by `publish`, so the review app keeps writing decisions while a large catalog is read.

    `workspace`: whether `conn` is a workspace's (then `stored` looks its products up); a parse
    with no workspace stages on a private scratch connection (`scratch()`)."""

    def __init__(self, conn: sqlite3.Connection, *, workspace: bool):
        self.conn, self.workspace = conn, workspace
        self.staged = 0

    def __enter__(self) -> "Staging":
        self.conn.execute(f"DROP TABLE IF EXISTS {STAGING}")
        self.conn.execute(
            f"CREATE TABLE {STAGING} (n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, idx TEXT, "
            "line INTEGER NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL, image_path TEXT, "
            "image_sha1 TEXT, source_label INTEGER, source_row TEXT, keep INTEGER NOT NULL)")
        self.conn.execute(f"CREATE INDEX {STAGING}_idx ON import_staging(idx)")
        self.conn.execute(f"DROP TABLE IF EXISTS {LABELS}")
        self.conn.execute(f"CREATE TABLE {LABELS} (idx TEXT PRIMARY KEY, label INTEGER, line INTEGER NOT NULL, "
                          "raw TEXT NOT NULL, matched INTEGER NOT NULL DEFAULT 0)")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.execute(f"DROP TABLE IF EXISTS {STAGING}")
        self.conn.execute(f"DROP TABLE IF EXISTS {LABELS}")

    def _many(self, sql: str, rows: Sequence[tuple]) -> None:
        self.conn.execute("BEGIN")
        try:
            self.conn.executemany(sql, rows)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def add_labels(self, rows: Sequence[tuple[str, int | None, int, str]]) -> None:
        """Stage (X index, category key or None if unknown, line, raw code) rows of a Y file."""
        if rows:
            self._many(f"INSERT INTO {LABELS} (idx, label, line, raw) VALUES (?, ?, ?, ?)", rows)

    def labels(self, indexes: Sequence[str], *, match: bool = False) -> dict[str, tuple[int | None, int, str]]:
        """{index: (category key or None, line, raw code)} of the staged Y rows among `indexes`;
        match: those are marked as having an X row (`unmatched_labels`)."""
        keys = list(dict.fromkeys(indexes))
        found: dict[str, tuple[int | None, int, str]] = {}
        for start in range(0, len(keys), INSERT_CHUNK):
            part = keys[start:start + INSERT_CHUNK]
            marks = ",".join("?" * len(part))
            found.update((r[0], (r[1], r[2], r[3])) for r in self.conn.execute(
                f"SELECT idx, label, line, raw FROM {LABELS} WHERE idx IN ({marks})", part))
            if match:
                self.conn.execute(f"UPDATE {LABELS} SET matched = 1 WHERE idx IN ({marks}) AND matched = 0", part)
        return found

    def any_label_matched(self) -> bool:
        return self.conn.execute(f"SELECT 1 FROM {LABELS} WHERE matched = 1 LIMIT 1").fetchone() is not None

    def unmatched_labels(self) -> Iterator[tuple[str, int]]:
        """(index, line) of the staged Y rows no X row had, in file order."""
        for r in self.conn.execute(f"SELECT idx, line FROM {LABELS} WHERE matched = 0 ORDER BY line"):
            yield r[0], r[1]

    def seen(self, ids: Sequence[str], indexes: Sequence[str] = ()) -> tuple[dict[str, int], dict[str, int]]:
        """({id: line}, {X index: line}) of these already staged by an earlier chunk."""
        def lookup(column: str, keys: Sequence[str]) -> dict[str, int]:
            keys = list(dict.fromkeys(keys))
            found: dict[str, int] = {}
            for start in range(0, len(keys), INSERT_CHUNK):
                part = keys[start:start + INSERT_CHUNK]
                found.update((r[0], r[1]) for r in self.conn.execute(
                    f"SELECT {column}, line FROM {STAGING} WHERE {column} IN ({','.join('?' * len(part))})", part))
            return found
        return lookup("id", ids) if ids else {}, lookup("idx", indexes) if indexes else {}

    def stored(self, ids: Sequence[str]) -> set[str]:
        """Which of these product ids the workspace already holds (none without a workspace)."""
        if not self.workspace or not ids:
            return set()
        out: set[str] = set()
        ids = list(ids)
        for start in range(0, len(ids), INSERT_CHUNK):
            part = ids[start:start + INSERT_CHUNK]
            out.update(r[0] for r in self.conn.execute(
                f"SELECT id FROM main.products WHERE id IN ({','.join('?' * len(part))})", part))
        return out

    def add(self, rows: Sequence[tuple[NewProduct, str | None, int, int]]) -> None:
        """Stage (product, X index as read, line, keep) rows in file order. keep: NEW (to write),
        STORED (already in the workspace: counted, never written) or REFUSED (its id and index
        still count as read: a later duplicate of it is reported); only NEW rows' texts are kept."""
        if not rows:
            return
        self._many(f"INSERT INTO {STAGING} (id, idx, line, title, description, image_path, image_sha1, source_label, "
                   "source_row, keep) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(p.id, idx, line, p.title, p.description, p.image_path, p.image_sha1, p.source_label,
                     p.source_row, keep) if keep == NEW else (p.id, idx, line, "", "", None, None, None, None, keep)
                    for p, idx, line, keep in rows])
        self.staged += len(rows)


def scratch() -> sqlite3.Connection:
    """A private SQLite database on disk, deleted when closed: staging for a parse with no workspace."""
    return sqlite3.connect("", isolation_level=None)


def publish(ws: Any, staging: Staging, *, source: str, fingerprint: str, n_rows: int, n_skipped: int,
            problems: Sequence[Problem], progress: Callable[[int, int], None] | None = None
            ) -> tuple[int, int, int, int]:
    """The staged import as one batch in ONE transaction: the batch row, the kept products not
    stored yet (checked again inside the transaction), in file order, and the problems.
    Returns (batch id, products kept, products written, of them with an image).
    progress(done, total) is called between chunks of products."""
    from store.workspace import now_iso

    def write(conn: sqlite3.Connection) -> tuple[int, int, int, int]:
        imported_at = now_iso()
        new = f"keep = {NEW} AND id NOT IN (SELECT id FROM main.products)"
        kept, total, last = conn.execute(
            f"SELECT count(CASE WHEN keep IN ({NEW}, {STORED}) THEN 1 END), count(CASE WHEN {new} THEN 1 END), "
            f"coalesce(max(n), 0) FROM {STAGING}").fetchone()
        cur = conn.execute(
            "INSERT INTO import_batches (source, fingerprint, started_at, n_rows, n_imported, n_skipped) "
            "VALUES (?, ?, ?, ?, ?, ?)", (source, fingerprint, imported_at, n_rows, total, n_skipped))
        batch = int(cur.lastrowid)
        done = 0
        for start in range(0, last, INSERT_CHUNK):
            done += conn.execute(
                "INSERT INTO main.products (id, title, description, image_path, image_sha1, source_label, batch_id, "
                "source_row, imported_at) SELECT id, title, description, image_path, image_sha1, source_label, ?, "
                f"source_row, ? FROM {STAGING} WHERE n > ? AND n <= ? AND {new} ORDER BY n",
                (batch, imported_at, start, start + INSERT_CHUNK)).rowcount
            if progress is not None and total:
                progress(done, total)
        with_image = conn.execute("SELECT count(image_path) FROM products WHERE batch_id = ?", (batch,)).fetchone()[0]
        conn.executemany("INSERT INTO import_problems (batch_id, file, row, field, reason) VALUES (?, ?, ?, ?, ?)",
                         [(batch, p.file, p.line, p.field, p.reason) for p in problems])
        return batch, int(kept), int(done), int(with_image)

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
