"""Image voters (backbone + head) and their weighted soft vote with probability sharpening.

A voter is a frozen backbone from `models.backbones` plus a head fitted on its pooled features
(`models.features`): an MLP, a logistic (linear) layer, or XGBoost. The ensemble sharpens each
voter's probabilities, `p**k / sum(p**k)`, and averages them with vote weights; the weights and
`k` are re-fitted on out-of-fold predictions by `models.fusion` and written back here.

Example (the study's voters, built from configuration alone; their weights need the timm hub)::

    ens = ImageEnsemble(voters=STUDY_VOTERS)
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from models.backbones import get_spec, load_backbone
from models.features import as_cache, extract_features, pending_seconds
from models.predictor import align
from models.progress import Progress, scaled

log = logging.getLogger(__name__)


# -- heads -------------------------------------------------------------------------------------
class LogisticHead(ClassifierMixin, BaseEstimator):
    """Standardised features -> multinomial logistic regression (a linear layer + softmax)."""

    def __init__(self, *, C: float = 0.01, max_iter: int = 2000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LogisticHead":
        self.scaler_ = StandardScaler().fit(X)
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(self.scaler_.transform(X), y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self.scaler_.transform(X))

    def to_torch(self) -> torch.nn.Module:
        """Pooled features (n, d) -> logits (n, n_classes), differentiable for Grad-CAM."""
        check_is_fitted(self, "model_")
        scale = torch.nn.Linear(len(self.scaler_.mean_), len(self.scaler_.mean_))
        lin = torch.nn.Linear(self.model_.coef_.shape[1], len(self.classes_))
        with torch.no_grad():
            scale.weight.copy_(torch.diag(torch.tensor(1 / self.scaler_.scale_, dtype=torch.float32)))
            scale.bias.copy_(torch.tensor(-self.scaler_.mean_ / self.scaler_.scale_, dtype=torch.float32))
            coef = self.model_.coef_ if len(self.classes_) > 2 else np.vstack([-self.model_.coef_, self.model_.coef_]) / 2
            icpt = self.model_.intercept_ if len(self.classes_) > 2 else np.r_[-self.model_.intercept_, self.model_.intercept_] / 2
            lin.weight.copy_(torch.tensor(coef, dtype=torch.float32))
            lin.bias.copy_(torch.tensor(icpt, dtype=torch.float32))
        return torch.nn.Sequential(scale, lin).eval()


class MLPHead(ClassifierMixin, BaseEstimator):
    """Standardised features -> dropout -> Linear -> GELU -> dropout -> Linear, trained with AdamW.

    Heavy dropout, weight decay and label smoothing because a workspace may hold only a few
    hundred labelled images. `n_members` > 1 trains that many nets from different seeds and
    averages their probabilities (bagging the seed): on the sample's few hundred photos one net's
    answer moves with its seed; five of them on lite1's stage features gain 0.04 weighted F1 as a
    voter over one net (not the default: the ensemble did not gain, docs/image_model.md).
    """

    def __init__(self, *, hidden: int = 256, dropout: float = 0.5, input_dropout: float = 0.2,
                 weight_decay: float = 0.05, lr: float = 1e-3, epochs: int = 40, batch_size: int = 128,
                 label_smoothing: float = 0.1, n_members: int = 1, random_state: int = 0):
        self.hidden = hidden
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.weight_decay = weight_decay
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.label_smoothing = label_smoothing
        self.n_members = n_members
        self.random_state = random_state

    def _module(self, d: int, c: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Dropout(self.input_dropout), torch.nn.Linear(d, self.hidden), torch.nn.GELU(),
            torch.nn.Dropout(self.dropout), torch.nn.Linear(self.hidden, c))

    def fit(self, X: np.ndarray, y: np.ndarray) -> "MLPHead":
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        self.mean_ = X.mean(0).astype(np.float32)
        self.scale_ = (X.std(0) + 1e-6).astype(np.float32)
        Xt = torch.tensor((X - self.mean_) / self.scale_, dtype=torch.float32)
        yt = torch.tensor(self.encoder_.transform(y), dtype=torch.long)
        self.members_ = [self._train(Xt, yt, self.random_state + m) for m in range(max(1, int(self.n_members)))]
        return self

    def _train(self, Xt: torch.Tensor, yt: torch.Tensor, seed: int) -> torch.nn.Module:
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = self._module(Xt.shape[1], len(self.classes_))
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = self.epochs * max(1, int(np.ceil(len(Xt) / self.batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(Xt), generator=g)
            for start in range(0, len(Xt), self.batch_size):
                idx = order[start:start + self.batch_size]
                opt.zero_grad()
                loss_fn(net(Xt[idx]), yt[idx]).backward()
                opt.step()
                sched.step()
        return net.eval()

    def _members(self) -> list[torch.nn.Module]:
        # versions saved before bagging hold one net as `module_`
        return self.members_ if hasattr(self, "members_") else [self.module_]

    @torch.inference_mode()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "classes_")
        x = torch.tensor((X - self.mean_) / self.scale_, dtype=torch.float32)
        p = torch.stack([torch.softmax(net(x), dim=1) for net in self._members()]).mean(0)
        return p.numpy().astype(np.float64)

    def to_torch(self) -> torch.nn.Module:
        """Features -> log of the members' mean probability: its softmax is `predict_proba`, and
        Grad-CAM's target is the bag's own score for the category."""
        check_is_fitted(self, "classes_")
        scale = torch.nn.Linear(len(self.mean_), len(self.mean_))
        with torch.no_grad():
            scale.weight.copy_(torch.diag(torch.tensor(1 / self.scale_)))
            scale.bias.copy_(torch.tensor(-self.mean_ / self.scale_))
        # copies: the caller may move them to the backbone's device, the head keeps predicting on CPU
        return torch.nn.Sequential(scale, _MeanProbability(copy.deepcopy(self._members()))).eval()


class _MeanProbability(torch.nn.Module):
    def __init__(self, nets: list[torch.nn.Module]):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.nets) == 1:
            return self.nets[0](x)
        p = torch.stack([torch.softmax(net(x), dim=1) for net in self.nets]).mean(0)
        return torch.log(p.clamp_min(1e-12))


class XGBHead(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees on pooled features (no gradients: explained by Ablation-CAM)."""

    def __init__(self, *, pca: int | None = 64, n_estimators: int = 100, max_depth: int = 3,
                 learning_rate: float = 0.1, subsample: float = 0.8, colsample_bytree: float = 0.5,
                 min_child_weight: float = 1.0, reg_lambda: float = 1.0, n_jobs: int | None = None, random_state: int = 0):
        self.pca = pca
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "XGBHead":
        from xgboost import XGBClassifier

        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        # a few dozen principal components: trees on 1,280 raw dims overfit a few hundred images and train slowly
        n_comp = min(self.pca, X.shape[0] - 1, X.shape[1]) if self.pca else 0
        self.pca_ = PCA(n_comp, random_state=self.random_state).fit(X) if n_comp else None
        X = self.pca_.transform(X) if self.pca_ is not None else X
        self.model_ = XGBClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            subsample=self.subsample, colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight, reg_lambda=self.reg_lambda, n_jobs=self._threads(len(X)),
            random_state=self.random_state, tree_method="hist", objective="multi:softprob",
            eval_metric="mlogloss")
        self.model_.fit(np.asarray(X, dtype=np.float32), self.encoder_.transform(y))
        return self

    def _threads(self, n_rows: int) -> int:
        """One thread for a workspace-sized fit (threads cost more than they bring on a few hundred
        rows: 3x slower with 2 on this 2-core machine), every core for a large one."""
        if self.n_jobs:
            return int(self.n_jobs)
        return 1 if n_rows < 5000 else (os.cpu_count() or 1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = self.pca_.transform(X) if self.pca_ is not None else X
        p = self.model_.predict_proba(np.asarray(X, dtype=np.float32))
        if p.ndim == 1 or p.shape[1] != len(self.classes_):  # a binary booster returns one column
            p = np.column_stack([1 - p.reshape(-1), p.reshape(-1)]) if len(self.classes_) == 2 else p
        return p.astype(np.float64)


HEADS: dict[str, type] = {"logistic": LogisticHead, "linear": LogisticHead, "mlp": MLPHead, "xgboost": XGBHead}


def make_head(kind: str, params: dict | None = None, random_state: int = 0) -> BaseEstimator:
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; expected one of {', '.join(HEADS)}")
    cls = HEADS[kind]
    params = dict(params or {})
    if "random_state" in cls().get_params():
        params.setdefault("random_state", random_state)
    return cls(**params)


# -- voters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VoterSpec:
    """One voter of the ensemble: saved with the model version (see `ImageEnsemble.describe`)."""
    backbone: str
    head: str
    weight: float = 1.0                     # vote weight before fusion re-fits it
    weights: str | None = None              # weights source; None = the registry's
    input_size: int | None = None           # None = the backbone's own resolution
    flip: bool = True                       # average features with the mirrored image
    head_params: tuple[tuple[str, Any], ...] = ()
    name: str = ""
    stages: int = 0                         # also the averaged outputs of the last N block stages

    @property
    def label(self) -> str:
        return self.name or f"{self.backbone}+{self.head}"


# Product photos are 500x500 and the categories hinge on small print (a cover, a box, a label):
# feeding the backbones more pixels than their training resolution is the largest single gain
# measured on the shared sample (5-fold CV, logistic head, weighted F1): lite2 260 px 0.35 ->
# 400 px 0.40 -> 480 px 0.41; lite1 240 -> 400 px 0.355 -> 0.375; lite0 224 -> 352 px 0.33 -> 0.36
# (448 px no better). Heads: a logistic layer is the strongest on the best features; the MLP and
# XGBoost heads add variety, and the vote weights learned by `models.fusion` decide how much.
# The lite2 voter also reads the last three block stages (`features.pooled_features`): +0.03
# image-only F1 for it (experiments/image_recipes.py). lite1's MLP on them as a bag of 5 seeds is +0.04
# as a voter, but the learned vote on held-out splits came out lower with it (0.392 / 0.428 vs
# 0.428 / 0.432), so lite1 keeps one MLP on pooled features; XGBoost gained nothing from stages.
DEFAULT_VOTERS: tuple[VoterSpec, ...] = (
    VoterSpec("lite2", "logistic", input_size=480, head_params=(("C", 0.003),), name="lite2+logistic", stages=3),
    VoterSpec("lite1", "mlp", input_size=400, name="lite1+mlp"),
    VoterSpec("lite0", "xgboost", input_size=352, name="lite0+xgboost"),
)
# The reference study: DINOv3 ViT, XGBoost on ResNet50 features, EfficientNet-B0 (hub weights).
STUDY_VOTERS: tuple[VoterSpec, ...] = (
    VoterSpec("dinov3_vits16", "mlp", name="dinov3+mlp"),
    VoterSpec("resnet50", "xgboost", name="resnet50+xgboost"),
    VoterSpec("efficientnet_b0", "logistic", name="effnet_b0+linear"),
)


VOTERS_SETTING = "image_voters"   # workspace setting: JSON list of VoterSpec fields


def voters_from_config(value: str | list | None) -> tuple[VoterSpec, ...]:
    """Voters from a JSON list of {backbone, head, weight, weights, input_size, flip, head_params, name,
    stages}; None gives DEFAULT_VOTERS. Unknown backbones fail here, with the close names."""
    import json
    if value is None or value == "":
        return DEFAULT_VOTERS
    items = json.loads(value) if isinstance(value, str) else value
    voters = []
    for item in items:
        item = dict(item)
        item["head_params"] = tuple((k, v) for k, v in dict(item.get("head_params") or {}).items())
        spec = VoterSpec(**item)
        get_spec(spec.backbone)
        if spec.stages and (int(spec.stages) != spec.stages or not 0 < spec.stages <= 7 or get_spec(spec.backbone).is_vit):
            raise ValueError(f"voter {spec.label}: stages={spec.stages!r}; expected 0 (pooled features) or "
                             "1-7 block stages of a CNN backbone")
        make_head(spec.head)
        voters.append(spec)
    if not voters:
        raise ValueError("the image ensemble needs at least one voter")
    return tuple(voters)


def sharpen(p: np.ndarray, k: float) -> np.ndarray:
    """p**k / sum(p**k) row-wise; k > 1 sharpens, k < 1 flattens; rows of zeros stay zeros."""
    q = np.power(np.clip(p, 0, None), k)
    s = q.sum(axis=1, keepdims=True)
    return np.divide(q, s, out=np.zeros_like(q), where=s > 0)


def soft_vote(voters: Sequence[np.ndarray], weights: Sequence[float], k: float) -> np.ndarray:
    """Weighted mean of sharpened voter probabilities, each (n, 27) -> (n, 27)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError(f"vote weights must have a positive sum, got {list(w)}")
    out = sum(wi * sharpen(p, k) for wi, p in zip(w / w.sum(), voters))
    return np.asarray(out)


class ImageEnsemble(ClassifierMixin, BaseEstimator):
    """Weighted soft vote of backbone+head voters, on products' images.

    `fit`/`predict_proba` take feature dicts {voter label: (n, dim)} (cheap, used by CV);
    `fit_products`/`predict_products` take products with `image_path`/`image_sha1` and go
    through the feature cache.
    """

    def __init__(self, *, voters: Sequence[VoterSpec] = DEFAULT_VOTERS, sharpen_k: float = 3.0,
                 random_state: int = 0, device: str | None = None, codes: Sequence | None = None):
        self.voters = voters
        self.sharpen_k = sharpen_k
        self.random_state = random_state
        self.device = device
        self.codes = codes      # column order of the probabilities (a taxonomy's codes); None: classes_

    # features ---------------------------------------------------------------------------------
    def backbone(self, spec: VoterSpec):
        """The voter's loaded backbone (once per process)."""
        return load_backbone(spec.backbone, weights=spec.weights, input_size=spec.input_size, device=self.device)

    @staticmethod
    def _recipe(spec: VoterSpec) -> tuple:
        """What the features depend on: voters with the same recipe share one backbone pass."""
        return spec.backbone, spec.weights, spec.input_size, spec.flip, spec.stages

    def _recipes(self) -> dict[tuple, VoterSpec]:
        return {self._recipe(s): s for s in self.voters}

    def pending_feature_seconds(self, products: pd.DataFrame, *, feature_store: Any = None) -> dict[tuple, float]:
        """Rough seconds of feature extraction ahead per recipe (all 0 when everything is cached)."""
        cache = as_cache(feature_store)
        paths = products["image_path"].tolist() if "image_path" in products else [None] * len(products)
        sha1s = products["image_sha1"].tolist() if "image_sha1" in products else None
        if not any(isinstance(p, str) and p for p in paths):
            return {r: 0.0 for r in self._recipes()}
        return {r: pending_seconds(self.backbone(s), paths, sha1s, cache=cache, flip=s.flip, stages=s.stages)
                for r, s in self._recipes().items()}

    def product_features(self, products: pd.DataFrame, *, feature_store: Any = None,
                         progress: Progress | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, dict[int, str]]:
        """{voter label: (n, dim)}, has_image (n,), problems {row: message}; one pass per backbone."""
        cache = as_cache(feature_store)
        paths = products["image_path"].tolist() if "image_path" in products else [None] * len(products)
        sha1s = products["image_sha1"].tolist() if "image_sha1" in products else None
        by_recipe: dict[tuple, np.ndarray] = {}
        feats: dict[str, np.ndarray] = {}
        ok = np.ones(len(products), dtype=bool)
        problems: dict[int, str] = {}
        if progress:   # each backbone's part of the bar in proportion to the work it has left
            seconds = self.pending_feature_seconds(products, feature_store=cache)
            total = sum(seconds.values())
            shares = {r: (t / total if total > 0 else 1 / len(seconds)) for r, t in seconds.items()}
            done = 0.0
        for spec in self.voters:
            recipe = self._recipe(spec)
            if recipe not in by_recipe:
                part = None
                if progress:
                    part, done = scaled(progress, done, done + shares[recipe]), done + shares[recipe]
                batch = extract_features(self.backbone(spec), paths, sha1s, cache=cache, flip=spec.flip,
                                         progress=part, stages=spec.stages)
                by_recipe[recipe] = batch.vectors
                ok &= batch.ok
                problems.update(batch.problems)
            feats[spec.label] = by_recipe[recipe]
        return feats, ok, problems

    # sklearn-style on features ---------------------------------------------------------------
    def fit(self, features: dict[str, np.ndarray], y: np.ndarray) -> "ImageEnsemble":
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.codes_ = list(self.codes) if self.codes is not None else list(self.classes_)
        self.heads_ = {}
        for spec in self.voters:
            head = make_head(spec.head, dict(spec.head_params), self.random_state)
            self.heads_[spec.label] = head.fit(features[spec.label], y)
        self.vote_weights_ = np.array([s.weight for s in self.voters], dtype=np.float64)
        self.sharpen_k_ = float(self.sharpen_k)
        return self

    def _codes(self, codes: Sequence | None) -> Sequence:
        if codes is not None:
            return codes
        return getattr(self, "codes_", None) or list(self.classes_)

    def voter_proba(self, features: dict[str, np.ndarray], codes: Sequence | None = None) -> dict[str, np.ndarray]:
        """{voter label: (n, k)}, columns in `codes` order (default: the `codes` it was built with)."""
        check_is_fitted(self, "heads_")
        codes = self._codes(codes)
        return {name: align(h.predict_proba(features[name]), h.classes_, codes) for name, h in self.heads_.items()}

    def vote(self, voters: dict[str, np.ndarray]) -> np.ndarray:
        return soft_vote([voters[s.label] for s in self.voters], self.vote_weights_, self.sharpen_k_)

    def predict_proba(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """(n, k) in `codes` order (not `classes_` order, so the models of a version line up)."""
        return self.vote(self.voter_proba(features))

    def set_vote(self, weights: Sequence[float], k: float) -> None:
        """Vote weights and sharpening learned by `models.fusion` on out-of-fold predictions."""
        if len(weights) != len(self.voters):
            raise ValueError(f"got {len(weights)} vote weights for {len(self.voters)} voters")
        self.vote_weights_ = np.asarray(weights, dtype=np.float64)
        self.sharpen_k_ = float(k)

    # products ----------------------------------------------------------------------------------
    def fit_products(self, products: pd.DataFrame, y: np.ndarray, *, feature_store: Any = None,
                     progress: Progress | None = None) -> "ImageEnsemble":
        feats, ok, _ = self.product_features(products, feature_store=feature_store, progress=progress)
        if ok.sum() < 2:
            raise ValueError(f"only {int(ok.sum())} of {len(products)} products have a usable image")
        return self.fit({k: v[ok] for k, v in feats.items()}, np.asarray(y)[ok])

    def predict_products(self, products: pd.DataFrame, progress: Progress | None = None,
                         feature_store: Any = None, codes: Sequence | None = None) -> dict[str, Any]:
        """{'voters': {name: (n,k)}, 'image': (n,k), 'has_image': (n,) bool, 'problems': {id: msg}},
        columns in `codes` order (default: the ensemble's own).

        Products without a usable image get all-zero rows and has_image False (text only).
        """
        n = len(products)
        codes = self._codes(codes)
        feats, ok, problems = self.product_features(products, feature_store=feature_store, progress=progress)
        voters = {s.label: np.zeros((n, len(codes))) for s in self.voters}
        image = np.zeros((n, len(codes)))
        if ok.any():
            part = self.voter_proba({k: v[ok] for k, v in feats.items()}, codes)
            for name, p in part.items():
                voters[name][ok] = p
            image[ok] = self.vote(part)
        ids = products["id"].astype(str).tolist() if "id" in products else [str(i) for i in range(n)]
        return {"voters": voters, "image": image, "has_image": ok,
                "problems": {ids[i]: msg for i, msg in problems.items()}}

    def describe(self) -> dict:
        return {"kind": "image-soft-vote", "sharpen_k": float(getattr(self, "sharpen_k_", self.sharpen_k)),
                "vote_weights": [float(w) for w in getattr(self, "vote_weights_", [s.weight for s in self.voters])],
                "voters": [asdict(s) for s in self.voters]}
