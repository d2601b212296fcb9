"""Hashed TF-IDF blocks that scale: analyzers run in worker processes, document frequencies,
IDF and the min_df/max_df/max_features filters are computed afterwards on the count matrix.

Why not `TfidfVectorizer`: its vocabulary pass is one Python loop over every n-gram, on one
core, twice (fit, then transform). Hashing makes chunks independent, so the 2 cores share the
analyzer work and the counts are computed once and reused for fit and transform. Collisions are
rare at 2**21-2**22 buckets and only merge features that the filters would mostly drop.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction import FeatureHasher

_WORD = re.compile(r"(?u)\b\w\w+\b")


def word_ngrams(folded: str) -> list[str]:
    """Unigrams and bigrams of 2+ character tokens (the reference recipe's tokenizer)."""
    tokens = _WORD.findall(folded)
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


_GRAM_CACHE: dict[tuple[str, int, int], tuple[str, ...]] = {}


def _word_grams(word: str, lo: int, hi: int) -> tuple[str, ...]:
    w = f" {word} "
    size = len(w)
    grams: list[str] = []
    for n in range(lo, hi + 1):
        if size < n:
            if n == lo:
                grams.append(w)
            break
        grams.extend(w[i:i + n] for i in range(size - n + 1))
    return tuple(grams)


def char_wb_ngrams(folded: str, lo: int = 3, hi: int = 5) -> list[str]:
    """Character n-grams inside space-padded words (sklearn's `char_wb`), cached per word:
    marketplace titles reuse a small vocabulary, so most words are cut only once."""
    if len(_GRAM_CACHE) > 1_000_000:
        _GRAM_CACHE.clear()
    grams: list[str] = []
    for word in folded.split():
        key = (word, lo, hi)
        cut = _GRAM_CACHE.get(key)
        if cut is None:
            cut = _GRAM_CACHE[key] = _word_grams(word, lo, hi)
        grams.extend(cut)
    return grams


def hash_counts(token_lists, n_features: int) -> sp.csr_matrix:
    """(n_docs, n_features) raw term counts."""
    hasher = FeatureHasher(n_features=n_features, input_type="string", alternate_sign=False,
                           dtype=np.float32)
    try:
        X = hasher.transform(token_lists)
    except StopIteration:   # no documents at all
        return sp.csr_matrix((0, n_features), dtype=np.float32)
    X.sum_duplicates()
    return X


@dataclass
class HashedTfidf:
    """TF-IDF on hashed counts: fit on the docs it is given, transform any count matrix.

    Attributes after `fit`: `columns_` (kept hash buckets), `idf_` (float32, one per column).
    """
    n_features: int = 2 ** 21
    min_df: int = 1
    max_df: float = 1.0
    max_features: int | None = None
    sublinear_tf: bool = True

    def fit(self, counts: sp.csr_matrix) -> "HashedTfidf":
        n_docs = counts.shape[0]
        df = np.bincount(counts.indices, minlength=self.n_features)
        keep = df >= self.min_df
        if self.max_df < 1.0 and n_docs > 0:
            keep &= df <= self.max_df * n_docs
        columns = np.flatnonzero(keep)
        if self.max_features is not None and len(columns) > self.max_features:
            total = np.bincount(counts.indices, weights=counts.data, minlength=self.n_features)[columns]
            top = np.argsort(-total, kind="stable")[: self.max_features]
            columns = np.sort(columns[top])
        self.columns_ = columns.astype(np.int64)
        self.idf_ = (np.log((1.0 + n_docs) / (1.0 + df[columns])) + 1.0).astype(np.float32)
        self._remap = None
        return self

    def _remap_table(self) -> np.ndarray:
        if getattr(self, "_remap", None) is None:
            table = np.full(self.n_features, -1, dtype=np.int64)
            table[self.columns_] = np.arange(len(self.columns_))
            self._remap = table
        return self._remap

    def transform(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Counts -> L2-normalised TF-IDF rows on the kept columns."""
        counts = counts.tocoo()
        new_col = self._remap_table()[counts.col]
        mask = new_col >= 0
        data = counts.data[mask].astype(np.float32)
        if self.sublinear_tf:
            data = 1.0 + np.log(data)
        cols = new_col[mask]
        data *= self.idf_[cols]
        X = sp.csr_matrix((data, (counts.row[mask], cols)), shape=(counts.shape[0], len(self.columns_)))
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        X.data /= np.repeat(norms, np.diff(X.indptr)).astype(np.float32)
        return X

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_remap"] = None  # rebuilt on first use; keeps saved bundles small
        return state

    @property
    def n_columns(self) -> int:
        return len(self.columns_)
