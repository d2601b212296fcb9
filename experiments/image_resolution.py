"""Image-only weighted F1 per backbone, input resolution and head (the sweep behind DEFAULT_VOTERS).

    python -m experiments.image_resolution                              # the default sweep
    python -m experiments.image_resolution --configs lite0@224 lite0@352 --heads logistic xgboost

For each backbone@size, the 420 imaged products of the shared sample go through the project's own
pipeline (`extract_features`, flip TTA); features are kept under --workdir as .npy so heads can be
compared without extracting again. Each head is scored by stratified 5-fold CV, mean of two fold
seeds. Prints one table; docs/image_model.md quotes it.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import SAMPLE, image_files, table
from labeler import taxonomy
from models.backbones import load_backbone
from models.features import extract_features
from models.image import make_head
from models.predictor import align

DEFAULT_CONFIGS = ["lite0@224", "lite0@352", "lite1@240", "lite1@400", "lite2@260", "lite2@400", "lite2@480"]
HEAD_PARAMS = {"logistic": {"C": 0.003}, "mlp": {}, "xgboost": {}}


def labels(paths: list[Path]) -> np.ndarray:
    x = pd.read_csv(SAMPLE / "X_train_update.csv", index_col=0)
    y = pd.read_csv(SAMPLE / "Y_train_CVw08PX.csv", index_col=0)
    by_product = dict(zip(x["productid"].astype(str), y.loc[x.index, "prdtypecode"]))
    return np.array([by_product[p.name.split("_product_")[1][:-4]] for p in paths])


def features(config: str, paths: list[Path], workdir: Path) -> tuple[np.ndarray, float | None]:
    """(n, dim) features of backbone@size, from --workdir or extracted now (then seconds taken)."""
    name, size = config.split("@")
    out = workdir / f"{name}_{size}.npy"
    if out.exists():
        return np.load(out), None
    bb = load_backbone(name, input_size=int(size))
    t = time.perf_counter()
    batch = extract_features(bb, [str(p) for p in paths], cache=None, flip=True, desc=f"features {config}")
    seconds = time.perf_counter() - t
    workdir.mkdir(parents=True, exist_ok=True)
    np.save(out, batch.vectors)
    return batch.vectors, seconds


def cv_f1(X: np.ndarray, y: np.ndarray, head: str, seeds=(7, 8)) -> float:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    codes = np.unique(y)
    scores = []
    for seed in seeds:
        proba = np.zeros((len(y), 27))
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y):
            model = make_head(head, HEAD_PARAMS[head]).fit(X[tr], y[tr])
            proba[te] = align(model.predict_proba(X[te]), model.classes_, taxonomy.codes())
        pred = np.asarray(taxonomy.codes())[proba.argmax(1)]
        scores.append(f1_score(y, pred, average="weighted", labels=codes))
    return statistics.mean(scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="backbone@size ...")
    ap.add_argument("--heads", nargs="+", default=["logistic"], choices=sorted(HEAD_PARAMS))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/labeler-bench/image-resolution"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    paths = image_files()
    y = labels(paths)
    rows = []
    for config in args.configs:
        X, seconds = features(config, paths, args.workdir)
        took = f"{len(paths) / seconds:.1f}" if seconds else "cached"
        rows.append([config, took, *[f"{cv_f1(X, y, h):.3f}" for h in args.heads]])
        print(" ".join(rows[-1]), flush=True)
    table(f"Image-only weighted F1, {len(paths)} imaged products, 5-fold CV (mean of 2 fold seeds), flip TTA",
          ["backbone@px", "extraction img/s", *args.heads], rows)
    print(f"\nfeatures kept under {args.workdir}")


if __name__ == "__main__":
    main()
