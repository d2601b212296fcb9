"""The Gradio review app: layout and wiring over `labeler.review`, `labeler.stats` and the models.

`build_app(ws, settings)` returns the Blocks; `launch_options()` holds what Gradio 6 takes at
launch (theme, CSS, the keyboard-shortcut script), and `serve()` launches with both, plus the
product-image route (`labeler.serving`) and the throttled logins and roles (`labeler.auth`):
model-changing handlers check the caller's role themselves. Handlers
are methods of `ReviewUI`: each turns widget values into one call of the review API and the
result into HTML from `labeler.views`; the workflow itself (queue, reservation, decision, undo)
lives in `labeler.review`. Per-user state is a `Session` in `gr.State`; the only shared objects
are the workspace and the heatmap prefetch cache.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from labeler import learned, messages, retrain, review, serving, stats, strategies, taxonomy, tryit, views
from labeler.auth import Access, AccessDenied, Authenticator, User
from labeler.background import lower_priority
from labeler.config import Settings
from labeler.prefetch import Heatmaps, Prefetcher, default_explainer, render_heatmaps
from labeler.text_highlights import HighlightCache, build_highlights, text_model
from store.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_STRATEGY = "least_confidence"
PREFETCH_AHEAD = 1     # heatmaps take seconds per product on a CPU: keep one ready, no backlog
PRELOAD_IMAGES = 2     # the next cards' images: the browser fetches them while the reviewer looks
HEAT_WAIT_S = 180.0    # a card's overlays are awaited this long while it stays on screen
HIGHLIGHT_WAIT_S = 0.3  # the card's text explanation (usually computed ahead) is awaited at most this long
HISTORY_ROWS = 5
RETRAIN_POLL_S = 0.5   # progress refresh of a running retrain
LIVE_POLL_S = 5.0      # how often the app looks for a version made live by another process
MAX_UPLOAD = "20mb"    # try-it uploads: a product photo is well under; Gradio answers 413 above
UPLOAD_SWEEP = (600, 3600)   # Blocks(delete_cache=): every 10 min, uploads older than an hour go


# -- per-session state ----------------------------------------------------------------------------
@dataclass
class Session:
    """One browser tab's review session (lives in gr.State, never in a global)."""
    reviewer: str | None = None
    strategy: str = DEFAULT_STRATEGY
    category: int | None = None
    card: review.Card | None = None
    heat_category: int | None = None
    heat_shown: bool = False
    words_shown: bool = True     # False: the card came before its text explanation (sent by the follow-up)
    ahead: list = field(default_factory=list)     # [(product, category)] whose heatmaps are warmed
    last: str = ""
    prefs: dict = field(default_factory=dict)
    tab: str = ""           # the browser tab's token (kept across reloads): each tab holds its own product

    @property
    def owner(self) -> str:
        """Who the prefetcher works for: this reviewer in this tab."""
        return f"{self.reviewer or ''}#{self.tab}" if self.tab else self.reviewer or ""


def _html(value: str = "", **kw: Any) -> gr.HTML:
    """Static markup from `labeler.views`: no per-update script (Gradio's default `js_on_load`
    would re-bind a click handler on every update of every card)."""
    return gr.HTML(value, js_on_load=None, **kw)


def launch_options() -> dict[str, Any]:
    """Theme, CSS and the shortcut script: Gradio 6 takes these at launch(), not in Blocks().

    No run history: Gradio 6 otherwise stores every call's inputs and outputs (cards, heatmaps)
    in the browser, which on a day of reviewing is thousands of product cards kept where nobody
    asked for them, and measured +50 ms on each Enter -> next card (bench/bench_app.py).
    Uploads (try-it) are refused above MAX_UPLOAD."""
    return {"theme": gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"),
            "css": (STATIC / "app.css").read_text(encoding="utf-8"),
            "head": "".join(f"<script>{(STATIC / name).read_text(encoding='utf-8')}</script>"
                            for name in ("shortcuts.js", "grid.js")),
            "run_history": False, "max_file_size": MAX_UPLOAD}


def _pretty(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _describe(strategy: str) -> str:
    found = strategies.STRATEGIES.get(strategy)
    return found.description if found else ""


class ReviewUI:
    """The event handlers; `ws`, `settings` and the prefetch cache are shared, `Session` is per tab."""

    def __init__(self, ws: Workspace, settings: Settings, prefetcher: Prefetcher,
                 highlights: HighlightCache | None = None):
        from labeler.training import live_bundle
        self.ws = ws
        self.settings = settings
        self.prefetch = prefetcher
        self.highlights = highlights or HighlightCache(lambda version: live_bundle(ws, version))
        self.access = Access()       # every right (a local run); `serve` sets the launch's own
        self.warming: threading.Thread | None = None     # the latest queue warm-up
        self.warmed: str | None = None                     # ...and the version it was for

    def warm(self, version: str | None) -> threading.Thread:
        """Before the first card of a newly live version: its model and backbones (heatmaps) and
        its ranked default queue (`review.warm`: ~2.6 s at 85k products, 50k decisions) load in
        the background, not on the first reviewer's request (which waits for the build if it
        comes first). Returns the queue's thread."""
        self.warmed = version
        self.prefetch.preload(version)
        self.highlights.preload(version)

        def build() -> None:
            lower_priority()      # the first reviewers' requests come first
            try:
                review.warm(self.ws, DEFAULT_STRATEGY, settings=self.settings)
            except Exception as exc:  # noqa: BLE001 - the first card will report it properly
                log.warning("could not rank the queue ahead: %s", exc)
            finally:
                self.ws.close()     # this thread's connection only
        self.warming = threading.Thread(target=build, name="queue-warm", daemon=True)
        self.warming.start()
        return self.warming

    def watch_live(self, every: float = LIVE_POLL_S) -> threading.Thread:
        """Warm a version made live elsewhere (the CLI's `retrain` or `rollback` while reviewers
        work) as soon as it is seen, not on the next reviewer's request. Ends with the prefetcher."""
        def loop() -> None:
            while not self.prefetch.wait_closed(every):
                try:
                    version = self.ws.live_version()
                except Exception as exc:  # noqa: BLE001 - a busy or moved database: look again later
                    log.warning("could not read the live version: %s", exc)
                    continue
                if version != self.warmed:      # not already warmed by this app's own buttons
                    self.warm(version)
            self.ws.close()         # this thread's connection only
        thread = threading.Thread(target=loop, name="live-watch", daemon=True)
        thread.start()
        return thread

    # -- rendering ------------------------------------------------------------------------------
    def render(self, s: Session, *, clear_choice: bool = False, clear_comment: bool = False) -> tuple:
        """Everything a card shows, in the order of `outs` in build_app (N_CARD_OUTPUTS values).

        Only what changes is sent: the category search and the comment are reset only when they
        were used, and the heatmap follow-up is triggered only when the overlays are not ready."""
        card = s.card
        threshold = self.settings.auto_accept_threshold
        status = views.status_html(reviewer=s.reviewer, card=card, last=s.last)
        choice = gr.update(value=None) if clear_choice else gr.skip()
        comment = gr.update(value="") if clear_comment else gr.skip()
        if s.reviewer is None or card is None:
            s.heat_category, s.heat_shown, s.ahead = None, True, []
            if s.reviewer:
                self.prefetch.want(s.owner, None)
            if s.reviewer is None:
                body = views.empty_card_html("Who is reviewing?", "Type your name in the Reviewer box and press "
                                             "Enter: every decision carries it.")
            elif self.ws.count_products() == 0:
                body = views.empty_card_html("No products in this workspace",
                                             "Import a catalog (python -m labeler import …) or start launch.py "
                                             "without --no-demo to load the demo catalog.")
            else:
                reason = getattr(strategies.STRATEGIES.get(s.strategy), "empty_reason", "")
                body = views.empty_card_html(
                    "Nothing left in this queue",
                    f"The “{_pretty(s.strategy)}” queue has no product left for you. "
                    + (reason or "Pick another queue above.") + " Press U to bring back your last decision.")
            # no card, nothing to decide: no top-5 either (the decision buttons hide with the empty card)
            return (s, {}, views.card_with_status(status, body), "",
                    views.side_html("", self._history(s)), "", gr.skip(), choice, comment)
        pred = card.prediction
        top1 = pred.top1 if pred is not None else None
        version = pred.model_version if pred is not None else None
        s.heat_category = top1
        s.ahead, upcoming = self._ahead(s)
        heat = self.prefetch.result(self._want(s, top1), top1)
        s.heat_shown = heat is not None
        current = {"product_id": card.product_id, "key": card.key, "reviewer": s.reviewer,
                   "strategy": card.strategy, "model_version": version, "remaining": card.remaining,
                   "top5": [[v.code, v.prob] for v in pred.top5] if pred is not None else []}
        image_uri = views.image_src(card.product)
        words = self._highlights(card.product, pred)
        s.words_shown = words is not None or pred is None
        body = views.card_html(card, image_uri, threshold=threshold, preload=upcoming, highlights=words)
        return (s, current, views.card_with_status(status, body),
                views.top5_html(pred, threshold=threshold),
                views.side_html(views.votes_html(pred, has_image=bool(card.product.get("image_path"))),
                                self._history(s)),
                self._heat_html(heat, top1, s),
                f"{card.key}:{top1}" if heat is None or not s.words_shown else gr.skip(),
                choice, comment)

    def _highlights(self, product: dict, pred, wait: float | None = None):
        """The text model's words for the top-5 (computed ahead in the background; None if not ready)."""
        if pred is None:
            return None
        return self.highlights.get(product, pred.model_version, [v.code for v in pred.top5],
                                   wait=HIGHLIGHT_WAIT_S if wait is None else wait)

    def _warm_highlights(self, product: dict, version: str) -> None:
        """Queue the next card's text explanation behind the current one."""
        row = self.ws.prediction(product["id"], version)
        if row is not None:
            self.highlights.warm(product, version, [int(c) for c, _ in row["top5"]])

    def _history(self, s: Session) -> str:
        if not s.reviewer:
            return ""
        return views.history_html(review.recent_decisions(self.ws, s.reviewer, limit=HISTORY_ROWS))

    @staticmethod
    def _heat_html(heat: Heatmaps | None, category: int | None, s: Session) -> str:
        """The overlays (or why there are none), with the top-5 as chips to switch category."""
        pred = s.card.prediction if s.card is not None else None
        chips = [(v.code, v.name) for v in pred.top5] if pred is not None else []   # they switch the words too
        if heat is None:
            return views.heatmaps_html((), category=category, note="Computing heatmaps…", choices=chips)
        return views.heatmaps_html(heat.items, category=heat.category, note=heat.note, choices=chips)

    def _want(self, s: Session, category: int | None):
        """Tell the prefetcher what this reviewer looks at and will look at next."""
        card = s.card
        pred = card.prediction if card is not None else None
        version = pred.model_version if pred is not None else None
        return self.prefetch.want(s.owner, (card.product, version, category) if card else None,
                                  s.ahead, version)

    def _ahead(self, s: Session) -> tuple[list, list[str]]:
        """The next product(s) with an image in this reviewer's queue, with their top-1 (their
        heatmaps are warmed), and the image URLs of the next cards (the browser preloads them)."""
        card = s.card
        if card is None or card.prediction is None or PREFETCH_AHEAD <= 0:
            return [], []
        try:
            ids = review.upcoming(self.ws, s.reviewer, 8 * PREFETCH_AHEAD, strategy=s.strategy,
                                  category=s.category, settings=self.settings)
        except (review.ReviewError, strategies.StrategyError):
            return [], []
        version = card.prediction.model_version
        items, images = [], []
        for n, product in enumerate(self.ws.products(ids)):
            if n == 0:
                self._warm_highlights(product, version)
            url = views.image_url(product) if n < PRELOAD_IMAGES else None
            if url:
                images.append(url)
            pred = self.ws.prediction(product["id"], version) if product.get("image_path") else None
            if pred is not None and len(items) < PREFETCH_AHEAD:
                items.append((product, int(pred["top1"])))
            if len(items) >= PREFETCH_AHEAD and n + 1 >= PRELOAD_IMAGES:
                break
        return items, images

    def _next(self, s: Session, **render_kw: bool) -> tuple:
        try:
            s.card = review.next_card(self.ws, s.reviewer, strategy=s.strategy, category=s.category,
                                      settings=self.settings, tab=s.tab) if s.reviewer else None
        except (review.ReviewError, strategies.StrategyError, WorkspaceError) as exc:
            s.card = None
            raise messages.error(str(exc)) from exc
        return self.render(s, **render_kw)

    @staticmethod
    def _same(n: int) -> tuple:
        return tuple(gr.skip() for _ in range(n))

    # -- session start, reviewer, queue -----------------------------------------------------------
    def start(self, name: str, prefs: dict | None, tab: str | None, s: Session, request: gr.Request) -> tuple:
        """Page load: who is reviewing (login, typed name or the one remembered by the browser).

        `tab`: the tab's token from the browser's sessionStorage (TAB_TOKEN_JS), so a second tab
        of the same reviewer is given another product while a reload resumes this tab's."""
        prefs = dict(prefs or {})
        s.tab = str(tab or "")[:64]
        user = getattr(request, "username", None) if request is not None else None
        reviewer = (user or (name or "").strip() or str(prefs.get("reviewer") or "").strip()) or None
        s.reviewer, s.prefs = reviewer, prefs
        strategy = prefs.get("strategy")
        s.strategy = strategy if strategy in strategies.STRATEGIES else DEFAULT_STRATEGY
        s.category = prefs.get("category") if taxonomy.is_known(prefs.get("category")) else None
        if s.strategy == "category" and s.category is None:
            s.strategy = DEFAULT_STRATEGY
        if reviewer:
            prefs["reviewer"] = reviewer
        out = self._next(s)
        name_box = gr.update(value=reviewer, interactive=user is None) if reviewer else gr.skip()
        return out + (name_box, gr.update(value=s.strategy, info=_describe(s.strategy)),
                      gr.update(value=s.category, visible=s.strategy == "category"), prefs)

    def set_reviewer(self, name: str, s: Session, request: gr.Request) -> tuple:
        """The name box (auth off): switch the reviewer and give back the previous one's product."""
        user = getattr(request, "username", None) if request is not None else None
        name = user or (name or "").strip()
        if not name:
            raise messages.error("Type your name first: every decision carries the reviewer's name.")
        if s.reviewer and s.reviewer != name:
            review.release(self.ws, s.reviewer, tab=s.tab)
        s.reviewer, s.last = name, ""
        s.prefs = {**s.prefs, "reviewer": name}
        return self._next(s) + (s.prefs,)

    def set_queue(self, strategy: str, category: int | None, s: Session) -> tuple:
        """Switch the queue strategy (and the category of the one-category queue)."""
        try:
            strategies.get(strategy)
        except strategies.StrategyError as exc:
            raise messages.error(str(exc)) from exc
        s.strategy, s.category = strategy, (int(category) if category is not None else None)
        s.prefs = {**s.prefs, "strategy": s.strategy, "category": s.category}
        chooser = gr.update(info=_describe(strategy))
        picker = gr.update(visible=strategy == "category")
        if strategy == "category" and s.category is None:
            messages.info("Choose the category of this queue in the box next to it.")
            return self._same(N_CARD_OUTPUTS) + (chooser, picker, s.prefs)
        if s.reviewer:
            review.release(self.ws, s.reviewer, tab=s.tab)
        return self._next(s) + (chooser, picker, s.prefs)

    # -- decisions -------------------------------------------------------------------------------
    def _decide(self, s: Session, current: dict | None, action: str, category: int | None, comment: str,
                *, chosen: bool = False) -> tuple:
        card = s.card
        if s.reviewer is None:
            raise messages.error("Type your name in the Reviewer box first.")
        if card is None:
            return self._next(s)
        if current and current.get("key") and current["key"] != card.key:
            return self.render(s)   # a key pressed for a card already decided: resync, decide nothing
        try:
            row = review.decide(self.ws, s.reviewer, card.product_id, action, category=category,
                                comment=(comment or "").strip(), lead_time_ms=card.lead_time_ms(),
                                idempotency_key=card.key,
                                shown_version=card.prediction.model_version if card.prediction else None)
        except review.HeldByAnother as exc:
            messages.warning(f"{exc} (your reservation had expired)")
            return self._next(s)
        except (review.ReviewError, WorkspaceError) as exc:
            raise messages.error(str(exc)) from exc
        s.last = views.describe_decision(row, card.product.get("title"))
        return self._next(s, clear_choice=chosen, clear_comment=bool(comment))

    def accept(self, current: dict | None, comment: str, s: Session) -> tuple:
        """Enter: the fused top-1 the reviewer was shown."""
        pred = s.card.prediction if s.card is not None else None
        if s.card is not None and pred is None:
            messages.warning("No model prediction to accept: choose the category with / or skip with S.")
            return self._same(N_CARD_OUTPUTS)
        return self._decide(s, current, "accept", pred.top1 if pred else None, comment)

    def pick(self, rank: int, current: dict | None, comment: str, s: Session) -> tuple:
        """Keys 1-5: the rank-th category of the fused top-5 (1 = accept)."""
        pred = s.card.prediction if s.card is not None else None
        if pred is None or not 1 <= rank <= len(pred.top5):
            if s.card is not None:
                messages.warning(f"There is no #{rank} in this product's top-5: choose with / instead.")
            return self._same(N_CARD_OUTPUTS)
        code = pred.top5[rank - 1].code
        return self._decide(s, current, "accept" if rank == 1 else "correct", code, comment)

    def choose(self, category: int | None, current: dict | None, comment: str, s: Session) -> tuple:
        """The searchable list of all 27 categories."""
        if category is None:
            return self._same(N_CARD_OUTPUTS)
        pred = s.card.prediction if s.card is not None else None
        action = "accept" if pred is not None and int(category) == pred.top1 else "correct"
        return self._decide(s, current, action, int(category), comment, chosen=True)

    def skip(self, current: dict | None, comment: str, s: Session) -> tuple:
        return self._decide(s, current, "skip", None, comment)

    def undo(self, s: Session) -> tuple:
        """U: take back the latest decision still standing; its product comes back on screen."""
        if s.reviewer is None:
            raise messages.error("Type your name in the Reviewer box first.")
        try:
            row = review.undo(self.ws, s.reviewer, settings=self.settings, tab=s.tab)
        except review.HeldByAnother as exc:
            raise messages.error(f"{exc}; it cannot be undone while they hold it") from exc
        except (review.ReviewError, WorkspaceError) as exc:
            raise messages.error(str(exc)) from exc
        if row is None:
            messages.info("Nothing left to undo.")
            return self._same(N_CARD_OUTPUTS)
        undone = row["undone"]
        s.last = "undid: " + views.describe_decision(undone, (self.ws.product(undone["product_id"]) or {}).get("title"))
        return self._next(s)

    # -- heatmaps --------------------------------------------------------------------------------
    def heatmaps_for(self, category: str | int | None, s: Session):
        """The overlays for another category of the top-5 (the chips above the heatmaps)."""
        card = s.card
        if card is None or card.prediction is None or not taxonomy.is_known(category):
            yield gr.skip()
            return
        s.heat_category, s.heat_shown = int(str(category).strip()), False
        yield self._heat_html(None, s.heat_category, s)
        yield self._await_heat(s)

    def heatmaps_pending(self, token: str, s: Session):
        """Runs when a card was shown before its overlays (or its text explanation) were ready:
        fills them in. The words ride in the heatmap output, keyed by the card, and the page's
        script moves them into the card only if that card is still on screen."""
        card = s.card
        if card is None or card.prediction is None or token != f"{card.key}:{s.heat_category}":
            yield gr.skip()
            return
        late = self._await_words(s) if not s.words_shown else ""
        if late:
            category = s.heat_category
            heat = self.prefetch.result(self._want(s, category), category) if s.heat_shown else None
            yield self._heat_html(heat, category, s) + late
        if not s.heat_shown:
            yield self._await_heat(s)
        elif not late:
            yield gr.skip()

    def _await_words(self, s: Session) -> str:
        """The card's text explanation once computed (the model was still loading when it was
        shown), as a hidden block for the page script; "" if the reviewer moved on."""
        card = s.card
        pred = card.prediction
        deadline = time.monotonic() + HEAT_WAIT_S
        while time.monotonic() < deadline:
            words = self._highlights(card.product, pred, wait=0.5)
            if s.card is None or s.card.key != card.key:
                return ""
            if words is not None:
                s.words_shown = True
                return views.late_words_html(card.key, words, product=card.product)
        return ""

    def _await_heat(self, s: Session) -> str:
        """Wait for this card's overlays while it is on screen; give up when the reviewer moves on."""
        key, category = s.card.key, s.heat_category
        fut = self._want(s, category)
        deadline = time.monotonic() + HEAT_WAIT_S
        while time.monotonic() < deadline:
            heat = self.prefetch.result(fut, category, wait=0.5)
            if s.card is None or s.card.key != key or s.heat_category != category:
                return gr.skip()      # another card or category is on screen now
            if heat is not None:
                s.heat_shown = True
                return self._heat_html(heat, category, s)
            if fut.cancelled():
                fut = self._want(s, category)
        return gr.skip()

    # -- stats and try-it ------------------------------------------------------------------------
    def stats(self) -> tuple:
        st = stats.summary(self.ws, self.settings)
        per_cat = st["acceptance"]["per_category"]
        return (views.stats_cards_html(st["progress"], st["acceptance"], st["agreement"], st["model"]),
                st["rates"], per_cat, confusion_figure(st["confusion"]), views.metrics_html(st["model"]))

    def try_it(self, image: str | None, title: str, description: str,
               progress: gr.Progress = gr.Progress()) -> tuple[str, str, str, str]:
        """Predict a typed/uploaded product with the live model; the workspace is not touched.

        The uploaded file is deleted once predicted (`tryit.discard_upload`): nothing a visitor
        uploads stays on the server (Blocks' delete_cache sweeps uploads never predicted)."""
        try:
            return self._try_it(image, title, description, progress)
        finally:
            tryit.discard_upload(image)

    def _try_it(self, image: str | None, title: str, description: str, progress: gr.Progress) -> tuple[str, str, str, str]:
        from labeler.training import live_bundle
        if image and not tryit.is_image(image):
            raise messages.error(f"the uploaded file {Path(image).name} is not an image the model can read "
                                 "(JPEG, PNG, WebP...); upload a product photo")
        try:
            progress(0.1, desc="loading the live model")
            bundle = live_bundle(self.ws)
            progress(0.3, desc="predicting")
            pred, product = tryit.predict_one(bundle, title=title, description=description, image_path=image,
                                              settings=self.settings)
        except (WorkspaceError, review.ReviewError) as exc:
            raise messages.error(str(exc)) from exc
        progress(0.6, desc="computing heatmaps")
        heat = render_heatmaps(bundle, product, pred.top1, self.prefetch.explainer)
        threshold = self.settings.auto_accept_threshold
        return (views.top5_html(pred, threshold=threshold, clickable=False), views.votes_html(pred, has_image=bool(product.get("image_path"))),
                views.heatmaps_html(heat.items, category=heat.category, note=heat.note),
                self._try_words(bundle, product, pred))

    @staticmethod
    def _try_words(bundle, product: dict, pred) -> str:
        """The typed title and description with the text model's words, per top-5 category."""
        model = text_model(bundle)
        if model is None or not (product.get("title") or product.get("description")):
            return views.text_explanation_html(None)
        return views.text_explanation_html(build_highlights(model, product, [v.code for v in pred.top5]),
                                           [(v.code, v.name) for v in pred.top5])

    # -- models: retrain from decisions, versions, rollback -----------------------------------------
    def models(self, request: gr.Request = None) -> tuple:
        """Retrain panel (with who moved the live version, and what this login may do), versions
        table (newest first) and the version picker's choices."""
        handle = retrain.current_retrain(self.ws)
        runs = retrain.retrain_state(self.ws, limit=1)
        panel = views.retrain_status_html(handle.status() if handle else None,
                                          handle.result.lines() if handle and handle.result else (),
                                          runs[0] if runs else None)
        panel += views.live_history_html(self.ws.live_history(limit=HISTORY_ROWS * 2), note=self._rights(request))
        table = retrain.versions_table(self.ws)
        return (panel, views.versions_rows(table),
                gr.update(choices=[v["id"] for v in reversed(table) if v["status"] == "ready"], value=None))

    def models_learned(self):
        """What the live text model learned (read once per version: about a second)."""
        version = self.ws.live_version()
        if version is None:
            yield views.learned_html(None)
            return
        yield '<div class="muted">Reading what the model learned…</div>'
        try:
            yield views.learned_html(learned.learned(self.ws, version))
        except (WorkspaceError, OSError) as exc:
            yield f'<div class="muted">Could not read the model: {views.text(str(exc))}</div>'

    def _rights(self, request: gr.Request | None) -> str:
        """'' when this login may change the model, else why not (shown above the live history)."""
        try:
            self.access.require_admin(_login(request), "Changing the model (retrain, make a version live)")
        except AccessDenied as exc:
            return str(exc)
        return ""

    def _admin(self, request: gr.Request | None, action: str, s: Session | None) -> str:
        """Who does `action` (recorded in live_history); gr.Error when this login may not.

        Checked here, on the server, for every model-changing event: hiding a button would not
        stop a call through the API."""
        try:
            return self.access.require_admin(_login(request), action, fallback=s.reviewer if s else "")
        except AccessDenied as exc:
            raise messages.error(f"refused: {exc}") from exc      # one line in the console, escaped

    def retrain_now(self, why: str | None = None, s: Session | None = None, request: gr.Request = None,
                    progress: gr.Progress = gr.Progress()) -> tuple:
        """Start the background retrain (or follow the one running) and report it until it ends.

        The work runs in its own thread: closing the tab does not stop it, reviewers keep
        deciding meanwhile, and the queue moves to the new version when it goes live. Admins
        only; who started it and their note go to live_history with the version it made live."""
        who = self._admin(request, "Retraining", s)
        handle = retrain.start_background_retrain(self.ws, who=who, why=(why or "").strip())
        while not handle.done:
            st = handle.status()
            progress(st["fraction"], desc=st["message"])
            time.sleep(RETRAIN_POLL_S)
        if handle.error:
            messages.warning(f"Retrain failed: {handle.error}")
        elif handle.result is not None:
            self.warm(self.ws.live_version())
            messages.info(f"{handle.result.version} {'is live' if handle.result.went_live else 'is ready, not live'}")
        return self.models(request)

    def make_live(self, version: str | None, why: str | None = None, s: Session | None = None,
                  request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> tuple:
        """Serve another ready version (roll back, or promote one a gate held back). Admins only."""
        who = self._admin(request, "Making a version live", s)
        if not version:
            raise messages.error("Pick a version in the list first.")
        running = retrain.current_retrain(self.ws)
        if running is not None and not running.done:
            raise messages.error("A retrain is running; switch versions once it has finished.")
        try:
            out = retrain.rollback(self.ws, version, progress=lambda f, d: progress(f, desc=d), who=who,
                                   why=(why or "").strip())
        except WorkspaceError as exc:
            raise messages.error(str(exc)) from exc
        self.warm(out["version"])
        messages.info(f"{out['version']} is live" + (f" ({out['rescored']} products scored)" if out["rescored"] else ""))
        return self.models(request)


def _login(request: gr.Request | None) -> str | None:
    """The logged-in name of this request (None without --auth)."""
    return getattr(request, "username", None) if request is not None else None


def confusion_figure(matrix):
    """Model top-1 (rows) vs reviewer's category (columns), only categories that occur."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keep = [c for c in matrix.index if matrix.loc[c].sum() > 0 or matrix[c].sum() > 0]
    fig, ax = plt.subplots(figsize=(7.5, 6.2), dpi=100)
    if not keep:
        ax.text(0.5, 0.5, "no reviewed products yet", ha="center", va="center", fontsize=13)
        ax.axis("off")
        return fig
    m = matrix.loc[keep, keep].to_numpy()
    ax.imshow(m, cmap="Blues")
    labels = [f"{taxonomy.name(c)[:22]} {c}" for c in keep]
    ax.set_xticks(range(len(keep)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(keep)), labels, fontsize=8)
    for i in range(len(keep)):
        for j in range(len(keep)):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("reviewer's category")
    ax.set_ylabel("model top-1 shown")
    ax.set_title("Model vs reviewer")
    fig.tight_layout()
    return fig


# -- layout and wiring ----------------------------------------------------------------------------
# What `ReviewUI.render` returns, in order: session, current, status line + card, top5, votes +
# last decisions, heatmaps, heatmap token (triggers the follow-up), category search (reset),
# comment (reset). Few outputs on purpose: each extra gr.HTML output cost the browser ~15 ms per
# update (Gradio 6, measured on an empty-event app), so what sits together is sent together.
N_CARD_OUTPUTS = 9


# The page load's inputs (name, prefs, tab token, session) with the tab token this tab keeps in
# sessionStorage: it survives a reload (the tab resumes its product) and differs between tabs.
TAB_TOKEN_JS = """(name, prefs, tab, session) => {
  let t = null;
  try { t = sessionStorage.getItem("labeler-tab"); } catch (e) {}
  if (!t) {
    t = Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
    try { sessionStorage.setItem("labeler-tab", t); } catch (e) {}
  }
  return [name, prefs, t, session];
}"""


def build_app(ws: Workspace, settings: Settings = Settings(), *, prefetcher: Prefetcher | None = None) -> gr.Blocks:
    """The review app over one workspace. Launch it with `serve()`: it adds the product-image
    route and the login checks."""
    from labeler.training import live_bundle
    prefetcher = prefetcher or Prefetcher(lambda version: live_bundle(ws, version), explain=default_explainer())
    ui = ReviewUI(ws, settings, prefetcher)
    ui.warm(ws.live_version())
    ui.watch_live()
    # product images go to the browser by URL on the app's own route by product id (`serve` adds
    # it; labeler.serving), never a folder on Gradio's file route
    secret = hashlib.sha256(f"labeler:{ws.root.resolve()}".encode()).hexdigest()[:24]
    strategy_choices = [(_pretty(n), n) for n in strategies.STRATEGIES]
    categories = views.category_choices()

    # uploads never predicted (a visitor who left) are swept: every 10 min, those older than 1 h
    with gr.Blocks(title="Rakuten category review", fill_width=True, delete_cache=UPLOAD_SWEEP) as demo:
        session = gr.State(Session())
        prefs = gr.BrowserState({}, storage_key="rakuten-labeler-prefs", secret=secret)
        # not rendered (visible=False still holds the value and sends it back as an input): a
        # hidden JSON viewer was rebuilt in the browser on every decision for nobody
        current = gr.JSON(visible=False, elem_id="current-card")
        tab_token = gr.Textbox("", visible=False, elem_id="tab-token")   # filled by TAB_TOKEN_JS
        with gr.Tabs():
            with gr.Tab("Review", id="review"):
                with gr.Row(elem_id="review-bar", equal_height=True):
                    reviewer = gr.Textbox(label="Reviewer", placeholder="your name, then Enter", scale=2,
                                          max_lines=1, elem_id="reviewer-name")
                    strategy = gr.Dropdown(strategy_choices, value=DEFAULT_STRATEGY, label="Queue", scale=2,
                                           info=_describe(DEFAULT_STRATEGY), elem_id="queue-strategy")
                    queue_category = gr.Dropdown(categories, value=None, label="Queue category", scale=2,
                                                 visible=False, elem_id="queue-category")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=6, min_width=480):
                        card = _html(views.card_with_status(views.status_html(reviewer=None, card=None),
                                                            views.empty_card_html("Loading…")), elem_id="review-card")
                        heat = _html(elem_id="heatmaps")
                        heat_token = gr.Textbox(visible="hidden", elem_id="heat-token")
                        heat_request = gr.Textbox(visible="hidden", elem_id="heat-request")
                        heat_btn = gr.Button("heatmaps", visible="hidden", elem_id="btn-heat")
                    with gr.Column(scale=4, min_width=380):
                        top5 = _html(elem_id="top5")
                        with gr.Row(elem_id="decide-row"):
                            accept_btn = gr.Button("Accept top-1  ⏎", variant="primary", elem_id="btn-accept",
                                                   scale=2)
                            skip_btn = gr.Button("Skip  S", elem_id="btn-skip", scale=1)
                            undo_btn = gr.Button("Undo  U", elem_id="btn-undo", scale=1)
                        _html(views.shortcuts_html(), padding=False)
                        choose = gr.Dropdown(categories, value=None, label="Another category (press / to search)",
                                             filterable=True, elem_id="category-search")
                        comment = gr.Textbox(label="Comment (optional, saved with the decision)", max_lines=2,
                                             elem_id="comment")
                        side = _html(elem_id="review-side")
                        pick_btns = [gr.Button(f"pick {r}", visible="hidden", elem_id=f"btn-pick-{r}")
                                     for r in range(1, 6)]

            with gr.Tab("Stats", id="stats") as stats_tab:
                with gr.Row():
                    refresh = gr.Button("Refresh stats", size="sm", scale=0, min_width=140)
                stat_cards = _html()
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("**Decisions per hour, per reviewer** (active time, breaks over 5 min left out)")
                        rates = gr.Dataframe(interactive=False)
                        gr.Markdown("**Model top-1 accepted, per predicted category**")
                        per_cat = gr.Dataframe(interactive=False)
                    with gr.Column():
                        confusion = gr.Plot(label="Model vs reviewer")
                        gr.Markdown("**Live model version**")
                        metrics = _html()

            with gr.Tab("Try it", id="try"):
                gr.Markdown("Type a product or upload its image: the live model's fused top-5, each voter's vote, "
                            "the words the text model read and the heatmaps. Nothing is saved.")
                with gr.Row():
                    with gr.Column(scale=1):
                        try_image = gr.Image(type="filepath", label="Product image", sources=["upload", "clipboard"],
                                             height=300, image_mode=None)   # the upload itself, no converted copy
                        try_title = gr.Textbox(label="Title", placeholder="e.g. Piscine tubulaire ronde 3,66 m")
                        try_desc = gr.Textbox(label="Description", lines=4)
                        try_btn = gr.Button("Predict", variant="primary")
                    with gr.Column(scale=1):
                        try_top5 = _html(elem_id="try-top5")
                        try_votes = _html(elem_id="try-votes")
                try_words = _html(elem_id="try-words")
                try_heat = _html(elem_id="try-heatmaps")

            with gr.Tab("Models", id="models") as models_tab:
                gr.Markdown("**Retrain** learns every decision made so far (text model, image voters and "
                            "fusion) on every label, compares the new version with the live one on the labelled "
                            "products by their out-of-fold scores, and puts it live; the queue is then ranked by the new version. It runs in the "
                            "background: reviewing goes on meanwhile.")
                with gr.Row():
                    retrain_btn = gr.Button("Retrain from decisions", variant="primary", scale=0, min_width=280,
                                            elem_id="btn-retrain")
                    models_refresh = gr.Button("Refresh", size="sm", scale=0, min_width=100)
                retrain_panel = _html(elem_id="retrain-panel")
                versions = gr.Dataframe(headers=views.VERSION_COLUMNS, interactive=False, wrap=True,
                                        label="Model versions (newest first)", elem_id="versions",
                                        column_widths=["18%", "6%", "6%", "13%", "7%", "7%", "8%", "7%", "28%"])
                with gr.Row():
                    version_pick = gr.Dropdown([], value=None, label="Version", scale=2, elem_id="version-pick")
                    make_live_btn = gr.Button("Make this version live", scale=1, elem_id="btn-make-live")
                change_why = gr.Textbox(label="Why (optional, recorded with a retrain or a change of live version)",
                                        max_lines=1, elem_id="change-why")
                learned_box = _html(elem_id="learned")

            browse_tab(ws)
            grid_tab(ws, settings)

        outs = [session, current, card, top5, side, heat, heat_token, choose, comment]
        review_events = {"concurrency_id": "review", "concurrency_limit": 4, "show_progress": "hidden"}
        heat_events = {"concurrency_limit": None, "show_progress": "hidden"}

        demo.load(ui.start, [reviewer, prefs, tab_token, session], outs + [reviewer, strategy, queue_category, prefs],
                  api_name="start", js=TAB_TOKEN_JS, **review_events)
        reviewer.submit(ui.set_reviewer, [reviewer, session], outs + [prefs], api_name="set_reviewer", **review_events)
        for trigger, name in ((strategy.input, "set_queue"), (queue_category.input, "set_queue_category")):
            trigger(ui.set_queue, [strategy, queue_category, session], outs + [strategy, queue_category, prefs],
                    api_name=name, **review_events)
        accept_btn.click(ui.accept, [current, comment, session], outs, api_name="accept", **review_events)
        for rank, btn in enumerate(pick_btns, start=1):
            btn.click(functools.partial(ui.pick, rank), [current, comment, session], outs, api_name=f"pick_{rank}",
                      **review_events)
        choose.input(ui.choose, [choose, current, comment, session], outs, api_name="choose", **review_events)
        skip_btn.click(ui.skip, [current, comment, session], outs, api_name="skip", **review_events)
        undo_btn.click(ui.undo, [session], outs, api_name="undo", **review_events)
        heat_token.change(ui.heatmaps_pending, [heat_token, session], [heat], api_name="heatmaps_pending",
                          **heat_events)
        heat_btn.click(ui.heatmaps_for, [heat_request, session], [heat], api_name="heatmaps", **heat_events)

        stats_outs = [stat_cards, rates, per_cat, confusion, metrics]
        refresh.click(ui.stats, None, stats_outs, api_name="stats", concurrency_limit=1)
        stats_tab.select(ui.stats, None, stats_outs, api_name="stats_on_open", concurrency_limit=1)
        try_btn.click(ui.try_it, [try_image, try_title, try_desc], [try_top5, try_votes, try_heat, try_words],
                      api_name="try_it", concurrency_limit=1)
        models_outs = [retrain_panel, versions, version_pick]
        models_events = {"concurrency_id": "models", "concurrency_limit": 1}
        models_tab.select(ui.models, None, models_outs, api_name="models", **models_events)
        models_refresh.click(ui.models, None, models_outs, api_name="models_refresh", **models_events)
        # its own queue: a retrain followed for minutes holds no slot that reviews or heatmaps need
        retrain_btn.click(ui.retrain_now, [change_why, session], models_outs, api_name="retrain",
                          concurrency_id="retrain", concurrency_limit=4)
        make_live_btn.click(ui.make_live, [version_pick, change_why, session], models_outs, api_name="make_live",
                            **models_events)
        for trigger, name in ((models_tab.select, "learned"), (models_refresh.click, "learned_refresh")):
            trigger(ui.models_learned, None, [learned_box], api_name=name, concurrency_id="learned", concurrency_limit=1)
    demo.queue(default_concurrency_limit=2, max_size=512)
    demo.review_ui = ui          # for tests and launch.py: the handlers and the prefetch cache
    return demo


def browse_tab(ws: Workspace) -> None:
    """The Browse tab (inside `gr.Tabs`): search, filters, sort and pages over `labeler.browse`."""
    from labeler import browse

    categories = views.category_choices()

    def run(text: str, imported: int | None, predicted: int | None, decided: int | None, status: str,
            reviewer: str, lo: float, hi: float, sort: str, flags: list[str], page: float) -> tuple:
        try:
            result = browse.browse(ws, browse.BrowseQuery(
                text=text or "", imported=imported, predicted=predicted, decided=decided, status=status,
                reviewer=(reviewer or "").strip() or None, min_confidence=lo if lo > 0 else None,
                max_confidence=hi if hi < 1 else None, sort=sort, disagreement="disagreement" in (flags or []),
                suspect="suspect" in (flags or []), page=max(1, int(page or 1))))
        except browse.BrowseError as exc:
            raise messages.error(str(exc)) from None
        return browse.table_rows(result), browse.summary(result), result.page

    with gr.Tab("Browse", id="browse"):
        with gr.Row(equal_height=True):
            text = gr.Textbox(label="Search title, description or product id", max_lines=1, scale=3,
                              elem_id="browse-text")
            status = gr.Radio(list(browse.STATUSES), value="any", label="Decided", scale=2)
            sort = gr.Dropdown([("import order", "imported"), ("product id", "id"), ("title", "title"),
                                ("least sure first", "confidence"), ("surest first", "-confidence"),
                                ("latest decided first", "decided_at")], value="imported", label="Sort", scale=1)
        with gr.Row(equal_height=True):
            imported = gr.Dropdown(categories, value=None, label="Imported category", filterable=True)
            predicted = gr.Dropdown(categories, value=None, label="Predicted category", filterable=True)
            decided = gr.Dropdown(categories, value=None, label="Decided category", filterable=True)
            reviewer = gr.Textbox(label="Decided by (reviewer)", max_lines=1)
        with gr.Row(equal_height=True):
            lo = gr.Slider(0, 1, value=0, step=0.01, label="Confidence from")
            hi = gr.Slider(0, 1, value=1, step=0.01, label="Confidence to")
            flags = gr.CheckboxGroup([("text and image disagree", "disagreement"), ("suspect label", "suspect")],
                                     value=[], label="Only")
            page = gr.Number(value=1, label="Page", precision=0, minimum=1)
            go = gr.Button("Search", variant="primary", elem_id="browse-go")
        info = gr.Markdown(elem_id="browse-info")
        table = gr.Dataframe(headers=browse.TABLE_COLUMNS, interactive=False, wrap=True, elem_id="browse-table")
        with gr.Row(equal_height=True):
            product = gr.Textbox(label="Product id (or pick a row)", max_lines=1, scale=2, elem_id="browse-product")
            open_btn = gr.Button("Open", scale=0, min_width=100, elem_id="browse-open")
            who = gr.Textbox(label="Reviewer", max_lines=1, scale=1, elem_id="browse-reviewer")
            new_cat = gr.Dropdown(categories, value=None, label="Change its category to", filterable=True, scale=2,
                                  elem_id="browse-category")
            set_btn = gr.Button("Record this decision", scale=0, min_width=180, elem_id="browse-set")
        detail = _html(views.browse_detail_html(None), elem_id="browse-detail")

    def open_product(pid: str) -> str:
        try:
            return views.browse_detail_html(browse.product_detail(ws, pid))
        except browse.BrowseError as exc:
            raise messages.error(str(exc)) from None

    def pick_row(evt: gr.SelectData) -> tuple:
        row = evt.row_value or []
        pid = str(row[0]) if row else ""
        return pid, open_product(pid) if pid else views.browse_detail_html(None)

    def set_category(name: str, pid: str, category: int | None, request: gr.Request) -> str:
        reviewer = getattr(request, "username", None) or (name or "").strip()
        if category is None:
            raise messages.error("choose the category to record")
        try:
            browse.change_decision(ws, reviewer, (pid or "").strip(), int(category))
        except (review.ReviewError, browse.BrowseError) as exc:
            raise messages.error(str(exc)) from None
        return open_product(pid)

    open_btn.click(open_product, [product], [detail], api_name="browse_open", concurrency_id="browse")
    product.submit(open_product, [product], [detail], api_name="browse_open_id", concurrency_id="browse")
    table.select(pick_row, None, [product, detail], api_name="browse_pick", concurrency_id="browse")
    set_btn.click(set_category, [who, product, new_cat], [detail], api_name="browse_set", concurrency_id="browse")
    inputs = [text, imported, predicted, decided, status, reviewer, lo, hi, sort, flags, page]
    outputs = [table, info, page]
    events = {"concurrency_id": "browse", "concurrency_limit": 2}
    go.click(run, inputs, outputs, api_name="browse", **events)
    text.submit(run, inputs, outputs, api_name="browse_text", **events)
    for widget, name in ((imported, "imported"), (predicted, "predicted"), (decided, "decided"),
                         (status, "status"), (sort, "sort"), (flags, "flags")):
        widget.input(functools.partial(_first_page, run), inputs, outputs, api_name=f"browse_by_{name}",
                     api_visibility="undocumented", **events)


def grid_tab(ws: Workspace, settings: Settings) -> None:
    """The Grid tab (inside `gr.Tabs`): a page of one predicted category over `labeler.grid`."""
    from labeler import grid

    def who(name: str, request: gr.Request | None) -> str:
        user = getattr(request, "username", None) if request is not None else None
        return user or (name or "").strip()

    def show(page: Any, note: str) -> tuple:
        if page is None:
            return (views.grid_html(None, []), gr.update(choices=[], value=[]), note, None)
        tiles = [(i + 1, item, grid.thumbnail_uri(ws, item.image_path))
                 for i, item in enumerate(page.items)]
        marks = [(f"{n} · {item.title[:60]}", item.product_id) for n, item, _ in tiles]
        return views.grid_html(page, tiles), gr.update(choices=marks, value=[]), note, page

    def open_page(name: str, category: int | None, order: str, request: gr.Request) -> tuple:
        if category is None:
            raise messages.error("choose a category first")
        try:
            page = grid.open_page(ws, who(name, request), int(category), order=order, settings=settings)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return show(page, "" if page else "Nothing left to validate in this category.") + (None,)

    def accept(name: str, marked: list[str], page: Any, order: str,
               request: gr.Request) -> tuple:
        if page is None:
            raise messages.error("open a page first")
        try:
            res = grid.accept_page(ws, who(name, request), page, marked or [])
            nxt = grid.open_page(ws, who(name, request), page.category, order=order, settings=settings)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        note = [f"Accepted {len(res.accepted)}; {len(res.marked)} marked went back to the queue."]
        note += res.problems()
        return show(nxt, "  \n".join(note)) + (res.batch_id,)

    def undo(name: str, batch: str | None, page: Any, request: gr.Request) -> tuple:
        if not batch:
            raise messages.error("no accepted page to undo")
        try:
            out = grid.undo_page(ws, who(name, request), batch)
            again = grid.open_page(ws, who(name, request), page.category, settings=settings) if page else None
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return show(again, f"Undid {out.undone} decisions of the last page.") + (None,)

    with gr.Tab("Grid", id="grid"):
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Reviewer", max_lines=1, scale=1, elem_id="grid-reviewer")
            category = gr.Dropdown(views.category_choices(), value=None, label="Predicted category", scale=2,
                                   filterable=True, elem_id="grid-category")
            order = gr.Radio([("surest first", "surest"), ("least sure first", "least_sure")], value="surest",
                             label="Order", scale=1)
            open_btn = gr.Button("Open page", variant="primary", scale=0, min_width=120, elem_id="grid-open")
        tiles = _html(views.grid_html(None, []), elem_id="grid-page")
        marked = gr.CheckboxGroup([], label="Wrong ones (they go back to the one-at-a-time queue)",
                                  elem_id="grid-marked")
        with gr.Row():
            accept_btn = gr.Button("Accept the page except the marked", variant="primary", elem_id="grid-accept")
            undo_btn = gr.Button("Undo the last page", elem_id="grid-undo")
        note = gr.Markdown(elem_id="grid-note")
        page = gr.State(None)
        last = gr.State(None)
    outs = [tiles, marked, note, page, last]
    events = {"concurrency_id": "grid", "concurrency_limit": 4}
    open_btn.click(open_page, [name, category, order], outs, api_name="grid_open", **events)
    accept_btn.click(accept, [name, marked, page, order], outs, api_name="grid_accept", **events)
    undo_btn.click(undo, [name, last, page], outs, api_name="grid_undo", **events)


def _first_page(run: Any, *values: Any) -> tuple:
    """A filter changed: back to page 1 of the new result."""
    return run(*values[:-1], 1)


def serve(demo: gr.Blocks, *, access: Access | None = None, **launch_kwargs: Any):
    """`demo.launch` with the app's theme, CSS and keyboard shortcuts, the product-image route,
    and the logins.

    auth: a list of `labeler.auth.User` (an auth file), or Gradio's (name, password) pairs (taken
    as plain-text annotators); the login is checked by `labeler.auth.Authenticator`, throttled.
    access: who may change the model (default `Access.for_launch`: with auth, admins only;
    without, every right on a loopback host and a demo anywhere else)."""
    ui: ReviewUI = demo.review_ui
    users = _users(launch_kwargs.pop("auth", None))
    host = launch_kwargs.get("server_name") or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    ui.access = access or Access.for_launch(users, host=host, share=bool(launch_kwargs.get("share")))
    kwargs = {**launch_options(), **launch_kwargs, "app_kwargs": serving.app_kwargs(ui.ws)}
    if users:
        kwargs["auth"] = Authenticator(users).gradio_auth()
    return demo.launch(**kwargs)


def _users(auth: Any) -> list[User] | None:
    if not auth:
        return None
    if callable(auth):
        raise TypeError("serve() checks logins itself: pass the auth file's users, not a callable")
    pairs = [auth] if isinstance(auth, tuple) else list(auth)
    return [u if isinstance(u, User) else User(str(u[0]), "annotator", str(u[1]), plain=True) for u in pairs]
