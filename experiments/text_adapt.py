"""Text weighted F1 of `predict` with and without --adapt, on held-out quarters of the sample.

    python -m experiments.text_adapt [--seeds 0 1] [--batch-size 512]

Each seed splits the sample's products (with a title) into 4 stratified quarters; each quarter in
turn is held out. The text model is fitted as `train` fits it (`labeler.training.text_model`:
taxonomy prior, every workspace text as unlabelled) on the other three quarters, then the held-out
quarter is scored as `predict` scores a file (batches of --batch-size):

* **pure** (default): each product scored alone by the fitted model, the same in any batch;
* **--adapt**: each batch's unseen texts refit the vocabulary, IDF and SVM first (the old default);
* **in training**: the quarter imported into the workspace without labels before `train`, so its
  texts shape the vocabulary at fit time (the transductive step, kept inside training), then pure.

Prints per split and the mean ± standard deviation over the 4 x len(seeds) splits, and the paired
difference against pure.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from bench.common import SAMPLE
from labeler.training import text_model


def load() -> tuple[pd.DataFrame, np.ndarray]:
    x = pd.read_csv(SAMPLE / "X_train_update.csv", index_col=0)
    y = pd.read_csv(SAMPLE / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"].loc[x.index]
    keep = x["designation"].fillna("").str.strip().ne("").to_numpy()
    df = pd.DataFrame({"title": x["designation"].fillna(""), "description": x["description"].fillna("")})
    return df[keep].reset_index(drop=True), y.to_numpy()[keep]


def predict_file(model, X: pd.DataFrame, batch_size: int, adapt: bool) -> np.ndarray:
    """Top-1 classes the way `predict` batches a file."""
    parts = [model.predict_proba(X.iloc[s:s + batch_size], adapt=adapt) for s in range(0, len(X), batch_size)]
    return model.classes_[np.vstack(parts).argmax(1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--quarters", type=int, nargs="+", default=[0, 1, 2, 3], help="which held-out quarters to run")
    args = ap.parse_args()
    X, y = load()
    modes = ("pure", "--adapt", "in training")
    scores: dict[str, list[float]] = {m: [] for m in modes}
    print(f"{len(y)} products, {len(np.unique(y))} categories; batch size {args.batch_size}")
    print(f"{'seed':>4} {'quarter':>7} {'n':>4}  " + "  ".join(f"{m:>11}" for m in modes) + "   fit s")
    for seed in args.seeds:
        for q, (tr, te) in enumerate(StratifiedKFold(4, shuffle=True, random_state=seed).split(X, y)):
            if q not in args.quarters:
                continue
            t = time.perf_counter()
            train, held = X.iloc[tr], X.iloc[te]
            model = text_model().fit(train, y[tr], X_unlabeled=train)          # the workspace: training products
            row = {"pure": predict_file(model, held, args.batch_size, False),
                   "--adapt": predict_file(model, held, args.batch_size, True)}
            both = text_model().fit(train, y[tr], X_unlabeled=pd.concat([train, held]))   # quarter imported unlabelled
            row["in training"] = predict_file(both, held, args.batch_size, False)
            for m in modes:
                scores[m].append(f1_score(y[te], row[m], average="weighted"))
            print(f"{seed:>4} {q:>7} {len(te):>4}  " + "  ".join(f"{scores[m][-1]:>11.4f}" for m in modes)
                  + f"   {time.perf_counter() - t:5.1f}", flush=True)
    print(f"\n| recipe | weighted F1, mean ± std over {len(scores['pure'])} held-out quarters | "
          "paired difference vs pure, mean ± std | better on |")
    print("|---|---|---|---|")
    base = np.array(scores["pure"])
    if len(base) < 2:
        return
    for m in modes:
        s = np.array(scores[m])
        d = s - base
        print(f"| {m} | {s.mean():.4f} ± {s.std(ddof=1):.4f} | {d.mean():+.4f} ± {d.std(ddof=1):.4f} | "
              f"{int((d > 0).sum())}/{len(d)} |")
    print(f"\nspread of pure across splits: min {min(base):.4f}, max {max(base):.4f}, "
          f"median {statistics.median(base):.4f}")


if __name__ == "__main__":
    main()
