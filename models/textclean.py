"""Product text cleaning: raw Rakuten descriptions carry HTML tags and entities."""
from __future__ import annotations

import html
import re

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean_text(text: object) -> str:
    """Strip tags, decode entities (twice: the data holds `&amp;#39;`), collapse whitespace."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    s = str(text)
    s = html.unescape(html.unescape(s))
    s = _TAG.sub(" ", s)
    return _SPACE.sub(" ", s).strip()
