"""Product descriptions as a safe subset of HTML: paragraphs, line breaks, lists, bold, italics.

Marketplace descriptions arrive as HTML (`<p>`, `<ul><li>`, `<strong>`...), sometimes with their
entities encoded twice (`&amp;#39;`) or mangled (`& nbsp;`). Flattening them to one line loses
the structure a reviewer reads; passing them through would let product data inject markup. So the
markup is rebuilt here from parsed HTML (`html.parser`): only the tags in ALLOWED, never an
attribute, everything else as escaped text; script-like elements are dropped with their content;
what is left open is closed. Nothing here touches Gradio or the workspace.
"""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser

ALLOWED = frozenset({"p", "br", "ul", "ol", "li", "b", "strong", "i", "em"})
BLOCKS = {"div": "p", "h1": "p", "h2": "p", "h3": "p", "h4": "p", "h5": "p", "h6": "p", "tr": "p",
          "table": "p", "section": "p", "article": "p", "blockquote": "p", "dd": "p", "dt": "p"}
DROPPED = frozenset({"script", "style", "iframe", "object", "embed", "svg", "math", "template",
                     "noscript", "head", "title", "textarea", "select", "button", "form"})
MAX_DEPTH = 12           # deeper nesting is flattened: no product needs more
_TAG = re.compile(r"</?[a-zA-Z!?][^<>]*>")        # a tag spelt with entities, once decoded
# entities mangled by a space ("& nbsp;", "&amp; nbsp;") or left without their "&" ("nbsp;")
_MANGLED = re.compile(r"&\s+(nbsp|amp|lt|gt|quot|apos|#\d{2,5});?|(?<![&\w])nbsp;")
_SPACE = re.compile(r"[ \t\r\n\f\v\u00a0]+")


def _entities(s: str) -> str:
    """Decode what the parser left: double-encoded entities and the mangled ones."""
    s = html.unescape(s)
    return _MANGLED.sub(lambda m: " " if (m.group(1) or "nbsp") == "nbsp" else html.unescape(f"&{m.group(1)};"), s)


class _Builder(HTMLParser):
    def __init__(self, limit: int | None):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[tuple[str, int]] = []      # (tag, index in out where it opened)
        self.dropping = 0
        self.left = limit
        self.cut = False
        self.brs = 0                               # consecutive <br> (three in a row say nothing more)

    # -- structure ------------------------------------------------------------------------------
    def _start(self, tag: str) -> None:
        if tag in ("p", "ul", "ol"):
            self._close_until({"p"}, stop_at={"li", "ul", "ol"})   # a block inside a <p> ends it
        if tag == "li":
            self._close_until({"li", "p"}, stop_at={"ul", "ol"})
            if not any(t in ("ul", "ol") for t, _ in self.open):
                self._start("ul")
        if len(self.open) >= MAX_DEPTH:
            return
        self.open.append((tag, len(self.out)))
        self.out.append(f"<{tag}>")
        self.brs = 0

    def _end(self, tag: str) -> None:
        if not any(t == tag for t, _ in self.open):
            return                                 # a stray end tag
        while self.open:
            t, at = self.open.pop()
            if t in ("p", "li", "ul", "ol") and not self._has_text(at):
                del self.out[at:]                  # an empty paragraph or list says nothing
            else:
                self.out.append(f"</{t}>")
            if t == tag:
                return

    def _close_until(self, tags: set[str], stop_at: set[str]) -> None:
        for t, _ in reversed(self.open):
            if t in stop_at:
                return
            if t in tags:
                self._end(t)
                return

    def _has_text(self, at: int) -> bool:
        return any(not piece.startswith("<") and piece.strip() for piece in self.out[at + 1:])

    # -- parser callbacks -----------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in DROPPED:
            self.dropping += 1
        elif self.dropping or self.cut:
            return
        elif tag == "br":
            self.brs += 1
            if self.brs <= 2 and self.out:
                self.out.append("<br>")
        elif tag in ALLOWED:
            self._start(tag)
        elif tag in BLOCKS:
            self._start(BLOCKS[tag]) if not self.open or self.open[-1][0] != "li" else None

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag not in DROPPED:
            self.handle_starttag(tag, attrs)
            if tag != "br":
                self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED:
            self.dropping = max(0, self.dropping - 1)
        elif self.dropping:
            return
        elif tag in ALLOWED and tag != "br":
            self._end(tag)
        elif tag in BLOCKS:
            self._end(BLOCKS[tag])

    def handle_data(self, data: str) -> None:
        if self.dropping or self.cut:
            return
        s = _SPACE.sub(" ", _TAG.sub(" ", _entities(data)))
        if not s.strip() and (not self.out or self.out[-1].startswith("<")):
            return
        if self.left is not None:
            if len(s) > self.left:
                s, self.cut = s[:self.left].rstrip() + " …", True
            self.left -= len(s)
        self.out.append(html.escape(s, quote=False))
        if s.strip():
            self.brs = 0

    def result(self) -> str:
        self.close()
        while self.open:
            self._end(self.open[-1][0])
        while self.out and self.out[-1] == "<br>":
            self.out.pop()
        return "".join(self.out).strip()


def rich_text(value: object, limit: int | None = None) -> str:
    """Product HTML as safe markup: ALLOWED tags without attributes, entities decoded, text escaped,
    cut after `limit` visible characters (with an ellipsis). '' for nothing."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    builder = _Builder(limit)
    builder.feed(str(value))
    return builder.result()


_TINT = re.compile(r'<span class="xw ([^"]*)">(.*?)</span>', re.S)
_PIECES = re.compile(r"(<[^>]*>)")
_RESYNC = 8            # characters looked up to find our place again after a difference
_WINDOW = 200          # ...at most this far ahead


def _tinted_chars(tinted: str) -> tuple[str, list[str]]:
    """The text of a tinted description (`views.highlighted_text_html`) without spaces, and each
    character's tint classes ('' untinted)."""
    chars, classes, at = [], [], 0
    for m in _TINT.finditer(tinted):
        for piece, cls in ((tinted[at:m.start()], ""), (m.group(2), m.group(1))):
            for ch in html.unescape(piece):
                if not ch.isspace():
                    chars.append(ch)
                    classes.append(cls)
        at = m.end()
    for ch in html.unescape(tinted[at:]):
        if not ch.isspace():
            chars.append(ch)
            classes.append("")
    return "".join(chars), classes


def overlay_tints(rich: str, tinted: str) -> str:
    """The text model's word tints (`<span class="xw ...">` over the flat description) laid over
    the rich description's paragraphs and lists: both show the same words in the same order, so
    the characters are matched one by one, spaces aside (a stretch only one side has, e.g. a
    script's text, is skipped and matching resumes after it). Each run of same-tint characters
    inside a text piece becomes one span; tags are left as they are."""
    ref, tints = _tinted_chars(tinted)
    if not ref:
        return rich
    out, j = [], 0
    for piece in _PIECES.split(rich):
        if not piece or piece.startswith("<"):
            out.append(piece)
            continue
        text_ = html.unescape(piece)
        runs: list[tuple[str, str]] = []        # (text, classes)
        for i, ch in enumerate(text_):
            cls = ""
            if not ch.isspace():
                if j < len(ref) and ref[j] != ch:   # a difference: find our place again
                    ahead = "".join(c for c in text_[i:i + 3 * _RESYNC] if not c.isspace())[:_RESYNC]
                    k = ref.find(ahead, j, j + _WINDOW + len(ahead)) if ahead else -1
                    j = k if k >= 0 else j
                if j < len(ref) and ref[j] == ch:
                    cls = tints[j]
                    j += 1
            if runs and runs[-1][1] == cls and not (cls and ch.isspace()):
                runs[-1] = (runs[-1][0] + ch, cls)
            else:
                runs.append((ch, cls))
        out.extend(f'<span class="xw {html.escape(c, quote=True)}">{html.escape(t, quote=False)}</span>' if c
                   else html.escape(t, quote=False) for t, c in runs)
    return "".join(out)
