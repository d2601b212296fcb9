"""The Gradio review app's layout and wiring: widgets, tabs and which handler each event calls.

`build_app(ws, settings)` returns the Blocks; `launch_options()` holds what Gradio 6 takes at
launch (theme, CSS, the keyboard-shortcut script), and `serve()` launches with both, plus the
product-image route (`labeler.serving`) and the throttled logins and roles (`labeler.auth`).
No handler logic here: `ReviewUI` gathers one mixin per tab, each in its own module:
`app_review` (cards, decisions, undo, heatmaps), `app_warm` (warm-up threads), `app_stats` (the
stats and the confusion plot), `app_tryit`, `app_models` (retrain, versions; model-changing
handlers check the caller's role themselves); Browse and Grid have `app_browse` and `app_grid`.
The workflow itself (queue, reservation, decision, undo) lives in `labeler.review`. Per-user
state is a `Session` in `gr.State`; the only shared objects are the workspace and the caches.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from labeler import serving, strategies, taxonomy, views
from labeler.app_adjudication import adjudication_tab
from labeler.app_browse import BrowseHandlers, first_page
from labeler.app_grid import grid_tab   # the Grid tab's layout and handlers live there
from labeler.app_guides import guide_panel
from labeler.app_models import RETRAIN_POLL_S, ModelHandlers, _login  # noqa: F401
from labeler.app_review import (DEFAULT_STRATEGY, HEAT_WAIT_S, HIGHLIGHT_WAIT_S, HISTORY_ROWS,  # noqa: F401
                                N_CARD_OUTPUTS, PREFETCH_AHEAD, PRELOAD_IMAGES, ReviewHandlers, Session,
                                _describe, _pretty)
from labeler.app_stats import StatsHandlers, confusion_figure  # noqa: F401
from labeler.app_tryit import TryItHandlers
from labeler.app_warm import LIVE_POLL_S, WarmUp  # noqa: F401
from labeler.auth import Access, User, Authenticator
from labeler.background import Foreground
from labeler.card_pack import packed, tagged
from labeler.config import Settings
from labeler.prefetch import Prefetcher, default_explainer
from labeler.text_highlights import HighlightCache
from store.workspace import Workspace

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD = "20mb"    # try-it uploads: a product photo is well under; Gradio answers 413 above
SLOT_HTML = '<div class="slot" data-slot-target="{}"></div>'   # a column part cardpack.js fills
SWITCH_INTERVAL_S = 0.001   # the server process's GIL switch interval (see serve)
UPLOAD_SWEEP = (600, 3600)   # Blocks(delete_cache=): every 10 min, uploads older than an hour go


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
                            for name in ("tabs.js", "cardpack.js", "shortcuts.js", "grid.js")),
            "run_history": False, "max_file_size": MAX_UPLOAD}


class ReviewUI(ReviewHandlers, WarmUp, StatsHandlers, TryItHandlers, ModelHandlers):
    """The event handlers, one tab per mixin (labeler/app_*.py); `ws`, `settings` and the
    prefetch cache are shared, `Session` is per tab."""

    def __init__(self, ws: Workspace, settings: Settings, prefetcher: Prefetcher,
                 highlights: HighlightCache | None = None, busy: Foreground | None = None):
        from labeler.training import live_bundle
        self.ws = ws
        self.busy = busy or Foreground()     # review requests in flight: background steps wait
        self.settings = settings
        self.prefetch = prefetcher
        self.highlights = highlights or HighlightCache(lambda version: live_bundle(ws, version),
                                                       taxonomy=lambda: taxonomy.of(ws))
        self.access = Access()       # every right (a local run); `serve` sets the launch's own
        self.warming: threading.Thread | None = None     # the latest queue warm-up
        self.warmed: str | None = None                     # ...and the version it was for


# -- layout and wiring ----------------------------------------------------------------------------
# The page load's inputs (name, prefs, tab token, session) with this tab's token (static/tabs.js):
# kept in sessionStorage, it survives a reload (the tab resumes its product) and differs between
# tabs, a duplicated tab included (it asks the live tabs whether its copied token is taken).
TAB_TOKEN_JS = """async (name, prefs, tab, session) => {
  let t = "";
  try { t = window.labelerTab ? await window.labelerTab() : (sessionStorage.getItem("labeler-tab") || ""); } catch (e) {}
  return [name, prefs, t, session];
}"""


def build_app(ws: Workspace, settings: Settings = Settings(), *, prefetcher: Prefetcher | None = None) -> gr.Blocks:
    """The review app over one workspace. Launch it with `serve()`: it adds the product-image
    route and the login checks."""
    from labeler.training import live_bundle
    busy = Foreground()     # the heatmap worker loads models and explains products between review requests
    prefetcher = prefetcher or Prefetcher(busy.gated(lambda version: live_bundle(ws, version)),
                                          explain=busy.gated(default_explainer()))
    ui = ReviewUI(ws, settings, prefetcher, busy=busy)
    ui.warm(ws.live_version())
    ui.watch_live()
    # product images go to the browser by URL on the app's own route by product id (`serve` adds
    # it; labeler.serving), never a folder on Gradio's file route
    secret = hashlib.sha256(f"labeler:{ws.root.resolve()}".encode()).hexdigest()[:24]
    strategy_choices = [(_pretty(n), n) for n in strategies.STRATEGIES]
    categories = views.category_choices(tax=taxonomy.of(ws))

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
                        # the heatmaps shown (filled by static/cardpack.js from the card or from the
                        # follow-ups' hidden carrier: labeler/card_pack.py)
                        _html(SLOT_HTML.format("heat"), elem_id="heatmaps")
                        heat = _html(elem_id="heat-carrier", elem_classes=["carrier"])
                        heat_token = gr.Textbox(visible="hidden", elem_id="heat-token")
                        heat_request = gr.Textbox(visible="hidden", elem_id="heat-request")
                        heat_btn = gr.Button("heatmaps", visible="hidden", elem_id="btn-heat")
                    with gr.Column(scale=4, min_width=380):
                        _html(SLOT_HTML.format("top5"), elem_id="top5")   # filled by cardpack.js
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
                        _html(SLOT_HTML.format("side"), elem_id="review-side")
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
            adjudication_tab(ui, demo)       # admins only (labeler/app_adjudication.py)
        guide_panel(ws, demo)                # key G: the category's guide (labeler/app_guides.py)

        # three declared outputs per decision, not nine (labeler/card_pack.py: what that saves)
        outs = [session, current, card]
        review_events = {"concurrency_id": "review", "concurrency_limit": 4, "show_progress": "hidden"}
        heat_events = {"concurrency_limit": None, "show_progress": "hidden"}

        demo.load(packed(ui.start), [reviewer, prefs, tab_token, session], outs + [reviewer, strategy, queue_category, prefs],
                  api_name="start", js=TAB_TOKEN_JS, **review_events)
        reviewer.submit(packed(ui.set_reviewer), [reviewer, session], outs + [prefs], api_name="set_reviewer", **review_events)
        for trigger, name in ((strategy.input, "set_queue"), (queue_category.input, "set_queue_category")):
            trigger(packed(ui.set_queue), [strategy, queue_category, session], outs + [strategy, queue_category, prefs],
                    api_name=name, **review_events)
        accept_btn.click(packed(ui.accept), [current, comment, session], outs, api_name="accept", **review_events)
        for rank, btn in enumerate(pick_btns, start=1):
            btn.click(packed(functools.partial(ui.pick, rank)), [current, comment, session], outs, api_name=f"pick_{rank}",
                      **review_events)
        choose.input(packed(ui.choose, keep_choice=True), [choose, current, comment, session], outs + [choose], api_name="choose", **review_events)
        skip_btn.click(packed(ui.skip), [current, comment, session], outs, api_name="skip", **review_events)
        undo_btn.click(packed(ui.undo), [session], outs, api_name="undo", **review_events)
        heat_token.change(tagged(ui.heatmaps_pending, 1), [heat_token, session], [heat], api_name="heatmaps_pending",
                          **heat_events)
        heat_btn.click(tagged(ui.heatmaps_for, 1), [heat_request, session], [heat], api_name="heatmaps", **heat_events)

        stats_outs = [stat_cards, rates, per_cat, confusion, metrics]
        refresh.click(ui.stats, None, stats_outs, api_name="stats", concurrency_limit=1)
        stats_tab.select(ui.stats, None, stats_outs, api_name="stats_on_open", concurrency_limit=1)
        # preprocess=False: the handler gets the upload as sent and checks it with the model's rules
        # (Gradio's Image would open it with PIL first: a non-image failed there with a traceback)
        try_btn.click(ui.try_it, [try_image, try_title, try_desc], [try_top5, try_votes, try_heat, try_words],
                      api_name="try_it", concurrency_limit=1, preprocess=False)
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

    categories = views.category_choices(tax=taxonomy.of(ws))
    h = BrowseHandlers(ws)

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
            in_set = gr.Dropdown(categories, value=None, label="In the prediction set", filterable=True,
                                 elem_id="browse-in-set")
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

    open_btn.click(h.open_product, [product], [detail], api_name="browse_open", concurrency_id="browse")
    product.submit(h.open_product, [product], [detail], api_name="browse_open_id", concurrency_id="browse")
    table.select(h.pick_row, None, [product, detail], api_name="browse_pick", concurrency_id="browse")
    set_btn.click(h.set_category, [who, product, new_cat], [detail], api_name="browse_set", concurrency_id="browse")
    inputs = [text, imported, predicted, decided, status, reviewer, lo, hi, sort, flags, in_set, page]
    outputs = [table, info, page]
    events = {"concurrency_id": "browse", "concurrency_limit": 2}
    go.click(h.run, inputs, outputs, api_name="browse", **events)
    text.submit(h.run, inputs, outputs, api_name="browse_text", **events)
    for widget, name in ((imported, "imported"), (predicted, "predicted"), (decided, "decided"),
                         (status, "status"), (sort, "sort"), (flags, "flags"), (in_set, "in_set")):
        widget.input(functools.partial(first_page, h.run), inputs, outputs, api_name=f"browse_by_{name}",
                     api_visibility="undocumented", **events)


def serve(demo: gr.Blocks, *, access: Access | None = None, **launch_kwargs: Any):
    """`demo.launch` with the app's theme, CSS and keyboard shortcuts, the product-image route,
    and the logins.

    auth: a list of `labeler.auth.User` (an auth file), or Gradio's (name, password) pairs (taken
    as plain-text annotators); the login is checked by `labeler.auth.Authenticator`, throttled.
    access: who may change the model (default `Access.for_launch`: with auth, admins only;
    without, every right on a loopback host and a demo anywhere else)."""
    ui: ReviewUI = demo.review_ui
    # Heatmaps, text explanations and look-ahead run in background threads while a reviewer's
    # request waits: with CPython's default 5 ms switch interval, each of the request's ~40 SQLite
    # calls (they release the GIL) may wait that long to get it back. 1 ms bounds the wait
    # (bench_app, same template: browser Enter -> card p50 / p95 129 / 187 -> 124 / 164 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
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
