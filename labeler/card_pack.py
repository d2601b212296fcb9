"""One browser output for a whole review card.

The review handlers (`labeler.app_review`) return a card as nine values: session, current, card,
top-5, side panel, heatmaps, heatmap token, category search, comment. Declared as nine Gradio
outputs, each decision made the browser snapshot every one of them on every change of the event's
loading status (Svelte's `$state.snapshot` and `structuredClone` in Gradio's `update_state`, even
with the progress hidden): about 22 ms of the ~125 ms between Enter and the next card
(bench_app --first-minute, issue 15). So the events declare three outputs (session, current and
one HTML) and `pack` folds the top-5, the side panel and the heatmaps into that HTML as
`<script type="text/html" data-slot=...>` parts (raw text, never run; not `<template>`: Gradio's
HTML output morphs the old DOM into the new one node by node, and a template's content is not a
child node, so it kept an older card's parts); the page script `static/cardpack.js` parses each
into the element that shows it, sets the heatmap token (which asks for the overlays not ready yet)
and clears the comment box after a decision that used it.

The heatmap follow-ups keep their own output, a hidden carrier: `for_card` tags each with the
card's key (a late answer for a card already gone is not shown) and a counter (the same overlays
sent twice still change the carrier, so the script sees them).
"""
from __future__ import annotations

import functools
import html
import itertools
import re
import warnings
from typing import Any, Callable

import gradio as gr

# Gradio warns of any "<script" in an HTML value (it would not run): these parts are not code.
warnings.filterwarnings("ignore", message="A `<script>` tag was found", category=UserWarning)

SLOTS = ("top5", "side", "heat")          # what a card's HTML carries to the other columns
TOKEN_SEP = "#"                            # the script appends "#n" so a repeated token still fires
_COUNTER = itertools.count(1)


def _raw(part: str) -> str:
    """A part as a script element's raw text: our markup has no script end tag and no comment
    opener (user text is escaped before it gets here); a bug that made one would end the part early."""
    return re.sub(r"</(script)|<!--", lambda m: "&lt;/" + m.group(1) if m.group(1) else "&lt;!--", part, flags=re.I)


def pack(out: tuple, *, keep_choice: bool = False) -> tuple:
    """A handler's nine card values (plus whatever follows them) -> session, current, one HTML
    (plus the category search when `keep_choice`: only the event that used it clears it)."""
    s, current, card, top5, side, heat, token, choice, comment, *rest = out
    head = (s, current)
    if card == gr.skip():
        body: Any = gr.skip()
    else:
        key = current.get("key", "") if isinstance(current, dict) else ""
        attrs = f' data-key="{html.escape(str(key), quote=True)}"'
        if isinstance(token, str) and token:
            attrs += f' data-heat-token="{html.escape(token, quote=True)}"'
        if comment == gr.update(value=""):        # render(clear_comment=True)
            attrs += ' data-clear-comment="1"'
        slots = "".join(f'<script type="text/html" data-slot="{name}">{_raw(part)}</script>'
                        for name, part in zip(SLOTS, (top5, side, heat)) if isinstance(part, str))
        body = f'<div class="card-pack"{attrs}>{card}{slots}</div>'
    return head + (body,) + ((choice,) if keep_choice else ()) + tuple(rest)


def packed(fn: Callable, *, keep_choice: bool = False) -> Callable:
    """`fn` (a card handler) with its outputs packed; its signature (gr.Request) is kept."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> tuple:
        return pack(fn(*args, **kwargs), keep_choice=keep_choice)
    return wrapper


def for_card(key: str | None, value: Any) -> Any:
    """A heatmap follow-up's HTML, tagged with its card and a counter (see the module doc)."""
    if not isinstance(value, str):
        return value
    return (f'<script type="text/html" class="heat-for" data-for="{html.escape(str(key or ""), quote=True)}" '
            f'data-n="{next(_COUNTER)}">{_raw(value)}</script>')


def tagged(gen_fn: Callable, session_index: int) -> Callable:
    """A heatmap follow-up generator whose HTML is tagged by `for_card` with the card on screen
    when each part is sent (the session is argument `session_index`)."""
    @functools.wraps(gen_fn)
    def wrapper(*args: Any, **kwargs: Any):
        s = args[session_index]
        for value in gen_fn(*args, **kwargs):
            yield for_card(s.card.key if s.card is not None else None, value)
    return wrapper


def token_of(value: str | None) -> str:
    """The heatmap token without the counter the page script appended."""
    return (value or "").split(TOKEN_SEP, 1)[0]


def unpack(body: str) -> dict[str, str]:
    """The parts of a packed card (for API clients and tests): card, top5, side, heat and the
    attributes heat_token / clear_comment ("" when absent)."""
    out = {name: "" for name in SLOTS}
    slot = r'<script type="text/html" data-slot="(\w+)">(.*?)</script>'
    for name, part in re.findall(slot, body or "", flags=re.S):
        out[name] = part
    card = re.sub(slot, "", body or "", flags=re.S)
    head = re.match(r'<div class="card-pack"([^>]*)>', card)
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', head.group(1))) if head else {}
    out["card"] = card[head.end():-len("</div>")] if head else card
    out["heat_token"] = html.unescape(attrs.get("heat-token", ""))
    out["clear_comment"] = attrs.get("clear-comment", "")
    return out
