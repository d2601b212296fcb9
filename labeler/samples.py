"""Real workspaces from the Rakuten sample: its products read as rows, inserted, and scored by a
really trained model version.

Shared by the tests, the benches and the docs' screenshots, so that each measures or shows the
same kind of workspace (the sample's real texts and images, a version trained by the project's
own `train_version`). The sample lives beside the project (`../shared/data/rakuten-sample`, or
`RAKUTEN_SAMPLE`) and is never copied into it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("RAKUTEN_SAMPLE", ROOT.parent / "shared" / "data" / "rakuten-sample"))


def sample_products(sample_dir: Path = SAMPLE, per_category: int | None = 12, seed: int = 0) -> pd.DataFrame:
    """Rows of the real sample (id, title, description, image_path, source_label), stratified:
    `per_category` drawn per category with `seed`; None keeps every product with a non-empty title."""
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


def insert_products(ws, products: pd.DataFrame) -> int:
    """Store `sample_products` rows in `ws` as they are (no import batch, no image check)."""
    from store.seed import insert_products as insert
    return insert(ws, ((r.id, r.title, r.description, r.image_path, int(r.source_label))
                       for r in products.itertuples()))


def build_workspace(root: Path, sample_dir: Path = SAMPLE, per_category: int | None = 12, *,
                    train: bool = True, notes: str = "review-workflow fixture") -> Path:
    """A workspace at `root` holding `sample_products(sample_dir, per_category)`, with a first
    version trained on them and live (`train`), checkpointed and closed: ready to be copied."""
    from labeler.training import train_version
    from store.seed import checkpoint_and_close
    from store.workspace import Workspace

    ws = Workspace(root)
    insert_products(ws, sample_products(sample_dir, per_category))
    if train:
        train_version(ws, evaluate=False, notes=notes)
    return checkpoint_and_close(ws)
