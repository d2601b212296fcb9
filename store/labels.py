"""The one rule for a product's label, used by train, retrain, export, stats, label issues and the queue.

Each reviewer's latest effective accept/correct/auto_accept (not undone) is one vote; the category with most
votes wins; a tie goes to the category of the most recent of the tied votes. A product no
reviewer decided keeps its imported label (if any). With one or two reviewers this is "latest
decision wins"; a third reviewer settles a disagreement by majority. An admin's ruling (a decision
with via 'adjudication', labeler/adjudication.py) is final: its latest in effect is the label.
"""
from __future__ import annotations

from typing import Any


def resolve_labels(ws: Any, *, reviewed_only: bool = False, ids: list[str] | None = None) -> dict[str, int]:
    """product id -> label by the rule above; reviewed_only: only products a reviewer decided;
    ids: only these products (a few, e.g. a guide's examples)."""
    votes: dict[str, dict[str, tuple[int, int]]] = {}
    ruled: dict[str, int] = {}
    only = "" if ids is None else f" AND product_id IN ({','.join('?' * len(ids))})"
    params = [] if ids is None else [str(i) for i in ids]
    for pid, reviewer, category, did, via in ws.conn.execute(
            "SELECT product_id, reviewer, category, id, via FROM effective_decisions "
            "WHERE action IN ('accept', 'correct', 'auto_accept')" + only + " ORDER BY id", params):
        if via == "adjudication":
            ruled[pid] = int(category)                                     # the latest ruling is final
        else:
            votes.setdefault(pid, {})[reviewer] = (int(category), int(did))   # a reviewer's latest replaces theirs
    labels: dict[str, int] = {}
    for pid, source in ws.conn.execute("SELECT id, source_label FROM products WHERE 1" + only.replace("product_id", "id")
                                       + " ORDER BY rowid", params):
        if pid in ruled:
            labels[pid] = ruled[pid]
        elif pid in votes:
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


# -- reads of decisions the label rule and the exports need -----------------------------------
def last_decision_id(ws: Any) -> int:
    """The newest decision's id (0 when none): labels read now include every decision up to it."""
    return int(ws.scalar("SELECT coalesce(max(id), 0) FROM decisions"))


def decision_counts(ws: Any, *, after_id: int | None = None, after_time: str | None = None,
                    upto_id: int) -> dict[str, int]:
    """action -> number of decisions with id <= upto_id made after `after_id` (or, for a version
    that did not record it, after the time `after_time`)."""
    if after_id is not None:
        rows = ws.conn.execute("SELECT action, count(*) FROM decisions WHERE id > ? AND id <= ? GROUP BY action",
                               (after_id, upto_id))
    else:
        rows = ws.conn.execute("SELECT action, count(*) FROM decisions WHERE created_at > ? AND id <= ? "
                               "GROUP BY action", (after_time or "", upto_id))
    return {action: int(n) for action, n in rows}


def count_decisions_on(ws: Any, product_ids: list[str]) -> int:
    """How many decisions (any action) name one of these products."""
    if not product_ids:
        return 0
    return int(ws.scalar(f"SELECT count(*) FROM decisions WHERE product_id IN ({','.join('?' * len(product_ids))})",
                         product_ids))


def latest_label_decisions(ws: Any) -> list[dict]:
    """Each reviewer's latest effective label decision (accept/correct/auto_accept) per product,
    oldest first: the votes of the label rule, as rows of `effective_decisions`."""
    return ws.query("SELECT e.* FROM effective_decisions e WHERE e.action IN ('accept', 'correct', 'auto_accept') "
                    "AND e.id = (SELECT max(f.id) FROM effective_decisions f WHERE f.product_id = e.product_id "
                    "AND f.reviewer = e.reviewer AND f.action IN ('accept', 'correct', 'auto_accept')) ORDER BY e.id")


def label_table(ws: Any) -> dict[str, tuple[int | None, bool]]:
    """product id -> (label, reviewed) from the `current_labels` view."""
    return {pid: (category, bool(reviewed)) for pid, category, reviewed in ws.conn.execute(
        "SELECT product_id, category, reviewed FROM current_labels")}


def decision_log(ws: Any) -> dict[str, list[dict]]:
    """product id -> its decisions except undos, oldest first (id, reviewer, action, category,
    model_version, comment, created_at, batch_id, via, undone)."""
    undone = {r[0] for r in ws.conn.execute("SELECT undoes FROM decisions WHERE action = 'undo'")}
    out: dict[str, list[dict]] = {}
    for d in ws.query("SELECT id, product_id, reviewer, action, category, model_version, comment, created_at, "
                      "batch_id, via FROM decisions WHERE action != 'undo' ORDER BY id"):
        out.setdefault(d.pop("product_id"), []).append({**d, "undone": d["id"] in undone})
    return out
