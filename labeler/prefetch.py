"""Grad-CAM overlays computed ahead, off the request path, in one background thread.

The review card itself comes from stored predictions (cheap); the expensive part is the
heatmaps. `Prefetcher` keeps a small LRU cache keyed by (product, model version, category):
the app asks for the current card's overlays first (priority 0) and warms the next products of
the reviewer's queue behind it (priority 1), so by the time a reviewer reaches a product its
overlays are usually ready. Cached values are shared data, not per-user state.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Sequence

from labeler import views

log = logging.getLogger(__name__)
HEATMAP_PX = 300
NOW, AHEAD = 0, 1
NO_IMAGE_MODEL = "No image model yet: heatmaps appear once the image ensemble is trained."
NO_IMAGE = "This product has no image."
NO_MODEL = "No model trained yet."

# explain(bundle, product_row, category) -> [(caption, PIL.Image)], one per image voter
Explainer = Callable[[object, dict, int], list]
BundleLoader = Callable[[str], object]


@dataclass(frozen=True)
class Heatmaps:
    items: tuple[tuple[str, str], ...]    # (caption, JPEG data URI) per image voter
    category: int | None
    note: str = ""                        # why there are none (no image, no image model, failure)


def default_explainer() -> Explainer | None:
    """`models.explain.explain_product` once the image ensemble ships it, else None."""
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
        log.exception("Grad-CAM failed for product %s", product.get("id"))
        return Heatmaps((), category, f"Heatmaps failed for this product: {exc}")
    items = tuple((str(caption), views.pil_data_uri(img, max_px=HEATMAP_PX)) for caption, img in overlays)
    return Heatmaps(items, category, "" if items else NO_IMAGE)


class Prefetcher:
    """Background Grad-CAM cache; `get` never blocks unless asked to wait."""

    def __init__(self, load_bundle: BundleLoader, *, explain: Explainer | None = None, max_items: int = 96):
        self._load_bundle = load_bundle
        self._explain = explain
        self._max = max_items
        self._cache: OrderedDict[tuple, Future] = OrderedDict()
        self._queue: list[tuple[int, int, tuple, dict]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._image_model: dict[str | None, bool] = {}   # version -> has an image ensemble
        self._thread = threading.Thread(target=self._work, name="heatmap-prefetch", daemon=True)
        self._thread.start()

    @property
    def explainer(self) -> Explainer | None:
        return self._explain

    @staticmethod
    def key(product: dict, version: str | None, category: int | None) -> tuple:
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
            fut = self._cache.get(key)
            if fut is not None:
                self._cache.move_to_end(key)
                if priority == NOW and not fut.done():
                    heapq.heappush(self._queue, (NOW, next(self._seq), key, product))  # jump the queue
                    self._cond.notify()
                return fut
            fut = Future()
            self._cache[key] = fut
            while len(self._cache) > self._max:
                old_key, old = next(iter(self._cache.items()))
                if not old.done() and old_key != key:
                    old.cancel()
                self._cache.popitem(last=False)
            heapq.heappush(self._queue, (priority, next(self._seq), key, product))
            self._cond.notify()
            return fut

    def get(self, product: dict, version: str | None, category: int | None, *,
            wait: float = 0.0) -> Heatmaps | None:
        """Ready overlays, waiting at most `wait` seconds; None while still computing."""
        fut = self.request(product, version, category)
        try:
            return fut.result(timeout=wait) if wait > 0 else (fut.result() if fut.done() else None)
        except TimeoutError:
            return None
        except Exception as exc:  # noqa: BLE001 - cancelled or failed: say so on the card
            return Heatmaps((), category, f"Heatmaps unavailable: {exc or type(exc).__name__}")

    def warm(self, items: Sequence[tuple[dict, int | None]], version: str | None) -> None:
        """Queue the next products of a reviewer's queue behind the current card."""
        for product, category in items:
            self.request(product, version, category, priority=AHEAD)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                _, _, key, product = heapq.heappop(self._queue)
                fut = self._cache.get(key)
            if fut is None or fut.done() or not fut.set_running_or_notify_cancel():
                continue
            try:
                bundle = self._load_bundle(key[1])
                self._image_model[key[1]] = has_image_model(bundle)
                fut.set_result(render_heatmaps(bundle, product, key[2], self._explain))
            except Exception as exc:  # noqa: BLE001 - delivered to whoever waits on it
                log.exception("heatmaps for %s failed", key)
                fut.set_exception(exc)
