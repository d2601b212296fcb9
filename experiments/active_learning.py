"""Active-learning simulation on the shared Rakuten sample: how many labels does each queue need?

Setup (all seeded):
* The sample's products with a title (~1,940, 420 with an image) are split once, stratified, into a
  fixed held-out part (30 %) and a pool (70 %). Every curve point is the weighted F1 on the
  held-out part.
* Each run starts from a small labelled seed drawn from the pool (10 % per category, at least 2
  per category, so the calibrated text model can fit), then repeats: fit the models on the
  labelled products, score the unlabelled pool, let the strategy pick a batch, and have the
  simulated reviewer answer with the true labels, until the pool is exhausted.
* Strategies are the app's own (`labeler.strategies`): least_confidence, margin, entropy,
  disagreement (text top-1 != image top-1; a filter, so the batch is filled up with least
  confidence once fewer disagreeing products are left), random. Each seed changes the labelled
  seed, the random order and the tie-breaking.
* Full-data F1: the same models fitted on the whole pool. The table gives the labels each strategy
  needs to reach 95 % of it (first curve point at or above; median over seeds) and the ratio to
  random sampling.

Models: the text model is models/text.py's TextClassifier, refitted from scratch at every round
on the labelled products, with every product's text as unlabelled input (its vocabulary/IDF; never
a label), as a workspace's retrain does. `--text reference` instead uses the reference recipe
(TF-IDF word 1-2 + char_wb 3-5, calibrated LinearSVC) with its TF-IDF fitted once on the pool's
texts and only the SVM refitted (faster, older model). The image part, a fast configuration (say
so when quoting numbers): models/image.py's ImageEnsemble on cached backbone features (lite2,
lite1, lite0, extracted once into /tmp/labeler-bench/al-features) with logistic heads for all
three voters (the MLP and XGBoost heads take minutes per fit here, see bench_scale.py), fused
with models/fusion.py's log-linear fusion at its default parameters (train_version fits them on
out-of-fold predictions, 5 more text fits per round: too slow for ~200 rounds).
`--no-image` runs text-only (no disagreement strategy). BLAS is held to one thread (see main).

    python -m experiments.active_learning                       # full run (~10-15 min on 2 cores)
    python -m experiments.active_learning --seeds 1 --batch 200 # quick look

Outputs: experiments/out/active_learning.csv (one row per strategy, seed, round), active_learning.png
(weighted F1 against labels used, mean over seeds with min-max band), active_learning.md (table).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC

from bench.common import SAMPLE, image_features, load_sample
from labeler import strategies, taxonomy
from models.predictor import align
from models.text import TextClassifier, TextConfig, product_texts
from models.text_prior import read_category_texts

OUT = Path(__file__).resolve().parent / "out"
STRATEGIES = ("least_confidence", "margin", "entropy", "disagreement", "random")
log = logging.getLogger("active_learning")


@dataclass
class Data:
    ids: np.ndarray               # (n,) product ids
    y: np.ndarray                 # (n,) true category codes
    df: pd.DataFrame              # products: id, title, description, image_path, label
    Z: object                     # (n, vocab) sparse TF-IDF of every product ("reference" text model only)
    has_image: np.ndarray         # (n,) bool
    image_feats: dict[str, np.ndarray] | None   # voter -> (n, dim); rows without image are zeros
    pool: np.ndarray              # indices of the pool
    test: np.ndarray              # indices of the held-out part


# -- data -----------------------------------------------------------------------------------------
def prepare(sample_dir: Path, *, use_image: bool, text: str = "real", split_seed: int = 0) -> tuple[Data, list[str]]:
    df = load_sample(sample_dir)
    y = df["label"].to_numpy()
    pool, test = train_test_split(np.arange(len(df)), test_size=0.3, stratify=y, random_state=split_seed)
    pool, test = np.sort(pool), np.sort(test)
    Z = None
    if text == "reference":
        texts = np.array(product_texts(df), dtype=object)
        vectorizer = TextClassifier(config=TextConfig())._features()
        vectorizer.fit(texts[pool].tolist())    # unsupervised: the pool's texts, no labels, no test texts
        Z = vectorizer.transform(texts.tolist()).tocsr()
    feats, has_image, voters = (None, np.zeros(len(df), bool), [])
    if use_image:
        feats, has_image, voters = image_features(df)
    return Data(ids=df["id"].to_numpy(), y=y, df=df, Z=Z, has_image=np.asarray(has_image, bool), image_feats=feats,
                pool=pool, test=test), voters


# -- models ---------------------------------------------------------------------------------------
class Models:
    """Fit on labelled indices, predict (n_eval, 27) text / image / fused probabilities."""

    def __init__(self, data: Data, voters: list[str], text: str = "real", C: float = TextConfig().C):
        self.data, self.voters, self.text, self.C = data, voters, text, C
        self.codes = taxonomy.codes()
        self.timings: dict[str, float] = {"text_fit": 0.0, "image_fit": 0.0, "predict": 0.0}

    def fit_predict(self, labelled: np.ndarray, evaluate: np.ndarray) -> dict[str, np.ndarray]:
        d = self.data
        y = d.y[labelled]
        clock = time.perf_counter()
        if self.text == "real":
            # the shipped model, as train_version uses it; every product's text (never a label) is
            # unlabelled input, as in a workspace, so predicting them triggers no transductive refit
            text_model = TextClassifier(categories=read_category_texts(taxonomy.TAXONOMY_PATH)).fit(d.df.iloc[labelled], y, X_unlabeled=d.df)
            clock = self._tick("text_fit", clock)
            text = align(text_model.predict_proba(d.df.iloc[evaluate]), text_model.classes_, self.codes)
        else:
            folds = max(2, min(3, int(np.unique(y, return_counts=True)[1].min())))
            text_model = CalibratedClassifierCV(LinearSVC(C=self.C, random_state=0), cv=folds, method="sigmoid")
            text_model.fit(d.Z[labelled], y)
            clock = self._tick("text_fit", clock)
            text = align(text_model.predict_proba(d.Z[evaluate]), text_model.classes_, self.codes)
        out = {"text": text, "image": None, "fused": text, "has_image": d.has_image[evaluate]}
        clock = self._tick("predict", clock)
        img_lab = labelled[d.has_image[labelled]]
        if d.image_feats is None or len(np.unique(d.y[img_lab])) < 2:
            return out
        from models.fusion import Fusion
        from models.image import ImageEnsemble, VoterSpec
        specs = [VoterSpec(name.split("+")[0], "logistic", name=name) for name in self.voters]
        ens = ImageEnsemble(voters=specs, codes=self.codes).fit({k: v[img_lab] for k, v in d.image_feats.items()}, d.y[img_lab])
        clock = self._tick("image_fit", clock)
        mask = d.has_image[evaluate]
        voters = {k: np.zeros((len(evaluate), len(self.codes))) for k in self.voters}
        image = np.zeros((len(evaluate), len(self.codes)))
        if mask.any():
            part = ens.voter_proba({k: v[evaluate[mask]] for k, v in d.image_feats.items()})
            for k, p in part.items():
                voters[k][mask] = p
            image[mask] = ens.vote(part)
        out.update(image=image, fused=Fusion(voter_names=self.voters).fuse(text, image, mask, voters=voters))
        self._tick("predict", clock)
        return out

    def _tick(self, what: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[what] += now - since
        return now


def scores_for(name: str, probs: dict[str, np.ndarray], seed: int) -> np.ndarray:
    fused = probs["fused"]
    if name == "disagreement":
        ctx = strategies.Context.from_arrays(text_probs=probs["text"], image_probs=probs["image"],
                                             has_image=probs["has_image"])
        return strategies.disagreement(fused, ctx)
    return strategies.get(name)(fused, strategies.Context(seed=seed))


def pick(name: str, probs: dict[str, np.ndarray], k: int, seed: int) -> np.ndarray:
    """Positions (into the unlabelled rows) of the next batch; disagreement is topped up by least confidence."""
    first = strategies.rank(scores_for(name, probs, seed), seed=seed)[:k]
    if len(first) < k:
        rest = strategies.rank(strategies.least_confidence(probs["fused"]), seed=seed)
        rest = rest[~np.isin(rest, first)][: k - len(first)]
        first = np.concatenate([first, rest])
    return first


def weighted_f1(y: np.ndarray, probs: np.ndarray, codes: list[int]) -> dict[str, float]:
    pred = np.asarray(codes)[np.argmax(probs, axis=1)]
    return {"weighted_f1": f1_score(y, pred, average="weighted", zero_division=0),
            "macro_f1": f1_score(y, pred, average="macro", zero_division=0),
            "accuracy": accuracy_score(y, pred)}


def initial_seed(data: Data, frac: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = []
    y_pool = data.y[data.pool]
    for c in np.unique(y_pool):
        members = data.pool[y_pool == c]
        n = min(len(members), max(2, int(round(frac * len(members)))))
        chosen.extend(rng.choice(members, size=n, replace=False).tolist())
    return np.array(sorted(chosen))


def simulate(data: Data, models: Models, strategy: str, seed: int, *, seed_frac: float, batch: int,
             max_labels: int | None = None) -> list[dict]:
    labelled = initial_seed(data, seed_frac, seed)
    rows, rnd = [], 0
    limit = max_labels or len(data.pool)
    while True:
        unlabelled = np.setdiff1d(data.pool, labelled)
        probs = models.fit_predict(labelled, np.concatenate([data.test, unlabelled]))
        nt = len(data.test)
        test_probs = {k: (v[:nt] if v is not None else None) for k, v in probs.items()}
        row = {"strategy": strategy, "seed": seed, "round": rnd, "labels": len(labelled),
               **{f"fused_{k}": v for k, v in weighted_f1(data.y[data.test], test_probs["fused"], models.codes).items()},
               "text_weighted_f1": weighted_f1(data.y[data.test], test_probs["text"], models.codes)["weighted_f1"]}
        rows.append(row)
        if len(unlabelled) == 0 or len(labelled) >= limit:
            return rows
        pool_probs = {k: (v[nt:] if v is not None else None) for k, v in probs.items()}
        k = min(batch, len(unlabelled), limit - len(labelled))
        chosen = pick(strategy, pool_probs, k, seed=seed * 1000 + rnd)
        labelled = np.sort(np.concatenate([labelled, unlabelled[chosen]]))   # the reviewer answers: true labels
        rnd += 1


# -- reporting ------------------------------------------------------------------------------------
def labels_to_reach(curve: pd.DataFrame, target: float, metric: str) -> float:
    """Labels at the first crossing of `target`, linearly interpolated between curve points."""
    x, f = curve["labels"].to_numpy(float), curve[metric].to_numpy(float)
    above = np.flatnonzero(f >= target)
    if not len(above):
        return float("nan")
    i = above[0]
    if i == 0:
        return float(x[0])
    return float(x[i - 1] + (target - f[i - 1]) / (f[i] - f[i - 1]) * (x[i] - x[i - 1]))


def summarise(df: pd.DataFrame, full: float, metric: str, pool_size: int) -> pd.DataFrame:
    target = 0.95 * full
    out = []
    for name, g in df.groupby("strategy", sort=False):
        per_seed = [labels_to_reach(c.sort_values("labels"), target, metric) for _, c in g.groupby("seed")]
        reached = [v for v in per_seed if v == v]
        out.append({"strategy": name, "labels_median": float(np.median(reached)) if len(reached) == len(per_seed)
                    else float("nan"), "per_seed": per_seed, "seeds_reached": f"{len(reached)}/{len(per_seed)}",
                    "share_of_pool": (np.median(reached) / pool_size) if len(reached) == len(per_seed) else float("nan")})
    table = pd.DataFrame(out)
    rnd = table.loc[table["strategy"] == "random", "labels_median"]
    base = float(rnd.iloc[0]) if len(rnd) else float("nan")
    table["ratio_to_random"] = table["labels_median"] / base
    return table


def area_under_curve(df: pd.DataFrame, metric: str) -> pd.Series:
    """Mean F1 over the curve (same label grid for every strategy): a threshold-free comparison."""
    return df.groupby("strategy", sort=False)[metric].mean()


def plot(df: pd.DataFrame, full: float, metric: str, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, g in df.groupby("strategy", sort=False):
        stats = g.groupby("labels")[metric].agg(["mean", "min", "max"]).reset_index()
        line, = ax.plot(stats["labels"], stats["mean"], marker="o", ms=3, label=name)
        ax.fill_between(stats["labels"], stats["min"], stats["max"], color=line.get_color(), alpha=0.15)
    ax.axhline(full, color="black", lw=1, ls="--", label=f"full pool ({full:.3f})")
    ax.axhline(0.95 * full, color="grey", lw=1, ls=":", label="95 % of full")
    ax.set_xlabel("labels used (seed + reviewed)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} on held-out part")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seed-frac", type=float, default=0.10)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--no-image", action="store_true", help="text model only (no disagreement strategy)")
    ap.add_argument("--text", choices=("real", "reference"), default="real",
                    help="real: models/text.py's TextClassifier refitted every round; reference: the "
                         "reference recipe with its TF-IDF fitted once, only the calibrated SVM refitted")
    ap.add_argument("--max-labels", type=int, default=None, help="stop a run at this many labels")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", category=UserWarning)
    started = time.perf_counter()
    from threadpoolctl import threadpool_limits
    # One BLAS thread: the per-round problems are small, and on this shared 2-core machine two
    # OpenBLAS threads spin against each other (a 300x1280 logistic head: 13 s vs 0.2 s).
    threadpool_limits(1)

    use_image = not args.no_image
    try:
        data, voters = prepare(args.sample, use_image=use_image, text=args.text)
    except Exception as exc:  # the image part must not stop the text-only simulation
        if not use_image:
            raise
        log.warning("image features unavailable (%s): running text-only strategies", exc)
        use_image = False
        data, voters = prepare(args.sample, use_image=False, text=args.text)
    names = [s for s in args.strategies.split(",") if s]
    if not use_image and "disagreement" in names:
        names.remove("disagreement")
        log.warning("no image model: the disagreement strategy needs one and is left out")
    metric = "fused_weighted_f1"
    models = Models(data, voters, text=args.text)
    full = models.fit_predict(data.pool, data.test)
    full_scores = weighted_f1(data.y[data.test], full["fused"], models.codes)
    full_text = weighted_f1(data.y[data.test], full["text"], models.codes)["weighted_f1"]
    log.info("products %d (pool %d, held-out %d, %d with image); full-pool weighted F1 fused %.4f, text %.4f "
             "(prep %.0f s)", len(data.y), len(data.pool), len(data.test), data.has_image.sum(),
             full_scores["weighted_f1"], full_text, time.perf_counter() - started)

    rows = []
    from tqdm import tqdm
    runs = [(s, seed) for seed in range(args.seeds) for s in names]
    for name, seed in tqdm(runs, desc="simulations", file=sys.stderr):
        rows += simulate(data, models, name, seed, seed_frac=args.seed_frac, batch=args.batch,
                         max_labels=args.max_labels)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path, md_path = (args.out / "active_learning.csv", args.out / "active_learning.png",
                                   args.out / "active_learning.md")
    df.to_csv(csv_path, index=False)
    table = summarise(df, full_scores["weighted_f1"], metric, len(data.pool))
    text_table = summarise(df, full_text, "text_weighted_f1", len(data.pool))
    auc = area_under_curve(df, metric)
    title = (f"Active learning on the Rakuten sample ({len(data.pool)} pool, {len(data.test)} held out, "
             f"{args.seeds} seeds, batch {args.batch})")
    plot(df, full_scores["weighted_f1"], metric, png_path, title)

    lines = [f"# Active-learning simulation ({'text + image fusion' if use_image else 'text only'}; text model: "
             f"{args.text}; image heads: logistic)", "",
             f"pool {len(data.pool)} products, held-out {len(data.test)}, seed {args.seed_frac:.0%} per category "
             f"(>= 2), batch {args.batch}, {args.seeds} seeds; full-pool weighted F1 fused "
             f"{full_scores['weighted_f1']:.4f} (text only {full_text:.4f}); target 95 % = "
             f"{0.95 * full_scores['weighted_f1']:.4f}", "",
             "| strategy | labels to 95 % (median) | per seed | share of pool | ratio to random | mean F1 over curve |",
             "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.strategy} | {r.labels_median:.0f} | {', '.join('-' if v != v else f'{v:.0f}' for v in r.per_seed)} "
                     f"| {r.share_of_pool:.0%} | {r.ratio_to_random:.2f} | {auc[r.strategy]:.4f} |")
    lines += ["", "Text-only F1 against its own full-pool value (same runs):", "",
              "| strategy | labels to 95 % (median) | ratio to random |", "|---|---|---|"]
    for r in text_table.itertuples():
        lines.append(f"| {r.strategy} | {r.labels_median:.0f} | {r.ratio_to_random:.2f} |")
    t = models.timings
    lines += ["", f"time: {time.perf_counter() - started:.0f} s total; text fits {t['text_fit']:.0f} s, "
              f"image fits {t['image_fit']:.0f} s, predictions+fusion {t['predict']:.0f} s"]
    md_path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {csv_path}\n      {png_path}\n      {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
