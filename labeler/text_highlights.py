"""The text model's explanation on the review card: words tinted toward / against a category.

`build_highlights(model, product, codes)` explains the product's displayed title and description
(`views.plain`, the description cut as the card cuts it) for each of the top-5 categories at once
(`models.text_explain`), and quantises each word's contribution to a tint level per rank. The card
then switches category without asking the server: the heatmap chips set a class on the card
(labeler/static/shortcuts.js), and CSS shows that rank's tints and summary line.

Cost: ~10-25 ms per card on the shared 2-core machine (experiments/text_explain.py), more than a request
should add, so `HighlightCache` computes them in one background thread, like the heatmaps: the card
on screen first, the next card of the queue behind it, an LRU of the results.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from labeler import taxonomy, views
from labeler.taxonomy import Taxonomy
from labeler.background import lower_priority

log = logging.getLogger(__name__)
LEVELS = 4                 # tint strengths per direction
MIN_SHARE = 0.08           # a word below this share of the strongest word stays untinted
BundleLoader = Callable[[str], object]


@dataclass(frozen=True)
class Highlights:
    """Rendered, escaped markup for one card: what `views.card_html` and try-it show."""
    codes: tuple[int, ...]             # the categories explained, in chip (rank) order
    title_html: str
    description_html: str
    summaries: tuple[str, ...]         # plain text, one per code
    details: tuple[str, ...] = ()      # the non-text features behind each summary (a tooltip)
    note: str = ""                     # why some or all could not be explained
    ms: float = 0.0                    # compute time


def display_texts(product: dict) -> tuple[str, str, bool]:
    """(title, description, description was cut) exactly as the card shows them."""
    title = views.plain(product.get("title"))
    desc = views.plain(product.get("description"))
    cut = len(desc) > views.MAX_DESCRIPTION
    return title, (desc[:views.MAX_DESCRIPTION].rstrip() if cut else desc), cut


def levels(contributions: np.ndarray) -> np.ndarray:
    """Signed tint level per word: +1..+LEVELS toward, -1..-LEVELS against, 0 untinted."""
    c = np.asarray(contributions, dtype=np.float64)
    top = np.abs(c).max() if len(c) else 0.0
    if top <= 0:
        return np.zeros(len(c), dtype=np.int64)
    share = np.abs(c) / top
    lv = np.where(share < MIN_SHARE, 0, np.ceil(share * LEVELS)).astype(np.int64)
    return np.sign(c).astype(np.int64) * np.minimum(lv, LEVELS)


def summary_line(exp, tax: Taxonomy | None = None) -> str:
    """'title words +78 %, description +15 %, patterns +7 % · Piscine 2583, text model 87%'
    (the shares first: a narrow card cuts the end of the line); names and codes from `tax`, the
    workspace's taxonomy (default: Rakuten's)."""
    tax = tax or taxonomy.default()
    return (f"{exp.summary()} · {tax.name(exp.category)} {tax.code(exp.category)}, "
            f"text model {views.pct(exp.probability)}")


def detail_line(exp, k: int = 4) -> str:
    """'patterns: size_axb +0.21, title_length -0.05; category bias -0.83; score +1.02'."""
    top = sorted(exp.patterns, key=lambda p: -abs(p.contribution))[:k]
    named = ", ".join(f"{p.name} {p.contribution:+.3f}" for p in top if p.contribution) or "none"
    hidden = f"; text not shown {exp.hidden:+.3f}" if exp.hidden else ""
    return f"patterns: {named}{hidden}; category bias {exp.intercept:+.3f}; score {exp.score:+.3f}"


def build_highlights(model, product: dict, codes: Sequence[int], tax: Taxonomy | None = None) -> Highlights:
    """Explain `product` for each category key with the text model `model` (a fitted TextClassifier)."""
    from models.text_explain import ExplainError, attribute
    start = time.perf_counter()
    title, desc, cut = display_texts(product)
    att = attribute(model, product.get("title"), product.get("description"),
                    display_title=title, display_description=desc)
    marks: list[list[str]] = [[] for _ in att.words]
    summaries, details, skipped = [], [], []
    for rank, code in enumerate(codes, start=1):
        try:
            exp = att.explain(code)
        except ExplainError as exc:
            summaries.append(str(exc))
            details.append("")
            skipped.append(int(code))
            continue
        summaries.append(summary_line(exp, tax))
        details.append(detail_line(exp))
        for i, lv in enumerate(levels(exp.contributions)):
            if lv:
                marks[i].append(f"r{rank}{'p' if lv > 0 else 'n'}{abs(lv)}")
    n_title = sum(1 for f, _, _ in att.words if f == "title")
    spans = [(a, b, " ".join(m)) for (_, a, b), m in zip(att.words, marks)]
    note = "" if att.has_text else "no title or description to explain"
    return Highlights(tuple(int(c) for c in codes),
                      views.highlighted_text_html(title, spans[:n_title]),
                      views.highlighted_text_html(desc, spans[n_title:], cut=cut),
                      tuple(summaries), tuple(details), note or (f"not explained: {skipped}" if skipped else ""),
                      1000 * (time.perf_counter() - start))


def text_model(bundle: object):
    """The bundle's text model when it can be explained exactly (a fitted hashed TextClassifier)."""
    model = getattr(bundle, "text", bundle)
    return model if hasattr(model, "coef_") and hasattr(model, "word_") else None


class HighlightCache:
    """Highlights computed in one background thread, kept in a small LRU keyed by
    (product, version, codes). `get` waits at most `wait` seconds; `warm` queues without waiting."""

    def __init__(self, load_bundle: BundleLoader, *, max_items: int = 256,
                 taxonomy: Callable[[], Taxonomy] | None = None):
        """taxonomy: gives the workspace's taxonomy (names and codes in the summary lines)."""
        self._load_bundle = load_bundle
        self._taxonomy = taxonomy
        self._max = max_items
        self._cache: OrderedDict[tuple, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="text-highlights",
                                        initializer=lower_priority)   # requests first

    @staticmethod
    def key(product: dict, version: str | None, codes: Sequence[int]) -> tuple:
        return (str(product.get("id")), version, tuple(int(c) for c in codes))

    def _compute(self, product: dict, version: str, codes: tuple[int, ...]) -> Highlights | None:
        model = text_model(self._load_bundle(version))
        if model is None:
            return None
        return build_highlights(model, product, codes, self._taxonomy() if self._taxonomy else None)

    def request(self, product: dict, version: str | None, codes: Sequence[int]) -> Future | None:
        if version is None or not codes:
            return None
        key = self.key(product, version, codes)
        with self._lock:
            fut = self._cache.get(key)
            if fut is not None:
                self._cache.move_to_end(key)
                return fut
            fut = self._pool.submit(self._compute, dict(product), version, key[2])
            self._cache[key] = fut
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)[1].cancel()
            return fut

    def get(self, product: dict, version: str | None, codes: Sequence[int], *, wait: float = 0.0) -> Highlights | None:
        """Ready highlights, or None (no model, not ready within `wait`, or failed: logged)."""
        fut = self.request(product, version, codes)
        if fut is None:
            return None
        try:
            return fut.result(timeout=wait) if wait > 0 else (fut.result() if fut.done() else None)
        except FutureTimeout:
            return None
        except Exception as exc:  # noqa: BLE001 - a failed explanation must not break reviewing
            log.warning("text explanation failed for product %s: %s", product.get("id"), exc)
            return None

    def warm(self, product: dict, version: str | None, codes: Sequence[int]) -> None:
        self.request(product, version, codes)

    def preload(self, version: str | None) -> None:
        """Load the version's model in the worker now, so the first card is not explained late."""
        if version is not None:
            self._pool.submit(self._load_bundle, version)

    def compute_ms(self) -> list[float]:
        """Background milliseconds of each explanation still cached (what the bench prints)."""
        with self._lock:
            futures = list(self._cache.values())
        return [f.result().ms for f in futures if f.done() and not f.cancelled() and f.exception() is None
                and f.result() is not None]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- the CLI's file ----------------------------------------------------------------------------------
CSV_COLUMNS = ("field", "span", "start", "end", "contribution")


def explain_product_text(model, product: dict, category: int):
    """The product's explanation for `category` over the texts the card shows."""
    from models.text_explain import attribute
    title, desc, _ = display_texts(product)
    return attribute(model, product.get("title"), product.get("description"), display_title=title,
                     display_description=desc).explain(category)


def write_text_csv(exp, path) -> None:
    """One row per displayed word (offsets into the displayed title / description), then the
    patterns, the text the display cuts (if any) and the intercept: the contribution column sums
    to the model's decision value for the category."""
    import csv
    from pathlib import Path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(CSV_COLUMNS)
        for s in exp.spans:
            out.writerow([s.field, s.text, s.start, s.end, f"{s.contribution:.9g}"])
        for p in exp.patterns:
            out.writerow(["pattern", p.name, "", "", f"{p.contribution:.9g}"])
        if exp.hidden:
            out.writerow(["hidden", "text the card does not show", "", "", f"{exp.hidden:.9g}"])
        out.writerow(["intercept", f"category bias of {exp.category}", "", "", f"{exp.intercept:.9g}"])
