"""Browse the catalog: search, filter, sort and page products, fast at 100k products.

One SQL query per page over the store: words are looked up in the `products_fts` full-text
index (title and description, accents folded, each word a prefix: "pisc gonfl" finds "Piscine
gonflable"), and a word that is a product id also matches that product. Filters: imported,
predicted (live version's fused top-1) and decided category; decided or not; a reviewer who
decided it; a confidence range on the fused top-1. Decided means a label decision in effect
(accept / correct / auto-accept not undone); its category and reviewer are the latest such.

The decided state comes from a CTE over the decisions log (a few thousand rows), never from the
`current_labels` view per product, and only when a filter or the sort needs it; the page's own
rows get theirs by index lookups. `python bench/bench_browse.py` measures it on 100k products.
No Gradio here: the app's Browse tab renders `BrowsePage.rows`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

from labeler import taxonomy
from store.workspace import Workspace, WorkspaceError

SORTS = {
    "imported": "p.rowid",
    "id": "p.id",
    "title": "p.title COLLATE NOCASE, p.rowid",
    "confidence": "pr.top1_prob IS NULL, pr.top1_prob, p.rowid",          # least sure first
    "-confidence": "pr.top1_prob IS NULL, pr.top1_prob DESC, p.rowid",    # surest first
    "decided_at": "lab.decision_id IS NULL, lab.decision_id DESC, p.rowid",  # latest decided first
}
STATUSES = ("any", "decided", "undecided")
_LABEL = "('accept', 'correct', 'auto_accept')"
# each product's label decision in effect: the latest accept/correct/auto-accept not undone
_LABELS_CTE = (
    "lab AS MATERIALIZED (SELECT d.product_id, d.id AS decision_id, d.category AS decided, "
    "d.reviewer AS decided_by, d.created_at AS decided_at FROM decisions d JOIN ("
    f"  SELECT max(e.id) AS id FROM decisions e WHERE e.action IN {_LABEL} "
    "   AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = e.id) GROUP BY e.product_id"
    ") m ON m.id = d.id)")


class BrowseError(WorkspaceError):
    """A browse query that cannot run as given; the message names the field and the fix."""


@dataclass(frozen=True)
class BrowseQuery:
    text: str = ""                  # words in title/description, or a product id
    imported: int | None = None     # imported category code
    predicted: int | None = None    # live model's fused top-1
    decided: int | None = None      # category of the decision in effect
    status: str = "any"             # 'any' | 'decided' | 'undecided'
    reviewer: str | None = None     # decided by this reviewer (their decision in effect)
    min_confidence: float | None = None
    max_confidence: float | None = None
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


def _check(q: BrowseQuery) -> BrowseQuery:
    for name in ("imported", "predicted", "decided"):
        value = getattr(q, name)
        if value is not None and not taxonomy.is_known(value):
            raise BrowseError(f"{name} category {value!r} is not one of the 27 category codes")
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
    started = time.perf_counter()
    q = _check(query)
    version = ws.live_version()
    where: list[str] = []
    params: dict[str, object] = {"version": version}
    match = fts_expression(q.text)
    if match is not None:
        params["match"], params["pid"] = match, q.text.strip()
        where.append("(p.rowid IN (SELECT rowid FROM products_fts WHERE products_fts MATCH :match) "
                     "OR p.id = :pid)")
    if q.imported is not None:
        where.append("p.source_label = :imported")
        params["imported"] = int(q.imported)
    if q.predicted is not None:
        where.append("pr.top1 = :predicted")
        params["predicted"] = int(q.predicted)
    if q.min_confidence is not None:
        where.append("pr.top1_prob >= :lo")
        params["lo"] = float(q.min_confidence)
    if q.max_confidence is not None:
        where.append("pr.top1_prob <= :hi")
        params["hi"] = float(q.max_confidence)
    needs_labels = (q.decided is not None or q.status != "any" or bool(q.reviewer) or q.sort == "decided_at")
    if q.decided is not None:
        where.append("lab.decided = :decided")
        params["decided"] = int(q.decided)
    if q.status == "decided":
        where.append("lab.decision_id IS NOT NULL")
    elif q.status == "undecided":
        where.append("lab.decision_id IS NULL")
    if q.reviewer:
        # any reviewer whose decision is in effect on the product, not only the latest one
        where.append(f"EXISTS (SELECT 1 FROM decisions r WHERE r.product_id = p.id AND r.reviewer = :reviewer "
                     f"AND r.action IN {_LABEL} AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = r.id))")
        params["reviewer"] = q.reviewer.strip()
    joins = "LEFT JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = :version"
    with_cte = ""
    if needs_labels:
        with_cte = f"WITH {_LABELS_CTE} "
        joins += " LEFT JOIN lab ON lab.product_id = p.id"
    where_sql = (" WHERE " + " AND ".join(where)) if where else ""
    conn = ws.conn
    total = int(conn.execute(f"{with_cte}SELECT count(*) FROM products p {joins}{where_sql}", params).fetchone()[0])
    pages = max(1, -(-total // q.page_size))
    page = min(q.page, pages)
    params["limit"], params["offset"] = q.page_size, (page - 1) * q.page_size
    ids = [r[0] for r in conn.execute(
        f"{with_cte}SELECT p.id FROM products p {joins}{where_sql} ORDER BY {SORTS[q.sort]} "
        "LIMIT :limit OFFSET :offset", params)]
    rows = _rows(ws, ids, version)
    return BrowsePage(rows=rows, total=total, page=page, pages=pages, query=replace(q, page=page),
                      elapsed_ms=(time.perf_counter() - started) * 1000)


def _rows(ws: Workspace, ids: list[str], version: str | None) -> list[dict]:
    """The page's rows, in `ids` order: imported, predicted and decided state of each product."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    found = {r["product_id"]: r for r in ws.query(
        "SELECT p.id AS product_id, p.title, p.source_label AS imported, p.image_path, pr.top1 AS predicted, "
        "pr.top1_prob AS confidence, "
        f"(SELECT d.id FROM decisions d WHERE d.product_id = p.id AND d.action IN {_LABEL} "
        " AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) ORDER BY d.id DESC LIMIT 1) AS decision_id "
        "FROM products p LEFT JOIN predictions pr ON pr.product_id = p.id AND pr.model_version = ? "
        f"WHERE p.id IN ({marks})", [version, *ids])}
    decided = {r["id"]: r for r in ws.query(
        f"SELECT id, category, reviewer, created_at, action FROM decisions WHERE id IN "
        f"({','.join('?' * len(found))})", [r["decision_id"] for r in found.values()])} if found else {}
    out = []
    for pid in ids:
        r = dict(found[pid])
        d = decided.get(r.pop("decision_id"))
        r["decided"] = None if d is None else d["category"]
        r["decided_by"] = None if d is None else d["reviewer"]
        r["decided_at"] = None if d is None else d["created_at"]
        r["decided_action"] = None if d is None else d["action"]
        out.append(r)
    return out


def reviewers(ws: Workspace) -> list[str]:
    """Everyone who has a decision in the log (for the reviewer filter's choices)."""
    return [r[0] for r in ws.conn.execute("SELECT DISTINCT reviewer FROM decisions ORDER BY reviewer")]


# -- what the app's table shows (plain data, no Gradio) --------------------------------------------
TABLE_COLUMNS = ["product id", "title", "imported", "predicted", "confidence", "decided", "by", "decided at"]


def _cat(code: int | None) -> str:
    return "" if code is None else f"{int(code)} · {taxonomy.name(code)}"


def table_rows(page: BrowsePage, title_chars: int = 90) -> list[list]:
    """The page as rows of TABLE_COLUMNS: category codes with names, confidence rounded."""
    out = []
    for r in page.rows:
        title = r["title"] if len(r["title"]) <= title_chars else r["title"][:title_chars - 1] + "…"
        decided = _cat(r["decided"]) + (" (auto)" if r["decided_action"] == "auto_accept" else "")
        out.append([r["product_id"], title, _cat(r["imported"]), _cat(r["predicted"]),
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
