"""Key presses or clicks per 100 validated products: one-at-a-time card vs grid, in real Chromium.

A scripted reviewer who knows the sample's true labels validates pages where the live model is
90 % right (bench/bulk_bench.py: real sample products, a really trained model):

* card:  the Review tab, one product at a time: Enter when the model's top-1 is right, the digit
         of the right category when it is in the top-5, else `/`, its code and Enter.
* grid:  the Grid tab: the reviewer's name and Enter open the first page (as they open the first
         card on the Review tab; no category chosen: the one with most undecided products first,
         and a category done leads to the next); on each page a click on every wrong tile, then
         Enter accepts the rest; each marked product then opens its card on the grid, whose 1-9
         are the nine likeliest categories other than the page's (just said wrong) and whose
         letters are the others, by name: its digit or letter, else (a taxonomy with more
         categories than keys) `/`, its code and Enter.

Every key press and click that validates is counted; typing the reviewer's name and Enter once
per session is set-up (in both modes) and not counted. At the end the decisions are read back from SQLite: every
product of the pages decided once, each with its true category (the bench fails otherwise).

    python -m bench.bench_keys            # 3 categories, pages of 24 (the workspace grown with sample products)
    python -m bench.bench_keys --quick    # 2 categories of the app template, not grown (~1 min after the template)

Target (issue 18): grid <= 25 key presses or clicks per 100 products, every decision right.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bench.bulk_bench import Pages, app_server, base_workspace, browser, narrow_to_pages, wait_grid_settled
from bench.common import parse, parser

TIMEOUT_MS = 120_000
TARGET = 25.0


def open_app(page, url: str) -> None:
    page.goto(url, timeout=TIMEOUT_MS)
    page.wait_for_selector("#review-card", timeout=TIMEOUT_MS)


def card_loop(page, pages: Pages, reviewer: str) -> tuple[int, int]:
    """Validate every card the queue serves; returns (actions, cards)."""
    actions = cards = 0
    page.wait_for_function("() => /Who is reviewing/.test(document.querySelector('#review-card')?.textContent || '')",
                           timeout=TIMEOUT_MS)                    # the page's start event is done
    name = page.locator("#reviewer-name input, #reviewer-name textarea").first
    name.fill(reviewer)
    name.press("Enter")                                           # set-up, not counted
    page.wait_for_function("() => document.querySelector('#review-card .card[data-product-id]') || "
                           "/Nothing left/.test(document.querySelector('#review-card')?.textContent || '')",
                           timeout=TIMEOUT_MS)
    name.press("Escape")
    page.locator("#review-card").click(position={"x": 5, "y": 5})  # keyboard back to the shortcuts (set-up)
    while True:
        card = page.locator("#review-card .card[data-product-id]")
        if card.count() == 0:
            break
        pid = card.first.get_attribute("data-product-id")
        page.wait_for_selector("#top5 [data-pick] .code", timeout=TIMEOUT_MS)
        codes = [int(c) for c in page.eval_on_selector_all("#top5 [data-pick] .code", "cs => cs.map(c => c.textContent)")]
        want = pages.truth[pid]
        if codes and codes[0] == want:
            page.keyboard.press("Enter")
            actions += 1
        elif want in codes:
            page.keyboard.press(str(codes.index(want) + 1))
            actions += 1
        else:
            page.keyboard.press("/")
            page.keyboard.type(str(want))
            page.wait_for_timeout(150)
            page.keyboard.press("Enter")
            actions += 2 + len(str(want))
        cards += 1
        page.wait_for_function(
            "(pid) => { const c = document.querySelector('#review-card .card[data-product-id]');"
            " return c ? c.dataset.productId !== pid : /Nothing left/.test(document.querySelector('#review-card').textContent); }",
            arg=pid, timeout=TIMEOUT_MS)
    return actions, cards


def grid_pages(page, pages: Pages, reviewer: str, times: list[float] | None = None) -> tuple[int, int, int, int]:
    """Validate every page on the Grid tab; returns (actions, pages, marked, fix actions).

    The name and Enter open the first page (set-up, as on the Review tab; no category chosen: the
    one with most undecided products comes first, and each category done leads to the next), then
    per page a click on every wrong tile and Enter; each marked product then opens its card, fixed
    with its digit (1-9: the likeliest other categories), its letter (the others) or `/`, its code
    and Enter.
    times: Enter -> next page (or the first marked card, or the end) on screen, ms, per page."""
    actions = n_pages = n_marked = fix_actions = 0
    page.get_by_role("tab", name="Grid").click()                  # the tab itself: set-up
    name = page.locator("#grid-reviewer input, #grid-reviewer textarea").first
    name.fill(reviewer)
    name.press("Enter")                                           # set-up, not counted (as in card_loop)
    last_ids: list[str] = []                                      # the last page's products
    card: str | None = None                                       # the marked product's card on screen
    wait_grid_settled(page, last_ids, card, TIMEOUT_MS)
    while True:
        page.wait_for_function("() => !document.activeElement?.closest?.('#grid-fix-category, #grid-reviewer')",
                               timeout=TIMEOUT_MS)                # the keys are the grid's (grid.js left the field)
        fix = page.locator("#grid-page .grid-fix .card[data-product-id]")
        if fix.count():
            card = fix.first.get_attribute("data-product-id")
            codes = [int(c) for c in page.eval_on_selector_all("#grid-page .grid-fix .top5 [data-pick] .code",
                                                                 "cs => cs.map(c => c.textContent)")]
            want = pages.truth[card]
            letters = dict(page.eval_on_selector_all(
                "#grid-page .grid-fix .fix-other", "cs => cs.map(c => [c.querySelector('.code').textContent, c.dataset.letter])"))
            if want in codes:
                page.keyboard.press(str(codes.index(want) + 1))
                used = 1
            elif str(want) in letters:
                page.keyboard.press(letters[str(want)])
                used = 1
            else:
                page.keyboard.press("/")
                page.keyboard.type(str(want))
                page.wait_for_timeout(150)
                page.keyboard.press("Enter")
                used = 2 + len(str(want))
            actions += used
            fix_actions += used
            wait_grid_settled(page, last_ids, card, TIMEOUT_MS)
            continue
        card = None
        ids = page.eval_on_selector_all("#grid-page .grid-tile", "ts => ts.map(t => t.dataset.product)")
        if not ids:
            break                                                  # nothing left on the grid
        head = page.locator("#grid-page .grid-cat").first.inner_text()
        cat = int(head.rsplit(" · ", 1)[1])
        wrong = [i for i, p in enumerate(ids) if pages.truth[p] != cat]
        for i in wrong:
            page.locator("#grid-page .grid-tile").nth(i).click()
            actions += 1
        page.wait_for_function(f"() => document.querySelectorAll('#grid-marked input:checked').length === {len(wrong)}",
                               timeout=TIMEOUT_MS)
        n_marked += len(wrong)
        t0 = time.perf_counter()
        page.keyboard.press("Enter")
        actions += 1
        last_ids = ids
        wait_grid_settled(page, last_ids, card, TIMEOUT_MS)
        if times is not None:
            times.append(1000 * (time.perf_counter() - t0))
        n_pages += 1
    return actions, n_pages, n_marked, fix_actions


def check(pages: Pages, reviewer: str) -> tuple[int, int, list[str]]:
    """(decided, right, problems) read back from SQLite for the pages' products."""
    from store.workspace import Workspace
    ws = Workspace(pages.root)
    try:
        ids = [p for v in pages.left.values() for p in v]
        labels = ws.current_labels(reviewed_only=True)
        marks = ",".join("?" * len(ids))
        counts = {r["product_id"]: r["n"] for r in ws.query(
            f"SELECT product_id, count(*) AS n FROM effective_decisions WHERE reviewer = ? AND product_id IN ({marks}) "
            "AND action IN ('accept', 'correct') GROUP BY product_id", [reviewer, *ids])}
    finally:
        ws.close()
    problems = [f"{p}: decided {counts.get(p, 0)} times" for p in ids if counts.get(p, 0) != 1]
    problems += [f"{p}: label {labels.get(p)} but truly {pages.truth[p]}" for p in ids if labels.get(p) != pages.truth[p]]
    return sum(1 for p in ids if counts.get(p)), sum(1 for p in ids if labels.get(p) == pages.truth[p]), problems


def run(mode: str, tmp: Path, args) -> dict:
    root = base_workspace(tmp / f"ws-{mode}", grow=args.grow)
    pages = narrow_to_pages(root, max_categories=args.categories, page=args.page, max_pages=args.pages_per_category)
    reviewer = f"bench-{mode}"
    pw, b = browser()
    try:
        with app_server(root, tmp / f"gradio-{mode}") as url:
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            open_app(page, url)
            t0 = time.perf_counter()
            if mode == "grid":
                actions, n_pages, marked, fixes = grid_pages(page, pages, reviewer)
                cards = marked
            else:
                n_pages = marked = fixes = 0
                actions, cards = card_loop(page, pages, reviewer)
            took = time.perf_counter() - t0
    finally:
        b.close()
        pw.stop()
    decided, right, problems = check(pages, reviewer)
    return {"mode": mode, "products": pages.n, "categories": len(pages.categories), "actions": actions,
            "per100": 100 * actions / max(1, pages.n), "pages": n_pages, "marked": marked, "cards": cards,
            "fixes": fixes,
            "decided": decided, "right": right, "problems": problems, "seconds": took}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--categories", type=int, default=3, help="categories to validate")
    ap.add_argument("--grow", type=int, default=60, help="sample products added per category")
    ap.add_argument("--page", type=int, default=24, help="tiles per grid page")
    ap.add_argument("--pages-per-category", type=int, default=1, help="grid pages left in each category")
    ap.add_argument("--modes", default="card,grid", help="modes to run, comma-separated (card, grid)")
    args = parse(ap, quick={"categories": 2, "grow": 0})
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as tmp:
        results = {}
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if mode not in ("card", "grid"):
                sys.exit(f"--modes: {mode!r} is not a mode; expected card and/or grid")
            results[mode] = run(mode, Path(tmp), args)
            report(results[mode])
    ok = all(not r["problems"] for r in results.values())
    line = []
    if "grid" in results:
        grid = results["grid"]["per100"]
        line.append(f"grid: {grid:.1f} per 100 ({'meets' if grid <= TARGET else 'misses'} the <= {TARGET:.0f} target)")
    if "card" in results:
        line.append(f"card: {results['card']['per100']:.1f} per 100")
    print("; ".join(line))
    sys.exit(0 if ok else 1)


def report(r: dict) -> None:
    """One mode's figures, printed as soon as it is done."""
    print(f"{r['mode']:>5}: {r['actions']} key presses or clicks for {r['products']} products "
          f"({r['categories']} categories) = {r['per100']:.1f} per 100; pages {r['pages']}, marked {r['marked']}, "
          f"cards {r['cards']} ({r['fixes']} keys on the marked ones' cards); decided {r['decided']}/{r['products']}, right {r['right']}/{r['products']}; "
          f"{r['seconds']:.0f} s", flush=True)
    for p in r["problems"][:10]:
        print(f"       problem: {p}", flush=True)


if __name__ == "__main__":
    main()
