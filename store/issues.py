"""Label-issue runs: the ranking a confident-learning run stores, and what the app and CLI read back.

`label_issue_runs` keeps every run's summary; `label_issues` holds the latest run's rows only (a
new run replaces them, in the same transaction that records the run).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from store.workspace import Workspace, now_iso

DECIDING_ACTIONS = ("accept", "correct", "auto_accept")


def save_run(ws: Workspace, rows: Iterable[Sequence[Any]], *, method: str, folds: int, n_products: int,
             n_flagged: int, thresholds: dict[str, float], duration_s: float | None = None) -> int:
    """Record a run and replace the stored ranking with `rows` (product_id, rank, given_label,
    suggested, given_prob, suggested_prob, margin, flagged); returns the run id."""
    rows = list(rows)

    def store(conn) -> int:
        cur = conn.execute("INSERT INTO label_issue_runs (created_at, method, folds, n_products, n_flagged, "
                           "thresholds, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (now_iso(), method, folds, n_products, n_flagged, json.dumps(thresholds), duration_s))
        run = int(cur.lastrowid)
        conn.execute("DELETE FROM label_issues")
        conn.executemany("INSERT INTO label_issues (run_id, product_id, rank, given_label, suggested, given_prob, "
                         "suggested_prob, margin, flagged) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(run, *r) for r in rows])
        return run

    return ws.write(store)


def latest_run(ws: Workspace) -> dict | None:
    """The latest run's summary (thresholds decoded), or None before the first."""
    rows = ws.query("SELECT * FROM label_issue_runs ORDER BY id DESC LIMIT 1")
    if not rows:
        return None
    rows[0]["thresholds"] = json.loads(rows[0]["thresholds"])
    return rows[0]


def ranked_issues(ws: Workspace) -> list[dict]:
    """The latest run's rows by rank, each with the product's title and `reviewed`: whether a
    reviewer accepted or corrected it (not undone) since."""
    marks = ",".join("?" * len(DECIDING_ACTIONS))
    return ws.query(
        "SELECT li.*, p.title, EXISTS (SELECT 1 FROM effective_decisions e WHERE e.product_id = li.product_id "
        f"AND e.action IN ({marks})) AS reviewed FROM label_issues li "
        "JOIN products p ON p.id = li.product_id ORDER BY li.rank", DECIDING_ACTIONS)
