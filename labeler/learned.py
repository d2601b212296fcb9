"""The Models tab's "what the model learned": the live version's strongest word n-grams per
category and the weights that moved most since the version before it (`models.text_learned`).

Naming the hash buckets reads the labelled products' texts (at most `MAX_PRODUCTS`, about a second
per 5,000 on the 2-core machine), so a version's result is computed once per process and kept.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from labeler.text_highlights import text_model
from store.workspace import Workspace

log = logging.getLogger(__name__)
MAX_PRODUCTS = 5000
_CACHE: dict[tuple[str, str], "Learned"] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Learned:
    version: str
    top: dict[int, list[tuple[str, float]]] = field(default_factory=dict)
    parent: str | None = None
    changes: list = field(default_factory=list)       # models.text_learned.WeightChange, largest first
    note: str = ""                                    # why a part is missing


def learned(ws: Workspace, version: str) -> Learned:
    """The version's learned n-grams and its changes against its parent (cached per version)."""
    key = (str(ws.root.resolve()), version)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    from models.predictor import load_bundle
    from models.text_learned import ngram_names, top_ngrams, weight_changes
    from labeler.training import categories, live_bundle
    model = text_model(live_bundle(ws, version))
    if model is None:
        return Learned(version, note="this version has no hashed TF-IDF text model to read weights from")
    ids = sorted(ws.current_labels())[:MAX_PRODUCTS]
    names = ngram_names(((p["title"], p["description"]) for p in ws.products(ids)),
                        description_chars=model.config.description_chars,
                        categories=getattr(model, "categories", None) or categories(ws))
    parent = ws.model_version(version).get("parent")
    changes, note = [], ""
    if parent:
        try:
            old = text_model(load_bundle(Path(ws.model_version(parent)["path"])))
            changes = weight_changes(model, old, names) if old is not None else []
            note = "" if old is not None else f"version {parent} has no comparable text model"
        except Exception as exc:  # noqa: BLE001 - a deleted or unreadable old bundle: say so
            note = f"the previous version {parent} could not be loaded: {exc}"
    out = Learned(version, top_ngrams(model, names), parent, changes, note)
    with _LOCK:
        _CACHE[key] = out
    return out
