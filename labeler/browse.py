"""Browse the catalog: search, filter, sort and page products, fast at 100k products.

Words are looked up in the `products_fts` full-text index (title and description, accents
folded, each word a prefix: "pisc gonfl" finds "Piscine gonflable"; 2- and 3-letter prefixes are
indexed too), and a text that is a product id also matches that product. Filters: imported,
predicted (live version's fused top-1) and decided category; a category in the live version's
prediction set (its conformal set, `models.honest`: the categories the product may well be);
decided or not; a reviewer who
decided it; a confidence range on the fused top-1; text and image disagree; flagged as a suspect
label by the latest label-issue run. Decided means a label decision in effect
(accept / correct / auto-accept not undone); its category and reviewer are the latest such.

Why not one SQL query: counting and sorting 100k rows joined with their predictions and the
decision log took 0.5-2 s a page on the 2-core machine. A `CatalogIndex` keeps the columns the
filters and sorts read as numpy arrays instead (import order, id and title orders, imported and
predicted category, confidence), rebuilt only when the store's 'catalog' counter moves (products
or predictions written, ~1 s at 100k), and the decision state replayed incrementally from the
append-only log (`store.decisions.since`, commit order), as the review queue does. A page is then
boolean masks, one sort of what matched and one read of the page's rows (`store.catalog`). `python -m bench.bench_browse`
measures it on 100k products. No Gradio here: the app's Browse tab renders `BrowsePage.rows`.
"""
from __future__ import annotations

import re
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from labeler import taxonomy
from labeler.taxonomy import Taxonomy
from models import honest
from store import catalog, decisions, search
from store.workspace import Workspace, WorkspaceError

SORTS = ("imported", "id", "title", "confidence", "-confidence", "decided_at")
STATUSES = ("any", "decided", "undecided")
LABEL_ACTIONS = ("accept", "correct", "auto_accept")
TEXT_CACHE = 32       # searches whose matches are kept (per workspace)


class BrowseError(WorkspaceError):
    """A browse query that cannot run as given; the message names the field and the fix."""


@dataclass(frozen=True)
class BrowseQuery:
    text: str = ""                  # words in title/description, or a product id
    imported: int | None = None     # imported category code
    predicted: int | None = None    # live model's fused top-1
    decided: int | None = None      # category of the decision in effect
    in_set: int | None = None       # a category in the live version's prediction set
    status: str = "any"             # 'any' | 'decided' | 'undecided'
    reviewer: str | None = None     # decided by this reviewer (their decision in effect)
    min_confidence: float | None = None
    max_confidence: float | None = None
    disagreement: bool = False      # only products whose text and image top-1 differ
    suspect: bool = False           # only products the latest label-issue run flags
    sort: str = "imported"          # one of SORTS
    page: int = 1                   # 1-based
    page_size: int = 50


@dataclass(frozen=True)
class BrowsePage:
    rows: list[dict]      # product_id, title, imported, predicted, confidence, decided, decided_by, decided_at
    total: int            # products matching the filters
    page: int
    pages: int
    query: BrowseQuery
    elapsed_ms: float


def fts_expression(text: str) -> str | None:
    """An FTS5 MATCH expression: every word as a quoted prefix, all required (None: no word)."""
    words = re.findall(r"[^\W_]+", text or "")      # FTS5's unicode61 splits on '_' too
    return " ".join(f'"{w}"*' for w in words) or None


def _check(q: BrowseQuery, tax: Taxonomy) -> BrowseQuery:
    """The query with its category filters as keys of `tax` (a code such as 'toys' or a key)."""
    keys = {}
    for name in ("imported", "predicted", "decided", "in_set"):
        value = getattr(q, name)
        if value is not None:
            keys[name] = tax.parse(value)
            if keys[name] is None:
                what = "prediction set" if name == "in_set" else name
                raise BrowseError(f"{what} category {value!r} is not one of the {len(tax)} category codes")
    q = replace(q, **keys)
    if q.status not in STATUSES:
        raise BrowseError(f"status {q.status!r}: expected one of {', '.join(STATUSES)}")
    if q.sort not in SORTS:
        raise BrowseError(f"sort {q.sort!r}: expected one of {', '.join(SORTS)}")
    for name in ("min_confidence", "max_confidence"):
        value = getattr(q, name)
        if value is not None and not 0 <= float(value) <= 1:
            raise BrowseError(f"{name} {value} is not a probability between 0 and 1")
    if q.page < 1 or not 1 <= q.page_size <= 1000:
        raise BrowseError(f"page {q.page} / page size {q.page_size}: pages start at 1, sizes go from 1 to 1000")
    return q


def browse(ws: Workspace, query: BrowseQuery = BrowseQuery()) -> BrowsePage:
    """One page of the catalog under the query's search, filters and sort (see the module doc)."""
    return index_for(ws).browse(query)


@dataclass
class _Columns:
    """The catalog's filter and sort columns, position = import order (products.rowid order)."""

    key: tuple
    rowids: np.ndarray            # (n,) int64, ascending
    ids: list[str]
    pos: dict[str, int]
    imported: np.ndarray          # (n,) int64, 0 = no imported label
    predicted: np.ndarray         # (n,) int64, 0 = not scored by the live version
    confidence: np.ndarray        # (n,) float64, nan = not scored
    by_id: np.ndarray             # positions sorted by product id
    by_title: np.ndarray          # positions sorted by title (case-folded)
    disagreement: np.ndarray      # (n,) bool: the live version's text and image top-1 differ
    suspect: np.ndarray           # (n,) bool: flagged by the latest label-issue run


@dataclass
class _Decisions:
    """Replay of the decision log: each product's label decisions in effect."""

    last_seq: int = 0                                                        # replayed up to (store.decisions)
    rows: dict[int, tuple[str, str, int]] = field(default_factory=dict)      # id -> (product, reviewer, category)
    in_effect: dict[str, dict[int, str]] = field(default_factory=dict)       # product -> {id: reviewer}
    by_reviewer: dict[str, dict[str, int]] = field(default_factory=dict)     # reviewer -> product -> n in effect


class CatalogIndex:
    """Owner of one workspace's browse columns and decision replay (thread-safe)."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self._lock = threading.Lock()
        self._cols: _Columns | None = None
        self._dec = _Decisions()
        self._decided_id = np.zeros(0, np.int64)      # (n,) latest label decision in effect, 0 = none
        self._decided_cat = np.zeros(0, np.int64)
        # text -> positions it matched: paging through one search repeats its FTS query, which
        # costs 40-130 ms for a 2-letter prefix matching 40k products; cleared with the columns
        self._text_hits: "OrderedDict[str, np.ndarray]" = OrderedDict()
        # the live version's prediction sets, (n, k) bool by position, and the key of each column;
        # made on the first query that filters by them (one read of the version's probabilities),
        # cleared with the columns
        self._sets: tuple[np.ndarray, list[int]] | None = None

    # -- keeping up with the store -------------------------------------------------------------
    def _key(self) -> tuple:
        return (self.ws.live_version(), catalog.generation(self.ws), catalog.issues_generation(self.ws))

    def _load(self, key: tuple) -> _Columns:
        rows = catalog.browse_rows(self.ws, key[0])
        from labeler.queue import stored_suspects
        ids = [r[1] for r in rows]
        titles = [r[2].casefold() for r in rows]
        flagged = stored_suspects(self.ws)
        return _Columns(
            key=key, rowids=np.fromiter((r[0] for r in rows), np.int64, len(rows)), ids=ids,
            pos={pid: i for i, pid in enumerate(ids)},
            imported=np.fromiter((r[3] for r in rows), np.int64, len(rows)),
            predicted=np.fromiter((r[4] for r in rows), np.int64, len(rows)),
            confidence=np.fromiter((np.nan if r[5] is None else r[5] for r in rows), np.float64, len(rows)),
            by_id=np.array(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64),
            by_title=np.array(sorted(range(len(ids)), key=lambda i: (titles[i], i)), dtype=np.int64),
            disagreement=np.fromiter((bool(r[6]) for r in rows), bool, len(rows)),
            suspect=np.fromiter((pid in flagged for pid in ids), bool, len(rows)))

    def _refresh(self) -> _Columns:
        key = self._key()
        if self._cols is None or self._cols.key != key:
            self._cols = self._load(key)
            self._text_hits.clear()
            self._sets = None
            self._dec = _Decisions()          # positions changed: replay the log from the start
            self._decided_id = np.zeros(len(self._cols.ids), np.int64)
            self._decided_cat = np.zeros(len(self._cols.ids), np.int64)
        self._catch_up()
        return self._cols

    def _catch_up(self) -> None:
        dec = self._dec
        top = decisions.position(self.ws)
        if top < dec.last_seq:                  # the database was replaced under us
            self._cols = None
            self._refresh()
            return
        touched: set[str] = set()
        for seq, did, pid, reviewer, action, category, undoes in decisions.since(self.ws, dec.last_seq):
            dec.last_seq = seq
            if action == "undo":
                target = dec.rows.pop(undoes, None)
                if target is None:
                    continue
                tpid, treviewer, _ = target
                dec.in_effect.get(tpid, {}).pop(undoes, None)
                mine = dec.by_reviewer.get(treviewer, {})
                mine[tpid] = mine.get(tpid, 1) - 1
                if mine[tpid] <= 0:
                    mine.pop(tpid, None)
                touched.add(tpid)
            elif action in LABEL_ACTIONS:
                dec.rows[did] = (pid, reviewer, int(category))
                dec.in_effect.setdefault(pid, {})[did] = reviewer
                mine = dec.by_reviewer.setdefault(reviewer, {})
                mine[pid] = mine.get(pid, 0) + 1
                touched.add(pid)
        for pid in touched:
            i = self._cols.pos.get(pid) if self._cols is not None else None
            if i is None:
                continue
            live = dec.in_effect.get(pid)
            if live:
                latest = max(live)
                self._decided_id[i], self._decided_cat[i] = latest, dec.rows[latest][2]
            else:
                self._decided_id[i] = self._decided_cat[i] = 0

    # -- the query -----------------------------------------------------------------------------
    def browse(self, query: BrowseQuery) -> BrowsePage:
        started = time.perf_counter()
        q = _check(query, taxonomy.of(self.ws))
        with self._lock:
            cols = self._refresh()
            mask = np.ones(len(cols.ids), bool)
            if q.text.strip():
                mask &= self._text_mask(cols, q.text)
            if q.imported is not None:
                mask &= cols.imported == int(q.imported)
            if q.predicted is not None:
                mask &= cols.predicted == int(q.predicted)
            if q.min_confidence is not None:
                mask &= cols.confidence >= float(q.min_confidence)     # nan compares False: unscored out
            if q.max_confidence is not None:
                mask &= cols.confidence <= float(q.max_confidence)
            if q.in_set is not None:
                mask &= self._in_set(cols, int(q.in_set))
            if q.disagreement:
                mask &= cols.disagreement
            if q.suspect:
                mask &= cols.suspect
            if q.decided is not None:
                mask &= self._decided_cat == int(q.decided)
            if q.status == "decided":
                mask &= self._decided_id > 0
            elif q.status == "undecided":
                mask &= self._decided_id == 0
            if q.reviewer:
                mine = np.zeros(len(cols.ids), bool)
                idx = [cols.pos[p] for p in self._dec.by_reviewer.get(q.reviewer.strip(), {}) if p in cols.pos]
                mine[idx] = True
                mask &= mine
            order = self._order(cols, mask, q.sort)
            total = len(order)
            pages = max(1, -(-total // q.page_size))
            page = min(q.page, pages)
            chosen = order[(page - 1) * q.page_size: page * q.page_size]
            ids = [cols.ids[i] for i in chosen]
            version = cols.key[0]
            decided = {cols.ids[i]: int(self._decided_id[i]) for i in chosen if self._decided_id[i]}
        rows = _rows(self.ws, ids, version, decided)
        return BrowsePage(rows=rows, total=total, page=page, pages=pages, query=replace(q, page=page),
                          elapsed_ms=(time.perf_counter() - started) * 1000)

    def _in_set(self, cols: _Columns, key: int) -> np.ndarray:
        """(n,) bool: products whose live prediction set holds category `key`."""
        if self._sets is None:
            self._sets = self._load_sets(cols)
        sets, classes = self._sets
        if key not in classes:          # a category added after the version was trained: in no set
            return np.zeros(len(cols.ids), bool)
        return sets[:, classes.index(key)]

    def _load_sets(self, cols: _Columns) -> tuple[np.ndarray, list[int]]:
        version = cols.key[0]
        if version is None:
            raise BrowseError("no live model version: the prediction-set filter reads its sets; train one first")
        cal = honest.version_calibration(self.ws, version)
        if cal is None:
            raise BrowseError(f"the live version {version} has no prediction sets (trained before they were "
                              "calibrated): retrain to filter by them, or clear the prediction-set filter")
        classes = [int(c) for c in taxonomy.classes_of(self.ws, version)]
        try:
            rowids, probs = search.version_probabilities(self.ws, version)
        except ValueError as exc:
            raise BrowseError(str(exc)) from None
        sets = np.zeros((len(cols.ids), len(classes)), bool)
        if len(rowids):
            if probs.shape[1] != len(classes):
                raise BrowseError(f"the live version {version} stores {probs.shape[1]} probabilities a product "
                                  f"for {len(classes)} categories: score the catalog with it again")
            at = np.searchsorted(cols.rowids, rowids)
            ok = (at < len(cols.rowids)) & (cols.rowids[np.minimum(at, len(cols.rowids) - 1)] == rowids)
            sets[at[ok]] = cal.conformal.sets(probs[ok])
        return sets, classes

    def _text_mask(self, cols: _Columns, text: str) -> np.ndarray:
        mask = np.zeros(len(cols.ids), bool)
        hits = self._text_hits.get(text.strip())
        if hits is None:
            hits = self._text_positions(cols, text)
            self._text_hits[text.strip()] = hits
            while len(self._text_hits) > TEXT_CACHE:
                self._text_hits.popitem(last=False)
        else:
            self._text_hits.move_to_end(text.strip())
        mask[hits] = True
        return mask

    def _text_positions(self, cols: _Columns, text: str) -> np.ndarray:
        mask = np.zeros(len(cols.ids), bool)
        match = fts_expression(text)
        if match is not None:
            found = search.matching_rowids(self.ws, match)
            at = np.searchsorted(cols.rowids, found)
            ok = (at < len(cols.rowids)) & (cols.rowids[np.minimum(at, len(cols.rowids) - 1)] == found)
            mask[at[ok]] = True
        exact = cols.pos.get(text.strip())
        if exact is not None:
            mask[exact] = True
        return np.flatnonzero(mask)

    def _order(self, cols: _Columns, mask: np.ndarray, sort: str) -> np.ndarray:
        hits = np.flatnonzero(mask)                       # import order
        if sort == "imported":
            return hits
        if sort == "id":
            return cols.by_id[mask[cols.by_id]]
        if sort == "title":
            return cols.by_title[mask[cols.by_title]]
        if sort == "decided_at":
            # latest decision first (the largest id), undecided (0) last, then import order
            return hits[np.lexsort((hits, -self._decided_id[hits]))]
        conf = cols.confidence[hits]
        conf = np.where(np.isnan(conf), np.inf if sort == "confidence" else -np.inf, conf)
        key = conf if sort == "confidence" else -conf      # unscored last either way
        return hits[np.lexsort((hits, key))]

    def reviewers(self) -> list[str]:
        with self._lock:
            self._refresh()
            return sorted(r for r, products in self._dec.by_reviewer.items() if products)


_INDEXES: "weakref.WeakKeyDictionary[Workspace, CatalogIndex]" = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def index_for(ws: Workspace) -> CatalogIndex:
    """The workspace object's CatalogIndex (one per Workspace object, made on first use)."""
    with _INDEXES_LOCK:
        idx = _INDEXES.get(ws)
        if idx is None:
            idx = _INDEXES[ws] = CatalogIndex(ws)
        return idx


def _rows(ws: Workspace, ids: list[str], version: str | None, decided: dict[str, int]) -> list[dict]:
    """The page's rows, in `ids` order: imported, predicted and decided state of each product."""
    if not ids:
        return []
    found = catalog.page_rows(ws, ids, version)
    rows = decisions.rows_by_id(ws, decided.values())
    out = []
    for pid in ids:
        r = dict(found[pid])
        d = rows.get(decided.get(pid, 0))
        r["decided"] = None if d is None else d["category"]
        r["decided_by"] = None if d is None else d["reviewer"]
        r["decided_at"] = None if d is None else d["created_at"]
        r["decided_action"] = None if d is None else d["action"]
        out.append(r)
    return out


def reviewers(ws: Workspace) -> list[str]:
    """Reviewers with a label decision in effect (for the reviewer filter's choices)."""
    return index_for(ws).reviewers()


# -- what the app's table shows (plain data, no Gradio) --------------------------------------------
TABLE_COLUMNS = ["product id", "title", "imported", "predicted", "confidence", "decided", "by", "decided at"]


def _cat(code: int | None, tax: Taxonomy) -> str:
    return "" if code is None else f"{tax.code(code)} · {tax.name(code)}"


def table_rows(page: BrowsePage, title_chars: int = 90, tax: Taxonomy | None = None) -> list[list]:
    """The page as rows of TABLE_COLUMNS: category codes with names (`tax`, the workspace's
    taxonomy; default Rakuten's), confidence rounded."""
    tax = tax or taxonomy.default()
    out = []
    for r in page.rows:
        title = r["title"] if len(r["title"]) <= title_chars else r["title"][:title_chars - 1] + "…"
        decided = _cat(r["decided"], tax) + (" (auto)" if r["decided_action"] == "auto_accept" else "")
        out.append([r["product_id"], title, _cat(r["imported"], tax), _cat(r["predicted"], tax),
                    None if r["confidence"] is None else round(float(r["confidence"]), 3), decided,
                    r["decided_by"] or "", (r["decided_at"] or "")[:16].replace("T", " ")])
    return out


def summary(page: BrowsePage) -> str:
    """One line under the table: how many matched, which page, how long it took."""
    if page.total == 0:
        return "No product matches these filters."
    first = (page.page - 1) * page.query.page_size + 1
    return (f"Products {first:,}–{first + len(page.rows) - 1:,} of {page.total:,} · page {page.page} of "
            f"{page.pages:,} · {page.elapsed_ms:.0f} ms")


# -- one product from the table: what is known about it, and a new decision on it -----------------
def product_detail(ws: Workspace, product_id: str) -> dict:
    """The product, the live model's top-5 and every decision on it (oldest first, undone flagged)."""
    pid = (product_id or "").strip()
    product = ws.product(pid)
    if product is None:
        raise BrowseError(f"unknown product {pid!r}: pick a row of the table or type an id from it")
    pred = ws.prediction(pid)
    history = decisions.product_history(ws, pid)
    label = decisions.current_label(ws, pid)
    return {"product": product, "top5": pred["top5"] if pred else [], "model_version": pred and pred["model_version"],
            "history": history, "label": label}


def change_decision(ws: Workspace, reviewer: str, product_id: str, category: int, comment: str = "") -> dict:
    """A new decision on a product found in the table (an old decision is never edited): accept
    when the category is the live model's top-1, else correct. Refused while another reviewer
    holds the product (review.HeldByAnother)."""
    from labeler import review
    pred = ws.prediction(product_id)
    category = review.check_category(category, "browse", taxonomy.of(ws))
    action = "accept" if pred is not None and int(pred["top1"]) == category else "correct"
    row = review.decide(ws, reviewer, product_id, action, category=category,
                        comment=comment or "changed from Browse")
    return row
