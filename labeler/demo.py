"""The project's own demo catalog: 81 authored products (3 per category) with drawn images.

Used when someone starts the labeler without importing a catalog, so the app always has
products, predictions and images to show. The texts are original (never the Rakuten sample);
the images come from `assets/demo/make_images.py`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from labeler.importer import ImportReport, import_plain_csv
from models.predictor import Progress
from store.workspace import Workspace

log = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo"
DEMO_CATALOG = DEMO_DIR / "catalog.csv"


def import_demo(ws: Workspace, progress: Progress | None = None) -> ImportReport:
    return import_plain_csv(ws, DEMO_CATALOG, progress=progress)


def ensure_demo(ws: Workspace, progress: Progress | None = None) -> bool:
    """Import the demo catalog and train a first model version if the workspace has no products.

    Returns True when it did so, False when the workspace already held a catalog (left as is)."""
    if ws.count_products() > 0:
        return False
    from models.training import train_version

    def scaled(lo: float, hi: float) -> Progress | None:
        if progress is None:
            return None
        return lambda fraction, desc: progress(lo + (hi - lo) * fraction, desc)

    report = import_demo(ws, progress=scaled(0.0, 0.3))
    log.info("demo catalog: %s products imported into %s", report.imported, ws.root)
    train_version(ws, progress=scaled(0.3, 1.0), evaluate=False, notes="demo catalog")
    return True
