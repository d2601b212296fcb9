"""The Grid tab: a page of one predicted category, accepted at once but the products marked wrong,
each of which then opens the usual card to choose its category (or goes back to the
one-at-a-time queue); undo the last page. Layout (`grid_tab`) and handlers over `labeler.grid`.

Keys (labeler/static/grid.js): Enter in the reviewer's name opens the first page; a click or the
arrows and Space mark a tile, Enter accepts the page; on a marked product's card 1-9 choose among
the model's nine likeliest categories other than the page's (just said wrong), the letters a-z
(no q) the others, listed by name, / searches every category, Q sends it back to the queue. When
a category has nothing left, the next one with most undecided products opens (Open with no
category chosen starts there).
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from typing import Any

import gradio as gr

from labeler import cards, grid, messages, review, taxonomy, views
from labeler.config import Settings
from store.workspace import Workspace


@dataclass(frozen=True)
class GridState:
    """One browser session on the Grid tab (a gr.State)."""
    page: grid.GridPage | None = None
    order: str = "surest"
    last_batch: str | None = None                   # the last page accepted (Undo takes it back)
    fixing: tuple[str, ...] = ()                    # marked products still to fix, the shown one first
    card: review.Card | None = None                 # the marked product's card on screen
    skipped: frozenset[str] = field(default_factory=frozenset)   # marked this session: never re-offered
    category: int | None = None                     # the category being worked through


def fix_html(card: review.Card, category: int, left: int, threshold: float, tax: taxonomy.Taxonomy) -> str:
    """A marked product's card (the Review tab's own card and top-5) under the grid's head."""
    pred = card.prediction
    nine = len(pred.top5) if pred else cards.FIX_CHOICES
    others = len(pred.others) if pred else 0
    letters = f" and {cards.FIX_LETTERS[0]}-{cards.FIX_LETTERS[others - 1]}" if others else ""
    head = (f'<div class="grid-head grid-fix-head"><span class="grid-cat">Marked wrong: not '
            f'{html.escape(views.category_label(category, tax))}</span> <span class="grid-count">'
            f'{left} marked product{"s" if left != 1 else ""} to fix · 1-{nine}{letters} '
            f'choose its category, / searches every category, Q sends it back to the queue</span></div>')
    more = pred is not None and 1 + nine + others < len(tax)
    return (head + '<div class="grid-fix">'
            + views.card_html(card, views.image_src(card.product), threshold=threshold, tax=tax)
            + '<div class="fix-lists">'
            + views.top5_html(pred, threshold=threshold, title="Likeliest other categories")
            + views.others_html(pred, cards.FIX_LETTERS, more=more)
            + "</div></div>")


class GridHandlers:
    """The handlers over one workspace and its settings."""

    N_OUTPUTS = 6          # tiles, marked, note, fix row, fix category, state

    def __init__(self, ws: Workspace, settings: Settings, *, size: int = grid.DEFAULT_SIZE):
        self.ws = ws
        self.settings = settings
        self.size = size                    # products a page

    @staticmethod
    def who(name: str, request: gr.Request | None) -> str:
        user = getattr(request, "username", None) if request is not None else None
        return user or (name or "").strip()

    # -- what the tab shows ------------------------------------------------------------------
    def show(self, st: GridState, lines: list[str]) -> tuple:
        # the note names reviewers and categories that anyone could have typed: escaped HTML
        note = "<br>".join(messages.safe(line) for line in lines)
        tax = taxonomy.of(self.ws)
        if st.card is not None:
            body = fix_html(st.card, st.category, len(st.fixing), self.settings.auto_accept_threshold, tax)
            return (body, gr.update(choices=[], value=[]), note, gr.update(visible=True),
                    gr.update(value=None), st)
        hide = gr.update(visible=False)
        if st.page is None:
            return views.grid_html(None, []), gr.update(choices=[], value=[]), note, hide, gr.skip(), st
        uris = grid.thumbnail_uris(self.ws, [item.image_path for item in st.page.items])
        tiles = [(i + 1, item, uri) for i, (item, uri) in enumerate(zip(st.page.items, uris))]
        marks = [(f"{n} · {item.title[:60]}", item.product_id) for n, item, _ in tiles]
        return (views.grid_html(st.page, tiles, tax), gr.update(choices=marks, value=[]), note, hide, gr.skip(), st)

    def _open(self, reviewer: str, st: GridState, category: int | None, note: list[str]) -> GridState:
        """The next page: of `category`, else (nothing left there) of the next category with
        undecided products; the session's marked products never come again."""
        tried: list[int] = []
        candidates = ([category] if category is not None else []) + grid.next_categories(self.ws, after=category)
        for cat in candidates:
            if cat in tried:
                continue
            tried.append(cat)
            page = grid.open_page(self.ws, reviewer, cat, size=self.size, order=st.order, settings=self.settings,
                                  exclude=st.skipped)
            if page is not None:
                if category is not None and cat != category:
                    note.append(f"Nothing left in {taxonomy.of(self.ws).label(category)}; "
                                f"next: {taxonomy.of(self.ws).label(cat)}.")
                return replace(st, page=page, category=cat, card=None, fixing=())
        note.append("Nothing left to validate on the grid." if category is None else
                    f"Nothing left to validate in {taxonomy.of(self.ws).label(category)} or any other category.")
        return replace(st, page=None, card=None, fixing=())

    def _next_fix(self, reviewer: str, st: GridState, note: list[str]) -> GridState:
        """The next marked product's card, or (none left) the next page."""
        fixing = st.fixing
        while fixing:
            try:
                card = grid.fix_card(self.ws, reviewer, fixing[0], remaining=len(fixing), settings=self.settings,
                                     category=st.category)
                return replace(st, fixing=fixing, card=card)
            except review.HeldByAnother as exc:
                note.append(f"A marked product is with another reviewer ({exc.holder}) now; left to them.")
                fixing = fixing[1:]
        return self._open(reviewer, replace(st, fixing=(), card=None), st.category, note)

    # -- events ----------------------------------------------------------------------------------
    def start(self, name: str, category: int | None, order: str, st: GridState | None,
              request: gr.Request) -> tuple:
        """The reviewer's name entered (Enter in its field): the first page opens, as the Review
        tab's first card does; nothing changes while a page or a marked card is on screen."""
        st = st or GridState()
        if st.page is not None or st.card is not None or not self.who(name, request):
            return tuple(gr.skip() for _ in range(self.N_OUTPUTS))
        return self.open_page(name, category, order, st, request)

    def open_page(self, name: str, category: int | None, order: str, st: GridState | None,
                  request: gr.Request) -> tuple:
        st = st or GridState()
        reviewer = self.who(name, request)
        try:
            if st.fixing:                                 # leaving the marked ones: back to the queue
                grid.send_to_queue(self.ws, reviewer, list(st.fixing))
            note: list[str] = []
            st = self._open(review.check_reviewer(reviewer), replace(st, order=order or "surest", fixing=(), card=None),
                            None if category is None else int(category), note)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return self.show(st, note)

    def accept(self, name: str, marked: list[str], st: GridState | None, request: gr.Request) -> tuple:
        st = st or GridState()
        if st.page is None or st.card is not None:
            raise messages.error("open a page first" if st.page is None else
                                 "choose the marked product's category first (1-9, a letter, /), or Q for the queue")
        reviewer = self.who(name, request)
        try:
            res = grid.accept_page(self.ws, reviewer, st.page, marked or [], hold_marked=True,
                                   settings=self.settings)
            note = [f"Accepted {len(res.accepted)}; {len(res.marked)} marked"
                    + (": choose their category." if res.held else ".")]
            note += res.problems()
            st = replace(st, last_batch=res.batch_id or st.last_batch, skipped=st.skipped | set(res.marked),
                         fixing=tuple(res.held), page=None)
            st = self._next_fix(reviewer, st, note)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return self.show(st, note)

    def pick(self, rank: int, name: str, st: GridState | None, request: gr.Request) -> tuple:
        st = st or GridState()
        pred = st.card.prediction if st.card is not None else None
        choices = (pred.top5 + pred.others) if pred is not None else ()
        if not 1 <= rank <= len(choices):
            raise messages.error("no marked product's card with that many categories: choose with / instead")
        return self._decide(name, st, choices[rank - 1].code, request)

    def choose(self, name: str, category: int | None, st: GridState | None, request: gr.Request) -> tuple:
        st = st or GridState()
        if category is None:
            return tuple(gr.skip() for _ in range(self.N_OUTPUTS))
        return self._decide(name, st, category, request)

    def _decide(self, name: str, st: GridState, category: Any, request: gr.Request) -> tuple:
        if st.card is None:
            raise messages.error("no marked product on screen")
        reviewer = self.who(name, request)
        try:
            try:
                row = grid.fix(self.ws, reviewer, st.card, category)
                tax = taxonomy.of(self.ws)    # no product text in the note: it is Markdown, the catalog a stranger's
                note = [f"{'Accepted' if row['action'] == 'accept' else 'Corrected to'} {tax.label(row['category'])}."]
            except review.HeldByAnother as exc:       # its reservation ran out and someone took it: move on
                note = [f"Left alone: another reviewer ({exc.holder}) has it now."]
            st = self._next_fix(reviewer, replace(st, fixing=st.fixing[1:], card=None), note)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return self.show(st, note)

    def to_queue(self, name: str, st: GridState | None, request: gr.Request) -> tuple:
        st = st or GridState()
        if st.card is None:
            raise messages.error("no marked product on screen")
        reviewer = self.who(name, request)
        try:
            grid.send_to_queue(self.ws, reviewer, [st.card.product_id])
            note = ["The marked product went back to the one-at-a-time queue."]
            st = self._next_fix(reviewer, replace(st, fixing=st.fixing[1:], card=None), note)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return self.show(st, note)

    def undo(self, name: str, st: GridState | None, request: gr.Request) -> tuple:
        st = st or GridState()
        if not st.last_batch:
            raise messages.error("no accepted page to undo")
        reviewer = self.who(name, request)
        try:
            if st.fixing:
                grid.send_to_queue(self.ws, reviewer, list(st.fixing))
            out = grid.undo_page(self.ws, reviewer, st.last_batch)
            note = [f"Undid {out.undone} decisions of the last page."]
            st = self._open(reviewer, replace(st, last_batch=None, fixing=(), card=None), st.category, note)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return self.show(st, note)


def grid_tab(ws: Workspace, settings: Settings) -> None:
    """The Grid tab (inside `gr.Tabs`): a page of one predicted category over `labeler.grid`."""
    h = GridHandlers(ws, settings)
    categories = views.category_choices(tax=taxonomy.of(ws))

    with gr.Tab("Grid", id="grid"):
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Reviewer", max_lines=1, scale=1, elem_id="grid-reviewer")
            category = gr.Dropdown(categories, value=None, scale=2, filterable=True, elem_id="grid-category",
                                   label="Predicted category (none: the one with most undecided products)")
            order = gr.Radio([("surest first", "surest"), ("least sure first", "least_sure")], value="surest",
                             label="Order", scale=1)
            open_btn = gr.Button("Open page", variant="primary", scale=0, min_width=120, elem_id="grid-open")
        tiles = gr.HTML(views.grid_html(None, []), js_on_load=None, elem_id="grid-page")
        with gr.Row(visible=False, equal_height=True) as fix_row:
            fix_category = gr.Dropdown(categories, value=None, label="Another category (press / to search)",
                                       filterable=True, scale=3, elem_id="grid-fix-category")
            queue_btn = gr.Button("Back to the queue (Q)", scale=1, elem_id="grid-fix-queue")
        pick_btns = [gr.Button(f"pick {r}", visible="hidden", elem_id=f"grid-pick-{r}")
                     for r in range(1, cards.FIX_CHOICES + len(cards.FIX_LETTERS) + 1)]
        marked = gr.CheckboxGroup([], label="Wrong ones (each then opens its card; Q there sends it to the queue)",
                                  elem_id="grid-marked")
        with gr.Row():
            accept_btn = gr.Button("Accept the page except the marked", variant="primary", elem_id="grid-accept")
            undo_btn = gr.Button("Undo the last page", elem_id="grid-undo")
        note = gr.HTML(elem_id="grid-note")
        state = gr.State(GridState())
    outs = [tiles, marked, note, fix_row, fix_category, state]
    events = {"concurrency_id": "grid", "concurrency_limit": 4, "show_progress": "hidden"}
    open_btn.click(h.open_page, [name, category, order, state], outs, api_name="grid_open", **events)
    name.submit(h.start, [name, category, order, state], outs, api_name="grid_start", **events)
    accept_btn.click(h.accept, [name, marked, state], outs, api_name="grid_accept", **events)
    undo_btn.click(h.undo, [name, state], outs, api_name="grid_undo", **events)
    queue_btn.click(h.to_queue, [name, state], outs, api_name="grid_to_queue", **events)
    fix_category.input(h.choose, [name, fix_category, state], outs, api_name="grid_choose", **events)
    for rank, btn in enumerate(pick_btns, start=1):
        btn.click(_picker(h, rank), [name, state], outs, api_name=f"grid_pick_{rank}", **events)


def _picker(h: GridHandlers, rank: int):
    def pick(name: str, st: GridState | None, request: gr.Request) -> tuple:
        return h.pick(rank, name, st, request)
    return pick
