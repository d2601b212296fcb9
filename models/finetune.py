"""Fine-tune the last stages of an image backbone on a workspace's labelled product photos.

Frozen ImageNet features top out near 0.40 weighted F1 image-only on the shared sample, whatever
head sits on them; letting the last stages adapt to product photos (covers, boxes, labels) is what
would move them. It is cheap on a GPU (seconds) and slow on CPU (minutes per epoch at 480 px);
every step here also runs on CPU. Measured on an H200 (docs/image_model.md, experiments/finetune_image.py),
it does not beat frozen features on the shared sample's ~12 photos per category, so training
keeps frozen backbones; this is here to re-measure on workspaces with many more reviewed photos.

Recipe (few hundred images, so keep the pretrained features close): linear probe first (the new
classifier starts from a logistic fit on frozen features: LP-FT), then the last `stages` blocks
plus the head convolution train with AdamW at a small learning rate, BatchNorm statistics frozen
(eval mode), flip + zoom-crop augmentation done on the device in one `grid_sample`, bf16 autocast
on CUDA. The result is a full timm state dict (ImageNet classifier kept), saved as a `file:`
weights source, so features, heads and Grad-CAM use it exactly like the stock weights.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.backbones import build_model, data_config_for, get_spec, normalise, pixel_transform
from models.features import decode_pixels
from models.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    stages: int = 2                 # last stages of `model.blocks` that train, with conv_head
    epochs: int = 15
    lr: float = 3e-4                # backbone; the classifier gets `head_lr`
    head_lr: float = 3e-3
    batch_size: int = 32
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    min_zoom: float = 0.55          # smallest crop side (share of the image) of the zoom augmentation
    probe_steps: int = 300          # full-batch L-BFGS steps of the linear probe that starts the classifier
    probe_C: float = 0.003          # its inverse L2 strength, as sklearn's C (the logistic head's)
    dropout: float = 0.2
    seed: int = 0

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class FinetuneResult:
    model: nn.Module                # the backbone (ImageNet classifier kept), eval mode, on CPU
    classifier: nn.Module           # pooled features -> len(classes) logits
    classes: np.ndarray
    data_config: dict               # the model's input config (size, mean, std) for `normalise`
    seconds: float
    history: list[float]            # mean training loss per epoch


def load_pixels(paths: Sequence[str], size: int, *, interpolation: str = "bicubic",
                crop_pct: float = 1.0) -> tuple[torch.Tensor, np.ndarray, dict[int, str]]:
    """uint8 (n_ok, 3, size, size) images exactly as the feature pipeline sees them (its pixel
    transform; the defaults are the lite backbones' config), the indices that loaded, and
    {index: problem} for the ones that did not.

    uint8 keeps a few thousand 480 px photos in a few GB; normalisation happens on the device."""
    to_pixels = pixel_transform({"input_size": (3, size, size), "interpolation": interpolation, "crop_pct": crop_pct})
    images, ok, problems = [], [], {}
    for i, p in enumerate(paths):
        x, problem = decode_pixels(p, to_pixels, 2 * size)
        if x is None:
            problems[i] = problem
            continue
        images.append(x)
        ok.append(i)
    pixels = torch.stack(images) if images else torch.zeros((0, 3, size, size), dtype=torch.uint8)
    return pixels, np.asarray(ok, dtype=int), problems


def augment(x: torch.Tensor, min_zoom: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random mirror and zoom-crop of a float batch (n, 3, h, w), all samples in one grid_sample."""
    n = x.shape[0]
    r = torch.rand((n, 4), generator=generator).to(x.device)
    side = min_zoom + (1 - min_zoom) * r[:, 0]                 # crop side as a share of the image
    aspect = torch.exp((r[:, 1] - 0.5) * 0.3)                  # +-15 % aspect jitter
    sx = (side * aspect.sqrt()).clamp(max=1.0)
    sy = (side / aspect.sqrt()).clamp(max=1.0)
    tx = (1 - sx) * (2 * r[:, 2] - 1)
    ty = (1 - sy) * (2 * r[:, 3] - 1)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(x.device)
    theta = torch.zeros((n, 2, 3), device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _split(model: nn.Module, stages: int) -> tuple[Callable, Callable, list[nn.Parameter]]:
    """(frozen part, trained part, trained parameters) of an EfficientNet-style timm model."""
    blocks = list(model.blocks)
    stages = max(0, min(stages, len(blocks)))
    cut = len(blocks) - stages

    def frozen(x: torch.Tensor) -> torch.Tensor:
        x = model.bn1(model.conv_stem(x))
        for b in blocks[:cut]:
            x = b(x)
        return x

    def trained(x: torch.Tensor) -> torch.Tensor:
        for b in blocks[cut:]:
            x = b(x)
        return model.forward_head(model.bn2(model.conv_head(x)), pre_logits=True)

    params: list[nn.Parameter] = []
    if stages:
        for m in blocks[cut:] + [model.conv_head, model.bn2]:
            params += list(m.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return frozen, trained, params


def _linear_probe(features: torch.Tensor, y: torch.Tensor, n_classes: int, steps: int, C: float) -> nn.Linear:
    """A softmax layer fitted full-batch on standardised frozen features, penalised like sklearn's
    LogisticRegression(C): the classifier's starting point."""
    lin = nn.Linear(features.shape[1], n_classes).to(features.device)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=max(1, steps), history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(features), y) + lin.weight.pow(2).sum() / (2 * C * len(y))
        loss.backward()
        return loss

    if steps:
        opt.step(closure)
    return lin


def finetune_backbone(backbone: str, pixels: torch.Tensor, y: np.ndarray, *, weights: str | None = None,
                      input_size: int | None = None, config: FinetuneConfig = FinetuneConfig(),
                      device: str | torch.device | None = None, progress: Progress | None = None) -> FinetuneResult:
    """Fine-tune `backbone` on uint8 `pixels` (from `load_pixels`) labelled `y`.

    The model comes back on CPU in eval mode with unfolded BatchNorms, ready for `save_checkpoint`.
    """
    started = time.perf_counter()
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    spec = get_spec(backbone, input_size=input_size)
    model = build_model(spec, weights).to(dev).to(memory_format=torch.channels_last).eval()
    cfg = data_config_for(model, spec)
    classes, yi = np.unique(np.asarray(y), return_inverse=True)
    yt = torch.as_tensor(yi, dtype=torch.long, device=dev)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    frozen, trained, params = _split(model, config.stages)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    bs = config.batch_size

    def batch(idx: torch.Tensor, train: bool) -> torch.Tensor:
        x = normalise(pixels[idx].to(dev, non_blocking=True), cfg)
        if train:
            x = augment(x, config.min_zoom, gen)
        return x.contiguous(memory_format=torch.channels_last)

    # linear probe on frozen features of the un-augmented images (LP-FT)
    with torch.no_grad(), amp:
        feats = torch.cat([trained(frozen(batch(torch.arange(s, min(s + bs, len(pixels))), False))).float()
                           for s in range(0, len(pixels), bs)])
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    probe = _linear_probe((feats - mu) / sd, yt, len(classes), config.probe_steps, config.probe_C)
    classifier = nn.Linear(feats.shape[1], len(classes)).to(dev)
    with torch.no_grad():   # fold the standardisation into the classifier
        classifier.weight.copy_(probe.weight / sd)
        classifier.bias.copy_(probe.bias - (probe.weight * (mu / sd)).sum(1))
    head = nn.Sequential(nn.Dropout(config.dropout), classifier)
    groups = [{"params": list(classifier.parameters()), "lr": config.head_lr}]
    if params:
        groups.append({"params": params, "lr": config.lr})
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(pixels) / bs))
    total = config.epochs * steps_per_epoch
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total)))))
    history = []
    head.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(pixels), generator=gen)
        losses = []
        for s in range(0, len(pixels), bs):
            idx = order[s:s + bs]
            if len(idx) < 2:
                continue
            x = batch(idx, True)
            with amp:
                with torch.no_grad():
                    x = frozen(x)
                logits = head(trained(x).float())
            loss = F.cross_entropy(logits, yt[idx.to(dev)], label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if progress is not None:
            progress((epoch + 1) / config.epochs, f"fine-tuning {backbone}: epoch {epoch + 1}/{config.epochs}, "
                                                  f"loss {history[-1]:.3f}")
    for p in model.parameters():
        p.requires_grad_(False)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    classifier = classifier.to("cpu").eval()
    seconds = time.perf_counter() - started
    log.info("fine-tuned %s (%d stages, %d epochs, %d images) in %.1f s on %s", backbone, config.stages,
             config.epochs, len(pixels), seconds, dev)
    return FinetuneResult(model=model, classifier=classifier, classes=classes, data_config=cfg, seconds=seconds,
                          history=history)


def save_checkpoint(model: nn.Module, path: Path | str) -> str:
    """Write the state dict (timm keys) atomically; returns the `file:` weights source for it."""
    import os
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)
    return f"file:{path.resolve()}"
