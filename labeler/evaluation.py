"""Metrics of predictions against true categories: pure functions, no files read.

The automation figures follow the reference study: products whose fused top-1 probability
reaches the threshold could be labelled without a reviewer; `coverage` is their share and
`precision` how often the model is right on them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from labeler import taxonomy as taxonomy_mod
from labeler.taxonomy import Taxonomy


@dataclass(frozen=True)
class Automation:
    threshold: float
    n_auto: int             # products at or above the threshold
    coverage: float         # n_auto / n
    precision: float | None  # accuracy on those products; None when there are none


@dataclass
class Evaluation:
    n: int
    accuracy: float
    weighted_f1: float
    macro_f1: float
    top5_accuracy: float | None
    automation: Automation
    per_class: pd.DataFrame          # code, name, precision, recall, f1, support
    confusion: np.ndarray            # (k, k) counts, rows = true, columns = predicted, taxonomy order
    by_model: pd.DataFrame           # model, n, accuracy, weighted_f1 (text, image, voters...)
    taxonomy: Taxonomy = field(default_factory=taxonomy_mod.default)   # names and codes of the keys

    def summary(self) -> dict:
        """JSON-ready headline figures."""
        return {"n": self.n, "accuracy": self.accuracy, "weighted_f1": self.weighted_f1,
                "macro_f1": self.macro_f1, "top5_accuracy": self.top5_accuracy,
                "automation": asdict(self.automation),
                "by_model": self.by_model.to_dict(orient="records")}


def scores(y_true: Any, y_pred: Any, *, labels: Any = None) -> dict[str, float]:
    """accuracy, weighted_f1, macro_f1 (4 decimals) of (n,) predicted against (n,) true codes: the
    one F1 of the labeler (evaluate, model comparison, retrain). labels: the categories the F1s
    average over (default: those in either array; retrain passes the ones present in y_true)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {"accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
            "weighted_f1": round(float(f1_score(y_true, y_pred, average="weighted", labels=labels,
                                                zero_division=0)), 4),
            "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)), 4)}


def stored_metrics(outcomes: list[dict], labels: dict[str, int], *,
                   out_of_fold: str = "out-of-fold") -> tuple[dict[str, Any], bool]:
    """Scores of one version's stored predictions (`store.predictions.outcomes`: product_id, top1,
    voters, source) on the products of `labels`, and whether any of them is in-sample (stored
    before out-of-fold scoring, source NULL). ({}, False) when it stored none of them."""
    rows = [r for r in outcomes if r["product_id"] in labels]
    if not rows:
        return {}, False
    y = np.array([labels[r["product_id"]] for r in rows])
    fused = np.array([int(r["top1"]) for r in rows])
    text = np.array([int((r["voters"].get("text") or [[0]])[0][0]) for r in rows])
    present = np.unique(y)
    fused_scores = scores(y, fused, labels=present)
    return ({"weighted_f1": fused_scores["weighted_f1"], "macro_f1": fused_scores["macro_f1"],
             "accuracy": fused_scores["accuracy"],
             "text_weighted_f1": scores(y, text, labels=present)["weighted_f1"],
             "n": int(len(y)), "out_of_fold": int(sum(r["source"] == out_of_fold for r in rows))},
            any(r["source"] is None for r in rows))


def automation(y_true: np.ndarray, y_pred: np.ndarray, top1_prob: np.ndarray, threshold: float) -> Automation:
    """Share of products with top-1 probability >= threshold and the precision on them."""
    y_true, y_pred, top1_prob = np.asarray(y_true), np.asarray(y_pred), np.asarray(top1_prob, dtype=float)
    auto = top1_prob >= threshold
    n_auto = int(auto.sum())
    precision = float((y_true[auto] == y_pred[auto]).mean()) if n_auto else None
    coverage = n_auto / len(y_true) if len(y_true) else 0.0
    return Automation(threshold, n_auto, round(coverage, 4), None if precision is None else round(precision, 4))


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, codes: list[int] | None = None,
                     tax: Taxonomy | None = None) -> pd.DataFrame:
    """One row per category key present in y_true or y_pred, with its code and name in `tax`."""
    tax = tax or taxonomy_mod.default()
    codes = codes or tax.keys()
    present = [c for c in codes if c in set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist())]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=present, zero_division=0)
    return pd.DataFrame({"code": [tax.code_value(c) for c in present], "name": [tax.name(c) for c in present],
                         "precision": np.round(p, 4), "recall": np.round(r, 4), "f1": np.round(f, 4),
                         "support": s.astype(int)})


def top_k_accuracy(y_true: np.ndarray, top_k: np.ndarray) -> float:
    """top_k: (n, k) predicted codes, best first."""
    return round(float((np.asarray(top_k) == np.asarray(y_true)[:, None]).any(axis=1).mean()), 4)


def model_scores(y_true: np.ndarray, predictions: dict[str, np.ndarray]) -> pd.DataFrame:
    """Accuracy and weighted F1 of each model's own top-1 (NaN = no prediction for that product)."""
    rows = []
    for name, pred in predictions.items():
        pred = pd.to_numeric(pd.Series(pred), errors="coerce").to_numpy()
        have = ~np.isnan(pred)
        if not have.any():
            continue
        t, p = np.asarray(y_true)[have], pred[have].astype(int)
        s = scores(t, p)
        rows.append({"model": name, "n": int(have.sum()), "accuracy": s["accuracy"], "weighted_f1": s["weighted_f1"]})
    return pd.DataFrame(rows, columns=["model", "n", "accuracy", "weighted_f1"])


def evaluate(y_true, y_pred, top1_prob, *, threshold: float = 0.80, top_k: np.ndarray | None = None,
             by_model: dict[str, np.ndarray] | None = None, tax: Taxonomy | None = None) -> Evaluation:
    """y_true, y_pred: (n,) category keys of `tax` (default: the Rakuten taxonomy); top1_prob: (n,)
    the fused top-1 probability."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    if len(y_true) == 0:
        raise ValueError("nothing to evaluate: no product has both a prediction and a label")
    tax = tax or taxonomy_mod.default()
    codes = tax.keys()
    headline = scores(y_true, y_pred)
    return Evaluation(
        n=len(y_true),
        accuracy=headline["accuracy"],
        weighted_f1=headline["weighted_f1"],
        macro_f1=headline["macro_f1"],
        top5_accuracy=None if top_k is None else top_k_accuracy(y_true, top_k),
        automation=automation(y_true, y_pred, top1_prob, threshold),
        per_class=per_class_report(y_true, y_pred, codes, tax),
        confusion=confusion_matrix(y_true, y_pred, labels=codes),
        by_model=model_scores(y_true, by_model or {}),
        taxonomy=tax,
    )


def format_report(ev: Evaluation) -> str:
    """Plain-text report for the terminal."""
    a = ev.automation
    lines = [
        f"products evaluated   {ev.n}",
        f"accuracy             {ev.accuracy:.4f}",
        f"weighted F1          {ev.weighted_f1:.4f}",
        f"macro F1             {ev.macro_f1:.4f}",
    ]
    if ev.top5_accuracy is not None:
        lines.append(f"top-5 accuracy       {ev.top5_accuracy:.4f}")
    precision = "n/a (no product)" if a.precision is None else f"{a.precision:.4f}"
    lines += [f"top-1 prob >= {a.threshold:.2f}  {a.coverage:.1%} of products ({a.n_auto}), precision {precision}"]
    if len(ev.by_model):
        lines += ["", "by model (own top-1):", ev.by_model.to_string(index=False)]
    table = ev.per_class.copy()
    table["name"] = table["name"].str.slice(0, 34)
    lines += ["", "per category:", table.to_string(index=False)]
    return "\n".join(lines)


def honest_lines(joined: pd.DataFrame, tax: Taxonomy | None = None) -> list[str]:
    """What `predict` wrote from the version's guarantees, checked against the true labels: the
    precision on the auto-accepted products and their share; coverage and mean size of the sets."""
    lines = []
    y = joined["true"].astype(int).to_numpy()
    if "auto_accept" in joined.columns:
        auto = joined["auto_accept"].fillna(0).astype(int).to_numpy().astype(bool)
        t = pd.to_numeric(joined.get("auto_accept_threshold"), errors="coerce")
        used = "none (nothing guaranteed)" if t is None or t.isna().all() else f"{float(t.dropna().iloc[0]):.3f}"
        right = joined["pred_1"].astype(int).to_numpy() == y
        prec = f"{right[auto].mean():.4f}" if auto.any() else "n/a (none auto-accepted)"
        lines.append(f"auto-accepted (threshold {used})  {auto.mean():.1%} of products ({int(auto.sum())}), "
                     f"precision {prec}")
    if "pred_set" in joined.columns:
        sets = joined["pred_set"].fillna("").astype(str).str.split("|")
        tax = tax or taxonomy_mod.default()
        hit = np.array([tax.code(t) in s for t, s in zip(y, sets)])
        size = pd.to_numeric(joined["pred_set_size"], errors="coerce")
        lines.append(f"prediction sets  coverage {hit.mean():.1%}, mean size {size.mean():.2f}")
    return lines


def save_confusion_png(ev: Evaluation, path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (recall per true category) with counts in the cells."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tax = ev.taxonomy
    codes = tax.keys()
    counts = ev.confusion
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    fig, ax = plt.subplots(figsize=(11, 10), dpi=100)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6,
                color="white" if share[i, j] > 0.5 else "black")
    labels = [f"{tax.code(c)} {tax.name(c)[:24]}" for c in codes]
    ax.set_xticks(range(len(codes)), [tax.code(c) for c in codes], rotation=90, fontsize=7)
    ax.set_yticks(range(len(codes)), labels, fontsize=7)
    ax.set_xlabel("predicted category")
    ax.set_ylabel("true category")
    ax.set_title(title or f"Confusion matrix: {ev.n} products, accuracy {ev.accuracy:.3f}, "
                          f"weighted F1 {ev.weighted_f1:.3f}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true category")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_reports(ev: Evaluation, out_dir: Path) -> dict[str, Path]:
    """confusion_matrix.png, per_class.csv and evaluation.json in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"confusion": save_confusion_png(ev, out_dir / "confusion_matrix.png"),
             "per_class": out_dir / "per_class.csv", "summary": out_dir / "evaluation.json"}
    ev.per_class.to_csv(paths["per_class"], index=False)
    paths["summary"].write_text(json.dumps(ev.summary(), indent=2), encoding="utf-8")
    return paths
