"""Fusion variants on the same out-of-fold rows, scored on held-out imaged products of the sample.

Per held-out split (bench_image's stratified quarter of the imaged products, unlabelled in the
workspace) the out-of-fold rows, the final text model and the image voters are computed once;
then each fusion variant is fitted on those rows and scored on the quarter. Variants: no
per-category offsets (the fusion before), and offsets under several shrinkages. A second table
fits on random subsets of the out-of-fold rows (a workspace with fewer reviewed photos), where
the offsets are only fitted from 4 rows a category on average (`fusion.OFFSET_MIN_ROWS`).

    python -m experiments.fusion_offsets --seeds 0 1 2 3 4 5     # ~7 min on 2 cores
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from bench.common import split_workspace, table
from labeler import taxonomy, training
from models.fusion import OFFSET_L2, OFFSET_MIN_ROWS, Fusion
from models.image import VOTERS_SETTING, ImageEnsemble, voters_from_config
from models.predictor import align
from store.features import WorkspaceFeatures

SHRINKAGES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def split_rows(workdir: Path, seed: int) -> dict:
    """Out-of-fold rows and held-out predictions of one split: everything but the fusion."""
    ws, truth = split_workspace(workdir, seed)
    df, y, _ = training.labelled_frame(ws)
    unlabelled = training.products_frame(ws)
    ens = ImageEnsemble(voters=voters_from_config(ws.get_setting(VOTERS_SETTING)), codes=taxonomy.codes())
    feats, ok, _ = ens.product_features(df, feature_store=WorkspaceFeatures(ws))
    text_oof, voters_oof, y_index, _ = training.out_of_fold_rows(ens, feats, ok, df, y, unlabelled=unlabelled,
                                                                 progress=lambda f, d: None)
    ens.fit({k: v[ok] for k, v in feats.items()}, y[ok])
    text = training.text_model().fit(df, y, X_unlabeled=unlabelled)
    test = training.products_frame(ws, list(truth))
    img = ens.predict_products(test, feature_store=WorkspaceFeatures(ws))
    return {"oof": (text_oof, voters_oof, y_index), "prior": training.category_prior(y),
            "text": align(text.predict_proba(test), text.classes_, taxonomy.codes()), "voters": img["voters"],
            "has_image": img["has_image"], "y": np.searchsorted(taxonomy.codes(), [truth[i] for i in test["id"]]),
            "names": [s.label for s in ens.voters]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rakuten-image-bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, nargs="*", default=[30, 60, 120, 200],
                    help="out-of-fold subset sizes for the second table (3 draws per split)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variants = {"no offsets (before)": None, **{f"offsets, L2 {s:g}" + (" (default)" if s == OFFSET_L2 else ""): s
                                                for s in SHRINKAGES}}
    fused: dict[str, list[float]] = {k: [] for k in ["text only", *variants]}
    vote: dict[str, list[float]] = {k: [] for k in variants}
    few: dict[tuple[int, str], list[float]] = {}
    for seed in args.seeds:
        print(f"split {seed}: out-of-fold rows, final models...", flush=True)
        r = split_rows(args.workdir, seed)
        wf1 = lambda p: float(f1_score(r["y"], p.argmax(1), average="weighted"))
        fused["text only"].append(wf1(r["text"]))
        for name, l2 in variants.items():
            f = Fusion(voter_names=r["names"], text_prior=r["prior"], offset_l2=l2).fit(*r["oof"])
            fused[name].append(wf1(f.fuse(r["text"], None, r["has_image"], voters=r["voters"])))
            vote[name].append(wf1(f.image_vote(r["voters"])))
        rng = np.random.default_rng(seed)
        text_oof, voters_oof, y_index = r["oof"]
        for n in (m for m in args.rows if m < len(y_index)):
            for _ in range(3):
                idx = rng.choice(len(y_index), n, replace=False)
                rows = (text_oof[idx], {k: v[idx] for k, v in voters_oof.items()}, y_index[idx])
                for name, l2, min_rows in (("no offsets", None, 0), ("offsets always", OFFSET_L2, 0),
                                           ("default", OFFSET_L2, OFFSET_MIN_ROWS)):
                    f = Fusion(voter_names=r["names"], text_prior=r["prior"], offset_l2=l2,
                               offset_min_rows=min_rows).fit(*rows)
                    few.setdefault((n, name), []).append(wf1(f.fuse(r["text"], None, r["has_image"], voters=r["voters"])))
    base = fused["no offsets (before)"]
    rows = []
    for name, values in fused.items():
        gain = [a - b for a, b in zip(values, base)]
        rows.append([name, *[f"{v:.3f}" for v in values], f"{statistics.mean(values):.3f}",
                     f"{statistics.median(values):.3f}", f"{statistics.mean(gain):+.3f}",
                     f"{sum(g > 0 for g in gain)}/{len(gain)}", f"{statistics.mean(vote[name]):.3f}" if name in vote else ""])
    table(f"Fused weighted F1 on held-out imaged products ({len(r['y'])} per split), fusion variants fitted on the "
          "same out-of-fold rows", ["variant", *[f"split {s}" for s in args.seeds], "mean", "median",
                                    "vs before", "better on", "image vote mean"], rows)
    sizes = sorted({n for n, _ in few})
    if sizes:
        names = ["no offsets", "offsets always", "default"]
        table(f"Fused weighted F1, fusion fitted on n random out-of-fold rows (mean of {len(args.seeds)} splits x 3 draws; "
              f"default = offsets from {OFFSET_MIN_ROWS * 27} rows)", ["rows", *names],
              [[n, *[f"{statistics.mean(few[(n, k)]):.3f}" for k in names]] for n in sizes])


if __name__ == "__main__":
    main()
