"""Shared set-up for the bulk-validation benches (bench_keys, bench_grid, bench_team).

A workspace of real sample products scored by a really trained model (the app tests' cached
template: labeler/templates.py's app template), optionally grown with more sample products of a few
categories scored by the same live model, then narrowed to *pages where the model is 90 %
right*: for each chosen category, undecided products the live model puts there, 9 in 10 of
them truly of that category (the sample's own label is the truth the scripted reviewer knows).
Every other product is decided beforehand by a set-up reviewer, with its true label, so what is
left to validate is exactly those pages.

Imported by the benches as `bench.bulk_bench`; run alone it only prepares those pages and prints
what is left to validate (a check of the set-up):

    python -m bench.bulk_bench --quick    # the app template's pages, not grown
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import parse, parser
from labeler.samples import SAMPLE

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SETUP = "bench-setup"


@dataclass
class Pages:
    root: Path
    truth: dict[str, int]                  # product id -> the sample's label (what the reviewer knows)
    categories: list[int]                  # the categories whose pages are left to validate
    left: dict[int, list[str]]             # category -> its undecided products (90 % truly of it)
    top5: dict[str, list[int]]             # product id -> the live model's top-5 codes

    @property
    def n(self) -> int:
        return sum(len(v) for v in self.left.values())


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))] if s else float("nan")


def base_workspace(dest: Path, grow: int = 0, n_categories: int = 3) -> Path:
    """A fresh copy of the app tests' template; grow > 0 adds up to `grow` more sample products of
    each of the template's `n_categories` most predicted categories, scored by the live model."""
    from labeler.templates import CACHE, app_template, copy_template, fingerprint
    built = CACHE / f"app-ws-{fingerprint(SAMPLE)}"
    # a template already built is copied without waiting on the builders' lock (held for minutes
    # while another code version's template trains)
    root = copy_template(built if (built / "READY").exists() else app_template(SAMPLE), dest)
    if grow:
        _grow(root, grow, n_categories)
    return root


def grow_with_images(root: Path, n: int, copies: int = 1) -> int:
    """Add up to `n` sample products that have an image (not yet in the workspace), scored by the
    live model (their images featurised once, as at any import); copies > 1 adds each again
    under fresh ids (same texts and image, as the browse bench repeats the sample); returns how
    many products were added."""
    import pandas as pd
    from labeler.training import live_bundle, score_products
    from labeler.samples import insert_products, sample_products
    from store.workspace import Workspace
    ws = Workspace(root)
    try:
        have = {r["id"] for r in ws.query("SELECT id FROM products")}
        extra = sample_products(SAMPLE, per_category=None)
        extra = extra[extra["image_path"].notna() & ~extra["id"].isin(have)].head(n)
        extra = pd.concat([extra.assign(id=extra["id"] + (f"-copy{k}" if k else "")) for k in range(copies)],
                          ignore_index=True)
        insert_products(ws, extra)
        score_products(ws, live_bundle(ws), ids=extra["id"].tolist())
        return len(extra)
    finally:
        ws.close()


def _grow(root: Path, per_category: int, n_categories: int) -> None:
    from labeler.training import live_bundle, score_products
    from labeler.samples import insert_products, sample_products
    from store.workspace import Workspace
    ws = Workspace(root)
    try:
        live = ws.live_version()
        top = [r["top1"] for r in ws.query("SELECT top1, count(*) AS n FROM predictions WHERE model_version = ? "
                                           "GROUP BY top1 ORDER BY n DESC, top1 LIMIT ?", (live, n_categories))]
        have = {r["id"] for r in ws.query("SELECT id FROM products")}
        extra = sample_products(SAMPLE, per_category=None)
        extra = extra[extra["source_label"].isin(top) & ~extra["id"].isin(have)]
        extra = extra.groupby("source_label").head(per_category)
        insert_products(ws, extra)
        score_products(ws, live_bundle(ws), ids=extra["id"].tolist())
    finally:
        ws.close()


def narrow_to_pages(root: Path, *, right_share: float = 0.9, max_categories: int | None = None,
                    page: int = 24, max_pages: int = 1) -> Pages:
    """Decide (as SETUP, with the true label) everything but, per category, pages where the live
    model is `right_share` right; categories with too few wrong or right products are left out."""
    from store.workspace import Workspace
    import json
    ws = Workspace(root)
    try:
        live = ws.live_version()
        rows = ws.query("SELECT p.id, p.source_label, pr.top1, pr.top1_prob, pr.top5 FROM products p "
                        "JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = ? "
                        "WHERE p.source_label IS NOT NULL ORDER BY pr.top1_prob DESC, p.rowid", (live,))
        truth = {r["id"]: int(r["source_label"]) for r in rows}
        top5 = {r["id"]: [int(c) for c, _ in json.loads(r["top5"])] for r in rows}
        by_cat: dict[int, list[dict]] = {}
        for r in rows:
            by_cat.setdefault(int(r["top1"]), []).append(r)
        left: dict[int, list[str]] = {}
        for cat, items in sorted(by_cat.items(), key=lambda kv: -len(kv[1])):
            right = [r["id"] for r in items if truth[r["id"]] == cat]
            wrong = [r["id"] for r in items if truth[r["id"]] != cat]
            # as many right ones as a page holds, and the wrong ones that make them `right_share`
            n_right = min(len(right), round(page * max_pages * right_share))
            n_wrong = max(1, round(n_right * (1 - right_share) / right_share))
            if n_right < 6 or len(wrong) < n_wrong:
                continue
            # spread the wrong ones over the surest-first order the grid uses
            keep = set(right[:n_right]) | set(wrong[:n_wrong])
            left[cat] = [r["id"] for r in items if r["id"] in keep]
            if max_categories and len(left) >= max_categories:
                break
        keep_all = {p for ids in left.values() for p in ids}
        rest = [(p["id"], p["source_label"]) for p in ws.query("SELECT id, source_label FROM products")
                if p["id"] not in keep_all]

        def decide(conn):
            for pid, label in rest:
                action = "correct" if label is not None else "skip"
                ws.record_decision(pid, SETUP, action, category=label, conn=conn)
        ws.write(decide)
        return Pages(root, truth, list(left), left, top5)
    finally:
        ws.close()


def browser():
    """(playwright, browser) on Debian's chromium, headless."""
    from playwright.sync_api import sync_playwright
    p = sync_playwright().start()
    return p, p.chromium.launch(executable_path=CHROMIUM, args=ARGS)


# The Grid tab's screen after an answer, read from the page (gradio's HTML component patches the
# old page's nodes into the new one in place, so "the HTML changed" can be seen half-way, with
# old tiles left or a tile without its product): a marked product's card other than `oldCard`
# and no tile left; or a page whose every tile is a product not on `oldIds`, with as many
# "Wrong ones" boxes as tiles and its images loaded; or no page and the note that nothing is
# left (the placeholder shown before the first page is not an end).
GRID_SETTLED = """([oldIds, oldCard]) => {
  const g = document.querySelector('#grid-page');
  if (!g) return false;
  const tiles = [...g.querySelectorAll('.grid-tile')];
  const cards = [...g.querySelectorAll('.grid-fix .card[data-product-id]')];
  if (cards.length === 1 && !tiles.length) return cards[0].dataset.productId !== oldCard;
  if (tiles.length && !cards.length) {
    return tiles.every(t => t.dataset.product && !oldIds.includes(t.dataset.product))
      && document.querySelectorAll('#grid-marked input').length === tiles.length
      && [...g.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0);
  }
  const nothing = /Nothing left/.test(document.querySelector('#grid-note')?.textContent || '');
  return !tiles.length && !cards.length && !!g.querySelector('.grid-empty') && nothing;
}"""


def wait_grid_settled(page, old_ids: list[str], old_card: str | None, timeout_ms: int) -> None:
    """Until the Grid tab shows the next screen (GRID_SETTLED), polled every frame."""
    page.wait_for_function(GRID_SETTLED, arg=[list(old_ids), old_card], timeout=timeout_ms, polling="raf")


def choose_in_dropdown(page, selector: str, text: str) -> int:
    """Pick an option of a Gradio dropdown by typing `text` then Enter; returns the actions used
    (one click, the characters typed, Enter)."""
    box = page.locator(f"{selector} input").first
    box.click()
    box.fill("")
    page.keyboard.type(text)
    page.wait_for_timeout(200)
    page.keyboard.press("Enter")
    return 1 + len(text) + 1


def open_grid_category(page, cat: int, timeout_ms: int) -> int:
    """Choose `cat` in the Grid tab's dropdown and press Open; waits for its page (or the notice
    that nothing is left). Returns the actions used (dropdown, typed code, Enter, the button)."""
    n = choose_in_dropdown(page, "#grid-category", str(cat))
    page.locator("#grid-open").click()
    page.wait_for_function(
        "(code) => { const h = document.querySelector('#grid-page .grid-cat');"
        " if (h && h.textContent.trim().endsWith(' ' + code)) return true;"
        " return /Nothing left/.test(document.querySelector('#grid-note')?.textContent || ''); }",
        arg=str(cat), timeout=timeout_ms)
    return n + 1


@contextlib.contextmanager
def app_server(root: Path, tmp: Path, tries: int = 3):
    """The app's URL over `root` (labeler.local_app.running_app), launched again when Gradio's own
    start-up check of localhost times out, which it does on a machine loaded far past its cores."""
    from labeler.local_app import running_app
    for attempt in range(1, tries + 1):
        try:
            ctx = running_app(root, tmp / f"try{attempt}")
            _, url = ctx.__enter__()
        except ValueError as exc:
            if "localhost is not accessible" not in str(exc) or attempt == tries:
                raise
            print(f"app start-up check timed out (attempt {attempt}); launching again", flush=True)
            continue
        try:
            yield url
        finally:
            ctx.__exit__(None, None, None)
        return


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--grow", type=int, default=60, help="sample products added per category")
    ap.add_argument("--categories", type=int, default=3, help="categories whose pages are left")
    ap.add_argument("--page", type=int, default=24, help="tiles per grid page")
    args = parse(ap, quick={"grow": 0, "categories": 2})
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        root = base_workspace(Path(tmp) / "ws", grow=args.grow, n_categories=args.categories)
        pages = narrow_to_pages(root, max_categories=args.categories, page=args.page)
    print(f"{pages.n} products left to validate in {len(pages.categories)} categories: "
          + ", ".join(f"{c} ({len(v)})" for c, v in pages.left.items()))


if __name__ == "__main__":
    main()
