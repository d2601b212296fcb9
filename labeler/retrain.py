"""Retraining from reviewer decisions, model-version comparison, rollback, background runs.

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
* **Failure.** Whatever fails, the live pointer is not moved (`labeler.training.train_version`
  moves it last). The run is recorded in `retrain_runs` with status 'failed' and the reason, a
  version already registered is marked 'failed', and `RetrainFailed` says why. A process killed
  mid-run cannot record anything: the next retrain (or `retrain_state`) finds its run still
  'running' with a dead process, marks it 'interrupted' and its half-built version 'failed'.
* **Switching.** Nothing to restart: `labeler.training.live_bundle(ws)` reads the live pointer on
  every call and the review queue (`labeler.review.ranking`) is keyed on it, so the next card
  after a switch is ranked and shown with the new version's predictions.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from labeler.config import Settings
from labeler import training
from labeler.domain import Progress, scaled
from store.workspace import Workspace, WorkspaceError, now_iso

log = logging.getLogger(__name__)

WORSE_BY = 0.01              # weighted-F1 drop called out as a warning
LABELS_FILE = "training_labels.json"


class RetrainError(WorkspaceError):
    """A retrain could not run or did not finish; the live version is unchanged."""


class RetrainBusy(RetrainError):
    """Another retrain of this workspace is running."""


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


# -- evaluation ---------------------------------------------------------------------------------
def stored_metrics(ws: Workspace, version: str, labels: dict[str, int]) -> tuple[dict[str, Any], bool]:
    """Scores of the predictions `version` stored for the products of `labels`, and whether any of
    them is in-sample (stored before out-of-fold scoring). ({}, False) when it stored none."""
    from labeler.training import OUT_OF_FOLD
    rows = ws.query("SELECT product_id, top1, voters, source FROM predictions WHERE model_version = ?", (version,))
    rows = [r for r in rows if r["product_id"] in labels]
    if not rows:
        return {}, False
    y = np.array([labels[r["product_id"]] for r in rows])
    fused = np.array([int(r["top1"]) for r in rows])
    text = np.array([int((json.loads(r["voters"]).get("text") or [[0]])[0][0]) for r in rows])
    present = np.unique(y)
    in_sample = any(r["source"] is None for r in rows)
    return ({"weighted_f1": round(float(f1_score(y, fused, average="weighted", labels=present, zero_division=0)), 4),
             "macro_f1": round(float(f1_score(y, fused, average="macro", labels=present, zero_division=0)), 4),
             "accuracy": round(float(accuracy_score(y, fused)), 4),
             "text_weighted_f1": round(float(f1_score(y, text, average="weighted", labels=present,
                                                      zero_division=0)), 4),
             "n": int(len(y)), "out_of_fold": int(sum(r["source"] == OUT_OF_FOLD for r in rows))}, in_sample)


def auto_accept_line(a: dict[str, Any]) -> str:
    """One line for the retrain result and the Models tab."""
    if a.get("threshold") is None:
        return (f"nothing auto-accepted: {a.get('n', 0)} labelled products cannot guarantee "
                f"{a.get('target', 0):.0%} precision (label more products)")
    return (f"fused top-1 >= {a['threshold']:.3f} · {a['coverage']:.0%} of labelled products · precision "
            f"{a['precision']:.1%} (>= {a['target']:.0%} guaranteed at {a['confidence']:.0%} confidence)")


# -- run bookkeeping ------------------------------------------------------------------------------
_ACTIVE_RUNS: set[tuple[str, int]] = set()     # (db path, run id) running in this process
_ACTIVE_LOCK = threading.Lock()


def _process_started_after(pid: int, iso: str) -> bool:
    """True when the process now holding `pid` started after `iso` (so it is not the run's)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
        started = btime + int(stat[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return False
    from datetime import datetime
    return started > datetime.fromisoformat(iso).timestamp() + 1.0


def _run_is_alive(ws: Workspace, run: dict) -> bool:
    if run["host"] != socket.gethostname():
        return True       # another machine's run: we cannot tell, trust the row
    pid = int(run["pid"])
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            return (str(ws.db_path), int(run["id"])) in _ACTIVE_RUNS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _process_started_after(pid, run["started_at"])


def _mark_interrupted(ws: Workspace) -> list[dict]:
    """Runs left 'running' by a dead process become 'interrupted'; their unfinished version 'failed'."""
    if ws.read_only:       # only a writer repairs the record; a reader shows it as stored
        return []
    stale = [r for r in ws.query("SELECT * FROM retrain_runs WHERE status = 'running'") if not _run_is_alive(ws, r)]
    for run in stale:
        reason = f"interrupted: process {run['pid']} ended during '{run['message'] or 'start'}'"

        def mark(conn: sqlite3.Connection, run: dict = run, reason: str = reason) -> None:
            conn.execute("UPDATE retrain_runs SET status = 'interrupted', finished_at = ?, error = ? "
                         "WHERE id = ? AND status = 'running'", (now_iso(), reason, run["id"]))
            live = conn.execute("SELECT value FROM settings WHERE key = 'live_model_version'").fetchone()
            if run["version"] and (live is None or live[0] != run["version"]):
                conn.execute("UPDATE model_versions SET status = 'failed', notes = ? WHERE id = ? AND status = 'ready'",
                             (f"retrain run {run['id']} {reason}", run["version"]))

        ws.write(mark)
        log.warning("retrain run %s was %s", run["id"], reason)
    return stale


def _begin_run(ws: Workspace, trigger: str) -> int:
    _mark_interrupted(ws)

    def begin(conn: sqlite3.Connection) -> int:
        busy = conn.execute("SELECT * FROM retrain_runs WHERE status = 'running' ORDER BY id DESC LIMIT 1").fetchone()
        if busy is not None:
            b = dict(busy)
            raise RetrainBusy(f"a retrain of this workspace is already running (run {b['id']}, started "
                              f"{b['started_at']} by {b['trigger']} on {b['host']} pid {b['pid']}, "
                              f"{b['progress']:.0%}: {b['message'] or 'starting'}); wait for it to finish")
        live = conn.execute("SELECT value FROM settings WHERE key = 'live_model_version'").fetchone()
        cur = conn.execute("INSERT INTO retrain_runs (started_at, trigger, pid, host, previous, message) "
                           "VALUES (?, ?, ?, ?, ?, 'starting')",
                           (now_iso(), trigger, os.getpid(), socket.gethostname(), live[0] if live else None))
        return int(cur.lastrowid)

    run_id = ws.write(begin)
    with _ACTIVE_LOCK:
        _ACTIVE_RUNS.add((str(ws.db_path), run_id))
    return run_id


def _end_run(ws: Workspace, run_id: int, status: str, **fields: Any) -> None:
    sets = {"status": status, "finished_at": now_iso(), **fields}
    try:
        ws.write(lambda c: c.execute(f"UPDATE retrain_runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                                     (*sets.values(), run_id)))
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_RUNS.discard((str(ws.db_path), run_id))


def _run_progress(ws: Workspace, run_id: int, outer: Progress | None) -> Progress:
    """The caller's callback, plus the run row (throttled) so other processes can follow it."""
    last = [0.0, ""]

    def report(fraction: float, message: str) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if outer is not None:
            outer(fraction, message)
        now = time.monotonic()
        if message == last[1] and now - last[0] < 0.25 and fraction < 1.0:
            return        # a new stage is always recorded; repeats of one stage at most 4 times a second
        last[0], last[1] = now, message
        try:
            ws.write(lambda c: c.execute("UPDATE retrain_runs SET progress = ?, message = ? WHERE id = ?",
                                         (round(fraction, 4), message[:200], run_id)))
        except sqlite3.Error as exc:   # progress display must never break the retrain
            log.warning("could not record retrain progress: %s", exc)

    return report


def _move_live(ws: Workspace, version: str, reason: str, who: str = "", why: str = "") -> str | None:
    """Point the live pointer at `version` and log who/why, in one transaction; returns the previous one."""
    try:
        return ws.move_live(version, reason=reason, who=who, why=why)
    except WorkspaceError as exc:
        raise RetrainError(str(exc)) from None


def _forget_bundles(ws: Workspace, keep: set[str]) -> None:
    """Drop cached bundles of this workspace's other versions (a long app session retrains often)."""
    cache = getattr(training, "_CACHE", None)
    if not isinstance(cache, dict):
        return
    root = str(ws.root.resolve())
    for key in [k for k in list(cache) if isinstance(k, tuple) and k[0] == root and k[1] not in keep]:
        cache.pop(key, None)


# -- what changed -------------------------------------------------------------------------------
def _labels_snapshot(path: Path) -> dict[str, int] | None:
    try:
        return {k: int(v) for k, v in json.loads((path / LABELS_FILE).read_text())["train"].items()}
    except (OSError, ValueError, KeyError):
        return None


def _changes(ws: Workspace, parent: dict | None, train_labels: dict[str, int], last_decision: int) -> dict[str, Any]:
    out: dict[str, Any] = {"parent": parent["id"] if parent else None}
    if parent is None:
        return out
    since = parent["config"].get("retrain", {}).get("last_decision_id")
    if since is not None:
        rows = ws.query("SELECT action, count(*) AS n FROM decisions WHERE id > ? AND id <= ? GROUP BY action",
                        (since, last_decision))
    else:
        rows = ws.query("SELECT action, count(*) AS n FROM decisions WHERE created_at > ? AND id <= ? "
                        "GROUP BY action", (parent["created_at"], last_decision))
    out["decisions_since_parent"] = {r["action"]: r["n"] for r in rows}
    before = _labels_snapshot(Path(parent["path"]).parent)
    if before is not None:
        common = before.keys() & train_labels.keys()
        out["relabelled"] = sum(1 for k in common if before[k] != train_labels[k])
        out["added"] = len(train_labels.keys() - before.keys())
        out["removed"] = len(before.keys() - train_labels.keys())
    out["n_train_parent"] = parent.get("n_train")
    out["n_train"] = len(train_labels)
    return out


def describe_changes(changes: dict[str, Any]) -> str:
    """One line for `versions` and the app's stats tab."""
    if not changes or changes.get("parent") is None:
        return "first version (no parent)"
    parts = []
    dec = changes.get("decisions_since_parent")
    if dec is not None:
        total = sum(dec.values())
        parts.append(f"{total} decisions since {changes['parent']}" +
                     (f" ({', '.join(f'{n} {a}' for a, n in sorted(dec.items()))})" if total else ""))
    if "relabelled" in changes:
        parts.append(f"{changes['relabelled']} training labels changed, {changes['added']} products added, "
                     f"{changes['removed']} removed")
    elif changes.get("n_train_parent") is not None:
        parts.append(f"training set {changes['n_train_parent']} -> {changes.get('n_train', '?')} products")
    return "; ".join(parts) or f"retrained from {changes['parent']}"


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
    last_decision = int(ws.scalar("SELECT coalesce(max(id), 0) FROM decisions"))
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


def _compare(ws: Workspace, version: str, previous: str | None, parent_row: dict | None,
             labels: dict[str, int], report: Progress) -> _Comparison:
    """Both versions' stored predictions on the products labelled now (module docstring)."""
    report(0.86, f"comparing {version} with {previous or 'nothing'} on {len(labels)} labelled products")
    common = labels
    if previous:
        scored = {r["product_id"] for r in ws.query("SELECT product_id FROM predictions WHERE model_version = ?",
                                                      (previous,))}
        common = {k: v for k, v in labels.items() if k in scored}
    metrics, _ = stored_metrics(ws, version, common)
    prev_metrics: dict[str, Any] = {}
    in_sample = False
    if previous and common:
        prev_metrics, in_sample = stored_metrics(ws, previous, common)
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
    _write_snapshot(Path(row["path"]).parent, ts.train, [])
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
    ws.write(lambda c: c.execute(
        "UPDATE model_versions SET metrics = ?, config = ?, duration_s = ?, notes = ? WHERE id = ?",
        (json.dumps(metrics), json.dumps(config), duration, summary, row["id"])))


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
    run_id = _begin_run(ws, trigger)
    report = _run_progress(ws, run_id, progress)
    previous = ws.live_version()
    version: str | None = None
    registered = False
    try:
        report(0.01, "reading labels and decisions")
        ts = _training_set(ws, settings)
        version = ws.new_version_id()
        ws.write(lambda c: c.execute("UPDATE retrain_runs SET version = ? WHERE id = ?", (version, run_id)))
        parent_row = ws.model_version(previous) if previous else None
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
            _move_live(ws, version, f"retrain run {run_id}", who, why)
            _forget_bundles(ws, keep={version})
        state = "live" if go_live else "ready, not live"
        _end_run(ws, run_id, "succeeded", version=version, went_live=int(go_live), progress=1.0,
                 message=f"{version} {state}")
        if progress is not None:
            progress(1.0, f"{version} {state}")
        return RetrainResult(
            run_id=run_id, version=version, previous=previous, went_live=go_live, live=ws.live_version(),
            metrics=cmp.metrics, previous_metrics=cmp.previous_metrics, delta_weighted_f1=cmp.delta,
            previous_in_sample=cmp.previous_in_sample, n_train=int(row["n_train"]), n_validation=cmp.n,
            n_decisions=int(row["n_decisions"] or 0), n_conflicts=ts.n_conflicts, changes=changes,
            duration_s=duration, path=row["path"], warning=warning,
            auto_accept=row["metrics"].get("auto_accept", {}))
    except BaseException as exc:
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else _reason(exc)
        _fail(ws, run_id, version if registered or _version_exists(ws, version) else None, reason)
        if not isinstance(exc, Exception):
            raise
        live = ws.live_version()
        raise RetrainFailed(f"retrain failed: {reason}; {live or 'no version'} is still live (run {run_id})",
                            run_id, version, live) from exc


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return text if isinstance(exc, WorkspaceError) else f"{type(exc).__name__}: {text}"


def _version_exists(ws: Workspace, version: str | None) -> bool:
    return version is not None and ws.scalar("SELECT 1 FROM model_versions WHERE id = ?", (version,)) is not None


def _fail(ws: Workspace, run_id: int, version: str | None, reason: str) -> None:
    try:
        if version is not None and ws.live_version() != version:
            ws.write(lambda c: c.execute("UPDATE model_versions SET status = 'failed', notes = ? WHERE id = ?",
                                         (f"retrain run {run_id} failed: {reason}", version)))
    finally:
        _end_run(ws, run_id, "failed", error=reason[:2000], message="failed")
    log.error("retrain run %s failed: %s", run_id, reason)


def _write_snapshot(directory: Path, train_labels: dict[str, int], val_ids: list[str]) -> None:
    tmp = directory / (LABELS_FILE + ".tmp")
    tmp.write_text(json.dumps({"train": train_labels, "validation": val_ids}))
    os.replace(tmp, directory / LABELS_FILE)


# -- rollback -----------------------------------------------------------------------------------
def rollback(ws: Workspace, version_id: str | None = None, *, progress: Progress | None = None,
             who: str = "", why: str = "") -> dict[str, Any]:
    """Make `version_id` (default: the live version's parent) live again.

    Any 'ready' version can be named, newer ones too (to promote a version a gate held back).
    Products without a prediction from that version (imported since) are scored first, so the
    queue never falls back to unscored order. who/why go to `live_history`. Returns
    {'version', 'previous', 'rescored'}.
    """
    progress = progress or (lambda f, m: None)
    live = ws.live_version()
    if version_id is None:
        if live is None:
            raise RetrainError(f"workspace {ws.root} has no live model version to roll back from; "
                               "run `python -m labeler train`")
        version_id = ws.model_version(live)["parent"]
        if version_id is None:
            raise RetrainError(f"live version {live} has no parent to roll back to; name a version "
                               f"(known: {', '.join(v['id'] for v in ws.model_versions())})")
    target = ws.model_version(version_id)   # WorkspaceError listing the known ids if unknown
    if target["status"] != "ready":
        raise RetrainError(f"model version {version_id} is {target['status']} ({target['notes'] or 'no notes'}); "
                           "only a 'ready' version can serve")
    if version_id == live:
        return {"version": version_id, "previous": live, "rescored": 0}
    if not Path(target["path"]).exists():
        raise RetrainError(f"model files of {version_id} are missing ({target['path']}); pick another version")
    progress(0.05, f"loading {version_id}")
    bundle = training.live_bundle(ws, version_id)
    missing = [r["id"] for r in ws.query(
        "SELECT p.id FROM products p LEFT JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = ? "
        "WHERE pr.product_id IS NULL ORDER BY p.rowid", (version_id,))]
    rescored = 0
    if missing:
        progress(0.2, f"scoring {len(missing)} products {version_id} has not scored")
        rescored = training.score_products(ws, bundle, ids=missing)
    _move_live(ws, version_id, f"rollback from {live}" if live else "rollback", who, why)
    _forget_bundles(ws, keep={version_id})
    progress(1.0, f"{version_id} live")
    return {"version": version_id, "previous": live, "rescored": rescored}


# -- listing ------------------------------------------------------------------------------------
def versions_table(ws: Workspace) -> list[dict[str, Any]]:
    """One dict per version, oldest first: live flag, status, validation and CV metrics, changes."""
    out = []
    for v in ws.model_versions():
        retrain_cfg = v["config"].get("retrain", {})
        val = v["metrics"].get("validation", {})
        comp = v["metrics"].get("compared_to", {})
        out.append({
            "id": v["id"], "live": v["live"], "status": v["status"], "created_at": v["created_at"],
            "parent": v["parent"], "n_train": v["n_train"], "n_decisions": v["n_decisions"],
            "duration_s": v["duration_s"], "validation": val,
            "cv": {k: v["metrics"][k] for k in ("text_weighted_f1", "text_macro_f1", "text_accuracy",
                                                 "fused_cv_weighted_f1", "fused_cv_macro_f1", "fused_cv_accuracy")
                   if k in v["metrics"]},
            "auto_accept": auto_accept_line(v["metrics"]["auto_accept"]) if "auto_accept" in v["metrics"] else None,
            "conformal": v["metrics"].get("conformal"),
            "compared_to": comp, "changes": describe_changes(retrain_cfg.get("changes", {}))
            if retrain_cfg else ("trained by `train` on all labels" if v["parent"] is None else
                                 f"trained by `train` after {v['parent']}"),
            "notes": v["notes"]})
    return out


def retrain_state(ws: Workspace, limit: int = 5) -> list[dict]:
    """Latest retrain runs, newest first (stale 'running' rows are marked interrupted first)."""
    _mark_interrupted(ws)
    return ws.query("SELECT * FROM retrain_runs ORDER BY id DESC LIMIT ?", (int(limit),))


# -- background runner --------------------------------------------------------------------------
@dataclass
class RetrainHandle:
    """A retrain running in a background thread of this process. Poll it; never blocks the UI.

    >>> handle = start_background_retrain(ws)          # returns at once
    >>> handle.status()       # {'state': 'running', 'fraction': 0.42, 'message': 'fitting text model ...',
    ...                       #  'elapsed_s': 12.3, 'version': None, 'error': None}
    >>> handle.done, handle.result, handle.error       # RetrainResult / message once finished
    >>> handle.wait(timeout=600)                       # blocks (tests, CLI); returns RetrainResult or None
    """

    workspace: Path
    started_at: float = field(default_factory=time.time)
    fraction: float = 0.0
    message: str = "starting"
    result: RetrainResult | None = None
    error: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self.fraction, self.message = float(fraction), message

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        with self._lock:
            state = "running" if not self.done else ("failed" if self.error else "succeeded")
            return {"state": state, "fraction": round(self.fraction, 3), "message": self.message,
                    "elapsed_s": round(time.time() - self.started_at, 1),
                    "version": self.result.version if self.result else None,
                    "went_live": self.result.went_live if self.result else None, "error": self.error}

    def wait(self, timeout: float | None = None) -> RetrainResult | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result


_HANDLES: dict[str, RetrainHandle] = {}
_HANDLES_LOCK = threading.Lock()


def current_retrain(ws: Workspace) -> RetrainHandle | None:
    """The handle of this workspace's latest background retrain in this process (running or not)."""
    with _HANDLES_LOCK:
        return _HANDLES.get(str(ws.root.resolve()))


def start_background_retrain(ws: Workspace, *, on_done: Callable[[RetrainHandle], None] | None = None,
                             **retrain_kwargs: Any) -> RetrainHandle:
    """Start `retrain(ws, ...)` in a daemon thread and return its handle at once.

    One at a time per workspace: while one is running, the running handle is returned (check
    `handle.started_at` or `handle.status()`), so a double-clicked Retrain button starts one run.
    A retrain started by another process (the CLI) makes this one fail fast with RetrainBusy's
    message in `handle.error`. Reviewers keep working meanwhile; when it finishes the live
    pointer moves and the next `next_card` uses the new version's predictions. `on_done(handle)`
    is called in the worker thread when it ends (success or failure).
    For the app: poll `handle.status()` (e.g. with a gr.Timer) to drive a progress bar.
    """
    key = str(ws.root.resolve())
    with _HANDLES_LOCK:
        running = _HANDLES.get(key)
        if running is not None and not running.done:
            return running
        handle = RetrainHandle(workspace=ws.root)
        retrain_kwargs.setdefault("trigger", "app")

        def work() -> None:
            try:
                handle.result = retrain(ws, progress=handle._progress, **retrain_kwargs)
                handle._progress(1.0, f"{handle.result.version} " +
                                 ("live" if handle.result.went_live else "ready, not live"))
            except Exception as exc:  # the error is the handle's to report; the app shows it
                handle.error = str(exc)
                handle._progress(handle.fraction, "failed")
                log.exception("background retrain failed")
            finally:
                ws.close()      # this thread's connection only
                if on_done is not None:
                    on_done(handle)

        handle._thread = threading.Thread(target=work, name=f"retrain:{ws.root.name}", daemon=True)
        _HANDLES[key] = handle
        handle._thread.start()
    return handle


def result_dict(result: RetrainResult) -> dict[str, Any]:
    return asdict(result)
