"""Rollback: serve an earlier (or a held-back) 'ready' version again, in one step."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from labeler.model_versions import RetrainError, make_live
from labeler import training
from labeler.domain import Progress
from store import predictions, versions
from store.workspace import Workspace


def rollback(ws: Workspace, version_id: str | None = None, *, progress: Progress | None = None,
             who: str = "", why: str = "") -> dict[str, Any]:
    """Make `version_id` (default: the live version's parent) live again.

    Any 'ready' version can be named, newer ones too (to promote a version a gate held back).
    Products without a prediction from that version (imported since) are scored first, so the
    queue never falls back to unscored order. who/why go to `live_history`. Returns
    {'version', 'previous', 'rescored'}.
    """
    progress = progress or (lambda f, m: None)
    live = versions.live(ws)
    if version_id is None:
        if live is None:
            raise RetrainError(f"workspace {ws.root} has no live model version to roll back from; "
                               "run `python -m labeler train`")
        version_id = versions.get(ws, live)["parent"]
        if version_id is None:
            raise RetrainError(f"live version {live} has no parent to roll back to; name a version "
                               f"(known: {', '.join(versions.ids(ws))})")
    target = versions.get(ws, version_id)   # WorkspaceError listing the known ids if unknown
    if target["status"] != "ready":
        raise RetrainError(f"model version {version_id} is {target['status']} ({target['notes'] or 'no notes'}); "
                           "only a 'ready' version can serve")
    if version_id == live:
        return {"version": version_id, "previous": live, "rescored": 0}
    if not Path(target["path"]).exists():
        raise RetrainError(f"model files of {version_id} are missing ({target['path']}); pick another version")
    progress(0.05, f"loading {version_id}")
    bundle = training.live_bundle(ws, version_id)
    missing = predictions.unscored_ids(ws, version_id)
    rescored = 0
    if missing:
        progress(0.2, f"scoring {len(missing)} products {version_id} has not scored")
        rescored = training.score_products(ws, bundle, ids=missing)
    make_live(ws, version_id, reason=f"rollback from {live}" if live else "rollback", who=who, why=why)
    progress(1.0, f"{version_id} live")
    return {"version": version_id, "previous": live, "rescored": rescored}
