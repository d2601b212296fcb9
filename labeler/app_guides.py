"""The category guide overlay: key G on the review card or the grid page shows the category's
description and its example products (labeler/guides.py); G again or Esc closes it.

The key script finds the category on screen (the card's top-1, the grid page's category), puts
its code in a hidden box and presses a hidden button, as the heatmap chips do; the overlay is
one fixed panel outside the tabs, shown while `<html>` has the class `guide-open`.
"""
from __future__ import annotations

import html
from typing import Any

import gradio as gr

from labeler import guides, messages

STYLE = ("<style>html:not(.guide-open) .guide-overlay{display:none}"
         ".guide-overlay{position:fixed;top:64px;right:16px;width:min(560px,92vw);max-height:82vh;overflow:auto;"
         "z-index:1000;background:var(--background-fill-primary,#fff);border:1px solid var(--border-color-primary,#ccc);"
         "border-radius:10px;box-shadow:0 8px 30px rgba(0,0,0,.25);padding:14px 16px}"
         ".guide-ex{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;margin-top:8px}"
         ".guide-ex figure{margin:0;font-size:12px}.guide-ex img{width:100%;height:110px;object-fit:contain}</style>")

# installed once at page load (demo.load js): the G / Esc keys and the hidden request
KEYS_JS = """() => {
  if (window.__labelerGuides) return;
  window.__labelerGuides = true;
  const TEXT = new Set(["text", "search", "email", "number", "password", "url", "tel", ""]);
  const typing = (el) => !!el && el !== document.body && (el.isContentEditable || el.tagName === "TEXTAREA"
    || /^select$/i.test(el.tagName) || (el.tagName === "INPUT" && TEXT.has((el.getAttribute("type") || "").toLowerCase())));
  const shown = (el) => !!el && el.offsetParent !== null;
  const onScreen = () => {
    const grid = document.getElementById("grid-page");
    if (shown(grid)) {
      const m = (grid.querySelector(".grid-cat")?.textContent || "").match(/(\\d+)\\s*$/);
      return m ? m[1] : null;
    }
    const card = document.querySelector("#review-card .card[data-product-id]");
    if (!shown(card)) return null;
    const top1 = document.querySelector("#top5 .t5-row.first .code");    // the model's top-1 on the card
    return top1 ? top1.textContent.trim() : (card.dataset.xcodes || "").split(" ").filter(Boolean)[0] || null;
  };
  const root = document.documentElement;
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || typing(e.target)) return;
    if (e.key === "Escape" && root.classList.contains("guide-open")) { root.classList.remove("guide-open"); return; }
    if (e.key !== "g" && e.key !== "G") return;
    if (root.classList.contains("guide-open")) { root.classList.remove("guide-open"); e.preventDefault(); return; }
    const code = onScreen();
    if (!code) return;
    const box = document.querySelector("#guide-request textarea, #guide-request input");
    const btn = document.getElementById("btn-guide");
    const b = btn && (btn.tagName === "BUTTON" ? btn : btn.querySelector("button"));
    if (!box || !b) return;
    e.preventDefault();
    box.value = code;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    root.classList.add("guide-open");
    setTimeout(() => b.click(), 0);
  }, true);
  document.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest(".guide-close")) root.classList.remove("guide-open");
  });
}"""


def guide_html(g: guides.Guide, thumb: Any = None) -> str:
    """The overlay: name and code, description, example tiles (thumbnail, title, model probability).
    `thumb(image_path)` gives an image URL or None."""
    tiles = []
    for ex in g.examples:
        url = thumb(ex.image_path) if thumb and ex.image_path else None
        img = f'<img src="{html.escape(url)}" alt="">' if url else '<div class="muted">no image</div>'
        prob = f" · {ex.prob:.0%}" if ex.prob is not None else ""
        tiles.append(f'<figure data-product="{html.escape(ex.product_id)}">{img}<figcaption>'
                     f'{html.escape(ex.title[:90])}<span class="muted">{prob}</span></figcaption></figure>')
    examples = ('<div class="guide-ex">' + "".join(tiles) + "</div>" if tiles else
                '<div class="muted">No reviewed example yet: accept or correct products into this category '
                'and the surest ones appear here.</div>')
    return (f'{STYLE}<div class="guide-overlay" data-category="{html.escape(g.shown_code or str(g.code))}">'
            f'<div style="display:flex;justify-content:space-between;align-items:baseline">'
            f'<h3 style="margin:0">{html.escape(g.name)} · {html.escape(g.shown_code or str(g.code))}</h3>'
            f'<button type="button" class="guide-close" title="G or Esc">close ✕</button></div>'
            f'<p>{html.escape(g.description)}</p><b>Examples</b> <span class="muted">(reviewed, the model surest '
            f'first)</span>{examples}</div>')


def guide_panel(ws: Any, demo: gr.Blocks) -> None:
    """The overlay, its hidden request and the key script (call inside `demo`, outside the tabs)."""
    from labeler import grid

    panel = gr.HTML(STYLE, elem_id="guide-panel", js_on_load=None)
    request = gr.Textbox(visible="hidden", elem_id="guide-request")
    button = gr.Button("guide", visible="hidden", elem_id="btn-guide")

    def show(code: str) -> str:
        try:
            g = guides.guide(ws, (code or "").strip())
        except guides.GuideError as exc:
            raise messages.error(str(exc)) from None
        return guide_html(g, lambda path: grid.thumbnail_uri(ws, path))

    button.click(show, [request], [panel], api_name="guide", concurrency_id="guide", concurrency_limit=2,
                 show_progress="hidden")
    demo.load(None, None, None, js=KEYS_JS)
