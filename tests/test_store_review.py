"""The review side's concurrency rules, held by the store itself (m065), on real SQLite files:
one holder per product is a constraint, and replay / cache invalidation follow explicit counters
bumped in each write's own transaction, not ids or rowids."""
from __future__ import annotations

import sqlite3
import time

import pytest

from labeler import browse, review, taxonomy
from store.workspace import Workspace, now_iso


def _catalog(ws: Workspace, n: int = 4) -> list[str]:
    """n products without a model (the queue offers them in import order), labels of category 0."""
    code = taxonomy.codes()[0]
    ids = [f"p{i}" for i in range(1, n + 1)]
    ws.write(lambda c: c.executemany(
        "INSERT INTO products (id, title, source_label, imported_at) VALUES (?, ?, ?, ?)",
        [(pid, f"product {pid}", code, now_iso()) for pid in ids]))
    return ids


def test_the_constraint_refuses_a_second_holder_even_past_the_application(workspace):
    ids = _catalog(workspace)
    card = review.next_card(workspace, "ana")
    assert card is not None and card.product_id == ids[0]
    # bob's reservation written straight to the table, past every check of labeler.review
    with pytest.raises(sqlite3.IntegrityError):
        workspace.write(lambda c: c.execute(
            "INSERT INTO reservations (product_id, reviewer, expires_at, tab) VALUES (?, 'bob', ?, 'b1')",
            (ids[0], time.time() + 600)))
    held = workspace.query("SELECT reviewer FROM reservations WHERE product_id = ?", (ids[0],))
    assert held == [{"reviewer": "ana"}]


def test_hold_takes_a_free_or_expired_product_and_never_a_held_one(workspace):
    from store import reservations
    ids = _catalog(workspace, 2)
    now = time.time()
    assert workspace.write(lambda c: reservations.hold(c, ids[0], "ana", now + 60, now=now))
    assert not workspace.write(lambda c: reservations.hold(c, ids[0], "bob", now + 60, now=now))
    assert reservations.holdings(workspace, now) == {ids[0]: "ana"}
    # ana's lease runs out: bob takes the product over in one statement
    later = now + 120
    assert workspace.write(lambda c: reservations.hold(c, ids[0], "bob", later + 60, now=later))
    assert reservations.holdings(workspace, later) == {ids[0]: "bob"}


def test_replay_follows_commit_order_not_decision_ids(workspace):
    """A decision committed after another but carrying a smaller id (an explicit id; another
    backend's sequences hand ids out before commit) is still replayed by the queue and browse."""
    ids = _catalog(workspace)
    code = taxonomy.codes()[0]
    assert review.upcoming(workspace, "bob", 4) == ids              # the log is replayed once here
    assert browse.index_for(workspace).browse(browse.BrowseQuery(status="decided")).total == 0

    def decided(pid: str, did: int) -> None:
        workspace.write(lambda c: c.execute(
            "INSERT INTO decisions (id, product_id, reviewer, action, category, idempotency_key, created_at) "
            "VALUES (?, ?, 'carl', 'correct', ?, ?, ?)", (did, pid, code, f"k{did}", now_iso())))

    decided(ids[1], 100)
    assert review.upcoming(workspace, "bob", 4) == [ids[0], ids[2], ids[3]]
    decided(ids[2], 50)                                               # commits later, smaller id
    assert review.upcoming(workspace, "bob", 4) == [ids[0], ids[3]]
    page = browse.index_for(workspace).browse(browse.BrowseQuery(status="decided"))
    assert sorted(r["product_id"] for r in page.rows) == [ids[1], ids[2]]
    card = review.next_card(workspace, "bob")
    assert card.product_id == ids[0] and card.total_remaining == 2


def test_cached_queue_follows_a_product_rewritten_in_place(workspace):
    """The ranked queue is cached; a product updated in place (same rowid, no new prediction)
    moves the 'catalog' counter, so the next ranking sees it."""
    ids = _catalog(workspace)
    other = taxonomy.codes()[1]
    assert review.ranking(workspace, "category", category=other).ids == []
    workspace.write(lambda c: c.execute("UPDATE products SET source_label = ? WHERE id = ?", (other, ids[3])))
    assert review.ranking(workspace, "category", category=other).ids == [ids[3]]


REVIEW_SIDE = ["review", "queue", "cards", "stats", "browse", "grid", "bulk", "app", "app_review", "app_warm",
               "app_stats", "app_tryit", "app_models", "app_browse", "app_grid", "views", "prefetch", "strategies",
               "tryit", "serving", "background", "richtext"]


def test_review_side_modules_hold_no_sql():
    """The store owns the review side's SQL: no statement text in these labeler modules."""
    import re
    from pathlib import Path
    sql = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|BEGIN|PRAGMA|WITH)\b|\.execute(many|script)?\(")
    root = Path(__file__).resolve().parent.parent / "labeler"
    found = [f"labeler/{name}.py:{n}: {line.strip()}" for name in REVIEW_SIDE if (root / f"{name}.py").exists()
             for n, line in enumerate((root / f"{name}.py").read_text(encoding="utf-8").splitlines(), 1)
             if sql.search(line)]
    assert not found, "\n".join(found)
