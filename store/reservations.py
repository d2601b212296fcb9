"""Who holds which product right now: the `reservations` table (one row per held product).

One holder per product is a constraint (`reservations_one_holder`, UNIQUE(product_id), m065),
not a consequence of SQLite's single writer: `hold` inserts with conflict handling and takes a
product only when nobody else holds it or their lease has expired, so even a caller that skipped
every check cannot give one product to two reviewers. Functions taking `conn` run inside the
caller's `Workspace.write` transaction; the others read.
"""
from __future__ import annotations

import sqlite3
import time
from typing import Iterable

from store._conn import Db, conn_of


def drop_expired(conn: sqlite3.Connection, now: float) -> None:
    conn.execute("DELETE FROM reservations WHERE expires_at <= ?", (now,))


def hold(conn: sqlite3.Connection, product_id: str, reviewer: str, expires_at: float, *, tab: str = "",
         now: float | None = None) -> bool:
    """Reserve (or renew) the product for the reviewer's `tab`; False, with nothing written, when
    another reviewer holds it unexpired. An expired lease of anyone is taken over."""
    now = time.time() if now is None else now
    cur = conn.execute(
        "INSERT INTO reservations (product_id, reviewer, expires_at, tab) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (product_id) DO UPDATE SET reviewer = excluded.reviewer, expires_at = excluded.expires_at, "
        "tab = excluded.tab WHERE reservations.reviewer = excluded.reviewer OR reservations.expires_at <= ?",
        (str(product_id), reviewer, expires_at, tab, now))
    return cur.rowcount == 1


def hold_many(conn: sqlite3.Connection, product_ids: Iterable[str], reviewer: str, expires_at: float,
              now: float | None = None) -> list[str]:
    """`hold` for each product (tab ''); returns the ones now held by the reviewer."""
    return [pid for pid in product_ids if hold(conn, pid, reviewer, expires_at, now=now)]


def release(conn: sqlite3.Connection, reviewer: str, product_id: str | None = None, *,
            tab: str | None = None) -> int:
    """Drop the reviewer's reservations (of one product / one tab / all); returns how many."""
    where, args = "reviewer = ?", [reviewer]
    if product_id is not None:
        where, args = where + " AND product_id = ?", args + [str(product_id)]
    if tab is not None:
        where, args = where + " AND tab = ?", args + [tab]
    return conn.execute(f"DELETE FROM reservations WHERE {where}", args).rowcount


def release_many(conn: sqlite3.Connection, reviewer: str, product_ids: Iterable[str]) -> None:
    conn.executemany("DELETE FROM reservations WHERE product_id = ? AND reviewer = ?",
                     [(str(pid), reviewer) for pid in product_ids])


def of_tab(conn: sqlite3.Connection, reviewer: str, tab: str) -> list[str]:
    """The reviewer's held products a tab may resume: its own first, then ones held without a
    tab (CLI, API, older rows), latest lease first."""
    return [r[0] for r in conn.execute(
        "SELECT product_id FROM reservations WHERE reviewer = ? AND tab IN (?, '') "
        "ORDER BY tab = ? DESC, expires_at DESC", (reviewer, tab, tab))]


def held(db: Db, now: float | None = None, product_ids: list[str] | None = None) -> set[str]:
    """Products with a reservation (unexpired ones only when `now` is given; of `product_ids` only
    when given)."""
    where, args = [], []
    if now is not None:
        where.append("expires_at > ?"); args.append(now)
    if product_ids is not None:
        where.append(f"product_id IN ({','.join('?' * len(product_ids))})"); args += list(product_ids)
    sql = "SELECT product_id FROM reservations" + (" WHERE " + " AND ".join(where) if where else "")
    return {r[0] for r in conn_of(db).execute(sql, args)}


def holder(db: Db, product_id: str, *, other_than: str, now: float) -> str | None:
    """Another reviewer holding the product unexpired, if any."""
    row = conn_of(db).execute("SELECT reviewer FROM reservations WHERE product_id = ? AND reviewer != ? "
                              "AND expires_at > ? LIMIT 1", (str(product_id), other_than, now)).fetchone()
    return None if row is None else row[0]


def holds(db: Db, product_id: str, reviewer: str, now: float) -> bool:
    """Whether the reviewer's lease on the product is still running."""
    return conn_of(db).execute("SELECT 1 FROM reservations WHERE product_id = ? AND reviewer = ? "
                               "AND expires_at > ?", (str(product_id), reviewer, now)).fetchone() is not None


def holdings(db: Db, now: float | None = None) -> dict[str, str]:
    """product -> reviewer for every unexpired reservation."""
    now = time.time() if now is None else now
    return {r[0]: r[1] for r in conn_of(db).execute(
        "SELECT product_id, reviewer FROM reservations WHERE expires_at > ?", (now,))}
