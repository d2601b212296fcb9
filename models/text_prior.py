"""What the labelled products do not show the text model: the taxonomy and marketplace patterns.

* Category pseudo-documents: every keyword of a category (for the Rakuten taxonomy, French plus
  the English/German words marketplace titles use), and its name + description, become one short
  training product of that category, down-weighted. A word that no labelled title holds
  ("trampoline", "quadricoptère") still gets a weight toward its category. The categories come in
  as a parameter (`CategoryText`, from any taxonomy; codes may be ints or strings): this module
  reads no taxonomy of its own, and without categories there is no prior.
* Pattern features: a few dense, generalising signals that bag-of-n-grams on lowercased, cleaned
  text cannot see or needs many examples to learn: numbering and dates (magazines), "lot de N",
  sizes (furniture, linen), downloads, title casing (some sellers write lowercase titles), the
  language of title and description (used books are often English or German), raw HTML.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from models.textclean import fold


@dataclass(frozen=True)
class CategoryText:
    """What the text prior reads of one category: its code (int or str, as the labels `y` hold
    it), name, description and optional keywords."""
    code: Any
    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()


def category_texts(rows: Iterable[dict]) -> tuple[CategoryText, ...]:
    """`CategoryText`s from taxonomy rows ({code, name, description, keywords?}); an integer-like
    code becomes an int so it matches integer labels."""
    out = []
    for row in rows:
        code = row["code"]
        if isinstance(code, str) and code.strip().lstrip("-").isdigit():
            code = int(code)
        out.append(CategoryText(code, str(row.get("name", "")), str(row.get("description", "") or ""),
                                tuple(str(k) for k in row.get("keywords", ()) or ())))
    return tuple(out)


def read_category_texts(path: Path | str) -> tuple[CategoryText, ...]:
    """`CategoryText`s of a taxonomy JSON file (a list of rows as `category_texts` takes)."""
    return category_texts(json.loads(Path(path).read_text(encoding="utf-8")))


def category_documents(categories: Sequence[CategoryText] | None, codes: Iterable | None = None
                       ) -> tuple[list[str], np.ndarray]:
    """Pseudo-product titles and their category codes, for the given codes (default: all).

    One document per keyword, plus one 'name. description' document per category. No
    categories: no documents (the prior is off).
    """
    wanted = None if codes is None else set(codes)
    titles: list[str] = []
    labels: list = []
    for cat in categories or ():
        if wanted is not None and cat.code not in wanted:
            continue
        for keyword in cat.keywords:
            titles.append(str(keyword))
            labels.append(cat.code)
        titles.append(f"{cat.name}. {cat.description}")
        labels.append(cat.code)
    return titles, np.asarray(labels)


_MONTHS = "janvier|fevrier|mars|avril|mai|juin|juillet|aout|septembre|octobre|novembre|decembre"
# Each pattern runs over the newline-joined corpus of a batch (`_per_document`): `\s` is narrowed to
# a space that is not the newline, and `$` means a document's end (MULTILINE), so no match spans two
# products and a product's features never depend on the batch it comes in.
TITLE_PATTERNS: dict[str, re.Pattern] = {name: re.compile(p.replace(r"\s", r"[^\S\n]"), re.MULTILINE)
                                         for name, p in {
    "download": r"telecharg",
    "issue_number": r"\bn°\s*\d+|\bno\.?\s*\d+\b|\bnumero\s*\d+",
    "date": rf"\b\d{{1,2}}/\d{{1,2}}/\d{{2,4}}\b|\b\d{{1,2}}\s+({_MONTHS})\b",
    "year": r"\b(1[5-9]\d\d|20[0-2]\d)\b",
    "lot": r"\blot\b",
    "lot_of_n": r"\blot\s+(de\s+)?\d+|\b\d+\s+(livres|mangas|bd|jeux|tomes)\b",
    "size_axb": r"\b\d+(\.\d+)?\s*(cm|mm)?\s*[x*]\s*\d+",
    "volume_number": r"\b(tome|t|vol|volume)\.?\s*\d+",
    "plus": r"\+",
    "import": r"\bimport\b",
    "pieces": r"\b\d+\s*(pcs|pieces|pc|pcs\.)\b",
    "weight_volume": r"\b\d+(\.\d+)?\s*(g|kg|ml|cl|l)\b",
    "length": r"\b\d+(\.\d+)?\s*(cm|mm|m)\b",
    "inches": r"\bpouces\b|\binch\b|\d\"",
    "edition": r"\bedition\b",
    "truncated": r"\.\.\.$|…$",
    "reference_code": r"\b\d{5,}\b|\b[a-z]*\d+[a-z]+\d*[a-z]*\b",
}.items()}
_EN = frozenset("the of and to in with for by from on is my your you how what this that an at it be are".split())
_DE = frozenset("der die das und mit für fur von zu im den ein eine ist auf des dem nicht sie ich wir".split())
_FR = frozenset("le la les de des du et en un une pour au aux sur avec dans par est ce cette son sa ses".split())
PATTERN_NAMES: tuple[str, ...] = (
    *TITLE_PATTERNS, "title_lowercase_words", "title_uppercase_words",
    "title_en", "title_de", "title_fr", "desc_en", "desc_de", "desc_fr",
    "has_description", "description_length", "title_length", "raw_html_tags", "raw_entities")


def _per_document(pattern: re.Pattern, corpus: str, starts: np.ndarray) -> np.ndarray:
    """Matches of `pattern` in each document of a newline-joined corpus (one C-level scan)."""
    hits = np.fromiter((m.start() for m in pattern.finditer(corpus)), dtype=np.int64)
    return np.bincount(np.searchsorted(starts, hits, side="right") - 1, minlength=len(starts)).astype(np.float32)


def _joined(texts: list[str]) -> tuple[str, np.ndarray]:
    texts = [t.replace("\n", " ") for t in texts]
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    return "\n".join(texts), np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _words(words: frozenset[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, words))) + r")\b")


_STOPWORDS = {"en": _words(_EN), "de": _words(_DE), "fr": _words(_FR)}
_LONG_WORD = re.compile(r"[^\W\d_]{3,}")
_LOWER_WORD = re.compile(r"(?<![^\W\d_])[^\W\d_](?<=[^\W\d_A-ZÀ-ÖØ-Þ])[^\W\d_]{2,}")
_UPPER_WORD = re.compile(r"(?<![^\W\d_])[A-ZÀ-ÖØ-Þ]{3,}(?![^\W\d_])")


def pattern_features(titles: list[str], descriptions: list[str], raw_descriptions: list[str]) -> np.ndarray:
    """(n, len(PATTERN_NAMES)) float32 in [0, 1]; titles/descriptions: cleaned text.

    Each pattern is one regex scan of the whole newline-joined corpus, not one call per product:
    85k products take about a second.
    """
    n = len(titles)
    if n == 0:
        return np.zeros((0, len(PATTERN_NAMES)), dtype=np.float32)
    title_corpus, title_starts = _joined(titles)
    folded, _ = _joined([fold(t) for t in titles])
    desc_corpus, desc_starts = _joined([d[:300].lower() for d in descriptions])  # enough to tell the language
    cols = [np.minimum(_per_document(p, folded, title_starts), 3) / 3 for p in TITLE_PATTERNS.values()]
    title_lower = title_corpus.lower()
    long_words = np.maximum(_per_document(_LONG_WORD, title_corpus, title_starts), 1)
    cols += [_per_document(_LOWER_WORD, title_corpus, title_starts) / long_words,
             _per_document(_UPPER_WORD, title_corpus, title_starts) / long_words]
    desc_prefixes = [d[:300] for d in descriptions]
    for texts, lower, starts in ((titles, title_lower, title_starts), (desc_prefixes, desc_corpus, desc_starts)):
        n_words = np.maximum(np.fromiter((len(t.split()) for t in texts), dtype=np.float32, count=n), 1)
        cols += [_per_document(_STOPWORDS[lang], lower, starts) / n_words for lang in ("en", "de", "fr")]
    desc_len = np.fromiter((len(d) for d in descriptions), dtype=np.float32, count=n)
    title_len = np.fromiter((len(t) for t in titles), dtype=np.float32, count=n)
    cols += [(desc_len > 0).astype(np.float32), np.minimum(np.log1p(desc_len) / 8, 1.0),
             np.minimum(np.log1p(title_len) / 6, 1.0),
             np.fromiter(("<" in r and ">" in r for r in raw_descriptions), dtype=np.float32, count=n),
             np.fromiter(("&" in r for r in raw_descriptions), dtype=np.float32, count=n)]
    return np.column_stack(cols).astype(np.float32)
