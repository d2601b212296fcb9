"""Label noise: does the suspect queue lead a reviewer to the wrong labels after the first `train`?

The shared sample is imported with a seeded share (default 10 %) of its labels moved to another
category (uniformly among the other 26), then `train` runs exactly as the CLI does (out-of-fold
scores of the labelled products, confident learning inside the training). Then three queues are
walked as a reviewer would (`labeler.review.ranking`): suspect labels, least confidence and
random. Printed per queue: the share of the moved labels met within the first N cards, for N = 1x,
2x and 4x the number moved. The suspect queue is also shown in its other order (flagged products
first, then the rest by out-of-fold probability of their label), to back `FLAGGED_FIRST`.

    python -m experiments.label_noise --text-only            # text model only (no image features), seeds 0 1
    python -m experiments.label_noise                        # with the image ensemble (features: ~5 min on CPU)

Anchor: cleanlab's confident learning (Northcutt et al. 2021) and its rank-by-self-confidence
ordering. Target on the sample: >= 90 % of the moved labels within the first 2x cards of the
suspect queue.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import SAMPLE
from labeler import review, taxonomy, training
from labeler.importer import import_challenge
from models.label_issues import find_issues, suspect_order
from store.workspace import Workspace

MULTIPLES = (1, 2, 4)


def noisy_sample(share: float, seed: int, out: Path) -> set[str]:
    """Write X.csv / Y.csv with `share` of the labels moved; returns the moved product ids."""
    x = pd.read_csv(SAMPLE / "X_train_update.csv", index_col=0)
    y = pd.read_csv(SAMPLE / "Y_train_CVw08PX.csv", index_col=0).loc[x.index]
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(y), size=int(round(share * len(y))), replace=False)
    codes = taxonomy.codes()
    for i in rows:
        y.iloc[i, 0] = rng.choice([c for c in codes if c != y.iloc[i, 0]])
    x.to_csv(out / "X.csv")
    y.to_csv(out / "Y.csv")
    return {str(p) for p in x["productid"].iloc[rows]}


def found(queue: list[str], moved: set[str], n: int) -> float:
    return len(set(queue[:n]) & moved) / max(1, len(moved))


def run_once(share: float, seed: int, text_only: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        moved = noisy_sample(share, seed, tmp)
        ws = Workspace(tmp / "ws")
        import_challenge(ws, tmp / "X.csv", tmp / "Y.csv", None if text_only else SAMPLE / "images" / "image_train")
        moved &= set(ws.current_labels())          # rows the importer refused (e.g. empty title) are not walked
        t = time.perf_counter()
        version = training.train_version(ws, notes=f"label-noise bench seed {seed}")
        seconds = time.perf_counter() - t
        queues = {name: review.ranking(ws, name).ids for name in ("suspect_labels", "least_confidence", "random")}
        # the other suspect order, on the same stored out-of-fold probabilities
        rows = ws.query("SELECT p.id, p.source_label, pr.probs FROM products p JOIN predictions pr "
                        "ON pr.product_id = p.id AND pr.model_version = ? WHERE p.source_label IS NOT NULL "
                        "ORDER BY p.rowid", (version["id"],))
        probs = np.array([json.loads(r["probs"]) for r in rows])
        labels = np.searchsorted(taxonomy.codes(), [r["source_label"] for r in rows])
        issues = find_issues(labels, probs)
        ids = [r["id"] for r in rows]
        queues["suspect, flagged first"] = [ids[i] for i in suspect_order(labels, probs, issues, flagged_first=True)]
        flagged = {ids[i] for i in np.flatnonzero(issues.flagged)}
        n_products = ws.count_products()
        ws.close()
    n = len(moved)
    out = {"seed": seed, "products": n_products, "moved": n, "train_s": round(seconds, 1),
           "flagged": len(flagged), "flag_recall": len(flagged & moved) / max(1, n)}
    for name, queue in queues.items():
        out[name] = [found(queue, moved, m * n) for m in MULTIPLES]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", type=float, default=0.10, help="share of labels moved (default 0.10)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--text-only", action="store_true",
                    help="import without images: the text model alone (the image features take minutes on CPU)")
    args = ap.parse_args()
    mode = "TEXT ONLY (imported without images)" if args.text_only else "text + image ensemble"
    print(f"label noise: {args.share:.0%} of the sample's labels moved, `train` as the CLI runs it; {mode}")
    results = [run_once(args.share, s, args.text_only) for s in args.seeds]
    names = ["suspect_labels", "suspect, flagged first", "least_confidence", "random"]
    print(f"\n| queue | seed | found in first 1x | 2x | 4x |\n|---|---:|---:|---:|---:|")
    for name in names:
        for r in results:
            a, b, c = r[name]
            print(f"| {name} | {r['seed']} | {a:.0%} | {b:.0%} | {c:.0%} |")
    for r in results:
        print(f"\nseed {r['seed']}: {r['products']} products, {r['moved']} labels moved, train {r['train_s']} s; "
              f"confident learning flagged {r['flagged']} ({r['flag_recall']:.0%} of the moved ones)")
    worst = min(r["suspect_labels"][1] for r in results)
    print(f"\nsuspect queue, moved labels within the first 2x cards: worst seed {worst:.0%} (target >= 90 %)")


if __name__ == "__main__":
    main()
