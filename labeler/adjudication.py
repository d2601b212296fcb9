"""Adjudication: products whose reviewers disagree, the admin's final ruling, and how well each
pair of reviewers agrees (Cohen's kappa).

Plain Python over `store.adjudication` (no Gradio): the CLI (`labeler adjudicate`) and the app's
Adjudication tab (labeler/app_adjudication.py) call the same functions. Who may rule is checked
at those edges (the app's admin check, the CLI's --auth file); here the ruling is validated
(known product, known category, a name) and recorded as an append-only decision that the label
rule takes as final (store/labels.py).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from labeler import taxonomy
from store import adjudication as sql
from store.workspace import Workspace


class AdjudicationError(ValueError):
    """A ruling that cannot be recorded; the message says what was received and the fix."""


@dataclass(frozen=True)
class Vote:
    reviewer: str
    category: int
    comment: str
    created_at: str
    action: str


@dataclass(frozen=True)
class Dispute:
    """One product whose reviewers' effective decisions name different categories."""
    product_id: str
    title: str
    image_path: str | None
    imported: int | None
    model_top1: int | None
    model_prob: float | None
    votes: tuple[Vote, ...]
    ruling: Vote | None = None          # the admin's ruling in effect, if any

    @property
    def categories(self) -> list[int]:
        return sorted({v.category for v in self.votes})


@dataclass(frozen=True)
class PairAgreement:
    """Two reviewers over the products both decided: n, observed agreement, Cohen's kappa."""
    a: str
    b: str
    n: int
    agreement: float
    kappa: float | None                 # None: undefined (one category only, chance agreement 1)


@dataclass
class Overview:
    disputes: list[Dispute] = field(default_factory=list)
    pairs: list[PairAgreement] = field(default_factory=list)
    n_ruled: int = 0                    # disputes already ruled (left out unless include_ruled)


def cohen_kappa(x: list[int], y: list[int]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: (p_o - p_e) / (1 - p_e).

    None when chance agreement p_e is 1 (both raters used one and the same category): kappa is
    undefined there, not perfect."""
    if len(x) != len(y):
        raise ValueError(f"two raters need the same items: {len(x)} labels vs {len(y)}")
    n = len(x)
    if n == 0:
        return None
    p_o = sum(a == b for a, b in zip(x, y)) / n
    cats = set(x) | set(y)
    p_e = sum((x.count(c) / n) * (y.count(c) / n) for c in cats)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def pair_agreements(ws: Workspace) -> list[PairAgreement]:
    """Kappa per reviewer pair over the products both of them decided (rulings left out),
    pairs with most shared products first."""
    by_reviewer: dict[str, dict[str, int]] = {}
    for r in sql.votes(ws):
        by_reviewer.setdefault(r["reviewer"], {})[r["product_id"]] = int(r["category"])
    out = []
    for a, b in itertools.combinations(sorted(by_reviewer), 2):
        shared = sorted(set(by_reviewer[a]) & set(by_reviewer[b]))
        if not shared:
            continue
        xa = [by_reviewer[a][p] for p in shared]
        xb = [by_reviewer[b][p] for p in shared]
        agree = sum(i == j for i, j in zip(xa, xb)) / len(shared)
        out.append(PairAgreement(a, b, len(shared), agree, cohen_kappa(xa, xb)))
    return sorted(out, key=lambda p: (-p.n, p.a, p.b))


def _vote(r: dict) -> Vote:
    return Vote(r["reviewer"], int(r["category"]), r["comment"] or "", r["created_at"], r.get("action", ""))


def disputes(ws: Workspace, *, include_ruled: bool = False, limit: int | None = None) -> tuple[list[Dispute], int]:
    """Products whose reviewers disagree (oldest product id first); returns (disputes, n ruled).

    Ruled ones are left out unless include_ruled: the admin's word is final for them."""
    grouped: dict[str, list[dict]] = {}
    for r in sql.disputed_votes(ws):
        grouped.setdefault(r["product_id"], []).append(r)
    ruled = sql.rulings(ws, list(grouped))
    wanted = [p for p in grouped if include_ruled or p not in ruled]
    if limit is not None:
        wanted = wanted[:limit]
    info = sql.products_info(ws, wanted, ws.live_version())
    out = []
    for pid in wanted:
        p = info.get(pid, {})
        out.append(Dispute(pid, p.get("title", ""), p.get("image_path"), p.get("source_label"),
                           p.get("top1"), p.get("top1_prob"), tuple(_vote(r) for r in grouped[pid]),
                           _vote(ruled[pid]) if pid in ruled else None))
    return out, len(set(grouped) & set(ruled))


def overview(ws: Workspace, *, include_ruled: bool = False, limit: int | None = 200) -> Overview:
    found, n_ruled = disputes(ws, include_ruled=include_ruled, limit=limit)
    return Overview(found, pair_agreements(ws), n_ruled)


def parse_category(value: object, tax: taxonomy.Taxonomy | None = None) -> int:
    """The key of a category given as its code ('2583') or its exact name, in `tax` (the
    workspace's taxonomy; Rakuten's by default); AdjudicationError otherwise."""
    tax = tax or taxonomy.default()
    text = str(value if value is not None else "").strip()
    key = tax.parse(text)
    if key is not None:
        return key
    for c in tax:
        if c.name.casefold() == text.casefold():
            return c.key
    raise AdjudicationError(f"unknown category {text!r}: give one of the {len(tax)} category codes "
                            f"({tax.describe_codes(5)}) or a category's exact name")


def rule(ws: Workspace, admin: str, product_id: str, category: object, *, comment: str = "",
         idempotency_key: str | None = None) -> dict:
    """Record `admin`'s final category for `product_id`; returns the decision row written.

    The caller has checked that `admin` may rule (an admin login, or whoever holds the
    workspace file at the CLI)."""
    who = (admin or "").strip()
    if not who:
        raise AdjudicationError("a ruling needs the admin's name: log in as an admin, or pass --by NAME")
    pid = str(product_id or "").strip()
    if not pid or not sql.product_exists(ws, pid):
        raise AdjudicationError(f"no product {pid!r} in workspace {ws.root}; list the disputed products with "
                                f"`python -m labeler adjudicate list --workspace {ws.root}`")
    code = parse_category(category, taxonomy.of(ws))
    return sql.record_ruling(ws, pid, who, code, comment=(comment or "").strip(), idempotency_key=idempotency_key)


def kappa_text(p: PairAgreement) -> str:
    return "n/a (one category only)" if p.kappa is None else f"{p.kappa:.2f}"
