"""The Adjudication tab (admins only): disputed products side by side with each reviewer's choice
and comment, kappa per reviewer pair, and the ruling form.

Layout and handlers only; the logic is labeler/adjudication.py. Every handler checks the login
on the server (`ReviewUI._admin`): an annotator sees one line saying why, and a call through the
API is refused the same way.
"""
from __future__ import annotations

import functools
import html
from typing import Any

import gradio as gr

from labeler import adjudication, messages, taxonomy, views
from labeler.auth import AccessDenied

ADMIN_ACTION = "Adjudicating disputes"


def _admin_or_error(ui: Any, request: gr.Request | None) -> str:
    return ui._admin(request, ADMIN_ACTION, None)


def disputes_html(ov: adjudication.Overview, tax: taxonomy.Taxonomy | None = None) -> str:
    """One row per disputed product: title, model, imported label, then each reviewer's choice;
    categories named in `tax` (the workspace's taxonomy; default Rakuten's)."""
    label = functools.partial(views.category_label, tax=tax or taxonomy.default())
    if not ov.disputes:
        more = f" ({ov.n_ruled} already ruled)" if ov.n_ruled else ""
        return f'<div class="muted" id="adj-empty">No open disputes{more}.</div>'
    rows = []
    for d in ov.disputes:
        votes = "".join(
            f'<li><b>{html.escape(v.reviewer)}</b>: {html.escape(label(v.category))}'
            + (f' <span class="muted">“{html.escape(v.comment)}”</span>' if v.comment else "") + "</li>"
            for v in d.votes)
        model = (f"{html.escape(label(d.model_top1))} {d.model_prob:.0%}"
                 if d.model_top1 is not None else "not scored")
        imported = html.escape(label(d.imported)) if d.imported is not None else "—"
        ruling = (f'<div class="adj-ruled">ruled by {html.escape(d.ruling.reviewer)}: '
                  f'{html.escape(label(d.ruling.category))}</div>' if d.ruling else "")
        rows.append(f'<tr data-product="{html.escape(d.product_id)}"><td><code>{html.escape(d.product_id)}</code></td>'
                    f'<td>{html.escape(d.title[:120])}</td><td>{model}</td><td>{imported}</td>'
                    f'<td><ul class="adj-votes">{votes}</ul>{ruling}</td></tr>')
    return ('<table class="adj-table" id="adj-table"><thead><tr><th>product</th><th>title</th><th>model top-1</th>'
            '<th>imported</th><th>reviewers</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def pairs_rows(ov: adjudication.Overview) -> list[list]:
    return [[p.a, p.b, p.n, f"{p.agreement:.0%}", adjudication.kappa_text(p)] for p in ov.pairs]


def load(ui: Any, include_ruled: bool, request: gr.Request | None = None) -> tuple:
    _admin_or_error(ui, request)
    ov = adjudication.overview(ui.ws, include_ruled=bool(include_ruled))
    choices = [(f"{d.product_id} · {d.title[:50]}", d.product_id) for d in ov.disputes]
    return disputes_html(ov, taxonomy.of(ui.ws)), pairs_rows(ov), gr.update(choices=choices, value=None)


def rule(ui: Any, product: str | None, category: int | None, comment: str, include_ruled: bool,
         request: gr.Request | None = None) -> tuple:
    who = _admin_or_error(ui, request)
    if not product:
        raise messages.error("pick the disputed product to rule on")
    if category is None:
        raise messages.error("choose the final category")
    try:
        row = adjudication.rule(ui.ws, who, product, category, comment=comment or "")
    except adjudication.AdjudicationError as exc:
        raise messages.error(str(exc)) from None
    tax = taxonomy.of(ui.ws)
    note = html.escape(f"{row['product_id']}: ruled {tax.name(row['category'])} ({tax.code(row['category'])}) by "
                       f"{row['reviewer']}; final for the label.")   # catalog ids and names are a stranger's
    return (*load(ui, include_ruled, request), note)


def is_admin(ui: Any, request: gr.Request | None) -> bool:
    """Whether this login may adjudicate (the same check every handler makes)."""
    try:
        ui.access.require_admin(getattr(request, "username", None) if request is not None else None, ADMIN_ACTION)
    except AccessDenied:
        return False
    return True


def adjudication_tab(ui: Any, demo: gr.Blocks) -> None:
    """The tab (inside `gr.Tabs` of `demo`); `ui` is the app's ReviewUI (workspace, admin check).
    Hidden until the page load finds an admin login; the handlers check again on every call."""
    with gr.Tab("Adjudication", id="adjudication", visible=False) as tab:
        gr.Markdown("Products whose reviewers chose different categories. An admin's ruling is final: the "
                    "label rule takes it over every reviewer's vote (undo it from the decisions if needed).")
        with gr.Row():
            include_ruled = gr.Checkbox(False, label="Also show ruled disputes", elem_id="adj-all")
            refresh = gr.Button("Refresh", size="sm", scale=0, min_width=100, elem_id="adj-refresh")
        table = gr.HTML(disputes_html(adjudication.Overview()), elem_id="adj-disputes", js_on_load=None)
        tax = taxonomy.of(ui.ws)            # the workspace's own categories, as the Review tab lists them
        with gr.Row(equal_height=True):
            product = gr.Dropdown([], value=None, label="Product", scale=2, elem_id="adj-product",
                                  allow_custom_value=True)   # typed ids too; the handler checks them
            category = gr.Dropdown(views.category_choices(tax=tax), value=None, label="Final category", scale=2,
                                   filterable=True, elem_id="adj-category")
            comment = gr.Textbox(label="Why (saved with the ruling)", max_lines=1, scale=2, elem_id="adj-comment")
            rule_btn = gr.Button("Rule", variant="primary", scale=0, min_width=100, elem_id="adj-rule")
        note = gr.HTML(elem_id="adj-note", js_on_load=None)   # escaped text, never Markdown
        pairs = gr.Dataframe(headers=["reviewer", "reviewer", "shared products", "agreement", "Cohen's kappa"],
                             interactive=False, label="Agreement per reviewer pair", elem_id="adj-kappa")
    outs = [table, pairs, product]
    events = {"concurrency_id": "adjudication", "concurrency_limit": 1}

    def _load(include: bool, request: gr.Request) -> tuple:
        return load(ui, include, request)

    def _rule(p: str | None, c: int | None, why: str, include: bool, request: gr.Request) -> tuple:
        return rule(ui, p, c, why, include, request)

    def _show(request: gr.Request) -> Any:
        return gr.update(visible=is_admin(ui, request))

    demo.load(_show, None, [tab], api_name="adjudication_visible", queue=False)
    for trigger, name in ((tab.select, "adjudication"), (refresh.click, "adjudication_refresh"),
                          (include_ruled.input, "adjudication_all")):
        trigger(_load, [include_ruled], outs, api_name=name, **events)
    rule_btn.click(_rule, [product, category, comment, include_ruled], outs + [note], api_name="adjudicate",
                   **events)
