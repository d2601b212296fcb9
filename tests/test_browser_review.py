"""The review screen in a real browser (Debian chromium through Playwright): keyboard only.

Opens the page, types a name, sees a product with its top-5 and the heatmap area, decides with
Enter, a digit, S and the category search, checks that keys typed in a text field do nothing,
undoes with U, reloads and resumes on the same product, and checks every decision in SQLite.
"""
from __future__ import annotations

import json
from pathlib import Path

from app_server import add_hostile_product, decisions, running_app
from app_workspace import app_workspace

TIMEOUT_MS = 60_000   # generous: the 2-core machine is shared
HEAT_TIMEOUT_MS = 180_000   # Grad-CAM + Ablation-CAM of three voters on a loaded CPU


def shown_id(page) -> str | None:
    return page.evaluate("() => document.querySelector('#review-card .card')?.dataset.productId ?? null")


def wait_for_new_card(page, old: str | None) -> str:
    page.wait_for_function("old => { const c = document.querySelector('#review-card .card');"
                           " return c && c.dataset.productId && c.dataset.productId !== old; }",
                           arg=old, timeout=TIMEOUT_MS)
    return shown_id(page)


def hold_product_with_image(root: Path, reviewer: str) -> str:
    """Make an undecided product with an image the one `reviewer` holds (as after a restart)."""
    import time
    from store.workspace import Workspace
    ws = Workspace(root)
    pid = ws.scalar("SELECT id FROM products WHERE image_path IS NOT NULL AND id NOT IN "
                    "(SELECT product_id FROM decisions) ORDER BY id LIMIT 1")

    def hold(conn):
        conn.execute("DELETE FROM reservations WHERE reviewer = ?", (reviewer,))
        conn.execute("INSERT INTO reservations (product_id, reviewer, expires_at) VALUES (?, ?, ?)",
                     (pid, reviewer, time.time() + 600))
    ws.write(hold)
    ws.close()
    return pid


def top5_codes(page) -> list[int]:
    names = page.locator("#top5 .t5-row .code").all_inner_texts()
    return [int(n) for n in names]


def open_app(browser, url: str):
    """(page, page errors seen so far) once the app has loaded and asks for the reviewer's name."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#review-card >> text=Who is reviewing?", timeout=TIMEOUT_MS)
    return page, errors


def sign_in(page, reviewer: str) -> str:
    """Type the reviewer's name on a page that asks for it: the id of the first card shown."""
    name = page.locator("#reviewer-name input, #reviewer-name textarea").first
    name.fill(reviewer)
    name.press("Enter")
    return wait_for_new_card(page, None)


def test_review_screen_keyboard_undo_reload(browser, sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    hostile = add_hostile_product(root, "alice")
    with running_app(root, tmp_path) as (_, url):
        page, errors = open_app(browser, url)

        # the name, then the held product: its text is shown as text, never run as markup
        assert sign_in(page, "alice") == hostile
        assert page.evaluate("() => window.__xss") is None
        assert page.locator("#review-card script:not([type='text/html'][data-slot]), #review-card svg, #review-card img[src='x']").count() == 0
        assert "Piscine hors-sol" in page.locator("#review-card .product-title").inner_text()
        assert page.locator("#top5 .t5-row").count() == 5
        page.wait_for_selector("#heatmaps >> text=Where the image models look", timeout=TIMEOUT_MS)
        assert "Enter" in page.locator(".shortcuts").inner_text()

        # Enter accepts the top-1 (entering the name handed the keyboard back to the shortcuts)
        page.wait_for_function("() => !document.activeElement.closest('#reviewer-name')", timeout=TIMEOUT_MS)
        top1 = top5_codes(page)[0]
        page.keyboard.press("Enter")
        second = wait_for_new_card(page, hostile)
        rows = decisions(root)
        assert [(r["product_id"], r["action"], r["category"], r["reviewer"]) for r in rows] == \
            [(hostile, "accept", top1, "alice")]
        assert json.loads(rows[0]["shown_top5"])[0][0] == top1 and rows[0]["lead_time_ms"] > 0

        # 3 picks the third category of the top-5
        third_code = top5_codes(page)[2]
        page.keyboard.press("3")
        third = wait_for_new_card(page, second)
        assert (decisions(root)[-1]["action"], decisions(root)[-1]["category"]) == ("correct", third_code)

        # keys typed in the comment box do nothing; Esc leaves it, S skips with the comment
        comment = page.locator("#comment textarea, #comment input").first
        comment.click()
        page.keyboard.type("su1 Enter")
        page.keyboard.press("Enter")
        page.wait_for_timeout(400)
        assert len(decisions(root)) == 2 and shown_id(page) == third
        page.keyboard.press("Escape")
        page.keyboard.press("s")
        fourth = wait_for_new_card(page, third)
        row = decisions(root)[-1]
        assert (row["product_id"], row["action"], row["comment"]) == (third, "skip", "su1 Enter")
        # the comment went with that decision: the box is empty for the next product (cardpack.js)
        page.wait_for_function("() => document.querySelector('#comment textarea, #comment input').value === ''",
                               timeout=TIMEOUT_MS)

        # / searches the 27 categories; Enter on the filtered list decides
        page.keyboard.press("/")
        assert page.evaluate("() => !!document.activeElement.closest('#category-search')")
        page.keyboard.type("Piscine")
        page.keyboard.press("Enter")
        fifth = wait_for_new_card(page, fourth)
        row = decisions(root)[-1]
        assert row["product_id"] == fourth and row["category"] == 2583 and row["action"] in ("accept", "correct")

        # U undoes, several steps back: each product comes back on screen (the search let go of the keys)
        page.wait_for_function("() => !document.activeElement.closest('#category-search')", timeout=TIMEOUT_MS)
        page.keyboard.press("u")
        assert wait_for_new_card(page, fifth) == fourth
        page.keyboard.press("u")
        assert wait_for_new_card(page, fourth) == third
        rows = decisions(root)
        assert [r["action"] for r in rows] == ["accept", "correct", "skip", row["action"], "undo", "undo"]
        assert rows[4]["undoes"] == rows[3]["id"] and rows[5]["undoes"] == rows[2]["id"]

        # reload: the browser remembers the reviewer and the server the held product
        page.reload()
        assert wait_for_new_card(page, None) == third
        assert page.locator("#reviewer-name input, #reviewer-name textarea").first.input_value() == "alice"
        assert "resumed" in page.locator("#review-card .badges").inner_text()
        page.keyboard.press("Enter")
        after = wait_for_new_card(page, third)
        last = decisions(root)[-1]
        assert (last["product_id"], last["action"], last["reviewer"]) == (third, "accept", "alice")

        # a product with an image (held by alice, as after a restart): each image voter's heatmap
        with_image = hold_product_with_image(root, "alice")
        page.reload()
        assert wait_for_new_card(page, None) == with_image
        assert page.locator("#review-card img.product-img").count() == 1
        # fetched by URL from the app's image route (not inlined in the card), and really shown
        assert page.locator("#review-card img.product-img").get_attribute("src").startswith("product-image/")
        page.wait_for_function("() => { const i = document.querySelector('#review-card img.product-img');"
                               " return i.complete && i.naturalWidth === 500; }", timeout=10_000)
        # the next cards' images load unseen (they are there for the browser's cache only)
        assert page.evaluate("() => [...document.querySelectorAll('#review-card img.preload')]"
                             ".every(i => i.offsetParent === null && i.getBoundingClientRect().height === 0)")
        page.wait_for_function("() => document.querySelectorAll('#heatmaps figure img').length === 3",
                               timeout=HEAT_TIMEOUT_MS)
        captions = page.locator("#heatmaps figcaption").all_inner_texts()
        assert any("Grad-CAM" in c for c in captions) and any("Ablation-CAM" in c for c in captions)
        assert "models agree with the fused top-1" in page.locator("#votes").inner_text()
        second_code = top5_codes(page)[1]
        page.locator("#heatmaps [data-heat]").nth(1).click()       # heatmaps for the second category
        # not prefetched: "Computing heatmaps…" first, then the overlays of that category replace it
        page.wait_for_function("code => document.querySelector('#heatmaps .heat-head')?.textContent"
                               ".includes(String(code)) && document.querySelectorAll('#heatmaps figure img').length === 3",
                               arg=second_code, timeout=HEAT_TIMEOUT_MS)
        assert all(str(second_code) in c for c in page.locator("#heatmaps figcaption").all_inner_texts())
        assert errors == []


def test_models_tab_retrain_button_shows_progress_then_the_new_live_version(browser, sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    with running_app(root, tmp_path) as (_, url):
        page, errors = open_app(browser, url)
        page.get_by_role("tab", name="Models").click()
        page.wait_for_selector("#retrain-panel >> text=No retrain yet", timeout=TIMEOUT_MS)
        assert page.locator("#versions").inner_text().count("ready") == 1
        page.locator("#btn-retrain").click()
        # Gradio's progress bar with the retrain's own messages, then the outcome
        page.wait_for_selector("#retrain-panel >> text=Retrain finished", timeout=HEAT_TIMEOUT_MS)
        from store.workspace import Workspace
        ws = Workspace(root)
        first, live = ws.model_versions()[0]["id"], ws.live_version()
        ws.close()
        assert live != first
        page.wait_for_function("ids => { const t = document.querySelector('#versions').innerText;"
                               " return ids.every(i => t.includes(i)); }", arg=[live, first], timeout=TIMEOUT_MS)
        table = page.locator("#versions").inner_text()
        assert table.index(live) < table.index("● live") < table.index(first)     # newest first, marked live
        page.screenshot(path=str(tmp_path / "models-tab.png"))
        assert errors == []


def decide_everything(root: Path, reviewer: str) -> str:
    """`reviewer` gives every product a category through the review API; returns the last one."""
    from labeler import review
    from store.workspace import Workspace
    ws = Workspace(root)
    last = None
    while (c := review.next_card(ws, reviewer)) is not None:
        review.decide(ws, reviewer, c.product_id, "correct", category=c.product.get("source_label") or 2583)
        last = c.product_id
    ws.close()
    return last


def decision_controls_shown(page) -> dict[str, bool]:
    return page.evaluate("""() => Object.fromEntries(['#btn-accept', '#btn-skip', '#category-search', '#comment',
        '#top5', '#btn-undo'].map(s => [s, !!document.querySelector(s) && document.querySelector(s).offsetParent !== null]))""")


def test_empty_queue_screen_offers_no_decision_and_undo_brings_the_last_one_back(browser, sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    last = decide_everything(root, "alice")
    n = len(decisions(root))
    # the product U brings back has a 100,000-character title and a long description with lists
    import sqlite3
    with sqlite3.connect(root / "workspace.db") as db:
        db.execute("UPDATE products SET title = ?, description = ? WHERE id = ?",
                   ("Piscine" + "x" * 100_000, "<p>Intro &amp; nbsp;</p><ul>" + "<li>ligne</li>" * 120 + "</ul>", last))
    with running_app(root, tmp_path) as (_, url):
        page, errors = open_app(browser, url)
        # before a name: nothing to decide either
        assert not any(v for k, v in decision_controls_shown(page).items() if k != "#btn-undo")
        name = page.locator("#reviewer-name input, #reviewer-name textarea").first
        name.fill("alice")
        name.press("Enter")
        page.wait_for_selector("#review-card >> text=Nothing left in this queue", timeout=TIMEOUT_MS)
        page.wait_for_function("() => !document.activeElement.closest('#reviewer-name')", timeout=TIMEOUT_MS)
        shown = decision_controls_shown(page)
        assert shown == {"#btn-accept": False, "#btn-skip": False, "#category-search": False, "#comment": False,
                         "#top5": False, "#btn-undo": True}, shown
        assert "Choose its category" not in page.locator("body").inner_text()     # nothing invites a decision
        for key in ("Enter", "s", "1"):
            page.keyboard.press(key)
        page.wait_for_timeout(800)
        assert len(decisions(root)) == n                                          # no key decided anything

        # U brings the last decision back: a card, and the decision controls with it
        page.keyboard.press("u")
        assert wait_for_new_card(page, None) == last
        page.wait_for_function("() => document.querySelector('#btn-accept').offsetParent !== null",
                               timeout=TIMEOUT_MS)
        assert page.locator("#top5 .t5-row").count() == 5

        # the long title stays inside the card (three lines at most), over none of the buttons
        box = page.evaluate("""() => { const q = e => document.querySelector(e);
            const t = q('#review-card .product-title'), c = q('#review-card .card').getBoundingClientRect();
            return {h: t.getBoundingClientRect().height, overflow: t.scrollWidth - t.clientWidth,
                    cardRight: c.right, buttonsLeft: q('#btn-accept').getBoundingClientRect().left}; }""")
        assert box["h"] < 120 and box["overflow"] <= 1 and box["cardRight"] <= box["buttonsLeft"], box
        # the description keeps its list, and D then Page Down scrolls it from the keyboard
        assert page.locator("#review-card .product-desc li").count() == 120
        assert "nbsp" not in page.locator("#review-card .product-desc").inner_text()
        page.keyboard.press("d")
        assert page.evaluate("() => document.activeElement.classList.contains('product-desc')")
        page.keyboard.press("PageDown")
        page.wait_for_function("() => document.querySelector('#review-card .product-desc').scrollTop > 0",
                               timeout=TIMEOUT_MS)
        page.keyboard.press("Escape")
        assert page.evaluate("() => !document.activeElement.classList.contains('product-desc')")
        assert errors == []


HOSTILE_NAME = '<img src=x onerror="window.__xss=1">eve'
HOSTILE_ID = "<a href=javascript:alert(1)><img src=x onerror=window.__xss=2>42</a>"


def hand_over(root: Path, product_id: str, reviewer: str) -> None:
    """`reviewer` holds the product now (another reviewer was shown it after a reservation expired)."""
    import time
    from store.workspace import Workspace
    ws = Workspace(root)
    ws.write(lambda c: (c.execute("DELETE FROM reservations WHERE product_id = ?", (product_id,)),
                        c.execute("INSERT INTO reservations (product_id, reviewer, expires_at) VALUES (?, ?, ?)",
                                  (product_id, reviewer, time.time() + 600))))
    ws.close()


def toast_texts(page, expect: str) -> list[str]:
    page.wait_for_selector(f"[data-testid='toast-body'] >> text={expect}", timeout=TIMEOUT_MS)
    return page.locator("[data-testid='toast-body']").all_inner_texts()


def test_markup_in_names_and_ids_shows_as_text_in_the_pop_ups(browser, sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    pid = add_hostile_product(root, "alice", product_id=HOSTILE_ID)
    with running_app(root, tmp_path) as (_, url):
        page, errors = open_app(browser, url)
        name = page.locator("#reviewer-name input, #reviewer-name textarea").first
        name.fill("alice")
        name.press("Enter")
        assert wait_for_new_card(page, None) == pid
        page.wait_for_function("() => !document.activeElement.closest('#reviewer-name')", timeout=TIMEOUT_MS)

        # Enter on a product someone named in markup holds now: the warning shows both as text
        hand_over(root, pid, HOSTILE_NAME)
        page.keyboard.press("Enter")
        texts = toast_texts(page, "is being reviewed by")
        assert any(HOSTILE_ID in t and HOSTILE_NAME in t for t in texts), texts
        assert page.locator("[data-testid='toast-body'] img, [data-testid='toast-body'] a").count() == 0
        nxt = wait_for_new_card(page, pid)
        assert [r["product_id"] for r in decisions(root)] == []

        # decide the next one, then that reviewer holds it: U's error shows the name as text
        page.keyboard.press("Enter")
        wait_for_new_card(page, nxt)
        hand_over(root, nxt, HOSTILE_NAME)
        page.keyboard.press("u")
        texts = toast_texts(page, "cannot be undone")
        assert any(HOSTILE_NAME in t for t in texts), texts
        assert page.locator("[data-testid='toast-body'] img, [data-testid='toast-body'] a").count() == 0
        assert page.evaluate("() => window.__xss") is None
        assert [r["action"] for r in decisions(root)] == ["accept"]
        assert errors == []


def test_first_minute_after_launch_then_a_second_tab_of_the_same_reviewer(browser, sample_dir, tmp_path):
    """The page is used at once after launch: cards come and decisions land while the model, its
    backbones and the queue load in background threads that run at a lower priority than the
    server's request threads (the latency itself is measured by bench/bench_app.py --first-minute).
    Then a second tab of the same reviewer gets a product of its own."""
    import threading
    from labeler.background import niceness
    root = app_workspace(sample_dir, tmp_path / "ws")
    with running_app(root, tmp_path) as (demo, url):
        workers = {t.name: t for t in threading.enumerate() if t.name in ("heatmap-prefetch", "queue-warm")}
        context = browser.new_context(viewport={"width": 1400, "height": 1000})   # one browser, two tabs later
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#review-card >> text=Who is reviewing?", timeout=TIMEOUT_MS)
        shown = sign_in(page, "alice")
        page.wait_for_function("() => !document.activeElement.closest('#reviewer-name')", timeout=TIMEOUT_MS)
        for _ in range(3):
            page.keyboard.press("Enter")
            shown = wait_for_new_card(page, shown)
        assert [r["action"] for r in decisions(root)] == ["accept"] * 3
        server = niceness(threading.main_thread())
        assert "heatmap-prefetch" in workers
        for t in workers.values():
            if t.is_alive():
                assert niceness(t) > server, (t.name, niceness(t), server)

        # the same reviewer opens a second tab (same browser: the name is remembered): another
        # product, not the one the first tab shows; each tab's reload keeps its own
        second = context.new_page()
        second.on("pageerror", lambda e: errors.append(str(e)))
        second.goto(url)
        other = wait_for_new_card(second, None)
        assert other != shown
        second.reload()
        assert wait_for_new_card(second, None) == other
        page.reload()
        assert wait_for_new_card(page, None) == shown
        second.keyboard.press("Enter")
        wait_for_new_card(second, other)
        assert [r["product_id"] for r in decisions(root)][-1] == other and len(decisions(root)) == 4
        assert errors == []
