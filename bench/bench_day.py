"""A reviewer's day, compressed: does the review app stay as fast and as small after hours of use?

One headless Chromium page reviews the whole Rakuten sample (~1,950 real products, a trained
model) through the real server and the real shortcut script, the way a reviewer's keyboard
does: mostly Enter, sometimes a pick from the top-5 (2-5), a skip (S) or an undo (U), each key
answered by the next card on screen (card in the DOM, its image loaded). Per window of
decisions it prints the latency (p50 / p95), the page's DOM nodes, event listeners and JS heap
after a forced garbage collection, and the server process's resident memory: a number that
climbs window after window is a leak a day of reviewing would feel.

    python -m bench.bench_day                      # 1,500 keys on the random queue, windows of 250
    python -m bench.bench_day --decisions 600 --window 100
    python -m bench.bench_day --quick              # 30 keys, windows of 10, the app tests' workspace

The template workspace is bench_app's (the newest whole-sample one built under /tmp/labeler-bench,
`--small`: the app tests' workspace).
"""
from __future__ import annotations

import gc
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench import bench_app
from bench.bench_app import ARGS, CHROMIUM, fresh, open_review, pick_template
from bench.common import parse, parser, pct, rss_mb
from labeler.local_app import running_app

# one key, answered by the next card (any action changes the product on screen)
PRESS_KEY = """key => new Promise(resolve => {
  const before = window.__cardTimes.length;
  const t0 = performance.now();
  document.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
  const poll = () => {
    if (window.__cardTimes.length > before) {
      const img = document.querySelector('#review-card img.product-img');
      if (!img || (img.complete && img.naturalWidth > 0)) return resolve([performance.now() - t0, !!img]);
    }
    if (performance.now() - t0 > 10000) return resolve([-1, false]);    // the card never changed
    setTimeout(poll, 1);
  };
  poll();
})"""
# a reviewer's mix of actions (undo only where there is something to undo)
MIX = (("Enter", 0.80), ("2", 0.05), ("3", 0.03), ("4", 0.01), ("5", 0.01), ("s", 0.05), ("u", 0.05))


def page_metrics(cdp) -> dict[str, float]:
    """DOM nodes, listeners and used JS heap after a forced collection (what stays, not garbage)."""
    cdp.send("HeapProfiler.collectGarbage")
    m = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
    return {"nodes": m.get("Nodes", 0), "listeners": m.get("JSEventListeners", 0),
            "heap_mb": m.get("JSHeapUsedSize", 0) / 2**20}


def review_day(tmp: Path, n: int, window: int, glance_ms: int, seed: int, queue: str | None) -> list[dict]:
    from playwright.sync_api import sync_playwright
    root = fresh(tmp, "day")
    rng = random.Random(seed)
    keys, weights = zip(*MIX)
    rows: list[dict] = []
    with running_app(root, tmp / "gradio-day") as (_, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        open_review(page, url, "bench-day", queue)
        page.wait_for_timeout(500)
        gc.collect()
        rows.append({"decisions": 0, **page_metrics(cdp), "rss_mb": rss_mb()})
        times: list[float] = []
        decided = stuck = images = 0
        started = time.perf_counter()
        for i in range(1, n + 1):
            key = rng.choices(keys, weights)[0]
            if key == "u" and decided == 0:
                key = "Enter"
            decided += -1 if key == "u" else (0 if key == "s" else 1)
            ms, with_image = page.evaluate(PRESS_KEY, key)
            if ms < 0:
                stuck += 1
            else:
                times.append(float(ms))
                images += bool(with_image)
            page.wait_for_timeout(glance_ms)
            if i % window == 0:
                gc.collect()
                rows.append({"decisions": i, "p50": statistics.median(times), "p95": pct(times, 95),
                             **page_metrics(cdp), "rss_mb": rss_mb(),
                             "minutes": (time.perf_counter() - started) / 60, "stuck": stuck,
                             "images": images / max(1, len(times))})
                times, images = [], 0
        browser.close()
    return rows


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--decisions", type=int, default=1500)
    ap.add_argument("--window", type=int, default=250)
    ap.add_argument("--glance-ms", type=int, default=150, help="pause between keys")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queue", default="Random",
                    help="queue picked in the app (default Random: every window gets the same mix of "
                         "cards with and without an image, so a drift is time, not content); '' = default queue")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the template workspace")
    ap.add_argument("--small", action="store_true",
                    help="the app tests' workspace (324 products, 36 images) instead of the whole sample")
    args = parse(ap, quick={"decisions": 30, "window": 10, "small": True})
    bench_app.TEMPLATE = pick_template(args.small, args.rebuild, reuse_any=True)
    with tempfile.TemporaryDirectory() as d:
        rows = review_day(Path(d), args.decisions, args.window, args.glance_ms, args.seed, args.queue or None)
    print(f"\nA reviewer's day in one page: {args.decisions} keys (Enter 80 %, 2-5 10 %, S 5 %, U 5 %), "
          f"{args.glance_ms} ms between them, {args.queue or 'default'} queue\n")
    print("| decisions | cards with an image | key -> next card p50 ms | p95 ms | DOM nodes | listeners "
          "| JS heap MB | server RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lat = f"{r['images']:.0%} | {r['p50']:.1f} | {r['p95']:.1f}" if "p50" in r else "– | – | –"
        print(f"| {r['decisions']} | {lat} | {r['nodes']:.0f} | {r['listeners']:.0f} | {r['heap_mb']:.1f} "
              f"| {r['rss_mb']:.0f} |")
    first, last = rows[1], rows[-1]
    print(f"\nlast window vs first: p50 x{last['p50'] / first['p50']:.2f}, p95 x{last['p95'] / first['p95']:.2f}; "
          f"DOM nodes {last['nodes'] - rows[0]['nodes']:+.0f}, JS heap {last['heap_mb'] - rows[0]['heap_mb']:+.1f} MB, "
          f"server RSS {last['rss_mb'] - first['rss_mb']:+.0f} MB after the first window "
          f"({last.get('minutes', 0):.1f} min of reviewing); keys the card never answered: {last['stuck']}")


if __name__ == "__main__":
    main()
