"""The one rule for a product's label, used by train, retrain, export, stats, label issues and the queue.

Each reviewer's latest effective accept/correct/auto_accept (not undone) is one vote; the category with most
votes wins; a tie goes to the category of the most recent of the tied votes. A product no
reviewer decided keeps its imported label (if any). With one or two reviewers this is "latest
decision wins"; a third reviewer settles a disagreement by majority.
"""
from __future__ import annotations

from typing import Any


def resolve_labels(ws: Any, *, reviewed_only: bool = False) -> dict[str, int]:
    """product id -> label by the rule above; reviewed_only: only products a reviewer decided."""
    votes: dict[str, dict[str, tuple[int, int]]] = {}
    for pid, reviewer, category, did in ws.conn.execute(
            "SELECT product_id, reviewer, category, id FROM effective_decisions "
            "WHERE action IN ('accept', 'correct', 'auto_accept') ORDER BY id"):
        votes.setdefault(pid, {})[reviewer] = (int(category), int(did))   # a reviewer's latest replaces theirs
    labels: dict[str, int] = {}
    for pid, source in ws.conn.execute("SELECT id, source_label FROM products ORDER BY rowid"):
        if pid in votes:
            labels[pid] = majority(votes[pid].values())
        elif source is not None and not reviewed_only:
            labels[pid] = int(source)
    return labels


def majority(votes: Any) -> int:
    """The winning category of (category, decision id) votes: most votes, then the latest."""
    tally: dict[int, list[int]] = {}
    for category, did in votes:
        tally.setdefault(category, []).append(did)
    return max(tally, key=lambda c: (len(tally[c]), max(tally[c])))
