"""Search reads for Browse: full-text matches over product titles and descriptions
(`products_fts`, FTS5, m031) and the live version's probabilities behind its prediction sets."""
from __future__ import annotations

import json

import numpy as np

from store._conn import Db, conn_of


def matching_rowids(db: Db, match: str) -> np.ndarray:
    """Product rowids (the key `store.catalog.browse_rows` gives) matching an FTS5 expression."""
    return np.fromiter((r[0] for r in conn_of(db).execute(
        "SELECT rowid FROM products_fts WHERE products_fts MATCH ?", (match,))), np.int64)


VERSION_PROBS_SQL = ("SELECT p.rowid, pr.probs FROM predictions pr JOIN products p ON p.id = pr.product_id "
                     "WHERE pr.model_version = ?")


def query_plan(db: Db, sql: str, params: tuple = ()) -> list[str]:
    """SQLite's plan of one of this module's queries (the tests check it stays on indexes)."""
    return [r[-1] for r in conn_of(db).execute("EXPLAIN QUERY PLAN " + sql, params)]


def version_probabilities(db: Db, version: str) -> tuple[np.ndarray, np.ndarray]:
    """(rowids (m,), probs (m, k)) of every product `version` scored: the fused
    probabilities a version's prediction sets are made from (`models.honest.Conformal.sets`).

    One pass over the version's rows by the `predictions_version` index, each product found by
    its primary key; the JSON arrays are parsed in one call."""
    rows = conn_of(db).execute(VERSION_PROBS_SQL, (version,)).fetchall()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0))
    try:
        probs = np.asarray(json.loads("[" + ",".join(r[1] for r in rows) + "]"), dtype=np.float64)
    except ValueError:          # ragged rows: numpy refuses them
        probs = np.zeros(0)
    if probs.ndim != 2 or len(probs) != len(rows):
        raise ValueError(f"model version {version}: its stored probabilities are not one list of the same "
                         "length per product; score the catalog with it again (`labeler predict`)")
    return np.fromiter((r[0] for r in rows), np.int64, len(rows)), probs


UNDECIDED_PER_CATEGORY_SQL = (
    "SELECT pr.top1, count(*) FROM predictions pr WHERE pr.model_version = ? "
    "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.product_id = pr.product_id "
    "  AND d.action IN ('accept', 'correct', 'auto_accept') "
    "  AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id)) GROUP BY pr.top1")


def undecided_per_category(db: Db, version: str) -> dict[int, int]:
    """Predicted category -> products `version` puts there with no label decision in effect (the
    grid's next category); the version's rows by index, each product's decisions by index."""
    return {int(c): int(n) for c, n in conn_of(db).execute(UNDECIDED_PER_CATEGORY_SQL, (version,))}
