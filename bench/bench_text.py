"""Text model benchmark: the reference recipe against the shipped TextClassifier.

    python -m bench.bench_text                      # 2k table (a few minutes)
    python -m bench.bench_text --scale 10000 85000  # + fit time of the shipped model at those sizes
    python -m bench.bench_text --quick              # one run on 600 products (seconds)

Table 1 (median of --runs runs): fit time on a stratified 80 % split of the shared sample,
predict time per product for the held-out 20 % as one batch (the shipped model refits once
with those unseen texts, see models/text.py) and for one product at a time (the app's path),
weighted F1 on the held-out 20 %, and ratios shipped / reference.

Table 2 (--scale): the sample grown to N products by replicating it with light perturbations
(word dropout 15 %, typos 8 %, renumbered digits 30 %, one adjacent swap in 20 % of titles,
descriptions cut to 50-100 % and perturbed at lower rates), so the vocabulary grows as a real
catalogue's does; the shipped model's fit time, its phases and the process's peak memory.

The machine's load average is printed: on the shared 2-core machine other processes slow
wall-clock figures, so compare only figures from one run.
"""
from __future__ import annotations

import os
import re
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from bench.common import SAMPLE, parse, parser
from labeler.training import text_model as TextClassifier  # with the taxonomy's prior
from models.text_reference import ReferenceTextClassifier


def load_sample(folder: Path = SAMPLE) -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.read_csv(folder / "X_train_update.csv", index_col=0)
    y = pd.read_csv(folder / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"].loc[X.index].to_numpy()
    frame = pd.DataFrame({"title": X["designation"].fillna("").astype(str),
                          "description": X["description"].fillna("").astype(str)})
    return frame.reset_index(drop=True), y


# -- growing the sample to catalogue size ----------------------------------------------------------
def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    letter = chr(int(rng.integers(97, 123)))
    op = int(rng.integers(3))
    return (word[:i] + letter + word[i + 1:], word[:i] + letter + word[i:], word[:i] + word[i + 1:])[op]


def perturb(text: str, rng: np.random.Generator, drop: float, typo: float, renumber: float, swap: float) -> str:
    words = text.split()
    if not words:
        return text
    out = []
    for w in words:
        if len(words) > 2 and rng.random() < drop:
            continue
        if rng.random() < typo:
            w = _typo(w, rng)
        if rng.random() < renumber:
            w = re.sub(r"\d", lambda _: str(int(rng.integers(10))), w)
        out.append(w)
    if len(out) > 2 and rng.random() < swap:
        i = int(rng.integers(len(out) - 1))
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out) if out else words[0]


def grow_sample(X: pd.DataFrame, y: np.ndarray, n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The sample once as is, then perturbed copies of random products, n rows in all."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([np.arange(len(X))] + [rng.permutation(len(X)) for _ in range(n // len(X) + 1)])[:n]
    titles, descs = X["title"].tolist(), X["description"].tolist()
    out_t, out_d = [], []
    for k, i in enumerate(order):
        if k < len(X):
            out_t.append(titles[i])
            out_d.append(descs[i])
            continue
        out_t.append(perturb(titles[i], rng, 0.15, 0.08, 0.3, 0.2))
        d = descs[i]
        if d:
            d = perturb(d[: int(len(d) * rng.uniform(0.5, 1.0))], rng, 0.1, 0.05, 0.3, 0.2)
        out_d.append(d)
    return pd.DataFrame({"title": out_t, "description": out_d}), np.asarray(y)[order]


# -- measurements ---------------------------------------------------------------------------------
def measure(make, X_tr, y_tr, X_te, y_te, runs: int, singles: int) -> dict[str, float]:
    fits, batch, single, f1s = [], [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        model = make().fit(X_tr, y_tr)
        fits.append(time.perf_counter() - t)
        t = time.perf_counter()
        pred = model.predict(X_te)
        batch.append((time.perf_counter() - t) / len(X_te))
        f1s.append(f1_score(y_te, pred, average="weighted"))
        for i in range(singles):
            t = time.perf_counter()
            model.predict_proba(X_te.iloc[i:i + 1])
            single.append(time.perf_counter() - t)
    return {"fit_s": statistics.median(fits), "batch_ms": 1000 * statistics.median(batch),
            "single_ms": 1000 * statistics.median(single) if single else float("nan"),
            "f1": statistics.median(f1s), "f1_spread": max(f1s) - min(f1s)}


def table(rows: dict[str, dict[str, float]]) -> str:
    ref, new = rows["reference recipe"], rows["shipped TextClassifier"]
    lines = ["| model | fit (s) | predict, batch (ms/product) | predict, one product (ms) | weighted F1 |",
             "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['fit_s']:.2f} | {r['batch_ms']:.2f} | {r['single_ms']:.1f} | {r['f1']:.4f} |")
    lines.append(f"| ratio shipped / reference | {new['fit_s'] / ref['fit_s']:.2f}x | "
                 f"{new['batch_ms'] / ref['batch_ms']:.2f}x | {new['single_ms'] / ref['single_ms']:.2f}x | "
                 f"{new['f1'] - ref['f1']:+.4f} |")
    return "\n".join(lines)


def scale(X: pd.DataFrame, y: np.ndarray, sizes: list[int]) -> str:
    lines = ["| products | fit (s) | analyze | vectorize | calibrate | svm | peak RSS (GB) | load avg |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sorted(sizes):
        G, gy = grow_sample(X, y, n)
        load = os.getloadavg()[0]
        t = time.perf_counter()
        model = TextClassifier().fit(G, gy)
        fit = time.perf_counter() - t
        s = model.fit_seconds_
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        lines.append(f"| {n} | {fit:.1f} | {s['analyze']:.1f} | {s['vectorize']:.1f} | {s['calibrate']:.1f} | "
                     f"{s['svm']:.1f} | {rss:.2f} | {load:.1f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=3, help="runs per model (median reported)")
    ap.add_argument("--singles", type=int, default=20, help="one-product predictions timed per run")
    ap.add_argument("--test-size", type=float, default=0.2)
    ap.add_argument("--limit", type=int, default=None, help="a stratified draw of this many products (default: all)")
    ap.add_argument("--scale", type=int, nargs="*", default=[], help="also time the shipped model's fit at these sizes")
    args = parse(ap, quick={"runs": 1, "singles": 5, "limit": 600}, argv=argv)

    X, y = load_sample()
    if args.limit and args.limit < len(X):
        X, _, y, _ = train_test_split(X, y, train_size=args.limit, stratify=y, random_state=0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=args.test_size, stratify=y, random_state=0)
    print(f"shared sample: {len(X)} products, {len(np.unique(y))} categories; train {len(X_tr)}, "
          f"held out {len(X_te)}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    rows = {}
    for name, make in (("reference recipe", ReferenceTextClassifier), ("shipped TextClassifier", TextClassifier)):
        rows[name] = measure(make, X_tr, y_tr, X_te, y_te, args.runs, args.singles)
        print(f"  {name}: done", flush=True)
    print()
    print(table(rows))
    if args.scale:
        print("\nshipped model, fit time on the sample grown by perturbed copies (see module docstring)")
        scale(X, y, args.scale)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
