"""A 5-category shop that is not Rakuten, end to end: `import --taxonomy` with text codes (and one
whole-number code), training with real text and image models on PIL-drawn product photos, the
review workflow and the app's Review handlers, adding a category to a trained workspace and
retraining, and the export, which writes the shop's own codes."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from labeler import taxonomy
from store import Workspace
from store import taxonomy as stored
from taxonomy_shop import CATEGORIES, NEW_CATEGORY, product_rows, write_catalog, write_taxonomy

CODES = [c.code for c in CATEGORIES]
# One small image voter keeps the three trainings of this file to a minute or so each on 2 cores.
VOTER = [{"backbone": "lite0", "head": "logistic", "input_size": 224}]


def cli(*args: object) -> str:
    from labeler.cli import main
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def cli_fails(*args: object) -> str:
    from labeler.cli import main
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code != 0, result.output
    return result.output


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """A workspace with the shop's taxonomy, 50 products (10 per category, drawn photos) and one
    trained version. Tests that change it work on a copy."""
    from models.image import VOTERS_SETTING
    root = tmp_path_factory.mktemp("taxonomy-shop")
    folder = root / "shop"
    folder.mkdir()
    catalog = write_catalog(folder, product_rows(folder, per_category=10))
    ws_dir = root / "ws"
    ws = Workspace(ws_dir)
    ws.set_setting(VOTERS_SETTING, json.dumps(VOTER))
    ws.close()
    out = cli("import", "--workspace", ws_dir, "--taxonomy", write_taxonomy(folder / "categories.csv"),
              "--csv", catalog)
    assert "5 categories" in out, out
    cli("train", "--workspace", ws_dir, "--notes", "shop v1")
    return ws_dir


def copy_of(shop: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(shop, dest)
    return dest


def test_import_sets_the_shops_categories_and_its_labels(shop):
    ws = Workspace(shop)
    tax = taxonomy.of(ws)
    assert tax.codes() == CODES and tax[900].parent == "LAMP-01"
    labels = ws.current_labels()
    assert len(labels) == 50
    assert {pid: tax.code(key) for pid, key in labels.items()} == {
        pid: pid.split("-", 1)[1].rsplit("-", 1)[0] for pid in labels} | {
        pid: "LAMP-01" for pid in labels if pid.startswith("s-lamp-01")}
    ws.close()


def test_the_trained_version_records_its_classes_and_learns_text_and_images(shop):
    ws = Workspace(shop)
    tax = taxonomy.of(ws)
    version = ws.live_version()
    assert stored.version_classes(ws, version) == tax.keys()
    labels = ws.current_labels()
    hits = {"fused": 0, "image": 0}
    for pid, key in labels.items():
        row = ws.prediction(pid, version)
        assert len(row["probs"]) == 5 and row["top1"] in tax.keys()
        assert abs(sum(row["probs"]) - 1) < 1e-4        # stored rounded to 6 decimals
        hits["fused"] += row["top1"] == key
        image_votes = [v for name, v in row["voters"].items() if name != "text"]
        assert image_votes, row["voters"].keys()
        hits["image"] += image_votes[0][0][0] == key
    # out-of-fold scores of drawn shapes: far above the 20 % of chance
    assert hits["fused"] >= 45 and hits["image"] >= 35, hits
    ws.close()


def test_review_and_the_app_show_the_shops_names_and_take_its_codes(shop, tmp_path):
    from labeler import review
    from labeler.app import Session, build_app
    from labeler.config import Settings
    root = copy_of(shop, tmp_path)
    ws = Workspace(root)
    tax = taxonomy.of(ws)
    card = review.next_card(ws, "alice")
    names = {c.name for c in CATEGORIES}
    assert {v.name for v in card.prediction.top5} <= names and len(card.prediction.top5) == 5
    # a reviewer types the shop's code; the decision stores its key
    review.decide(ws, "alice", card.product_id, "correct", category="garden", idempotency_key=card.key)
    assert ws.current_labels()[card.product_id] == tax.parse("garden")
    with pytest.raises(review.ReviewError, match="not one of the 5 category codes"):
        review.decide(ws, "alice", card.product_id, "correct", category="2583")

    demo = build_app(ws, Settings(workspace=root))
    ui = demo.review_ui
    try:
        s = Session(reviewer="bob")
        out = ui._next(s)
        assert s.card is not None
        top5 = "".join(str(part) for part in out if isinstance(part, str))
        assert any(f"{c.name} · {c.code}" in top5 or c.name in top5 for c in CATEGORIES), top5[:500]
        pid = s.card.product_id
        ui.choose(tax.parse("LAMP-01"), {"key": s.card.key}, "", s)
        assert ws.current_labels()[pid] == tax.parse("LAMP-01")
    finally:
        ui.prefetch.close()
        demo.close()
        ws.close()

    out_dir = tmp_path / "export"
    cli("export", "--workspace", root, "--out", out_dir)
    with open(out_dir / "Y_labels.csv", newline="", encoding="utf-8") as f:
        y = {row[""]: row["prdtypecode"] for row in csv.DictReader(f)}
    with open(out_dir / "products.csv", newline="", encoding="utf-8") as f:
        by_id = {row["productid"]: row["prdtypecode"] for row in csv.DictReader(f)}
    assert set(y.values()) == set(CODES) and by_id[card.product_id] == "garden" and by_id[pid] == "LAMP-01"
    decisions = [json.loads(line) for line in (out_dir / "decisions.jsonl").read_text().splitlines()]
    assert {d["category_code"] for d in decisions} == {"garden", "LAMP-01"}


def test_a_category_added_to_a_trained_workspace_is_learned_by_the_next_training(shop, tmp_path):
    root = copy_of(shop, tmp_path)
    folder = tmp_path / "more"
    folder.mkdir()
    v1 = Workspace(root).live_version()
    out = cli("import", "--workspace", root, "--taxonomy",
              write_taxonomy(folder / "categories.csv", CATEGORIES + (NEW_CATEGORY,)))
    assert "added books" in out, out
    books = product_rows(folder, (NEW_CATEGORY,), per_category=10, seed=1, prefix="b")
    cli("import", "--workspace", root, "--csv", write_catalog(folder, books))
    ws = Workspace(root)
    tax = taxonomy.of(ws)
    assert tax.codes() == CODES + ["books"]
    # the old version still reads right: its 5 columns, by its own classes
    from labeler import review
    old = ws.prediction("s-toys-00", v1)
    assert len(old["probs"]) == 5 and stored.version_classes(ws, v1) == tax.keys()[:5]
    card = review.next_card(ws, "eve")      # v1 still serves, its 5 columns named by the 6-category taxonomy
    assert card.prediction.model_version == v1 and {v.text_code for v in card.prediction.top5} == set(CODES)
    ws.close()

    cli("train", "--workspace", root, "--notes", "with books")
    ws = Workspace(root)
    v2 = ws.live_version()
    assert v2 != v1 and stored.version_classes(ws, v2) == tax.keys()
    got = [ws.prediction(b["id"], v2)["top1"] for b in books]
    assert sum(k == tax.parse("books") for k in got) >= 8, got
    card = review.next_card(ws, "carol")
    assert card.prediction.model_version == v2 and len(card.prediction.top5) == 5
    ws.close()


def test_the_cli_refuses_a_taxonomy_that_drops_a_used_category_in_one_line(shop, tmp_path):
    root = copy_of(shop, tmp_path)
    without_toys = write_taxonomy(tmp_path / "less.csv", CATEGORIES[1:])
    out = cli_fails("import", "--workspace", root, "--taxonomy", without_toys)
    assert "leaves out category toys · Jouets, which 10 products" in out and "Traceback" not in out, out
    bad = tmp_path / "bad.json"
    bad.write_text('[{"code": "a", "name": ""}]', encoding="utf-8")
    out = cli_fails("import", "--workspace", root, "--taxonomy", bad)
    assert out.strip().splitlines()[-1].startswith("Error: bad.json entry 1, field name: empty name"), out
    assert taxonomy.of(Workspace(root)).codes() == CODES


def test_the_review_screen_in_a_browser_shows_and_takes_the_shops_categories(shop, tmp_path):
    """Chromium on the shop's workspace: the top-5 carries the shop's codes, and the category
    search finds a shop category by name and records its key."""
    from playwright.sync_api import sync_playwright

    from app_server import decisions, running_app
    from labeler.local_app import launch_chromium
    root = copy_of(shop, tmp_path)
    lamps = taxonomy.of(Workspace(root)).parse("LAMP-01")
    with running_app(root, tmp_path) as (_, url), sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#review-card >> text=Who is reviewing?", timeout=60_000)
            name = page.locator("#reviewer-name input, #reviewer-name textarea").first
            name.fill("dora")
            name.press("Enter")
            page.wait_for_selector("#top5 .t5-row", timeout=60_000)
            shown = page.locator("#top5 .t5-row .code").all_inner_texts()
            assert len(shown) == 5 and set(shown) == set(CODES), shown
            names = page.locator("#top5 .t5-row .t5-name").all_inner_texts()
            assert any("Luminaires" in n for n in names), names
            pid = page.evaluate("() => document.querySelector('#review-card .card')?.dataset.productId")
            page.wait_for_function("() => !document.activeElement.closest('#reviewer-name')", timeout=60_000)
            page.keyboard.press("/")
            page.keyboard.type("Luminaires")
            page.keyboard.press("Enter")
            page.wait_for_function("old => document.querySelector('#review-card .card')?.dataset.productId !== old",
                                   arg=pid, timeout=60_000)
            row = decisions(root)[-1]
            assert (row["product_id"], row["category"], row["reviewer"]) == (pid, lamps, "dora")
        finally:
            browser.close()
