"""Exact explanations of the text model: which words of the shown title and description pushed a
product toward (or away from) a category, and by how much.

Why exact rather than LIME/SHAP: `models.text.TextClassifier` is linear. A category's decision
value is `x · w_c + b_c` over the TF-IDF word 1-2 grams (title + description), the title's
char_wb 3-5 grams and the pattern block, so each feature's contribution is its (L2-normalised,
sublinear) TF-IDF value times its weight, and the contributions plus the intercept add up to the
decision value exactly. Probabilities are `softmax(decision / temperature)` over the categories.

From features to the words a reviewer reads:
* every n-gram occurrence is located in the model's string (`fold(clean_text(...))`); a hash
  bucket's contribution is shared equally by its occurrences (sublinear TF keeps no per-occurrence
  term, and a rare hash collision merges two n-grams the same way the model does);
* a word unigram goes to its token, a bigram half to each token, a char n-gram spreads over its
  characters (the padding spaces of `char_wb` excluded);
* model characters map onto the displayed text (`labeler.views.plain`, which cleans HTML a little
  differently) by a character alignment of the folded strings; a character the alignment misses
  goes to its nearest aligned neighbour, so nothing is lost;
* characters are summed per displayed word (a whitespace-separated run). Contributions of text the
  display does not hold (the description cut) are reported as `hidden`.

The attribution matrix does not depend on the category: `attribute()` builds it once per product
and `TextAttribution.explain(code)` is then one sparse product per category (the card asks for 5).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction import FeatureHasher

from models.text import CHAR_BUCKETS, WORD_BUCKETS, TextClassifier, _analyze_chunk, _prepare, softmax
from models.text_features import _WORD
from models.predictor import resolve_code
from models.text_prior import PATTERN_NAMES
from models.textclean import fold

__all__ = ["ExplainError", "Span", "Contribution", "TextExplanation", "TextAttribution", "attribute",
           "explain_text", "SUMMARY_GROUPS"]

TITLE, DESCRIPTION = "title", "description"
SUMMARY_GROUPS = ("title words", "description", "patterns")
_RUN = re.compile(r"\S+")
_WORDCHAR = re.compile(r"\w")


class ExplainError(ValueError):
    """A category or model the explanation cannot be computed for (the message says which)."""


@dataclass(frozen=True)
class Span:
    """One displayed word (a whitespace-separated run) and its contribution to the category.

    start/end: character offsets in the displayed field's text, trimmed to the word's letters
    and digits (punctuation stuck to a word counts for it but is not tinted)."""
    field: str
    start: int
    end: int
    text: str
    contribution: float


@dataclass(frozen=True)
class Contribution:
    """A non-text feature (a marketplace pattern) with its value and contribution."""
    name: str
    value: float
    contribution: float


@dataclass(frozen=True, eq=False)
class TextExplanation:
    category: int
    title: str                       # the displayed texts the spans index into
    description: str
    words: tuple[tuple[str, int, int], ...]   # (field, start, end) of every displayed word, reading order
    contributions: np.ndarray        # (len(words),) each word's contribution
    patterns: tuple[Contribution, ...]
    hidden: float                    # text the model read that the display does not show
    intercept: float
    score: float                     # the model's decision value for the category
    probability: float               # softmax(scores / temperature) for the category
    has_text: bool = True

    @property
    def spans(self) -> tuple[Span, ...]:
        """Every displayed word with its contribution (zeros included), in reading order."""
        return tuple(Span(f, a, b, (self.title if f == TITLE else self.description)[a:b], float(c))
                     for (f, a, b), c in zip(self.words, self.contributions))

    @property
    def total(self) -> float:
        """Sum of every contribution plus the intercept: equals `score` up to float rounding."""
        return (float(self.contributions.sum()) + sum(p.contribution for p in self.patterns)
                + self.hidden + self.intercept)

    def field_total(self, name: str) -> float:
        mask = np.fromiter((f == name for f, _, _ in self.words), dtype=bool, count=len(self.words))
        return float(self.contributions[mask].sum())

    def groups(self) -> dict[str, float]:
        """Net contribution of the title words, the description (+ hidden text) and the patterns."""
        title = self.field_total(TITLE)
        desc = self.field_total(DESCRIPTION) + self.hidden
        return {"title words": title, "description": desc,
                "patterns": sum(p.contribution for p in self.patterns)}

    def shares(self) -> dict[str, float]:
        """Each group's signed share of the groups' absolute total (what the summary line shows)."""
        g = self.groups()
        total = sum(abs(v) for v in g.values())
        return {k: (v / total if total > 0 else 0.0) for k, v in g.items()}

    def summary(self) -> str:
        """'title words +78 %, description +15 %, patterns +7 %' (or why there is nothing)."""
        if not self.has_text:
            return "no title or description: the text model only has its category bias and patterns"
        return ", ".join(f"{k} {100 * v:+.0f} %" for k, v in self.shares().items())

    def top_words(self, k: int = 5, sign: int = 1) -> list[Span]:
        """The k displayed words pushing most toward (sign=1) or against (sign=-1) the category."""
        order = [i for i in np.argsort(-sign * self.contributions, kind="stable")[:k]
                 if sign * self.contributions[i] > 0]
        spans = self.spans
        return [spans[i] for i in order]


# -- where each n-gram occurrence sits in the model's string ---------------------------------------
def _word_occurrences(ft: str, fd: str) -> tuple[list[str], list[tuple[tuple[int, int, float], ...]]]:
    """Word 1-2 grams of `ft + " " + fd` (as `word_ngrams`) with their character parts.

    Parts are (start, end, share) in the joined string; a bigram has two parts of share 1/2."""
    joined = f"{ft} {fd}"
    tokens = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(joined)]
    grams = [t for t, _, _ in tokens]
    parts: list[tuple[tuple[int, int, float], ...]] = [((a, b, 1.0),) for _, a, b in tokens]
    for (t1, a1, b1), (t2, a2, b2) in zip(tokens, tokens[1:]):
        grams.append(f"{t1} {t2}")
        parts.append(((a1, b1, 0.5), (a2, b2, 0.5)))
    return grams, parts


def _char_occurrences(ft: str, lo: int = 3, hi: int = 5) -> tuple[list[str], list[tuple[tuple[int, int, float], ...]]]:
    """char_wb n-grams of the folded title (as `char_wb_ngrams`) with the characters each covers
    (padding spaces excluded)."""
    grams: list[str] = []
    parts: list[tuple[tuple[int, int, float], ...]] = []
    at = 0
    for word in ft.split():
        pos = ft.find(word, at)
        at = pos + len(word)
        padded = f" {word} "
        size = len(padded)
        for n in range(lo, hi + 1):
            if size < n:
                if n == lo:
                    grams.append(padded)
                    parts.append(((pos, pos + len(word), 1.0),))
                break
            for i in range(size - n + 1):
                grams.append(padded[i:i + n])
                a, b = max(i - 1, 0), min(i + n - 1, len(word))     # padded index k -> word index k-1
                parts.append(((pos + a, pos + b, 1.0),))
    return grams, parts


def _buckets(grams: list[str], n_features: int) -> np.ndarray:
    """The hash bucket of each n-gram, by the very hasher the model uses."""
    if not grams:
        return np.zeros(0, dtype=np.int64)
    hasher = FeatureHasher(n_features=n_features, input_type="string", alternate_sign=False)
    return hasher.transform([[g] for g in grams]).tocsr().indices.astype(np.int64)


# -- model string -> displayed text ------------------------------------------------------------------
def _folded_display(display: str) -> tuple[str, np.ndarray]:
    """fold(display) character by character, with the display index of each folded character."""
    whole = fold(display)
    if len(whole) == len(display):      # no character expanded (œ -> oe, ß -> ss): one to one
        return whole, np.arange(len(display), dtype=np.int64)
    pieces = [fold(ch) for ch in display]
    owner = np.repeat(np.arange(len(display)), [len(p) for p in pieces]).astype(np.int64)
    return "".join(pieces), owner


def _common_prefix(a: str, i: int, b: str, j: int) -> int:
    """Length of the common prefix of a[i:] and b[j:] (binary search on C-level slice compares)."""
    lo, hi = 0, min(len(a) - i, len(b) - j)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[i:i + mid] == b[j:j + mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


PROBE, WINDOW = 6, 400     # resynchronisation: characters that must match, how far ahead to look


def _align(model: str, display: str) -> np.ndarray:
    """Display index of each model character; -1 for text past the end of the display.

    Identical folded strings (the common case) map one to one. Otherwise runs of equal
    characters are matched and, at a difference, the walk resynchronises on the next PROBE model
    characters found within WINDOW display characters (display-only characters are skipped),
    else skips a model-only character. Linear in practice, unlike a full diff (difflib took
    0.5 s on a 2,000-character description). Unmatched characters inside the display take their
    nearest matched neighbour, so nothing is lost."""
    n = len(model)
    if n == 0 or not display:
        return np.full(n, -1, dtype=np.int64)
    folded, owner = _folded_display(display)
    if folded == model:
        return owner.copy()
    at = np.full(n, -1, dtype=np.int64)
    i = j = 0
    while i < n and j < len(folded):
        run = _common_prefix(model, i, folded, j)
        if run:
            at[i:i + run] = owner[j:j + run]
            i, j = i + run, j + run
            continue
        found = folded.find(model[i:i + PROBE], j + 1, j + WINDOW + PROBE)
        if found >= 0:
            j = found                 # the display holds characters the model does not
        else:
            i += 1                    # the model holds a character the display does not
    known = np.flatnonzero(at >= 0)
    if len(known) == 0:
        return at
    # the matched character before (or, at the start, the first one after)
    nearest = known[np.clip(np.searchsorted(known, np.arange(n), side="right") - 1, 0, None)]
    filled = np.where(at >= 0, at, at[nearest])
    if j >= len(folded) and i < n:    # the display ended first: the rest is not shown
        filled[known[-1] + 1:] = -1
    return filled


def _runs(display: str) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Whitespace-separated runs of the display (start, end), and each character's run index
    (whitespace belongs to the run before it, or the first run)."""
    runs = [(m.start(), m.end()) for m in _RUN.finditer(display)]
    owner = np.zeros(len(display), dtype=np.int64)
    if runs:
        starts = np.array([a for a, _ in runs])
        owner = np.clip(np.searchsorted(starts, np.arange(len(display)), side="right") - 1, 0, None)
    return runs, owner


def _trim(display: str, a: int, b: int) -> tuple[int, int]:
    """A run without its leading/trailing punctuation, when it has letters or digits."""
    chars = [i for i in range(a, b) if _WORDCHAR.match(display[i])]
    return (chars[0], chars[-1] + 1) if chars else (a, b)


# -- the attribution --------------------------------------------------------------------------------
@dataclass
class TextAttribution:
    """Category-independent part of a product's explanation (see the module docstring).

    matrix: (n_words + 1, n_present) sparse: displayed word (last row: hidden text) <- present
    text feature column; values: (n_present,) the product's feature values at `columns`."""
    model: TextClassifier
    title: str
    description: str
    words: list[tuple[str, int, int]]            # (field, start, end) per displayed word, trimmed
    columns: np.ndarray
    values: np.ndarray
    matrix: sp.csr_matrix
    pattern_values: np.ndarray
    pattern_offset: int
    scores: np.ndarray                            # (n_classes,) decision values
    has_text: bool = True
    known_codes: Sequence | None = None           # the version's categories (default: the model's classes_)
    _cache: dict = field(default_factory=dict, repr=False)

    def class_index(self, category: int | str) -> int:
        classes = [c.item() if hasattr(c, "item") else c for c in self.model.classes_]
        known = list(self.known_codes) if self.known_codes is not None else classes
        code = resolve_code(category, known)
        if code is None:
            raise ExplainError(f"unknown category {category!r}; expected one of the {len(known)} category codes "
                               f"(e.g. {known[0]})")
        if code not in classes:
            raise ExplainError(f"the text model of this version was not trained on category {code}: "
                               "no weights to explain")
        return classes.index(code)

    def top_category(self) -> int | str:
        top = self.model.classes_[int(np.argmax(self.scores))]
        return top.item() if hasattr(top, "item") else top

    def explain(self, category: int | str) -> TextExplanation:
        """The contributions toward `category` (any category the model knows, not only the top-1)."""
        k = self.class_index(category)
        if k in self._cache:
            return self._cache[k]
        coef = self.model.coef_[k]
        per_word = self.matrix @ (self.values * coef[self.columns].astype(np.float64))
        weights = coef[self.pattern_offset:self.pattern_offset + len(self.pattern_values)].astype(np.float64)
        patterns = tuple(Contribution(name, float(v), float(v * w))
                         for name, v, w in zip(PATTERN_NAMES, self.pattern_values, weights))
        prob = softmax(self.scores[None, :], self.model.temperature_)[0, k]
        out = TextExplanation(int(self.model.classes_[k]), self.title, self.description, tuple(self.words),
                              np.asarray(per_word[:-1]), patterns,
                              float(per_word[-1]), float(self.model.intercept_[k]), float(self.scores[k]),
                              float(prob), self.has_text)
        self._cache[k] = out
        return out


def _slots(columns: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Position in `columns` (the product's present columns) of each occurrence's column; -1 for
    an n-gram the vectorizer's filters dropped."""
    if len(columns) == 0:
        return np.full(len(cols), -1, dtype=np.int64)
    order = np.argsort(columns, kind="stable")
    ranked = columns[order]
    at = np.clip(np.searchsorted(ranked, cols), 0, len(ranked) - 1)
    return np.where((cols >= 0) & (ranked[at] == cols), order[at], -1)


def _word_index(char_map: np.ndarray, owner: np.ndarray, offset: int, hidden: int) -> np.ndarray:
    """Displayed-word row of each model character (`hidden` where it maps past the display)."""
    out = np.full(len(char_map), hidden, dtype=np.int64)
    ok = char_map >= 0
    out[ok] = owner[char_map[ok]] + offset
    return out


def _characters(parts: list, occ_slot: np.ndarray, n_occ: np.ndarray,
                in_joined: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (model character, share of its column's value) of every kept occurrence.

    Returns (position, weight, column slot, whether the position is in the joined title +
    description string of the word n-grams rather than the title alone); per column the weights
    sum to 1."""
    starts, ends, shares, slots, joined = [], [], [], [], []
    for i, ps in enumerate(parts):
        s = occ_slot[i]
        if s < 0:
            continue
        for a, b, share in ps:
            starts.append(a)
            ends.append(b)
            shares.append(share / n_occ[s])
            slots.append(s)
            joined.append(in_joined[i])
    if not starts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(0), empty, np.zeros(0, dtype=bool)
    starts_a = np.asarray(starts, dtype=np.int64)
    lengths = np.maximum(np.asarray(ends, dtype=np.int64) - starts_a, 1)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    pos = np.repeat(starts_a, lengths) + (np.arange(lengths.sum()) - first)
    return (pos, np.repeat(np.asarray(shares) / lengths, lengths), np.repeat(np.asarray(slots, dtype=np.int64), lengths),
            np.repeat(np.asarray(joined, dtype=bool), lengths))


def attribute(model: TextClassifier, title: object, description: object, *,
              display_title: str | None = None, display_description: str | None = None,
              known_codes: Sequence | None = None) -> TextAttribution:
    """Build a product's attribution for `model` (a fitted `TextClassifier`).

    display_*: the texts the reader sees (default: the model's own cleaned texts); spans index
    into them. Raises ExplainError when the model is not a fitted TextClassifier."""
    if not hasattr(model, "coef_") or not hasattr(model, "word_"):
        raise ExplainError("this model version has no fitted hashed TF-IDF text model to explain")
    c = model.config
    tc, dc, _ = _prepare([title], [description], c.description_chars)
    ft, fd = fold(tc[0]), fold(dc[0])
    cw, cc, dense = _analyze_chunk([title], [description], c.description_chars, True)
    x = model._design(model.word_, model.char_, cw, cc, dense).tocsr()
    # only the product's own columns: converting the whole (27, ~280k) weight matrix costs 10 ms
    scores = model.coef_[:, x.indices].astype(np.float64) @ x.data.astype(np.float64) + model.intercept_
    n_word, n_char = model.word_.n_columns, model.char_.n_columns
    display_title = tc[0] if display_title is None else display_title
    display_description = dc[0] if display_description is None else display_description

    # occurrences -> feature columns
    w_grams, w_parts = _word_occurrences(ft, fd)
    c_grams, c_parts = _char_occurrences(ft)
    w_cols = model.word_._remap_table()[_buckets(w_grams, WORD_BUCKETS)]
    c_cols = model.char_._remap_table()[_buckets(c_grams, CHAR_BUCKETS)]
    cols = np.concatenate([w_cols, np.where(c_cols >= 0, c_cols + n_word, -1)])
    parts = w_parts + c_parts
    in_joined = np.r_[np.ones(len(w_parts), bool), np.zeros(len(c_parts), bool)]

    # each present column's value shared by its occurrences
    row = x[0]
    text_mask = row.indices < n_word + n_char
    columns, values = row.indices[text_mask].astype(np.int64), row.data[text_mask].astype(np.float64)
    occ_slot = _slots(columns, cols)
    n_occ = np.bincount(occ_slot[occ_slot >= 0], minlength=len(columns)).astype(np.float64)

    # model characters -> displayed words (title words first, then the description's; last: hidden)
    t_runs, t_owner = _runs(display_title)
    d_runs, d_owner = _runs(display_description)
    hidden_row = len(t_runs) + len(d_runs)
    title_word = _word_index(_align(ft, display_title), t_owner, 0, hidden_row)
    desc_word = _word_index(_align(fd, display_description), d_owner, len(t_runs), hidden_row)
    pos, weight, slot, joined = _characters(parts, occ_slot, n_occ, in_joined)
    in_desc = joined & (pos > len(ft))      # past the title and its separator in the joined string
    target = np.where(in_desc, desc_word[np.clip(pos - len(ft) - 1, 0, len(desc_word) - 1)] if len(fd) else hidden_row,
                      title_word[np.clip(pos, 0, len(title_word) - 1)] if len(ft) else hidden_row)
    matrix = sp.csr_matrix((weight, (target, slot)), shape=(hidden_row + 1, len(columns)))
    # a present column no occurrence was found for (never expected): its value goes to `hidden`
    orphan = np.flatnonzero(n_occ == 0)
    if len(orphan):
        matrix = matrix + sp.csr_matrix((np.ones(len(orphan)), (np.full(len(orphan), hidden_row), orphan)),
                                        shape=matrix.shape)
    words = [(TITLE, *_trim(display_title, a, b)) for a, b in t_runs] + \
            [(DESCRIPTION, *_trim(display_description, a, b)) for a, b in d_runs]
    pattern_values = (c.pattern_weight * dense[0]).astype(np.float64) if c.pattern_weight > 0 else np.zeros(0)
    return TextAttribution(model, display_title, display_description, words, columns, values,
                           matrix.tocsr(), pattern_values, n_word + n_char, scores,
                           has_text=bool(ft.strip() or fd.strip()), known_codes=known_codes)


def explain_text(model: TextClassifier, title: object, description: object, category: int | str | None = None,
                 **display: str | None) -> TextExplanation:
    """One category's explanation (default: the text model's own top-1)."""
    att = attribute(model, title, description, **display)
    return att.explain(att.top_category() if category is None else category)


def decision_scores(model: TextClassifier, titles: Sequence, descriptions: Sequence) -> np.ndarray:
    """(n, n_classes) decision values of the fitted model (no predict-time refit): what is explained."""
    return model.decision_function(pd.DataFrame({"title": list(titles), "description": list(descriptions)}))


# -- faithfulness: do the words it names matter more than any words? --------------------------------
@dataclass(frozen=True)
class DeletionResult:
    """Per product: probability drop of the predicted category after deleting the top-k words the
    explanation names, and after deleting k random words (same product, seeded)."""
    top_drop: np.ndarray
    random_drop: np.ndarray
    skipped: int                      # products with fewer than 2k displayed words

    @property
    def win_rate(self) -> float:
        return float((self.top_drop > self.random_drop).mean()) if len(self.top_drop) else 0.0


def _without(text: str, cuts: list[tuple[int, int]]) -> str:
    out, at = [], 0
    for a, b in sorted(cuts):
        out.append(text[at:a])
        at = b
    out.append(text[at:])
    return " ".join("".join(out).split())


def deletion_check(model: TextClassifier, titles: Sequence, descriptions: Sequence, *, k: int = 5,
                   seed: int = 0) -> DeletionResult:
    """Delete each product's top-k contributing displayed words (toward its predicted category,
    title + description) vs k random ones; the model's probability for that category is compared
    before and after. Uses the fitted model as is (no predict-time refit)."""
    rng = np.random.default_rng(seed)
    base_t, base_d, top_t, top_d, rnd_t, rnd_d, cats = [], [], [], [], [], [], []
    skipped = 0
    for title, desc in zip(titles, descriptions):
        att = attribute(model, title, desc)
        exp = att.explain(att.top_category())
        if len(exp.words) < 2 * k:
            skipped += 1
            continue
        order = np.argsort(-exp.contributions, kind="stable")[:k]
        chosen = rng.choice(len(exp.words), size=k, replace=False)
        for picked, out_t, out_d in ((order, top_t, top_d), (chosen, rnd_t, rnd_d)):
            cut = {TITLE: [], DESCRIPTION: []}
            for i in picked:
                f, a, b = exp.words[i]
                cut[f].append((a, b))
            out_t.append(_without(exp.title, cut[TITLE]))
            out_d.append(_without(exp.description, cut[DESCRIPTION]))
        base_t.append(exp.title)
        base_d.append(exp.description)
        cats.append(att.class_index(exp.category))
    if not cats:
        return DeletionResult(np.zeros(0), np.zeros(0), skipped)
    rows = np.arange(len(cats))

    def prob(t: list, d: list) -> np.ndarray:
        return softmax(decision_scores(model, t, d), model.temperature_)[rows, cats]

    p0 = prob(base_t, base_d)
    return DeletionResult(p0 - prob(top_t, top_d), p0 - prob(rnd_t, rnd_d), skipped)
