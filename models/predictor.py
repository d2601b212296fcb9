"""A trained model version: text model, optional image ensemble and fusion, saved as one bundle.

Every probability array it returns has one column per taxonomy category, in code order, so
arrays from different models and versions line up.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import joblib
import numpy as np
import pandas as pd

from labeler import taxonomy

log = logging.getLogger(__name__)
BUNDLE_FILE = "bundle.joblib"
Progress = Callable[[float, str], None]


def scaled(progress: Progress, start: float, end: float) -> Progress:
    """A stage's own 0-1 progress as the [start, end] part of an outer bar."""
    return lambda f, msg: progress(start + (end - start) * float(f), msg)


def align(proba: np.ndarray, classes: np.ndarray | list, codes: list[int] | None = None) -> np.ndarray:
    """(n, len(classes)) -> (n, 27) with zeros for categories the model never saw."""
    codes = codes or taxonomy.codes()
    out = np.zeros((proba.shape[0], len(codes)), dtype=np.float64)
    index = {c: i for i, c in enumerate(codes)}
    for j, c in enumerate(classes):
        out[:, index[int(c)]] = proba[:, j]
    return out


@dataclass
class ModelBundle:
    version: str
    text: Any
    image: Any | None = None          # models.image.ImageEnsemble, once trained
    fusion: Any | None = None         # models.fusion.Fusion, once trained
    codes: list[int] = field(default_factory=taxonomy.codes)
    info: dict = field(default_factory=dict)

    def predict(self, products: pd.DataFrame, *, progress: Progress | None = None,
                feature_store: Any | None = None) -> dict[str, Any]:
        """products: DataFrame with id, title, description, image_path.

        Returns {'text': (n,27), 'image': (n,27) or None, 'voters': {name: (n,27)},
        'has_image': (n,) bool, 'fused': (n,27)}.
        """
        text = align(self.text.predict_proba(products), self.text.classes_, self.codes)
        out: dict[str, Any] = {"text": text, "image": None, "voters": {}, "has_image": np.zeros(len(products), bool)}
        if self.image is not None:
            img = self.image.predict_products(products, progress=progress, feature_store=feature_store)
            out["voters"] = img["voters"]
            out["image"] = img["image"]
            out["has_image"] = img["has_image"]
        if self.fusion is not None and out["image"] is not None:
            out["fused"] = self.fusion.fuse(text, out["image"], out["has_image"], voters=out["voters"])
        else:
            out["fused"] = text
        return out

    def save(self, directory: Path) -> Path:
        """Write atomically so a killed process never leaves a half-written bundle."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / BUNDLE_FILE
        tmp = directory / (BUNDLE_FILE + ".tmp")
        joblib.dump(self, tmp)
        os.replace(tmp, path)
        return path


def load_bundle(path: Path | str) -> ModelBundle:
    path = Path(path)
    if path.is_dir():
        path = path / BUNDLE_FILE
    return joblib.load(path)


def top_k(probs: np.ndarray, k: int = 5, codes: list[int] | None = None) -> list[list]:
    """One row (27,) -> [[code, p], ...] best first; ties broken by code for stability."""
    codes = codes or taxonomy.codes()
    order = np.lexsort((np.asarray(codes), -probs))[:k]
    return [[int(codes[i]), round(float(probs[i]), 6)] for i in order]


def uncertainty(probs: np.ndarray) -> dict[str, float]:
    s = np.sort(probs)[::-1]
    p = probs[probs > 0]
    return {"top1_prob": float(s[0]), "margin": float(s[0] - s[1]),
            "entropy": float(-(p * np.log(p)).sum())}


def prediction_rows(product_ids: list[str], out: dict[str, Any], k: int = 5) -> list[dict]:
    """Rows for `Workspace.save_predictions`: fused top-5, each model's own top-k, uncertainty."""
    codes = taxonomy.codes()
    rows = []
    for i, pid in enumerate(product_ids):
        fused = out["fused"][i]
        voters = {"text": top_k(out["text"][i], k, codes)}
        disagreement = 0
        if out["image"] is not None and out["has_image"][i]:
            voters["image"] = top_k(out["image"][i], k, codes)
            for name, arr in out["voters"].items():
                voters[name] = top_k(arr[i], k, codes)
            disagreement = int(np.argmax(out["text"][i]) != np.argmax(out["image"][i]))
        best = top_k(fused, k, codes)
        rows.append({"product_id": pid, "top5": best, "probs": [round(float(p), 6) for p in fused],
                     "voters": voters, "top1": best[0][0], "disagreement": disagreement, **uncertainty(fused)})
    return rows
