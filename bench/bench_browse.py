"""Browse queries on a 100k-product workspace: p50 / p95 per kind of query and overall.

The whole Rakuten sample, scored by a really trained model version, grown to 100k products: each
real product and its prediction copied under fresh ids (the texts repeat, as the issue asks),
then 10k products decided by 8 reviewers (accepts of the top-1, every fifth one corrected to the
imported label) with 500 of those undone (one in 20). The template is built once per code version
under /tmp/labeler-bench (training takes a few minutes) and the grown copy cached next to it.

    python -m bench.bench_browse                 # 100k products, 20 queries of each kind
    python -m bench.bench_browse --products 200000 --repeat 10 --rebuild
    python -m bench.bench_browse --quick         # 3 products a category grown to 5k, 3 queries of each kind

Target (issue 18): p95 <= 200 ms on the 2-core machine. The first query after start, an import
or a retrain builds the in-memory columns (printed separately). Each run works on a fresh copy
of the cached grown workspace.
"""
from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import CACHE, grow_catalog, parse, parser, pct, sample_template
from labeler import taxonomy
from labeler.browse import BrowseQuery, browse, index_for
from labeler.templates import copy_template
from store.seed import checkpoint_and_close
from store.workspace import Workspace

REVIEWERS = [f"reviewer{i}" for i in range(8)]


def grown(n_products: int, n_decided: int, rebuild: bool, per_category: int | None = None,
          source: Path | None = None) -> Path:
    """`source` (default: the sample template) grown to `n_products` (`grow_catalog`), `n_decided`
    of them decided by 8 reviewers and one in 20 of those undone; cached beside the template."""
    source = source or sample_template(per_category, rebuild=rebuild)
    dest = CACHE / f"browse-{n_products}-{n_decided}-{source.name}"
    if dest.exists() and not rebuild:
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    ws = Workspace(copy_template(source, dest))
    t0 = time.perf_counter()
    grow_catalog(ws, n_products)
    rng = random.Random(0)
    rows = ws.query("SELECT p.id, p.source_label, pr.top1 FROM products p JOIN predictions pr ON pr.product_id = p.id "
                    "AND pr.model_version = ?", (ws.live_version(),))
    picked = rng.sample(rows, n_decided)

    def decide(conn) -> None:
        ids = []
        for i, r in enumerate(picked):
            who = REVIEWERS[i % len(REVIEWERS)]
            if i % 5 == 4 and r["source_label"] is not None:
                row = ws.record_decision(r["id"], who, "correct", category=r["source_label"], conn=conn)
            else:
                row = ws.record_decision(r["id"], who, "accept", category=r["top1"], conn=conn)
            ids.append(row)
        for row in rng.sample(ids, n_decided // 20):
            ws.record_decision(row["product_id"], row["reviewer"], "undo", undoes=row["id"], conn=conn)

    ws.write(decide)
    checkpoint_and_close(ws)
    print(f"grown to {n_products} products, {n_decided} decided, in {time.perf_counter() - t0:.1f} s", flush=True)
    return dest


def queries(ws: Workspace, rng: random.Random) -> dict[str, callable]:
    codes = taxonomy.codes()
    titles = [[w for w in t["title"].split() if len(w) > 4 and w.isalpha()]
              for t in ws.query("SELECT title FROM products WHERE instr(id, '~') = 0 LIMIT 400")]
    words = [w for t in titles for w in t]
    pairs = [t[:2] for t in titles if len(t) >= 2]       # two words of one title: they do co-occur
    ids = [r[0] for r in ws.conn.execute("SELECT id FROM products ORDER BY random() LIMIT 200")]
    total = ws.count_products()
    return {
        "first page": lambda: BrowseQuery(),
        "deep page": lambda: BrowseQuery(page=rng.randint(1, total // 50)),
        "one word": lambda: BrowseQuery(text=rng.choice(words)),
        "two words, sorted by confidence": lambda: BrowseQuery(text=" ".join(rng.choice(pairs)), sort="confidence"),
        "common prefix, paging (its matches cached)": lambda: BrowseQuery(
            text=rng.choice(["jeu", "lot", "pour", "de"]), page=rng.randint(1, 20)),
        "common prefix, first time (cache cleared)": lambda: _uncached(
            ws, BrowseQuery(text=rng.choice(["jeu", "lot", "pour", "de"]))),
        "product id": lambda: BrowseQuery(text=rng.choice(ids)),
        "imported category": lambda: BrowseQuery(imported=rng.choice(codes)),
        "predicted + confidence, least sure first": lambda: BrowseQuery(
            predicted=rng.choice(codes), min_confidence=0.5, sort="confidence"),
        "undecided, least sure first": lambda: BrowseQuery(status="undecided", sort="confidence",
                                                           page=rng.randint(1, 20)),
        "decided category": lambda: BrowseQuery(decided=rng.choice(codes)),
        "reviewer, latest first": lambda: BrowseQuery(reviewer=rng.choice(REVIEWERS), sort="decided_at"),
        "everything at once": lambda: BrowseQuery(text=rng.choice(words), imported=None, status="undecided",
                                                  min_confidence=0.2, sort="-confidence"),
    }


def _uncached(ws: Workspace, q: BrowseQuery) -> BrowseQuery:
    index_for(ws)._text_hits.clear()      # the search's first page: its FTS query runs
    return q


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--decided", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=20, help="queries of each kind")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--per-category", type=int, default=None,
                    help="build the template from this many products per category (default: the whole sample)")
    ap.add_argument("--template", type=Path, default=None,
                    help="a trained workspace to grow instead of building one (it is copied, not changed)")
    args = parse(ap, quick={"products": 5_000, "decided": 500, "repeat": 3, "per_category": 3})
    cached = grown(args.products, args.decided, args.rebuild, args.per_category, args.template)
    scratch = Path(tempfile.mkdtemp(prefix="bench-browse-"))
    root = scratch / "ws"
    shutil.copytree(cached, root)          # this run's decisions stay out of the cached copy
    ws = Workspace(root)
    rng = random.Random(1)
    kinds = queries(ws, rng)
    t = time.perf_counter()
    browse(ws, BrowseQuery())      # the first query builds the in-memory columns
    build_ms = (time.perf_counter() - t) * 1000
    every: list[float] = []
    print(f"{'query':45} {'p50 ms':>8} {'p95 ms':>8} {'matches (median)':>17}")
    for name, make in kinds.items():
        times, totals = [], []
        for _ in range(args.repeat):
            q = make()
            t = time.perf_counter()
            page = browse(ws, q)
            times.append((time.perf_counter() - t) * 1000)
            totals.append(page.total)
        every += times
        print(f"{name:45} {statistics.median(times):8.1f} {pct(times, 95):8.1f} {statistics.median(totals):17.0f}")
    print(f"{'all ' + str(len(every)) + ' queries':45} {statistics.median(every):8.1f} {pct(every, 95):8.1f}")
    after = []
    undecided = browse(ws, BrowseQuery(status="undecided", page_size=args.repeat)).rows
    for row in undecided:      # a reviewer decides, then someone browses: the log is replayed incrementally
        ws.record_decision(row["product_id"], "bench", "accept", category=row["predicted"] or row["imported"])
        t = time.perf_counter()
        browse(ws, BrowseQuery(status="decided", sort="decided_at"))
        after.append((time.perf_counter() - t) * 1000)
    print(f"{'right after a new decision':45} {statistics.median(after):8.1f} {pct(after, 95):8.1f}")
    print(f"first query (builds the columns): {build_ms:.0f} ms")
    print(f"workspace: {ws.count_products()} products, "
          f"{ws.scalar('SELECT count(*) FROM decisions')} decisions; target p95 <= 200 ms")
    ws.close()
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
