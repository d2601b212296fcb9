"""Image loading and pooled backbone features, cached per image content (sha1) and backbone recipe.

Features are computed once, in batches, with images decoded in parallel by a DataLoader, on CUDA
when present, and stored in the workspace's `image_features` table; training, retraining and
prediction all read them back from there.

Bad images never raise: `open_image` turns every failure (missing, corrupt, truncated, tiny, huge)
into an `ImageProblem` with a message naming the file, and the product falls back to text.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile

from models.backbones import Backbone

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

NO_IMAGE = "product has no image file"
MIN_SIDE = 32                # smaller images carry too little to classify: text only
MAX_PIXELS = 64_000_000      # larger ones are refused before decoding (decompression bombs)


class ImageProblem(Exception):
    """An image that cannot be used; the message names the file and what to do."""


@dataclass
class FeatureBatch:
    """Features of a list of images: rows of `vectors` are valid where `ok` is True."""
    vectors: np.ndarray              # (n, dim) float32, zeros where not ok
    ok: np.ndarray                   # (n,) bool
    problems: dict[int, str]         # row -> message for the images that could not be used
    n_computed: int = 0              # how many came from the backbone (the rest from the cache)


def file_sha1(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _text_or_none(value: Any) -> str | None:
    """pandas hands missing values over as None, NaN or pd.NA: all mean 'none'."""
    if value is None or not isinstance(value, (str, Path)) or str(value).strip() == "":
        return None
    return str(value)


def _existing(path: Path | str | None) -> Path:
    if _text_or_none(path) is None:
        raise ImageProblem(NO_IMAGE)
    p = Path(path)
    if not p.is_file():
        raise ImageProblem(f"image {p} not found; re-import the catalog with the right --images folder")
    return p


def open_image(path: Path | str | None, *, draft_size: int | None = None) -> Image.Image:
    """An RGB image, fully decoded, or `ImageProblem` saying why not (never another exception).

    Grayscale, palette, CMYK and alpha images are converted to RGB. `draft_size` lets the JPEG
    decoder downscale while decoding, which makes large photos cheap.
    """
    p = _existing(path)
    try:
        with Image.open(p) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageProblem(f"image {p} is {w}x{h} pixels, over the {MAX_PIXELS:,}-pixel limit; "
                                   "downscale it and re-import")
            if min(w, h) < MIN_SIDE:
                raise ImageProblem(f"image {p} is only {w}x{h} pixels (minimum side {MIN_SIDE}); "
                                   "too small to classify, using text only")
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
            return img.convert("RGB")
    except ImageProblem:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem(f"image {p} cannot be decoded ({type(exc).__name__}: {exc}); "
                           "replace the file or use text only") from exc


# -- cache -------------------------------------------------------------------------------------
class FeatureCache(Protocol):
    def get(self, sha1s: Sequence[str], key: str) -> dict[str, np.ndarray]: ...
    def put(self, items: Iterable[tuple[str, np.ndarray]], key: str) -> None: ...


class WorkspaceFeatures:
    """The workspace's `image_features` table (sha1, backbone, dim, vector float32 blob)."""

    def __init__(self, ws: Any):
        self.ws = ws

    def get(self, sha1s: Sequence[str], key: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        wanted = sorted({s for s in sha1s if s})
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            rows = self.ws.conn.execute(
                f"SELECT sha1, dim, vector FROM image_features WHERE backbone = ? AND sha1 IN "
                f"({','.join('?' * len(part))})", [key, *part]).fetchall()
            for sha1, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    out[sha1] = vec
        return out

    def put(self, items: Iterable[tuple[str, np.ndarray]], key: str) -> None:
        values = [(s, key, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for s, v in items]
        if values:
            self.ws.write(lambda c: c.executemany(
                "INSERT OR REPLACE INTO image_features (sha1, backbone, dim, vector) VALUES (?,?,?,?)", values))


class MemoryFeatures:
    """A per-process cache, for prediction without a workspace (tests, one-off scoring)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], np.ndarray] = {}

    def get(self, sha1s: Sequence[str], key: str) -> dict[str, np.ndarray]:
        return {s: self.data[(s, key)] for s in sha1s if (s, key) in self.data}

    def put(self, items: Iterable[tuple[str, np.ndarray]], key: str) -> None:
        for s, v in items:
            self.data[(s, key)] = np.asarray(v, dtype=np.float32)


def as_cache(store: Any) -> FeatureCache | None:
    """A Workspace, a cache, or None (no caching)."""
    if store is None or hasattr(store, "put"):
        return store
    if hasattr(store, "conn") and hasattr(store, "write"):
        return WorkspaceFeatures(store)
    raise TypeError(f"feature_store must be a Workspace or a FeatureCache, got {type(store).__name__}")


# -- extraction --------------------------------------------------------------------------------
class _Images(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], transform: Callable, draft_size: int):
        self.paths, self.transform, self.draft_size = list(paths), transform, draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            x = self.transform(open_image(self.paths[i], draft_size=self.draft_size))
            return x, i, ""
        except ImageProblem as exc:
            return None, i, str(exc)
        except Exception as exc:  # a transform failing on an odd image must not stop the batch
            return None, i, f"image {self.paths[i]} could not be prepared ({type(exc).__name__}: {exc})"


def _collate(items):
    good = [(x, i) for x, i, _ in items if x is not None]
    bad = {i: msg for x, i, msg in items if x is None}
    x = torch.stack([g[0] for g in good]) if good else None
    return x, [g[1] for g in good], bad


@torch.inference_mode()
def embed(backbone: Backbone, x: torch.Tensor, *, flip: bool = True) -> torch.Tensor:
    """Pooled pre-logits features (n, dim), averaged with the mirrored image when `flip`.

    Mirroring is a label-preserving view for product photos; averaging the two embeddings is a
    cheap test-time augmentation that makes the features steadier.
    """
    model = backbone.model
    x = x.to(backbone.device, non_blocking=True)
    if not backbone.spec.is_vit:
        x = x.contiguous(memory_format=torch.channels_last)
    f = model.forward_head(model.forward_features(x), pre_logits=True)
    if flip:
        f = (f + model.forward_head(model.forward_features(torch.flip(x, dims=[-1])), pre_logits=True)) / 2
    return f.float().cpu()


def default_workers(device: torch.device | None = None) -> int:
    """Decoding worker processes, only where they do not take the forward pass's cores.

    On a small CPU machine a worker process competes with torch's intra-op threads: measured on 2
    cores, 96 images, lite2@480, the pipeline fell to 73 % of the bare forward with one worker and
    stays at ~91 % decoding inline (decode + resize is ~9 ms an image, the forward 100-300 ms)."""
    cores = os.cpu_count() or 1
    if device is not None and device.type == "cuda":
        return max(0, min(4, cores - 1))
    return 0 if cores < 8 else min(4, cores // 8)


def extract_features(backbone: Backbone, paths: Sequence[str | None], sha1s: Sequence[str | None] | None = None,
                     *, cache: FeatureCache | None = None, flip: bool = True, batch_size: int = 32,
                     num_workers: int | None = None, progress: Progress | None = None,
                     desc: str | None = None) -> FeatureBatch:
    """Features for every image path, from the cache where present, else computed and stored.

    sha1s: content hashes (from the import); missing ones are computed from the files.
    """
    n = len(paths)
    key = feature_key(backbone, flip)
    paths = [_text_or_none(p) for p in paths]
    sha1s = [_text_or_none(s) for s in sha1s] if sha1s is not None else [None] * n
    problems: dict[int, str] = {}
    for i, (p, s) in enumerate(zip(paths, sha1s)):
        if s:
            continue
        try:
            sha1s[i] = file_sha1(_existing(p))
        except (ImageProblem, OSError) as exc:
            problems[i] = str(exc)
    vectors = np.zeros((n, backbone.embed_dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    cached = cache.get([s for s in sha1s if s], key) if cache is not None else {}
    todo = []
    for i, s in enumerate(sha1s):
        if s and s in cached:
            vectors[i], ok[i] = cached[s], True
        elif i not in problems:
            todo.append(i)
    if todo:
        _compute(backbone, [paths[i] for i in todo], todo, vectors, ok, problems, flip=flip,
                 batch_size=batch_size, num_workers=num_workers, progress=progress,
                 desc=desc or f"features {key}")
        if cache is not None:
            cache.put([(sha1s[i], vectors[i]) for i in todo if ok[i] and sha1s[i]], key)
    for i, msg in sorted(problems.items()):
        if msg != NO_IMAGE:  # a product without an image is normal; a broken one is worth a warning
            log.warning("%s", msg)
    return FeatureBatch(vectors=vectors, ok=ok, problems=problems, n_computed=int(sum(ok[i] for i in todo)))


def feature_key(backbone: Backbone, flip: bool = True) -> str:
    return backbone.feature_key + ("+flip" if flip else "")


def _compute(backbone: Backbone, paths: list, rows: list[int], vectors: np.ndarray, ok: np.ndarray,
             problems: dict[int, str], *, flip: bool, batch_size: int, num_workers: int | None,
             progress: Progress | None, desc: str) -> None:
    from tqdm.auto import tqdm

    size = backbone.data_config["input_size"][-1]
    # a worker process costs its start-up (~1 s) and competes with the forward for 2 cores: it pays
    # off on long runs only; a few batches (the app, the CLI, a retrain's new images) decode inline
    workers = (default_workers(backbone.device) if len(paths) >= 4 * batch_size else 0) if num_workers is None else num_workers
    data = _Images(paths, backbone.transform(), draft_size=2 * size)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        pin_memory=backbone.device.type == "cuda", persistent_workers=False,
        prefetch_factor=2 if workers else None)
    done = 0
    with tqdm(total=len(paths), desc=desc, unit="img", disable=progress is not None, leave=False) as bar, \
            backbone.lock:
        for x, local, bad in loader:
            for j, msg in bad.items():
                problems[rows[j]] = msg
            if x is not None:
                f = embed(backbone, x, flip=flip).numpy()
                idx = [rows[j] for j in local]
                vectors[idx], ok[idx] = f, True
            done += len(local) + len(bad)
            bar.update(len(local) + len(bad))
            if progress is not None:
                progress(done / len(paths), f"{desc}: {done}/{len(paths)} images")
