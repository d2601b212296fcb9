"""A real review app server for the app tests: fixture workspace, free port, launched and closed.

`running_app` launches `labeler.app.build_app` exactly as launch.py does (theme, CSS, shortcut
script), with `prevent_thread_lock=True`, and closes it afterwards. Gradio's temp files go under
the test's tmp_path.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

XSS_TITLE = '<script>window.__xss = "title"</script><img src=x onerror="window.__xss=\'img\'">Piscine <b>hors-sol</b>'
XSS_DESCRIPTION = ('Bâche &lt;script&gt;window.__xss="desc"&lt;/script&gt; <svg onload="window.__xss=\'svg\'"></svg>'
                   '<a href="javascript:window.__xss=1">lien</a> & solide')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(ws_root: Path, tmp_path: Path, *, settings=None, auth=None) -> Iterator[tuple[object, str]]:
    """(demo, url) of a live server over the workspace at `ws_root`."""
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path / "gradio-tmp")
    from labeler.app import build_app, serve
    from labeler.config import Settings
    from store.workspace import Workspace

    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # as launch.py on a 2-core machine: heatmaps leave a core to requests
    ws = Workspace(ws_root)
    demo = build_app(ws, settings or Settings(workspace=ws_root))
    _, url, _ = serve(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                      quiet=True, auth=auth)
    try:
        yield demo, url
    finally:
        demo.close()
        demo.review_ui.prefetch.close()
        ws.close()
        torch.set_num_threads(threads)


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
