"""What a review screen shows and the errors it raises: cards, predictions, votes. No Gradio, no SQL.

`prediction_view` turns a stored (or try-it) prediction row into the `Prediction` a card shows,
with the version's guaranteed auto-accept threshold and conformal prediction set.
"""
from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, replace

import numpy as np

from labeler import taxonomy
from labeler.taxonomy import Taxonomy
from labeler.config import Settings
from models import honest
from store.workspace import Workspace

# A product the reviewer has just said is not of its page's category: the likeliest other
# categories its card offers, 1-9. Nine: every digit key (the number of keys, not a figure tuned
# on data). On the whole sample's 504 out-of-fold errors the right one is among the nine 87 % of
# the time against 77 % among five: 1.65 keys per fix against 2.16 (held-out quarters 1.54-1.73
# against 2.01-2.35; python -m experiments.fix_choices).
FIX_CHOICES = 9
# The categories after those nine, each under a letter key (Label Studio gives every choice a
# hotkey the same way): one key for any fix while the taxonomy has at most 9 + 25 other
# categories (Rakuten's 27 do), the search (/) beyond. No q: it sends the product to the queue.
FIX_LETTERS = "abcdefghijklmnoprstuvwxyz"


# -- errors ---------------------------------------------------------------------------------------
class ReviewError(Exception):
    """Something the reviewer (or the app) must fix; the message says what and how."""


class UnknownProduct(ReviewError):
    pass


class InvalidCategory(ReviewError):
    pass


class HeldByAnother(ReviewError):
    """The product is reserved by another reviewer right now."""

    def __init__(self, product_id: str, holder: str):
        super().__init__(f"product {product_id} is being reviewed by {holder!r}; "
                         "ask for the next product instead")
        self.product_id = product_id
        self.holder = holder


# -- what the UI shows ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Vote:
    code: int               # the category's key (what the database holds)
    name: str
    prob: float
    shown_code: str = ""    # the code its owner writes ('toys'); '' = the key itself (Rakuten's 2583)

    @property
    def text_code(self) -> str:
        return self.shown_code or str(self.code)

    @property
    def label(self) -> str:
        return f"{self.text_code} · {self.name}"


@dataclass(frozen=True)
class Prediction:
    """The live model's view of one product."""

    model_version: str
    top5: tuple[Vote, ...]                  # fused, best first
    voters: dict[str, tuple[Vote, ...]]     # 'text', 'image', then each image voter: own top-k
    top1: int
    top1_prob: float
    margin: float
    entropy: float
    disagreement: bool                      # text top-1 != image top-1
    auto_accept: bool                       # top1_prob >= the version's guaranteed threshold
    source: str | None = None               # 'out-of-fold' / 'model trained on all labels' (None: older version)
    auto_accept_threshold: float | None = None   # the version's threshold; None: nothing auto-accepted
    auto_accept_note: str = ""              # why, in words (target precision, or too few labels)
    pred_set: tuple[int, ...] = ()          # conformal prediction set (codes), empty without calibration
    set_coverage: float | None = None       # its nominal coverage
    others: tuple[Vote, ...] = ()           # a grid's marked product: the categories after top5, by name

    def agreement(self) -> dict[str, bool]:
        """voter -> whether its own top-1 is the fused top-1 (agreement at a glance)."""
        return {name: bool(votes) and votes[0].code == self.top1 for name, votes in self.voters.items()}


@dataclass(frozen=True)
class Card:
    """One product to review, with why it was picked."""

    product: dict                   # the products row: id, title, description, image_path, source_label...
    prediction: Prediction | None   # None until a model version scored this product
    strategy: str
    score: float | None             # the strategy's score for this product (None: not ranked by it)
    reason: str                     # the score in words
    remaining: int                  # undecided products in this strategy's queue, this one included
    total_remaining: int            # undecided products in the whole catalog
    reviewed_by_me: int             # products this reviewer decided (accept/correct, not undone)
    shown_at: float                 # time.time() when this card was produced
    key: str                        # fresh idempotency key: pass it to decide() (retries reuse it)
    resumed: bool = False           # the reviewer already held this product (reload, restart, undo)
    second_review: bool = False     # overlap product another reviewer already decided

    @property
    def product_id(self) -> str:
        return str(self.product["id"])

    def lead_time_ms(self, now: float | None = None) -> int:
        return int(round(((now if now is not None else time.time()) - self.shown_at) * 1000))



# -- checks ---------------------------------------------------------------------------------------
def check_reviewer(reviewer: str) -> str:
    name = (reviewer or "").strip()
    if not name:
        raise ReviewError("reviewer name is empty: log in or type your name before reviewing")
    return name


def check_category(category: object, what: str, tax: Taxonomy) -> int:
    """The key of a category the user gave (a code such as '2583' or 'toys', or a key)."""
    key = tax.parse(category)
    if key is None:
        raise InvalidCategory(f"{what}: category {category!r} is not one of the {len(tax)} category codes "
                              f"({tax.describe_codes()})")
    return key


def votes(pairs: list, tax: Taxonomy) -> tuple[Vote, ...]:
    """[[key, p], ...] as `Vote`s named in the workspace's taxonomy."""
    return tuple(Vote(int(c), tax.name(c), float(p), tax.code(c)) for c, p in pairs)


def threshold_of(cal: "honest.Calibration | None", settings: Settings) -> float:
    """The version's guaranteed auto-accept threshold; inf (nothing) when it could guarantee none;
    the settings' fixed threshold for a version trained before calibration existed."""
    if cal is None:
        return settings.auto_accept_threshold
    t = cal.auto_accept.threshold
    return float("inf") if t is None else float(t)


def prediction_view(row: dict, cal: "honest.Calibration | None", settings: Settings, *, tax: Taxonomy,
                    classes: list[int]) -> Prediction:
    """A stored (or try-it) prediction row with the version's auto-accept rule and prediction set;
    `classes`: the keys of the version's probability columns, `tax`: names and codes."""
    threshold = threshold_of(cal, settings)
    top1_prob = float(row["top1_prob"])
    codes = classes
    pred_set: tuple[int, ...] = ()
    note = f"fixed threshold {settings.auto_accept_threshold:.0%} (version trained before guarantees)"
    if cal is not None:
        inside = cal.conformal.sets(np.asarray(row["probs"], dtype=np.float64))[0]
        probs = np.asarray(row["probs"], dtype=np.float64)
        pred_set = tuple(int(codes[j]) for j in np.argsort(-probs, kind="stable") if inside[j])
        note = cal.auto_accept.describe()
    return Prediction(model_version=row["model_version"], top5=votes(row["top5"], tax),
                      voters={name: votes(v, tax) for name, v in row["voters"].items()}, top1=int(row["top1"]),
                      top1_prob=top1_prob, margin=float(row["margin"]), entropy=float(row["entropy"]),
                      disagreement=bool(row["disagreement"]), auto_accept=top1_prob >= threshold,
                      source=row.get("source"), auto_accept_threshold=None if threshold == float("inf") else threshold,
                      auto_accept_note=note, pred_set=pred_set,
                      set_coverage=cal.conformal.coverage if cal is not None else None)


def card_prediction(ws: Workspace, product_id: str, settings: Settings, *,
                    leave_out: int | None = None) -> Prediction | None:
    """The live prediction as a card shows it; None without one. leave_out: a category the
    reviewer has just said is wrong (a grid page's), left out of the list, which then holds the
    model's FIX_CHOICES likeliest *other* categories, one per digit key (top-1 and the rest stay
    the model's), and `others` the next len(FIX_LETTERS) likeliest, sorted by name: the reviewer
    scans them for a category they know, and the model's order among such unlikely ones says
    little."""
    row = ws.prediction(product_id)
    if row is None:
        return None
    version, tax = row["model_version"], taxonomy.of(ws)
    classes = taxonomy.classes_of(ws, version)
    pred = prediction_view(row, honest.version_calibration(ws, version), settings, tax=tax, classes=classes)
    if leave_out is None:
        return pred
    probs = [float(p) for p in row["probs"]]
    order = sorted(range(len(probs)), key=lambda j: -probs[j])            # stable: ties keep column order
    ranked = [[classes[j], probs[j]] for j in order if classes[j] != leave_out]
    rest = votes(ranked[FIX_CHOICES:FIX_CHOICES + len(FIX_LETTERS)], tax)
    return replace(pred, top5=votes(ranked[:FIX_CHOICES], tax),
                   others=tuple(sorted(rest, key=lambda v: (_sort_name(v.name), v.code))))


def _sort_name(name: str) -> str:
    """A name as a reader alphabetises it: 'Épicerie' among the E's, not after 'Z'."""
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)).casefold()
