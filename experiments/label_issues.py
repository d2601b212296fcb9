"""How well does label-issue detection find wrong imported labels? Flip some, see what is flagged.

The whole shared sample is imported into a temporary workspace with a share of its labels flipped
to another category (uniformly, seeded); `models.label_issues.detect_label_issues` runs as the CLI
does (K-fold out-of-fold probabilities of models/text.py, confident-learning rule). Reported:
how many products are flagged, recall of the flipped ones, precision, and precision among the
top-k of the ranking (k = number flipped: what a reviewer working the suspect queue sees first).
The sample's own labels are not perfect either, so "precision" counts only the flips we made.

    python -m experiments.label_issues                  # 10 % flipped, 5 folds, seeds 0 1
    python -m experiments.label_issues --flip 0.05 --folds 3 --seeds 0
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import SAMPLE
from labeler import taxonomy
from labeler.importer import import_challenge
from labeler.label_issues import detect_label_issues, label_issues
from store.workspace import Workspace



def run_once(flip: float, folds: int, seed: int) -> dict:
    x = pd.read_csv(SAMPLE / "X_train_update.csv", index_col=0)
    y = pd.read_csv(SAMPLE / "Y_train_CVw08PX.csv", index_col=0)
    keep = x["designation"].fillna("").str.strip() != ""
    x, y = x[keep], y[keep].copy()
    rng = np.random.default_rng(seed)
    flipped_rows = rng.choice(len(y), size=int(round(flip * len(y))), replace=False)
    codes = taxonomy.codes()
    for i in flipped_rows:
        y.iloc[i, 0] = rng.choice([c for c in codes if c != y.iloc[i, 0]])
    flipped = {str(p) for p in x["productid"].iloc[flipped_rows]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x.to_csv(tmp / "X.csv")
        y.to_csv(tmp / "Y.csv")
        ws = Workspace(tmp / "ws")
        import_challenge(ws, tmp / "X.csv", tmp / "Y.csv")
        t = time.perf_counter()
        report = detect_label_issues(ws, folds=folds, seed=seed)
        seconds = time.perf_counter() - t
        ranked = [r["product_id"] for r in label_issues(ws)]
        ws.close()
    flagged = set(ranked)
    top = set(ranked[: len(flipped)])
    return {"seed": seed, "products": report.n_products, "flipped": len(flipped), "flagged": len(flagged),
            "recall": len(flagged & flipped) / len(flipped), "precision": len(flagged & flipped) / max(1, len(flagged)),
            "precision_at_k": len(top & flipped) / max(1, len(top)), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flip", type=float, default=0.10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args(argv)
    rows = [run_once(args.flip, args.folds, int(s)) for s in args.seeds.split(",")]
    print(f"{'seed':>4} {'products':>8} {'flipped':>7} {'flagged':>7} {'recall':>7} {'precision':>9} "
          f"{'prec@k':>7} {'time s':>7}")
    for r in rows:
        print(f"{r['seed']:>4} {r['products']:>8} {r['flipped']:>7} {r['flagged']:>7} {r['recall']:>7.0%} "
              f"{r['precision']:>9.0%} {r['precision_at_k']:>7.0%} {r['seconds']:>7.1f}")
    med = pd.DataFrame(rows).median(numeric_only=True)
    print(f"median: recall {med['recall']:.0%}, precision {med['precision']:.0%} (flip rate {args.flip:.0%}), "
          f"precision@k {med['precision_at_k']:.0%}, {med['seconds']:.0f} s per detection ({args.folds} folds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
