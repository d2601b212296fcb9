"""Retraining from reviewer decisions: train a new version, compare it with the live one, switch.

The jobs around it live in their own modules: run bookkeeping (`labeler.runs`), the live
pointer and the versions table (`labeler.model_versions`), what changed (`labeler.changes`),
rollback (`labeler.rollback`), the background runner (`labeler.retrain_runner`); the F1 of
stored predictions is `labeler.evaluation.stored_metrics`. Their entry points are re-exported
here for the app and scripts.

Rules (the CLI, the app and the tests rely on them):

* **Training set.** Every label, by the one rule (`store.labels`: each reviewer's latest
  accept/correct not undone is one vote, the category with most votes wins, a tie goes to the
  most recent decision; a product nobody decided keeps its imported label). Nothing is held out:
  the shipped model learns from every label.
* **Comparison.** Both versions are judged the same way, on the products labelled now, by the
  predictions they stored: a labelled product's prediction is out-of-fold (from models that
  never saw its label, `labeler.training`), an unlabelled product's comes from a model that never
  saw a label for it either. So the new and the previous version are compared without a
  validation split; a previous version trained before out-of-fold scoring stored in-sample
  predictions for its labelled products: the comparison is then marked `in_sample` (no delta).
* **Go-live policy.** A new version goes live once it is saved, has scored every product and
  was compared, *even when its out-of-fold F1 is lower*: most labels are imported ones, and
  reviewer corrections that fix systematic errors in them can lower that score while making
  the model right. The comparison is stored on the version, printed, and a drop of more than
  `WORSE_BY` weighted F1 is called out as a warning; `rollback()` (CLI `rollback`) restores the
  previous version in one step. Pass `min_delta=` to gate instead: a version worse than the live
  one by more than that is kept *ready but not live* (promote it with `rollback(ws, version)`).
* **Failure.** Whatever fails, the live pointer is not moved (it moves last, by
  `labeler.model_versions.make_live`). The run is recorded in `retrain_runs` with status 'failed' and the reason, a
  version already registered is marked 'failed', and `RetrainFailed` says why. A process killed
  mid-run cannot record anything: the next retrain (or `retrain_state`) finds its run still
  'running' with a dead process, marks it 'interrupted' and its half-built version 'failed'.
* **Switching.** Nothing to restart: `labeler.training.live_bundle(ws)` reads the live pointer on
  every call and the review queue (`labeler.review.ranking`) is keyed on it, so the next card
  after a switch is ranked and shown with the new version's predictions.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labeler import evaluation
from labeler.changes import changes as _changes, describe_changes, write_snapshot
from labeler.config import Settings
from labeler.model_versions import RetrainError, auto_accept_line, make_live, versions_table
from labeler.rollback import rollback
from labeler.retrain_runner import RetrainHandle, current_retrain, start_background_retrain
from labeler.runs import RetrainBusy, begin_run, end_run, retrain_state, run_progress
from labeler import training
from labeler.domain import Progress, scaled
from store import labels as label_store
from store import predictions, runs, versions
from store.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)
__all__ = ["RetrainBusy", "RetrainError", "RetrainFailed", "RetrainHandle", "RetrainResult", "current_retrain",
           "result_dict", "retrain", "retrain_state", "rollback", "start_background_retrain", "versions_table"]

WORSE_BY = 0.01              # weighted-F1 drop called out as a warning


class RetrainFailed(RetrainError):
    def __init__(self, message: str, run_id: int, version: str | None, live: str | None):
        super().__init__(message)
        self.run_id = run_id
        self.version = version
        self.live = live


@dataclass
class RetrainResult:
    """What a retrain did. Metrics are out-of-fold on the products labelled now: weighted_f1,
    macro_f1, accuracy (`n_validation` of them, the same products for both versions)."""

    run_id: int
    version: str
    previous: str | None
    went_live: bool
    live: str | None                      # the live version after the retrain
    metrics: dict[str, Any]               # new version, out-of-fold on the labelled products
    previous_metrics: dict[str, Any]      # previous live version on the same split ({} if none)
    delta_weighted_f1: float | None
    previous_in_sample: bool              # the previous version stored in-sample predictions
    n_train: int
    n_validation: int
    n_decisions: int
    n_conflicts: int                      # products where reviewers disagree (resolved by majority/latest)
    changes: dict[str, Any]
    duration_s: float
    path: str
    warning: str | None = None
    auto_accept: dict[str, Any] = field(default_factory=dict)   # models.honest.AutoAccept as a dict

    def lines(self) -> list[tuple[str, Any]]:
        """(label, value) rows for the CLI and the app."""
        rows: list[tuple[str, Any]] = [
            ("version", f"{self.version} ({'live' if self.went_live else 'ready, NOT live'})"),
            ("previous", self.previous or "none"),
            ("trained on", f"{self.n_train} products ({self.n_decisions} reviewed, "
                           f"{self.n_conflicts} with disagreeing reviewers)"),
            ("compared on", f"{self.n_validation} labelled products, out-of-fold predictions of both "
                            "versions (nothing held out of training)"),
        ]
        if self.metrics:
            rows.append(("new", _fmt_metrics(self.metrics)))
        if self.previous_metrics:
            tag = ""
            if self.previous_in_sample:
                cv = self.previous_metrics.get("cv_weighted_f1")
                tag = (" (in-sample: trained before out-of-fold scoring, not comparable" +
                       (f"; its cross-validated weighted F1 was {cv:.4f}" if cv is not None else "") +
                       "; later retrains compare out-of-fold)")
            rows.append((f"{self.previous}", _fmt_metrics(self.previous_metrics) + tag))
        if self.delta_weighted_f1 is not None:
            rows.append(("weighted F1 change", f"{self.delta_weighted_f1:+.4f}"))
        rows.append(("what changed", describe_changes(self.changes)))
        if self.auto_accept:
            rows.append(("auto-accept", auto_accept_line(self.auto_accept)))
        rows.append(("time", f"{self.duration_s:.1f} s"))
        rows.append(("model saved to", self.path))
        if self.warning:
            rows.append(("WARNING", self.warning))
        return rows


def _fmt_metrics(m: dict[str, Any]) -> str:
    return (f"weighted F1 {m['weighted_f1']:.4f} · macro F1 {m['macro_f1']:.4f} · "
            f"accuracy {m['accuracy']:.4f} (n={m['n']})")


# -- retrain ------------------------------------------------------------------------------------
@dataclass
class _TrainingSet:
    labels: dict[str, int]           # every label by the one rule, all of them trained on
    n_conflicts: int
    last_decision: int               # decisions up to this id are in `labels`

    @property
    def train(self) -> dict[str, int]:
        return self.labels


def _training_set(ws: Workspace, settings: Settings) -> _TrainingSet:
    from labeler.review import disagreements
    last_decision = label_store.last_decision_id(ws)
    labels = ws.current_labels()
    n_cats = len(set(labels.values()))
    if n_cats < 2:
        raise RetrainError(f"there is nothing to tell apart: the {len(labels)} labelled products are all in "
                           f"{'one category' if n_cats else 'no category'}; label or correct products into at "
                           "least two categories, then retrain")
    return _TrainingSet(labels=labels, n_conflicts=len(disagreements(ws)), last_decision=last_decision)


@dataclass
class _Comparison:
    metrics: dict[str, Any]
    previous_metrics: dict[str, Any]
    previous_in_sample: bool
    delta: float | None              # only when the previous version's predictions are honest too
    n: int = 0


def _stored_metrics(ws: Workspace, version: str, labels: dict[str, int]) -> tuple[dict[str, Any], bool]:
    """`evaluation.stored_metrics` of the predictions `version` stored."""
    return evaluation.stored_metrics(predictions.outcomes(ws, version), labels, out_of_fold=training.OUT_OF_FOLD)


def _compare(ws: Workspace, version: str, previous: str | None, parent_row: dict | None,
             labels: dict[str, int], report: Progress) -> _Comparison:
    """Both versions' stored predictions on the products labelled now (module docstring)."""
    report(0.86, f"comparing {version} with {previous or 'nothing'} on {len(labels)} labelled products")
    common = labels
    if previous:
        scored = predictions.scored_ids(ws, previous)
        common = {k: v for k, v in labels.items() if k in scored}
    metrics, _ = _stored_metrics(ws, version, common)
    prev_metrics: dict[str, Any] = {}
    in_sample = False
    if previous and common:
        prev_metrics, in_sample = _stored_metrics(ws, previous, common)
        if in_sample and "text_weighted_f1" in (parent_row or {}).get("metrics", {}):
            prev_metrics["cv_weighted_f1"] = parent_row["metrics"]["text_weighted_f1"]
    delta = None   # an in-sample score flatters the old version: no delta, no gate
    if metrics and "weighted_f1" in prev_metrics and not in_sample:
        delta = round(metrics["weighted_f1"] - prev_metrics["weighted_f1"], 4)
    return _Comparison(metrics, prev_metrics, in_sample, delta, len(common))


def _policy(delta: float | None, min_delta: float | None, previous: str | None, version: str) -> tuple[bool, str | None]:
    """(go live?, warning) per the module's go-live policy."""
    if delta is not None and min_delta is not None and delta < -abs(min_delta):
        return False, (f"not put live: weighted F1 {delta:+.4f} vs {previous} (gate {-abs(min_delta):+.4f}); "
                       f"promote it with `rollback {version}` if wanted")
    if delta is not None and delta < -WORSE_BY:
        return True, (f"out-of-fold weighted F1 dropped {delta:+.4f} vs {previous} on the labelled products; "
                      f"it is live, `rollback` restores {previous}")
    return True, None


def _record(ws: Workspace, row: dict, run_id: int, ts: _TrainingSet, cmp: _Comparison, changes: dict,
            previous: str | None, min_delta: float | None, duration: float) -> None:
    """Store the comparison, sizes, what changed and the total duration on the version row."""
    write_snapshot(Path(row["path"]).parent, ts.train, [])
    config = {**row["config"], "retrain": {
        "run_id": run_id, "last_decision_id": ts.last_decision, "comparison": "out-of-fold",
        "n_validation": cmp.n, "n_conflicts": ts.n_conflicts, "changes": changes,
        "policy": "gate" if min_delta is not None else "always-live", "min_delta": min_delta,
        "train_seconds": row["duration_s"]}}
    metrics = {**row["metrics"], "validation": cmp.metrics,
               "compared_to": {"version": previous, "metrics": cmp.previous_metrics,
                               "in_sample": cmp.previous_in_sample, "delta_weighted_f1": cmp.delta}}
    summary = (f"retrain run {run_id}: {describe_changes(changes)}" +
               (f"; out-of-fold weighted F1 {cmp.metrics['weighted_f1']:.4f}" if cmp.metrics else "") +
               (f" ({previous}: {cmp.previous_metrics['weighted_f1']:.4f})"
                if "weighted_f1" in cmp.previous_metrics else ""))
    versions.update_record(ws, row["id"], metrics=metrics, config=config, duration_s=duration, notes=summary)


def retrain(ws: Workspace, *, progress: Progress | None = None, min_delta: float | None = None,
            cross_validate: bool = False, trigger: str = "api", settings: Settings = Settings(),
            who: str = "", why: str = "") -> RetrainResult:
    """Train a new version on the reviewer-resolved labels, compare it with the live one, switch.

    progress: `(fraction, message)` callback. min_delta: gate (see the module docstring); None
    (default) puts the new version live whatever its score. cross_validate: also store the
    5-fold CV estimate on the training set (5 more fits). who/why: recorded in `live_history` when
    the new version goes live (the login name or `--by`, and their note). Raises RetrainBusy when another
    retrain of this workspace runs, RetrainFailed (live version unchanged) when anything fails.
    """
    started = time.perf_counter()
    ws.require_products()
    run_id = begin_run(ws, trigger)
    report = run_progress(ws, run_id, progress)
    previous = versions.live(ws)
    version: str | None = None
    registered = False
    try:
        report(0.01, "reading labels and decisions")
        ts = _training_set(ws, settings)
        version = versions.new_id(ws)
        runs.set_version(ws, run_id, version)
        parent_row = versions.get(ws, previous) if previous else None
        row = training.train_version(ws, progress=scaled(report, 0.02, 0.85), evaluate=cross_validate,
                                     notes=f"retrain run {run_id}", parent=previous, labels=ts.train,
                                     make_live=False, version=version)
        registered = True
        cmp = _compare(ws, version, previous, parent_row, ts.labels, report)
        go_live, warning = _policy(cmp.delta, min_delta, previous, version)
        changes = _changes(ws, parent_row, ts.train, ts.last_decision)
        duration = round(time.perf_counter() - started, 2)
        _record(ws, row, run_id, ts, cmp, changes, previous, min_delta, duration)
        if go_live:
            report(0.98, f"switching live version to {version}")
            make_live(ws, version, reason=f"retrain run {run_id}", who=who, why=why)
        state = "live" if go_live else "ready, not live"
        end_run(ws, run_id, "succeeded", version=version, went_live=int(go_live), progress=1.0,
                 message=f"{version} {state}")
        if progress is not None:
            progress(1.0, f"{version} {state}")
        return RetrainResult(
            run_id=run_id, version=version, previous=previous, went_live=go_live, live=versions.live(ws),
            metrics=cmp.metrics, previous_metrics=cmp.previous_metrics, delta_weighted_f1=cmp.delta,
            previous_in_sample=cmp.previous_in_sample, n_train=int(row["n_train"]), n_validation=cmp.n,
            n_decisions=int(row["n_decisions"] or 0), n_conflicts=ts.n_conflicts, changes=changes,
            duration_s=duration, path=row["path"], warning=warning,
            auto_accept=row["metrics"].get("auto_accept", {}))
    except BaseException as exc:
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else _reason(exc)
        _fail(ws, run_id, version if registered or versions.exists(ws, version) else None, reason)
        if not isinstance(exc, Exception):
            raise
        live = versions.live(ws)
        raise RetrainFailed(f"retrain failed: {reason}; {live or 'no version'} is still live (run {run_id})",
                            run_id, version, live) from exc


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return text if isinstance(exc, WorkspaceError) else f"{type(exc).__name__}: {text}"


def _fail(ws: Workspace, run_id: int, version: str | None, reason: str) -> None:
    try:
        if version is not None:
            versions.mark_failed(ws, version, f"retrain run {run_id} failed: {reason}", unless_live=True)
    finally:
        end_run(ws, run_id, "failed", error=reason[:2000], message="failed")
    log.error("retrain run %s failed: %s", run_id, reason)


def result_dict(result: RetrainResult) -> dict[str, Any]:
    return asdict(result)
