"""The review app served on a free local port for a while, then closed: for the tests, the
benches and the docs' screenshots, which drive it with `gradio_client` or a real browser.

Launched exactly as launch.py launches it (`labeler.app.serve`: theme, CSS, shortcut script,
image route, logins), with `prevent_thread_lock=True` so the caller keeps the thread. The real
browser that drives it is Debian's chromium through Playwright (`launch_chromium`), one launch
for every test and bench (never `playwright install`).
"""
from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def launch_chromium(playwright):
    """A headless Debian chromium from a started Playwright (`sync_playwright()`); the caller closes it.
    Raises FileNotFoundError naming the fix when it is not installed."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(f"chromium not found at {CHROMIUM}: apt-get install -y chromium (see .ci/run)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(ws_root: Path, tmp_path: Path, *, settings=None, auth=None) -> Iterator[tuple[object, str]]:
    """(demo, url) of a live server over the workspace at `ws_root`; Gradio's temporary files go
    under `tmp_path`. One torch thread while it runs, as launch.py on a 2-core machine (the
    heatmaps leave a core to the requests)."""
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path / "gradio-tmp")
    import torch

    from labeler.app import build_app, serve
    from labeler.config import Settings
    from store.workspace import Workspace

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
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
