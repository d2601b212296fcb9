"""Retrains in a background thread of this process, one at a time per workspace, polled by the
app (never blocks a request)."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from store.workspace import Workspace

if TYPE_CHECKING:
    from labeler.retrain import RetrainResult

log = logging.getLogger(__name__)


@dataclass
class RetrainHandle:
    """A retrain running in a background thread of this process. Poll it; never blocks the UI.

    >>> handle = start_background_retrain(ws)          # returns at once
    >>> handle.status()       # {'state': 'running', 'fraction': 0.42, 'message': 'fitting text model ...',
    ...                       #  'elapsed_s': 12.3, 'version': None, 'error': None}
    >>> handle.done, handle.result, handle.error       # RetrainResult / message once finished
    >>> handle.wait(timeout=600)                       # blocks (tests, CLI); returns RetrainResult or None
    """

    workspace: Path
    started_at: float = field(default_factory=time.time)
    fraction: float = 0.0
    message: str = "starting"
    result: RetrainResult | None = None
    error: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self.fraction, self.message = float(fraction), message

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        with self._lock:
            state = "running" if not self.done else ("failed" if self.error else "succeeded")
            return {"state": state, "fraction": round(self.fraction, 3), "message": self.message,
                    "elapsed_s": round(time.time() - self.started_at, 1),
                    "version": self.result.version if self.result else None,
                    "went_live": self.result.went_live if self.result else None, "error": self.error}

    def wait(self, timeout: float | None = None) -> RetrainResult | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result


_HANDLES: dict[str, RetrainHandle] = {}
_HANDLES_LOCK = threading.Lock()


def current_retrain(ws: Workspace) -> RetrainHandle | None:
    """The handle of this workspace's latest background retrain in this process (running or not)."""
    with _HANDLES_LOCK:
        return _HANDLES.get(str(ws.root.resolve()))


def start_background_retrain(ws: Workspace, *, on_done: Callable[[RetrainHandle], None] | None = None,
                             **retrain_kwargs: Any) -> RetrainHandle:
    """Start `retrain(ws, ...)` in a daemon thread and return its handle at once.

    One at a time per workspace: while one is running, the running handle is returned (check
    `handle.started_at` or `handle.status()`), so a double-clicked Retrain button starts one run.
    A retrain started by another process (the CLI) makes this one fail fast with RetrainBusy's
    message in `handle.error`. Reviewers keep working meanwhile; when it finishes the live
    pointer moves and the next `next_card` uses the new version's predictions. `on_done(handle)`
    is called in the worker thread when it ends (success or failure).
    For the app: poll `handle.status()` (e.g. with a gr.Timer) to drive a progress bar.
    """
    key = str(ws.root.resolve())
    with _HANDLES_LOCK:
        running = _HANDLES.get(key)
        if running is not None and not running.done:
            return running
        handle = RetrainHandle(workspace=ws.root)
        retrain_kwargs.setdefault("trigger", "app")

        def work() -> None:
            from labeler.retrain import retrain    # lazily: labeler.retrain re-exports this module
            try:
                handle.result = retrain(ws, progress=handle._progress, **retrain_kwargs)
                handle._progress(1.0, f"{handle.result.version} " +
                                 ("live" if handle.result.went_live else "ready, not live"))
            except Exception as exc:  # the error is the handle's to report; the app shows it
                handle.error = str(exc)
                handle._progress(handle.fraction, "failed")
                log.exception("background retrain failed")
            finally:
                ws.close()      # this thread's connection only
                if on_done is not None:
                    on_done(handle)

        handle._thread = threading.Thread(target=work, name=f"retrain:{ws.root.name}", daemon=True)
        _HANDLES[key] = handle
        handle._thread.start()
    return handle
