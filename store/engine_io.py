"""What the scoring engines read from and write to the workspace, in batches.

No engine holds the catalog in memory nor leaves half a job behind: products are read by rowid
ranges (`rowid_chunks`, `products_to_score`) or in keyset pages (`batches_to_score`: the local
engine), and a distributed job's predictions are staged in a side SQLite file (`Staging`) and
moved into `predictions` in one transaction at the end, so a job that dies mid-way leaves the
stored predictions exactly as they were. Cached image features are content-addressed (sha1,
recipe) and are written as they arrive (`put_features`).
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from store.workspace import Workspace, now_iso

PREDICTION_COLUMNS = ("product_id", "model_version", "top5", "probs", "voters", "top1", "top1_prob", "margin",
                      "entropy", "disagreement", "created_at", "source")
PRODUCT_COLUMNS = "p.id, p.title, p.description, p.image_path, p.image_sha1"


def rowid_chunks(ws: Workspace, size: int) -> list[tuple[int, int]]:
    """[(first rowid, last rowid)] covering every product, `size` products a chunk (keyset walk:
    the ids themselves never sit in memory, only two ints a chunk)."""
    chunks: list[tuple[int, int]] = []
    last = -1
    while True:
        rows = ws.conn.execute("SELECT rowid FROM products WHERE rowid > ? ORDER BY rowid LIMIT ?",
                               (last, size)).fetchall()
        if not rows:
            return chunks
        chunks.append((int(rows[0][0]), int(rows[-1][0])))
        last = int(rows[-1][0])


def products_to_score(ws: Workspace, lo: int, hi: int, version: str, keep_source: str) -> list[dict]:
    """Products with rowid in [lo, hi] whose prediction for `version` is missing or is not from
    `keep_source` (the out-of-fold scores a training stored for labelled products stay)."""
    rows = ws.conn.execute(
        f"SELECT {PRODUCT_COLUMNS} FROM products p LEFT JOIN predictions q ON q.product_id = p.id "
        "AND q.model_version = ? WHERE p.rowid BETWEEN ? AND ? AND (q.source IS NULL OR q.source != ?) "
        "ORDER BY p.rowid", (version, lo, hi, keep_source)).fetchall()
    return [dict(r) for r in rows]


_TO_SCORE = ("FROM products p LEFT JOIN predictions q ON q.product_id = p.id AND q.model_version = ? "
             "WHERE (q.source IS NULL OR q.source != ?)")


def count_to_score(ws: Workspace, version: str, keep_source: str) -> int:
    """How many products `batches_to_score` will yield (a progress bar's total)."""
    return int(ws.conn.execute(f"SELECT count(*) {_TO_SCORE}", (version, keep_source)).fetchone()[0])


def batches_to_score(ws: Workspace, version: str, keep_source: str, size: int) -> Iterator[list[dict]]:
    """The products `products_to_score` selects, `size` at a time in rowid order (a keyset walk:
    one query per page, no cursor held open while the caller writes its predictions)."""
    last = -1
    while True:
        rows = ws.conn.execute(
            f"SELECT p.rowid AS _rowid, {PRODUCT_COLUMNS} {_TO_SCORE} AND p.rowid > ? ORDER BY p.rowid LIMIT ?",
            (version, keep_source, last, size)).fetchall()
        if not rows:
            return
        last = int(rows[-1]["_rowid"])
        yield [{k: r[k] for k in r.keys() if k != "_rowid"} for r in rows]


def text_batches(ws: Workspace, size: int) -> Iterator[list[tuple[str, str]]]:
    """(title, description) of every product, `size` at a time in rowid order: what a text
    model's vocabulary is fitted on, without the rest of each product row."""
    last = -1
    while True:
        rows = ws.conn.execute("SELECT rowid, title, description FROM products WHERE rowid > ? ORDER BY rowid "
                               "LIMIT ?", (last, size)).fetchall()
        if not rows:
            return
        last = int(rows[-1][0])
        yield [(r[1], r[2]) for r in rows]


def image_batches(ws: Workspace, size: int) -> Iterator[list[dict]]:
    """id, image_path, image_sha1 of the products that name an image, `size` at a time."""
    last = -1
    while True:
        rows = ws.conn.execute(
            "SELECT rowid, id, image_path, image_sha1 FROM products WHERE rowid > ? AND image_path IS NOT NULL "
            "AND image_path != '' ORDER BY rowid LIMIT ?", (last, size)).fetchall()
        if not rows:
            return
        last = int(rows[-1][0])
        yield [{"id": r[1], "image_path": r[2], "image_sha1": r[3]} for r in rows]


def products_with_images(ws: Workspace, lo: int, hi: int) -> list[dict]:
    """Products with rowid in [lo, hi] that name an image (what feature extraction reads)."""
    rows = ws.conn.execute(
        f"SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.rowid BETWEEN ? AND ? AND p.image_path IS NOT NULL "
        "AND p.image_path != '' ORDER BY p.rowid", (lo, hi)).fetchall()
    return [dict(r) for r in rows]


def put_features(ws: Workspace, items: Sequence[tuple[str, str, np.ndarray]]) -> int:
    """(sha1, feature key, vector) rows into the feature cache, one transaction."""
    values = [(s, key, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for s, key, v in items]
    if values:
        ws.write(lambda c: c.executemany(
            "INSERT OR REPLACE INTO image_features (sha1, backbone, dim, vector) VALUES (?,?,?,?)", values))
    return len(values)


def prediction_values(version: str, rows: Iterable[dict], source: str | None, created: str) -> list[tuple]:
    """Rows of `models.predictor.prediction_rows` as `predictions` tuples (PREDICTION_COLUMNS)."""
    return [(str(r["product_id"]), version, json.dumps(r["top5"]), json.dumps(r["probs"]),
             json.dumps(r.get("voters", {})), int(r["top1"]), float(r["top1_prob"]), float(r["margin"]),
             float(r["entropy"]), int(r.get("disagreement", 0)), created, source) for r in rows]


class Staging:
    """Predictions of one job, kept beside the workspace until `commit` moves them in at once.

    A side SQLite file (WORKSPACE/tmp/score-<id>.db), so a long job holds no write lock on the
    workspace and a failed one is dropped with its file (`discard`)."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        folder = ws.root / "tmp"
        folder.mkdir(exist_ok=True)
        self.path: Path = folder / f"score-{uuid.uuid4().hex[:12]}.db"
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute(f"CREATE TABLE staged ({', '.join(PREDICTION_COLUMNS)}, "
                          "PRIMARY KEY (product_id, model_version))")
        self.created = now_iso()
        self.n = 0

    def add(self, version: str, rows: Iterable[dict], source: str | None) -> int:
        values = prediction_values(version, rows, source, self.created)
        self.conn.executemany(f"INSERT OR REPLACE INTO staged VALUES ({','.join('?' * len(PREDICTION_COLUMNS))})",
                              values)
        self.n += len(values)
        return len(values)

    def commit(self, chunk: int = 5000) -> int:
        """Every staged row into `predictions`, all in one workspace transaction; then the file goes."""
        cols = ", ".join(PREDICTION_COLUMNS)
        sql = f"INSERT OR REPLACE INTO predictions ({cols}) VALUES ({','.join('?' * len(PREDICTION_COLUMNS))})"

        def move(conn: sqlite3.Connection) -> int:
            n = 0
            cur = self.conn.execute(f"SELECT {cols} FROM staged ORDER BY rowid")
            while rows := cur.fetchmany(chunk):
                conn.executemany(sql, rows)
                n += len(rows)
            return n

        n = self.ws.write(move)
        self.discard()
        return n

    def discard(self) -> None:
        self.conn.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.path.exists():
            self.discard()
