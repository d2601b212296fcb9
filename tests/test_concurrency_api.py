"""8 reviewers at once through the live app (gradio_client), 400 decisions in total.

All 400 are stored exactly once (plus double submits that must store nothing), and no product
is ever held by two reviewers at the same time: checked on each reviewer's holding intervals as
the clients saw them, and by a watcher polling the reservations table throughout the run.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

from gradio_client import Client

from app_server import decisions, running_app
from labeler.config import Settings
from labeler.review import needed_reviews
from app_workspace import app_workspace
from store.workspace import Workspace

REVIEWERS = [f"api-reviewer-{i}" for i in range(8)]
PER_REVIEWER = 50    # 8 x 50 = 400
# a share of products needs two reviewers, so reviewers also meet on the same products
SETTINGS = replace(Settings(), overlap_share=0.3, reservation_ttl_s=120)


def _session(url: str, reviewer: str, holdings: list, sent: list, errors: list) -> None:
    try:
        client = Client(url, verbose=False)
        cur = client.predict(reviewer, api_name="/set_reviewer")[0]
        for i in range(PER_REVIEWER):
            assert cur.get("product_id"), f"{reviewer}: queue ran dry after {i} decisions"
            got = time.monotonic()
            endpoint = "/skip" if i % 7 == 3 else "/pick_2" if i % 3 == 0 else "/accept"
            sent.append((reviewer, cur["product_id"], cur["key"], endpoint))
            released = time.monotonic()
            out = client.predict(cur, "", api_name=endpoint)
            holdings.append((cur["product_id"], reviewer, got, released))
            if i % 10 == 5:      # a double submit of the card just decided stores nothing
                again = client.predict(cur, "", api_name="/accept")
                assert again[0]["key"] == out[0]["key"], "a stale submit moved the reviewer on"
            cur = out[0]
    except BaseException as exc:  # surfaced in the main thread
        errors.append(f"{reviewer}: {exc!r}")


def _watch(root, stop: threading.Event, doubles: list, polls: list) -> None:
    ws = Workspace(root)
    try:
        while not stop.is_set():
            doubles.extend(ws.query("SELECT product_id, group_concat(reviewer) AS who FROM reservations "
                                    "WHERE expires_at > ? GROUP BY product_id HAVING count(*) > 1", (time.time(),)))
            polls.append(1)
            time.sleep(0.01)
    finally:
        ws.close()


def test_eight_reviewers_400_decisions_through_the_app(sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    holdings: list = []
    sent: list = []
    errors: list = []
    doubles: list = []
    polls: list = []
    with running_app(root, tmp_path, settings=replace(SETTINGS, workspace=root)) as (_, url):
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(root, stop, doubles, polls))
        threads = [threading.Thread(target=_session, args=(url, r, holdings, sent, errors)) for r in REVIEWERS]
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        stop.set()
        watcher.join()
    assert errors == []
    assert len(sent) == 400 and len(polls) > 50

    rows = decisions(root)
    assert len(rows) == 400                                   # exactly once each, double submits included
    by_key = Counter(r["idempotency_key"] for r in rows)
    assert all(by_key[key] == 1 for _, _, key, _ in sent)
    stored = {r["idempotency_key"]: r for r in rows}
    for reviewer, pid, key, endpoint in sent:
        row = stored[key]
        assert (row["reviewer"], row["product_id"]) == (reviewer, pid)
        assert row["action"] == {"/skip": "skip", "/pick_2": "correct", "/accept": "accept"}[endpoint]

    # nobody decided a product twice, nor one that already had all the reviews it needs
    deciders: dict[str, list[str]] = {}
    for r in rows:
        if r["action"] in ("accept", "correct"):
            deciders.setdefault(r["product_id"], []).append(r["reviewer"])
    for pid, who in deciders.items():
        assert len(who) == len(set(who)) <= needed_reviews(pid, SETTINGS.overlap_share, SETTINGS.seed)

    # no product held by two reviewers at once
    assert doubles == []
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for pid, reviewer, start, end in holdings:
        spans.setdefault(pid, []).append((start, end, reviewer))
    for pid, s in spans.items():
        for i, (a0, a1, ra) in enumerate(s):
            for b0, b1, rb in s[i + 1:]:
                assert ra == rb or a1 <= b0 or b1 <= a0, f"product {pid} held by {ra} and {rb} at once"
