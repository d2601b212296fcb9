"""8 reviewers at once, 400 decisions through the workflow: each stored exactly once, and no
product ever held by two reviewers at the same time (checked two ways: every reviewer's own
holding intervals, and a watcher polling the reservations table throughout)."""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import pytest

from labeler import review
from labeler.config import Settings
from review_workspace import copy_workspace
from store.workspace import Workspace

REVIEWERS = [f"reviewer-{i}" for i in range(8)]
PER_REVIEWER = 50   # 8 x 50 = 400
# Overlap makes a share of products need two reviewers, so reviewers also meet on the same products.
SETTINGS = replace(Settings(), overlap_share=0.3, reservation_ttl_s=120)


def _review_session(ws: Workspace, reviewer: str, holdings: list, stored: list, errors: list) -> None:
    try:
        for i in range(PER_REVIEWER):
            card = review.next_card(ws, reviewer, settings=SETTINGS)
            assert card is not None, f"{reviewer}: queue ran dry after {i} decisions"
            got = time.monotonic()
            if i % 7 == 3:
                action, category = "skip", None
            elif i % 3 == 0:
                action, category = "correct", card.product["source_label"]
            else:
                action, category = "accept", None
            released = time.monotonic()
            row = review.decide(ws, reviewer, card.product_id, action, category=category,
                                lead_time_ms=card.lead_time_ms(), idempotency_key=card.key)
            if i % 5 == 0:   # a retried submit (double click, network retry) must not store twice
                again = review.decide(ws, reviewer, card.product_id, action, category=category,
                                      idempotency_key=card.key)
                assert again["replayed"] and again["id"] == row["id"]
            holdings.append((card.product_id, reviewer, got, released))
            stored.append(row["idempotency_key"])
    except BaseException as exc:  # surfaced in the main thread
        errors.append(f"{reviewer}: {exc!r}")


def _watch(ws_root, stop: threading.Event, doubles: list, polls: list) -> None:
    ws = Workspace(ws_root)
    try:
        while not stop.is_set():
            rows = ws.query("SELECT product_id, group_concat(reviewer) AS who FROM reservations "
                            "WHERE expires_at > ? GROUP BY product_id HAVING count(*) > 1", (time.time(),))
            doubles.extend(rows)
            polls.append(1)
            time.sleep(0.002)
    finally:
        ws.close()


@pytest.mark.parametrize("shared", [True, False], ids=["one-workspace-object", "object-per-reviewer"])
def test_eight_reviewers_400_decisions(sample_dir, tmp_path, shared):
    root = copy_workspace(sample_dir, tmp_path / "ws")
    main = Workspace(root)
    workspaces = [main if shared else Workspace(root) for _ in REVIEWERS]
    holdings: list = []
    stored: list = []
    errors: list = []
    doubles: list = []
    polls: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(root, stop, doubles, polls))
    threads = [threading.Thread(target=_review_session, args=(ws, r, holdings, stored, errors))
               for ws, r in zip(workspaces, REVIEWERS)]
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    watcher.join()
    assert not errors, errors

    # every decision stored exactly once
    rows = main.decisions()
    assert len(stored) == len(rows) == 400
    assert sorted(stored) == sorted(r["idempotency_key"] for r in rows)
    assert Counter(r["reviewer"] for r in rows) == {r: PER_REVIEWER for r in REVIEWERS}
    assert main.scalar("SELECT count(*) FROM reservations") == 0

    # never a product held by two reviewers at once
    assert polls and not doubles, doubles[:5]
    by_product: dict[str, list] = {}
    for pid, reviewer, start, end in holdings:
        by_product.setdefault(pid, []).append((start, end, reviewer))
    for pid, spans in by_product.items():
        spans.sort()
        for (s1, e1, r1), (s2, e2, r2) in zip(spans, spans[1:]):
            assert e1 <= s2, f"product {pid} held by {r1} and {r2} at the same time"

    # no product decided (accept/correct) more often than the overlap rule allows, none twice by one reviewer
    decided = main.query("SELECT product_id, reviewer, count(*) AS n FROM effective_decisions "
                         "WHERE action IN ('accept', 'correct') GROUP BY product_id, reviewer")
    assert all(r["n"] == 1 for r in decided)
    per_product = Counter(r["product_id"] for r in decided)
    for pid, n in per_product.items():
        assert n <= review.needed_reviews(pid, SETTINGS.overlap_share, SETTINGS.seed)
    assert any(n == 2 for n in per_product.values())   # reviewers did meet on overlap products
    for ws in {id(w): w for w in workspaces}.values():
        ws.close()
