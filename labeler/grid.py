"""Grid validation: a page of products the live model puts in one category, accepted at once.

The workflow under a grid screen, plain Python (no Gradio):

* `open_page(ws, reviewer, category)`: up to `size` undecided products whose fused top-1 is the
  category, surest first (the page most likely to be all right) or least sure first, none held
  by another reviewer. They are reserved for the reviewer in the same write transaction that
  picks them (and the store refuses a second holder), so two reviewers never get the same
  product on screen. Opening
  a page gives back the reviewer's previous reservations first (one screen at a time).
  `exclude`: products not to offer again (those the reviewer marked wrong earlier in the
  session: they are fixed on their card or sent to the queue, never re-offered on the grid).
* `accept_page(ws, reviewer, page, marked)`: every product of the page but the marked ones gets
  an ordinary append-only decision, action 'accept' with `via='grid'`, in one batch
  (`decision_batches`, kind 'grid'). A product whose reservation expired or that someone else
  decided meanwhile is named in the result and left alone; the rest are saved. Marked products
  are released back to the one-at-a-time queue, or with `hold_marked` kept for the reviewer
  (reservation tab FIX_TAB) so that each opens the usual card to choose its category. A
  retried accept of the same page writes nothing twice (idempotency key per page and product).
* A marked product held for its card: `fix_card` (the usual `Card`, top-5 and all), `fix` (the
  category chosen there: an ordinary card decision, `review.decide`) or `send_to_queue`.
* `undo_page(ws, reviewer, batch_id)`: takes the page's decisions back in one step.
* `next_categories(ws)`: categories with undecided products, most first: where a reviewer who
  has finished one goes next.

A reviewer's card queue (`review.next_card`) resumes one held product and frees the others, so
switching from the grid to cards gives the page's products back.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field

from labeler import bulk, cards, review, taxonomy
from labeler.config import Settings
from store import batches, catalog, decisions, reservations, search
from store.workspace import Workspace

ORDERS = tuple(catalog.GRID_ORDERS)        # 'surest' first, or 'least_sure'
DEFAULT_SIZE = 24
THUMB_THREADS = max(1, min(4, os.cpu_count() or 1))   # a page's cold thumbnails made side by side
FIX_TAB = "grid"      # reservations of products marked wrong, held for their cards (a card tab never resumes them)


@dataclass(frozen=True)
class GridItem:
    product_id: str
    title: str
    image_path: str | None
    prob: float                     # the model's fused probability of the page's category
    top5: tuple                     # ((code, prob), ...) as stored


@dataclass(frozen=True)
class GridPage:
    page_id: str
    reviewer: str
    category: int
    model_version: str
    items: tuple[GridItem, ...]
    expires_at: float
    remaining: int                  # undecided products predicted in this category, this page included

    @property
    def product_ids(self) -> list[str]:
        return [i.product_id for i in self.items]


@dataclass
class PageResult:
    batch_id: str | None
    accepted: list[str] = field(default_factory=list)
    marked: list[str] = field(default_factory=list)           # released to the card queue, or held
    held: list[str] = field(default_factory=list)             # marked ones held for their cards (hold_marked)
    expired: list[str] = field(default_factory=list)          # reservation gone: left alone
    decided_by_others: dict[str, str] = field(default_factory=dict)   # product -> who decided it first
    replayed: bool = False

    def problems(self) -> list[str]:
        """One line per product left alone, naming it and why."""
        out = [f"product {p}: your reservation expired before the page was accepted; it is back in the queue"
               for p in self.expired]
        out += [f"product {p}: already decided by {who}; left as they decided it"
                for p, who in self.decided_by_others.items()]
        return out


def open_page(ws: Workspace, reviewer: str, category: int, *, size: int = DEFAULT_SIZE, order: str = "surest",
              settings: Settings = Settings(), exclude: set[str] | frozenset[str] = frozenset()) -> GridPage | None:
    """Pick and reserve the next page (see the module doc); None when the category has nothing
    left but products in `exclude`."""
    reviewer = review.check_reviewer(reviewer)
    category = review.check_category(category, "grid page", taxonomy.of(ws))
    if order not in ORDERS:
        raise review.ReviewError(f"grid order {order!r}: expected one of {', '.join(ORDERS)}")
    if not 1 <= size <= 200:
        raise review.ReviewError(f"grid page size {size}: expected 1 to 200 products")
    version = ws.live_version()
    if version is None:
        raise review.ReviewError("no live model version: a grid page is built from the model's predictions; "
                                 "train one first")

    def tx(conn: sqlite3.Connection) -> GridPage | None:
        now = time.time()
        reservations.drop_expired(conn, now)
        reservations.release(conn, reviewer)
        remaining, rows = catalog.undecided_in_category(conn, version, category, order, size + len(exclude))
        rows = [r for r in rows if r[0] not in exclude][:size]
        expires = now + settings.reservation_ttl_s
        got = set(reservations.hold_many(conn, [r[0] for r in rows], reviewer, expires, now=now))
        rows = [r for r in rows if r[0] in got]
        if not rows:
            return None
        items = tuple(GridItem(r[0], r[1], r[2], float(r[3]), tuple(tuple(x) for x in json.loads(r[4])))
                      for r in rows)
        return GridPage(page_id=f"grid-{uuid.uuid4().hex[:12]}", reviewer=reviewer, category=category,
                        model_version=version, items=items, expires_at=expires, remaining=remaining)

    return ws.write(tx)


def accept_page(ws: Workspace, reviewer: str, page: GridPage, marked: set[str] | list[str] = (), *,
                hold_marked: bool = False, settings: Settings = Settings()) -> PageResult:
    """Accept the page's category for every product not marked (see the module doc); hold_marked:
    keep the marked ones reserved for the reviewer's cards (`fix_card`) instead of releasing them."""
    reviewer = review.check_reviewer(reviewer)
    if reviewer != page.reviewer:
        raise review.ReviewError(f"grid page {page.page_id} was opened by {page.reviewer!r}, not {reviewer!r}")
    marked = {str(m) for m in marked}
    unknown = marked - set(page.product_ids)
    if unknown:
        raise review.ReviewError(f"marked products {', '.join(sorted(unknown))} are not on page {page.page_id}")
    batch = f"{page.page_id}"

    def tx(conn: sqlite3.Connection) -> PageResult:
        if batches.get(conn, batch) is not None:
            done = batches.product_ids(conn, batch)
            return PageResult(batch_id=batch, accepted=done, marked=sorted(marked), replayed=True)
        now = time.time()
        result = PageResult(batch_id=None, marked=[p for p in page.product_ids if p in marked])
        todo = []
        for item in page.items:
            pid = item.product_id
            if pid in marked:
                continue
            first = decisions.first_label_holder(conn, pid)
            if first is not None:
                result.decided_by_others[pid] = first
                continue
            if not reservations.holds(conn, pid, reviewer, now):
                result.expired.append(pid)
                continue
            todo.append(item)
        if todo:
            batches.create(conn, batch, "grid", reviewer, model_version=page.model_version, n_decisions=len(todo),
                           note=f"grid page of {taxonomy.of(ws).label(page.category)}")
            for item in todo:
                decisions.append(conn, item.product_id, reviewer, "accept", category=page.category,
                                 model_version=page.model_version, shown_top5=[list(x) for x in item.top5],
                                 idempotency_key=f"{batch}:{item.product_id}", batch_id=batch, via="grid")
            result.batch_id = batch
            result.accepted = [i.product_id for i in todo]
        reservations.release_many(conn, reviewer, page.product_ids)
        if hold_marked:
            until = now + settings.reservation_ttl_s
            result.held = [p for p in result.marked if decisions.first_label_holder(conn, p) is None
                           and reservations.hold(conn, p, reviewer, until, tab=FIX_TAB, now=now)]
        return result

    return ws.write(tx)


def fix_card(ws: Workspace, reviewer: str, product_id: str, *, remaining: int = 1,
             settings: Settings = Settings(), category: int | None = None) -> review.Card:
    """The usual card of a product marked wrong on a grid page (its top-5, voters, imported label),
    its reservation renewed for the reviewer; HeldByAnother when someone else holds it now.
    `remaining`: marked products still to fix, this one included (shown on the card).
    `category`: the page's category, which the reviewer has just said is wrong: left out of the
    card's list, whose 1-9 are then the model's nine likeliest *other* categories."""
    reviewer = review.check_reviewer(reviewer)
    pid = str(product_id)
    product = ws.product(pid)
    if product is None:
        raise review.UnknownProduct(f"unknown product {pid!r}; it is not in workspace {ws.root}")

    def tx(conn: sqlite3.Connection) -> None:
        now = time.time()
        if not reservations.hold(conn, pid, reviewer, now + settings.reservation_ttl_s, tab=FIX_TAB, now=now):
            raise review.HeldByAnother(pid, reservations.holder(conn, pid, other_than=reviewer, now=now)
                                       or "another reviewer")

    ws.write(tx)
    prediction = cards.card_prediction(ws, pid, settings, leave_out=category)
    return review.Card(product=product, prediction=prediction, strategy="grid",
                       score=None, reason="marked wrong on a grid page: choose its category", remaining=remaining,
                       total_remaining=remaining, reviewed_by_me=0, shown_at=time.time(), key=uuid.uuid4().hex)


def fix(ws: Workspace, reviewer: str, card: review.Card, category: object) -> dict:
    """The category chosen on a marked product's card: an ordinary card decision (accept when it
    is the model's top-1 after all, else correct), recorded once per card (its key)."""
    pred = card.prediction
    key = review.check_category(category, "grid card", taxonomy.of(ws))
    action = "accept" if pred is not None and pred.top1 == key else "correct"
    return review.decide(ws, reviewer, card.product_id, action, category=key, comment="marked wrong on a grid page",
                         lead_time_ms=card.lead_time_ms(), idempotency_key=card.key,
                         shown_version=pred.model_version if pred is not None else None)


def send_to_queue(ws: Workspace, reviewer: str, product_ids: list[str]) -> None:
    """Give marked products back to the one-at-a-time queue (their reservations dropped)."""
    reviewer = review.check_reviewer(reviewer)
    ids = [str(p) for p in product_ids]
    ws.write(lambda conn: reservations.release_many(conn, reviewer, ids))


def next_categories(ws: Workspace, *, after: int | None = None) -> list[int]:
    """Categories with undecided products of the live version, most first (`after` last: the
    one just finished goes to the end of the line); [] without a live version."""
    version = ws.live_version()
    if version is None:
        return []
    counts = search.undecided_per_category(ws, version)
    order = sorted((c for c, n in counts.items() if n > 0), key=lambda c: (-counts[c], c))
    return [c for c in order if c != after] + ([after] if after in order else [])


def undo_page(ws: Workspace, reviewer: str, batch_id: str) -> bulk.UndoBatchResult:
    """Take a grid page's decisions back in one step (only the reviewer who accepted it)."""
    reviewer = review.check_reviewer(reviewer)
    owner = batches.owner(ws, batch_id, "grid")
    if owner is None:
        raise review.ReviewError(f"no grid page {batch_id!r} was accepted; nothing to undo")
    if owner != reviewer:
        raise review.ReviewError(f"grid page {batch_id} was accepted by {owner!r}; only they can undo it")
    return bulk.undo_batch(ws, batch_id, reviewer)


def thumbnail(ws: Workspace, image_path: str | None, size: int = 192) -> str | None:
    """A small JPEG of the product image, made once per image and cached in the workspace
    (cache/thumbs, named by the source path's hash and modification time)."""
    import hashlib
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    if not image_path:
        return None
    src = Path(image_path)
    try:
        stamp = src.stat().st_mtime_ns
    except OSError:
        return None
    out = ws.cache_dir / "thumbs" / f"{hashlib.sha1(f'{src.resolve()}:{stamp}:{size}'.encode()).hexdigest()}.jpg"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with Image.open(src) as im:
                # a JPEG decoded at 1/2, 1/4 or 1/8 scale (its DCT, no full-size pixels): a 500 px
                # photo to 250 px before the resize, about half the time of a full decode
                im.draft("RGB", (size, size))
                im = im.convert("RGB")
                im.thumbnail((size, size))
                tmp = out.with_suffix(f".{uuid.uuid4().hex[:6]}.tmp")
                im.save(tmp, "JPEG", quality=85)
                tmp.replace(out)
        except (OSError, UnidentifiedImageError):
            return None
    return str(out)


def thumbnail_uris(ws: Workspace, image_paths: list[str | None], size: int = 192) -> list[str | None]:
    """`thumbnail_uri` of a page's images, those not cached yet made side by side (Pillow
    decodes and encodes without the GIL): a cold page of 24 on two cores in about half the time."""
    from concurrent.futures import ThreadPoolExecutor

    if len(image_paths) < 2:
        return [thumbnail_uri(ws, p, size) for p in image_paths]
    with ThreadPoolExecutor(max_workers=THUMB_THREADS, thread_name_prefix="thumbs") as pool:
        return list(pool.map(lambda p: thumbnail_uri(ws, p, size), image_paths))


def thumbnail_uri(ws: Workspace, image_path: str | None, size: int = 192) -> str | None:
    """The cached thumbnail as a data: URI (a few KB): the page carries its own pictures, so no
    file route or served folder is involved."""
    import base64
    from pathlib import Path

    path = thumbnail(ws, image_path, size)
    if path is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
