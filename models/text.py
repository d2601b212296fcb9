"""Text classifier: hashed TF-IDF (word 1-2 grams on title + description, char_wb 3-5 grams on
the title) + taxonomy prior + marketplace patterns + LinearSVC, temperature-calibrated.

Why each part (docs/text_model.md; 5-fold x 2 stratified CV on the shared sample, weighted F1):
the reference recipe scores 0.688 and tuning it stays near 0.69-0.70; what moves it is what
1,949 labels cannot show: marketplace patterns (0.695), category keywords from the taxonomy as
down-weighted pseudo-products (0.728) and the unlabelled texts' vocabulary (0.730). One SVM fit
plus a softmax temperature replaces CalibratedClassifierCV's sigmoids: better F1 (sigmoids
reorder classes, -2 pt) and log-loss (1.03 vs 1.14) for half the fits.

Unlabelled products (semi-supervised, never their labels):
* `fit(X, y, X_unlabeled=...)`: the TF-IDF document frequencies (vocabulary filter, IDF) are
  computed on labelled + unlabelled + category pseudo-documents. Pass every workspace product (the
  training service does): repeats and the labelled products' own texts are dropped from X_unlabeled.
* `predict_proba(X)` is a pure function of the fitted model and each product: a product gets the
  same probabilities alone or in any batch. `predict_proba(X, adapt=True)` is the explicit opt-in
  to the old transductive step: the vectorizers and the SVM are refitted once for that call with
  the call's unseen texts added as unlabelled (about one fit's time), so its results depend on the
  batch (docs/text_model.md measures what it buys).

The category prior comes from `categories` (`models.text_prior.CategoryText`: code, name,
description, keywords), a parameter like any other; without it there is no prior. Classes are
learned from `y` (`classes_`): ints or strings.

Products without a title (issue 16, item 7): a description-only product is read from its
description (the word n-grams cover title + description; it has no title character n-grams); a
product with neither (only a photo) teaches the text model nothing, so `fit` leaves it out, and
`predict_proba` gives it the model's bias alone: `product_has_text` tells the bundle and the
fusion to rely on its image instead.

Follows the scikit-learn estimator contract. X is a DataFrame with `title` and `description`
(either may be missing, empty, NaN or raw HTML).
"""
from __future__ import annotations

import hashlib
import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from models.text_features import HashedTfidf, char_wb_ngrams, hash_counts, word_ngrams
from models.text_prior import PATTERN_NAMES, CategoryText, category_documents, pattern_features
from models.text_reference import ReferenceConfig, product_texts, reference_features
from models.textclean import clean_text, fold, has_text, is_missing

__all__ = ["TextConfig", "TextClassifier", "product_texts", "product_has_text"]
log = logging.getLogger(__name__)

WORD_BUCKETS = 2 ** 22
CHAR_BUCKETS = 2 ** 21


@dataclass(frozen=True)
class TextConfig:
    word_max_features: int = 120_000
    char_max_features: int = 160_000
    min_df: int = 2
    max_df: float = 0.9
    C: float = 0.5
    calibration_folds: int = 3            # out-of-fold decision values for the temperature (small sets)
    description_chars: int = 2000         # description prefix read (bounds the cost of 10k-character ones)
    prior_weight: float = 0.5             # sample weight of one category pseudo-document; 0 disables
    pattern_weight: float = 1.0           # scale of the pattern block; 0 disables
    calibration_cv_max: int = 5_000       # above this many products: one holdout instead of folds...
    calibration_holdout: float = 0.06     # ...of this share, and the shipped SVM is the one fitted without it
    tol: float = 1e-3                     # liblinear stopping tolerance (1e-4: same CV F1, a little slower)
    transductive_min_new: int = 100       # predict(adapt=True): unseen products needed for a refit (as before)
    transductive_max_train: int = 10_000  # above this many labelled products, adapt=True cannot refit
    n_jobs: int = 2                       # processes for text analysis, threads for the SVM
    parallel_min_products: int = 30_000   # below this, analysis runs in-process (worker start-up costs more)


# -- featurization ------------------------------------------------------------------------------
def _column(X: pd.DataFrame, name: str) -> list:
    if name not in X:
        return [""] * len(X)
    return X[name].tolist()


def product_has_text(X: pd.DataFrame) -> np.ndarray:
    """(n,) bool: whether each product has a title or a description (`textclean.has_text`)."""
    return np.fromiter((has_text(t, d) for t, d in zip(_column(X, "title"), _column(X, "description"))),
                       dtype=bool, count=len(X))


def _prepare(titles: list, descriptions: list, description_chars: int) -> tuple[list[str], list[str], list[str]]:
    """Cleaned titles, cleaned description prefixes, raw description prefixes (for HTML signals)."""
    raw = ["" if is_missing(d) else str(d)[: 4 * description_chars] for d in descriptions]
    return ([clean_text(t) for t in titles], [clean_text(d)[:description_chars] for d in raw], raw)


def _analyze_chunk(titles: list, descriptions: list, description_chars: int,
                   patterns: bool) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Raw texts -> (word counts, title char counts, pattern rows). Runs in a worker process."""
    tc, dc, raw = _prepare(titles, descriptions, description_chars)
    ft = [fold(t) for t in tc]
    word = hash_counts((word_ngrams(f"{t} {fold(d)}") for t, d in zip(ft, dc)), WORD_BUCKETS)
    char = hash_counts((char_wb_ngrams(t) for t in ft), CHAR_BUCKETS)
    dense = pattern_features(tc, dc, raw) if patterns else np.zeros((len(tc), 0), dtype=np.float32)
    return word.astype(np.float32), char.astype(np.float32), dense


def _analyze(titles: list, descriptions: list, config: TextConfig,
             patterns: bool = True) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    n = len(titles)
    if config.n_jobs <= 1 or n < config.parallel_min_products:
        return _analyze_chunk(titles, descriptions, config.description_chars, patterns)
    from joblib import Parallel, delayed
    bounds = np.linspace(0, n, 4 * config.n_jobs + 1).astype(int)
    parts = Parallel(n_jobs=config.n_jobs, backend="loky")(
        delayed(_analyze_chunk)(titles[a:b], descriptions[a:b], config.description_chars, patterns)
        for a, b in zip(bounds[:-1], bounds[1:]) if b > a)
    return (sp.vstack([p[0] for p in parts]).tocsr(), sp.vstack([p[1] for p in parts]).tocsr(),
            np.vstack([p[2] for p in parts]))


def product_keys(titles: list, descriptions: list) -> np.ndarray:
    """Stable 64-bit keys of (title, description) so a saved model knows which texts it has seen."""
    out = np.empty(len(titles), dtype=np.uint64)
    for i, (t, d) in enumerate(zip(titles, descriptions)):
        t, d = ("" if is_missing(v) else str(v) for v in (t, d))
        digest = hashlib.blake2b(f"{t}\x1f{d}".encode("utf-8", "replace"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little")
    return out


# -- linear model and calibration ---------------------------------------------------------------
def _fit_ovr(Z: sp.csr_matrix, y: np.ndarray, weight: np.ndarray, n_classes: int, C: float,
             random_state: int, n_jobs: int, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest LinearSVC, class groups fitted in threads (liblinear releases the GIL).

    y: class indices 0..n_classes-1. Returns coef (n_classes, n_features), intercept (n_classes,).
    Same binary problems as LinearSVC's own one-vs-rest.
    """
    groups = [g for g in np.array_split(np.arange(n_classes), max(1, min(n_jobs, n_classes))) if len(g)]

    def fit_group(group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = np.where(np.isin(y, group), y, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svc = LinearSVC(C=C, tol=tol, random_state=random_state).fit(Z, labels, sample_weight=weight)
        classes = svc.classes_
        if len(classes) == 2:   # binary: one hyperplane, positive side is classes[1]
            coef = np.vstack([-svc.coef_[0], svc.coef_[0]])
            intercept = np.array([-svc.intercept_[0], svc.intercept_[0]])
        else:
            coef, intercept = svc.coef_, svc.intercept_
        rows = np.searchsorted(classes, group)
        return group, coef[rows], intercept[rows]

    if len(groups) == 1:
        results = [fit_group(groups[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            results = list(pool.map(fit_group, groups))
    coef = np.zeros((n_classes, Z.shape[1]))
    intercept = np.zeros(n_classes)
    for group, c, b in results:
        coef[group], intercept[group] = c, b
    return coef, intercept


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the log-loss of softmax(scores / T); y: class indices."""
    if len(y) == 0:
        return 1.0
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-np.log(softmax(scores, np.exp(log_t))[rows, y] + 1e-12).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.01), np.log(10.0)), method="bounded").x))


def _calibration_splits(y: np.ndarray, config: TextConfig, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds (small sets) or one holdout (large sets); a category keeps >= 2 fitting rows."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if n > config.calibration_cv_max:
        k, take = 1, config.calibration_holdout
    else:
        k, take = max(2, config.calibration_folds), None
    fold_of = np.full(n, -1)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 3:
            continue   # too rare to hold out: always fitted on
        if take is None:
            fold_of[idx] = np.arange(len(idx)) % k
        else:
            m = min(max(1, int(round(take * len(idx)))), len(idx) - 2)
            fold_of[idx[:m]] = 0
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)
            if (fold_of == f).any()]


# -- the estimator ------------------------------------------------------------------------------
class TextClassifier(ClassifierMixin, BaseEstimator):
    """Text model of a version: calibrated probabilities for the top-5 shown to reviewers."""

    def __init__(self, *, config: TextConfig = TextConfig(), categories: tuple[CategoryText, ...] | None = None,
                 random_state: int = 0):
        self.config = config
        self.categories = categories
        self.random_state = random_state

    # the reference recipe's vectorizers (experiments/active_learning.py builds its feature matrix with them)
    def _features(self) -> FeatureUnion:
        c = self.config
        return reference_features(ReferenceConfig(word_max_features=c.word_max_features,
                                                  char_max_features=c.char_max_features,
                                                  min_df=c.min_df, max_df=c.max_df, C=c.C))

    def _prior_codes(self, classes: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Pseudo-documents of the categories among `classes` and their class indices."""
        if self.config.prior_weight <= 0 or not self.categories:
            return [], np.zeros(0, dtype=np.int64)
        index = {c.item() if hasattr(c, "item") else c: i for i, c in enumerate(classes)}
        titles, codes = category_documents(self.categories, index)
        return titles, np.asarray([index[c.item() if hasattr(c, "item") else c] for c in codes], dtype=np.int64)

    def _vectorizers(self, counts_word: sp.csr_matrix, counts_char: sp.csr_matrix) -> tuple[HashedTfidf, HashedTfidf]:
        c = self.config
        word = HashedTfidf(WORD_BUCKETS, min_df=c.min_df, max_df=c.max_df, max_features=c.word_max_features).fit(counts_word)
        char = HashedTfidf(CHAR_BUCKETS, min_df=1, max_df=1.0, max_features=c.char_max_features).fit(counts_char)
        return word, char

    def _design(self, word: HashedTfidf, char: HashedTfidf, cw: sp.csr_matrix, cc: sp.csr_matrix,
                dense: np.ndarray) -> sp.csr_matrix:
        blocks = [word.transform(cw), char.transform(cc)]
        if self.config.pattern_weight > 0:
            blocks.append(sp.csr_matrix(self.config.pattern_weight * dense))
        return sp.hstack(blocks, format="csr", dtype=np.float64)

    def fit(self, X: pd.DataFrame, y, X_unlabeled: pd.DataFrame | None = None) -> "TextClassifier":
        """X: labelled products; X_unlabeled: other products whose texts (never labels) shape the
        vocabulary and IDF, e.g. every product of the workspace. Returns self."""
        c = self.config
        y = np.asarray(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} products but y has {len(y)} labels; they must match row for row")
        if len(X) == 0:
            raise ValueError("cannot fit the text model on 0 products")
        titles, descs = _column(X, "title"), _column(X, "description")
        texted = product_has_text(X)
        if not texted.any():
            raise ValueError(f"none of the {len(X)} labelled products has a title or a description; the text "
                             "model needs some with text (products with only a photo are learnt by the image model)")
        if not texted.all():   # only a photo: nothing for the text model to learn from
            titles = [t for t, keep in zip(titles, texted) if keep]
            descs = [d for d, keep in zip(descs, texted) if keep]
            y = y[texted]
        self.n_without_text_ = int((~texted).sum())
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        un_titles, un_descs = self._new_unlabelled(titles, descs, X_unlabeled)
        prior_titles, prior_y = self._prior_codes(self.classes_)

        clock = time.perf_counter()
        cw, cc, dense = _analyze(titles + un_titles, descs + un_descs, c)
        pw, pc, _ = _analyze_chunk(prior_titles, [""] * len(prior_titles), c.description_chars, False)
        n, n_un, n_prior = len(titles), len(un_titles), len(prior_titles)
        # rows: labelled, category pseudo-documents (patterns zero), unlabelled (vocabulary only)
        all_w = sp.vstack([cw[:n], pw, cw[n:]]).tocsr()
        all_c = sp.vstack([cc[:n], pc, cc[n:]]).tocsr()
        dense_fit = np.vstack([dense[:n], np.zeros((n_prior, dense.shape[1]), np.float32)])
        y_fit = np.concatenate([y_idx, prior_y]).astype(np.int64)
        w_fit = np.concatenate([np.ones(n), np.full(n_prior, c.prior_weight)])

        t_analyze, clock = time.perf_counter() - clock, time.perf_counter()
        self.word_, self.char_ = self._vectorizers(all_w, all_c)
        Z = self._design(self.word_, self.char_, all_w[: n + n_prior], all_c[: n + n_prior], dense_fit)
        t_vectorize, clock = time.perf_counter() - clock, time.perf_counter()
        self.temperature_, shipped = self._calibrate(Z, y_fit, w_fit, n)
        t_calibrate, clock = time.perf_counter() - clock, time.perf_counter()
        coef, intercept = shipped if shipped is not None else self._svm(Z, y_fit, w_fit)
        self.coef_, self.intercept_ = coef.astype(np.float32), intercept.astype(np.float32)
        self.fit_seconds_ = {"analyze": t_analyze, "vectorize": t_vectorize, "calibrate": t_calibrate,
                             "svm": time.perf_counter() - clock}
        self.seen_ = np.unique(product_keys(titles + un_titles, descs + un_descs))
        # n_train: the labelled products given, those without text (left out above) included
        self.n_train_, self.n_unlabeled_, self.n_prior_ = n + self.n_without_text_, n_un, n_prior
        # kept for predict(adapt=True): counts of every fitted row, no raw text
        self.fit_counts_ = (all_w, all_c, dense_fit, y_fit, w_fit) if n <= c.transductive_max_train else None
        return self

    def _svm(self, Z: sp.csr_matrix, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        threads = c.n_jobs if Z.shape[0] >= c.parallel_min_products else 1
        return _fit_ovr(Z, y, w, len(self.classes_), c.C, self.random_state, threads, c.tol)

    @staticmethod
    def _new_unlabelled(titles: list, descs: list, X_unlabeled: pd.DataFrame | None) -> tuple[list, list]:
        """Unlabelled texts minus repeats and minus texts of labelled products, so passing every
        workspace product does not count a labelled product's words twice (min_df would keep them)."""
        if X_unlabeled is None or len(X_unlabeled) == 0:
            return [], []
        un_titles, un_descs = _column(X_unlabeled, "title"), _column(X_unlabeled, "description")
        keys = product_keys(un_titles, un_descs)
        keep = np.zeros(len(keys), dtype=bool)
        keep[np.unique(keys, return_index=True)[1]] = True
        keep &= ~np.isin(keys, product_keys(titles, descs))
        keep &= product_has_text(X_unlabeled)     # an empty document would only dilute the IDF
        return ([t for t, k in zip(un_titles, keep) if k], [d for d, k in zip(un_descs, keep) if k])

    def _calibrate(self, Z: sp.csr_matrix, y_fit: np.ndarray, w_fit: np.ndarray, n: int):
        """Temperature from decision values of labelled rows the SVM did not see.

        Up to `calibration_cv_max` products: out-of-fold values (`calibration_folds`), then the
        caller fits the SVM on everything. Above: one stratified holdout, and the SVM fitted
        without it is returned to be shipped as is (a second fit on 85k products would double
        the retrain time for a 6% larger training set). Pseudo-documents are always fitted on.
        Returns (temperature, (coef, intercept) or None).
        """
        scores, truth, model = [], [], None
        prior_rows = np.arange(n, len(y_fit))
        for fit_rows, held in _calibration_splits(y_fit[:n], self.config, self.random_state):
            rows = np.concatenate([fit_rows, prior_rows])
            model = self._svm(Z[rows], y_fit[rows], w_fit[rows])
            scores.append(Z[held] @ model[0].T + model[1])
            truth.append(y_fit[held])
        if not scores:
            return 1.0, None
        temperature = fit_temperature(np.vstack(scores), np.concatenate(truth))
        return temperature, (model if n > self.config.calibration_cv_max else None)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """(n, n_classes) SVM scores of the fitted model (no predict-time refit)."""
        check_is_fitted(self, "coef_")
        cw, cc, dense = _analyze(_column(X, "title"), _column(X, "description"), self.config)
        return self._design(self.word_, self.char_, cw, cc, dense) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: pd.DataFrame, *, adapt: bool = False) -> np.ndarray:
        """(n, n_classes) calibrated probabilities, columns in `classes_` order.

        Row i depends only on product i. adapt=True: first refit the vectorizers and the SVM with
        the call's texts not seen at fit time as unlabelled ones (when there are at least
        `transductive_min_new` and the model kept its fit counts), so every row then depends on
        the whole batch."""
        check_is_fitted(self, "coef_")
        titles, descs = _column(X, "title"), _column(X, "description")
        if len(titles) == 0:
            return np.zeros((0, len(self.classes_)))
        cw, cc, dense = _analyze(titles, descs, self.config)
        word, char, coef, intercept = self.word_, self.char_, self.coef_, self.intercept_
        if adapt and getattr(self, "fit_counts_", None) is not None:
            new = ~np.isin(product_keys(titles, descs), self.seen_)
            if new.sum() >= max(1, self.config.transductive_min_new):
                word, char, coef, intercept = self._refit_with(cw[new], cc[new])
        scores = self._design(word, char, cw, cc, dense) @ coef.T + intercept
        return softmax(scores, self.temperature_)

    def _refit_with(self, new_w: sp.csr_matrix, new_c: sp.csr_matrix):
        """Vectorizers and SVM refitted with these unseen texts as unlabelled (the temperature stays)."""
        all_w, all_c, dense_fit, y_fit, w_fit = self.fit_counts_
        log.info("adapt: refitting with %d unseen products as unlabelled texts", new_w.shape[0])
        word, char = self._vectorizers(sp.vstack([all_w, new_w]).tocsr(), sp.vstack([all_c, new_c]).tocsr())
        m = len(y_fit)
        Z = self._design(word, char, all_w[:m], all_c[:m], dense_fit)
        coef, intercept = self._svm(Z, y_fit, w_fit)
        return word, char, coef, intercept

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def describe(self) -> dict:
        out = {"kind": "tfidf-prior-linearsvc", **asdict(self.config), "patterns": list(PATTERN_NAMES),
               "prior_categories": len(getattr(self, "categories", None) or ())}
        if hasattr(self, "coef_"):
            out.update({"temperature": round(self.temperature_, 4), "n_train": self.n_train_,
                        "n_without_text": getattr(self, "n_without_text_", 0),
                        "n_unlabeled": self.n_unlabeled_, "n_prior_documents": self.n_prior_,
                        "n_word_features": self.word_.n_columns, "n_char_features": self.char_.n_columns,
                        "fit_seconds": {k: round(v, 2) for k, v in self.fit_seconds_.items()}})
        return out
