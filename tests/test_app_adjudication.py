"""The Adjudication tab and the category guide through the real app server: `gradio_client` for
the admin-only endpoints (an annotator refused on the server, whatever sends the call), and a
real browser (Debian chromium) for the tab only an admin sees and the G key on the grid."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from app_server import decisions, running_app  # noqa: E402
from test_guides import ready_app_workspace  # noqa: E402
from review_workspace import copy_workspace  # noqa: E402

from labeler import taxonomy  # noqa: E402
from labeler.auth import User, hash_password  # noqa: E402
from store.workspace import Workspace  # noqa: E402

A, B = 2583, 1560
USERS = [User("ada", "admin", hash_password("ada-pw-123")), User("nina", "annotator", hash_password("nina-pw-123"))]


def _dispute(root: Path) -> str:
    ws = Workspace(root)
    pid = ws.products()[0]["id"]
    ws.record_decision(pid, "nina", "correct", category=A, comment="pool <b>cover</b>")
    ws.record_decision(pid, "omar", "correct", category=B, comment="a chair")
    ws.close()
    return pid


def test_only_an_admin_lists_and_rules_disputes_through_the_api(sample_dir, tmp_path):
    from gradio_client import Client
    root = copy_workspace(sample_dir, tmp_path / "ws", train=False)
    pid = _dispute(root)
    with running_app(root, tmp_path, auth=USERS) as (_, url):
        nina = Client(url, auth=("nina", "nina-pw-123"), verbose=False)
        with pytest.raises(Exception, match="needs the admin role; nina is an annotator"):
            nina.predict(False, api_name="/adjudication")
        with pytest.raises(Exception, match="needs the admin role"):
            nina.predict(pid, A, "mine", False, api_name="/adjudicate")
        n = len(decisions(root))

        ada = Client(url, auth=("ada", "ada-pw-123"), verbose=False)
        table, kappa, _ = ada.predict(False, api_name="/adjudication")
        assert pid in table and "pool &lt;b&gt;cover&lt;/b&gt;" in table and "a chair" in table
        assert kappa["data"][0][:3] == ["nina", "omar", 1]
        with pytest.raises(Exception, match="no product 'nope'"):
            ada.predict("nope", B, "", False, api_name="/adjudicate")
        assert len(decisions(root)) == n                        # refused calls wrote nothing
        table, _, _, note = ada.predict(pid, B, "chair in the photo", False, api_name="/adjudicate")
        assert "ruled" in note and "No open disputes (1 already ruled)" in table
        row = decisions(root)[-1]
        assert (row["reviewer"], row["category"], row["via"], row["comment"]) == ("ada", B, "adjudication",
                                                                                  "chair in the photo")
        ws = Workspace(root)
        assert ws.current_labels()[pid] == B
        ws.close()
        guide = ada.predict(str(B), api_name="/guide")
        assert taxonomy.name(B) in guide and taxonomy.by_code()[B].description[:30] in guide
        with pytest.raises(Exception, match="unknown category '12'"):
            ada.predict("12", api_name="/guide")


def test_the_adjudication_tab_lists_and_rules_in_the_workspaces_own_categories(tmp_path):
    """A shop with text codes (tests/taxonomy_shop.py): the Final category dropdown offers its
    categories, not Rakuten's, and a ruling on one of them is recorded and named in its words."""
    from gradio_client import Client
    from taxonomy_shop import CATEGORIES, write_taxonomy
    from test_taxonomy import add_product
    root = tmp_path / "shop-ws"
    ws = Workspace(root)
    taxonomy.set_for(ws, taxonomy.load(write_taxonomy(tmp_path / "categories.csv")))
    tax = taxonomy.of(ws)
    toys, garden = tax.parse("toys"), tax.parse("garden")
    add_product(ws, "s1", toys)
    ws.record_decision("s1", "nina", "correct", category=toys, comment="a doll")
    ws.record_decision("s1", "omar", "correct", category=garden, comment="a rake")
    ws.close()
    with running_app(root, tmp_path, auth=USERS) as (_, url):
        ada = Client(url, auth=("ada", "ada-pw-123"), verbose=False)
        config = ada.config
        dropdown = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "adj-category")
        offered = [value for _, value in dropdown["props"]["choices"]]
        assert offered == tax.keys() and len(offered) == len(CATEGORIES)
        table, _, _ = ada.predict(False, api_name="/adjudication")
        assert "Jouets · toys" in table and "Jardin · garden" in table
        table, _, _, note = ada.predict("s1", garden, "a rake in the photo", False, api_name="/adjudicate")
        assert "ruled Jardin (garden) by ada" in note
    ws = Workspace(root)
    assert ws.current_labels()["s1"] == garden
    ws.close()


def _login(browser, url: str, name: str, password: str):
    from test_browser_review import TIMEOUT_MS
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    assert context.request.post(url.rstrip("/") + "/login", form={"username": name, "password": password}).ok
    page = context.new_page()
    page.goto(url, timeout=TIMEOUT_MS)
    page.wait_for_selector("#review-card", timeout=TIMEOUT_MS)
    return page


def test_adjudication_screen_is_an_admins_and_g_shows_the_grid_categorys_guide(browser, sample_dir, tmp_path):
    from test_browser_review import TIMEOUT_MS
    root = ready_app_workspace(sample_dir, tmp_path / "ws")
    pid = _dispute(root)
    ws = Workspace(root)
    live = ws.live_version()
    cat = Counter(r["top1"] for r in ws.query("SELECT top1 FROM predictions WHERE model_version = ?",
                                              (live,))).most_common(1)[0][0]
    example = ws.query("SELECT product_id FROM predictions WHERE model_version = ? AND top1 = ? "
                       "ORDER BY top1_prob DESC LIMIT 1", (live, cat))[0]["product_id"]
    ws.record_decision(example, "omar", "accept", category=cat)
    ws.close()
    with running_app(root, tmp_path, auth=USERS) as (_, url):
        nina = _login(browser, url, "nina", "nina-pw-123")
        nina.wait_for_timeout(1500)                               # the load event has run
        assert nina.get_by_role("tab", name="Adjudication").count() == 0

        ada = _login(browser, url, "ada", "ada-pw-123")
        ada.get_by_role("tab", name="Adjudication").click(timeout=TIMEOUT_MS)
        ada.wait_for_selector(f'#adj-table tr[data-product="{pid}"]', timeout=TIMEOUT_MS)
        assert "a chair" in ada.locator("#adj-table").inner_text()
        assert ada.locator("#adj-kappa").inner_text().count("nina") >= 1

        ada.get_by_role("tab", name="Grid").click()
        ada.locator("#grid-reviewer input, #grid-reviewer textarea").first.fill("ada")
        ada.locator("#grid-category input").first.click()
        ada.keyboard.type(str(cat))
        ada.keyboard.press("Enter")
        ada.locator("#grid-open").click()
        ada.wait_for_selector("#grid-page .grid-tile", timeout=TIMEOUT_MS)
        ada.locator("body").click(position={"x": 5, "y": 5})
        ada.keyboard.press("g")
        overlay = ada.locator(f'.guide-overlay[data-category="{cat}"]')
        overlay.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert taxonomy.name(cat) in overlay.inner_text()
        assert overlay.locator(f'figure[data-product="{example}"]').count() == 1
        ada.keyboard.press("Escape")
        overlay.wait_for(state="hidden", timeout=TIMEOUT_MS)

        ada.get_by_role("tab", name="Review").click()               # on the card (the login reviews): its top-1's guide
        ada.wait_for_selector("#review-card .card[data-product-id]", timeout=TIMEOUT_MS)
        top1 = ada.locator("#top5 .t5-row.first .code").first.inner_text().strip()
        ada.locator("#review-card").click(position={"x": 5, "y": 5})
        ada.keyboard.press("G")
        ada.locator(f'.guide-overlay[data-category="{top1}"]').wait_for(state="visible", timeout=TIMEOUT_MS)
        ada.keyboard.press("G")                                     # G again closes it
        ada.locator(".guide-overlay").wait_for(state="hidden", timeout=TIMEOUT_MS)
