"""A real review app server for the app tests: `running_app` (labeler/local_app.py) launches
`labeler.app.build_app` exactly as launch.py does, on a free port, and closes it afterwards; here
too the hostile products and the raw decision rows the tests check it with.
"""
from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from labeler.local_app import free_port, running_app  # noqa: F401 - the app tests take them from here

XSS_TITLE = '<script>window.__xss = "title"</script><img src=x onerror="window.__xss=\'img\'">Piscine <b>hors-sol</b>'
XSS_DESCRIPTION = ('Bâche &lt;script&gt;window.__xss="desc"&lt;/script&gt; <svg onload="window.__xss=\'svg\'"></svg>'
                   '<a href="javascript:window.__xss=1">lien</a> & solide')


def add_hostile_product(ws_root: Path, reviewer: str, *, product_id: str = "xss-1") -> str:
    """A product whose title and description try to inject markup, scored by the live model and
    held by `reviewer` (as after a restart), so it is the first card that reviewer sees."""
    from labeler.training import live_bundle, score_products
    from store.workspace import Workspace, now_iso

    ws = Workspace(ws_root)
    ws.write(lambda c: c.execute(
        "INSERT INTO products (id, title, description, image_path, source_label, imported_at) "
        "VALUES (?, ?, ?, NULL, 2583, ?)", (product_id, XSS_TITLE, XSS_DESCRIPTION, now_iso())))
    score_products(ws, live_bundle(ws), ids=[product_id])
    ws.write(lambda c: c.execute("INSERT INTO reservations (product_id, reviewer, expires_at) VALUES (?, ?, ?)",
                                 (product_id, reviewer, time.time() + 600)))
    ws.close()
    return product_id


def decisions(ws_root: Path) -> list[dict]:
    """The decision rows straight from the SQLite file (a fresh connection, no app code)."""
    with contextlib.closing(sqlite3.connect(ws_root / "workspace.db")) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM decisions ORDER BY id")]
