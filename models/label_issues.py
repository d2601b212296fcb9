"""Label-issue detection: confident learning on out-of-fold probabilities.

The rule (Northcutt et al., "Confident Learning", 2021, the per-class threshold part):

* out-of-fold probabilities ``probs`` ``(n, k)``: each product scored by a model that never saw
  its label (K-fold cross-validation of the text model);
* per-class threshold ``t_j`` = mean self-confidence, the mean of ``probs[i, j]`` over the
  products labelled ``j`` (a class nobody is labelled with has no threshold and is never
  suggested);
* a product labelled ``y`` is an **issue** when ``probs[i, y] < t_y`` (the model is less sure of
  its label than it usually is for that class) and some other class ``k`` has
  ``probs[i, k] >= t_k``; the suggested class is the most probable such ``k``;
* issues are ranked by margin ``probs[i, suggested] - probs[i, y]``, largest first (ties by
  position, so the order is deterministic).

This module is the pure part (arrays in, arrays out; `issue_rows` the rows a run stores).
`labeler.label_issues.detect_label_issues` runs it on a workspace and `store.issues` keeps the
result for the app's "suspect labels" queue.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold

from models.predictor import align
from models.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issues:
    """Output of `find_issues`; every array is ``(n,)`` except thresholds ``(k,)``."""

    flagged: np.ndarray        # bool
    suggested: np.ndarray      # column index of the suggested class, -1 where not flagged
    margin: np.ndarray         # probs[suggested] - probs[given] where flagged, nan elsewhere
    order: np.ndarray          # indices of flagged rows, most suspect first
    thresholds: np.ndarray     # per-class mean self-confidence, inf for classes nobody has


def class_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(k,) mean of probs[:, j] over rows labelled j; inf where no row is labelled j."""
    labels = np.asarray(labels, dtype=int)
    k = probs.shape[1]
    sums = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=k)
    counts = np.bincount(labels, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def find_issues(labels: np.ndarray, probs: np.ndarray) -> Issues:
    """Confident-learning flags. labels: (n,) column indices into probs (n, k) (out-of-fold)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"expected labels (n,) and probs (n, k) with the same n, got labels {labels.shape} "
                         f"and probs {probs.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be column indices in [0, {probs.shape[1]}), got "
                         f"[{labels.min()}, {labels.max()}]")
    n = len(labels)
    t = class_thresholds(labels, probs)
    rows = np.arange(n)
    given = probs[rows, labels] if n else np.zeros(0)
    above = probs >= t[None, :]
    above[rows, labels] = False
    candidate = np.where(above, probs, -np.inf)
    suggested = np.argmax(candidate, axis=1) if n else np.zeros(0, int)
    has_other = above.any(axis=1)
    flagged = (given < t[labels]) & has_other if n else np.zeros(0, bool)
    margin = np.where(flagged, probs[rows, suggested] - given, np.nan) if n else np.zeros(0)
    idx = np.flatnonzero(flagged)
    order = idx[np.lexsort((idx, -margin[idx]))]
    return Issues(flagged=flagged, suggested=np.where(flagged, suggested, -1), margin=margin, order=order,
                  thresholds=t)


# -- out-of-fold probabilities ----------------------------------------------------------------
class CrossValidationError(ValueError):
    """Too few labels to cross-validate with the folds asked for (the message says what to change)."""


def min_category_size(folds: int) -> int:
    """Smallest category that leaves >= 2 products of it in every fold's training part."""
    size = 2
    while size - -(-size // folds) < 2:
        size += 1
    return size


def out_of_fold_probs(X: Any, y: np.ndarray, make_model: Callable[[], Any], *, folds: int = 5, seed: int = 0,
                      codes: Sequence | None = None, progress: Progress | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(n, len(codes)) probabilities, each row from a model fitted on the other folds (stratified,
    seeded); codes: the column order (default: the labels present in y).

    Products of categories too small to cross-validate (fewer than `min_category_size(folds)`)
    get no out-of-fold probabilities: the returned mask ``(n,)`` says which rows were scored.
    X is indexed with `.iloc` when it has it (DataFrame), else with numpy indexing.
    """
    y = np.asarray(y)
    codes = list(np.unique(y)) if codes is None else list(codes)
    cats, counts = np.unique(y, return_counts=True)
    usable = np.isin(y, cats[counts >= min_category_size(folds)])
    kept = np.unique(y[usable])
    if len(kept) < 2:
        raise CrossValidationError(f"need at least two categories with {min_category_size(folds)}+ labelled products "
                             f"to cross-validate with {folds} folds; got {len(y)} products in {len(cats)} "
                             "categories (import more labels or use fewer --folds)")
    if counts.max() < folds:
        raise CrossValidationError(f"{folds} folds need a category with at least {folds} labelled products; the "
                             f"largest has {counts.max()} (use fewer --folds)")
    rows = np.flatnonzero(usable)
    out = np.zeros((len(y), len(codes)))
    take = (lambda idx: X.iloc[idx]) if hasattr(X, "iloc") else (lambda idx: X[idx])
    with warnings.catch_warnings():   # small categories (3..folds-1 products) are fine, sklearn warns
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(rows, y[rows]))
    for i, (tr, te) in enumerate(splits):
        if progress is not None:
            progress(i / folds, f"out-of-fold model {i + 1}/{folds} on {len(tr)} products")
        model = make_model().fit(take(rows[tr]), y[rows[tr]])
        out[rows[te]] = align(model.predict_proba(take(rows[te])), model.classes_, codes)
    if progress is not None:
        progress(1.0, f"{folds} out-of-fold models fitted")
    return out, usable


def suspect_order(labels: np.ndarray, probs: np.ndarray, issues: Issues | None = None,
                  flagged_first: bool | None = None) -> np.ndarray:
    """Every row, most suspect first: (flagged rows first, by margin, when `flagged_first`) then
    the lowest out-of-fold probability of the row's own label first; ties by position.

    A plain ranking by p(label) keeps going where confident learning stops flagging, so a reviewer
    can walk past the flagged products (experiments/label_noise.py measures both orders)."""
    flagged_first = FLAGGED_FIRST if flagged_first is None else flagged_first
    labels = np.asarray(labels, dtype=int)
    n = len(labels)
    own = probs[np.arange(n), labels] if n else np.zeros(0)
    idx = np.arange(n)
    if flagged_first:
        issues = issues if issues is not None else find_issues(labels, probs)
        flagged = issues.flagged
        rest = idx[~flagged][np.lexsort((idx[~flagged], own[~flagged]))]
        return np.r_[issues.order, rest].astype(int)
    return idx[np.lexsort((idx, own))]


FLAGGED_FIRST = False   # measured by experiments/label_noise.py (README): the plain ranking finds more within 2x


def issue_rows(ids: Sequence[str], labels: np.ndarray, probs: np.ndarray, codes: Sequence,
               issues: Issues | None = None) -> tuple[list[tuple], dict[str, float], Issues]:
    """What a run stores: one row per product ranked by `suspect_order`, (id, rank, given code,
    suggested code, p(given), p(suggested), margin, flagged), the per-category thresholds by code,
    and the issues. labels: column indices into probs (n, len(codes)); the suggestion of a product
    not flagged is its most probable other category."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    issues = issues if issues is not None else find_issues(labels, probs)
    n = len(labels)
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    best_other = np.argmax(others, axis=1) if n else np.zeros(0, int)
    suggested = np.where(issues.flagged, issues.suggested, best_other)
    code = [c.item() if hasattr(c, "item") else c for c in codes]
    thresholds = {str(code[j]): round(float(t), 4) for j, t in enumerate(issues.thresholds) if np.isfinite(t)}
    rows = [(ids[i], rank, code[labels[i]], code[suggested[i]], float(probs[i, labels[i]]),
             float(probs[i, suggested[i]]), float(probs[i, suggested[i]] - probs[i, labels[i]]),
             int(issues.flagged[i]))
            for rank, i in enumerate(suspect_order(labels, probs, issues), start=1)]
    return rows, thresholds, issues
