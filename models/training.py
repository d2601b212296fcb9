"""Train a model version from a workspace and re-score its products.

The live pointer moves only after the bundle is on disk and every product is scored, so a
process killed mid-way leaves the previous version serving.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from labeler import taxonomy
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
    return _text_metrics(y, pred, n_splits)


def _text_metrics(y: np.ndarray, pred: np.ndarray, n_folds: int) -> dict[str, float]:
    return {"text_weighted_f1": round(float(f1_score(y, pred, average="weighted")), 4),
            "text_macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
            "text_accuracy": round(float(accuracy_score(y, pred)), 4), "cv_folds": int(n_folds)}


def category_prior(y: np.ndarray) -> np.ndarray:
    """Share of each taxonomy category among the labels: the text model's prior, for the fusion."""
    return np.array([(y == c).mean() for c in taxonomy.codes()])


MIN_LABELLED_IMAGES = 30   # below this an image ensemble learns little: the version stays text only


def _has_enough_images(df: pd.DataFrame) -> bool:
    n = int(df["image_path"].fillna("").astype(str).str.strip().ne("").sum())
    return n >= MIN_LABELLED_IMAGES


def oof_text_proba(df: pd.DataFrame, y: np.ndarray, make_text, folds: np.ndarray,
                   unlabelled: pd.DataFrame | None = None) -> np.ndarray:
    """(n, 27) out-of-fold text probabilities for the given fold assignment.

    unlabelled: the texts the final text model also sees (never labels), so the fusion is fitted
    on text probabilities as sharp as the ones it will be applied to."""
    out = np.zeros((len(df), len(taxonomy.codes())))
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        model = make_text().fit(df[tr], y[tr], X_unlabeled=unlabelled)
        out[te] = align(model.predict_proba(df[te]), model.classes_)
    return out


def _folds(y: np.ndarray, strata: np.ndarray, n_max: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per row, stratified on (label, has image) where counts allow, else on label."""
    counts = np.unique(y, return_counts=True)[1]
    n_splits = int(max(2, min(n_max, counts.min())))
    key = np.array([f"{a}|{b}" for a, b in zip(y, strata)])
    values, inverse, kc = np.unique(key, return_inverse=True, return_counts=True)
    key = np.where(kc[inverse] >= n_splits, key, y.astype(str))
    folds = np.zeros(len(y), dtype=int)
    with warnings.catch_warnings():  # a category with fewer rows than folds is spread as well as it can be
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, te) in enumerate(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(y, key)):
            folds[te] = k
    return folds


def out_of_fold_rows(ensemble: Any, feats: dict[str, np.ndarray], ok: np.ndarray, df: pd.DataFrame,
                     y: np.ndarray, *, text_factory=TextClassifier, unlabelled: pd.DataFrame | None = None,
                     progress: Progress | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, dict]:
    """(text, {voter: probs}, category index) out of fold for the labelled products with an image,
    the rows the fusion is fitted on (same folds for text and image), and the text's CV metrics."""
    progress = progress or _noop
    codes = taxonomy.codes()
    folds = _folds(y, ok)
    progress(0.0, f"out-of-fold text probabilities ({len(np.unique(folds))} folds)")
    text_oof = oof_text_proba(df, y, text_factory, folds, unlabelled)
    metrics = _text_metrics(y, np.asarray(codes)[text_oof.argmax(1)], len(np.unique(folds)))
    progress(0.5, "out-of-fold image voters")
    yi, fi = y[ok], folds[ok]
    fo = {k: v[ok] for k, v in feats.items()}
    voters_oof = {s.label: np.zeros((int(ok.sum()), len(codes))) for s in ensemble.voters}
    for k in np.unique(fi):
        tr, te = fi != k, fi == k
        if len(np.unique(yi[tr])) < 2 or not te.any():
            continue
        part = type(ensemble)(voters=ensemble.voters).fit({n: f[tr] for n, f in fo.items()}, yi[tr])
        for name, p in part.voter_proba({n: f[te] for n, f in fo.items()}).items():
            voters_oof[name][te] = p
    return text_oof[ok], voters_oof, np.searchsorted(codes, yi), metrics


def fit_image_and_fusion(ws: Workspace, df: pd.DataFrame, y: np.ndarray, *, text_factory=TextClassifier,
                         progress: Progress | None = None, voters=None,
                         unlabelled: pd.DataFrame | None = None) -> tuple[Any, Any, dict]:
    """Image ensemble on the labelled products with a usable image, and the fusion fitted on
    out-of-fold text + voter probabilities of those products.

    Returns (ensemble, fusion, metrics), or (None, None, metrics) when too few images decode.
    """
    from models.fusion import Fusion
    from models.image import VOTERS_SETTING, ImageEnsemble, voters_from_config

    progress = progress or _noop
    ensemble = ImageEnsemble(voters=voters or voters_from_config(ws.get_setting(VOTERS_SETTING)))
    progress(0.0, "image features (cached per image and backbone)")
    feats, ok, problems = ensemble.product_features(df, feature_store=ws, progress=lambda f, d: progress(0.4 * f, d))
    metrics: dict[str, Any] = {"n_images": int(ok.sum()), "n_image_problems": len(problems)}
    if ok.sum() < MIN_LABELLED_IMAGES or len(np.unique(y[ok])) < 2:
        log.warning("only %d labelled products have a usable image: version stays text only", ok.sum())
        return None, None, metrics
    text_oof, voters_oof, y_index, text_metrics = out_of_fold_rows(
        ensemble, feats, ok, df, y, text_factory=text_factory, unlabelled=unlabelled,
        progress=lambda f, d: progress(0.45 + 0.45 * f, d))
    metrics.update(text_metrics)
    progress(0.9, "fitting fusion on out-of-fold predictions")
    fusion = Fusion(voter_names=[s.label for s in ensemble.voters], text_prior=category_prior(y))
    fusion.fit(text_oof, voters_oof, y_index)
    ensemble.fit({k: v[ok] for k, v in feats.items()}, y[ok])
    ensemble.set_vote(fusion.params.vote_weights, fusion.params.sharpen_k)
    metrics.update(fusion.metrics)
    progress(1.0, "image ensemble and fusion fitted")
    return ensemble, fusion, metrics


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
    # every workspace product's text (never its label) enters the vocabulary and IDF
    unlabelled = products_frame(ws)
    text = TextClassifier().fit(df, y, X_unlabeled=unlabelled)
    metrics: dict[str, Any] = {}
    config: dict[str, Any] = {"text": text.describe()}
    image = fusion = None
    if _has_enough_images(df):
        image, fusion, image_metrics = fit_image_and_fusion(
            ws, df, y, text_factory=TextClassifier, progress=lambda f, d: progress(0.1 + 0.45 * f, d),
            unlabelled=unlabelled)
        metrics.update(image_metrics)
        if image is not None:
            config["image"], config["fusion"] = image.describe(), fusion.describe()
    if evaluate and "text_weighted_f1" not in metrics:
        progress(0.25, "cross-validating text model")
        metrics.update(cross_validated_metrics(df, y, TextClassifier))
    bundle = ModelBundle(version=version, text=text, image=image, fusion=fusion, info={"n_train": len(df)})
    progress(0.6, "saving model version")
    path = bundle.save(ws.models_dir / version)
    duration = time.perf_counter() - started
    ws.register_model_version(version, path, config=config, metrics=metrics,
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
