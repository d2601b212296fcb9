"""Image loading and pooled backbone features, cached per image content (sha1) and backbone recipe.

Features are computed once, in batches, with images decoded in parallel by a thread pool, on CUDA
when present, and kept in a `FeatureCache` (a workspace's is `store.features.WorkspaceFeatures`,
its `image_features` table); training, retraining and prediction all read them back from there.

Bad images never raise: `open_image` turns every failure (missing, corrupt, truncated, tiny, huge)
into an `ImageProblem` with a message naming the file, and the product falls back to text.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from models.backbones import Backbone
from models.progress import Progress
from models.imagecheck import (MAX_FILE_BYTES, MAX_PIXELS, MIN_SIDE, NO_IMAGE, ImageProblem,  # noqa: F401
                               _text_or_none, existing_file as _existing, file_sha1, open_checked)

log = logging.getLogger(__name__)


@dataclass
class FeatureBatch:
    """Features of a list of images: rows of `vectors` are valid where `ok` is True."""
    vectors: np.ndarray              # (n, dim) float32, zeros where not ok
    ok: np.ndarray                   # (n,) bool
    problems: dict[int, str]         # row -> message for the images that could not be used
    n_computed: int = 0              # how many came from the backbone (the rest from the cache)


def open_image(path: Path | str | None, *, draft_size: int | None = None) -> Image.Image:
    """An RGB image, fully decoded, or `ImageProblem` saying why not (never another exception).

    The file must pass `models.imagecheck`'s rules first, the same ones the importer applied.
    Grayscale, palette, CMYK and alpha images are converted to RGB. `draft_size` lets the JPEG
    decoder downscale while decoding, which makes large photos cheap.
    """
    img, info = open_checked(path)
    try:
        with img:
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()   # PIL's own bomb check ran in Image.open, on more pixels than MAX_PIXELS
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem(f"image {info.path} cannot be decoded ({type(exc).__name__}: {exc}); "
                           "replace the file or use text only") from exc


# -- cache -------------------------------------------------------------------------------------
class FeatureCache(Protocol):
    def get(self, sha1s: Sequence[str], key: str) -> dict[str, np.ndarray]: ...
    def put(self, items: Iterable[tuple[str, np.ndarray]], key: str) -> None: ...
    def cached(self, sha1s: Sequence[str], key: str) -> set[str]: ...


class MemoryFeatures:
    """A per-process cache, for prediction without a workspace (tests, one-off scoring)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], np.ndarray] = {}

    def get(self, sha1s: Sequence[str], key: str) -> dict[str, np.ndarray]:
        return {s: self.data[(s, key)] for s in sha1s if (s, key) in self.data}

    def cached(self, sha1s: Sequence[str], key: str) -> set[str]:
        return {s for s in sha1s if (s, key) in self.data}

    def put(self, items: Iterable[tuple[str, np.ndarray]], key: str) -> None:
        for s, v in items:
            self.data[(s, key)] = np.asarray(v, dtype=np.float32)


def as_cache(store: Any) -> FeatureCache | None:
    """A cache (get / cached / put), or None (no caching)."""
    if store is None or hasattr(store, "put"):
        return store
    raise TypeError(f"feature_store must be a FeatureCache (get, cached, put) or None, got {type(store).__name__}; "
                    "for a workspace pass store.features.WorkspaceFeatures(ws)")


# -- extraction --------------------------------------------------------------------------------
def decode_pixels(path: str | None, transform: Callable, draft_size: int) -> tuple[torch.Tensor | None, str]:
    """(transform(image), "") or (None, why not): an odd image never stops the batch."""
    try:
        return transform(open_image(path, draft_size=draft_size)), ""
    except ImageProblem as exc:
        return None, str(exc)
    except Exception as exc:  # a transform failing on an odd image
        return None, f"image {path} could not be prepared ({type(exc).__name__}: {exc})"


def _read_for_device(path: str, transform: Callable, draft_size: int) -> tuple[Any, str]:
    """A plain RGB/grey JPEG within the size limits as its raw bytes (decoded later on the GPU, in
    one batched nvjpeg call); anything else decoded here by PIL, as on CPU."""
    from torchvision.io import read_file
    try:
        img, _ = open_checked(path)     # the import's rules: size, format, dimensions
        with img:
            plain = img.format == "JPEG" and img.mode in ("RGB", "L")
        if plain:
            return read_file(str(path)), "jpeg"
    except Exception:
        pass  # PIL below says what is wrong with it
    return decode_pixels(path, transform, draft_size)


def _batches(paths: Sequence[str], load: Callable[[str], tuple[Any, str]], batch_size: int,
             workers: int) -> Iterator[tuple[int, list[tuple[Any, str]]]]:
    """(first index, [load(path) for the batch's paths]) per batch, in order.

    Loading runs in a thread pool (PIL releases the GIL while it decodes and resizes), a few
    batches ahead of the model: no worker processes to start, no tensors through shared memory.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    starts = range(0, len(paths), batch_size)
    if workers <= 0:
        for s in starts:
            yield s, [load(p) for p in paths[s:s + batch_size]]
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        ahead: deque = deque()
        todo = iter(starts)
        for s in todo:
            ahead.append((s, [pool.submit(load, p) for p in paths[s:s + batch_size]]))
            if len(ahead) >= 3:
                break
        while ahead:
            s, futures = ahead.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append((nxt, [pool.submit(load, p) for p in paths[nxt:nxt + batch_size]]))
            yield s, [f.result() for f in futures]


def _collate(start: int, items: list[tuple[Any, str]], backbone: Backbone, paths: Sequence[str],
             transform: Callable, draft_size: int) -> tuple[torch.Tensor | None, list[int], dict[int, str]]:
    """(uint8 pixels of the usable images, their indices, {index: problem}); JPEG bytes are
    decoded on the backbone's device and resized there by `transform` (the pixel transform)."""
    jpeg = [j for j, (_, kind) in enumerate(items) if kind == "jpeg"]
    if jpeg:
        from torchvision.io import ImageReadMode, decode_jpeg
        items = list(items)
        try:
            decoded = decode_jpeg([items[j][0] for j in jpeg], mode=ImageReadMode.RGB, device=backbone.device)
        except Exception:   # the device decoder refused one: PIL decodes the batch's JPEGs instead
            decoded = None
        if decoded is None:
            for j in jpeg:
                items[j] = decode_pixels(paths[start + j], transform, draft_size)
        else:   # photos of one size (most of a catalog) are resized together, one call per size
            by_shape: dict[tuple, list[int]] = {}
            for n, img in enumerate(decoded):
                by_shape.setdefault(tuple(img.shape), []).append(n)
            for group in by_shape.values():
                for n, img in zip(group, transform(torch.stack([decoded[n] for n in group]))):
                    items[jpeg[n]] = img, ""
    good = [(start + j, x) for j, (x, _) in enumerate(items) if x is not None]
    bad = {start + j: msg for j, (x, msg) in enumerate(items) if x is None}
    x = torch.stack([t.to(backbone.device) for _, t in good]) if good else None
    return x, [i for i, _ in good], bad


def pooled_features(model: torch.nn.Module, x: torch.Tensor, stages: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (n, dim), last feature map): the pooled pre-logits features, followed by the
    spatially averaged outputs of the last `stages` block stages (last stage first).

    The earlier stages carry texture, print and shape cues the last 1x1 head convolution mixes
    away; appended to the pooled features they lift the logistic voter's image-only weighted F1
    on the shared sample (lite2@480: 0.376 -> 0.406 over four split families, docs/image_model.md).
    Differentiable: Grad-CAM goes through the same function as the features.
    """
    taps: dict[int, torch.Tensor] = {}
    hooks = [model.blocks[-k].register_forward_hook(
        lambda _m, _i, out, k=k: taps.__setitem__(k, out.float().mean((2, 3)))) for k in range(1, stages + 1)]
    try:
        fmap = model.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    pooled = model.forward_head(fmap, pre_logits=True)
    if not stages:
        return pooled, fmap
    return torch.cat([pooled.float()] + [taps[k] for k in range(1, stages + 1)], dim=1), fmap


def check_stages(model: torch.nn.Module, stages: int, name: str = "backbone") -> None:
    """A clear message instead of an IndexError deep in a forward pass."""
    blocks = getattr(model, "blocks", None)
    n = len(blocks) if isinstance(blocks, torch.nn.Sequential) else 0
    if stages < 0 or stages > n or (stages and getattr(model, "patch_embed", None) is not None):
        raise ValueError(f"{name}: stages={stages} is not possible; it takes 0 to {n} block stages "
                         "(CNN backbones only; 0 = pooled features alone)")


COLLATE_AHEAD = 2   # batches prepared ahead on CUDA; 0: in the main thread (bench/bench_image.py compares)


def _collated_ahead(batches: Iterator[tuple[int, list]], collate: Callable, device: torch.device) -> Iterator[tuple]:
    """`collate(start, items)` of each batch, in order; on CUDA the next `COLLATE_AHEAD` batches
    are prepared by helper threads, each on its own stream, while the current one is embedded.

    On an H200 nvjpeg decoding + resizing a batch takes longer than lite2's forward on it (its
    Huffman stage runs on the CPU) and ran between forwards in the main thread; several helper
    threads decode batches side by side and overlap them with the forward. The main stream waits
    on a batch's event before using its pixels.
    """
    if device.type != "cuda" or not COLLATE_AHEAD:
        for start, items in batches:
            yield collate(start, items)
        return
    import threading
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    local = threading.local()

    def prepare(start: int, items: list) -> tuple[tuple, Any]:
        if not hasattr(local, "stream"):
            local.stream = torch.cuda.Stream(device)
        with torch.cuda.device(device), torch.cuda.stream(local.stream):
            out = collate(start, items)
            ready = torch.cuda.Event()
            ready.record(local.stream)
        return out, ready

    def ready_on_main(done: tuple[tuple, Any]) -> tuple:
        (x, idx, bad), event = done
        main = torch.cuda.current_stream(device)
        main.wait_event(event)
        if x is not None:
            x.record_stream(main)   # its memory is not reused by the side stream while main reads it
        return x, idx, bad

    with ThreadPoolExecutor(COLLATE_AHEAD, thread_name_prefix="collate") as pool:
        pending: deque = deque()
        for start, items in batches:
            pending.append(pool.submit(prepare, start, items))
            if len(pending) > COLLATE_AHEAD:
                yield ready_on_main(pending.popleft().result())
        while pending:
            yield ready_on_main(pending.popleft().result())


@torch.inference_mode()
def embed(backbone: Backbone, x: torch.Tensor, *, flip: bool = True, stages: int = 0) -> torch.Tensor:
    """Pooled pre-logits features (n, dim) (+ the last `stages` stages, see `pooled_features`),
    averaged with the mirrored image when `flip`.

    Mirroring is a label-preserving view for product photos; averaging the two embeddings is a
    cheap test-time augmentation that makes the features steadier.
    """
    model = backbone.model
    x = x.to(backbone.device, non_blocking=True)
    if x.dtype == torch.uint8:     # pixels from `Backbone.pixel_transform`: normalised here, on the device
        x = backbone.normalise(x)
    if not backbone.spec.is_vit:
        x = x.contiguous(memory_format=torch.channels_last)
    f = pooled_features(model, x, stages)[0]
    if flip:
        f = (f + pooled_features(model, torch.flip(x, dims=[-1]), stages)[0]) / 2
    return f.float().cpu()


def feature_dim(backbone: Backbone, stages: int = 0) -> int:
    """Length of a feature row; with stages, measured once per backbone on a small probe (every
    predict call asks, the app's too)."""
    if not stages:
        return backbone.embed_dim
    if stages not in backbone.stage_dims:
        check_stages(backbone.model, stages, backbone.spec.name)
        probe = torch.zeros(1, 3, 64, 64, device=backbone.device)
        with backbone.lock:
            backbone.stage_dims[stages] = int(embed(backbone, probe, flip=False, stages=stages).shape[1])
    return backbone.stage_dims[stages]


def default_workers(device: torch.device | None = None) -> int:
    """Decoding threads, only where they do not take the forward pass's cores.

    On a small CPU machine decoding beside the forward competes with torch's intra-op threads:
    measured on 2 cores, 96 images, lite2@480, the pipeline fell to 73 % of the bare forward with
    one worker and stays at ~91 % decoding inline (decode + resize is ~9 ms an image, the forward
    100-300 ms)."""
    cores = os.cpu_count() or 1
    if device is not None and device.type == "cuda":
        # a GPU embeds 1,100 (lite2@480) to 2,700 (lite0@352) images/s: every spare core reads
        # (JPEG headers and bytes for nvjpeg; other formats are decoded by PIL in these threads)
        return max(0, min(16, cores - 1))
    return 0 if cores < 8 else min(4, cores // 8)


def extract_features(backbone: Backbone, paths: Sequence[str | None], sha1s: Sequence[str | None] | None = None,
                     *, cache: FeatureCache | None = None, flip: bool = True, batch_size: int = 32,
                     num_workers: int | None = None, progress: Progress | None = None,
                     desc: str | None = None, decode_on_device: bool | None = None,
                     stages: int = 0) -> FeatureBatch:
    """Features for every image path, from the cache where present, else computed and stored.

    sha1s: content hashes (from the import); missing ones are computed from the files.
    stages: also the averaged outputs of the last block stages (`pooled_features`).
    """
    n = len(paths)
    key = feature_key(backbone, flip, stages)
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
    vectors = np.zeros((n, feature_dim(backbone, stages)), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    cached = cache.get([s for s in sha1s if s], key) if cache is not None else {}
    todo = []
    for i, s in enumerate(sha1s):
        if s and s in cached:
            vectors[i], ok[i] = cached[s], True
        elif i not in problems:
            todo.append(i)
    if todo:
        _compute(backbone, [paths[i] for i in todo], todo, vectors, ok, problems, flip=flip, stages=stages,
                 batch_size=batch_size, num_workers=num_workers, progress=progress,
                 desc=desc or f"features {key}", decode_on_device=decode_on_device)
        if cache is not None:
            cache.put([(sha1s[i], vectors[i]) for i in todo if ok[i] and sha1s[i]], key)
    for i, msg in sorted(problems.items()):
        if msg != NO_IMAGE:  # a product without an image is normal; a broken one is worth a warning
            log.warning("%s", msg)
    return FeatureBatch(vectors=vectors, ok=ok, problems=problems, n_computed=int(sum(ok[i] for i in todo)))


# Seconds of backbone work per input pixel and pass (the mirror is a second pass), for estimates
# only: on the 2-core CPU the sample's photos took 0.39 / 0.22 / 0.13 s each through lite2@480,
# lite1@400 and lite0@352 with the flip (0.86 / 0.69 / 0.52 us a pixel); on an H200 the pipeline
# ran 400-700 photos/s.
SECONDS_PER_PIXEL = {"cpu": 0.7e-6, "cuda": 1e-8}


def pending_seconds(backbone: Backbone, paths: Sequence[str | None], sha1s: Sequence[str | None] | None = None,
                    *, cache: FeatureCache | None = None, flip: bool = True, stages: int = 0) -> float:
    """Rough seconds `extract_features` would spend computing what the cache lacks (0 when all is
    cached): sizes the features stage of a training's progress bar."""
    paths = [_text_or_none(p) for p in paths]
    sha1s = [_text_or_none(s) for s in sha1s] if sha1s is not None else [None] * len(paths)
    known = cache.cached([s for s in sha1s if s], feature_key(backbone, flip, stages)) if cache is not None else set()
    n = sum(1 for p, s in zip(paths, sha1s) if p and not (s and s in known))
    size = backbone.data_config["input_size"][-1]
    return n * size * size * (2 if flip else 1) * SECONDS_PER_PIXEL.get(backbone.device.type, SECONDS_PER_PIXEL["cpu"])


def feature_key(backbone: Backbone, flip: bool = True, stages: int = 0) -> str:
    return backbone.feature_key + ("+flip" if flip else "") + (f"+s{stages}" if stages else "")


def _compute(backbone: Backbone, paths: list, rows: list[int], vectors: np.ndarray, ok: np.ndarray,
             problems: dict[int, str], *, flip: bool, batch_size: int, num_workers: int | None, stages: int = 0,
             progress: Progress | None, desc: str, decode_on_device: bool | None = None) -> None:
    from tqdm.auto import tqdm

    size = backbone.data_config["input_size"][-1]
    workers = default_workers(backbone.device) if num_workers is None else num_workers
    transform, draft = backbone.pixel_transform(), 2 * size
    # on a GPU, JPEG decoding moves there too (nvjpeg, batched): on an H200, 15 CPU threads decoding
    # 500 px photos with PIL kept 20-30 % of the bare forward (the decoding threads and the kernel
    # launches share the GIL), nvjpeg 22-43 %; nvjpeg itself takes ~1.3 ms a photo there
    read = _read_for_device if (decode_on_device if decode_on_device is not None else backbone.device.type == "cuda") else decode_pixels
    batches = _batches(paths, lambda p: read(p, transform, draft), batch_size, workers)
    collate = functools.partial(_collate, backbone=backbone, paths=paths, transform=transform, draft_size=draft)
    done = 0
    with tqdm(total=len(paths), desc=desc, unit="img", disable=progress is not None, leave=False) as bar, \
            backbone.lock:
        for x, local, bad in _collated_ahead(batches, collate, backbone.device):
            for j, msg in bad.items():
                problems[rows[j]] = msg
            if x is not None:
                f = embed(backbone, x, flip=flip, stages=stages).numpy()
                idx = [rows[j] for j in local]
                vectors[idx], ok[idx] = f, True
            done += len(local) + len(bad)
            bar.update(len(local) + len(bad))
            if progress is not None:
                progress(done / len(paths), f"{desc}: {done}/{len(paths)} images")
