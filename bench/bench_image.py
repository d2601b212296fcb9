"""Image ensemble benchmark on the shared Rakuten sample (printed tables, medians and ratios).

    python -m bench.bench_image [--images 96] [--workdir /tmp/rakuten-image-bench]
    python -m bench.bench_image --throughput-only --images 420 --batch 64     # on a GPU
    python -m bench.bench_image --skip-throughput --learning-curve            # F1 vs training photos
    python -m bench.bench_image --quick                                       # the extraction table on 4 images

1. Feature extraction images/s per backbone through the pipeline (decode + resize, in threads or on
   the GPU, + batched forward + flip) next to the bare forward on the same, already decoded batch.
2. Grad-CAM / Ablation-CAM ms per voter per image.
3. Predict latency per product (text + 3 voters + fusion, features not cached).
4. Image-only, text-only and fused weighted F1 on a stratified split of the products with an image:
   the held-out quarter is imported without labels, `train_version` fits everything on the rest
   (text on every other product, voters and fusion on the other imaged ones), then predicts it.
5. (--learning-curve) Image-only F1 on the same quarters with the voters refitted on a half,
   three quarters and all of the training photos (the version's vote weights kept): how much
   more labelled photos would give.

The workspace (and so the feature cache) persists under --workdir: the first run extracts the
420 images' features once per backbone, later runs reuse them.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.common import image_files, parse, parser, split_workspace, table
from labeler import taxonomy
from models.backbones import load_backbone
from models.features import embed, extract_features, open_image
from models.image import soft_vote
from store.features import WorkspaceFeatures


def bench_extraction(n: int, batch: int, repeats: int) -> None:
    from models import features
    from models.image import DEFAULT_VOTERS

    rows = []
    paths = [str(p) for p in image_files(n)]
    cuda = torch.cuda.is_available()
    default_ahead = features.COLLATE_AHEAD
    for spec in DEFAULT_VOTERS:          # each voter's backbone at the resolution it runs at
        name = spec.backbone
        bb = load_backbone(name, weights=spec.weights, input_size=spec.input_size)
        tf = bb.pixel_transform()     # the same uint8 batch the pipeline feeds, normalised on the device
        x = torch.stack([tf(open_image(p)) for p in paths])
        embed(bb, x[:2])  # warm-up
        bare, pipe, serial = [], [], []
        for _ in range(repeats):
            t = time.perf_counter()
            for s in range(0, n, batch):
                embed(bb, x[s:s + batch], flip=True, stages=spec.stages)
            bare.append(n / (time.perf_counter() - t))
            for ahead, out in ((default_ahead, pipe), (0, serial)) if cuda else ((default_ahead, pipe),):
                features.COLLATE_AHEAD = ahead
                t = time.perf_counter()
                got = extract_features(bb, paths, cache=None, flip=True, batch_size=batch, progress=lambda f, d: None,
                                       stages=spec.stages)
                out.append(n / (time.perf_counter() - t))
                assert got.ok.all()
            features.COLLATE_AHEAD = default_ahead
        b, p = statistics.median(bare), statistics.median(pipe)
        row = [name, bb.data_config["input_size"][-1], f"{b:.2f}", f"{p:.2f}", f"{100 * p / b:.0f} %"]
        if cuda:
            row += [f"{statistics.median(serial):.2f}", f"{100 * statistics.median(serial) / b:.0f} %"]
        rows.append(row)
    header = ["backbone", "px", "bare model img/s", "pipeline img/s", "pipeline/bare"]
    if cuda:
        header += ["decode not overlapped img/s", "its /bare"]
    table(f"Feature extraction, {n} images, batch {batch}, flip TTA, {torch.get_num_threads()} threads, "
          f"{'CUDA' if cuda else 'CPU'} (median of {repeats})", header, rows)


def bench_quality(workdir: Path, seed: int, reuse_model: bool = False) -> tuple:
    from sklearn.metrics import f1_score

    from labeler import training

    ws, truth = split_workspace(workdir, seed)
    t = time.perf_counter()
    if reuse_model and ws.live_version():
        version = ws.model_version(ws.live_version())
        print(f"  reusing model version {version['id']} (--reuse-model)")
    else:
        version = training.train_version(ws, progress=lambda f, d: print(f"  {100 * f:3.0f}% {d}", flush=True))
    train_s = version.get("duration_s") or time.perf_counter() - t
    bundle = training.live_bundle(ws, version["id"])
    test = training.products_frame(ws, list(truth))
    out = bundle.predict(test, feature_store=WorkspaceFeatures(ws))
    codes = np.asarray(taxonomy.codes())
    y = np.array([truth[i] for i in test["id"]])
    f1 = {k: f1_score(y, codes[out[k].argmax(1)], average="weighted") for k in ("text", "image", "fused")}
    voters = {k: f1_score(y, codes[v.argmax(1)], average="weighted") for k, v in out["voters"].items()}
    # the study's recipe on the same voters: equal vote weights, k = 3, then 0.6 image + 0.4 text
    study_vote = soft_vote(list(out["voters"].values()), [1.0] * len(out["voters"]), 3.0)
    study = {"vote": f1_score(y, codes[study_vote.argmax(1)], average="weighted"),
             "fused": f1_score(y, codes[(0.6 * study_vote + 0.4 * out["text"]).argmax(1)], average="weighted")}
    rows = [["text only", f"{f1['text']:.3f}"],
            *[[f"  voter {k}", f"{v:.3f}"] for k, v in voters.items()],
            ["image: study vote (equal weights, k=3)", f"{study['vote']:.3f}"],
            ["image ensemble (learned vote)", f"{f1['image']:.3f}"],
            ["fused: study 0.6 image + 0.4 text", f"{study['fused']:.3f}"],
            ["fused: learned fusion", f"{f1['fused']:.3f}"]]
    table(f"Weighted F1 on {len(y)} held-out imaged products (seed {seed}; trained on {version['n_train']} "
          f"products, {version['metrics'].get('n_images')} with an image; train_version {train_s:.0f} s)",
          ["model", "weighted F1"], rows)
    print("fusion:", version["config"].get("fusion"))
    return ws, bundle, test


def bench_learning_curve(workdir: Path, seeds: list[int], fractions=(0.5, 0.75, 1.0), draws: int = 2) -> None:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    from labeler import training
    from models.image import ImageEnsemble

    codes = np.asarray(taxonomy.codes())
    scores: dict[float, list[float]] = {f: [] for f in fractions}
    n_photos: dict[float, int] = {}
    for seed in seeds:
        ws, truth = split_workspace(workdir, seed)
        ens = training.live_bundle(ws).image
        df, y, _ = training.labelled_frame(ws)
        feats, ok, _ = ens.product_features(df, feature_store=WorkspaceFeatures(ws))
        feats, y = {k: v[ok] for k, v in feats.items()}, y[ok]
        test = training.products_frame(ws, list(truth))
        test_feats = ens.product_features(test, feature_store=WorkspaceFeatures(ws))[0]
        y_test = np.array([truth[i] for i in test["id"]])
        for f in fractions:
            for draw in range(draws if f < 1 else 1):
                rows = np.arange(len(y)) if f == 1 else \
                    train_test_split(np.arange(len(y)), train_size=f, stratify=y, random_state=draw)[0]
                part = ImageEnsemble(voters=ens.voters, codes=list(codes)).fit({k: v[rows] for k, v in feats.items()}, y[rows])
                part.set_vote(ens.vote_weights_, ens.sharpen_k_)
                scores[f].append(f1_score(y_test, codes[part.predict_proba(test_feats).argmax(1)], average="weighted"))
                n_photos[f] = len(rows)
    table(f"Image-only weighted F1 vs training photos (held-out quarters, splits {seeds}; {draws} draws below all)",
          ["training photos", "mean F1", "min", "max"],
          [[n_photos[f], f"{statistics.mean(v):.3f}", f"{min(v):.3f}", f"{max(v):.3f}"] for f, v in scores.items()])


def bench_explain_and_predict(bundle, test: pd.DataFrame, n: int) -> None:
    from models.explain import voter_heatmap

    ens = bundle.image
    rows = []
    picks = test.head(n)
    for spec in ens.voters:
        times = []
        for _, p in picks.iterrows():
            img = open_image(p["image_path"])
            t = time.perf_counter()
            voter_heatmap(ens, spec, img, int(ens.heads_[spec.label].classes_[0]))
            times.append(1000 * (time.perf_counter() - t))
        rows.append([spec.label, "Ablation-CAM" if spec.head == "xgboost" else "Grad-CAM", f"{statistics.median(times):.0f}"])
    table(f"Heatmap ms per voter per image (median of {n})", ["voter", "method", "ms"], rows)
    lat = []
    for i in range(n):
        one = picks.iloc[[i]]
        t = time.perf_counter()
        bundle.predict(one, feature_store=None)  # features computed afresh: a product never seen
        lat.append(1000 * (time.perf_counter() - t))
    table(f"Predict latency per product, text + {len(ens.voters)} voters + fusion, uncached features (median of {n})",
          ["median ms", "min ms", "max ms"], [[f"{statistics.median(lat):.0f}", f"{min(lat):.0f}", f"{max(lat):.0f}"]])


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=96, help="images for the throughput table")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--explain", type=int, default=5, help="products for heatmap and latency timings")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="held-out splits (default 0 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rakuten-image-bench"))
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the extraction table (on a GPU: --images 420 --batch 64)")
    ap.add_argument("--learning-curve", action="store_true",
                    help="after the F1 table, image-only F1 with half / three quarters / all training photos")
    ap.add_argument("--reuse-model", action="store_true",
                    help="score with each split's live model version instead of training a new one")
    args = parse(ap, quick={"images": 4, "batch": 4, "repeats": 1, "throughput_only": True})
    torch.set_num_threads(args.threads)
    if not args.skip_throughput:
        bench_extraction(args.images, args.batch, args.repeats)
    if args.throughput_only:
        return
    for seed in args.seeds:
        _, bundle, test = bench_quality(args.workdir, seed, args.reuse_model)
    if args.learning_curve:
        bench_learning_curve(args.workdir, args.seeds)
    bench_explain_and_predict(bundle, test, args.explain)


if __name__ == "__main__":
    main()
