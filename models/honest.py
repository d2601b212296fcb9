"""The honest part of a training: folds that ignore labels, auto-accept with a guaranteed
precision, and conformal prediction sets, all computed from out-of-fold predictions.

Why these rules:

* **Folds by product id** (`product_folds`): a product's fold is drawn from a hash of its id, not
  from the labels, so flipping one product's label changes no fold. Its out-of-fold prediction
  comes from models fitted on the other folds only: it cannot move when its own label does.
* **Auto-accept threshold** (`guaranteed_threshold`): on the out-of-fold predictions of the
  labelled products, a binary search over thresholds on the fused top-1 probability keeps the
  lowest one whose products' error rate has a Clopper-Pearson upper bound at or below
  ``1 - target``; the ceil(log2 n) tests share the 5 % risk (Bonferroni), as in selective
  classification with guaranteed risk (Geifman & El-Yaniv 2017), so the precision holds with
  95 % confidence. With too few labels no threshold passes: nothing is auto-accepted.
* **Prediction sets** (`conformal_quantile`, `prediction_sets`): split-conformal RAPS (Angelopoulos
  et al. 2021; APS of Romano et al. 2020 plus a rank penalty), non-randomised: the score of a
  product is the probability mass of the categories at least as probable as its label plus 0.1 per
  rank past the first, 0 when the label is the top-1 (always in the set, so calibration and sets
  agree); the set of a new product holds the categories whose score is within the calibrated
  quantile. Nominal coverage 90 % by default. (Plain APS put 99.8 % coverage and 19 categories in
  the sets of the sample's text model: most wrong labels had almost no probability, so the
  quantile sat on an atom of scores near 1.)

Out-of-fold predictions come from models fitted on 4/5 of the labels while the live model uses all
of them: the guarantees hold for the slightly weaker fold models, so they are conservative for the
live one.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np


TARGET_SETTING = "auto_accept_target"
COVERAGE_SETTING = "conformal_coverage"
DEFAULT_TARGET = 0.95
DEFAULT_COVERAGE = 0.90
CONFIDENCE = 0.95
N_FOLDS = 5
OUT_OF_FOLD_SOURCE = "out-of-fold"                   # predictions.source of a labelled product at training
ALL_LABELS_SOURCE = "model trained on all labels"    # every other prediction


class CalibrationError(ValueError):
    """A target precision or coverage the user gave is out of range (the training service turns it
    into the workspace's own error, `labeler.training.workspace_targets`)."""


def check_fraction(value: Any, what: str) -> float:
    """`value` as a float strictly between 0 and 1, else one line naming it and the range."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"{what} {value!r} is not a number; give a value strictly between 0 and 1, "
                               "e.g. 0.95") from None
    if not 0.0 < x < 1.0:
        raise CalibrationError(f"{what} {value} is outside the range (0, 1); give a value strictly between "
                               "0 and 1, e.g. 0.95")
    return x


def product_folds(ids: Sequence[str], n_folds: int = N_FOLDS, seed: int = 0) -> np.ndarray:
    """(n,) fold index per product from a seeded hash of its id alone: a label change moves no
    fold, and a product keeps its fold when others are labelled or imported later."""
    k = max(2, int(n_folds))
    return np.array([int.from_bytes(hashlib.sha1(f"{seed}:{i}".encode()).digest()[:8], "big") % k for i in ids],
                    dtype=int)


# -- auto-accept ----------------------------------------------------------------------------------
def clopper_pearson_upper(errors: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound on an error rate after `errors` errors in `n` trials."""
    from scipy.stats import beta
    if n <= 0:
        return 1.0
    if errors >= n:
        return 1.0
    return float(beta.ppf(confidence, errors + 1, n - errors))


@dataclass(frozen=True)
class AutoAccept:
    """The chosen threshold and what it was chosen on (out-of-fold predictions)."""

    target: float                  # precision the auto-accepted products must reach
    confidence: float
    threshold: float | None        # lowest passing threshold on the fused top-1; None: nothing passes
    error_bound: float | None      # upper bound on the error rate at that threshold
    coverage: float                # share of the calibration products at or above it
    precision: float | None        # observed precision on them
    n_auto: int
    n: int

    def accepts(self, top1_prob: float) -> bool:
        return self.threshold is not None and float(top1_prob) >= self.threshold

    def describe(self) -> str:
        if self.threshold is None:
            return (f"nothing auto-accepted: {self.n} out-of-fold predictions cannot guarantee "
                    f"{self.target:.0%} precision")
        return (f"fused top-1 >= {self.threshold:.3f}: {self.coverage:.0%} of {self.n} labelled products, "
                f"precision {self.precision:.1%} (>= {self.target:.0%} with {self.confidence:.0%} confidence)")


def guaranteed_threshold(top1_prob: np.ndarray, correct: np.ndarray, target: float = DEFAULT_TARGET,
                         confidence: float = CONFIDENCE) -> AutoAccept:
    """Lowest threshold on `top1_prob` (n,) found whose products reach `target` precision with
    `confidence`: the binary search of selective classification with guaranteed risk (Geifman &
    El-Yaniv 2017, Algorithm 1), each of its ceil(log2 n) Clopper-Pearson tests at level
    (1 - confidence) / ceil(log2 n) (Bonferroni), so the threshold it returns holds at `confidence`.

    correct: (n,) bool, the top-1 is the product's label (out-of-fold)."""
    target = check_fraction(target, "target precision")
    p = np.asarray(top1_prob, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    n = len(p)
    if n < 2:
        return AutoAccept(target, confidence, None, None, 0.0, None, 0, n)
    steps = int(np.ceil(np.log2(n)))
    level = 1.0 - (1.0 - confidence) / steps
    ascending = np.sort(p)
    lo, hi = 0, n - 1
    best: tuple[float, float, int, int] | None = None
    for _ in range(steps):
        z = int(np.ceil((lo + hi) / 2))
        t = float(ascending[z])
        chosen = p >= t
        m, e = int(chosen.sum()), int((~ok[chosen]).sum())
        bound = clopper_pearson_upper(e, m, level)
        if bound <= 1.0 - target:
            if best is None or t < best[0]:
                best = (t, bound, m, e)
            hi = z            # passes: try a lower threshold (more products)
        else:
            lo = z            # fails: a higher one
    if best is None:
        return AutoAccept(target, confidence, None, None, 0.0, None, 0, n)
    t, bound, m, e = best
    return AutoAccept(target, confidence, round(t, 6), round(bound, 4), round(m / n, 4), round(1 - e / m, 4), m, n)


# -- conformal prediction sets ----------------------------------------------------------------------
RAPS_LAMBDA = 0.1    # penalty per rank past RAPS_K_REG (27 categories; fixed a priori, never tuned on a bench)
RAPS_K_REG = 1


def _raps_table(probs: np.ndarray, lam: float, k_reg: int) -> np.ndarray:
    """(n, k) RAPS score of every category: 0 for the top-1 (always in the set), else the mass of
    the categories at least as probable (a tie group whole) plus lam per rank past k_reg.
    O(n·k) memory: the whole catalog is scored at once by the `largest_set` queue."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        probs = probs[None, :]
    n, k = probs.shape
    order = np.argsort(-probs, axis=1, kind="stable")
    sp = np.take_along_axis(probs, order, axis=1)
    cum = np.cumsum(sp, axis=1)
    start = np.zeros((n, k), dtype=int)
    for col in range(k - 2, -1, -1):          # a tie group counts its whole mass...
        tie = sp[:, col] == sp[:, col + 1]
        cum[tie, col] = cum[tie, col + 1]
    for col in range(1, k):                   # ...and shares the rank of its first member
        start[:, col] = np.where(sp[:, col] == sp[:, col - 1], start[:, col - 1], col)
    rank = start + 1
    scored = np.where(rank == 1, 0.0, cum + lam * np.maximum(0, rank - k_reg))
    table = np.empty_like(scored)
    np.put_along_axis(table, order, scored, axis=1)
    return table


def aps_scores(probs: np.ndarray, labels: np.ndarray, lam: float = RAPS_LAMBDA, k_reg: int = RAPS_K_REG
               ) -> np.ndarray:
    """(n,) conformal score of each row's label (column index): RAPS (Angelopoulos et al. 2021),
    APS with lam=0 (Romano et al. 2020), non-randomised, the top-1 scored 0."""
    table = _raps_table(probs, lam, k_reg)
    return table[np.arange(len(table)), np.asarray(labels, dtype=int)]


def conformal_quantile(scores: np.ndarray, coverage: float = DEFAULT_COVERAGE) -> float:
    """The ceil((n+1)·coverage)-th smallest calibration score; inf (every category) when there
    are too few scores to reach the coverage."""
    coverage = check_fraction(coverage, "conformal coverage")
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    rank = int(np.ceil((n + 1) * coverage))
    return float("inf") if rank > n or n == 0 else float(s[rank - 1])


def prediction_sets(probs: np.ndarray, qhat: float, lam: float = RAPS_LAMBDA, k_reg: int = RAPS_K_REG
                    ) -> np.ndarray:
    """(n, k) bool: the categories whose score is <= qhat (the top-1 always: its score is 0)."""
    return _raps_table(probs, lam, k_reg) <= qhat + 1e-12


@dataclass(frozen=True)
class Conformal:
    coverage: float            # nominal
    qhat: float                # 1e9: every category (too few labels to reach the coverage)
    n: int
    empirical_coverage: float  # two-fold swap on the out-of-fold rows: calibrate on one half, test on the other
    mean_set_size: float       # same protocol
    lam: float = RAPS_LAMBDA
    k_reg: int = RAPS_K_REG

    def sets(self, probs: np.ndarray) -> np.ndarray:
        return prediction_sets(probs, self.qhat, self.lam, self.k_reg)


def fit_conformal(probs: np.ndarray, labels: np.ndarray, coverage: float = DEFAULT_COVERAGE,
                  seed: int = 0) -> Conformal:
    """qhat on every out-of-fold row; coverage and set size estimated on held-out halves."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    scores = aps_scores(probs, labels)
    qhat = conformal_quantile(scores, coverage)
    half = np.random.default_rng(seed).permutation(len(labels)) % 2 == 0
    hits, sizes = [], []
    for cal in (half, ~half):
        if cal.sum() == 0 or (~cal).sum() == 0:
            continue
        q = conformal_quantile(scores[cal], coverage)
        s = prediction_sets(probs[~cal], q)
        hits.append(s[np.arange(len(s)), labels[~cal]])
        sizes.append(s.sum(axis=1))
    cov = float(np.concatenate(hits).mean()) if hits else float("nan")
    size = float(np.concatenate(sizes).mean()) if sizes else float("nan")
    return Conformal(coverage, round(qhat, 6) if np.isfinite(qhat) else 1e9, len(labels), round(cov, 4),
                     round(size, 3))


# -- what a version stores --------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """Auto-accept and prediction-set rules of one model version (bundle.info['calibration'] and
    the version's metrics)."""

    auto_accept: AutoAccept
    conformal: Conformal

    def as_dict(self) -> dict:
        return {"auto_accept": asdict(self.auto_accept), "conformal": asdict(self.conformal)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Calibration | None":
        if not d or "auto_accept" not in d or "conformal" not in d:
            return None
        return cls(AutoAccept(**d["auto_accept"]), Conformal(**d["conformal"]))


def calibrate(probs: np.ndarray, labels: np.ndarray, *, target: float = DEFAULT_TARGET,
              coverage: float = DEFAULT_COVERAGE) -> Calibration:
    """Both rules from out-of-fold fused probabilities (n, k) and label column indices (n,)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    top1 = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    top1_p = probs.max(axis=1) if len(probs) else np.zeros(0)
    return Calibration(guaranteed_threshold(top1_p, top1 == labels, target),
                       fit_conformal(probs, labels, coverage))


_VERSION_CACHE: dict[tuple[str, str], "Calibration | None"] = {}


def version_calibration(ws: Any, version: str | None) -> "Calibration | None":
    """The calibration stored with a model version (None for none, or a version trained before
    this existed); read once per version, a version's metrics never change it afterwards."""
    if version is None:
        return None
    key = (str(ws.db_path), version)
    if key not in _VERSION_CACHE:
        found = [v for v in ws.model_versions() if v["id"] == version]
        if not found:
            return None
        _VERSION_CACHE[key] = Calibration.from_dict(found[0]["metrics"])
    return _VERSION_CACHE[key]
