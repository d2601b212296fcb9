"""Product text cleaning: raw Rakuten descriptions carry HTML tags and (double-escaped) entities.

`clean_text` makes display-grade text (case and accents kept); `fold` makes the lowercase,
accent-free form the vectorizers read. Both are pure functions of one string so they can run
in worker processes.
"""
from __future__ import annotations

import html
import re
import unicodedata

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
# "&amp;#39;" unescapes to "&#39;" (fine), but the data also holds "&amp; amp;" and "&amp; nbsp":
# an entity whose name was split from its ampersand by a space. Glue those back before decoding.
_SPLIT_ENTITY = re.compile(r"&\s+(amp|nbsp|quot|lt|gt|apos|#\d{1,5}|[a-z]{2,6}(?=;));?", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\ufeff]")


def is_missing(value: object) -> bool:
    """None, NaN, pd.NA and NaT count as an empty text."""
    if value is None:
        return True
    if isinstance(value, str):
        return False
    try:
        return bool(value != value)
    except (TypeError, ValueError):   # pd.NA refuses to be a bool
        return True


def clean_text(text: object) -> str:
    """Strip tags, decode entities (twice: the data holds `&amp;#39;`), collapse whitespace.

    None/NaN give "" so an empty description never becomes the word "nan".
    """
    if is_missing(text):
        return ""
    s = str(text)
    if "&" in s:
        s = html.unescape(s)
        s = _SPLIT_ENTITY.sub(lambda m: f"&{m.group(1)};", s)
        s = html.unescape(s)
    if "<" in s:
        s = _TAG.sub(" ", s)
    s = _CONTROL.sub("", s)
    return _SPACE.sub(" ", s.replace("\xa0", " ")).strip()


def has_text(title: object, description: object = "") -> bool:
    """Whether a product has words a text model can read: a title or a description that is not
    empty once tags, entities and spaces are removed. A product with only a photo has none (the
    importer, the bundle and the fusion then rely on its image alone)."""
    return bool(clean_text(title) or clean_text(description))


def _fold_table() -> dict[int, str]:
    """Accent folding as one str.translate table (10x faster than NFKD per document)."""
    table: dict[int, str] = {}
    for code in range(0x80, 0x2000):
        ch = chr(code)
        low = ch.lower()
        base = "".join(c for c in unicodedata.normalize("NFKD", low) if not unicodedata.combining(c))
        if base != ch:
            table[code] = base
    table.update({ord("œ"): "oe", ord("Œ"): "oe", ord("æ"): "ae", ord("Æ"): "ae", ord("ß"): "ss",
                  ord("’"): "'", ord("‘"): "'", ord("´"): "'", ord("`"): "'", ord("«"): '"', ord("»"): '"',
                  ord("×"): "x", ord("–"): "-", ord("—"): "-", ord("\xa0"): " "})
    return table


_FOLD = _fold_table()


def fold(text: str) -> str:
    """Lowercase and strip accents: 'Élève Œuvre' -> 'eleve oeuvre'."""
    return text.lower().translate(_FOLD)
