"""The reference recipe (the study's baseline), kept to measure the text model against.

TF-IDF word 1-2 grams (max 120k, min_df 2, max_df 0.9, sublinear, accents stripped) + char_wb
3-5 grams (max 160k, sublinear) in a FeatureUnion, LinearSVC C=0.5, calibrated with
CalibratedClassifierCV(sigmoid, 3 folds). Used by bench/bench_text.py and the tests; the app
trains `models.text.TextClassifier`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from models.textclean import clean_text


@dataclass(frozen=True)
class ReferenceConfig:
    word_max_features: int = 120_000
    char_max_features: int = 160_000
    min_df: int = 2
    max_df: float = 0.9
    C: float = 0.5
    calibration_folds: int = 3


def product_texts(X: pd.DataFrame) -> list[str]:
    """Title and description, cleaned, as one string per product."""
    titles = X["title"].map(clean_text)
    descriptions = X["description"].map(clean_text) if "description" in X else ""
    return (titles + " " + descriptions).str.strip().tolist()


def reference_features(config: ReferenceConfig = ReferenceConfig()) -> FeatureUnion:
    c = config
    return FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), max_features=c.word_max_features, min_df=c.min_df,
                                 max_df=c.max_df, sublinear_tf=True, strip_accents="unicode")),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), max_features=c.char_max_features,
                                 sublinear_tf=True, strip_accents="unicode")),
    ])


class ReferenceTextClassifier(ClassifierMixin, BaseEstimator):
    """The reference recipe with calibrated probabilities."""

    def __init__(self, *, config: ReferenceConfig = ReferenceConfig(), random_state: int = 0):
        self.config = config
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y, X_unlabeled: pd.DataFrame | None = None) -> "ReferenceTextClassifier":
        """X_unlabeled is accepted for API symmetry and ignored: the reference is inductive."""
        texts = product_texts(X)
        y = np.asarray(y)
        self.features_ = reference_features(self.config).fit(texts)
        Z = self.features_.transform(texts)
        svc = LinearSVC(C=self.config.C, random_state=self.random_state)
        folds = min(self.config.calibration_folds, int(np.min(np.unique(y, return_counts=True)[1])))
        self.model_ = CalibratedClassifierCV(svc, cv=max(folds, 2), method="sigmoid").fit(Z, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, n_classes) calibrated probabilities, columns in `classes_` order."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self.features_.transform(product_texts(X)))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def describe(self) -> dict:
        return {"kind": "tfidf-linearsvc-reference", **asdict(self.config)}
