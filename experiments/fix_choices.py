"""How many categories should a grid's marked product offer, and in what order?

A reviewer marks a product wrong on a grid page of category C; its card then offers the model's
likeliest *other* categories, one digit key each. A right one among them costs one key; else
`/`, the code (4 digits for most Rakuten codes) and Enter: 6. On the whole sample's out-of-fold
predictions (every labelled product scored by a model that never saw its label), for the
products whose top-1 is wrong:

* the share whose true category is among the first k others (k = 5, 7, 9; 9 is every digit key),
  and the keys per fix, per disjoint quarter of the products (a hash of the id);
* the same with the model's order re-weighted by a confusion prior, P(true = D | top-1 = C, wrong),
  counted on the other three quarters (cross-fitted: a quarter never counts its own errors).

    python -m experiments.fix_choices                  # the newest whole-sample bench template
    python -m experiments.fix_choices --workspace DIR  # any workspace with out-of-fold predictions

Answer (2026-12-01, 1,942 labelled products, 504 wrong): the model's order, nine choices —
right one offered 87 % of the time (77 % with five), 1.65 keys per fix (2.16), every quarter
better (1.54-1.73 against 2.01-2.35). The confusion prior makes it worse (top-5 72 % against
77 %; 2.39 keys), so the card keeps the model's order. Quoted in labeler/cards.py (`FIX_CHOICES`).
"""
from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np

from bench.common import newest_sample_template, sample_template
from labeler import taxonomy
from store.workspace import Workspace

SEARCH_KEYS = 6          # `/`, a 4-digit code, Enter


def out_of_fold(ws: Workspace) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(probabilities, true class index, product ids) of the live version's out-of-fold rows."""
    live = ws.live_version()
    classes = taxonomy.classes_of(ws, live)
    index = {c: i for i, c in enumerate(classes)}
    rows = ws.query("SELECT p.id, p.source_label, pr.probs FROM products p JOIN predictions pr "
                    "ON pr.product_id = p.id AND pr.model_version = ? "
                    "WHERE pr.source = 'out-of-fold' AND p.source_label IS NOT NULL", (live,))
    probs = np.array([json.loads(r["probs"]) if isinstance(r["probs"], str) else r["probs"] for r in rows], float)
    y = np.array([index[int(r["source_label"])] for r in rows])
    return probs, y, [r["id"] for r in rows]


def ranks(score: np.ndarray, top1: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rank (1 = first) of the true class among the classes other than the top-1, by `score`."""
    out = []
    for i in rows:
        s = score[i].copy()
        s[top1[i]] = -np.inf
        order = np.argsort(-s, kind="stable")
        out.append(int(np.flatnonzero(order == y[i])[0]) + 1)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, help="default: the newest whole-sample bench template")
    args = ap.parse_args()
    root = args.workspace or newest_sample_template() or sample_template()
    ws = Workspace(root)
    try:
        probs, y, ids = out_of_fold(ws)
    finally:
        ws.close()
    k_classes = probs.shape[1]
    top1 = probs.argmax(1)
    quarter = np.array([zlib.crc32(i.encode()) % 4 for i in ids])
    wrong = top1 != y
    print(f"{root}: {len(y)} labelled products with out-of-fold predictions, {int(wrong.sum())} wrong")
    print("| order | choices | offered (per quarter) | mean | keys per fix (per quarter) | mean |")
    print("|---|---|---|---|---|---|")
    for name in ("model", "model x confusion prior"):
        for k in (5, 7, 9):
            hit, keys = [], []
            for q in range(4):
                rows = np.flatnonzero((quarter == q) & wrong)
                score = probs
                if name != "model":
                    counts = np.zeros((k_classes, k_classes))
                    for a, b in zip(top1[(quarter != q) & wrong], y[(quarter != q) & wrong]):
                        counts[a, b] += 1
                    prior = (counts + 1.0 / (k_classes - 1)) / (counts.sum(1, keepdims=True) + 1.0)
                    score = probs * prior[top1]
                r = ranks(score, top1, y, rows)
                hit.append(float((r <= k).mean()))
                keys.append(float(np.where(r <= k, 1, SEARCH_KEYS).mean()))
            print(f"| {name} | {k} | {' / '.join(f'{h:.2f}' for h in hit)} | {np.mean(hit):.3f} "
                  f"| {' / '.join(f'{x:.2f}' for x in keys)} | {np.mean(keys):.2f} |")


if __name__ == "__main__":
    main()
