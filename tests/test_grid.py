"""Grid validation workflow (labeler/grid.py) on a real workspace: pages, reservations, accept, undo."""
from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import pytest

from review_workspace import copy_workspace

from labeler import grid, review
from store.workspace import Workspace


@pytest.fixture
def rws(sample_dir, tmp_path):
    ws = Workspace(copy_workspace(sample_dir, tmp_path / "ws"))
    yield ws
    ws.close()


def biggest_category(ws: Workspace) -> int:
    live = ws.live_version()
    return Counter(r["top1"] for r in ws.query("SELECT top1 FROM predictions WHERE model_version = ?",
                                               (live,))).most_common(1)[0][0]


def test_page_is_the_categorys_surest_undecided_products_reserved_for_the_reviewer(rws):
    cat = biggest_category(rws)
    page = grid.open_page(rws, "alice", cat, size=8)
    assert len(page.items) == 8
    for item in page.items:
        pred = rws.prediction(item.product_id)
        assert pred["top1"] == cat and item.prob == pred["top1_prob"]
    probs = [i.prob for i in page.items]
    assert probs == sorted(probs, reverse=True)
    every = sorted((r["top1_prob"] for r in rws.query(
        "SELECT top1_prob FROM predictions WHERE model_version = ? AND top1 = ?", (rws.live_version(), cat))),
        reverse=True)
    assert probs == every[:8] and page.remaining == len(every)
    assert review.holdings(rws) == {pid: "alice" for pid in page.product_ids}
    unsure = grid.open_page(rws, "bob", cat, size=4, order="least_sure")
    assert len(every) >= 12 and [i.prob for i in unsure.items] == sorted(every)[:4]
    assert not set(unsure.product_ids) & set(page.product_ids)


def test_accept_page_records_ordinary_accepts_and_releases_the_marked(rws):
    cat = biggest_category(rws)
    page = grid.open_page(rws, "alice", cat, size=10)
    marked = page.product_ids[3:5]
    res = grid.accept_page(rws, "alice", page, marked)
    assert res.accepted == [p for p in page.product_ids if p not in marked] and res.marked == marked
    rows = rws.query("SELECT * FROM decisions ORDER BY id")
    assert [(r["product_id"], r["action"], r["category"], r["via"], r["batch_id"], r["reviewer"]) for r in rows] == [
        (p, "accept", cat, "grid", res.batch_id, "alice") for p in res.accepted]
    assert review.holdings(rws) == {}
    labels = rws.current_labels(reviewed_only=True)
    assert {p: labels[p] for p in res.accepted} == {p: cat for p in res.accepted}
    queue = review.upcoming(rws, "bob", rws.count_products())
    assert not set(queue) & set(res.accepted) and set(marked) <= set(queue)
    # a retried submit of the same page writes nothing twice
    again = grid.accept_page(rws, "alice", page, marked)
    assert again.replayed and rws.scalar("SELECT count(*) FROM decisions") == len(res.accepted)
    # the next page does not show them again
    nxt = grid.open_page(rws, "alice", cat, size=10)
    assert not set(nxt.product_ids) & set(res.accepted)


def test_expired_or_already_decided_products_are_named_and_left_alone(rws):
    cat = biggest_category(rws)
    page = grid.open_page(rws, "alice", cat, size=6)
    late, taken = page.product_ids[0], page.product_ids[1]
    rws.write(lambda c: c.execute("UPDATE reservations SET expires_at = 0 WHERE product_id = ?", (late,)))
    rws.record_decision(taken, "bob", "correct", category=10 if cat != 10 else 40)
    res = grid.accept_page(rws, "alice", page)
    assert res.expired == [late] and res.decided_by_others == {taken: "bob"}
    assert res.accepted == page.product_ids[2:]
    problems = res.problems()
    assert len(problems) == 2 and late in problems[0] and "expired" in problems[0] and "bob" in problems[1]
    assert rws.current_labels(reviewed_only=True)[taken] != cat


def test_undo_page_takes_the_whole_page_back(rws):
    cat = biggest_category(rws)
    before = rws.current_labels()
    page = grid.open_page(rws, "alice", cat, size=5)
    res = grid.accept_page(rws, "alice", page)
    with pytest.raises(review.ReviewError, match="accepted by 'alice'"):
        grid.undo_page(rws, "bob", res.batch_id)
    out = grid.undo_page(rws, "alice", res.batch_id)
    assert out.undone == 5 and rws.current_labels() == before
    assert set(page.product_ids) <= set(review.upcoming(rws, "bob", rws.count_products()))


def test_concurrent_pages_never_share_a_product(rws):
    cat = biggest_category(rws)
    pages: dict[str, grid.GridPage] = {}

    def open_one(name: str) -> None:
        pages[name] = grid.open_page(rws, name, cat, size=5)

    threads = [threading.Thread(target=open_one, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shown = [pid for p in pages.values() if p is not None for pid in p.product_ids]
    assert len(shown) == len(set(shown)) and len(shown) >= 5


def test_bad_page_requests_say_what_to_fix(rws):
    with pytest.raises(review.ReviewError, match="not one of the 27"):
        grid.open_page(rws, "alice", 1234)
    with pytest.raises(review.ReviewError, match="grid order"):
        grid.open_page(rws, "alice", biggest_category(rws), order="random")
    page = grid.open_page(rws, "alice", biggest_category(rws), size=3)
    with pytest.raises(review.ReviewError, match="not on page"):
        grid.accept_page(rws, "alice", page, ["nope"])
    with pytest.raises(review.ReviewError, match="opened by 'alice'"):
        grid.accept_page(rws, "bob", page)


def test_grid_tab_through_the_api(sample_dir, tmp_path):
    from gradio_client import Client

    from app_server import decisions, running_app
    root = copy_workspace(sample_dir, tmp_path / "app-ws")
    ws = Workspace(root)
    cat = biggest_category(ws)
    n = min(24, ws.scalar("SELECT count(*) FROM predictions WHERE top1 = ?", (cat,)))
    ws.close()
    with running_app(root, tmp_path) as (_, url):
        client = Client(url, verbose=False)
        tiles, marked, note = client.predict("alice", cat, "surest", api_name="/grid_open")
        assert tiles.count('class="grid-tile"') == n and f"{n} on this page" in tiles
        assert (marked["value"] if isinstance(marked, dict) else marked) == []
        ids = re.findall(r'data-product="([^"]+)"', tiles)
        _, _, note = client.predict("alice", ids[:2], "surest", api_name="/grid_accept")
        assert f"Accepted {n - 2}; 2 marked" in note
        rows = decisions(root)
        assert sorted(r["product_id"] for r in rows) == sorted(ids[2:])
        assert {(r["via"], r["category"], r["reviewer"]) for r in rows} == {("grid", cat, "alice")}
        _, _, note = client.predict("alice", api_name="/grid_undo")
        assert f"Undid {n - 2}" in note
        assert len(decisions(root)) == 2 * (n - 2)


def test_thumbnails_are_made_once_per_image_and_cached_in_the_workspace(rws):
    from PIL import Image
    path = next(p["image_path"] for p in rws.products() if p["image_path"])
    first = grid.thumbnail(rws, path)
    assert first is not None and Path(first).parent == rws.cache_dir / "thumbs"
    with Image.open(first) as im:
        assert max(im.size) <= 192
    stamp = Path(first).stat().st_mtime_ns
    assert grid.thumbnail(rws, path) == first and Path(first).stat().st_mtime_ns == stamp
    assert grid.thumbnail_uri(rws, path).startswith("data:image/jpeg;base64,")
    assert grid.thumbnail(rws, None) is None and grid.thumbnail(rws, "/nope/missing.jpg") is None
