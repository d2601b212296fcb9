"""The review workflow under the UI: queue, reservation, decision, undo. No Gradio here.

Rules (the app and the tests rely on them):

* **Queue.** Products are ranked by a query strategy (`labeler.strategies`) over the live model
  version's fused probabilities. Products without a prediction for the live version (nothing
  trained yet, or imported after the last scoring) come after every scored product, in import
  order; filtering strategies (disagreement, below_threshold, suspect_labels) leave them out, and
  `category` keeps those whose imported label is that category.
* **Decided products leave the queue**: a product with an effective accept/correct (one not
  undone) is no longer offered. Overlap products (a stable, seeded `settings.overlap_share` of the
  catalog) stay until two *different* reviewers decided them; nobody is shown a product they
  already decided themselves.
* **Skips** are per reviewer: a product the reviewer skipped (and did not undo) goes behind every
  other product of their queue; once only skipped products are left they come back, the one
  skipped longest ago first. Other reviewers' queues ignore the skip.
* **Reservations.** Each reviewer holds at most one product per browser tab (`tab`: a token
  the tab keeps across reloads, '' without one), in the `reservations` table, for
  `settings.reservation_ttl_s` from the moment it is shown (resuming it renews the lease).
  Picking and reserving happen in one BEGIN IMMEDIATE transaction, so two reviewers never hold
  the same product; expired reservations are deleted by the next `next_card`. A reload or a
  restarted server calls `next_card` again and gets the held product back.
* **Decisions** are appended through `Workspace.record_decision` inside the same transaction that
  checks and releases the reservation; a retried submit with the same idempotency key returns the
  stored row and writes nothing. `undo` appends an 'undo' row pointing at the reviewer's latest
  decision not yet undone, and reserves that product for them again.
* **Labels when overlapping reviewers disagree** (`resolved_labels`): each reviewer's latest
  effective accept/correct is one vote; the category with the most votes wins and a tie goes to
  the most recent decision (`store.labels`, the one rule that train, retrain, export, stats and
  label issues read too). For the usual two-reviewer overlap that is "latest decision wins";
  `disagreements` lists those products for adjudication, and a third reviewer's decision settles
  them by majority.

Performance: the live version's predictions are read into arrays once per (workspace object,
version) and each strategy's ranked order is computed once from them (per category, suspects,
threshold, seed); both are re-used until predictions are rewritten or products imported (the last
prediction row and the products' max rowid tell). The decision log is append-only, so it is
replayed incrementally (`id > last seen`) inside each pick's transaction instead of being re-read
for every request; the set of products closed for everyone is updated with it, and each ranking
keeps a cursor past its closed top, so a card costs the same 50k decisions deep into an 85k
catalog as on a fresh one. `python bench/bench_review.py` measures submit -> next.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import numpy as np

from labeler import strategies, taxonomy
from labeler.config import Settings
from models import honest
from models.label_issues import FLAGGED_FIRST
from store.workspace import Workspace

log = logging.getLogger(__name__)
DECIDE_ACTIONS = ("accept", "correct", "skip")


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
    code: int
    name: str
    prob: float

    @property
    def label(self) -> str:
        return f"{self.code} · {self.name}"


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


# -- in-memory state per Workspace object ---------------------------------------------------------
class _DecisionLog:
    """Replay of the append-only decisions table: who decided / skipped what, effective rows only."""

    def __init__(self, reopened: int = 0) -> None:
        self.last_id = 0
        self.rows: dict[int, tuple[str, str, str]] = {}           # id -> (product, reviewer, action)
        self.deciders: dict[str, dict[str, int]] = {}             # product -> reviewer -> n accept/correct
        self.skips: dict[str, dict[str, set[int]]] = {}           # reviewer -> product -> skip ids
        self.by_reviewer: dict[str, set[str]] = {}                # reviewer -> products decided
        # (share, seed) -> products with all the reviews they need, kept up to date decision by
        # decision: rebuilding it per card cost 35-135 ms with 50k decisions in the log
        self.closed_sets: dict[tuple[float, int], set[str]] = {}
        self.reopened = reopened    # bumped whenever a product leaves a closed set (undo, log reset)

    def catch_up(self, conn: sqlite3.Connection) -> None:
        top = conn.execute("SELECT max(id) FROM decisions").fetchone()[0] or 0
        if top < self.last_id:      # the database was replaced under us: start over
            self.__init__(self.reopened + 1)
        if top == self.last_id:
            return
        for did, pid, reviewer, action, undoes in conn.execute(
                "SELECT id, product_id, reviewer, action, undoes FROM decisions WHERE id > ? ORDER BY id",
                (self.last_id,)):
            if action == "undo":
                target = self.rows.pop(undoes, None)
                if target is not None:
                    self._apply(undoes, *target, sign=-1)
            else:
                self.rows[did] = (pid, reviewer, action)
                self._apply(did, pid, reviewer, action, sign=+1)
            self.last_id = did

    def _apply(self, did: int, pid: str, reviewer: str, action: str, *, sign: int) -> None:
        if action == "skip":
            mine = self.skips.setdefault(reviewer, {})
            if sign > 0:
                mine.setdefault(pid, set()).add(did)
            else:
                mine.get(pid, set()).discard(did)
                if not mine.get(pid):
                    mine.pop(pid, None)
            return
        who = self.deciders.setdefault(pid, {})
        who[reviewer] = who.get(reviewer, 0) + sign
        if who[reviewer] <= 0:
            del who[reviewer]
            self.by_reviewer.get(reviewer, set()).discard(pid)
        else:
            self.by_reviewer.setdefault(reviewer, set()).add(pid)
        if not who:
            del self.deciders[pid]
        for (share, seed), closed in self.closed_sets.items():
            if len(who) >= needed_reviews(pid, share, seed):
                closed.add(pid)
            elif pid in closed:
                closed.discard(pid)
                self.reopened += 1

    def closed_for(self, pid: str, reviewer: str, share: float, seed: int) -> bool:
        who = self.deciders.get(pid)
        if not who:
            return False
        return reviewer in who or len(who) >= needed_reviews(pid, share, seed)

    def closed(self, share: float, seed: int) -> set[str]:
        """Products with all the reviews they need (live set: read it under the state's lock)."""
        closed = self.closed_sets.get((share, seed))
        if closed is None:
            closed = self.closed_sets[(share, seed)] = {
                pid for pid, who in self.deciders.items() if len(who) >= needed_reviews(pid, share, seed)}
        return closed

    def first_open(self, rank: "_Ranking", share: float, seed: int) -> int:
        """Where the ranking's first product not yet closed for everyone is: a cursor kept per
        ranking that only moves forward until a product reopens, so a queue 50k decisions deep
        is not walked from its top for every card."""
        closed = self.closed(share, seed)
        reopened, pos = rank.cursors.get((share, seed), (self.reopened, 0))
        if reopened != self.reopened:
            pos = 0
        ids = rank.ids
        while pos < len(ids) and ids[pos] in closed:
            pos += 1
        rank.cursors[(share, seed)] = (self.reopened, pos)
        return pos


@dataclass
class _Ranking:
    ids: list[str]                 # the strategy's queue, best first (unscored tail included)
    id_set: frozenset[str]
    scores: dict[str, float]       # product -> strategy score (scored products only)
    # (share, seed) -> (log's reopened count, index before which every product is closed)
    cursors: dict[tuple[float, int], tuple[int, int]] = field(default_factory=dict)


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    log: _DecisionLog = field(default_factory=_DecisionLog)
    build_lock: threading.Lock = field(default_factory=threading.Lock)
    rankings: "OrderedDict[tuple, _Ranking]" = field(default_factory=OrderedDict)
    catalog: "tuple[tuple, _Catalog] | None" = None


_STATES: "weakref.WeakKeyDictionary[Workspace, _State]" = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()
_MAX_RANKINGS = 16


def _state(ws: Workspace) -> _State:
    with _STATES_LOCK:
        st = _STATES.get(ws)
        if st is None:
            st = _STATES[ws] = _State()
        return st


@lru_cache(maxsize=200_000)
def in_overlap(product_id: str, share: float, seed: int = 0) -> bool:
    """Stable, seeded membership of the overlap share (same answer in every process)."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    h = int.from_bytes(hashlib.sha1(f"{seed}:{product_id}".encode()).digest()[:8], "big")
    return h / 2**64 < share


def needed_reviews(product_id: str, share: float, seed: int = 0) -> int:
    return 2 if in_overlap(product_id, share, seed) else 1


# -- ranking --------------------------------------------------------------------------------------
def _fingerprint(ws: Workspace) -> tuple:
    """Changes whenever predictions are (re)written or products imported (both only ever insert:
    INSERT OR REPLACE gives the new row the next rowid and a fresh created_at)."""
    c = ws.conn
    last = c.execute("SELECT rowid, created_at FROM predictions ORDER BY rowid DESC LIMIT 1").fetchone()
    return (tuple(last) if last else None, c.execute("SELECT max(rowid) FROM products").fetchone()[0])


def ranking(ws: Workspace, strategy: str, *, category: int | None = None, suspects: Iterable[str] | None = None,
            settings: Settings = Settings()) -> _Ranking:
    """The strategy's queue over the whole catalog, cached until predictions or products change.

    The first call after a model switch reads every live prediction once (about 0.1 s per 2,000
    products); call it from a background thread after a retrain to keep that off the request path.
    """
    strat = strategies.get(strategy)
    if strategy == "category":
        category = _check_category(category, "category strategy")
    flags_key: frozenset[str] | tuple | None = None
    if strategy == "suspect_labels":
        flags_key = frozenset(str(s) for s in suspects) if suspects is not None else ("stored", _issue_run(ws))
    version = ws.live_version()
    fingerprint = _fingerprint(ws)
    key = (version, strategy, category if strategy == "category" else None, flags_key,
           settings.auto_accept_threshold, settings.seed, fingerprint)
    st = _state(ws)
    with st.lock:
        hit = st.rankings.get(key)
        if hit is not None:
            st.rankings.move_to_end(key)
            return hit
    with st.build_lock:            # one thread builds, the others wait for its result
        with st.lock:
            hit = st.rankings.get(key)
        if hit is not None:
            return hit
        cat_key = (version, fingerprint)
        if st.catalog is None or st.catalog[0] != cat_key:
            st.catalog = (cat_key, _load_catalog(ws, version))
        built = _rank_catalog(st.catalog[1], ws, strat, category, flags_key, settings)
        with st.lock:
            st.rankings[key] = built
            while len(st.rankings) > _MAX_RANKINGS:
                st.rankings.popitem(last=False)
    return built


def _issue_run(ws: Workspace) -> int | None:
    """Latest label-issue detection run (`label_issues` table), None when there is none."""
    try:
        return ws.conn.execute("SELECT max(id) FROM label_issue_runs").fetchone()[0]
    except sqlite3.OperationalError:   # a workspace from before that migration
        return None


def stored_suspects(ws: Workspace) -> frozenset[str]:
    """Products flagged by the latest label-issue detection run (empty when none ran)."""
    run = _issue_run(ws)
    if run is None:
        return frozenset()
    return frozenset(r[0] for r in ws.conn.execute("SELECT product_id FROM label_issues WHERE run_id = ? "
                                                   "AND flagged = 1", (run,)))


@dataclass(frozen=True)
class _Catalog:
    """The live version's predictions as arrays (scored products in import order), read once."""

    ids: list[str]
    probs: np.ndarray              # (n, 27) fused
    text_top1: np.ndarray          # (n,) codes
    image_top1: np.ndarray         # (n,) codes, 0 without an image vote
    source_labels: np.ndarray      # (n,) codes, 0 without an imported label
    unscored: list[tuple[str, int | None]]   # (id, source_label) of products without a prediction


def _load_catalog(ws: Workspace, version: str | None) -> _Catalog:
    rows = ws.conn.execute(
        "SELECT p.id, p.source_label, pr.probs, json_extract(pr.voters, '$.text[0][0]'), "
        "json_extract(pr.voters, '$.image[0][0]') FROM products p "
        "LEFT JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = ? ORDER BY p.rowid",
        (version,)).fetchall()
    scored = [r for r in rows if r[2] is not None]
    n_codes = len(taxonomy.codes())
    probs = (np.array(json.loads("[" + ",".join(r[2] for r in scored) + "]"), dtype=np.float64)
             if scored else np.zeros((0, n_codes)))
    return _Catalog(ids=[r[0] for r in scored], probs=probs,
                    text_top1=np.array([r[3] or 0 for r in scored], dtype=np.int64),
                    image_top1=np.array([r[4] or 0 for r in scored], dtype=np.int64),
                    source_labels=np.array([r[1] or 0 for r in scored], dtype=np.int64),
                    unscored=[(r[0], r[1]) for r in rows if r[2] is None])


def _rank_catalog(cat: _Catalog, ws: Workspace, strat: strategies.Strategy, category: int | None,
                  flags_key: frozenset[str] | tuple | None, settings: Settings) -> _Ranking:
    flags = stored_suspects(ws) if isinstance(flags_key, tuple) else flags_key
    ids: list[str] = []
    scores: dict[str, float] = {}
    if cat.ids:
        cal = honest.version_calibration(ws, ws.live_version())
        ctx = strategies.Context(
            text_top1=cat.text_top1, image_top1=cat.image_top1, source_labels=cat.source_labels,
            flags=None if flags is None else np.array([pid in flags for pid in cat.ids]),
            threshold=_threshold(cal, settings), category=category,
            suspect_min_confidence=settings.auto_accept_threshold, seed=settings.seed,
            set_qhat=cal.conformal.qhat if cal is not None else None, suspects_flagged_first=FLAGGED_FIRST)
        s = strat(cat.probs, ctx)
        order = strategies.rank(s, seed=settings.seed)
        ids = [cat.ids[i] for i in order]
        scores = {cat.ids[i]: float(s[i]) for i in order}
    if strat.name == "category":
        ids += [pid for pid, label in cat.unscored if label == category]
    elif strat.name == "suspect_labels" and flags:
        ids += [pid for pid, _ in cat.unscored if pid in flags]
    elif not strat.filters:
        ids += [pid for pid, _ in cat.unscored]
    return _Ranking(ids=ids, id_set=frozenset(ids), scores=scores)


# -- the workflow ---------------------------------------------------------------------------------
def next_card(ws: Workspace, reviewer: str, *, strategy: str = "least_confidence", category: int | None = None,
              suspects: Iterable[str] | None = None, settings: Settings = Settings(), tab: str = "") -> Card | None:
    """The reviewer's held product if any, else the best free undecided one, reserved for them.

    `tab`: which of the reviewer's browser tabs asks (a token the tab keeps across reloads; ''
    for callers without tabs). Each tab holds its own product: a second tab of the same reviewer
    gets the next free product, not the first tab's. A tab resumes its own reservation, else
    one held without a tab (made by the CLI, the API or before tabs were told apart).

    `suspects`: product ids flagged by label-issue detection for the suspect_labels strategy;
    None reads the latest run stored in the `label_issues` table.
    Returns None when the strategy's queue has nothing left for this reviewer. A held product is
    resumed whatever the strategy: call `release` when the reviewer switches queues.
    """
    reviewer = _check_reviewer(reviewer)
    rank = ranking(ws, strategy, category=category, suspects=suspects, settings=settings)
    st = _state(ws)
    share, seed = settings.overlap_share, settings.seed

    def pick(conn: sqlite3.Connection) -> tuple[str, bool, int, int] | None:
        now = time.time()
        conn.execute("DELETE FROM reservations WHERE expires_at <= ?", (now,))
        with st.lock:
            st.log.catch_up(conn)
            chosen, resumed = None, False
            for (pid,) in conn.execute("SELECT product_id FROM reservations WHERE reviewer = ? AND tab IN (?, '') "
                                       "ORDER BY tab = ? DESC, expires_at DESC", (reviewer, tab, tab)).fetchall():
                if chosen is None and not st.log.closed_for(pid, reviewer, share, seed):
                    chosen, resumed = pid, True
                else:
                    conn.execute("DELETE FROM reservations WHERE product_id = ? AND reviewer = ?", (pid, reviewer))
            if chosen is None:
                held = {r[0] for r in conn.execute("SELECT product_id FROM reservations")}
                chosen = _walk(rank, st.log, reviewer, held, share, seed)
            closed = st.log.closed(share, seed)
            n_products = int(conn.execute("SELECT count(*) FROM products").fetchone()[0])
            # a queue over the whole catalog holds every closed product: no set intersection
            remaining = len(rank.ids) - (len(closed) if len(rank.ids) == n_products else len(closed & rank.id_set))
            total = n_products - len(closed)
        if chosen is None:
            return None
        conn.execute("INSERT INTO reservations (product_id, reviewer, expires_at, tab) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (product_id, reviewer) DO UPDATE SET expires_at = excluded.expires_at, "
                     "tab = excluded.tab", (chosen, reviewer, now + settings.reservation_ttl_s, tab))
        return chosen, resumed, remaining, total

    picked = ws.write(pick)
    if picked is None:
        return None
    pid, resumed, remaining, total = picked
    with st.lock:
        second = bool(st.log.deciders.get(pid)) and reviewer not in st.log.deciders[pid]
        mine = len(st.log.by_reviewer.get(reviewer, ()))
    score = rank.scores.get(pid)
    if pid in rank.id_set:
        reason = strategies.describe_score(strategy, score)
    else:   # held from before under another strategy (release() on a strategy switch avoids it)
        reason = "picked by the queue you used before"
    if resumed:
        reason = f"resumed where you were · {reason}"
    return Card(product=ws.product(pid), prediction=_prediction(ws, pid, settings), strategy=strategy,
                score=score, reason=reason, remaining=remaining, total_remaining=total, reviewed_by_me=mine,
                shown_at=time.time(), key=uuid.uuid4().hex, resumed=resumed, second_review=second)


def warm(ws: Workspace, strategy: str = "least_confidence", *, settings: Settings = Settings()) -> _Ranking:
    """Build what the first `next_card` would otherwise build on a reviewer's request: the ranked
    queue (reads every prediction: ~2.3 s at 85k products), the replayed decision log and its
    closed set (~0.3 s at 50k decisions). For a background thread at start and after a retrain."""
    rank = ranking(ws, strategy, settings=settings)
    st = _state(ws)
    with st.lock:
        st.log.catch_up(ws.conn)
        st.log.first_open(rank, settings.overlap_share, settings.seed)
    return rank


def upcoming(ws: Workspace, reviewer: str, n: int, *, strategy: str = "least_confidence",
             category: int | None = None, suspects: Iterable[str] | None = None,
             settings: Settings = Settings()) -> list[str]:
    """The next `n` products `next_card` would give this reviewer after the one they hold, in
    order, without reserving any: what the app warms (heatmaps) and preloads (images) while the
    reviewer looks at the card. Skips what is decided, held by anyone or skipped, as `next_card`
    does; unlike a window of the ranking, decided products in between cost nothing."""
    reviewer = _check_reviewer(reviewer)
    rank = ranking(ws, strategy, category=category, suspects=suspects, settings=settings)
    st = _state(ws)
    share, seed = settings.overlap_share, settings.seed
    held = {r[0] for r in ws.conn.execute("SELECT product_id FROM reservations WHERE expires_at > ?",
                                          (time.time(),))}
    out: list[str] = []
    with st.lock:
        st.log.catch_up(ws.conn)
        skipped = st.log.skips.get(reviewer, {})
        for pid in _open(rank, st.log, reviewer, held, share, seed):
            if len(out) >= n:
                break
            if pid not in skipped:
                out.append(pid)
    return out


def _open(rank: _Ranking, dlog: _DecisionLog, reviewer: str, held: set[str], share: float, seed: int):
    """The ranking's products this reviewer may get, in order (from the first not closed for all)."""
    ids = rank.ids
    closed = dlog.closed(share, seed)
    for i in range(dlog.first_open(rank, share, seed), len(ids)):
        pid = ids[i]
        if pid not in closed and pid not in held and not dlog.closed_for(pid, reviewer, share, seed):
            yield pid


def _walk(rank: _Ranking, dlog: _DecisionLog, reviewer: str, held: set[str], share: float,
          seed: int) -> str | None:
    skipped = dlog.skips.get(reviewer, {})
    later: list[str] = []
    for pid in _open(rank, dlog, reviewer, held, share, seed):
        if pid in skipped:
            later.append(pid)
            continue
        return pid
    if later:
        return min(later, key=lambda p: max(skipped[p]))
    return None


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
    reviewer = _check_reviewer(reviewer)
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
            raise InvalidCategory("a correction needs a category: choose one of the 27 categories")
        category = _check_category(category, "correction")
    elif action == "accept":
        if category is None:
            if pred is None:
                raise ReviewError(f"product {product_id} has no model prediction to accept; "
                                  "choose its category instead (correct)")
            category = int(pred["top1"])
        else:
            category = _check_category(category, "accept")
    else:
        category = None
    key = idempotency_key or uuid.uuid4().hex

    def tx(conn: sqlite3.Connection) -> dict:
        stored = _replay(conn, key, reviewer, product_id)
        if stored is not None:
            return stored
        _check_not_held(conn, product_id, reviewer)
        row = ws.record_decision(product_id, reviewer, action, category=category,
                                 model_version=version if pred is not None else None,
                                 shown_top5=pred["top5"] if pred is not None else None, comment=comment,
                                 lead_time_ms=None if lead_time_ms is None else int(lead_time_ms),
                                 idempotency_key=key, conn=conn)
        conn.execute("DELETE FROM reservations WHERE product_id = ? AND reviewer = ?", (product_id, reviewer))
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
    reviewer = _check_reviewer(reviewer)
    key = idempotency_key or uuid.uuid4().hex

    def tx(conn: sqlite3.Connection) -> dict | None:
        stored = _replay(conn, key, reviewer, None)
        if stored is not None:
            stored["undone"] = dict(conn.execute("SELECT * FROM decisions WHERE id = ?",
                                                 (stored["undoes"],)).fetchone())
            return stored
        target = conn.execute(
            "SELECT d.* FROM decisions d WHERE d.reviewer = ? AND d.action NOT IN ('undo', 'auto_accept') "
            "AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) ORDER BY d.id DESC LIMIT 1",
            (reviewer,)).fetchone()
        if target is None:
            return None
        target = dict(target)
        pid = target["product_id"]
        _check_not_held(conn, pid, reviewer)
        row = ws.record_decision(pid, reviewer, "undo", undoes=target["id"], model_version=target["model_version"],
                                 idempotency_key=key, conn=conn)
        conn.execute("DELETE FROM reservations WHERE reviewer = ? AND tab = ?", (reviewer, tab))
        conn.execute("INSERT INTO reservations (product_id, reviewer, expires_at, tab) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (product_id, reviewer) DO UPDATE SET expires_at = excluded.expires_at, "
                     "tab = excluded.tab", (pid, reviewer, time.time() + settings.reservation_ttl_s, tab))
        return {**row, "replayed": False, "undone": target}

    return ws.write(tx)


def release(ws: Workspace, reviewer: str, product_id: str | None = None, *, tab: str | None = None) -> int:
    """Give back the reviewer's reservation(s) (switching strategy, logging out); returns how many.

    `tab`: only that tab's (the reviewer's other tabs keep their products); None: all of them."""
    reviewer = _check_reviewer(reviewer)
    where, args = "reviewer = ?", [reviewer]
    if product_id is not None:
        where, args = where + " AND product_id = ?", args + [str(product_id)]
    if tab is not None:
        where, args = where + " AND tab = ?", args + [tab]
    return ws.write(lambda c: c.execute(f"DELETE FROM reservations WHERE {where}", args).rowcount)


def holdings(ws: Workspace) -> dict[str, str]:
    """product -> reviewer for every unexpired reservation."""
    return {r["product_id"]: r["reviewer"] for r in ws.query(
        "SELECT product_id, reviewer FROM reservations WHERE expires_at > ?", (time.time(),))}


def recent_decisions(ws: Workspace, reviewer: str, limit: int = 10) -> list[dict]:
    """The reviewer's latest decisions not undone, newest first (the app's history panel)."""
    return ws.query("SELECT e.*, p.title FROM effective_decisions e JOIN products p ON p.id = e.product_id "
                    "WHERE e.reviewer = ? ORDER BY e.id DESC LIMIT ?", (reviewer, int(limit)))


def resolved_labels(ws: Workspace) -> dict[str, int]:
    """product -> label by the one rule (`store.labels`): majority of reviewers, tie -> latest,
    else the imported label. The same as `Workspace.current_labels()`."""
    from store.labels import resolve_labels
    return resolve_labels(ws)


def disagreements(ws: Workspace) -> list[dict]:
    """Products where reviewers' effective decisions name different categories."""
    return ws.query(
        "SELECT product_id, group_concat(reviewer || '=' || category, ', ') AS votes FROM ("
        "  SELECT e.product_id, e.reviewer, e.category FROM effective_decisions e "
        "  WHERE e.action IN ('accept', 'correct') AND e.id = (SELECT max(f.id) FROM effective_decisions f "
        "    WHERE f.product_id = e.product_id AND f.reviewer = e.reviewer AND f.action IN ('accept', 'correct'))"
        ") GROUP BY product_id HAVING count(DISTINCT category) > 1 ORDER BY product_id")


# -- helpers --------------------------------------------------------------------------------------
def _check_reviewer(reviewer: str) -> str:
    name = (reviewer or "").strip()
    if not name:
        raise ReviewError("reviewer name is empty: log in or type your name before reviewing")
    return name


def _check_category(category: object, what: str) -> int:
    if category is None or not taxonomy.is_known(category):
        known = ", ".join(str(c) for c in taxonomy.codes())
        raise InvalidCategory(f"{what}: category {category!r} is not one of the 27 category codes ({known})")
    return int(str(category).strip())


def _replay(conn: sqlite3.Connection, key: str, reviewer: str, product_id: str | None) -> dict | None:
    row = conn.execute("SELECT * FROM decisions WHERE idempotency_key = ?", (key,)).fetchone()
    if row is None:
        return None
    row = dict(row)
    if row["reviewer"] != reviewer or (product_id is not None and row["product_id"] != product_id):
        raise ReviewError(f"idempotency key {key!r} was already used for decision {row['id']} "
                          f"({row['reviewer']} on product {row['product_id']}); use a fresh key per card")
    return {**row, "replayed": True}


def _check_not_held(conn: sqlite3.Connection, product_id: str, reviewer: str) -> None:
    holder = conn.execute("SELECT reviewer FROM reservations WHERE product_id = ? AND reviewer != ? "
                          "AND expires_at > ? LIMIT 1", (product_id, reviewer, time.time())).fetchone()
    if holder is not None:
        raise HeldByAnother(product_id, holder[0])


def _votes(pairs: list) -> tuple[Vote, ...]:
    return tuple(Vote(int(c), taxonomy.name(c), float(p)) for c, p in pairs)


def _threshold(cal: "honest.Calibration | None", settings: Settings) -> float:
    """The version's guaranteed auto-accept threshold; inf (nothing) when it could guarantee none;
    the settings' fixed threshold for a version trained before calibration existed."""
    if cal is None:
        return settings.auto_accept_threshold
    t = cal.auto_accept.threshold
    return float("inf") if t is None else float(t)


def prediction_view(row: dict, cal: "honest.Calibration | None", settings: Settings) -> Prediction:
    """A stored (or try-it) prediction row with the version's auto-accept rule and prediction set."""
    threshold = _threshold(cal, settings)
    top1_prob = float(row["top1_prob"])
    codes = taxonomy.codes()
    pred_set: tuple[int, ...] = ()
    note = f"fixed threshold {settings.auto_accept_threshold:.0%} (version trained before guarantees)"
    if cal is not None:
        inside = cal.conformal.sets(np.asarray(row["probs"], dtype=np.float64))[0]
        probs = np.asarray(row["probs"], dtype=np.float64)
        pred_set = tuple(int(codes[j]) for j in np.argsort(-probs, kind="stable") if inside[j])
        note = cal.auto_accept.describe()
    return Prediction(model_version=row["model_version"], top5=_votes(row["top5"]),
                      voters={name: _votes(v) for name, v in row["voters"].items()}, top1=int(row["top1"]),
                      top1_prob=top1_prob, margin=float(row["margin"]), entropy=float(row["entropy"]),
                      disagreement=bool(row["disagreement"]), auto_accept=top1_prob >= threshold,
                      source=row.get("source"), auto_accept_threshold=None if threshold == float("inf") else threshold,
                      auto_accept_note=note, pred_set=pred_set,
                      set_coverage=cal.conformal.coverage if cal is not None else None)


def _prediction(ws: Workspace, product_id: str, settings: Settings) -> Prediction | None:
    row = ws.prediction(product_id)
    if row is None:
        return None
    return prediction_view(row, honest.version_calibration(ws, row["model_version"]), settings)
