"""A workspace's model versions: the one way to make one live, and the table that compares them.

`make_live` is what train, retrain, rollback and the app call: `store.versions.set_live` (the
pointer and its `live_history` row, with who and why, in one transaction), then the cached
bundles of the versions no longer serving are dropped. Nothing to restart: the app and the
review queue read the live pointer on every call.
"""
from __future__ import annotations

from typing import Any

from labeler.changes import describe_changes
from store import versions
from store.workspace import Workspace, WorkspaceError


class RetrainError(WorkspaceError):
    """A retrain or a change of live version could not run or did not finish; the live version is unchanged."""


def make_live(ws: Workspace, version: str, *, reason: str, who: str = "", why: str = "") -> str | None:
    """Serve `version` ('ready') from now on, recorded with who/why; returns the version live before."""
    try:
        previous = versions.set_live(ws, version, who, why, reason=reason)
    except WorkspaceError as exc:
        raise RetrainError(str(exc)) from None
    forget_bundles(ws, keep={version})
    return previous


def forget_bundles(ws: Workspace, keep: set[str]) -> None:
    """Drop cached bundles of this workspace's other versions (a long app session retrains often)."""
    from labeler import training
    training.forget_bundles(ws, keep=keep)


def auto_accept_line(a: dict[str, Any]) -> str:
    """One line for the retrain result and the Models tab."""
    if a.get("threshold") is None:
        return (f"nothing auto-accepted: {a.get('n', 0)} labelled products cannot guarantee "
                f"{a.get('target', 0):.0%} precision (label more products)")
    return (f"fused top-1 >= {a['threshold']:.3f} · {a['coverage']:.0%} of labelled products · precision "
            f"{a['precision']:.1%} (>= {a['target']:.0%} guaranteed at {a['confidence']:.0%} confidence)")


def versions_table(ws: Workspace) -> list[dict[str, Any]]:
    """One dict per version, oldest first: live flag, status, validation and CV metrics, changes."""
    out = []
    for v in versions.all_versions(ws):
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
