"""Grad-CAM overlays computed ahead, off the request path, in one background thread.

The review card itself comes from stored predictions (cheap); the expensive part is the
heatmaps (seconds per product on a CPU). `Prefetcher` keeps a small LRU cache keyed by
(product, model version, category): the app asks for the card on screen first (priority NOW)
and warms the next product(s) of the reviewer's queue behind it (priority AHEAD), so by the time
a reviewer reaches a product its overlays are usually ready.

Work nobody wants any more is dropped: each request names its owner (the reviewer), and when an
owner moves on, its earlier requests that have not started yet are cancelled unless another
owner still wants them. With many reviewers on a small machine the worker therefore spends its
time on the cards people are looking at, not on a backlog. Cached values are shared data, not
per-user state.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import OrderedDict
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Callable, Sequence

from labeler import views
from labeler.background import lower_priority

log = logging.getLogger(__name__)
HEATMAP_PX = 300
NOW, AHEAD = 0, 1
NO_IMAGE_MODEL = "No image model yet: heatmaps appear once the image ensemble is trained."
NO_IMAGE = "This product has no image."
NO_MODEL = "No model trained yet."

# explain(bundle, product_row, category) -> [(caption, PIL.Image)], one per image voter
Explainer = Callable[[object, dict, int], list]
BundleLoader = Callable[[str], object]
Key = tuple


@dataclass(frozen=True)
class Heatmaps:
    items: tuple[tuple[str, str], ...]    # (caption, JPEG data URI) per image voter
    category: int | None
    note: str = ""                        # why there are none (no image, no image model, failure)


def default_explainer() -> Explainer | None:
    """`models.explain.explain_product` when the image ensemble code is installed, else None."""
    try:
        from models.explain import explain_product
    except ImportError:
        return None
    return explain_product


def has_image_model(bundle: object) -> bool:
    return getattr(bundle, "image", None) is not None


def render_heatmaps(bundle: object, product: dict, category: int, explain: Explainer | None) -> Heatmaps:
    """Run the explainer now (the background worker and the try-it tab call this)."""
    if explain is None or not has_image_model(bundle):
        return Heatmaps((), category, NO_IMAGE_MODEL)
    if not product.get("image_path"):
        return Heatmaps((), category, NO_IMAGE)
    try:
        overlays = explain(bundle, product, int(category))
    except Exception as exc:  # noqa: BLE001 - a failed explanation must not break reviewing
        log.warning("heatmaps failed for product %s: %s", product.get("id"), exc)
        return Heatmaps((), category, f"No heatmaps for this product: {exc}")
    items = tuple((str(caption), views.pil_data_uri(img, max_px=HEATMAP_PX)) for caption, img in overlays)
    return Heatmaps(items, category, "" if items else NO_IMAGE)


def _load_backbones(bundle: object) -> None:
    """The image voters' backbones, loaded once per process (seconds): better before the first card."""
    ensemble = getattr(bundle, "image", None)
    for spec in getattr(ensemble, "voters", ()):
        try:
            ensemble.backbone(spec)
        except Exception as exc:  # noqa: BLE001 - the heatmap job will report it properly
            log.warning("could not preload backbone %s: %s", getattr(spec, "label", spec), exc)


class Prefetcher:
    """Background Grad-CAM cache; `get` never blocks unless asked to wait."""

    def __init__(self, load_bundle: BundleLoader, *, explain: Explainer | None = None, max_items: int = 96):
        self._load_bundle = load_bundle
        self._explain = explain
        self._max = max_items
        self._cache: OrderedDict[Key, Future] = OrderedDict()
        self._queue: list[tuple[int, int, Key, dict]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = threading.Event()     # set by close(); the watchers sleep on it, not on _cond
        self._image_model: dict[str | None, bool] = {}      # version -> has an image ensemble
        self._wants: dict[str, set[Key]] = {}                # owner -> keys it still wants
        self._owned: set[Key] = set()                       # keys ever requested with an owner
        self._thread = threading.Thread(target=self._work, name="heatmap-prefetch", daemon=True)
        self._thread.start()

    @property
    def explainer(self) -> Explainer | None:
        return self._explain

    @staticmethod
    def key(product: dict, version: str | None, category: int | None) -> Key:
        return (str(product["id"]), version, None if category is None else int(category))

    def immediate(self, product: dict, version: str | None, category: int | None) -> Heatmaps | None:
        """The answer when there is nothing to compute (no model, no image, no image model)."""
        if version is None or category is None:
            return Heatmaps((), category, NO_MODEL)
        if not product.get("image_path"):
            return Heatmaps((), category, NO_IMAGE)
        if self._explain is None or self._image_model.get(version) is False:
            return Heatmaps((), category, NO_IMAGE_MODEL)
        return None

    def request(self, product: dict, version: str | None, category: int | None, *,
                priority: int = NOW) -> Future:
        """The overlays' future, submitting the work if it is not cached or queued yet."""
        now = self.immediate(product, version, category)
        if now is not None:
            done: Future = Future()
            done.set_result(now)
            return done
        key = self.key(product, version, category)
        with self._cond:
            return self._submit(key, product, priority)

    def _submit(self, key: Key, product: dict, priority: int) -> Future:
        fut = self._cache.get(key)
        if fut is not None:
            self._cache.move_to_end(key)
            if priority == NOW and not fut.done():
                heapq.heappush(self._queue, (NOW, next(self._seq), key, product))   # jump the queue
                self._cond.notify()
            return fut
        fut = Future()
        self._cache[key] = fut
        while len(self._cache) > self._max:
            _, old = self._cache.popitem(last=False)
            old.cancel()
        heapq.heappush(self._queue, (priority, next(self._seq), key, product))
        self._cond.notify()
        return fut

    def want(self, owner: str, current: tuple[dict, str | None, int | None] | None,
             ahead: Sequence[tuple[dict, int | None]] = (), version: str | None = None) -> Future | None:
        """What `owner` looks at now (and will look at next): queue it, drop what it left behind.

        Returns the future of `current` (None when there is none)."""
        fut = None
        keys: set[Key] = set()
        with self._cond:
            if current is not None:
                product, cur_version, category = current
                if self.immediate(product, cur_version, category) is None:
                    key = self.key(product, cur_version, category)
                    keys.add(key)
                    fut = self._submit(key, product, NOW)
            for product, category in ahead:
                if self.immediate(product, version, category) is None:
                    key = self.key(product, version, category)
                    keys.add(key)
                    self._submit(key, product, AHEAD)
            self._wants[owner] = keys
            self._owned |= keys
            self._drop_unwanted()
        if fut is None and current is not None:
            fut = self.request(*current)
        return fut

    def _drop_unwanted(self) -> None:
        wanted = set().union(*self._wants.values()) if self._wants else set()
        for key in [k for k in self._owned if k not in wanted]:
            fut = self._cache.get(key)
            if fut is not None and not fut.done() and fut.cancel():
                del self._cache[key]
            self._owned.discard(key)

    def get(self, product: dict, version: str | None, category: int | None, *,
            wait: float = 0.0) -> Heatmaps | None:
        """Ready overlays, waiting at most `wait` seconds; None while still computing."""
        fut = self.request(product, version, category)
        return self.result(fut, category, wait=wait)

    @staticmethod
    def result(fut: Future, category: int | None, *, wait: float = 0.0) -> Heatmaps | None:
        try:
            return fut.result(timeout=wait) if wait > 0 else (fut.result() if fut.done() else None)
        except TimeoutError:
            return None
        except CancelledError:
            return None
        except Exception as exc:  # noqa: BLE001 - a failed job: say so on the card
            return Heatmaps((), category, f"No heatmaps: {exc}")

    def warm(self, items: Sequence[tuple[dict, int | None]], version: str | None) -> None:
        """Queue products behind the current cards (no owner: never dropped, only evicted)."""
        for product, category in items:
            self.request(product, version, category, priority=AHEAD)

    def preload(self, version: str | None) -> None:
        """Load the model version (and its image backbones) in the background, before the first card."""
        if version is None or self._explain is None:
            return
        with self._cond:
            heapq.heappush(self._queue, (AHEAD + 1, next(self._seq), ("__preload__", version, None), {}))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return sum(1 for f in self._cache.values() if not f.done() and not f.running())

    def wait_closed(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True once `close` was called (ends the app's watchers)."""
        return self._closed.wait(timeout)     # not on _cond: its notify() is the worker's

    def close(self) -> None:
        with self._cond:
            self._closed.set()
            for fut in self._cache.values():
                fut.cancel()
            self._cond.notify_all()

    def _work(self) -> None:
        lower_priority()      # heatmaps and the model warm-up yield the CPU to reviewers' requests
        while True:
            with self._cond:
                while not self._queue and not self._closed.is_set():
                    self._cond.wait()
                if self._closed.is_set():
                    return
                _, _, key, product = heapq.heappop(self._queue)
                fut = self._cache.get(key)
                if key[0] == "__preload__":
                    fut = Future()
                elif fut is None or fut.done() or not fut.set_running_or_notify_cancel():
                    continue
            try:
                bundle = self._load_bundle(key[1])
                self._image_model[key[1]] = has_image_model(bundle)
                if key[0] == "__preload__":
                    _load_backbones(bundle)
                    continue
                fut.set_result(render_heatmaps(bundle, product, key[2], self._explain))
            except Exception as exc:  # noqa: BLE001 - delivered to whoever waits on it
                log.exception("heatmaps for %s failed", key)
                fut.set_exception(exc)
