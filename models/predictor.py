"""A trained model version: text model, optional image ensemble and fusion, saved as one bundle.

Every probability array it returns has one column per entry of the bundle's `codes` (its
`classes_`: the categories it was trained for, recorded with it), in that order, so arrays from
different models of a version line up, and a version's arrays line up with another's by code.
Scoring is a pure function of (bundle, products): a product's probabilities do not depend on the
other products of the call (`adapt=True` is the explicit exception, `TextClassifier`).

A product is scored from what it has: text and image fused, text alone without a usable image,
the image vote alone without a title or description (`has_text`), the text model's bias alone
with neither (the importer refuses such products; an image may still fail to decode later).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import joblib
import numpy as np
import pandas as pd

from models.progress import Progress
from models.text_prior import CategoryText

log = logging.getLogger(__name__)
BUNDLE_FILE = "bundle.joblib"


def _key(code: Any) -> Any:
    """A code as a dict key: numpy integers and ints alike, strings as themselves."""
    return int(code) if isinstance(code, (int, np.integer)) else code


def resolve_code(value: Any, codes: Sequence) -> Any | None:
    """The entry of `codes` that `value` names (as given, or an integer code written as text:
    '2583' -> 2583), else None."""
    keys = [_key(c) for c in codes]
    if _key(value) in keys:
        return _key(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit() and int(text) in keys:
        return int(text)
    return text if text in keys else None


def align(proba: np.ndarray, classes: Sequence | np.ndarray, codes: Sequence | np.ndarray) -> np.ndarray:
    """(n, len(classes)) -> (n, len(codes)): each class's column moved to its code's position,
    zeros for codes the model never saw. A class missing from `codes` is an error."""
    out = np.zeros((proba.shape[0], len(codes)), dtype=np.float64)
    index = {_key(c): i for i, c in enumerate(codes)}
    for j, c in enumerate(classes):
        if _key(c) not in index:
            raise ValueError(f"the model's class {c!r} is not among the {len(codes)} category codes it is "
                             f"aligned to ({', '.join(map(str, list(codes)[:5]))}...); pass codes that "
                             "include every label the model was fitted on")
        out[:, index[_key(c)]] = proba[:, j]
    return out


@dataclass
class ModelBundle:
    version: str
    text: Any
    image: Any | None = None          # models.image.ImageEnsemble, once trained
    fusion: Any | None = None         # models.fusion.Fusion, once trained
    codes: list | None = None         # the column order of every array; default: the text model's classes_
    info: dict = field(default_factory=dict)
    categories: tuple[CategoryText, ...] = ()   # the taxonomy it was trained with (names, keywords)

    def __post_init__(self) -> None:
        if self.codes is None:
            self.codes = [_key(c) for c in self.text.classes_]
        self.codes = [_key(c) for c in self.codes]

    @property
    def classes_(self) -> np.ndarray:
        """The categories of the probability columns, in order (scikit-learn's name for `codes`)."""
        return np.asarray(self.codes)

    def name(self, code: Any) -> str:
        """A category's name from the taxonomy recorded with the version ('' when not recorded)."""
        return next((c.name for c in self.categories if _key(c.code) == _key(code)), "")

    def predict(self, products: pd.DataFrame, *, progress: Progress | None = None,
                feature_store: Any | None = None, adapt: bool = False) -> dict[str, Any]:
        """products: DataFrame with id, title, description, image_path.

        Returns {'text': (n,k), 'image': (n,k) or None, 'voters': {name: (n,k)},
        'has_image': (n,) bool, 'has_text': (n,) bool, 'fused': (n,k), 'codes': the k column codes};
        a product without text and with a usable image is fused to its image vote alone. Each row
        depends only on its product (and on cached image features), unless `adapt` asks the text
        model to refit with the batch's unseen texts (`TextClassifier.predict_proba`).
        """
        from models.text import product_has_text    # loaded with the bundle's text model anyway
        text_proba = self.text.predict_proba(products, adapt=True) if adapt else self.text.predict_proba(products)
        text = align(text_proba, self.text.classes_, self.codes)
        out: dict[str, Any] = {"text": text, "image": None, "voters": {}, "has_image": np.zeros(len(products), bool),
                               "has_text": product_has_text(products), "codes": list(self.codes)}
        if self.image is not None:
            img = self.image.predict_products(products, progress=progress, feature_store=feature_store,
                                              codes=self.codes)
            out["voters"] = img["voters"]
            out["image"] = img["image"]
            out["has_image"] = img["has_image"]
        if self.fusion is not None and out["image"] is not None:
            out["fused"] = self.fusion.fuse(text, out["image"], out["has_image"], voters=out["voters"],
                                            has_text=out["has_text"])
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


def top_k(probs: np.ndarray, codes: Sequence, k: int = 5) -> list[list]:
    """One row (len(codes),) -> [[code, p], ...] best first; ties broken by code for stability."""
    order = np.lexsort((np.asarray(codes), -probs))[:k]
    return [[_key(codes[i]), round(float(probs[i]), 6)] for i in order]


def uncertainty(probs: np.ndarray) -> dict[str, float]:
    s = np.sort(probs)[::-1]
    p = probs[probs > 0]
    return {"top1_prob": float(s[0]), "margin": float(s[0] - s[1]),
            "entropy": float(-(p * np.log(p)).sum())}


def prediction_rows(product_ids: list[str], out: dict[str, Any], codes: Sequence | None = None,
                    k: int = 5) -> list[dict]:
    """Rows for `Workspace.save_predictions`: fused top-5, each model's own top-k, uncertainty;
    `codes`: the arrays' column order (default: the one `ModelBundle.predict` put in `out`).
    A product without text that was scored from its image has no text vote (the text model
    read nothing) and no disagreement."""
    codes = out["codes"] if codes is None else codes
    has_text = out.get("has_text")
    rows = []
    for i, pid in enumerate(product_ids):
        fused = out["fused"][i]
        imaged = out["image"] is not None and bool(out["has_image"][i])
        texted = has_text is None or bool(has_text[i])
        voters = {"text": top_k(out["text"][i], codes, k)} if texted or not imaged else {}
        disagreement = 0
        if imaged:
            voters["image"] = top_k(out["image"][i], codes, k)
            for name, arr in out["voters"].items():
                voters[name] = top_k(arr[i], codes, k)
            disagreement = int(texted and np.argmax(out["text"][i]) != np.argmax(out["image"][i]))
        best = top_k(fused, codes, k)
        rows.append({"product_id": pid, "top5": best, "probs": [round(float(p), 6) for p in fused],
                     "voters": voters, "top1": best[0][0], "disagreement": disagreement, **uncertainty(fused)})
    return rows
