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

from app_workspace import demo_workspace


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


def test_ensure_demo_imports_and_trains_only_an_empty_workspace(tmp_path):
    """On the demo launch.py makes of an empty workspace (ensure_demo under its progress bar; the
    tests' cached template, trained once for this test and test_launch's)."""
    from store import Workspace
    root = demo_workspace(tmp_path / "ws")
    assert "is empty: loading the demo catalog and training a first model" in (root / "prepare.log").read_text()
    workspace = Workspace(root)
    assert workspace.count_products() == 81
    assert workspace.live_version() is not None
    (moved,) = workspace.live_history()          # the demo's first version went live through the audited path
    assert moved["version"] == workspace.live_version() and moved["reason"] == "demo" and moved["who"]
    assert workspace.scalar("SELECT count(*) FROM predictions WHERE model_version = ?", (workspace.live_version(),)) == 81
    assert workspace.scalar("SELECT count(*) FROM products WHERE image_path IS NOT NULL") == 81
    # trained on its own catalog, the model recognises most of it
    rows = workspace.query("SELECT p.source_label, q.top1 FROM products p JOIN predictions q ON q.product_id = p.id")
    assert np.mean([r["source_label"] == r["top1"] for r in rows]) > 0.8
    version = workspace.live_version()
    assert ensure_demo(workspace) is False
    assert workspace.count_products() == 81 and workspace.live_version() == version
    import_keeps_apart_from_the_demo(workspace, tmp_path)


# -- a real catalog never lands in the demo's workspace ------------------------------------------
def _import(ws_path: Path, catalog: Path, *extra: str):
    from click.testing import CliRunner
    from labeler.cli import main
    return CliRunner().invoke(main, ["import", "--workspace", str(ws_path), "--csv", str(catalog), *extra])


def _catalog(tmp_path: Path) -> Path:
    path = tmp_path / "real.csv"
    path.write_text("id,title,label\nr1,Tondeuse thermique,2583\nr2,Roman policier,10\n", encoding="utf-8")
    return path


def import_keeps_apart_from_the_demo(ws, tmp_path: Path) -> None:
    """`import` refuses the demo's workspace; --replace-demo empties it. Run at the end of
    test_ensure_demo_imports_and_trains_only_an_empty_workspace, on its copy of the demo (trained
    once for the tests: 1.5 to 10 minutes on a shared 2-core machine)."""
    from labeler.demo import DEMO_MARK
    from store import Workspace
    version_dir = Path(ws.model_version(ws.live_version())["path"]).parent
    assert version_dir.is_dir() and ws.get_setting(DEMO_MARK) == "1"
    ws.close()

    refused = _import(tmp_path / "ws", _catalog(tmp_path))
    assert refused.exit_code == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "holds the demo catalog (81 products)" in refused.stderr
    assert "--workspace DIR" in refused.stderr and "--replace-demo" in refused.stderr
    ws = Workspace(tmp_path / "ws")
    assert ws.count_products() == 81
    ws.close()

    replaced = _import(tmp_path / "ws", _catalog(tmp_path), "--replace-demo")
    assert replaced.exit_code == 0, replaced.output
    assert "Removed the demo catalog" in replaced.stdout and "81 products, 1 model versions" in replaced.stdout
    ws = Workspace(tmp_path / "ws")
    assert [p["id"] for p in ws.products()] == ["r1", "r2"]
    assert ws.live_version() is None and ws.model_versions() == []
    assert ws.scalar("SELECT count(*) FROM predictions") == 0 and ws.get_setting(DEMO_MARK) is None
    assert not version_dir.exists()
    ws.close()
    assert _import(tmp_path / "ws", _catalog(tmp_path)).exit_code == 0      # no demo any more: plain import


def test_replace_demo_refuses_once_someone_reviewed_the_demo(tmp_path):
    from labeler.importer import import_plain_csv
    from store import Workspace
    ws = Workspace(tmp_path / "ws")
    import_plain_csv(ws, DEMO_CATALOG)        # as workspaces made before the marker: found by its source
    ws.record_decision("demo-001", "alice", "accept", category=10)
    ws.close()
    refused = _import(tmp_path / "ws", _catalog(tmp_path), "--replace-demo")
    assert refused.exit_code == 1 and "1 reviewer decisions, which are never deleted" in refused.stderr
    assert "--workspace DIR" in refused.stderr
    ws = Workspace(tmp_path / "ws")
    assert ws.count_products() == 81 and len(ws.decisions()) == 1
    ws.close()


def test_replace_demo_refuses_a_workspace_mixing_the_demo_with_a_catalog(tmp_path):
    from labeler.demo import import_demo
    from labeler.importer import import_plain_csv
    from store import Workspace
    ws = Workspace(tmp_path / "ws")
    import_demo(ws)
    import_plain_csv(ws, _catalog(tmp_path))    # what main's README commands did
    ws.close()
    refused = _import(tmp_path / "ws", _catalog(tmp_path), "--replace-demo")
    assert refused.exit_code == 1 and "mixes the demo (81 products) with 2 other products" in refused.stderr
