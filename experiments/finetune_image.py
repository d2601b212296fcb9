"""Does fine-tuning the last backbone stages beat frozen features? Image-only weighted F1, 5-fold CV
over the shared sample's imaged products, per backbone, input size and fine-tuning recipe.

    python -m experiments.finetune_image                         # the sweep run on an H200 (GPU: ~7 min)
    python -m experiments.finetune_image --quick                 # lite0 at 96 px, 1 epoch: a CPU smoke run

Each fold fine-tunes on the other folds (`models.finetune`, linear probe then the last `stages`
trained), then scores the held-out fold twice: a logistic head (C=0.003, the default lite2 voter's)
on the fine-tuned model's pooled features, and the fine-tuned classifier itself. `stages=0,
epochs=0` is the frozen baseline, the default voters' recipe. Prints a table and writes
experiments/out/finetune_image.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.common import SAMPLE
from labeler import taxonomy
from models.backbones import normalise
from models.finetune import FinetuneConfig, finetune_backbone, load_pixels
from models.image import LogisticHead
from models.predictor import align
from labeler.training import _folds

SWEEP = [  # (backbone, px, [recipes]): the grid run on the H200 on 2026-11-26
    ("lite2", 480, [dict(stages=0, epochs=0), dict(stages=2, epochs=15), dict(stages=3, epochs=15),
                    dict(stages=3, epochs=10, lr=1e-4, head_lr=1e-3),
                    dict(stages=2, epochs=8, lr=5e-5, head_lr=5e-4, min_zoom=0.8),
                    dict(stages=4, epochs=20, lr=2e-4), dict(stages=7, epochs=20, lr=1e-4)]),
    ("lite1", 400, [dict(stages=0, epochs=0), dict(stages=3, epochs=15)]),
    ("lite0", 352, [dict(stages=0, epochs=0), dict(stages=3, epochs=15)]),
]
QUICK = [("lite0", 96, [dict(stages=0, epochs=0), dict(stages=2, epochs=1, batch_size=64)])]


def imaged_products() -> tuple[list[str], np.ndarray]:
    x = pd.read_csv(SAMPLE / "X_train_update.csv", index_col=0)
    y = pd.read_csv(SAMPLE / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"]
    files = {p.name.split("_product_")[1][:-4]: str(p) for p in (SAMPLE / "images" / "image_train").glob("*.jpg")}
    keep = x["productid"].astype(str).isin(files)
    return [files[str(p)] for p in x.loc[keep, "productid"]], y.loc[keep[keep].index].to_numpy()


@torch.no_grad()
def pooled_and_own(result, pixels: torch.Tensor, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Flip-averaged pooled features and the fine-tuned classifier's probabilities, all images."""
    model, clf = result.model.to(device).eval(), result.classifier.to(device)
    feats, probs = [], []
    for s in range(0, len(pixels), 64):
        x = normalise(pixels[s:s + 64].to(device), result.data_config).contiguous(memory_format=torch.channels_last)
        f = sum(model.forward_head(model.forward_features(v), pre_logits=True) for v in (x, torch.flip(x, dims=[-1]))) / 2
        feats.append(f.float().cpu())
        probs.append(torch.softmax(clf(f.float()), 1).cpu())
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="lite0 at 96 px, one epoch (CPU smoke run)")
    ap.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    args = ap.parse_args()
    from sklearn.metrics import f1_score

    device = "cuda" if torch.cuda.is_available() else "cpu"
    codes = np.array(taxonomy.codes())
    paths, y = imaged_products()
    folds = _folds(y, np.ones(len(y), bool), seed=args.seed)
    rows = []
    for backbone, size, recipes in (QUICK if args.quick else SWEEP):
        pixels, ok, problems = load_pixels(paths, size)
        yy, ff = y[ok], folds[ok]
        for recipe in recipes:
            config = FinetuneConfig(**recipe)
            head_p, own_p, secs = np.zeros((len(yy), 27)), np.zeros((len(yy), 27)), []
            for k in np.unique(ff):
                tr, te = ff != k, ff == k
                result = finetune_backbone(backbone, pixels[torch.as_tensor(np.where(tr)[0])], yy[tr], input_size=size,
                                           config=config, device=device)
                secs.append(result.seconds)
                feats, own = pooled_and_own(result, pixels, device)
                head = LogisticHead(C=0.003).fit(feats[tr], yy[tr])
                head_p[te] = align(head.predict_proba(feats[te]), head.classes_, codes)
                own_p[te] = align(own[te], result.classes, codes)
            f1 = {name: round(float(f1_score(yy, codes[p.argmax(1)], average="weighted")), 4)
                  for name, p in (("logistic", head_p), ("own", own_p))}
            rows.append({"backbone": backbone, "px": size, **recipe, **f1, "s_per_finetune": round(float(np.median(secs)), 1)})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune_image.json").write_text(json.dumps(rows, indent=1))
    print(f"\nImage-only weighted F1, 5-fold CV on {len(y)} imaged products, {device} "
          f"({torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU'})")
    print(f"{'backbone':9}{'px':>5}  {'recipe':48}{'logistic':>9}{'own':>7}{'s/fit':>7}")
    for r in rows:
        recipe = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("backbone", "px", "logistic", "own", "s_per_finetune"))
        print(f"{r['backbone']:9}{r['px']:>5}  {recipe:48}{r['logistic']:>9.3f}{r['own']:>7.3f}{r['s_per_finetune']:>7.1f}")
    print(f"results: {out / 'finetune_image.json'}")


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"{time.time() - t:.0f} s")
