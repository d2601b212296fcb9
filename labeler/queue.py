"""The review queue: which product a reviewer gets next, and the caches that make it cheap.

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
  the tab keeps across reloads, '' without one) for `settings.reservation_ttl_s` from the moment
  it is shown (resuming it renews the lease). Picking and reserving happen in one write
  transaction, and the store refuses a second holder of a product by a constraint
  (`store.reservations.hold`), so two reviewers never hold the same product; expired
  reservations are deleted by the next `next_card`. A reload or a restarted server calls
  `next_card` again and gets the held product back.

Performance: the live version's predictions are read into arrays once per (workspace object,
version) and each strategy's ranked order is computed once from them (per category, suspects,
threshold, seed); both are re-used until the store's 'catalog' counter moves (predictions or
products written). The decision log is append-only and each decision carries its commit-order
position (`store.decisions.since`), so it is replayed incrementally inside each pick's
transaction instead of being re-read for every request; the set of products closed for everyone
is updated with it, and each ranking keeps a cursor past its closed top, so a card costs the same
50k decisions deep into an 85k catalog as on a fresh one. `python -m bench.bench_review`
measures submit -> next.
"""
from __future__ import annotations

import hashlib
import json
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
from labeler.cards import Card, card_prediction, check_category, check_reviewer, threshold_of
from labeler.config import Settings
from models import honest
from models.label_issues import FLAGGED_FIRST
from store import catalog, decisions, reservations
from store.workspace import Workspace

# -- in-memory state per Workspace object ---------------------------------------------------------
class _DecisionLog:
    """Replay of the append-only decisions table: who decided / skipped what, effective rows only."""

    def __init__(self, reopened: int = 0) -> None:
        self.last_seq = 0          # position in the decision log (store.decisions.position)
        self.rows: dict[int, tuple[str, str, str]] = {}           # id -> (product, reviewer, action)
        self.deciders: dict[str, dict[str, int]] = {}             # product -> reviewer -> n accept/correct
        self.skips: dict[str, dict[str, set[int]]] = {}           # reviewer -> product -> skip ids
        self.by_reviewer: dict[str, set[str]] = {}                # reviewer -> products decided
        # (share, seed) -> products with all the reviews they need, kept up to date decision by
        # decision: rebuilding it per card cost 35-135 ms with 50k decisions in the log
        self.closed_sets: dict[tuple[float, int], set[str]] = {}
        self.reopened = reopened    # bumped whenever a product leaves a closed set (undo, log reset)

    def catch_up(self, conn: sqlite3.Connection) -> None:
        """Apply what was appended since the last call, in commit order (the decisions counter)."""
        top = decisions.position(conn)
        if top < self.last_seq:     # the database was replaced under us: start over
            self.__init__(self.reopened + 1)
        if top == self.last_seq:
            return
        for seq, did, pid, reviewer, action, _category, undoes in decisions.since(conn, self.last_seq):
            if action == "undo":
                target = self.rows.pop(undoes, None)
                if target is not None:
                    self._apply(undoes, *target, sign=-1)
            else:
                self.rows[did] = (pid, reviewer, action)
                self._apply(did, pid, reviewer, action, sign=+1)
            self.last_seq = seq

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
    position: dict[str, int]       # product -> its index in `ids`
    score_values: np.ndarray       # (n scored,) strategy score of ids[i], for the scored head of `ids`
    # (share, seed) -> (log's reopened count, index before which every product is closed)
    cursors: dict[tuple[float, int], tuple[int, int]] = field(default_factory=dict)

    def score(self, pid: str) -> float | None:
        """The strategy's score of a ranked product (None: unscored, or not in this queue)."""
        i = self.position.get(pid)
        return float(self.score_values[i]) if i is not None and i < len(self.score_values) else None


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
    """Moves whenever predictions or products are written (the store's 'catalog' counter)."""
    return (catalog.generation(ws),)


def ranking(ws: Workspace, strategy: str, *, category: int | None = None, suspects: Iterable[str] | None = None,
            settings: Settings = Settings()) -> _Ranking:
    """The strategy's queue over the whole catalog, cached until predictions or products change.

    The first call after a model switch reads every live prediction once (about 0.1 s per 2,000
    products); call it from a background thread after a retrain to keep that off the request path.
    """
    strat = strategies.get(strategy)
    if strategy == "category":
        category = check_category(category, "category strategy", taxonomy.of(ws))
    flags_key: frozenset[str] | tuple | None = None
    if strategy == "suspect_labels":
        flags_key = (frozenset(str(s) for s in suspects) if suspects is not None
                     else ("stored", catalog.issues_generation(ws)))
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


def stored_suspects(ws: Workspace) -> frozenset[str]:
    """Products flagged by the latest label-issue detection run (empty when none ran)."""
    try:
        run = catalog.latest_issue_run(ws)
    except sqlite3.OperationalError:   # a workspace from before that migration
        return frozenset()
    return frozenset() if run is None else catalog.flagged(ws, run)


LOAD_BATCH = 10_000     # products per page read when the queue's arrays are built


@dataclass(frozen=True)
class _Catalog:
    """The live version's predictions as arrays (scored products in import order), read once, a
    page at a time: ids and numbers only, never the predictions' JSON."""

    ids: list[str]
    probs: np.ndarray              # (n, k) fused, one column per key of `codes`
    codes: tuple[int, ...]         # (k,) the version's classes: the category key of each column
    text_top1: np.ndarray          # (n,) codes
    image_top1: np.ndarray         # (n,) codes, 0 without an image vote
    source_labels: np.ndarray      # (n,) codes, 0 without an imported label
    unscored: list[str]            # products without a prediction, in import order
    unscored_labels: np.ndarray    # (len(unscored),) their imported label, 0 without one


def _load_catalog(ws: Workspace, version: str | None) -> _Catalog:
    """Read page by page (`store.catalog.queue_batches`, LOAD_BATCH products a page) into arrays
    sized for the catalog up front: each page's probabilities JSON is parsed into them and
    dropped, so building holds one page of JSON, not the catalog's."""
    codes = tuple(taxonomy.classes_of(ws, version))
    capacity = catalog.count_products(ws)
    probs = np.empty((capacity, len(codes)), np.float64)
    text, image, labels, unscored_labels = (np.zeros(capacity, np.int64) for _ in range(4))
    ids: list[str] = []
    unscored: list[str] = []
    for rows in catalog.queue_batches(ws, version, LOAD_BATCH):
        scored = [r for r in rows if r[2] is not None]
        need = max(len(ids) + len(scored), len(unscored) + len(rows) - len(scored))
        if need > capacity:                      # products imported while reading
            grow = need - capacity
            probs = np.concatenate([probs, np.empty((grow, len(codes)), np.float64)])
            text, image, labels, unscored_labels = (np.concatenate([a, np.zeros(grow, np.int64)])
                                                    for a in (text, image, labels, unscored_labels))
            capacity = need
        if scored:
            at, end = len(ids), len(ids) + len(scored)
            probs[at:end] = json.loads("[" + ",".join(r[2] for r in scored) + "]")
            text[at:end] = [r[3] or 0 for r in scored]
            image[at:end] = [r[4] or 0 for r in scored]
            labels[at:end] = [r[1] or 0 for r in scored]
            ids.extend(r[0] for r in scored)
        for r in rows:
            if r[2] is None:
                unscored_labels[len(unscored)] = r[1] or 0
                unscored.append(r[0])
    # in place: the room left over goes back without a copy
    probs.resize((len(ids), len(codes)), refcheck=False)
    for a in (text, image, labels):
        a.resize(len(ids), refcheck=False)
    unscored_labels.resize(len(unscored), refcheck=False)
    return _Catalog(ids=ids, probs=probs, codes=codes, text_top1=text, image_top1=image, source_labels=labels,
                    unscored=unscored, unscored_labels=unscored_labels)


def _rank_catalog(cat: _Catalog, ws: Workspace, strat: strategies.Strategy, category: int | None,
                  flags_key: frozenset[str] | tuple | None, settings: Settings) -> _Ranking:
    flags = stored_suspects(ws) if isinstance(flags_key, tuple) else flags_key
    ids: list[str] = []
    values = np.zeros(0)
    if cat.ids:
        cal = honest.version_calibration(ws, ws.live_version())
        ctx = strategies.Context(
            codes=cat.codes, text_top1=cat.text_top1, image_top1=cat.image_top1, source_labels=cat.source_labels,
            flags=None if flags is None else np.array([pid in flags for pid in cat.ids]),
            threshold=threshold_of(cal, settings), category=category,
            suspect_min_confidence=settings.auto_accept_threshold, seed=settings.seed,
            set_qhat=cal.conformal.qhat if cal is not None else None, suspects_flagged_first=FLAGGED_FIRST)
        s = np.asarray(strat(cat.probs, ctx), dtype=np.float64)
        order = strategies.rank(s, seed=settings.seed)
        ids = [cat.ids[i] for i in order]
        values = s[order]
    if strat.name == "category":
        ids += [pid for pid, label in zip(cat.unscored, cat.unscored_labels) if label == category]
    elif strat.name == "suspect_labels" and flags:
        ids += [pid for pid in cat.unscored if pid in flags]
    elif not strat.filters:
        ids += cat.unscored
    return _Ranking(ids=ids, position={pid: i for i, pid in enumerate(ids)}, score_values=values)


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
    reviewer = check_reviewer(reviewer)
    rank = ranking(ws, strategy, category=category, suspects=suspects, settings=settings)
    st = _state(ws)
    share, seed = settings.overlap_share, settings.seed

    def pick(conn: sqlite3.Connection) -> tuple[str, bool, int, int] | None:
        now = time.time()
        reservations.drop_expired(conn, now)
        with st.lock:
            st.log.catch_up(conn)
            chosen, resumed = None, False
            for pid in reservations.of_tab(conn, reviewer, tab):
                if chosen is None and not st.log.closed_for(pid, reviewer, share, seed):
                    chosen, resumed = pid, True
                else:
                    reservations.release(conn, reviewer, pid)
            held = None
            while True:
                if chosen is None:
                    held = reservations.held(conn) if held is None else held
                    chosen = _walk(rank, st.log, reviewer, held, share, seed)
                if chosen is None:
                    break
                if reservations.hold(conn, chosen, reviewer, now + settings.reservation_ttl_s, tab=tab, now=now):
                    break
                held = (held or set()) | {chosen}     # taken by someone the check above did not see
                chosen, resumed = None, False
            closed = st.log.closed(share, seed)
            n_products = catalog.count_products(conn)
            # a queue over the whole catalog holds every closed product: no set intersection
            remaining = len(rank.ids) - (len(closed) if len(rank.ids) == n_products
                                         else len(closed & rank.position.keys()))
            total = n_products - len(closed)
        if chosen is None:
            return None
        return chosen, resumed, remaining, total

    picked = ws.write(pick)
    if picked is None:
        return None
    pid, resumed, remaining, total = picked
    with st.lock:
        second = bool(st.log.deciders.get(pid)) and reviewer not in st.log.deciders[pid]
        mine = len(st.log.by_reviewer.get(reviewer, ()))
    score = rank.score(pid)
    if pid in rank.position:
        reason = strategies.describe_score(strategy, score)
    else:   # held from before under another strategy (release() on a strategy switch avoids it)
        reason = "picked by the queue you used before"
    if resumed:
        reason = f"resumed where you were · {reason}"
    return Card(product=ws.product(pid), prediction=card_prediction(ws, pid, settings), strategy=strategy,
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
    reviewer = check_reviewer(reviewer)
    rank = ranking(ws, strategy, category=category, suspects=suspects, settings=settings)
    st = _state(ws)
    share, seed = settings.overlap_share, settings.seed
    held = reservations.held(ws, now=time.time())
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

