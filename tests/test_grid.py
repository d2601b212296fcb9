"""Grid validation workflow (labeler/grid.py) on a real workspace: pages, reservations, accept, undo."""
from __future__ import annotations

import html
import re
import shutil
import threading
import unicodedata
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
    with running_app(root, tmp_path) as (demo, url):
        # no loading overlay over the page while the next one comes: Gradio's default one (a
        # translucent cover with a running timer on every output) doubled the browser's native work
        # per page (Chrome profile of 12 pages: 193 -> 111 ms; Enter -> next page p50 293 -> 212 ms)
        grid_events = [d for d in demo.config["dependencies"] if str(d.get("api_name") or "").startswith("grid_")]
        assert len(grid_events) >= 6 and {d["show_progress"] for d in grid_events} == {"hidden"}
        client = Client(url, verbose=False)
        tiles, marked, note, _ = client.predict("alice", cat, "surest", api_name="/grid_open")
        assert tiles.count('class="grid-tile"') == n and f"{n} on this page" in tiles
        assert (marked["value"] if isinstance(marked, dict) else marked) == []
        ids = re.findall(r'data-product="([^"]+)"', tiles)
        shown, _, note, _ = client.predict("alice", ids[:2], api_name="/grid_accept")
        assert f"Accepted {n - 2}; 2 marked: choose their category" in note
        assert f'data-product-id="{ids[0]}"' in shown and "grid-fix" in shown    # the first marked one's card
        rows = decisions(root)
        assert sorted(r["product_id"] for r in rows) == sorted(ids[2:])
        assert {(r["via"], r["category"], r["reviewer"]) for r in rows} == {("grid", cat, "alice")}
        other = next(c for c in (10, 40, 50, 60) if c != cat)
        shown, _, note, _ = client.predict("alice", other, api_name="/grid_choose")
        assert f'data-product-id="{ids[1]}"' in shown                           # then the second one's
        last = decisions(root)[-1]
        assert (last["product_id"], last["action"], last["category"], last["reviewer"]) == (
            ids[0], "correct", other, "alice")
        shown, _, note, _ = client.predict("alice", api_name="/grid_to_queue")
        assert "went back to the one-at-a-time queue" in note and ids[1] not in shown
        n_rows = len(decisions(root))
        _, _, note, _ = client.predict("alice", api_name="/grid_undo")
        assert f"Undid {n - 2}" in note
        assert len(decisions(root)) == n_rows + n - 2


def test_marked_products_open_their_card_or_go_to_the_queue_and_never_come_back_on_the_grid(rws):
    """The Grid tab's handlers (no Gradio server): a page accepted but two marked; the first marked
    product's card is chosen by its top-5 rank, the second sent back to the queue, and the next
    page of the same category shows neither, though the queued one is undecided and among the surest."""
    from labeler.app_grid import GridHandlers
    from labeler.config import Settings
    cat = biggest_category(rws)
    h = GridHandlers(rws, Settings(), size=6)                # pages of 6: the category fills several
    out = h.open_page("alice", cat, "surest", None, None)
    st = out[-1]
    page_ids = st.page.product_ids
    first, second = page_ids[0], page_ids[1]                 # the surest two: they would lead the next page
    out = h.accept("alice", [first, second], st, None)
    st = out[-1]
    assert st.card is not None and st.card.product_id == first and st.fixing == (first, second)
    assert 'class="grid-fix"' in out[0] and f'data-product-id="{first}"' in out[0] and "data-pick=" in out[0]
    assert review.holdings(rws)[first] == review.holdings(rws)[second] == "alice"
    assert first not in review.upcoming(rws, "bob", rws.count_products())   # held for alice's card
    rank = next(r for r, v in enumerate(st.card.prediction.top5, start=1) if v.code != cat)
    wanted = st.card.prediction.top5[rank - 1].code
    st = h.pick(rank, "alice", st, None)[-1]
    row = rws.decisions(product_id=first)[-1]
    assert (row["reviewer"], row["action"], row["category"]) == ("alice", "correct", wanted)
    assert st.card.product_id == second
    out = h.to_queue("alice", st, None)
    st = out[-1]
    assert rws.decisions(product_id=second) == [] and second in review.upcoming(rws, "bob", rws.count_products())
    assert st.card is None and st.page is not None and st.page.category == cat      # the next page came
    assert not {first, second} & set(st.page.product_ids)
    assert not set(page_ids) & set(st.page.product_ids)
    st = h.accept("alice", [], st, None)[-1]                  # and the one after that
    assert st.page is None or second not in st.page.product_ids


def test_a_finished_category_leads_to_the_next_one_with_most_undecided(rws):
    from labeler.app_grid import GridHandlers
    from labeler.config import Settings
    live = rws.live_version()
    counts = Counter(r["top1"] for r in rws.query("SELECT top1 FROM predictions WHERE model_version = ?", (live,)))
    small = min(counts, key=lambda c: (counts[c], c))
    assert grid.next_categories(rws) == sorted(counts, key=lambda c: (-counts[c], c))
    assert grid.next_categories(rws, after=small)[-1] == small
    h = GridHandlers(rws, Settings(), size=6)
    st = h.open_page("alice", None, "surest", None, None)[-1]       # no category: the biggest first
    assert st.page.category == grid.next_categories(rws)[0] and counts[st.page.category] == max(counts.values())
    st = h.open_page("alice", small, "surest", None, None)[-1]
    while st.page is not None and st.page.category == small:
        out = h.accept("alice", [], st, None)
        st = out[-1]
    assert st.page is not None and st.page.category != small
    assert "Nothing left in " in out[2] and st.page.category == grid.next_categories(rws)[0]


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


def test_a_pages_thumbnails_made_side_by_side_keep_the_pages_order(rws, tmp_path):
    """thumbnail_uris: one per tile in the page's order (threads finish in any order), None for
    a missing or broken image, each 192 px at most though decoded at a reduced JPEG scale."""
    import base64
    import io
    from PIL import Image
    paths = [p["image_path"] for p in rws.products() if p["image_path"]][:5]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    asked = [paths[0], None, *paths[1:], str(broken), "/nope/missing.jpg"]
    shutil.rmtree(rws.cache_dir / "thumbs", ignore_errors=True)
    uris = grid.thumbnail_uris(rws, asked)
    assert uris == [grid.thumbnail_uri(rws, p) for p in asked]
    assert uris[1] is None and uris[-1] is None and uris[-2] is None
    assert len(set(u for u in uris if u)) == len(paths)           # one picture per product, none swapped
    for uri in uris:
        if uri:
            with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
                assert max(im.size) <= 192 and min(im.size) >= 64


def test_grid_note_shows_a_hostile_reviewer_name_as_text(rws):
    """The note names the reviewer who decided a page's product first: their typed name is text."""
    from labeler.app_grid import GridHandlers
    from labeler.config import Settings

    hostile = '<img src=x onerror="window.__xss=1">[eve](javascript:alert(1))'
    h = GridHandlers(rws, Settings(workspace=rws.root), size=6)
    cat = biggest_category(rws)
    st = h.open_page("alice", cat, "surest", None, None)[-1]
    taken = st.page.product_ids[0]
    rws.record_decision(taken, hostile, "correct", category=10 if cat != 10 else 40)
    note = h.accept("alice", [], st, None)[2]
    assert taken in note and "already decided by" in note
    assert "<img" not in note and "&lt;img src=x" in note


def test_a_marked_products_card_has_a_key_for_every_other_category(rws):
    """The reviewer has just said the page's category is wrong: the marked product's card leaves it
    out, so its 1-9 are the model's nine likeliest *other* categories in order (every digit key:
    the right one offered 87 % of the time against 77 % with five, experiments/fix_choices.py),
    and every category after them has a letter key (a-z but q), listed by name: any fix is one
    key on the 27-category taxonomy. The model's own top-1 is still the page's category; 9
    chooses the ninth, a letter its category."""
    from labeler import cards, taxonomy
    from labeler.app_grid import GridHandlers
    from labeler.config import Settings
    cat = biggest_category(rws)
    h = GridHandlers(rws, Settings(), size=6)
    st = h.open_page("alice", cat, "surest", None, None)[-1]
    marked, second = st.page.product_ids[:2]
    out = h.accept("alice", [marked, second], st, None)
    st = out[-1]
    row = rws.prediction(marked)
    classes = taxonomy.classes_of(rws, row["model_version"])
    ranked = sorted(zip(row["probs"], classes), key=lambda t: -t[0])
    want = [c for _, c in ranked if c != cat][:9]
    rest = [c for _, c in ranked if c != cat][9:]
    tax = taxonomy.of(rws)
    assert row["top1"] == cat and ranked[0][1] == cat
    assert [v.code for v in st.card.prediction.top5] == want and st.card.prediction.top1 == cat
    assert [float(p) for p, c in ranked if c == want[0]] == [st.card.prediction.top5[0].prob]
    others = st.card.prediction.others
    assert sorted(v.code for v in others) == sorted(rest) and len(rest) == len(tax) - 10 == 17
    names = [v.name for v in others]
    initials = [unicodedata.normalize("NFKD", n)[0].upper() for n in names]
    assert initials == sorted(initials) and len(set(initials)) > 5    # by name, 'É' among the E's
    assert len(want) == 9 and 'data-pick="9"' in out[0] and 'data-pick="27"' not in out[0]
    assert 'data-pick="1"' in out[0] and f'<span class="code">{tax.code(want[0])}</span>' in out[0]
    assert 'data-pick="26" data-letter="r"' in out[0] and 'data-letter="q"' not in out[0]     # q: back to the queue
    assert f'data-pick="10" data-letter="a" title="press a"><kbd>a</kbd> {html.escape(others[0].name)}' in out[0]
    assert "1-9 and a-r choose its category" in out[0] and "Likeliest other categories" in out[0]
    assert "Every other category, A-Z</span>" in out[0]                # all 26 shown: nothing more to search
    st = h.pick(9, "alice", st, None)[-1]
    last = rws.decisions(product_id=marked)[-1]
    assert (last["reviewer"], last["action"], last["category"]) == ("alice", "correct", want[8])
    letter = st.card.prediction.others[2]                              # c, on the second marked card
    assert st.card.product_id == second and cards.FIX_LETTERS[2] == "c"
    h.pick(9 + 3, "alice", st, None)
    last = rws.decisions(product_id=second)[-1]
    assert (last["reviewer"], last["action"], last["category"]) == ("alice", "correct", letter.code)


def test_entering_the_reviewers_name_opens_the_first_page(rws):
    """Enter in the name field (`start`) opens the page of the category with most undecided
    products, as the Review tab's first card comes; it changes nothing while a page is on screen
    or without a name."""
    from labeler.app_grid import GridHandlers
    from labeler.config import Settings
    h = GridHandlers(rws, Settings(), size=6)
    first = grid.next_categories(rws)[0]
    skip = {"__type__": "update"}
    assert h.start("  ", None, "surest", None, None) == (skip,) * GridHandlers.N_OUTPUTS
    st = h.start("alice", None, "surest", None, None)[-1]
    assert st.page is not None and st.page.category == first and len(st.page.items) == 6
    assert h.start("alice", None, "surest", st, None) == (skip,) * GridHandlers.N_OUTPUTS
    assert review.holdings(rws) == {pid: "alice" for pid in st.page.product_ids}
