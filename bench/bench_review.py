"""Server side of "submit -> next product": `decide` + `next_card` latency, p50/p95.

On a workspace of the whole Rakuten sample (~1,950 real products) scored by a trained text model
(predictions cached in SQLite, as in the app). The template workspace is built once per code
version under /tmp/labeler-bench (training takes minutes) and copied fresh for every run.

Then the same sample grown to 85k products (the full challenge set's size) with 10k and 50k of
them already decided (`grown`): the queue is walked past every decided product for each card.

    python -m bench.bench_review                 # all strategies, 1 and 8 reviewers, 85k catalogs
    python -m bench.bench_review --submits 300 --rebuild
    python -m bench.bench_review --scale 200000:150000
    python -m bench.bench_review --quick         # 3 products a category, 20 submits, a 5k catalog

Target (issue 4): p95 of submit -> next well under 150 ms on the 2-core machine (the app adds
rendering on top).
"""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from bench.common import grow_catalog, parse, parser, pct, sample_template
from labeler import review
from labeler.config import Settings
from labeler.templates import copy_template
from store.seed import checkpoint_and_close
from store.workspace import Workspace

TEMPLATE: Path | None = None      # the sample workspace this run copies (set by main)


def fresh(tmp: Path, name: str) -> Workspace:
    return Workspace(copy_template(TEMPLATE, tmp / name))


def grown(tmp: Path, n_products: int, n_decided: int) -> Path:
    """The sample grown to `n_products` (`grow_catalog`) with the `n_decided` least confident
    already accepted by another reviewer: a catalog the size of the full challenge set, deep into
    its review."""
    ws = fresh(tmp, f"grown-{n_products}-{n_decided}")
    grow_catalog(ws, n_products)
    top1 = dict(ws.conn.execute("SELECT product_id, top1 FROM predictions"))
    ids = review.ranking(ws, "least_confidence").ids[:n_decided]
    ws.write(lambda conn: [ws.record_decision(pid, "history", "accept", category=top1[pid], conn=conn)
                           for pid in ids])
    return checkpoint_and_close(ws)


def session(ws: Workspace, reviewer: str, n: int, strategy: str, category: int | None, settings: Settings,
            out: dict[str, list[float]]) -> None:
    """One reviewer: each step = decide(card) + next_card(), timed separately and together."""
    t = time.perf_counter()
    card = review.next_card(ws, reviewer, strategy=strategy, category=category, settings=settings)
    out["first"].append((time.perf_counter() - t) * 1000)
    for i in range(n):
        if card is None:
            break
        action = ("skip", "correct", "accept", "accept")[i % 4]
        cat = card.product["source_label"] if action == "correct" else None
        if action == "accept" and card.prediction is None:
            action, cat = "correct", card.product["source_label"]
        t0 = time.perf_counter()
        review.decide(ws, reviewer, card.product_id, action, category=cat, lead_time_ms=card.lead_time_ms(),
                      idempotency_key=card.key)
        t1 = time.perf_counter()
        card = review.next_card(ws, reviewer, strategy=strategy, category=category, settings=settings)
        t2 = time.perf_counter()
        out["decide"].append((t1 - t0) * 1000)
        out["next"].append((t2 - t1) * 1000)
        out["submit"].append((t2 - t0) * 1000)


def run(tmp: Path, label: str, strategy: str, *, reviewers: int, submits: int, category: int | None = None,
        settings: Settings = Settings(), prior: int = 0, root: Path | None = None) -> dict:
    ws = Workspace(root) if root is not None else fresh(tmp, f"{label}-{strategy}-{reviewers}")
    if prior:   # a workspace with history: `prior` decisions already in the log before this process
        warm: dict[str, list[float]] = {"first": [], "decide": [], "next": [], "submit": []}
        session(ws, "history", prior, strategy, category, settings, warm)
        review.release(ws, "history")
        root = ws.root
        ws.close()
        ws = Workspace(root)   # a restarted server: the decision log is replayed from SQLite
    out: dict[str, list[float]] = {"first": [], "decide": [], "next": [], "submit": []}
    names = [f"r{i}" for i in range(reviewers)]
    if reviewers == 1:
        session(ws, names[0], submits, strategy, category, settings, out)
    else:
        threads = [threading.Thread(target=session, args=(ws, r, submits // reviewers, strategy, category,
                                                          settings, out)) for r in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ws.close()
    return {"scenario": label, "strategy": strategy, "reviewers": reviewers, "n": len(out["submit"]),
            "first": statistics.median(out["first"]),
            **{f"{k}_{q}": pct(out[k], q) for k in ("decide", "next", "submit") for q in (50, 95)}}


def main() -> None:
    global TEMPLATE
    ap = parser(__doc__)
    ap.add_argument("--submits", type=int, default=200, help="decisions per scenario")
    ap.add_argument("--prior", type=int, default=1000, help="decisions in the log before the 'after restart' run")
    ap.add_argument("--per-category", type=int, default=None,
                    help="build the workspace from this many products per category (default: the whole sample)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached bench workspace")
    ap.add_argument("--scale", type=lambda v: tuple(int(x) for x in v.split(":")), nargs="*",
                    default=[(85_000, 10_000), (85_000, 50_000)], metavar="PRODUCTS:DECIDED",
                    help="grown catalogs, deep into their review")
    args = parse(ap, quick={"submits": 20, "prior": 20, "per_category": 3, "scale": [(5_000, 1_000)]})
    base = TEMPLATE = sample_template(args.per_category, rebuild=args.rebuild)
    ws = Workspace(base)
    n_products, n_pred = ws.count_products(), ws.scalar("SELECT count(*) FROM predictions")
    checkpoint_and_close(ws)
    print(f"workspace: {n_products} products, {n_pred} cached predictions ({base})")
    rows = []
    overlap = replace(Settings(), overlap_share=0.2)
    with tempfile.TemporaryDirectory(prefix="bench-review-") as d:
        tmp = Path(d)
        for strategy in ("least_confidence", "margin", "entropy", "random", "below_threshold"):
            rows.append(run(tmp, "1 reviewer", strategy, reviewers=1, submits=args.submits))
        rows.append(run(tmp, "1 reviewer", "category", reviewers=1, submits=min(args.submits, 60), category=2583))
        rows.append(run(tmp, "8 reviewers, 20% overlap", "least_confidence", reviewers=8, submits=args.submits,
                        settings=overlap))
        rows.append(run(tmp, f"after restart, {args.prior} in log", "least_confidence", reviewers=1,
                        submits=args.submits, prior=args.prior))
        for n_products, n_decided in args.scale:
            root = grown(tmp, n_products, n_decided)
            label = f"{n_products // 1000}k, {n_decided // 1000}k decided"
            rows.append(run(tmp, label, "least_confidence", reviewers=1, submits=args.submits, root=root))
            rows.append(run(tmp, label + ", 8 rev.", "least_confidence", reviewers=8, submits=args.submits,
                            settings=overlap, root=root))
    head = (f"{'scenario':<28}{'strategy':<18}{'n':>5}{'1st ms':>8}{'decide p50':>11}{'p95':>7}"
            f"{'next p50':>10}{'p95':>7}{'submit->next p50':>18}{'p95':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scenario']:<28}{r['strategy']:<18}{r['n']:>5}{r['first']:>8.1f}{r['decide_50']:>11.1f}"
              f"{r['decide_95']:>7.1f}{r['next_50']:>10.1f}{r['next_95']:>7.1f}{r['submit_50']:>18.1f}"
              f"{r['submit_95']:>7.1f}")
    worst = max(r["submit_95"] for r in rows)
    print(f"\nworst submit->next p95: {worst:.1f} ms (target: well under 150 ms)")
    print("1st ms = first next_card of the scenario (builds the ranked queue once per model version/strategy)")


if __name__ == "__main__":
    main()
