"""Query strategies: pure functions from a probability array to "worth reviewing" scores.

Every strategy has the signature ``fn(probs, context=None) -> scores`` where ``probs`` is the
fused probability array ``(n, k)`` (columns: the version's classes, ``Context.codes``) and ``scores`` is
``(n,)``: higher means more worth a reviewer's time. ``-inf`` means "not in this queue" (the
filtering strategies: disagreement, below_threshold, category, suspect_labels); `select` and
`rank` never return such rows. Scores are kept by the caller so the UI can say *why* a product
was picked (`describe_score`).

Tie-breaking is explicit and seeded: equal scores are ordered by a permutation drawn from
``numpy.random.default_rng(seed)``, so the same seed always gives the same queue.

Example::

    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4]])
    >>> select(least_confidence(p), 2, seed=0).tolist()
    [1, 2]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from labeler import taxonomy

EXCLUDED = -np.inf


class StrategyError(ValueError):
    """A strategy was asked for something it cannot do (unknown name, missing context)."""


class PoolExhausted(StrategyError):
    """Fewer candidates than requested."""

    def __init__(self, available: int, requested: int):
        super().__init__(f"pool exhausted: {available} available / {requested} requested")
        self.available = available
        self.requested = requested


@dataclass(frozen=True)
class Context:
    """What some strategies need beyond the fused probabilities (all arrays are ``(n,)``).

    codes:          category key of each column of ``probs``: the model version's classes
                    (default: the Rakuten taxonomy's 27 keys, in code order).
    text_top1:      text model's top-1 code per product.
    image_top1:     image ensemble's top-1 code per product, 0 where the product has no image.
    source_labels:  imported label code per product, 0 where there is none.
    flags:          boolean mask of products flagged by label-issue detection (optional).
    threshold:      auto-accept threshold on the fused top-1 probability.
    category:       the category code for the ``category`` strategy.
    suspect_min_confidence: kept for callers; the suspect queue ranks every labelled product.
    suspects_flagged_first: the suspect queue puts products flagged by confident learning first.
    set_qhat:       the version's conformal quantile (`models.honest`) for ``largest_set``.
    seed:           seed for ``random``.
    """

    codes: tuple[int, ...] = field(default_factory=lambda: tuple(taxonomy.default().keys()))
    text_top1: np.ndarray | None = None
    image_top1: np.ndarray | None = None
    source_labels: np.ndarray | None = None
    flags: np.ndarray | None = None
    threshold: float = 0.80
    category: int | None = None
    suspect_min_confidence: float = 0.80
    suspects_flagged_first: bool = False
    set_qhat: float | None = None
    seed: int = 0

    @classmethod
    def from_arrays(cls, *, text_probs: np.ndarray | None = None, image_probs: np.ndarray | None = None,
                    has_image: np.ndarray | None = None, **kw) -> "Context":
        """Build the top-1 codes from full ``(n, k)`` text/image arrays (the simulation's case)."""
        codes = np.asarray(kw.get("codes") or taxonomy.default().keys())
        text_top1 = None if text_probs is None else codes[np.argmax(text_probs, axis=1)]
        image_top1 = None
        if image_probs is not None:
            image_top1 = codes[np.argmax(image_probs, axis=1)]
            if has_image is not None:
                image_top1 = np.where(np.asarray(has_image, bool), image_top1, 0)
        return cls(text_top1=text_top1, image_top1=image_top1, **kw)


def _check(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise StrategyError(f"expected a probability array of shape (n, k>=2), got shape {probs.shape}")
    return probs


def _sorted_desc(probs: np.ndarray) -> np.ndarray:
    return -np.sort(-probs, axis=1)


def least_confidence(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """1 - p(top-1): the model's own doubt about its best guess."""
    probs = _check(probs)
    return 1.0 - probs.max(axis=1) if len(probs) else np.zeros(0)


def margin(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """1 - (p1 - p2): two categories neck and neck score high."""
    probs = _check(probs)
    if not len(probs):
        return np.zeros(0)
    s = _sorted_desc(probs)
    return 1.0 - (s[:, 0] - s[:, 1])


def entropy(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """Shannon entropy (nats) of the whole distribution, not only the top two."""
    probs = _check(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
    return -terms.sum(axis=1)


def disagreement(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """Text top-1 differs from image top-1; ranked by the fused least confidence."""
    probs = _check(probs)
    if context is None or context.text_top1 is None or context.image_top1 is None:
        raise StrategyError("disagreement needs Context(text_top1=..., image_top1=...): "
                            "the text and image models' own top-1 per product")
    text, image = np.asarray(context.text_top1), np.asarray(context.image_top1)
    differs = (image != 0) & (text != image)
    return np.where(differs, least_confidence(probs), EXCLUDED)


def below_threshold(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """Only products the model would not auto-accept (fused top-1 < threshold), least sure first."""
    probs = _check(probs)
    threshold = (context or Context()).threshold
    return np.where(probs.max(axis=1) < threshold, least_confidence(probs), EXCLUDED) if len(probs) else np.zeros(0)


def random(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """Uniform scores from the context's seed: the baseline every strategy must beat."""
    probs = _check(probs)
    return np.random.default_rng((context or Context()).seed).random(len(probs))


def category(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """Products whose fused top-1 or imported label is the context's category, least sure first."""
    probs = _check(probs)
    if context is None or context.category is None:
        raise StrategyError("category strategy needs Context(category=<code>)")
    codes = np.asarray(context.codes)
    if int(context.category) not in set(codes.tolist()):
        raise StrategyError(f"unknown category {context.category}; expected one of {', '.join(map(str, codes))}")
    top1 = codes[np.argmax(probs, axis=1)] if len(probs) else np.zeros(0, int)
    hit = top1 == int(context.category)
    if context.source_labels is not None:
        hit |= np.asarray(context.source_labels) == int(context.category)
    return np.where(hit, least_confidence(probs), EXCLUDED)


def suspect_labels(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """Every product with an imported label, the least probable label first.

    Score: 1 - p(imported label) under the fused probabilities, which for a labelled product are
    out-of-fold (from models that never saw its label, `labeler.training`); plus 1 for products
    flagged by confident learning when ``context.suspects_flagged_first``. Ranking every labelled
    product lets a reviewer keep walking past the flagged ones (experiments/label_noise.py).
    """
    probs = _check(probs)
    ctx = context or Context()
    if ctx.source_labels is None:
        raise StrategyError("suspect_labels needs Context(source_labels=...): the imported label per product")
    codes = np.asarray(ctx.codes)
    labels = np.asarray(ctx.source_labels)
    col = {int(c): i for i, c in enumerate(codes)}
    label_idx = np.array([col.get(int(c), -1) for c in labels], dtype=int)
    has_label = label_idx >= 0
    n = len(probs)
    label_p = np.where(has_label, probs[np.arange(n), np.clip(label_idx, 0, None)], 0.0) if n else np.zeros(0)
    flagged = np.zeros(n, bool) if ctx.flags is None else np.asarray(ctx.flags, bool)
    if flagged.shape != (n,):
        raise StrategyError(f"flags must be a boolean mask of shape ({n},), got shape {flagged.shape}")
    score = (1.0 - label_p) + (flagged.astype(float) if ctx.suspects_flagged_first else 0.0)
    return np.where(has_label, score, EXCLUDED)


def largest_set(probs: np.ndarray, context: Context | None = None) -> np.ndarray:
    """Largest conformal prediction set first (the model cannot narrow the product down), the
    least confident first within a size. Without a version's quantile: least confidence."""
    probs = _check(probs)
    ctx = context or Context()
    if ctx.set_qhat is None or not len(probs):
        return least_confidence(probs)
    from models.honest import prediction_sets
    return prediction_sets(probs, ctx.set_qhat).sum(axis=1) + 0.5 * least_confidence(probs)


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: Callable[[np.ndarray, Context | None], np.ndarray]
    description: str           # one line, shown in the app's strategy picker
    filters: bool = False      # True: only some products are in its queue
    needs: tuple[str, ...] = ()  # Context fields it requires
    empty_reason: str = ""     # why its queue can be empty and what to do (the app's empty screen)

    def __call__(self, probs: np.ndarray, context: Context | None = None) -> np.ndarray:
        return self.fn(probs, context)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("least_confidence", least_confidence, "Least confident first: lowest fused top-1 probability."),
    Strategy("margin", margin, "Smallest margin first: top-1 and top-2 categories almost tied."),
    Strategy("entropy", entropy, "Highest entropy first: probability spread over many categories."),
    Strategy("disagreement", disagreement, "Text and image models disagree on top-1, least confident first.",
             filters=True, needs=("text_top1", "image_top1"),
             empty_reason="Only products with an image have an image vote, and on every one of them left "
                          "the text and image models agree (or the live version has no image model: fewer than "
                          "30 labelled products with a photo). Import images or label more photographed "
                          "products and retrain, or pick another queue."),
    Strategy("below_threshold", below_threshold,
             "Only products below the auto-accept threshold, least confident first.", filters=True),
    Strategy("random", random, "Random order (seeded): the unbiased baseline."),
    Strategy("category", category, "One category: predicted or imported as the chosen category.",
             filters=True, needs=("category",)),
    Strategy("suspect_labels", suspect_labels,
             "Suspect labels: every imported label, the one the out-of-fold model believes least first.",
             filters=True, needs=("source_labels",),
             empty_reason="This queue ranks the products that have an imported label and no reviewer "
                          "decision yet: every one of them has been reviewed, or the catalog was imported "
                          "without labels. Import labels (--labels Y.csv) and train, or pick another queue."),
    Strategy("largest_set", largest_set,
             "Largest prediction set first: the categories the model cannot rule out (conformal, 90 %)."),
)}


def get(name: str) -> Strategy:
    """The registered strategy; an unknown name lists the close matches."""
    try:
        return STRATEGIES[name]
    except KeyError:
        import difflib
        close = difflib.get_close_matches(name, STRATEGIES, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise StrategyError(f"unknown strategy {name!r}; {hint}known: {', '.join(STRATEGIES)}") from None


def rank(scores: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Indices of every candidate (finite score), best first; ties in a seeded random order."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise StrategyError(f"expected scores of shape (n,), got shape {scores.shape}")
    tiebreak = np.random.default_rng(seed).permutation(len(scores))
    order = np.lexsort((tiebreak, -scores))  # last key is primary: score desc, then the permutation
    return order[np.isfinite(scores[order])]


def select(scores: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """The k best candidates (see `rank`); raises PoolExhausted when fewer than k remain."""
    if k < 0:
        raise StrategyError(f"k must be >= 0, got {k}")
    order = rank(scores, seed=seed)
    if len(order) < k:
        raise PoolExhausted(len(order), k)
    return order[:k]


def describe_score(name: str, score: float | None) -> str:
    """Why a product was picked, in words, for the product card."""
    if score is None or not np.isfinite(score):
        return {"random": "picked at random"}.get(name, "no model prediction yet: in import order")
    return {
        "least_confidence": f"model top-1 probability {1 - score:.0%}",
        "margin": f"top-1 leads top-2 by {1 - score:.0%}",
        "entropy": f"uncertainty (entropy) {score:.2f} nats",
        "disagreement": f"text and image models disagree; top-1 probability {1 - score:.0%}",
        "below_threshold": f"below the auto-accept threshold; top-1 probability {1 - score:.0%}",
        "random": "picked at random",
        "category": f"in the chosen category; top-1 probability {1 - score:.0%}",
        "suspect_labels": (f"flagged by confident learning; out-of-fold probability of its label {2 - score:.0%}"
                           if score > 1 else f"out-of-fold probability of its imported label {1 - score:.0%}"),
        "largest_set": f"{int(score)} categories in its prediction set",
    }.get(name, f"score {score:.3f}")
