"""Do the guarantees hold on products whose labels the model never saw?

For each seed, the shared sample is cut into four disjoint quarters (by a seeded hash of the
product id). For each quarter, a workspace imports every product but the labels of the other
three quarters only, and `train` runs as the CLI does. The auto-accept threshold for each target
precision (0.90 / 0.95 / 0.98, 95 % confidence) and the conformal quantile (nominal 90 %) are
chosen from the version's out-of-fold predictions of its labelled products alone; they are then
applied to the held-out quarter, whose true labels decide the precision reached, the coverage
(share auto-accepted), the prediction sets' coverage and mean size. Nothing is chosen on the
quarter that is reported.

    python -m experiments.auto_accept --text-only              # text model only, seed 0 (4 trainings)
    python -m experiments.auto_accept --seeds 0 1              # with the image ensemble, 8 trainings
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
from labeler import taxonomy
from labeler.importer import import_challenge
from labeler import training
from models import honest
from store.workspace import Workspace

TARGETS = (0.90, 0.95, 0.98)


def _stored(ws: Workspace, version: str, ids: list[str]) -> np.ndarray:
    rows = {r["product_id"]: json.loads(r["probs"]) for r in ws.query(
        "SELECT product_id, probs FROM predictions WHERE model_version = ?", (version,))}
    return np.array([rows[i] for i in ids])


def run_split(x: pd.DataFrame, y: pd.DataFrame, held: np.ndarray, text_only: bool, tag: str) -> list[dict]:
    codes = taxonomy.codes()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x[~held].to_csv(tmp / "X.csv")
        y[~held].to_csv(tmp / "Y.csv")
        x[held].to_csv(tmp / "X_held.csv")        # the held-out quarter is imported without its labels
        ws = Workspace(tmp / "ws")
        images = None if text_only else SAMPLE / "images" / "image_train"
        import_challenge(ws, tmp / "X.csv", tmp / "Y.csv", images)
        import_challenge(ws, tmp / "X_held.csv", None, images)
        t = time.perf_counter()
        version = training.train_version(ws, notes=f"auto-accept bench {tag}")
        seconds = time.perf_counter() - t
        labels = ws.current_labels()
        train_ids = list(labels)
        pid = x["productid"].astype(str).to_numpy()
        truth = dict(zip(pid[held], y["prdtypecode"].to_numpy()[held]))
        test_ids = [i for i in truth if ws.product(i) is not None]
        oof = _stored(ws, version["id"], train_ids)
        oof_y = np.searchsorted(codes, [labels[i] for i in train_ids])
        test = _stored(ws, version["id"], test_ids)
        test_y = np.searchsorted(codes, [truth[i] for i in test_ids])
        conformal = honest.Conformal(**version["metrics"]["conformal"])
        ws.close()
    out = []
    right = test.argmax(1) == test_y
    sets = conformal.sets(test)
    for target in TARGETS:
        a = honest.guaranteed_threshold(oof.max(1), oof.argmax(1) == oof_y, target)
        auto = test.max(1) >= a.threshold if a.threshold is not None else np.zeros(len(test), bool)
        out.append({"split": tag, "target": target, "threshold": a.threshold, "coverage": float(auto.mean()),
                    "precision": float(right[auto].mean()) if auto.any() else None, "n_auto": int(auto.sum()),
                    "n_test": len(test), "n_train": len(train_ids), "train_s": round(seconds, 1),
                    "set_coverage": float(sets[np.arange(len(test)), test_y].mean()),
                    "set_size": float(sets.sum(1).mean())})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--text-only", action="store_true",
                    help="import without images: the text model alone (the image features take minutes on CPU)")
    args = ap.parse_args()
    x = pd.read_csv(SAMPLE / "X_train_update.csv", index_col=0)
    y = pd.read_csv(SAMPLE / "Y_train_CVw08PX.csv", index_col=0).loc[x.index]
    rows = []
    for seed in args.seeds:
        quarter = honest.product_folds(x["productid"].astype(str).tolist(), 4, seed=100 + seed)
        for q in range(4):
            rows += run_split(x, y, quarter == q, args.text_only, f"seed {seed} quarter {q}")
            r = rows[-1]
            print(f"  {r['split']}: trained on {r['n_train']} labels in {r['train_s']} s, {r['n_test']} held out",
                  flush=True)
    mode = "TEXT ONLY (imported without images)" if args.text_only else "text + image ensemble"
    df = pd.DataFrame(rows)
    print(f"\nauto-accept on held-out quarters ({mode}); {df['split'].nunique()} disjoint splits\n")
    print("| target | threshold (median, range) | coverage (mean, range) | precision reached (min, mean) "
          "| splits at or above target |\n|---:|---|---|---|---:|")
    for target, g in df.groupby("target"):
        t = g["threshold"].dropna()
        p = g["precision"].dropna()
        ok = int(((g["precision"] >= target) | g["precision"].isna()).sum())
        th = f"{t.median():.3f} ({t.min():.3f}-{t.max():.3f})" if len(t) else "none"
        print(f"| {target:.2f} | {th}{'' if len(t) == len(g) else f', none on {len(g) - len(t)}'} "
              f"| {g['coverage'].mean():.1%} ({g['coverage'].min():.1%}-{g['coverage'].max():.1%}) "
              f"| {p.min():.1%}, {p.mean():.1%} | {ok} of {len(g)} |" if len(p) else
              f"| {target:.2f} | {th} | 0 % | - | {ok} of {len(g)} |")
    s = df.drop_duplicates("split")
    print(f"\nconformal sets (RAPS), nominal 90 %: coverage {s['set_coverage'].mean():.1%} "
          f"({s['set_coverage'].min():.1%}-{s['set_coverage'].max():.1%}), mean set size "
          f"{s['set_size'].mean():.2f} ({s['set_size'].min():.2f}-{s['set_size'].max():.2f})")


if __name__ == "__main__":
    main()
