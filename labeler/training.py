"""Training service: train a model version from a workspace and re-score its products.

The estimators (`models/`) know nothing of workspaces or taxonomies: this service hands them the
workspace's labels, its products' texts (the unlabelled ones shape the text vocabulary: the
transductive part happens here, at training, never at scoring), the taxonomy's codes (the column
order of every probability array) and its names / descriptions / keywords (the text prior), and
the workspace's image-feature cache (`store.features`).

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
from sklearn.model_selection import StratifiedKFold

from labeler import evaluation, taxonomy
from labeler.domain import Progress, scaled
from models import honest
from models.predictor import ModelBundle, align, load_bundle, prediction_rows
from models.text import TextClassifier, product_has_text
from models.text_prior import CategoryText, read_category_texts
from store.features import WorkspaceFeatures
from store import engine_io, taxonomy as stored_taxonomy
from store.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)
_CACHE: dict[tuple[str, str], ModelBundle] = {}


def categories(ws: Workspace | None = None) -> tuple[CategoryText, ...]:
    """The workspace's categories as the text prior reads them: key (what the labels `y` hold),
    name, description, keywords (the Rakuten default's without a workspace)."""
    tax = taxonomy.of(ws) if ws is not None else taxonomy.default()
    return tuple(CategoryText(c.key, c.name, c.description, c.keywords) for c in tax)


def text_model(ws: Workspace | None = None) -> TextClassifier:
    """An unfitted text model with the taxonomy's prior: the `text_factory` of every training."""
    return TextClassifier(categories=categories(ws))


def workspace_targets(ws: Workspace) -> tuple[float, float]:
    """(target precision, nominal coverage) from the workspace's settings (defaults 0.95, 0.90);
    a bad stored value is a `WorkspaceError` naming it."""
    try:
        return (honest.check_fraction(ws.get_setting(honest.TARGET_SETTING, str(honest.DEFAULT_TARGET)),
                                      "target precision"),
                honest.check_fraction(ws.get_setting(honest.COVERAGE_SETTING, str(honest.DEFAULT_COVERAGE)),
                                      "conformal coverage"))
    except honest.CalibrationError as exc:
        raise WorkspaceError(str(exc)) from None


def set_targets(ws: Workspace, *, target: Any = None, coverage: Any = None) -> tuple[float, float]:
    """Store the workspace's target precision and/or nominal coverage (both checked before either
    is written); returns the pair now in force."""
    try:
        t = honest.check_fraction(target, "target precision") if target is not None else None
        c = honest.check_fraction(coverage, "conformal coverage") if coverage is not None else None
    except honest.CalibrationError as exc:
        raise WorkspaceError(str(exc)) from None
    if t is not None:
        ws.set_setting(honest.TARGET_SETTING, repr(t))
    if c is not None:
        ws.set_setting(honest.COVERAGE_SETTING, repr(c))
    return workspace_targets(ws)


PRODUCT_COLUMNS = ["id", "title", "description", "image_path", "image_sha1", "source_label"]
TEXT_BATCH = 20_000     # products per read of the workspace's texts (the vocabulary's input)


def products_frame(ws: Workspace, ids: list[str] | None = None) -> pd.DataFrame:
    """The listed products, in that order (every product with ids=None: for small workspaces and
    the tests; the services read catalogs in batches). Long lists are read in slices, under
    SQLite's bound-parameter limit."""
    if ids is None:
        return _frame(ws.products())
    ids = list(ids)
    return _frame([r for s in range(0, len(ids), TEXT_BATCH) for r in ws.products(ids[s:s + TEXT_BATCH])])


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=PRODUCT_COLUMNS)
    df["description"] = df["description"].fillna("")
    return df


def workspace_texts(ws: Workspace) -> pd.DataFrame:
    """Title and description of every product, nothing else: what the text model's vocabulary
    and IDF are fitted on (the one whole-catalog read of a training, kept to the two columns the
    TF-IDF fit needs)."""
    titles: list[str] = []
    descriptions: list[str] = []
    for rows in engine_io.text_batches(ws, TEXT_BATCH):
        titles.extend(r[0] for r in rows)
        descriptions.extend(r[1] or "" for r in rows)
    return pd.DataFrame({"title": titles, "description": descriptions}, dtype=object)


def _noop(fraction: float, desc: str) -> None:
    log.info("%3.0f%% %s", 100 * fraction, desc)


# Seconds per labelled product of train_version's stages on the 2-core CPU (the whole sample, 1,942
# products: text fit 7 s, out-of-fold text and voters 36 s, fusion 6 s, saving and scoring 2 s; the
# text-only cross-validation 30 s). Only their ratios matter: with the feature extraction's own
# estimate (`ImageEnsemble.pending_feature_seconds`) they size the stages of the progress bar, so a
# first training, mostly feature extraction, does not sit at 28 % after five of its six minutes.
STAGE_SECONDS = {"text": 0.0036, "out-of-fold": 0.019, "fusion": 0.003, "cross-validation": 0.016,
                 "scoring": 0.001}


def progress_spans(seconds: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Each stage's (start, end) on a 0-1 bar, in proportion to its expected seconds (in order)."""
    total = sum(seconds.values())
    spans, at = {}, 0.0
    for name, s in seconds.items():
        end = at + (s / total if total > 0 else 1.0 / len(seconds))
        spans[name] = (at, end)
        at = end
    return spans


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


def _text_metrics(y: np.ndarray, pred: np.ndarray, n_folds: int) -> dict[str, float]:
    s = evaluation.scores(y, pred)
    return {"text_weighted_f1": s["weighted_f1"], "text_macro_f1": s["macro_f1"], "text_accuracy": s["accuracy"],
            "cv_folds": int(n_folds)}


def category_prior(y: np.ndarray, codes: list | None = None) -> np.ndarray:
    """Share of each taxonomy category among the labels: the text model's prior, for the fusion."""
    return np.array([(y == c).mean() for c in (codes or taxonomy.default().keys())])


MIN_LABELLED_IMAGES = 30   # below this an image ensemble learns little: the version stays text only


def _has_enough_images(df: pd.DataFrame) -> bool:
    n = int(df["image_path"].fillna("").astype(str).str.strip().ne("").sum())
    return n >= MIN_LABELLED_IMAGES


def oof_text_proba(df: pd.DataFrame, y: np.ndarray, make_text, folds: np.ndarray,
                   unlabelled: pd.DataFrame | None = None, codes: list | None = None) -> np.ndarray:
    """(n, len(codes)) out-of-fold text probabilities for the given fold assignment.

    unlabelled: the texts the final text model also sees (never labels), so the fusion is fitted
    on text probabilities as sharp as the ones it will be applied to."""
    codes = codes or taxonomy.default().keys()
    make_text = make_text or text_model
    out = np.zeros((len(df), len(codes)))
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        model = make_text().fit(df[tr], y[tr], X_unlabeled=unlabelled)
        out[te] = align(model.predict_proba(df[te]), model.classes_, codes)
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
                     y: np.ndarray, *, text_factory=None, unlabelled: pd.DataFrame | None = None,
                     progress: Progress | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, dict]:
    """(text, {voter: probs}, category index) out of fold for the labelled products with an image,
    the rows the fusion is fitted on (same folds for text and image), and the text's CV metrics."""
    folds = honest.product_folds(df["id"].astype(str).tolist())
    text_oof, voters_oof, metrics = _out_of_fold(ensemble, feats, ok, df, y, folds, text_factory=text_factory,
                                                 unlabelled=unlabelled, progress=progress)
    return text_oof[ok], voters_oof, _index(y[ok], ensemble.codes), metrics


def _index(y: np.ndarray, codes: list | None = None) -> np.ndarray:
    """Column index of each label among the taxonomy's codes."""
    col = {c: j for j, c in enumerate(codes or taxonomy.default().keys())}
    return np.array([col[c.item() if hasattr(c, "item") else c] for c in y], dtype=int)


def _out_of_fold(ensemble: Any, feats: dict[str, np.ndarray], ok: np.ndarray, df: pd.DataFrame, y: np.ndarray,
                 folds: np.ndarray, *, text_factory=None, unlabelled: pd.DataFrame | None = None,
                 progress: Progress | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Text probabilities (n, 27) of every labelled product and each voter's (n_ok, 27) for those
    with an image, each row from models fitted on the other folds; the text's CV metrics."""
    progress = progress or _noop
    codes = list(ensemble.codes)
    progress(0.0, f"out-of-fold text probabilities ({len(np.unique(folds))} folds)")
    text_oof = oof_text_proba(df, y, text_factory, folds, unlabelled, codes)
    metrics = _text_metrics(y, np.asarray(codes)[text_oof.argmax(1)], len(np.unique(folds)))
    progress(0.5, "out-of-fold image voters")
    yi, fi = y[ok], folds[ok]
    fo = {k: v[ok] for k, v in feats.items()}
    voters_oof = {s.label: np.zeros((int(ok.sum()), len(codes))) for s in ensemble.voters}
    for k in np.unique(fi):
        tr, te = fi != k, fi == k
        if len(np.unique(yi[tr])) < 2 or not te.any():
            continue
        part = type(ensemble)(voters=ensemble.voters, codes=codes).fit({n: f[tr] for n, f in fo.items()}, yi[tr])
        for name, p in part.voter_proba({n: f[te] for n, f in fo.items()}).items():
            voters_oof[name][te] = p
    return text_oof, voters_oof, metrics


def _cross_fitted_fusion(text_oof: np.ndarray, voters_oof: dict[str, np.ndarray], ok: np.ndarray, y: np.ndarray,
                         folds: np.ndarray, voter_names: list[str], codes: list,
                         has_text: np.ndarray | None = None) -> dict[str, Any]:
    """Out-of-fold predictions of every labelled product in `bundle.predict`'s layout: the fusion
    that fuses a product of fold k is itself fitted on the other folds' rows (its prior too), so
    nothing a product shows was fitted on its own label."""
    from models.fusion import Fusion
    n = len(y)
    fused = text_oof.copy()
    image = np.zeros_like(text_oof)
    voters = {name: np.zeros_like(text_oof) for name in voter_names}
    y_index = _index(y, codes)
    has_text = np.ones(n, bool) if has_text is None else np.asarray(has_text, bool)   # photo only: image vote
    rows = np.flatnonzero(ok)
    fi = folds[ok]
    for k in np.unique(fi):
        tr, te = fi != k, fi == k
        if not te.any():
            continue
        fusion = Fusion(voter_names=voter_names, text_prior=category_prior(y[folds != k], codes))
        fusion.fit(text_oof[rows[tr]], {v: p[tr] for v, p in voters_oof.items()}, y_index[rows[tr]],
                   has_text=has_text[rows[tr]])
        part = {v: p[te] for v, p in voters_oof.items()}
        vote = fusion.image_vote(part)
        fused[rows[te]] = fusion.fuse(text_oof[rows[te]], vote, np.ones(int(te.sum()), bool), voters=part,
                                      has_text=has_text[rows[te]])
        image[rows[te]] = vote
        for v in voter_names:
            voters[v][rows[te]] = part[v]
    return {"text": text_oof, "image": image, "voters": voters, "has_image": ok.copy(), "fused": fused,
            "has_text": has_text, "n": n}


def _image_ensemble(ws: Workspace, voters=None) -> Any:
    """The workspace's image ensemble (its `image_voters` setting, else the default voters), unfitted."""
    from models.image import VOTERS_SETTING, ImageEnsemble, voters_from_config
    return ImageEnsemble(voters=voters or voters_from_config(ws.get_setting(VOTERS_SETTING)),
                         codes=taxonomy.of(ws).keys())


def fit_image_and_fusion(ws: Workspace, df: pd.DataFrame, y: np.ndarray, *, text_factory=None,
                         progress: Progress | None = None, voters=None,
                         unlabelled: pd.DataFrame | None = None,
                         features_share: float = 0.4) -> tuple[Any, Any, dict]:
    """Image ensemble on the labelled products with a usable image, and the fusion fitted on
    out-of-fold text + voter probabilities of those products.

    features_share: the part of this stage's progress that feature extraction takes (most of it
    on a first training, next to nothing once the features are cached).
    Returns (ensemble, fusion, metrics), or (None, None, metrics) when too few images decode.
    """
    ensemble, fusion, metrics, _ = _fit_image_and_fusion(
        ws, df, y, honest.product_folds(df["id"].astype(str).tolist()), text_factory=text_factory,
        progress=progress, voters=voters, unlabelled=unlabelled, features_share=features_share)
    return ensemble, fusion, metrics


def _fit_image_and_fusion(ws: Workspace, df: pd.DataFrame, y: np.ndarray, folds: np.ndarray, *,
                          text_factory=None, progress: Progress | None = None, voters=None,
                          unlabelled: pd.DataFrame | None = None, features_share: float = 0.4
                          ) -> tuple[Any, Any, dict, dict | None]:
    """`fit_image_and_fusion` plus the labelled products' out-of-fold predictions (None when the
    version stays text only)."""
    from models.features import NO_IMAGE
    from models.fusion import Fusion
    progress = progress or _noop
    ensemble = _image_ensemble(ws, voters)
    progress(0.0, "image features (cached per image and backbone)")
    fs = min(max(features_share, 0.0), 0.99)
    feats, ok, problems = ensemble.product_features(df, feature_store=WorkspaceFeatures(ws),
                                                    progress=scaled(progress, 0, fs))
    # a product without an image is normal; only files that exist and do not decode are problems
    broken = sum(msg != NO_IMAGE for msg in problems.values())
    metrics: dict[str, Any] = {"n_images": int(ok.sum()), "n_image_problems": broken,
                               "n_without_image": len(problems) - broken}
    if ok.sum() < MIN_LABELLED_IMAGES or len(np.unique(y[ok])) < 2:
        log.warning("only %d labelled products have a usable image: version stays text only", ok.sum())
        return None, None, metrics, None
    text_oof, voters_oof, text_metrics = _out_of_fold(
        ensemble, feats, ok, df, y, folds, text_factory=text_factory, unlabelled=unlabelled,
        progress=scaled(progress, fs, fs + 0.75 * (1 - fs)))
    metrics.update(text_metrics)
    progress(fs + 0.75 * (1 - fs), "fitting fusion on out-of-fold predictions")
    names = [s.label for s in ensemble.voters]
    codes = list(ensemble.codes)
    fusion = Fusion(voter_names=names, text_prior=category_prior(y, codes))
    has_text = product_has_text(df)      # a product with only a photo: its image vote, never fitted on
    fusion.fit(text_oof[ok], voters_oof, _index(y[ok], codes), has_text=has_text[ok])
    progress(fs + 0.8 * (1 - fs), "cross-fitting the fusion for out-of-fold scores")
    oof = _cross_fitted_fusion(text_oof, voters_oof, ok, y, folds, names, codes, has_text)
    ensemble.fit({k: v[ok] for k, v in feats.items()}, y[ok])
    ensemble.set_vote(fusion.params.vote_weights, fusion.params.sharpen_k)
    metrics.update(fusion.metrics)
    progress(1.0, "image ensemble and fusion fitted")
    return ensemble, fusion, metrics, oof


def text_only_oof(df: pd.DataFrame, y: np.ndarray, folds: np.ndarray, codes: list, *, text_factory=None,
                  unlabelled: pd.DataFrame | None = None) -> tuple[dict[str, Any], dict]:
    """Out-of-fold predictions of a text-only version (`bundle.predict`'s layout) and its metrics."""
    text_oof = oof_text_proba(df, y, text_factory, folds, unlabelled, codes)
    metrics = _text_metrics(y, np.asarray(codes)[text_oof.argmax(1)], len(np.unique(folds)))
    return ({"text": text_oof, "image": None, "voters": {}, "has_image": np.zeros(len(y), bool),
             "fused": text_oof}, metrics)


def train_version(ws: Workspace, *, progress: Progress | None = None, evaluate: bool = True,
                  notes: str = "", parent: str | None = None, labels: dict[str, int] | None = None,
                  make_live: bool = True, version: str | None = None) -> dict:
    """Fit every model on the workspace's current labels, save, score all products, go live.

    Labelled products are scored out of fold (`models.honest`: K-fold cross-fitting on folds
    drawn from product ids, the fusion cross-fitted too), every other product by the models fitted
    on all labels, which also make the saved bundle (try-it, `predict`). From the same
    out-of-fold predictions: the cross-validated metrics, the auto-accept threshold with its
    guaranteed precision, the conformal prediction sets and the label-issue ranking.

    labels: train on exactly these product -> category pairs (default: the workspace's labels by
    the one rule, `store.labels`). make_live=False leaves the pointer where it is (the caller
    compares first). version: a pre-chosen id (so a caller can record which version an
    interrupted run was building). evaluate: kept for callers; the out-of-fold scores always run.
    """
    progress = progress or _noop
    started = time.perf_counter()
    ws.require_products()
    target, coverage = workspace_targets(ws)     # a bad setting stops here, nothing written
    codes, cats = taxonomy.of(ws).keys(), categories(ws)
    features = WorkspaceFeatures(ws)
    df, y, n_decided = labelled_frame(ws, labels)
    present = np.unique(y)
    if len(present) < 2:
        raise WorkspaceError(f"need labelled products of at least two categories to train; all {len(y)} "
                             f"labelled products are in category {present[0] if len(present) else '-'} "
                             "(import or review products of other categories)")
    parent = parent if parent is not None else ws.live_version()
    version = version or ws.new_version_id()
    # every workspace product's text (never its label) enters the vocabulary and IDF
    unlabelled = workspace_texts(ws)
    ensemble = _image_ensemble(ws) if _has_enough_images(df) else None
    if ensemble is not None:
        progress(0.0, "loading image backbones")
    n = len(df)
    folds = honest.product_folds(df["id"].astype(str).tolist())
    seconds = {"text": STAGE_SECONDS["text"] * n,
               "features": sum(ensemble.pending_feature_seconds(df, feature_store=features).values()) if ensemble else 0.0,
               "out-of-fold": STAGE_SECONDS["out-of-fold"] * n if ensemble else 0.0,
               "fusion": STAGE_SECONDS["fusion"] * n * 2 if ensemble else 0.0,
               "cross-validation": STAGE_SECONDS["cross-validation"] * n if not ensemble else 0.0,
               "scoring": STAGE_SECONDS["scoring"] * len(unlabelled)}
    if ensemble is not None:   # images of products without a label are featurised when they are scored
        seconds["scoring"] += _pending_seconds_unlabelled(ws, ensemble, set(df["id"]), features)
    spans = progress_spans(seconds)
    progress(spans["text"][0], f"fitting text model on {n} products")
    text = TextClassifier(categories=cats).fit(df, y, X_unlabeled=unlabelled)
    metrics: dict[str, Any] = {}
    config: dict[str, Any] = {"text": text.describe()}
    image = fusion = oof = None
    if ensemble is not None:
        start, end = spans["features"][0], spans["fusion"][1]
        image, fusion, image_metrics, oof = _fit_image_and_fusion(
            ws, df, y, folds, text_factory=lambda: TextClassifier(categories=cats), progress=scaled(progress, start, end),
            voters=ensemble.voters, unlabelled=unlabelled, features_share=seconds["features"] / max(1e-9, sum(
                seconds[k] for k in ("features", "out-of-fold", "fusion"))))
        metrics.update(image_metrics)
        if image is not None:
            config["image"], config["fusion"] = image.describe(), fusion.describe()
    if oof is None:
        progress(spans["cross-validation"][0], "out-of-fold text model (scores of the labelled products)")
        oof, text_metrics = text_only_oof(df, y, folds, codes, text_factory=lambda: TextClassifier(categories=cats),
                                          unlabelled=unlabelled)
        metrics.update(text_metrics)
    label_idx = _index(y, codes)
    calibration = honest.calibrate(oof["fused"], label_idx, target=target, coverage=coverage)
    metrics.update(_oof_metrics(y, oof["fused"], len(np.unique(folds)), codes), **calibration.as_dict())
    bundle = ModelBundle(version=version, text=text, image=image, fusion=fusion, codes=codes, categories=cats,
                         info={"n_train": n, "calibration": calibration.as_dict()})
    progress(spans["scoring"][0], "saving model version")
    path = bundle.save(ws.models_dir / version)
    duration = time.perf_counter() - started
    ws.register_model_version(version, path, config=config, metrics=metrics,
                              n_train=n, n_decisions=n_decided, duration_s=round(duration, 2),
                              parent=parent, notes=notes, make_live=False)
    stored_taxonomy.set_version_classes(ws, version, codes)   # the keys of its probability columns
    progress(spans["scoring"][0], "scoring products")
    labelled_ids = df["id"].astype(str).tolist()
    for at in range(0, len(labelled_ids), SAVE_BATCH):   # rows built and written a batch at a time
        ws.save_predictions(version, prediction_rows(labelled_ids[at:at + SAVE_BATCH],
                                                     _rows(oof, at, at + SAVE_BATCH), codes), source=OUT_OF_FOLD)
    del unlabelled     # the texts went into the vocabulary; the rest is scored batch by batch
    # ids=None: every product without the out-of-fold prediction just stored, one batch at a time
    scored = len(labelled_ids) + score_products(ws, bundle, progress=scaled(progress, *spans["scoring"]))
    from labeler.label_issues import store_issue_run
    store_issue_run(ws, labelled_ids, label_idx, oof["fused"], method=f"confident-learning/oof-fused {version}",
                    folds=int(len(np.unique(folds))), codes=codes, duration_s=round(time.perf_counter() - started, 2))
    if make_live:
        ws.set_live_version(version)
    progress(1.0, f"version {version} {'live' if make_live else 'ready'}, {scored} products scored")
    return ws.model_version(version)


OUT_OF_FOLD = honest.OUT_OF_FOLD_SOURCE
ALL_LABELS = honest.ALL_LABELS_SOURCE


def _oof_metrics(y: np.ndarray, fused: np.ndarray, n_folds: int, codes: list) -> dict[str, Any]:
    """Fused out-of-fold quality of the version: what every labelled product's card shows."""
    pred = np.asarray(codes)[fused.argmax(1)]
    s = evaluation.scores(y, pred)
    return {"fused_cv_weighted_f1": s["weighted_f1"], "fused_cv_macro_f1": s["macro_f1"],
            "fused_cv_accuracy": s["accuracy"], "fused_cv_n": int(len(y)), "cv_folds": int(n_folds)}


SAVE_BATCH = 5_000     # out-of-fold prediction rows per write


def _rows(out: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Rows start:stop of `bundle.predict`'s layout (arrays sliced, None and scalars kept)."""
    cut = lambda v: v[start:stop] if isinstance(v, np.ndarray) else v  # noqa: E731
    return {k: ({n: cut(a) for n, a in v.items()} if isinstance(v, dict) else cut(v)) for k, v in out.items()}


def _pending_seconds_unlabelled(ws: Workspace, ensemble: Any, labelled: set[str], features: Any,
                                batch: int = 5_000) -> float:
    """Seconds of image features the scoring of the unlabelled products will compute (read in
    batches of products with an image)."""
    total = 0.0
    for rows in engine_io.image_batches(ws, batch):
        part = pd.DataFrame([r for r in rows if r["id"] not in labelled], columns=["id", "image_path", "image_sha1"])
        if len(part):
            total += sum(ensemble.pending_feature_seconds(part, feature_store=features).values())
    return total


def score_products(ws: Workspace, bundle: ModelBundle, ids: list[str] | None = None,
                   batch_size: int = 2048, progress: Progress | None = None) -> int:
    """Predict and store with the bundle (fitted on all labels) each listed product, or with
    ids=None every product without an out-of-fold prediction of this version (the ones a training
    stored for labelled products stay). Products are read, predicted and written `batch_size` at
    a time, so memory follows the batch, not the catalog; images not seen in training are
    featurised here, so the batches report their progress."""
    progress = progress or (lambda f, d: None)
    features = WorkspaceFeatures(ws)
    if ids is None:
        total = engine_io.count_to_score(ws, bundle.version, OUT_OF_FOLD)
        batches = (_frame(rows) for rows in engine_io.batches_to_score(ws, bundle.version, OUT_OF_FOLD, batch_size))
    else:
        ids = [str(i) for i in ids]
        total = len(ids)
        batches = (products_frame(ws, ids[s:s + batch_size]) for s in range(0, len(ids), batch_size))
    n = done = 0
    for part in batches:
        share = (done / max(1, total), min(total, done + batch_size) / max(1, total))
        first = done + 1
        out = bundle.predict(part, feature_store=features, progress=lambda f, d: progress(
            share[0] + (share[1] - share[0]) * f, f"scoring products {first}-{first + len(part) - 1}: {d}"))
        n += ws.save_predictions(bundle.version, prediction_rows(part["id"].tolist(), out, bundle.codes),
                                 source=ALL_LABELS)
        done += batch_size if ids is not None else len(part)
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


def forget_bundles(ws: Workspace, keep: set[str]) -> None:
    """Drop this workspace's cached bundles except the versions in `keep` (a long app session
    retrains often; each bundle holds a text model and image heads)."""
    root = str(ws.root.resolve())
    for key in [k for k in list(_CACHE) if k[0] == root and k[1] not in keep]:
        _CACHE.pop(key, None)
