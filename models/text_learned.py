"""What the text model learned: per category the word n-grams with the largest weights, and which
weights moved most between two versions.

The model's columns are hash buckets (models/text_features.py), so a weight has no name until a
text is seen that hashes there: `ngram_names` cuts the word 1-2 grams of the given products (the
labelled ones are the natural choice: weights were learned from them) and of the taxonomy's
pseudo-documents, and names each bucket by its most frequent n-gram. Two versions share the hash
function, so their weights are compared bucket by bucket even when their kept columns differ.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from sklearn.feature_extraction import FeatureHasher

from models.text import WORD_BUCKETS, TextClassifier
from models.text_features import word_ngrams
from models.text_prior import CategoryText, category_documents
from models.textclean import clean_text, fold


@dataclass(frozen=True)
class WeightChange:
    category: int
    ngram: str
    before: float
    after: float

    @property
    def delta(self) -> float:
        return self.after - self.before


def ngram_names(texts: Iterable[tuple[object, object]], *, description_chars: int = 2000,
                categories: Sequence[CategoryText] | None = None) -> dict[int, str]:
    """Hash bucket -> its most frequent word n-gram among `texts` ((title, description) pairs)
    and the pseudo-documents of `categories` (the model's prior: `TextClassifier.categories`)."""
    counts: Counter[str] = Counter()
    for title, desc in texts:
        counts.update(word_ngrams(f"{fold(clean_text(title))} {fold(clean_text(desc)[:description_chars])}"))
    for doc in category_documents(categories)[0]:
        counts.update(word_ngrams(fold(clean_text(doc))))
    grams = [g for g, _ in counts.most_common()]      # most frequent first: it names a shared bucket
    if not grams:
        return {}
    hasher = FeatureHasher(n_features=WORD_BUCKETS, input_type="string", alternate_sign=False)
    buckets = hasher.transform([[g] for g in grams]).tocsr().indices
    names: dict[int, str] = {}
    for g, b in zip(grams, buckets):
        names.setdefault(int(b), g)
    return names


def _code(c: object) -> object:
    """A class label as a plain Python value (numpy ints and strings too)."""
    return c.item() if hasattr(c, "item") else c


def _weights(model: TextClassifier, buckets: np.ndarray, codes: Sequence) -> np.ndarray:
    """(len(codes), len(buckets)) word weights; 0 where the model has no such column or class."""
    out = np.zeros((len(codes), len(buckets)))
    cols = model.word_._remap_table()[buckets]
    classes = {_code(c): i for i, c in enumerate(model.classes_)}
    for row, code in enumerate(codes):
        k = classes.get(_code(code))
        if k is not None:
            out[row, cols >= 0] = model.coef_[k, cols[cols >= 0]]
    return out


def top_ngrams(model: TextClassifier, names: dict[int, str], k: int = 8) -> dict[object, list[tuple[str, float]]]:
    """Per category code: the k named word n-grams with the largest positive weights."""
    buckets = np.fromiter(names, dtype=np.int64, count=len(names))
    codes = [_code(c) for c in model.classes_]
    W = _weights(model, buckets, codes)
    out = {}
    for row, code in enumerate(codes):
        order = np.argsort(-W[row], kind="stable")[:k]
        out[code] = [(names[int(buckets[i])], float(W[row, i])) for i in order if W[row, i] > 0]
    return out


def weight_changes(new: TextClassifier, old: TextClassifier, names: dict[int, str], k: int = 12) -> list[WeightChange]:
    """The k (category, n-gram) weights that moved most from `old` to `new`, largest first."""
    buckets = np.fromiter(names, dtype=np.int64, count=len(names))
    codes = sorted({_code(c) for c in new.classes_} | {_code(c) for c in old.classes_})
    after, before = _weights(new, buckets, codes), _weights(old, buckets, codes)
    delta = np.abs(after - before).ravel()
    top = np.argsort(-delta, kind="stable")[:k]
    rows, cols = np.unravel_index(top, after.shape)
    return [WeightChange(codes[r], names[int(buckets[c])], float(before[r, c]), float(after[r, c]))
            for r, c, d in zip(rows, cols, delta[top]) if d > 0]
