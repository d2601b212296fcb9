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

`detect_label_issues` runs it on a workspace and stores the result in `label_issues` (one run
replaces the previous rows; `label_issue_runs` keeps the history) for the app's "suspect labels"
queue: `suspect_ids(ws)` gives the flagged products not decided by a reviewer since, best first.
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sklearn.model_selection import StratifiedKFold

from labeler import taxonomy
from models.predictor import Progress, align
from store.workspace import Workspace, WorkspaceError, now_iso

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
def min_category_size(folds: int) -> int:
    """Smallest category that leaves >= 2 products of it in every fold's training part."""
    size = 2
    while size - -(-size // folds) < 2:
        size += 1
    return size


def out_of_fold_probs(X: Any, y: np.ndarray, make_model: Callable[[], Any], *, folds: int = 5, seed: int = 0,
                      codes: list[int] | None = None, progress: Progress | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(n, 27) probabilities, each row from a model fitted on the other folds (stratified, seeded).

    Products of categories too small to cross-validate (fewer than `min_category_size(folds)`)
    get no out-of-fold probabilities: the returned mask ``(n,)`` says which rows were scored.
    X is indexed with `.iloc` when it has it (DataFrame), else with numpy indexing.
    """
    y = np.asarray(y)
    codes = codes or taxonomy.codes()
    cats, counts = np.unique(y, return_counts=True)
    usable = np.isin(y, cats[counts >= min_category_size(folds)])
    kept = np.unique(y[usable])
    if len(kept) < 2:
        raise WorkspaceError(f"need at least two categories with {min_category_size(folds)}+ labelled products "
                             f"to cross-validate with {folds} folds; got {len(y)} products in {len(cats)} "
                             "categories (import more labels or use fewer --folds)")
    if counts.max() < folds:
        raise WorkspaceError(f"{folds} folds need a category with at least {folds} labelled products; the "
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


# -- workspace ----------------------------------------------------------------------------------
@dataclass
class DetectionReport:
    run_id: int
    n_products: int
    n_flagged: int
    folds: int
    duration_s: float
    method: str
    n_skipped: int = 0       # products of categories too small to cross-validate


def _default_model() -> Any:
    from models.text import TextClassifier
    return TextClassifier()


def detect_label_issues(ws: Workspace, *, folds: int = 5, seed: int = 0, progress: Progress | None = None,
                        make_model: Callable[[], Any] | None = None) -> DetectionReport:
    """Cross-validate the text model on the workspace's labels, flag issues, store them.

    Labels are the reviewer-resolved ones (`labeler.review.resolved_labels`). Products of
    categories with fewer than `min_category_size(folds)` labels are not checked (n_skipped).
    """
    if folds < 2:
        raise WorkspaceError(f"folds must be at least 2, got {folds}")
    from labeler.review import resolved_labels
    from models.training import products_frame

    started = time.perf_counter()
    progress = progress or (lambda f, m: None)
    ws.require_products()
    labels = resolved_labels(ws)
    if not labels:
        raise WorkspaceError(f"workspace {ws.root} has no labelled products to check; import labels first")
    df = products_frame(ws, list(labels))
    y = np.array([labels[i] for i in df["id"]])
    codes = taxonomy.codes()
    col = {c: j for j, c in enumerate(codes)}
    make_model = make_model or _default_model
    probs, scored = out_of_fold_probs(df, y, make_model, folds=folds, seed=seed, codes=codes,
                                      progress=lambda f, m: progress(0.9 * f, m))
    progress(0.92, "applying the confident-learning rule")
    df, y, probs = df[scored].reset_index(drop=True), y[scored], probs[scored]
    label_idx = np.array([col[int(c)] for c in y])
    issues = find_issues(label_idx, probs)
    method = f"confident-learning/oof-{type(make_model()).__name__}"
    run_id = store_issue_run(ws, df["id"].tolist(), label_idx, probs, method=method, folds=folds,
                             duration_s=round(time.perf_counter() - started, 2), issues=issues)
    n_flagged = int(issues.flagged.sum())
    progress(1.0, f"{n_flagged} of {len(y)} labels flagged")
    return DetectionReport(run_id, len(y), n_flagged, folds, round(time.perf_counter() - started, 2), method,
                           n_skipped=int((~scored).sum()))


def suspect_order(labels: np.ndarray, probs: np.ndarray, issues: Issues | None = None,
                  flagged_first: bool | None = None) -> np.ndarray:
    """Every row, most suspect first: (flagged rows first, by margin, when `flagged_first`) then
    the lowest out-of-fold probability of the row's own label first; ties by position.

    A plain ranking by p(label) keeps going where confident learning stops flagging, so a reviewer
    can walk past the flagged products (bench/label_noise.py measures both orders)."""
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


FLAGGED_FIRST = False   # measured by bench/label_noise.py (README): the plain ranking finds more within 2x


def store_issue_run(ws: Workspace, ids: list[str], labels: np.ndarray, probs: np.ndarray, *, method: str,
                    folds: int, duration_s: float | None = None, issues: Issues | None = None) -> int:
    """Confident learning on out-of-fold `probs` (n, 27) of the products `ids` labelled `labels`
    (column indices); stores every product ranked by `suspect_order` as the latest run."""
    codes = taxonomy.codes()
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    issues = issues if issues is not None else find_issues(labels, probs)
    n = len(labels)
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    best_other = np.argmax(others, axis=1) if n else np.zeros(0, int)
    suggested = np.where(issues.flagged, issues.suggested, best_other)
    thresholds = {str(codes[j]): round(float(t), 4) for j, t in enumerate(issues.thresholds) if np.isfinite(t)}
    rows = [(ids[i], rank, int(codes[labels[i]]), int(codes[suggested[i]]), float(probs[i, labels[i]]),
             float(probs[i, suggested[i]]), float(probs[i, suggested[i]] - probs[i, labels[i]]),
             int(issues.flagged[i]))
            for rank, i in enumerate(suspect_order(labels, probs, issues), start=1)]

    def store(conn) -> int:
        cur = conn.execute("INSERT INTO label_issue_runs (created_at, method, folds, n_products, n_flagged, "
                           "thresholds, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (now_iso(), method, folds, n, int(issues.flagged.sum()),
                            json.dumps(thresholds), duration_s))
        run = int(cur.lastrowid)
        conn.execute("DELETE FROM label_issues")
        conn.executemany("INSERT INTO label_issues (run_id, product_id, rank, given_label, suggested, given_prob, "
                         "suggested_prob, margin, flagged) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(run, *r) for r in rows])
        return run

    return ws.write(store)


def latest_run(ws: Workspace) -> dict | None:
    rows = ws.query("SELECT * FROM label_issue_runs ORDER BY id DESC LIMIT 1")
    if not rows:
        return None
    rows[0]["thresholds"] = json.loads(rows[0]["thresholds"])
    return rows[0]


def label_issues(ws: Workspace, *, limit: int | None = None, include_reviewed: bool = False) -> list[dict]:
    """Stored issues, most suspect first, with title and whether a reviewer decided it since."""
    rows = ws.query(
        "SELECT li.*, p.title, EXISTS (SELECT 1 FROM effective_decisions e WHERE e.product_id = li.product_id "
        "AND e.action IN ('accept', 'correct', 'auto_accept')) AS reviewed FROM label_issues li "
        "JOIN products p ON p.id = li.product_id ORDER BY li.rank")
    if not include_reviewed:
        rows = [r for r in rows if not r["reviewed"]]
    return rows if limit is None else rows[:limit]


def suspect_ids(ws: Workspace, *, flagged_only: bool = True) -> list[str]:
    """Products no reviewer has decided yet, most suspect first: the flagged ones (default), or
    every ranked labelled product."""
    return [r["product_id"] for r in label_issues(ws) if r["flagged"] or not flagged_only]
