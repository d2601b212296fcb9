"""Category guides: what a category is (its taxonomy description) and what it looks like (its
example products: the reviewed ones the live model is surest of, whose label is that category).

Plain Python over `store.guides`; the app shows a guide on demand (key G on the card and the
grid, labeler/app_guides.py). Examples are only products a human put in the category and the
label rule still keeps there, so a guide never shows a product an admin ruled elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass

from labeler import taxonomy
from store import guides as sql
from store.workspace import Workspace

N_EXAMPLES = 6


class GuideError(ValueError):
    """An unknown category asked for; the message lists what is expected."""


@dataclass(frozen=True)
class Example:
    product_id: str
    title: str
    image_path: str | None
    prob: float | None              # the live model's probability of the category (None: not scored)


@dataclass(frozen=True)
class Guide:
    code: int
    name: str
    description: str
    examples: tuple[Example, ...]
    shown_code: str = ""        # the code as the workspace's taxonomy writes it ('2583', 'toys')


def category_code(value: object, tax: taxonomy.Taxonomy | None = None) -> int:
    """A category's key from its code ('2583' / 2583 / 'toys') in `tax` (the workspace's
    taxonomy; Rakuten's by default); GuideError naming the value otherwise."""
    tax = tax or taxonomy.default()
    key = tax.parse(value)
    if key is None:
        raise GuideError(f"unknown category {value!r}: expected one of the {len(tax)} category codes "
                         f"({tax.describe_codes(5)})")
    return key


def guide(ws: Workspace, category: object, n: int = N_EXAMPLES) -> Guide:
    """The category's description and up to `n` examples, surest first."""
    tax = taxonomy.of(ws)
    code = category_code(category, tax)
    cat = tax[code]
    rows = sql.candidates(ws, code, ws.live_version(), limit=4 * n)
    labels = sql.labels_of(ws, [r["id"] for r in rows])
    examples = tuple(Example(r["id"], r["title"], r["image_path"], r["prob"])
                     for r in rows if labels.get(r["id"]) == code)[:n]
    return Guide(code, cat.name, cat.description, examples, cat.code)


def all_guides(ws: Workspace, n: int = N_EXAMPLES) -> list[Guide]:
    """Every category's guide, by code."""
    return [guide(ws, key, n) for key in taxonomy.of(ws).keys()]
