"""What changed between a version and its parent: decisions since, training labels relabelled,
added or removed (from the labels snapshot each version keeps beside its model files)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from store import labels as label_store
from store.workspace import Workspace

LABELS_FILE = "training_labels.json"


def labels_snapshot(path: Path) -> dict[str, int] | None:
    """The training labels a version stored in folder `path` (None: it stored none)."""
    try:
        return {k: int(v) for k, v in json.loads((path / LABELS_FILE).read_text())["train"].items()}
    except (OSError, ValueError, KeyError):
        return None


def write_snapshot(directory: Path, train_labels: dict[str, int], val_ids: list[str]) -> None:
    """Keep the training labels beside a version's files (atomic replace), for the next diff."""
    tmp = directory / (LABELS_FILE + ".tmp")
    tmp.write_text(json.dumps({"train": train_labels, "validation": val_ids}))
    os.replace(tmp, directory / LABELS_FILE)


def changes(ws: Workspace, parent: dict | None, train_labels: dict[str, int], last_decision: int) -> dict[str, Any]:
    """Decisions since `parent` (up to `last_decision`) and how the training labels moved."""
    out: dict[str, Any] = {"parent": parent["id"] if parent else None}
    if parent is None:
        return out
    since = parent["config"].get("retrain", {}).get("last_decision_id")
    out["decisions_since_parent"] = label_store.decision_counts(ws, after_id=since, after_time=parent["created_at"],
                                                                upto_id=last_decision)
    before = labels_snapshot(Path(parent["path"]).parent)
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
