"""Learned late fusion of the text model and the image voters, fitted on out-of-fold predictions.

The study fuses `0.6 * image + 0.4 * text`; on a workspace with few images that is worse than text
alone. Here the fusion is a log-linear model whose few parameters are fitted by minimising the
log-loss of out-of-fold predictions of the labelled products that have an image:

    score_c = log text_c - b * log prior_c + a * log vote_c + d_c,   fused = softmax(t * score)
    vote    = sum_v w_v * sharpen(p_v, k)                            (the image soft vote)

`a` is the image weight, `b` undoes the text model's class prior (learned on all products, while
imaged products may follow another mix), `d` a per-category offset (L2-shrunk to 0) that finishes
that job category by category, `t` a temperature, `w` the vote weights and `k` the sharpening
exponent. The offsets matter: on the shared sample the imaged products are spread evenly over
categories while the texts are not, and `b` alone leaves +0.03 weighted F1 on the table
(docs/image_model.md). Products without an image get the text probabilities unchanged; products
without text (only a photo: `has_text` False) get the image vote unchanged, the symmetric case,
and are left out of the fit, whose parameters weigh two sources a product has both of.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize
from sklearn.metrics import f1_score, log_loss

from models.image import soft_vote

log = logging.getLogger(__name__)
EPS = 1e-4
OFFSET_L2 = 0.3    # shrinkage of the per-category offsets, per out-of-fold row (0.03-1 measured alike)
OFFSET_BOUND = 3.0   # |d_c| at most: a category without imaged examples is damped, never ruled out
OFFSET_MIN_ROWS = 4  # per category on average: with fewer out-of-fold rows the offsets cost F1


@dataclass(frozen=True)
class FusionParams:
    image_weight: float = 0.6        # a
    prior_correction: float = 0.0    # b
    temperature: float = 1.0         # t
    sharpen_k: float = 3.0           # k
    vote_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    category_offsets: tuple[float, ...] = ()   # d, one per category in taxonomy order; () = none


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, EPS, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Fusion:
    """Fits `FusionParams` on out-of-fold (text, voters, y); `fuse` applies them.

    Arrays are (n, 27) in taxonomy code order; `voters` is an ordered {name: (n, 27)}.
    """

    def __init__(self, *, voter_names: Sequence[str], text_prior: np.ndarray | None = None,
                 params: FusionParams | None = None, offset_l2: float | None = OFFSET_L2,
                 offset_min_rows: float = OFFSET_MIN_ROWS):
        self.voter_names = list(voter_names)
        self.offset_l2 = offset_l2              # None: no per-category offsets
        self.offset_min_rows = offset_min_rows  # per category, on average, to fit them at all
        self.text_prior = None if text_prior is None else np.asarray(text_prior, dtype=np.float64)
        self.params = params or FusionParams(vote_weights=(1.0,) * len(self.voter_names))
        self.metrics: dict[str, float] = {}

    # -- applying ---------------------------------------------------------------------------
    def image_vote(self, voters: dict[str, np.ndarray]) -> np.ndarray:
        return soft_vote([voters[n] for n in self.voter_names], self.params.vote_weights, self.params.sharpen_k)

    def _scores(self, text: np.ndarray, vote: np.ndarray, p: FusionParams) -> np.ndarray:
        s = _log(text) + p.image_weight * _log(vote)
        if self.text_prior is not None and p.prior_correction:
            s = s - p.prior_correction * _log(self.text_prior)[None, :]
        if p.category_offsets:
            s = s + np.asarray(p.category_offsets)[None, :]
        return _softmax(p.temperature * s)

    def fuse(self, text: np.ndarray, image: np.ndarray, has_image: np.ndarray, *,
             voters: dict[str, np.ndarray] | None = None, has_text: np.ndarray | None = None) -> np.ndarray:
        """(n, 27) fused probabilities; text only where has_image is False, the image vote alone
        where has_text is False (default: where the text row is all zeros)."""
        text = np.asarray(text, dtype=np.float64)
        has_image = np.asarray(has_image, dtype=bool)
        if voters and all(n in voters for n in self.voter_names):
            vote = self.image_vote(voters)
        else:
            vote = np.asarray(image, dtype=np.float64)
        if has_text is None:
            has_text = text.sum(axis=1) > 0
        has_text = np.asarray(has_text, dtype=bool)
        out = text.copy()
        both = has_image & has_text
        if both.any():
            out[both] = self._scores(text[both], vote[both], self.params)
        only_image = has_image & ~has_text
        out[only_image] = vote[only_image]
        return out

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, text: np.ndarray, voters: dict[str, np.ndarray], y_index: np.ndarray, *,
            has_text: np.ndarray | None = None) -> "Fusion":
        """text (n,27), voters {name: (n,27)}, y_index (n,) column index of the true category;
        has_text (n,) bool: rows False (a product with only a photo) are left out, since `fuse`
        gives them the image vote whatever the parameters. No row left: the parameters stay."""
        n_v = len(self.voter_names)
        V = [np.asarray(voters[n], dtype=np.float64) for n in self.voter_names]
        text = np.asarray(text, dtype=np.float64)
        y_index = np.asarray(y_index)
        if has_text is not None:
            keep = np.asarray(has_text, dtype=bool)
            V, text, y_index = [v[keep] for v in V], text[keep], y_index[keep]
        if len(y_index) == 0:
            log.warning("fusion: no out-of-fold row has both text and an image; default parameters kept")
            self.metrics = {"oof_n": 0}
            return self
        use_prior = self.text_prior is not None
        n_c = text.shape[1] if self.offset_l2 is not None and len(y_index) >= self.offset_min_rows * text.shape[1] else 0

        def unpack(theta: np.ndarray) -> FusionParams:
            w = np.exp(theta[4:4 + n_v])
            return FusionParams(image_weight=float(theta[0]), prior_correction=float(theta[1]) if use_prior else 0.0,
                                temperature=float(np.exp(theta[2])), sharpen_k=float(np.exp(theta[3])),
                                vote_weights=tuple(float(x) for x in w / w.sum()),
                                category_offsets=tuple(float(x) for x in theta[4 + n_v:]))

        def loss(theta: np.ndarray) -> float:
            p = unpack(theta)
            vote = soft_vote(V, p.vote_weights, p.sharpen_k)
            probs = self._scores(text, vote, p)
            ll = -np.mean(np.log(np.clip(probs[np.arange(len(y_index)), y_index], 1e-12, 1)))
            penalty = 1e-3 * np.sum(theta[4:4 + n_v] ** 2)   # keeps vote weights finite when a voter is useless
            return float(ll + penalty + (self.offset_l2 or 0.0) * np.sum(theta[4 + n_v:] ** 2) / len(y_index))

        theta0 = np.r_[0.5, 0.5 if use_prior else 0.0, 0.0, np.log(1.0), np.zeros(n_v), np.zeros(n_c)]
        bounds = [(0.0, 3.0), (0.0, 1.5) if use_prior else (0.0, 0.0), (np.log(0.2), np.log(5.0)),
                  (np.log(0.3), np.log(6.0))] + [(-4.0, 4.0)] * n_v + [(-OFFSET_BOUND, OFFSET_BOUND)] * n_c
        res = minimize(loss, theta0, method="L-BFGS-B", bounds=bounds)
        self.params = unpack(res.x)
        fused = self.fuse(text, soft_vote(V, self.params.vote_weights, self.params.sharpen_k),
                          np.ones(len(text), bool), voters=dict(zip(self.voter_names, V)))
        vote = self.image_vote(dict(zip(self.voter_names, V)))
        self.metrics = {
            "oof_n": int(len(y_index)),
            "oof_text_weighted_f1": _wf1(y_index, text), "oof_image_weighted_f1": _wf1(y_index, vote),
            "oof_fused_weighted_f1": _wf1(y_index, fused),
            "oof_fused_log_loss": round(float(log_loss(y_index, np.clip(fused, 1e-12, 1), labels=range(text.shape[1]))), 4),
        }
        log.info("fusion fitted: %s; %s", self.params, self.metrics)
        return self

    def describe(self) -> dict:
        p = self.params
        return {"kind": "log-linear", "image_weight": round(p.image_weight, 4),
                "prior_correction": round(p.prior_correction, 4), "temperature": round(p.temperature, 4),
                "sharpen_k": round(p.sharpen_k, 4),
                "vote_weights": dict(zip(self.voter_names, [round(w, 4) for w in p.vote_weights])),
                "category_offsets": [round(d, 3) for d in p.category_offsets],
                **self.metrics}


def _wf1(y_index: np.ndarray, probs: np.ndarray) -> float:
    return round(float(f1_score(y_index, probs.argmax(axis=1), average="weighted")), 4)
