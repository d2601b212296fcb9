"""The project's own demo catalog: 81 authored products (3 per category) with drawn images.

Used when someone starts the labeler without importing a catalog, so the app always has
products, predictions and images to show. The texts are original (never the Rakuten sample);
the images come from `assets/demo/make_images.py`.

A workspace remembers that it holds the demo (setting `demo_catalog_batch`, or for workspaces
made before that setting, an import batch read from `assets/demo/catalog.csv`), so `import`
can refuse to mix a real catalog into it. `remove_demo` empties a workspace that holds the demo
and nothing else, while no reviewer decided on it: decisions are append-only and never deleted.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from labeler.importer import ImportReport, import_plain_csv
from labeler.domain import Progress
from store import imports, labels, versions
from store.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo"
DEMO_CATALOG = DEMO_DIR / "catalog.csv"
DEMO_MARK = "demo_catalog_batch"


def import_demo(ws: Workspace, progress: Progress | None = None) -> ImportReport:
    report = import_plain_csv(ws, DEMO_CATALOG, progress=progress)
    ws.set_setting(DEMO_MARK, str(report.batch_id))
    return report


def demo_batches(ws: Workspace) -> list[int]:
    """Import batches that brought in the demo catalog."""
    found = {int(r["id"]) for r in imports.batches(ws)
             if str(r["source"]).replace("\\", "/").endswith("assets/demo/catalog.csv")}
    mark = ws.get_setting(DEMO_MARK)
    if mark and mark.isdigit():
        found.add(int(mark))
    return sorted(found)


def demo_product_ids(ws: Workspace) -> list[str]:
    return imports.products_of_batches(ws, demo_batches(ws))


def remove_demo(ws: Workspace) -> dict[str, int]:
    """Remove the demo catalog and everything learnt from it, in one transaction.

    Allowed only while the workspace holds the demo alone and no reviewer decided on any of it
    (`WorkspaceError` otherwise, naming the way out: a separate workspace). Removes the demo
    products and the rows that point at them (predictions, label issues, reservations...), its
    import batches and problems, every model version (all were trained on the demo) with its
    files, retrain runs and the live history. Cached image features stay (keyed by content)."""
    ids = demo_product_ids(ws)
    if not ids:
        raise WorkspaceError(f"workspace {ws.root} holds no demo catalog; drop --replace-demo")
    decided = labels.count_decisions_on(ws, ids)
    if decided:
        raise WorkspaceError(f"the demo catalog in {ws.root} has {decided} reviewer decisions, which are never "
                             "deleted; import the real catalog into its own workspace with --workspace DIR")
    others = ws.count_products() - len(ids)
    if others:
        raise WorkspaceError(f"workspace {ws.root} mixes the demo ({len(ids)} products) with {others} other "
                             "products; --replace-demo only empties a workspace holding the demo alone: import "
                             "the real catalog into a new workspace with --workspace DIR")
    batches = demo_batches(ws)
    paths = versions.paths(ws)
    counts = {"products": len(ids), "model versions": len(paths)}
    imports.remove_everything(ws, settings=(versions.LIVE_KEY, DEMO_MARK))
    for path in paths:
        folder = path if path.is_dir() else path.parent
        if folder.resolve().is_relative_to(ws.models_dir.resolve()) and folder.resolve() != ws.models_dir.resolve():
            shutil.rmtree(folder, ignore_errors=True)
    log.info("demo catalog removed from %s: %s (batches %s)", ws.root, counts, batches)
    return counts


def ensure_demo(ws: Workspace, progress: Progress | None = None) -> bool:
    """Import the demo catalog and train a first model version if the workspace has no products.

    Returns True when it did so, False when the workspace already held a catalog (left as is)."""
    if ws.count_products() > 0:
        return False
    from labeler.training import train_version

    def scaled(lo: float, hi: float) -> Progress | None:
        if progress is None:
            return None
        return lambda fraction, desc: progress(lo + (hi - lo) * fraction, desc)

    report = import_demo(ws, progress=scaled(0.0, 0.3))
    log.info("demo catalog: %s products imported into %s", report.imported, ws.root)
    version = train_version(ws, progress=scaled(0.3, 1.0), evaluate=False, notes="demo catalog", make_live=False)
    versions.set_live(ws, version["id"], "labeler (demo setup)", "first version, trained on the demo catalog",
                      reason="demo")
    return True
