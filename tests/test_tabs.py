"""Two tabs of one reviewer in a real browser, one of them a duplicate of the other.

Chrome's "Duplicate" copies the tab's sessionStorage, where the tab keeps its token: the copy
starts with the original's token. Playwright has no "duplicate" button, so the second page gets
the first page's sessionStorage written in before any of its scripts run (add_init_script), the
same state a duplicated tab starts from. The duplicate must take a token of its own, show another
product, and each tab's decision must be stored once.
"""
from __future__ import annotations

import json

from app_server import decisions, running_app
from app_workspace import app_workspace
from test_browser_review import TIMEOUT_MS, sign_in, wait_for_new_card

TOKEN = "() => sessionStorage.getItem('labeler-tab')"


def copy_of_session(storage: dict) -> str:
    """An init script that gives a new tab this sessionStorage, on its first load only (a
    reload of the tab keeps what the tab itself stored since)."""
    return ("(() => { if (sessionStorage.getItem('labeler-tab')) return; "
            f"for (const [k, v] of Object.entries({json.dumps(storage)})) sessionStorage.setItem(k, v); }})()")


def test_a_duplicated_tab_takes_a_token_and_a_product_of_its_own(browser, sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    with running_app(root, tmp_path) as (_, url):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        first = context.new_page()
        first.on("pageerror", lambda e: errors.append(str(e)))
        first.goto(url)
        first.wait_for_selector("#review-card >> text=Who is reviewing?", timeout=TIMEOUT_MS)
        a = sign_in(first, "alice")
        storage = first.evaluate("() => Object.fromEntries(Object.entries(sessionStorage))")
        assert storage.get("labeler-tab")

        dup = context.new_page()                 # the duplicate: same browser, same sessionStorage
        dup.on("pageerror", lambda e: errors.append(str(e)))
        dup.add_init_script(copy_of_session(storage))
        dup.goto(url)
        b = wait_for_new_card(dup, None)         # alice again: the browser remembers the name
        assert b != a, "the duplicated tab shows the product the first tab holds"
        assert dup.evaluate(TOKEN) != storage["labeler-tab"]
        assert first.evaluate(TOKEN) == storage["labeler-tab"]      # the original keeps its token

        # each tab decides its own product: two decisions, one per product, both by alice
        for page, shown in ((first, a), (dup, b)):
            page.wait_for_function("() => !document.activeElement.closest('#reviewer-name')", timeout=TIMEOUT_MS)
            page.keyboard.press("Enter")
            wait_for_new_card(page, shown)
        rows = decisions(root)
        assert sorted((r["product_id"], r["action"], r["reviewer"]) for r in rows) == \
            sorted([(a, "accept", "alice"), (b, "accept", "alice")])

        # a reload of the duplicate resumes its own product with its own token
        now_dup, dup_token = dup.evaluate("() => document.querySelector('#review-card .card').dataset.productId"), \
            dup.evaluate(TOKEN)
        dup.reload()
        assert wait_for_new_card(dup, None) == now_dup
        assert dup.evaluate(TOKEN) == dup_token

        # two copies of one token opening at once, no live tab holding it: they still part ways
        forged = {"labeler-tab": "forged-token"}
        pages = [context.new_page() for _ in range(2)]
        for page in pages:
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.add_init_script(copy_of_session(forged))
        for page in pages:
            page.goto(url, wait_until="commit")
        ids = [wait_for_new_card(page, None) for page in pages]
        tokens = [page.evaluate(TOKEN) for page in pages]
        assert tokens[0] != tokens[1] and ids[0] != ids[1], (tokens, ids)
        assert errors == []
