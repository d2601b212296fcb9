"""Eight reviewers at once, mixing grid pages and cards through `gradio_client`, on the real app.

Each reviewer is a thread with its own `gradio_client.Client` (its own session) over one app
server (the app tests' workspace: real sample products, a really trained model). Each step it
picks at random a grid page of a category with undecided products (marking the wrong tiles by
the sample's true labels, accepting the rest) or one-at-a-time cards (choosing the true
category). What each reviewer has on screen is recorded from the server's answers (a page's
tiles, a card's product) and cleared when it submits; a product on two screens at once is a
violation. When nothing is left the decisions are read back from SQLite: every product decided
exactly once (one accept or correct in effect, none undone), with its true category.

    python -m bench.bench_team              # the whole workspace (324 products), 8 reviewers
    python -m bench.bench_team --quick      # 3 categories' products (~40), 8 reviewers

Exits 1 on any violation.
"""
from __future__ import annotations

import random
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.bulk_bench import SETUP, app_server, base_workspace, pct
from bench.common import parse, parser

TILE = re.compile(r'class="grid-tile" data-product="([^"]+)"')
PAGE_CATEGORY = re.compile(r'class="grid-cat">([^<]*)</span>')
FIX_CARD = re.compile(r'class="grid-fix">\s*<div class="card[^"]*"[^>]*data-product-id="([^"]+)"')


def page_category(page_html: str) -> int | None:
    """The category of a grid page (its head, 'name · code'), None when no page is shown."""
    found = PAGE_CATEGORY.search(page_html)
    return int(found.group(1).rsplit(" · ", 1)[1]) if found and TILE.search(page_html) else None


class Screens:
    """Who has which products on screen; a product on two screens is recorded as a violation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.on: dict[str, set[str]] = {}
        self.violations: list[str] = []

    def show(self, who: str, ids: set[str]) -> None:
        with self.lock:
            for other, theirs in self.on.items():
                if other != who and ids & theirs:
                    self.violations.append(f"{sorted(ids & theirs)} on {who}'s and {other}'s screens")
            self.on[who] = set(ids)

    def clear(self, who: str) -> None:
        with self.lock:
            self.on[who] = set()


def undecided(db: Path) -> dict[int, int]:
    """Live top-1 category -> undecided products, read straight from the SQLite file."""
    with sqlite3.connect(db, timeout=30) as conn:
        live = conn.execute("SELECT value FROM settings WHERE key = 'live_model_version'").fetchone()[0]
        rows = conn.execute(
            "SELECT pr.top1, count(*) FROM predictions pr WHERE pr.model_version = ? AND NOT EXISTS ("
            " SELECT 1 FROM effective_decisions e WHERE e.product_id = pr.product_id"
            " AND e.action IN ('accept', 'correct', 'auto_accept')) GROUP BY pr.top1", (live,)).fetchall()
    return {int(c): int(n) for c, n in rows}


def reviewer(url: str, name: str, db: Path, truth: dict[str, int], screens: Screens, share: float, seed: int,
             stats: dict, deadline: float) -> None:
    from gradio_client import Client
    rng = random.Random(seed)
    client = Client(url, verbose=False)
    current: dict | None = None
    while time.time() < deadline:
        left = undecided(db)
        if not left:
            break
        if rng.random() < share:
            cat = rng.choice(sorted(left))
            screens.clear(name)
            t = time.perf_counter()
            html = client.predict(name, cat, "surest", api_name="/grid_open")[0]
            stats["grid_open"].append(1000 * (time.perf_counter() - t))
            current = None                             # opening a page gives the held card back
            while True:
                ids = TILE.findall(html)
                screens.show(name, set(ids))
                if not ids:
                    break
                shown = page_category(html)        # the chosen category, or the next one when it had none left
                wrong = [p for p in ids if truth[p] != shown]
                screens.clear(name)
                t = time.perf_counter()
                html = client.predict(name, wrong, api_name="/grid_accept")[0]
                stats["grid_accept"].append(1000 * (time.perf_counter() - t))
                stats["pages"] += 1
                while (fix := FIX_CARD.search(html)) is not None:     # each marked one on its card
                    pid = fix.group(1)
                    screens.show(name, {pid})
                    screens.clear(name)
                    t = time.perf_counter()
                    html = client.predict(name, truth[pid], api_name="/grid_choose")[0]
                    stats["card"].append(1000 * (time.perf_counter() - t))
                if rng.random() < 0.5:                # sometimes the reviewer stays on the grid for the next page
                    break
            screens.clear(name)                        # leaving the grid: its next page goes back
        else:
            if not current:
                screens.clear(name)
                current = client.predict(name, api_name="/set_reviewer")[0]
            for _ in range(rng.randint(1, 5)):
                pid = (current or {}).get("product_id")
                if not pid:
                    current = None
                    time.sleep(0.2)                    # the rest is on other screens right now
                    break
                screens.show(name, {pid})
                screens.clear(name)
                t = time.perf_counter()
                current = client.predict(truth[pid], current, "", api_name="/choose")[0]
                stats["card"].append(1000 * (time.perf_counter() - t))
            if current and current.get("product_id"):
                screens.show(name, {current["product_id"]})


def check(db: Path, truth: dict[str, int], ids: list[str]) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT product_id, category, count(*) FROM effective_decisions "
                            "WHERE reviewer LIKE 'team-%' AND action IN ('accept', 'correct') GROUP BY product_id"
                            ).fetchall()
        undone = conn.execute("SELECT count(*) FROM decisions WHERE action = 'undo'").fetchone()[0]
    got = {p: (c, n) for p, c, n in rows}
    problems = [f"{p}: decided {got.get(p, (None, 0))[1]} times" for p in ids if got.get(p, (None, 0))[1] != 1]
    problems += [f"{p}: category {got[p][0]} but truly {truth[p]}" for p in ids if p in got and got[p][0] != truth[p]]
    problems += [f"{undone} undo rows" for _ in [0] if undone]
    return problems


def main() -> None:
    ap = parser(__doc__)                           # --quick: only 3 categories' products are left to decide
    ap.add_argument("--reviewers", type=int, default=8, help="reviewers at once, each its own session")
    ap.add_argument("--grid-share", type=float, default=0.5, help="chance a step is a grid page")
    ap.add_argument("--minutes", type=float, default=20.0, help="give up after this long")
    args = parse(ap, quick={})
    from store.workspace import Workspace
    with tempfile.TemporaryDirectory(prefix="bench-team-") as tmp:
        tmp = Path(tmp)
        root = base_workspace(tmp / "ws")
        ws = Workspace(root)
        live = ws.live_version()
        truth = {r["id"]: int(r["source_label"]) for r in ws.query(
            "SELECT p.id, p.source_label FROM products p JOIN predictions pr ON pr.product_id = p.id "
            "AND pr.model_version = ?", (live,))}
        if args.quick:                             # three categories left: decide the rest beforehand
            keep_cats = {r["top1"] for r in ws.query("SELECT top1, count(*) AS n FROM predictions WHERE "
                                                     "model_version = ? GROUP BY top1 ORDER BY n DESC LIMIT 3", (live,))}
            rest = [r["product_id"] for r in ws.query("SELECT product_id, top1 FROM predictions WHERE model_version = ?",
                                                      (live,)) if r["top1"] not in keep_cats]
            ws.write(lambda c: [ws.record_decision(p, SETUP, "correct", category=truth[p], conn=c) for p in rest])
            truth = {p: v for p, v in truth.items() if p not in set(rest)}
        ws.close()
        ids = sorted(truth)
        screens = Screens()
        stats = {"grid_open": [], "grid_accept": [], "card": [], "pages": 0}
        t0 = time.time()
        errors: list[str] = []
        with app_server(root, tmp / "gradio") as url:
            def run(i: int) -> None:
                try:
                    reviewer(url, f"team-{i}", root / "workspace.db", truth, screens, args.grid_share, i, stats,
                             t0 + 60 * args.minutes)
                except Exception as exc:  # noqa: BLE001 - reported, and the bench fails
                    errors.append(f"team-{i}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            threads = [threading.Thread(target=run, args=(i,)) for i in range(args.reviewers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        took = time.time() - t0
        problems = check(root / "workspace.db", truth, ids)
    print(f"{args.reviewers} reviewers, {len(ids)} products in {took:.0f} s: {stats['pages']} grid pages, "
          f"{len(stats['card'])} card decisions")
    for name in ("grid_open", "grid_accept", "card"):
        v = stats[name]
        if v:
            print(f"  {name:<11} n={len(v):<4} p50 {statistics.median(v):.0f} ms  p95 {pct(v, 95):.0f} ms")
    print(f"  decided exactly once with the true category: {len(ids) - len(problems)} of {len(ids)}; "
          f"products on two screens: {len(screens.violations)}; reviewer errors: {len(errors)}")
    for line in (problems + screens.violations + errors)[:15]:
        print(f"  problem: {line}")
    sys.exit(1 if problems or screens.violations or errors else 0)


if __name__ == "__main__":
    main()
