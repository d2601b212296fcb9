"""Label issues of a workspace: run confident learning (`models.label_issues`) on its labels and
keep the ranking (`store.issues`) for the app's "suspect labels" queue and the CLI.

`detect_label_issues` cross-validates the text model on the reviewer-resolved labels; every
training also stores a ranking from its out-of-fold fused scores (`store_issue_run`).
`suspect_ids(ws)` gives the flagged products no reviewer decided since, most suspect first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from labeler import taxonomy
from labeler.domain import Progress
from models.label_issues import CrossValidationError, Issues, find_issues, issue_rows, out_of_fold_probs
from store import issues as issue_store
from store.labels import resolve_labels
from store.workspace import Workspace, WorkspaceError


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
    from labeler.training import text_model
    return text_model()


def detect_label_issues(ws: Workspace, *, folds: int = 5, seed: int = 0, progress: Progress | None = None,
                        make_model: Callable[[], Any] | None = None) -> DetectionReport:
    """Cross-validate the text model on the workspace's labels, flag issues, store them.

    Labels are the reviewer-resolved ones (`store.labels`, the one rule). Products of categories
    with fewer than `min_category_size(folds)` labels are not checked (n_skipped).
    """
    if folds < 2:
        raise WorkspaceError(f"folds must be at least 2, got {folds}")
    from labeler.training import products_frame

    started = time.perf_counter()
    progress = progress or (lambda f, m: None)
    ws.require_products()
    labels = resolve_labels(ws)
    if not labels:
        raise WorkspaceError(f"workspace {ws.root} has no labelled products to check; import labels first")
    df = products_frame(ws, list(labels))
    y = np.array([labels[i] for i in df["id"]])
    codes = taxonomy.of(ws).keys()
    col = {c: j for j, c in enumerate(codes)}
    make_model = make_model or _default_model
    try:
        probs, scored = out_of_fold_probs(df, y, make_model, folds=folds, seed=seed, codes=codes,
                                          progress=lambda f, m: progress(0.9 * f, m))
    except CrossValidationError as exc:
        raise WorkspaceError(str(exc)) from None
    progress(0.92, "applying the confident-learning rule")
    df, y, probs = df[scored].reset_index(drop=True), y[scored], probs[scored]
    label_idx = np.array([col[int(c)] for c in y])
    issues = find_issues(label_idx, probs)
    method = f"confident-learning/oof-{type(make_model()).__name__}"
    run_id = store_issue_run(ws, df["id"].tolist(), label_idx, probs, method=method, folds=folds, codes=codes,
                             duration_s=round(time.perf_counter() - started, 2), issues=issues)
    n_flagged = int(issues.flagged.sum())
    progress(1.0, f"{n_flagged} of {len(y)} labels flagged")
    return DetectionReport(run_id, len(y), n_flagged, folds, round(time.perf_counter() - started, 2), method,
                           n_skipped=int((~scored).sum()))


def store_issue_run(ws: Workspace, ids: list[str], labels: np.ndarray, probs: np.ndarray, *, method: str,
                    folds: int, codes: list[int], duration_s: float | None = None, issues: Issues | None = None) -> int:
    """Confident learning on out-of-fold `probs` (n, len(codes)) of the products `ids` labelled
    `labels` (column indices; `codes`: the key of each column); stores every product ranked by `suspect_order` as the latest run."""
    rows, thresholds, issues = issue_rows(ids, labels, probs, codes, issues)
    return issue_store.save_run(ws, rows, method=method, folds=folds, n_products=len(rows),
                                n_flagged=int(issues.flagged.sum()), thresholds=thresholds, duration_s=duration_s)


def latest_run(ws: Workspace) -> dict | None:
    return issue_store.latest_run(ws)


def label_issues(ws: Workspace, *, limit: int | None = None, include_reviewed: bool = False) -> list[dict]:
    """Stored issues, most suspect first, with title and whether a reviewer decided it since."""
    rows = issue_store.ranked_issues(ws)
    if not include_reviewed:
        rows = [r for r in rows if not r["reviewed"]]
    return rows if limit is None else rows[:limit]


def suspect_ids(ws: Workspace, *, flagged_only: bool = True) -> list[str]:
    """Products no reviewer has decided yet, most suspect first: the flagged ones (default), or
    every ranked labelled product."""
    return [r["product_id"] for r in label_issues(ws) if r["flagged"] or not flagged_only]
