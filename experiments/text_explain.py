"""Text explanations: exactness, faithfulness and cost per review card.

    python -m experiments.text_explain              # ~1 minute on the shared 2-core machine
    python -m experiments.text_explain --n 200 --k 5

The text model is fitted on the shared sample minus a stratified held-out set; on the first --n
held-out products with at least 2k displayed words:
* exactness: the largest |contributions + intercept - decision value| over every category;
* faithfulness: deleting the k words the explanation ranks highest toward the predicted category
  (title + description) vs k random words (seeded): how often the top words lower that category's
  probability more, and the mean drop of both;
* cost: milliseconds to explain one card (its 5 categories, rendered markup), as the background
  worker computes it; the card HTML's build time with and without the highlights (the request
  path's share) and the bytes they add to a card update.

The machine's load average is printed: other processes slow wall-clock figures.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from bench.common import SAMPLE
from labeler import text_highlights, views
from models.text import TextClassifier
from models.text_explain import attribute, deletion_check



def load(sample: Path) -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.read_csv(sample / "X_train_update.csv", index_col=0)
    y = pd.read_csv(sample / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"].loc[X.index].to_numpy()
    df = pd.DataFrame({"id": X.index.astype(str), "title": X["designation"].fillna(""),
                       "description": X["description"].fillna("")}).reset_index(drop=True)
    return df, y


def _card(product: dict, codes: list[int]) -> SimpleNamespace:
    """The fields `views.card_html` reads from a review card."""
    pred = SimpleNamespace(auto_accept=False, top1_prob=0.5, top5=codes)
    return SimpleNamespace(product=product, prediction=pred, second_review=False, resumed=False,
                           strategy="least_confidence", score=0.5, reason="bench", product_id=product["id"],
                           key="k")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="held-out products measured")
    ap.add_argument("--k", type=int, default=5, help="words deleted")
    ap.add_argument("--held-out", type=int, default=450)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    df, y = load(SAMPLE)
    tr, te = train_test_split(np.arange(len(df)), test_size=args.held_out, stratify=y, random_state=0)
    t = time.perf_counter()
    model = TextClassifier().fit(df.iloc[tr], y[tr])
    print(f"text model fitted on {len(tr)} products in {time.perf_counter() - t:.1f} s")

    # the first n held-out products with at least 2k displayed words
    chosen = []
    for i in te:
        title, desc = views.plain(df.title[i]), views.plain(df.description[i])
        if len((title + " " + desc).split()) >= 2 * args.k:
            chosen.append(i)
        if len(chosen) == args.n:
            break
    rows = df.iloc[chosen]
    print(f"{len(chosen)} held-out products with >= {2 * args.k} words "
          f"(of the first {list(te).index(chosen[-1]) + 1} held-out ones)")

    # exactness
    scores = model.decision_function(rows)
    worst = 0.0
    for i, r in enumerate(rows.itertuples()):
        att = attribute(model, r.title, r.description)
        worst = max(worst, max(abs(att.explain(c).total - scores[i, k]) for k, c in enumerate(model.classes_)))
    print(f"exactness: max |sum of contributions + intercept - decision value| = {worst:.2e} "
          f"({len(rows)} products x {len(model.classes_)} categories)")

    # faithfulness
    res = deletion_check(model, rows.title.tolist(), rows.description.tolist(), k=args.k, seed=0)
    print(f"faithfulness: deleting the top-{args.k} words lowers the predicted category's probability more "
          f"than {args.k} random words on {100 * res.win_rate:.1f} % of {len(res.top_drop)} products; "
          f"mean drop {res.top_drop.mean():.3f} (top words) vs {res.random_drop.mean():.3f} (random words)")

    # cost per card
    top5 = np.argsort(-scores, axis=1)[:, :5]
    explain_ms, cpu_ms, plain_ms, lit_ms, added = [], [], [], [], []
    for i, r in enumerate(rows.itertuples()):
        product = {"id": r.id, "title": r.title, "description": r.description}
        codes = [int(model.classes_[k]) for k in top5[i]]
        t, c = time.perf_counter(), time.process_time()
        hl = text_highlights.build_highlights(model, product, codes)
        explain_ms.append(1000 * (time.perf_counter() - t))
        cpu_ms.append(1000 * (time.process_time() - c))
        card = _card(product, codes)
        t = time.perf_counter()
        bare = views.card_html(card, None, threshold=0.9)
        plain_ms.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        lit = views.card_html(card, None, threshold=0.9, highlights=hl)
        lit_ms.append(1000 * (time.perf_counter() - t))
        added.append(len(lit.encode()) - len(bare.encode()))
    p = lambda v, q: float(np.percentile(v, q))  # noqa: E731
    print(f"cost: explaining one card (5 categories, markup) p50 {p(explain_ms, 50):.1f} ms, p95 "
          f"{p(explain_ms, 95):.1f} ms wall, CPU p50 {p(cpu_ms, 50):.1f} ms (background worker, computed ahead "
          "of the card)")
    print(f"      card HTML on the request path: p50 {p(plain_ms, 50):.2f} ms without, {p(lit_ms, 50):.2f} ms with "
          f"the highlights; +{int(p(added, 50))} bytes per card update at p50 (p95 +{int(p(added, 95))})")


if __name__ == "__main__":
    main()
