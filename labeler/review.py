"""Decisions on the review screen: decide, undo, release; who holds what. No Gradio, no SQL.

Rules (the app and the tests rely on them; the queue's own are in `labeler.queue`):

* **Decisions** are appended (`store.decisions.append`) inside the same write transaction that
  checks and releases the reviewer's reservation; a retried submit with the same idempotency key
  returns the stored row and writes nothing. `undo` appends an 'undo' row pointing at the
  reviewer's latest decision not yet undone, and reserves that product for them again.
* **Labels when overlapping reviewers disagree** (`resolved_labels`): each reviewer's latest
  effective accept/correct is one vote; the category with the most votes wins and a tie goes to
  the most recent decision (`store.labels`, the one rule that train, retrain, export, stats and
  label issues read too). For the usual two-reviewer overlap that is "latest decision wins";
  `disagreements` lists those products for adjudication, and a third reviewer's decision settles
  them by majority.

This module also re-exports the queue (`next_card`, `upcoming`, `ranking`, `warm`, ...) and the
card types (`labeler.cards`), so `from labeler import review` gives the whole workflow.
"""
from __future__ import annotations

import sqlite3
import time
import uuid

from labeler.cards import (Card, HeldByAnother, InvalidCategory, Prediction, ReviewError,  # noqa: F401
                           UnknownProduct, Vote, card_prediction, check_category, check_reviewer,
                           prediction_view, threshold_of)
from labeler.config import Settings
from labeler.queue import (_state, in_overlap, needed_reviews, next_card, ranking,  # noqa: F401
                           stored_suspects, upcoming, warm)
from labeler import queue, strategies, taxonomy  # noqa: F401  (re-exported: review.strategies)
from models import honest  # noqa: F401  (re-exported: review.honest)
from store import decisions, reservations
from store.workspace import Workspace

DECIDE_ACTIONS = ("accept", "correct", "skip")
_check_reviewer = check_reviewer        # the names other modules used before the split
_check_category = check_category
_prediction = card_prediction


def decide(ws: Workspace, reviewer: str, product_id: str, action: str, *, category: int | None = None,
           comment: str = "", lead_time_ms: int | None = None, idempotency_key: str | None = None,
           shown_version: str | None = None) -> dict:
    """Append accept/correct/skip for the product and release the reviewer's reservation, atomically.

    accept: category defaults to the fused top-1. correct: category required (one of the 27 codes).
    `shown_version`: the model version the card showed (`card.prediction.model_version`), so a
    model switch between showing and deciding still stores (and accepts) what the reviewer saw;
    default: the live version. Refused (HeldByAnother) while another reviewer holds the product.
    Returns the stored decision row (+ 'replayed': True when the key was already stored).
    """
    reviewer = check_reviewer(reviewer)
    product_id = str(product_id)
    if action not in DECIDE_ACTIONS:
        raise ReviewError(f"unknown action {action!r}; expected one of {', '.join(DECIDE_ACTIONS)} "
                          "(use undo() to take a decision back)")
    if ws.product(product_id) is None:
        raise UnknownProduct(f"unknown product {product_id!r}; it is not in workspace {ws.root}")
    version = shown_version or ws.live_version()
    pred = ws.prediction(product_id, version) if version else None
    if action == "correct":
        if category is None:
            raise InvalidCategory("a correction needs a category: choose one of the workspace's categories")
        category = check_category(category, "correction", taxonomy.of(ws))
    elif action == "accept":
        if category is None:
            if pred is None:
                raise ReviewError(f"product {product_id} has no model prediction to accept; "
                                  "choose its category instead (correct)")
            category = int(pred["top1"])
        else:
            category = check_category(category, "accept", taxonomy.of(ws))
    else:
        category = None
    key = idempotency_key or uuid.uuid4().hex

    def tx(conn: sqlite3.Connection) -> dict:
        stored = _replay(conn, key, reviewer, product_id)
        if stored is not None:
            return stored
        _check_not_held(conn, product_id, reviewer)
        row = decisions.append(conn, product_id, reviewer, action, category=category,
                               model_version=version if pred is not None else None,
                               shown_top5=pred["top5"] if pred is not None else None, comment=comment,
                               lead_time_ms=None if lead_time_ms is None else int(lead_time_ms),
                               idempotency_key=key)
        reservations.release(conn, reviewer, product_id)
        return {**row, "replayed": False}

    return ws.write(tx)


def undo(ws: Workspace, reviewer: str, *, idempotency_key: str | None = None,
         settings: Settings = Settings(), tab: str = "") -> dict | None:
    """Undo the reviewer's latest decision not yet undone; that product is reserved for them again
    (for this `tab`, whose previous product goes back to the queue; see `next_card`).

    Call it again to go further back. Returns the undo row with 'undone' (the decision taken
    back), or None when there is nothing left to undo. An admin's auto-accepts are not taken
    back one by one here: `labeler.bulk.undo_batch` undoes their batch. Refused (HeldByAnother, nothing written)
    while another reviewer holds that product, e.g. the second reviewer of an overlap product.
    """
    reviewer = check_reviewer(reviewer)
    key = idempotency_key or uuid.uuid4().hex

    def tx(conn: sqlite3.Connection) -> dict | None:
        stored = _replay(conn, key, reviewer, None)
        if stored is not None:
            stored["undone"] = decisions.get(conn, stored["undoes"])
            return stored
        target = decisions.latest_undoable(conn, reviewer)
        if target is None:
            return None
        pid = target["product_id"]
        _check_not_held(conn, pid, reviewer)
        row = decisions.append(conn, pid, reviewer, "undo", undoes=target["id"],
                               model_version=target["model_version"], idempotency_key=key)
        reservations.release(conn, reviewer, tab=tab)
        now = time.time()
        if not reservations.hold(conn, pid, reviewer, now + settings.reservation_ttl_s, tab=tab, now=now):
            raise HeldByAnother(pid, reservations.holder(conn, pid, other_than=reviewer, now=now) or "another reviewer")
        return {**row, "replayed": False, "undone": target}

    return ws.write(tx)


def release(ws: Workspace, reviewer: str, product_id: str | None = None, *, tab: str | None = None) -> int:
    """Give back the reviewer's reservation(s) (switching strategy, logging out); returns how many.

    `tab`: only that tab's (the reviewer's other tabs keep their products); None: all of them."""
    reviewer = check_reviewer(reviewer)
    return ws.write(lambda conn: reservations.release(conn, reviewer, product_id, tab=tab))


def holdings(ws: Workspace) -> dict[str, str]:
    """product -> reviewer for every unexpired reservation."""
    return reservations.holdings(ws)


def recent_decisions(ws: Workspace, reviewer: str, limit: int = 10) -> list[dict]:
    """The reviewer's latest decisions not undone, newest first (the app's history panel)."""
    return decisions.recent(ws, reviewer, limit)


def resolved_labels(ws: Workspace) -> dict[str, int]:
    """product -> label by the one rule (`store.labels`): majority of reviewers, tie -> latest,
    else the imported label. The same as `Workspace.current_labels()`."""
    from store.labels import resolve_labels
    return resolve_labels(ws)


def disagreements(ws: Workspace) -> list[dict]:
    """Products where reviewers' effective decisions name different categories."""
    return decisions.disagreements(ws)


def _replay(conn: sqlite3.Connection, key: str, reviewer: str, product_id: str | None) -> dict | None:
    row = decisions.by_key(conn, key)
    if row is None:
        return None
    if row["reviewer"] != reviewer or (product_id is not None and row["product_id"] != product_id):
        raise ReviewError(f"idempotency key {key!r} was already used for decision {row['id']} "
                          f"({row['reviewer']} on product {row['product_id']}); use a fresh key per card")
    return {**row, "replayed": True}


def _check_not_held(conn: sqlite3.Connection, product_id: str, reviewer: str) -> None:
    holder = reservations.holder(conn, product_id, other_than=reviewer, now=time.time())
    if holder is not None:
        raise HeldByAnother(product_id, holder)
