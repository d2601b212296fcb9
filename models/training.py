"""Train a model version from a workspace and re-score its products.

The live pointer moves only after the bundle is on disk and every product is scored, so a
process killed mid-way leaves the previous version serving.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from models.predictor import ModelBundle, Progress, align, load_bundle, prediction_rows
from models.text import TextClassifier
from store.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)
_CACHE: dict[tuple[str, str], ModelBundle] = {}


def products_frame(ws: Workspace, ids: list[str] | None = None) -> pd.DataFrame:
    rows = ws.products(ids)
    df = pd.DataFrame(rows, columns=["id", "title", "description", "image_path", "image_sha1", "source_label"])
    df["description"] = df["description"].fillna("")
    return df


def _noop(fraction: float, desc: str) -> None:
    log.info("%3.0f%% %s", 100 * fraction, desc)


def labelled_frame(ws: Workspace, labels: dict[str, int] | None = None) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Training set: imported labels overridden by reviewer decisions (or exactly `labels`, if given)."""
    labels = ws.current_labels() if labels is None else labels
    if not labels:
        raise WorkspaceError(f"workspace {ws.root} has no labelled products; import labels (--labels Y.csv) "
                             "or review some products first")
    df = products_frame(ws, list(labels))
    y = np.array([labels[i] for i in df["id"]])
    n_decided = len(ws.current_labels(reviewed_only=True))
    return df, y, n_decided


def cross_validated_metrics(df: pd.DataFrame, y: np.ndarray, make_text, folds: int = 5,
                            seed: int = 0) -> dict[str, float]:
    """Out-of-fold weighted/macro F1 of the text model, the version's honest quality estimate."""
    counts = np.unique(y, return_counts=True)[1]
    n_splits = int(min(folds, counts.min())) if len(counts) > 1 else 0
    if n_splits < 2:
        return {}
    pred = np.empty_like(y)
    for tr, te in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(df, y):
        model = make_text().fit(df.iloc[tr], y[tr])
        pred[te] = model.predict(df.iloc[te])
    return {"text_weighted_f1": round(float(f1_score(y, pred, average="weighted")), 4),
            "text_macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
            "text_accuracy": round(float(accuracy_score(y, pred)), 4), "cv_folds": n_splits}


def train_version(ws: Workspace, *, progress: Progress | None = None, evaluate: bool = True,
                  notes: str = "", parent: str | None = None, labels: dict[str, int] | None = None,
                  make_live: bool = True, version: str | None = None) -> dict:
    """Fit every model on the workspace's current labels, save, score all products, go live.

    labels: train on exactly these product -> category pairs (labeler/retrain.py passes the
    reviewer-resolved labels minus its validation split). make_live=False leaves the pointer
    where it is (the caller compares first). version: a pre-chosen id (so a caller can record
    which version an interrupted run was building).
    """
    progress = progress or _noop
    started = time.perf_counter()
    ws.require_products()
    df, y, n_decided = labelled_frame(ws, labels)
    if len(np.unique(y)) < 2:
        raise WorkspaceError("need labelled products of at least two categories to train")
    parent = parent if parent is not None else ws.live_version()
    version = version or ws.new_version_id()
    progress(0.05, f"fitting text model on {len(df)} products")
    text = TextClassifier().fit(df, y)
    metrics: dict[str, Any] = {}
    if evaluate:
        progress(0.25, "cross-validating text model")
        metrics.update(cross_validated_metrics(df, y, TextClassifier))
    bundle = ModelBundle(version=version, text=text, info={"n_train": len(df)})
    progress(0.6, "saving model version")
    path = bundle.save(ws.models_dir / version)
    duration = time.perf_counter() - started
    ws.register_model_version(version, path, config={"text": text.describe()}, metrics=metrics,
                              n_train=len(df), n_decisions=n_decided, duration_s=round(duration, 2),
                              parent=parent, notes=notes, make_live=False)
    progress(0.7, "scoring products")
    n = score_products(ws, bundle)
    if make_live:
        ws.set_live_version(version)
    progress(1.0, f"version {version} {'live' if make_live else 'ready'}, {n} products scored")
    return ws.model_version(version)


def score_products(ws: Workspace, bundle: ModelBundle, ids: list[str] | None = None,
                   batch_size: int = 2048) -> int:
    df = products_frame(ws, ids)
    n = 0
    for start in range(0, len(df), batch_size):
        part = df.iloc[start:start + batch_size]
        out = bundle.predict(part, feature_store=ws)
        n += ws.save_predictions(bundle.version, prediction_rows(part["id"].tolist(), out))
    return n


def live_bundle(ws: Workspace, version: str | None = None) -> ModelBundle:
    """The live (or named) version, loaded once per process."""
    version = version or ws.live_version()
    if version is None:
        raise WorkspaceError(f"workspace {ws.root} has no trained model; run `python -m labeler train`")
    key = (str(ws.root.resolve()), version)
    if key not in _CACHE:
        _CACHE[key] = load_bundle(Path(ws.model_version(version)["path"]))
    return _CACHE[key]
