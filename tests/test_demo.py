"""The demo catalog: authored products, drawn images, and the first-start path of launch.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from labeler import taxonomy
from labeler.demo import DEMO_CATALOG, DEMO_DIR, ensure_demo
from labeler.importer import read_plain_csv


def catalog() -> pd.DataFrame:
    return pd.read_csv(DEMO_CATALOG, dtype=str, keep_default_na=False)


def test_catalog_has_three_products_per_category_and_validates_cleanly():
    df = catalog()
    assert list(df.columns) == ["id", "title", "description", "image", "label"]
    assert len(df) == 81 and df["id"].is_unique and df["title"].is_unique
    assert df["label"].astype(int).value_counts().to_dict() == {c: 3 for c in taxonomy.codes()}
    assert (df["description"] == "").sum() >= 15                # like real catalogs, many are empty
    assert df["description"].str.contains("<br>|&#39;|&amp;|<p>|<li>").sum() >= 10   # raw HTML kept
    parsed = read_plain_csv(DEMO_CATALOG)
    assert parsed.problems == [] and len(parsed.products) == 81
    assert all(p.image_path and p.image_sha1 for p in parsed.products)


def test_images_are_small_256px_jpegs_and_reproducible(tmp_path):
    paths = [DEMO_DIR / p for p in catalog()["image"]]
    assert sum(p.stat().st_size for p in paths) < 2 * 1024 * 1024
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (256, 256) and im.mode == "RGB"
    spec = importlib.util.spec_from_file_location("make_images", DEMO_DIR / "make_images.py")
    make_images = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_images)
    regenerated = make_images.main(tmp_path)
    assert len(regenerated) == 81
    for new in regenerated[:: 10]:
        committed = np.asarray(Image.open(DEMO_DIR / "images" / new.name), dtype=np.int16)
        assert np.abs(np.asarray(Image.open(new), dtype=np.int16) - committed).mean() < 2.0
    # drawings differ between categories: no two products of different categories share an image
    pixels = {p.name: np.asarray(Image.open(p).resize((32, 32)), dtype=np.int16) for p in paths}
    labels = dict(zip((Path(p).name for p in catalog()["image"]), catalog()["label"]))
    names = sorted(pixels)
    for a, b in zip(names, names[3:]):
        if labels[a] != labels[b]:
            assert np.abs(pixels[a] - pixels[b]).mean() > 5


def test_demo_texts_are_not_copied_from_the_sample(sample_dir):
    x = pd.read_csv(sample_dir / "X_train_update.csv", index_col=0, dtype=str, keep_default_na=False)
    sample_titles = set(x["designation"].str.strip().str.lower())
    sample_descriptions = set(x["description"].str.strip().str.lower()) - {""}
    df = catalog()
    assert not set(df["title"].str.lower()) & sample_titles
    assert not set(df["description"].str.strip().str.lower()) & sample_descriptions


def test_ensure_demo_imports_and_trains_only_an_empty_workspace(workspace):
    calls: list[float] = []
    assert ensure_demo(workspace, progress=lambda f, d: calls.append(f)) is True
    assert workspace.count_products() == 81
    assert workspace.live_version() is not None
    assert workspace.scalar("SELECT count(*) FROM predictions WHERE model_version = ?", (workspace.live_version(),)) == 81
    assert workspace.scalar("SELECT count(*) FROM products WHERE image_path IS NOT NULL") == 81
    assert calls and calls == sorted(calls) and calls[-1] == 1.0
    # trained on its own catalog, the model recognises most of it
    rows = workspace.query("SELECT p.source_label, q.top1 FROM products p JOIN predictions q ON q.product_id = p.id")
    assert np.mean([r["source_label"] == r["top1"] for r in rows]) > 0.8
    version = workspace.live_version()
    assert ensure_demo(workspace) is False
    assert workspace.count_products() == 81 and workspace.live_version() == version
