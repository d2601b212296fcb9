"""HTML for the review app: pure functions from workflow objects to escaped markup.

Every product string (title, description, ids, captions, reviewer names) goes through `text()`,
which strips HTML tags, decodes entities and then escapes what is left, so product data can
never inject markup or script into the page. Nothing here touches Gradio or the workspace.
"""
from __future__ import annotations

import base64
import html
import io
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from labeler import taxonomy
from labeler.taxonomy import Taxonomy
from labeler.richtext import overlay_tints, rich_text

MAX_DESCRIPTION = 4000          # characters shown; the rest is cut with an ellipsis
MAX_TITLE = 300                 # characters of a title on the card (CSS clamps it to 3 lines too)
MAX_TITLE_HOVER = 1000          # ...and in its hover text
DISPLAY_IMAGE_PX = 560          # longest side of the product image sent to the browser
VOTER_LABELS = {"text": "Text model", "image": "Image ensemble"}
SHORTCUTS = (("Enter", "accept top-1"), ("1–5", "pick from top-5"), ("/", "search all 27"),
             ("S", "skip"), ("U", "undo"), ("T", "words against"), ("D", "description: ↑↓ scroll it"),
             ("Esc", "leave a text field"))


_TAG = re.compile(r"</?[a-zA-Z!?][^<>]*>")     # what a browser would parse as a tag
_SPACE = re.compile(r"\s+")


def plain(value: object) -> str:
    """Product text as plain text: entities decoded (twice, as in the data), tag-like runs
    removed, whitespace collapsed. "a < b" or "<10 cm" stay readable."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    s = html.unescape(html.unescape(str(value)))
    return _SPACE.sub(" ", _TAG.sub(" ", s)).strip()


def text(value: object, limit: int | None = None) -> str:
    """Product text as safe HTML: `plain`, cut to `limit` characters, then everything escaped."""
    s = plain(value)
    if limit is not None and len(s) > limit:
        s = s[:limit].rstrip() + " …"
    return html.escape(s, quote=True)


def pct(p: float) -> str:
    if p < 0.0005:
        return "<0.1%"
    return f"{100 * p:.1f}%" if p < 0.995 else f"{100 * p:.0f}%"


def category_label(code: int, tax: Taxonomy | None = None) -> str:
    """'name · code' of a category key, in the workspace's taxonomy `tax` (default: Rakuten's)."""
    tax = tax or taxonomy.default()
    return f"{tax.name(code)} · {tax.code(code)}"


# -- images ---------------------------------------------------------------------------------------
IMAGE_ROUTE = "product-image"   # the app's route serving one product's image by id (labeler.serving)


def image_url(product: dict | None) -> str | None:
    """The product image's URL on the app's image route (relative to the page), None without one.

    By product id, never by file path: the server looks the id up and sends that one file. The
    image's hash rides along (`?v=`) so a re-imported image is fetched anew while the browser
    keeps caching the others."""
    if not product or not product.get("image_path") or product.get("id") is None:
        return None
    from urllib.parse import quote
    version = str(product.get("image_sha1") or "")[:12]
    return f"{IMAGE_ROUTE}/{quote(str(product['id']), safe='')}" + (f"?v={quote(version)}" if version else "")


def image_src(product: dict | None) -> str | None:
    """Where the card's <img> loads the product image from: the image route, by URL.

    The browser fetches and caches it beside the card update (measured: the next card with its
    image shown at p50 41 ms instead of 129 ms when a 44 KB image rode inside the card HTML as a
    data: URI)."""
    return image_url(product)


@lru_cache(maxsize=512)
def image_data_uri(path: str | None) -> str | None:
    """The product image as a data: URI (no file serving, no path checks); None if unreadable."""
    if not path:
        return None
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError:
        return None
    try:
        from PIL import Image
        with Image.open(io.BytesIO(raw)) as im:
            small = max(im.size) <= DISPLAY_IMAGE_PX and im.format == "JPEG" and len(raw) < 250_000
            if small:
                return "data:image/jpeg;base64," + base64.b64encode(raw).decode("ascii")
            return pil_data_uri(im)
    except Exception:   # noqa: BLE001 - a corrupt image shows as "no image", never a traceback
        return None


def pil_data_uri(im, *, max_px: int = DISPLAY_IMAGE_PX, quality: int = 85) -> str:
    """A PIL image as a JPEG data: URI, shrunk to `max_px` on its longest side."""
    im = im.convert("RGB")
    if max(im.size) > max_px:
        im = im.copy()
        im.thumbnail((max_px, max_px))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# -- the review card ------------------------------------------------------------------------------
def card_html(card, image_uri: str | None, *, threshold: float, preload: Sequence[str] = (), tax: Taxonomy | None = None,
              highlights=None) -> str:
    """Image, title, description, why it was picked, the imported label and the auto-accept badge.

    preload: image URLs of the next cards, fetched by the browser while the reviewer looks at this
    one, so the next card's image is shown from its cache. highlights: the text model's words
    tinted per top-5 category (`labeler.text_highlights.Highlights`), or None."""
    p = card.product
    title = text(p.get("title"), MAX_TITLE) or "<em>(no title)</em>"
    title_hover = text(p.get("title"), MAX_TITLE_HOVER)
    # paragraphs and lists kept (a safe subset rebuilt by labeler.richtext), entities decoded
    desc = rich_text(p.get("description"), MAX_DESCRIPTION)
    explained_title, tinted_desc, explained, codes = explained_texts(highlights, title, desc)
    if len(plain(p.get("title"))) <= MAX_TITLE:      # a longer title keeps its capped, untinted text
        title = explained_title
    if tinted_desc is not desc:                      # the text model's tints, laid over the paragraphs
        desc = overlay_tints(desc, tinted_desc)
    img = (f'<img class="product-img" src="{html.escape(image_uri)}" alt="product image">' if image_uri else
           '<div class="no-img">no image for this product</div>')
    badges = []
    pred = card.prediction
    if pred is not None and pred.auto_accept:
        t = getattr(pred, "auto_accept_threshold", None) or threshold
        badges.append(f'<span class="badge ok" title="fused top-1 probability ≥ {pct(t)}: '
                      f'{html.escape(getattr(pred, "auto_accept_note", ""))}">'
                      f'auto-accept · {pct(pred.top1_prob)}</span>')
    if card.second_review:
        badges.append('<span class="badge info">second review (overlap)</span>')
    if card.resumed:
        badges.append('<span class="badge info">resumed</span>')
    source = p.get("source_label")
    imported = (f'<div class="meta-row"><span>imported label</span><span><b>{html.escape(category_label(source, tax))}</b></span></div>'
                if source is not None else "")
    strategy = html.escape(card.strategy.replace("_", " "))
    score = "" if card.score is None else f' <span class="muted">(score {card.score:.3f})</span>'
    ahead = "".join(f'<img class="preload" src="{html.escape(u)}" alt="" hidden>' for u in preload)
    return f"""
<div class="card xexp xr-1" data-xcodes="{codes}" data-product-id="{html.escape(card.product_id)}" data-key="{html.escape(card.key)}">
  <div class="card-img">{img}</div>
  <div class="card-body">
    <div class="badges">{''.join(badges)}</div>
    <h2 class="product-title" title="{title_hover}">{title}</h2>
    <div class="product-desc" tabindex="0" role="region" aria-label="Product description">{desc or '<span class="muted">no description</span>'}</div>
    {explained}
    <div class="meta">
      <div class="meta-row"><span>why this product</span><span><b>{strategy}</b>: {html.escape(card.reason)}{score}</span></div>
      {imported}
      <div class="meta-row"><span>product id</span><span><code>{html.escape(card.product_id)}</code></span></div>
      {score_source_html(pred)}
    </div>
  </div>{ahead}
</div>"""


SOURCE_NOTES = {"out-of-fold": "out-of-fold: from models that never saw this product's label",
                "model trained on all labels": "model trained on all labels (this product had none)"}


def score_source_html(pred) -> str:
    """The card's line saying which model produced the scores shown (honest or in-sample)."""
    source = getattr(pred, "source", None) if pred is not None else None
    if pred is None:
        return ""
    note = SOURCE_NOTES.get(source or "", "in-sample: stored before out-of-fold scoring (retrain for honest scores)")
    return (f'<div class="meta-row score-source" data-source="{html.escape(source or "in-sample")}"><span>model scores'
            f'</span><span>{html.escape(note)}</span></div>')


def empty_card_html(message: str, hint: str = "") -> str:
    return (f'<div class="card empty"><div class="card-body"><h2 class="product-title">{html.escape(message)}</h2>'
            f'<div class="product-desc">{html.escape(hint)}</div></div></div>')


def _voter_top1(pred) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, votes in pred.voters.items():
        if votes:
            out.setdefault(votes[0].code, []).append(name)
    return out


def top5_html(pred, *, threshold: float, clickable: bool = True, title: str = "Model top-5 (fused)") -> str:
    """The fused top-5 as rows: key, category name, probability bar, voters agreeing.

    clickable: rows are buttons that decide (the review card); False for the try-it tab. title:
    the list's head (a grid's marked product: its likeliest other categories, up to nine)."""
    if pred is None:
        return ('<div class="top5 none"><div class="none-msg">No model prediction for this product yet.'
                '<br>Choose its category with <kbd>/</kbd> or skip with <kbd>S</kbd>.</div></div>')
    backing = _voter_top1(pred)
    short = voter_shorts(pred.voters)
    in_set = set(getattr(pred, "pred_set", ()) or ())
    rows = []
    for rank, vote in enumerate(pred.top5, start=1):
        who = backing.get(vote.code, [])
        dots = "".join(f'<span class="dot" title="{html.escape(voter_label(v))} votes this">'
                       f'{html.escape(short[v])}</span>' for v in who)
        width = max(1.0, 100 * vote.prob)
        tag = "button" if clickable else "div"
        attrs = f'type="button" data-pick="{rank}" title="press {rank}"' if clickable else ""
        rows.append(f"""
  <{tag} {attrs} class="t5-row{' first' if rank == 1 else ''}{'' if clickable else ' static'}">
    <kbd>{rank}</kbd>
    <span class="t5-name">{html.escape(vote.name)} <span class="code">{html.escape(vote.text_code)}</span></span>
    <span class="t5-p">{pct(vote.prob)}</span>
    <span class="t5-bar"><span style="width:{width:.1f}%"></span></span>
    <span class="t5-voters">{dots}{_set_mark(vote.code, in_set, pred)}</span>
  </{tag}>""")
    t = getattr(pred, "auto_accept_threshold", None)
    note = html.escape(getattr(pred, "auto_accept_note", "") or "")
    rule = (f"auto-accept at {pct(t)}" if t is not None else note) if hasattr(pred, "auto_accept_note") \
        else f"auto-accept at {pct(threshold)}"
    head = (f'<div class="t5-head"><span>{html.escape(title)}</span>'
            f'<span class="muted" title="{note}">version {html.escape(pred.model_version)} · {rule}</span></div>')
    return f'<div class="top5">{head}{"".join(rows)}</div>'


def others_html(pred, letters: str, *, more: bool) -> str:
    """A grid's marked product: the categories after its nine likeliest, by name, each a button
    under a letter key (its `data-pick` continues the nine's ranks). more: the taxonomy has
    categories beyond these (the search finds them)."""
    others = getattr(pred, "others", ()) if pred is not None else ()
    if not others:
        return ""
    first = len(pred.top5) + 1
    chips = "".join(
        f'<button type="button" class="fix-other" data-pick="{first + i}" data-letter="{key}" title="press {key}">'
        f'<kbd>{key}</kbd> {html.escape(vote.name)} <span class="code">{html.escape(vote.text_code)}</span></button>'
        for i, (key, vote) in enumerate(zip(letters, others)))
    tail = " · more with <kbd>/</kbd>" if more else ""
    return (f'<div class="fix-others"><div class="t5-head"><span>Every other category, A-Z{tail}</span></div>'
            f'<div class="fix-chips">{chips}</div></div>')


def _set_mark(code: int, in_set: set[int], pred) -> str:
    """A mark on the top-5 rows inside the conformal prediction set."""
    if code not in in_set:
        return ""
    cov = getattr(pred, "set_coverage", None)
    tip = f"in the prediction set ({pct(cov)} coverage)" if cov else "in the prediction set"
    return f'<span class="in-set" title="{tip}">in set</span>'


def voter_label(name: str) -> str:
    return VOTER_LABELS.get(name, name)


def voter_shorts(names: Iterable[str]) -> dict[str, str]:
    """One- or two-letter tags for the top-5 rows: T text, I image ensemble, V1.. each image voter."""
    out, n = {}, 0
    for name in names:
        if name in ("text", "image"):
            out[name] = name[0].upper()
        else:
            n += 1
            out[name] = f"V{n}"
    return out


def votes_html(pred, *, has_image: bool = True) -> str:
    """Each model's own top-1, green when it agrees with the fused top-1: agreement at a glance."""
    if pred is None:
        return ""
    agree = pred.agreement()
    n_ok = sum(agree.values())
    chips = []
    short = voter_shorts(pred.voters)
    for name, votes in pred.voters.items():
        if not votes:
            continue
        v = votes[0]
        cls = "ok" if agree.get(name) else "warn"
        mark = "✓" if agree.get(name) else "✗"
        chips.append(f'<div class="vote {cls}"><span class="dot">{short[name]}</span>'
                     f'<span class="vote-who">{html.escape(voter_label(name))}</span>'
                     f'<span class="vote-what">{mark} {html.escape(v.name)} <span class="code">{html.escape(v.text_code)}</span></span>'
                     f'<span class="vote-p">{pct(v.prob)}</span></div>')
    only_text = set(pred.voters) <= {"text"}
    summary = (f"text model only ({'no image model yet' if has_image else 'no image for this product'})"
               if only_text else f"{n_ok} of {len(agree)} models agree with the fused top-1")
    cls = "ok" if n_ok == len(agree) else "warn"
    return f'<div class="votes"><div class="votes-head {cls}">{summary}</div>{"".join(chips)}</div>'


def heatmaps_html(items: Sequence[tuple[str, str]] | None, *, category: int | None, note: str = "",
                  choices: Sequence[tuple[int, str]] = (), tax: Taxonomy | None = None) -> str:
    """Grad-CAM overlays side by side: items are (caption, data URI), one per image voter.

    choices: the top-5 as (code, name) chips that ask for another category's overlays."""
    what = (f' for <b>{html.escape(category_label(category, tax))}</b>' if category is not None else "")
    chips = "".join(f'<button type="button" class="heat-chip{" on" if code == category else ""}" data-heat="{int(code)}">'
                    f'{rank}. {html.escape(name)}</button>' for rank, (code, name) in enumerate(choices, 1))
    chips = f'<div class="heat-chips">{chips}</div>' if chips else ""
    head = f'<div class="heat-head">Where the image models look{what}</div>{chips}'
    if not items:
        return f'<div class="heat empty">{head}<div class="muted heat-note">{html.escape(note or "no heatmaps")}</div></div>'
    figs = "".join(f'<figure><img src="{uri}" alt="{text(caption)}"><figcaption>{text(caption)}</figcaption></figure>'
                   for caption, uri in items)
    return f'<div class="heat">{head}<div class="heat-row">{figs}</div></div>'


def status_html(*, reviewer: str | None, card, last: str = "", done_today: int | None = None) -> str:
    """The thin progress line above the card."""
    if not reviewer:
        return '<div class="status"><b>Type your name</b> in the Reviewer box and press Enter to start.</div>'
    parts = [f'<span>reviewer <b>{html.escape(reviewer)}</b></span>']
    if card is not None:
        parts.append(f'<span><b>{card.reviewed_by_me}</b> decided by you</span>')
        parts.append(f'<span><b>{card.remaining}</b> left in this queue · {card.total_remaining} in the catalog</span>')
    if last:
        parts.append(f'<span class="last">{html.escape(last)}</span>')
    return f'<div class="status">{"".join(parts)}</div>'


def card_with_status(status: str, card: str) -> str:
    """The status line and the card travel as one HTML output (labeler/card_pack.py packs the rest in)."""
    return f'<div id="review-status">{status}</div>{card}'


def side_html(votes: str, history: str) -> str:
    """The models' votes and the reviewer's last decisions, one HTML output under the buttons."""
    return f'<div id="votes">{votes}</div><div id="history">{history}</div>'


def shortcuts_html() -> str:
    keys = "".join(f'<span class="key"><kbd>{k}</kbd> {html.escape(v)}</span>' for k, v in SHORTCUTS)
    return f'<div class="shortcuts">{keys}</div>'


def describe_decision(row: dict, title: object, tax: Taxonomy | None = None) -> str:
    """'accepted Piscine et accessoires for «title»' for the status line."""
    t = plain(title) or "(no title)"
    t = t if len(t) <= 48 else t[:47] + "…"
    action = row.get("action")
    if action in ("accept", "correct"):
        verb = "accepted" if action == "accept" else "corrected to"
        return f"{verb} {(tax or taxonomy.default()).name(row['category'])} for «{t}»"
    if action == "skip":
        return f"skipped «{t}»"
    return f"{action} «{t}»"


def history_html(rows: Sequence[dict], tax: Taxonomy | None = None) -> str:
    """The reviewer's latest decisions still standing, newest first (what U would take back)."""
    if not rows:
        return ""
    items = []
    for r in rows:
        what = ("skipped" if r["action"] == "skip" else
                f'{"✓" if r["action"] == "accept" else "✎"} {html.escape((tax or taxonomy.default()).name(r["category"]))}')
        items.append(f'<li><span class="h-what">{what}</span><span class="h-title">{text(r.get("title"), 80) or "<em>(no title)</em>"}</span></li>')
    return (f'<details class="history" open><summary>Your last decisions <span class="muted">(U takes back the '
            f'first)</span></summary><ol>{"".join(items)}</ol></details>')


def stats_cards_html(progress: dict, acceptance: dict, agreement: dict, model: dict) -> str:
    """Big numbers at the top of the stats tab: each count named as `labeler.stats.COUNTS` defines
    it (hover a card for the definition), so no two cards count the same thing differently."""
    from labeler.stats import COUNTS
    rate = acceptance.get("rate")
    kappa = agreement.get("kappa")
    done = progress.get("done", progress["reviewed"])
    shown = acceptance.get("n", 0)
    cells = [
        ("products reviewed", f"{progress['reviewed']:,}",
         f"of {progress['products']:,} products" + (f" · {done:,} with all their reviews" if done != progress["reviewed"] else ""),
         COUNTS["reviewed"]),
        ("products remaining", f"{progress['remaining']:,}", "still offered by the queues", COUNTS["remaining"]),
        ("decisions standing", f"{progress['decisions']:,}",
         f"{progress.get('labels', 0):,} labels · {progress['skips']:,} skips · {progress['undos']:,} undone",
         COUNTS["decisions"]),
        ("model top-1 accepted", "–" if rate is None else pct(rate),
         f"of {shown:,} labels given with a model top-1 shown",
         "share of the labels (accepts and corrections standing) made with a prediction on screen "
         "that kept the model's top-1"),
        ("reviewers", f"{progress['reviewers']:,}", "with a decision standing", COUNTS["reviewers"]),
        ("Cohen's kappa", "–" if kappa is None else f"{kappa:.2f}",
         f"{agreement.get('n_products', 0):,} products seen by two", "agreement of the first two reviewers "
         "of each product reviewed twice, beyond chance"),
        ("live model", html.escape(str(model.get("live") or "none")), f"{model.get('versions', 0)} versions",
         "the model version that ranks the queues and fills the cards"),
    ]
    body = "".join(f'<div class="stat" title="{html.escape(d)}"><div class="stat-label">{a}</div>'
                   f'<div class="stat-value{" small" if len(b) > 12 else ""}">{b}</div>'
                   f'<div class="stat-sub">{c}</div></div>' for a, b, c, d in cells)
    return f'<div class="stats">{body}</div>'


# What a version's metrics mean, in the order a reader wants them; keys not listed follow as stored.
METRIC_LABELS = {
    "validation.weighted_f1": "weighted F1 on the labelled products, out-of-fold (fused, vs previous version)",
    "validation.text_weighted_f1": "  the same, text model alone",
    "validation.accuracy": "  accuracy (fused)",
    "validation.n": "  labelled products compared",
    "compared_to.version": "compared with",
    "compared_to.delta_weighted_f1": "  change in out-of-fold weighted F1",
    "text_weighted_f1": "text model: weighted F1 (cross-validated)",
    "text_macro_f1": "  macro F1",
    "text_accuracy": "  accuracy",
    "cv_folds": "  folds",
    "oof_fused_weighted_f1": "fused: weighted F1, products with an image (out-of-fold)",
    "oof_text_weighted_f1": "  text alone on them",
    "oof_image_weighted_f1": "  image vote alone on them",
    "oof_fused_log_loss": "  fused log-loss",
    "oof_n": "  products with an image",
    "n_images": "labelled products with a usable image",
    "n_without_image": "labelled products without an image",
    "n_image_problems": "image files that would not decode",
    "fused_cv_weighted_f1": "fused: weighted F1 of every labelled product (out-of-fold, what the cards show)",
    "fused_cv_accuracy": "  accuracy",
    "fused_cv_n": "  labelled products",
    "auto_accept.target": "auto-accept: target precision",
    "auto_accept.threshold": "  threshold on the fused top-1 (none: nothing auto-accepted)",
    "auto_accept.error_bound": "  error-rate upper bound (95 % confidence)",
    "auto_accept.coverage": "  share of labelled products auto-accepted",
    "auto_accept.precision": "  precision reached on them (out-of-fold)",
    "conformal.coverage": "prediction sets: nominal coverage",
    "conformal.empirical_coverage": "  coverage measured on held-out halves",
    "conformal.mean_set_size": "  mean set size",
}


def metric_rows(metrics: dict) -> list[tuple[str, str]]:
    """(label, value) rows: nested results (validation, comparison) flattened, known keys named."""
    flat: dict[str, object] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                if not isinstance(v, dict):
                    flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    labels = dict(METRIC_LABELS)
    if "n_image_problems" in flat and "n_without_image" not in flat:
        # versions trained before n_without_image existed counted products without a photo here
        labels["n_image_problems"] = "labelled products without a usable image"
    rows = [(label, _fmt(flat.pop(key))) for key, label in labels.items() if key in flat]
    return rows + [(key, _fmt(v)) for key, v in sorted(flat.items())]


def metrics_html(model: dict) -> str:
    if not model.get("live"):
        return '<div class="muted">No model trained yet: run <code>python -m labeler train</code>.</div>'
    info = [(label, _fmt(model.get(k))) for k, label in (
        ("live", "version"), ("created_at", "trained at"), ("n_train", "labelled products it learned from"),
        ("n_decisions", "  of them decided by reviewers"), ("parent", "previous live version"))]
    info_html, rows = (
        "".join(f'<tr><td{" class=sub" if k.startswith("  ") else ""}>{html.escape(k.strip())}</td>'
                f"<td>{html.escape(v)}</td></tr>" for k, v in part)
        for part in (info, metric_rows(model.get("metrics") or {})))
    return f'<table class="metrics">{info_html}{rows or "<tr><td>metrics</td><td>not evaluated</td></tr>"}</table>'


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "–" if v is None else str(v)


def category_choices(codes: Iterable[int] | None = None, tax: Taxonomy | None = None) -> list[tuple[str, int]]:
    """(label, key) pairs for dropdowns: searchable by name and by code (default: every category of `tax`)."""
    tax = tax or taxonomy.default()
    return [(category_label(c, tax), int(c)) for c in (codes if codes is not None else tax.keys())]


# -- models tab ---------------------------------------------------------------------------------
VERSION_COLUMNS = ["version", "live", "status", "created", "trained on", "reviewed",
                   "out-of-fold wF1", "vs previous", "what changed", "auto-accept"]


def versions_rows(versions: Sequence[dict]) -> list[list]:
    """`labeler.retrain.versions_table` rows, newest first, as plain table rows."""
    rows = []
    for v in reversed(list(versions)):
        val = v.get("validation") or {}
        wf1 = val.get("weighted_f1", (v.get("cv") or {}).get("fused_cv_weighted_f1"))
        delta = (v.get("compared_to") or {}).get("delta_weighted_f1")
        rows.append([v["id"], "● live" if v["live"] else "", v["status"], str(v["created_at"])[:19].replace("T", " "),
                     v["n_train"], v["n_decisions"],
                     f"{wf1:.4f}" if wf1 is not None else "–",
                     f"{delta:+.4f}" if delta is not None else "–", plain(v["changes"]),
                     plain(v.get("auto_accept") or "–")])
    return rows


def retrain_status_html(status: dict | None, result_lines: Sequence[tuple[str, object]] = (),
                        last_run: dict | None = None) -> str:
    """The Retrain panel: the running run's progress, else the outcome of the last one."""
    if status and status.get("state") == "running":
        pct_done = int(round(100 * float(status.get("fraction") or 0)))
        return (f'<div class="retrain running"><b>Retraining…</b> {pct_done} % · {text(status.get("message"))} '
                f'· {float(status.get("elapsed_s") or 0):.0f} s<div class="bar"><span style="width:{pct_done}%">'
                '</span></div><div class="muted">Reviewing goes on meanwhile; the queue switches to the new '
                'version when it is live.</div></div>')
    if status and status.get("state") == "failed":
        why = re.sub(r"^retrain failed:\s*", "", str(status.get("error") or ""))
        return (f'<div class="retrain failed"><b>Retrain failed</b>: {text(why)}<br>'
                '<span class="muted">The live version was not changed.</span></div>')
    if result_lines:
        rows = "".join(f"<tr><td>{text(k)}</td><td>{text(v)}</td></tr>" for k, v in result_lines)
        return f'<div class="retrain done"><b>Retrain finished</b><table class="metrics">{rows}</table></div>'
    if last_run:
        return (f'<div class="retrain muted">Last retrain: run {text(last_run.get("id"))}, '
                f'{text(last_run.get("status"))}, started {text(str(last_run.get("started_at"))[:19])}'
                f'{" · " + text(last_run.get("error")) if last_run.get("error") else ""}</div>')
    return ('<div class="retrain muted">No retrain yet. Retrain learns every decision made so far '
            '(compared with the live one out-of-fold, on every labelled product) and re-scores the queue.</div>')


# -- the text model's explanation (words tinted toward / against a category) ------------------------
def highlighted_text_html(display: str, spans: Sequence[tuple[int, int, str]], *, cut: bool = False) -> str:
    """`display` escaped, with each (start, end, classes) span wrapped in <span class="xw ...">.

    Spans are sorted, non-overlapping offsets into `display`; classes are the tint classes
    (r<rank><p|n><level>, see labeler/text_highlights.py), empty for an untinted word (no element).
    Only backgrounds change with the tints, so a card never shifts when they switch."""
    out, at = [], 0
    for a, b, classes in spans:
        if not classes or a < at or b <= a:
            continue
        out.append(html.escape(display[at:a], quote=True))
        out.append(f'<span class="xw {html.escape(classes, quote=True)}">{html.escape(display[a:b], quote=True)}</span>')
        at = b
    out.append(html.escape(display[at:], quote=True))
    return "".join(out) + (" …" if cut else "")


def text_summary_html(summaries: Sequence[str], note: str = "", details: Sequence[str] = ()) -> str:
    """One summary line per explained category (CSS shows the chosen rank's) and the T toggle;
    details: the non-text features behind each line, as its tooltip.

    Always one line high, whether explained or not, so cards do not jump."""
    tips = list(details) + [""] * (len(summaries) - len(details))
    lines = "".join(f'<span class="xs r{rank}" title="{html.escape(tip, quote=True)}">{html.escape(line)}</span>'
                    for rank, (line, tip) in enumerate(zip(summaries, tips), 1))
    if not lines:
        lines = f'<span class="xs muted">{html.escape(note or "no text explanation yet")}</span>'
    toggle = '<span class="x-toggle" role="button" title="show the words that pushed against it (T)">T against</span>'
    return f'<div class="xsum"><span class="xs-lead">Text model:</span>{lines}{toggle}</div>'


def explained_texts(highlights, title: str, desc: str) -> tuple[str, str, str, str]:
    """(title, description, summary line, explained codes) for the card; the plain escaped texts and
    an empty summary line when there is no explanation."""
    if highlights is None:
        return title, desc, text_summary_html((), "text explanation not ready"), ""
    codes = " ".join(str(int(c)) for c in highlights.codes)
    return (highlights.title_html or title, highlights.description_html or desc,
            text_summary_html(highlights.summaries, highlights.note, highlights.details), codes)


def text_explanation_html(highlights, choices: Sequence[tuple[int, str]] = ()) -> str:
    """A standalone explanation block (try-it): chips per category, the tinted texts, the summary."""
    if highlights is None:
        return '<div class="xexp none muted">No text explanation (no text model in this version).</div>'
    codes = " ".join(str(int(c)) for c in highlights.codes)
    chips = "".join(f'<button type="button" class="heat-chip{" on" if rank == 1 else ""}" data-xrank="{rank}">'
                    f'{rank}. {html.escape(name)}</button>' for rank, (_, name) in enumerate(choices, 1))
    return (f'<div class="xexp xr-1" data-xcodes="{codes}"><div class="heat-head">Which words the text model read'
            f'</div><div class="heat-chips">{chips}</div>'
            f'<div class="product-title x-title">{highlights.title_html or "<em>(no title)</em>"}</div>'
            f'<div class="product-desc">{highlights.description_html}</div>'
            f'{text_summary_html(highlights.summaries, highlights.note, highlights.details)}</div>')


def learned_html(result, tax: Taxonomy | None = None) -> str:
    """Models tab: per category the n-grams with the largest weights; then what changed most."""
    if result is None:
        return '<div class="muted">No model trained yet.</div>'
    rows = "".join(
        f'<tr><td>{html.escape(category_label(code, tax))}</td><td>'
        + " ".join(f'<span class="ng" title="weight {w:.3f}">{html.escape(g)}</span>' for g, w in grams)
        + "</td></tr>" for code, grams in sorted(result.top.items()))
    table = (f'<table class="metrics learned"><tr><th>category</th><th>word n-grams with the largest weights'
             f'</th></tr>{rows}</table>' if rows else "")
    if result.changes:
        moved = "".join(f"<tr><td>{html.escape(category_label(c.category, tax))}</td><td>{html.escape(c.ngram)}</td>"
                        f"<td>{c.before:+.3f} → {c.after:+.3f}</td></tr>" for c in result.changes)
        changes = (f'<div class="heat-head">What changed most since {html.escape(str(result.parent))}</div>'
                   f'<table class="metrics learned"><tr><th>category</th><th>n-gram</th><th>weight</th></tr>{moved}</table>')
    else:
        changes = "" if result.note else '<div class="muted">First version: nothing to compare with.</div>'
    note = f'<div class="muted">{html.escape(result.note)}</div>' if result.note else ""
    return (f'<div class="learned-box"><div class="heat-head">What version {html.escape(result.version)} learned '
            f'(text model)</div>{table}{changes}{note}</div>')


def late_words_html(key: str, highlights, product: dict | None = None) -> str:
    """The text explanation of the card `key`, computed after the card was sent: a hidden block
    the page script (shortcuts.js) copies into that card if it is still the one on screen.

    product: the card's product, so the tints are laid over its paragraphs and lists as on a card
    sent with them (`card_html`), and a title longer than the card shows keeps its capped text."""
    codes = " ".join(str(int(c)) for c in highlights.codes)
    title, desc = highlights.title_html, highlights.description_html
    if product is not None:
        title = title if len(plain(product.get("title"))) <= MAX_TITLE else ""     # empty: not copied
        rich = rich_text(product.get("description"), MAX_DESCRIPTION)
        desc = overlay_tints(rich, desc) if desc else rich
    return (f'<div class="x-late" hidden data-key="{html.escape(key, quote=True)}" data-xcodes="{codes}">'
            f'<div data-part="title">{title}</div><div data-part="desc">{desc}</div>'
            f'{text_summary_html(highlights.summaries, highlights.note, highlights.details)}</div>')


def live_history_html(rows: Sequence[dict], *, note: str = "") -> str:
    """Who moved the live version, when, how and why (store `live_history`, newest first).

    note: why this login may not change the model (shown above the table), '' when it may."""
    warn = f'<div class="retrain muted rights">{text(note)}</div>' if note else ""
    if not rows:
        return f'{warn}<div class="muted live-history">The live version has not been changed from this app or ' \
               'the CLI yet.</div>'
    body = "".join(
        f'<tr><td>{text(str(r.get("at") or "")[:19].replace("T", " "))}</td><td><code>{text(r.get("version"))}</code>'
        f'</td><td>{text(r.get("previous") or "–")}</td><td>{text(r.get("who") or "unknown")}</td>'
        f'<td>{text(r.get("reason"))}</td><td>{text(r.get("why") or "–")}</td></tr>' for r in rows)
    return (f'{warn}<details class="live-history" open><summary>Changes of the live version (newest first)</summary>'
            '<table class="metrics"><tr><th>when (UTC)</th><th>made live</th><th>was</th><th>by</th><th>how</th>'
            f'<th>why</th></tr>{body}</table></details>')


# -- grid tab -------------------------------------------------------------------------------------
def grid_html(page, tiles: list, tax: Taxonomy | None = None) -> str:
    """The grid page: the category's name large on top, then one tile per product (number,
    thumbnail or 'no image', title, the model's probability). `tiles`: (n, GridItem, image url)."""
    if page is None:
        return '<div class="grid-empty">Choose a predicted category and open a page.</div>'
    head = (f'<div class="grid-head"><span class="grid-cat">{html.escape(category_label(page.category, tax))}</span>'
            f' <span class="grid-count">{len(tiles)} on this page · {page.remaining} undecided in it</span></div>')
    cells = []
    for n, item, url in tiles:
        img = (f'<img src="{html.escape(url)}" alt="">' if url
               else '<div class="grid-noimg">no image</div>')
        cells.append(f'<div class="grid-tile" data-product="{html.escape(item.product_id)}"><b>{n}</b>{img}'
                     f'<div class="grid-title">{html.escape(item.title[:120]) or "<em>(no title)</em>"}</div>'
                     f'<div class="grid-prob">{item.prob:.0%}</div></div>')
    return (head + '<div class="grid-tiles" style="display:grid;grid-template-columns:repeat(auto-fill,'
            'minmax(170px,1fr));gap:8px">' + "".join(cells) + "</div>")


# -- browse: one product ------------------------------------------------------------------------------
UNDONE_ROW = ' class="muted"'


def browse_detail_html(detail: dict | None, tax: Taxonomy | None = None) -> str:
    """A product opened from the Browse table: texts, label, model top-5 and its decision history."""
    if not detail:
        return '<div class="muted">Pick a row (or type a product id) to see the product and its decisions.</div>'
    p = detail["product"]
    top5 = "".join(f"<li>{html.escape(category_label(c, tax))} <span class='muted'>{float(pr):.0%}</span></li>"
                   for c, pr in detail["top5"]) or "<li class='muted'>not scored by the live version</li>"
    rows = "".join(
        f"<tr{UNDONE_ROW if d['undone'] else ''}><td>{html.escape(str(d['created_at'])[:16].replace('T', ' '))}</td>"
        f"<td>{html.escape(d['reviewer'])}</td><td>{html.escape(d['action'])}{' (undone)' if d['undone'] else ''}</td>"
        f"<td>{html.escape(category_label(d['category'], tax)) if d['category'] is not None else ''}</td>"
        f"<td>{html.escape(d['comment'] or '')}</td></tr>" for d in detail["history"])
    label = html.escape(category_label(detail["label"], tax)) if detail["label"] is not None else "none"
    return (f'<div class="browse-detail" data-product="{html.escape(str(p["id"]))}">'
            f'<h3>{html.escape(p["title"]) or "<em>(no title)</em>"}</h3><div class="muted">product {html.escape(str(p["id"]))} · '
            f'label now: <b>{label}</b></div><p>{html.escape((p["description"] or "")[:600])}</p>'
            f'<b>Model top-5</b><ol>{top5}</ol><b>Decisions</b>'
            + (f'<table class="metrics"><tr><th>when (UTC)</th><th>who</th><th>action</th><th>category</th>'
               f'<th>comment</th></tr>{rows}</table>' if rows else '<div class="muted">none yet</div>') + "</div>")
