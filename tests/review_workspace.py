"""Real workspaces for the review-workflow tests and bench: products of the Rakuten sample, scored
by a really trained model version. Built once per process, then copied per test (a copy of a
SQLite file is a fresh, independent database).
"""
from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

import pandas as pd

from store.workspace import Workspace, now_iso

_LOCK = threading.Lock()
_TEMPLATES: dict[tuple, Path] = {}


def sample_products(sample_dir: Path, per_category: int | None = 12, seed: int = 0) -> pd.DataFrame:
    """Rows of the real sample (id, title, description, image_path, source_label), stratified.

    per_category=None keeps every product with a non-empty title.
    """
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0, dtype={"productid": str, "imageid": str})
    y = pd.read_csv(sample_dir / "Y_train_CVw08PX.csv", index_col=0)
    df = x.join(y)
    df = df[df["designation"].fillna("").str.strip() != ""]
    if per_category is not None:
        df = df.sample(frac=1.0, random_state=seed).groupby("prdtypecode").head(per_category).sort_index()
    images = sample_dir / "images" / "image_train"
    paths = [images / f"image_{i}_product_{p}.jpg" for i, p in zip(df["imageid"], df["productid"])]
    return pd.DataFrame({
        "id": df["productid"].astype(str).to_numpy(),
        "title": df["designation"].to_numpy(),
        "description": df["description"].fillna("").to_numpy(),
        "image_path": [str(p) if p.exists() else None for p in paths],
        "source_label": df["prdtypecode"].astype(int).to_numpy(),
    }).drop_duplicates("id").reset_index(drop=True)


def insert_products(ws: Workspace, products: pd.DataFrame) -> int:
    imported = now_iso()
    rows = [(r.id, r.title, r.description, r.image_path, int(r.source_label), f"sample:{r.id}", imported)
            for r in products.itertuples()]
    ws.write(lambda c: c.executemany(
        "INSERT INTO products (id, title, description, image_path, source_label, source_row, imported_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", rows))
    return len(rows)


def build_workspace(root: Path, sample_dir: Path, per_category: int | None = 12, *, train: bool = True) -> Path:
    from labeler.training import train_version
    ws = Workspace(root)
    insert_products(ws, sample_products(sample_dir, per_category))
    if train:
        train_version(ws, evaluate=False, notes="review-workflow fixture")
    ws.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ws.close()
    return root


def copy_workspace(sample_dir: Path, dest: Path, per_category: int | None = 12, *, train: bool = True) -> Path:
    """A fresh copy of the (cached) template workspace at `dest`."""
    key = (str(sample_dir), per_category, train)
    with _LOCK:
        template = _TEMPLATES.get(key)
        if template is None:
            base = Path(tempfile.mkdtemp(prefix="review-template-"))
            atexit.register(shutil.rmtree, base, True)
            template = _TEMPLATES[key] = build_workspace(base / "ws", sample_dir, per_category, train=train)
    shutil.copytree(template, dest)
    # the copy must not carry a stale WAL: the template was checkpointed and closed
    with sqlite3.connect(dest / "workspace.db") as conn:
        conn.execute("PRAGMA integrity_check")
    return dest
