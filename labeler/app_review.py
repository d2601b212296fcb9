"""The Review tab's handlers: a card, its decisions, undo, its heatmaps and text explanation.

A mixin of `labeler.app.ReviewUI` (which holds `ws`, `settings`, the heatmap `prefetch` cache
and the `highlights` cache): each handler turns widget values into one call of the review API
(`labeler.review`) and the result into HTML from `labeler.views`. Per-tab state is a `Session`.
The layout that wires them is `labeler.app.build_app`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import gradio as gr

from labeler import messages, review, strategies, taxonomy, views
from labeler.background import in_foreground
from labeler.card_pack import token_of
from labeler.prefetch import Heatmaps
from store.workspace import WorkspaceError

DEFAULT_STRATEGY = "least_confidence"
PREFETCH_AHEAD = 1     # heatmaps take seconds per product on a CPU: keep one ready, no backlog
PRELOAD_IMAGES = 2     # the next cards' images: the browser fetches them while the reviewer looks
HEAT_WAIT_S = 180.0    # a card's overlays are awaited this long while it stays on screen
HIGHLIGHT_WAIT_S = 0.3  # the card's text explanation (usually computed ahead) is awaited at most this long
HISTORY_ROWS = 5
# What `render` returns, in order: session, current, status line + card, top5, votes + last
# decisions, heatmaps, heatmap token (triggers the follow-up), category search (reset), comment
# (reset). Few outputs on purpose: each extra gr.HTML output cost the browser ~15 ms per update
# (Gradio 6, measured on an empty-event app), so what sits together is sent together.
N_CARD_OUTPUTS = 9


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


def _pretty(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _describe(strategy: str) -> str:
    found = strategies.STRATEGIES.get(strategy)
    return found.description if found else ""


class ReviewHandlers:
    """The Review tab's event handlers (mixed into `labeler.app.ReviewUI`, which holds `busy`).

    The handlers a reviewer waits on for the next card run `in_foreground`: background work (the
    heatmaps, the warm-up) steps aside while they run. The heatmap follow-ups do not: they wait
    for that background work themselves."""

    # -- rendering ------------------------------------------------------------------------------
    def render(self, s: Session, *, clear_choice: bool = False, clear_comment: bool = False) -> tuple:
        """Everything a card shows (N_CARD_OUTPUTS values; `labeler.card_pack.pack` folds them
        into the three outputs the events declare).

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
        body = views.card_html(card, image_uri, threshold=threshold, preload=upcoming, highlights=words,
                               tax=taxonomy.of(self.ws))
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
        return views.history_html(review.recent_decisions(self.ws, s.reviewer, limit=HISTORY_ROWS), taxonomy.of(self.ws))

    def _heat_html(self, heat: Heatmaps | None, category: int | None, s: Session) -> str:
        """The overlays (or why there are none), with the top-5 as chips to switch category."""
        pred = s.card.prediction if s.card is not None else None
        chips = [(v.code, v.name) for v in pred.top5] if pred is not None else []   # they switch the words too
        tax = taxonomy.of(self.ws)
        if heat is None:
            return views.heatmaps_html((), category=category, note="Computing heatmaps…", choices=chips, tax=tax)
        return views.heatmaps_html(heat.items, category=heat.category, note=heat.note, choices=chips, tax=tax)

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
    @in_foreground
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
        s.category = taxonomy.of(self.ws).parse(prefs.get("category"))
        if s.strategy == "category" and s.category is None:
            s.strategy = DEFAULT_STRATEGY
        if reviewer:
            prefs["reviewer"] = reviewer
        out = self._next(s)
        name_box = gr.update(value=reviewer, interactive=user is None) if reviewer else gr.skip()
        return out + (name_box, gr.update(value=s.strategy, info=_describe(s.strategy)),
                      gr.update(value=s.category, visible=s.strategy == "category"), prefs)

    @in_foreground
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

    @in_foreground
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
        s.last = views.describe_decision(row, card.product.get("title"), taxonomy.of(self.ws))
        return self._next(s, clear_choice=chosen, clear_comment=bool(comment))

    @in_foreground
    def accept(self, current: dict | None, comment: str, s: Session) -> tuple:
        """Enter: the fused top-1 the reviewer was shown."""
        pred = s.card.prediction if s.card is not None else None
        if s.card is not None and pred is None:
            messages.warning("No model prediction to accept: choose the category with / or skip with S.")
            return self._same(N_CARD_OUTPUTS)
        return self._decide(s, current, "accept", pred.top1 if pred else None, comment)

    @in_foreground
    def pick(self, rank: int, current: dict | None, comment: str, s: Session) -> tuple:
        """Keys 1-5: the rank-th category of the fused top-5 (1 = accept)."""
        pred = s.card.prediction if s.card is not None else None
        if pred is None or not 1 <= rank <= len(pred.top5):
            if s.card is not None:
                messages.warning(f"There is no #{rank} in this product's top-5: choose with / instead.")
            return self._same(N_CARD_OUTPUTS)
        code = pred.top5[rank - 1].code
        return self._decide(s, current, "accept" if rank == 1 else "correct", code, comment)

    @in_foreground
    def choose(self, category: int | None, current: dict | None, comment: str, s: Session) -> tuple:
        """The searchable list of all 27 categories."""
        if category is None:
            return self._same(N_CARD_OUTPUTS)
        pred = s.card.prediction if s.card is not None else None
        action = "accept" if pred is not None and int(category) == pred.top1 else "correct"
        return self._decide(s, current, action, int(category), comment, chosen=True)

    @in_foreground
    def skip(self, current: dict | None, comment: str, s: Session) -> tuple:
        return self._decide(s, current, "skip", None, comment)

    @in_foreground
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
        s.last = "undid: " + views.describe_decision(undone, (self.ws.product(undone["product_id"]) or {}).get("title"),
                                                     taxonomy.of(self.ws))
        return self._next(s)

    # -- heatmaps --------------------------------------------------------------------------------
    def heatmaps_for(self, category: str | int | None, s: Session):
        """The overlays for another category of the top-5 (the chips above the heatmaps)."""
        card = s.card
        key = taxonomy.of(self.ws).parse(category)
        if card is None or card.prediction is None or key is None:
            yield gr.skip()
            return
        s.heat_category, s.heat_shown = key, False
        yield self._heat_html(None, s.heat_category, s)
        yield self._await_heat(s)

    def heatmaps_pending(self, token: str, s: Session):
        """Runs when a card was shown before its overlays (or its text explanation) were ready:
        fills them in. The words ride in the heatmap output, keyed by the card, and the page's
        script moves them into the card only if that card is still on screen."""
        card = s.card
        if card is None or card.prediction is None or token_of(token) != f"{card.key}:{s.heat_category}":
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
