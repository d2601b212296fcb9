"""The Grid screen in a real browser (Debian chromium through Playwright): keys and clicks.

Opens a page of one predicted category, marks two products with the arrow keys and Space and one
with a click, accepts the page with Enter, and checks in SQLite that every other product on the
page got a grid accept; the first marked product then opens its card, where the 2 key chooses
its second category, the second one's B key the second of the other categories listed by name,
the third one goes back to the queue with Q, and the next page shows none of them.
"""
from __future__ import annotations

from collections import Counter

from app_server import decisions, running_app
from review_workspace import copy_workspace
from test_browser_review import TIMEOUT_MS

from labeler import taxonomy
from store.workspace import Workspace


def test_grid_screen_marks_with_keys_and_clicks_and_accepts_with_enter(browser, sample_dir, tmp_path):
    root = copy_workspace(sample_dir, tmp_path / "ws")
    ws = Workspace(root)
    live = ws.live_version()
    cat, n = Counter(r["top1"] for r in ws.query("SELECT top1 FROM predictions WHERE model_version = ?",
                                                 (live,))).most_common(1)[0]
    ws.close()
    n = min(n, 24)
    with running_app(root, tmp_path) as (_, url):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=TIMEOUT_MS)
        page.get_by_role("tab", name="Grid").click()
        page.locator("#grid-reviewer input, #grid-reviewer textarea").first.fill("gina")
        page.locator("#grid-category input").first.click()
        page.keyboard.type(taxonomy.name(cat))                    # the filtered list, Enter picks it
        page.keyboard.press("Enter")
        page.locator("#grid-open").click()
        page.wait_for_function(f"() => document.querySelectorAll('#grid-page .grid-tile').length === {n}",
                               timeout=TIMEOUT_MS)
        page.wait_for_function(f"() => document.querySelectorAll('#grid-marked input').length === {n}",
                               timeout=TIMEOUT_MS)
        ids = page.eval_on_selector_all("#grid-page .grid-tile", "ts => ts.map(t => t.dataset.product)")
        page.locator("body").click(position={"x": 5, "y": 5})     # focus out of any field
        page.keyboard.press("ArrowRight")
        page.keyboard.press(" ")                                   # tile 2 marked
        page.keyboard.press("ArrowRight")
        page.keyboard.press(" ")                                   # tile 3 marked
        page.locator("#grid-page .grid-tile").nth(n - 1).click()   # the last tile marked by a click
        page.wait_for_function("() => document.querySelectorAll('#grid-page .grid-tile.grid-marked').length === 3",
                               timeout=TIMEOUT_MS)
        page.keyboard.press("Enter")
        page.wait_for_function("() => /Accepted \\d+/.test(document.querySelector('#grid-note')?.textContent || '')",
                               timeout=TIMEOUT_MS)
        rows = decisions(root)
        assert sorted(r["product_id"] for r in rows) == sorted(p for i, p in enumerate(ids) if i not in (1, 2, n - 1))
        assert {(r["action"], r["via"], r["category"], r["reviewer"]) for r in rows} == {("accept", "grid", cat, "gina")}

        card = page.locator("#grid-page .grid-fix .card[data-product-id]")
        card.wait_for(timeout=TIMEOUT_MS)
        assert card.get_attribute("data-product-id") == ids[1]     # the first marked product's usual card
        second = page.locator("#grid-page .grid-fix [data-pick='2'] .code").inner_text().strip()
        page.keyboard.press("2")
        page.wait_for_function(f"() => document.querySelector('#grid-page .grid-fix .card')?.dataset.productId === "
                               f"'{ids[2]}'", timeout=TIMEOUT_MS)
        lettered = page.locator("#grid-page .grid-fix [data-letter='b'] .code").inner_text().strip()
        page.keyboard.press("b")                                    # one of the others, by its letter
        page.wait_for_function(f"() => document.querySelector('#grid-page .grid-fix .card')?.dataset.productId === "
                               f"'{ids[n - 1]}'", timeout=TIMEOUT_MS)
        page.keyboard.press("q")                                    # the last one: back to the queue
        page.wait_for_function("() => document.querySelectorAll('#grid-page .grid-tile').length > 0 || "
                               "!!document.querySelector('#grid-page .grid-empty')", timeout=TIMEOUT_MS)
        again = page.eval_on_selector_all("#grid-page .grid-tile", "ts => ts.map(t => t.dataset.product)")
        assert not {ids[1], ids[2], ids[n - 1]} & set(again)
        fixed = [r for r in decisions(root) if r["product_id"] == ids[1]]
        assert [(r["action"], r["category"], r["reviewer"]) for r in fixed] == [("correct", int(second), "gina")]
        fixed = [r for r in decisions(root) if r["product_id"] == ids[2]]
        assert [(r["action"], r["category"], r["reviewer"]) for r in fixed] == [("correct", int(lettered), "gina")]
        assert not [r for r in decisions(root) if r["product_id"] == ids[n - 1]]


def test_grid_screen_opens_on_the_reviewers_name_and_takes_keys_at_once(browser, sample_dir, tmp_path):
    """The reviewer's name and Enter open the first page (no Open click), and the keyboard leaves
    the field: Enter at once accepts that page, with no click anywhere in between."""
    root = copy_workspace(sample_dir, tmp_path / "ws")
    with running_app(root, tmp_path) as (_, url):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=TIMEOUT_MS)
        page.get_by_role("tab", name="Grid").click()
        name = page.locator("#grid-reviewer input, #grid-reviewer textarea").first
        name.fill("gina")
        name.press("Enter")
        page.wait_for_function("() => document.querySelectorAll('#grid-page .grid-tile').length > 0",
                               timeout=TIMEOUT_MS)
        ids = page.eval_on_selector_all("#grid-page .grid-tile", "ts => ts.map(t => t.dataset.product)")
        page.wait_for_function(f"() => document.querySelectorAll('#grid-marked input').length === {len(ids)}",
                               timeout=TIMEOUT_MS)
        page.wait_for_timeout(200)                                  # the field's blur (grid.js)
        page.keyboard.press("Enter")
        page.wait_for_function("() => /Accepted \\d+/.test(document.querySelector('#grid-note')?.textContent || '')",
                               timeout=TIMEOUT_MS)
        rows = decisions(root)
        assert sorted(r["product_id"] for r in rows) == sorted(ids)
        assert {(r["action"], r["via"], r["reviewer"]) for r in rows} == {("accept", "grid", "gina")}
