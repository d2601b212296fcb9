"""Background work that must not slow a reviewer down: the warm-up and the heatmap worker.

After a launch (or a retrain) the app loads the live model, its image backbones and the ranked
queue, then computes heatmaps ahead, all in background threads of the server process. On a
2-core machine that work competed with the first reviewers' requests (Enter -> next card p95
517 ms in the first minutes). Linux schedules each thread on its own, so a background thread
lowers its own priority (`nice`) when it starts: the request threads keep the CPU they need and
the warm-up uses what is left. Elsewhere this is a no-op.

A priority does not cover Python's own lock (the GIL): a background thread running Python code
still takes turns with a request's thread. So background work also steps aside while a review
request is in flight (`Foreground`): the review handlers run inside `serving()`, and the workers
call `yield_to_requests()` between their steps (before loading a model, before each product's
heatmaps, before ranking the queue). A step already running finishes; the next one waits.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

log = logging.getLogger(__name__)
# added to the thread's niceness (0 normal .. 19 lowest); LABELER_BACKGROUND_NICE=0 turns it off
# (bench/bench_app.py --first-minute compares both)
BACKGROUND_NICE = int(os.environ.get("LABELER_BACKGROUND_NICE", "10"))
# the longest a background step waits for requests to end: reviewers working without a pause
# still leave the heatmaps and the warm-up a turn at least this often
MAX_YIELD_S = 2.0
T = TypeVar("T")


def lower_priority(step: int | None = None) -> int | None:
    """Make the calling thread `step` nicer than it is (Linux: per thread). Returns the new
    niceness, or None where threads cannot be told apart (no native id, not Linux)."""
    step = BACKGROUND_NICE if step is None else step
    if step <= 0 or not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + step))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError as exc:      # a container that forbids it: the work still runs, at normal priority
        log.info("could not lower the priority of %s: %s", threading.current_thread().name, exc)
        return None


def niceness(thread: threading.Thread) -> int | None:
    """A running thread's niceness (Linux), None when unknown: what the tests check."""
    tid = getattr(thread, "native_id", None)
    if tid is None or not hasattr(os, "getpriority"):
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return None


class Foreground:
    """How many review requests are in flight; background work steps aside while there are any.

    One per app (`ReviewUI.busy`), shared by its request threads and its background workers. A
    request handler that *waits for* background work (the heatmap follow-ups) must not run inside
    `serving()`: the worker would wait for it in turn."""

    def __init__(self, max_wait_s: float = MAX_YIELD_S):
        self.max_wait_s = max_wait_s
        self._cond = threading.Condition()
        self._in_flight = 0
        self._waiting = 0      # background steps waiting now (what the tests look at)
        self._served = 0       # requests served so far

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def served(self) -> int:
        return self._served

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around a request's work: background steps not yet begun wait until it is done."""
        with self._cond:
            self._in_flight += 1
            self._served += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def yield_to_requests(self) -> float:
        """Called by a background worker between two steps: returns at once when no request is in
        flight, else when none is (or after `max_wait_s`). Returns the seconds it waited."""
        with self._cond:
            if not self._in_flight:
                return 0.0
            start = time.monotonic()
            self._waiting += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: not self._in_flight, timeout=self.max_wait_s)
            finally:
                self._waiting -= 1
                self._cond.notify_all()
            return time.monotonic() - start

    def wait_until(self, predicate: Callable[["Foreground"], bool], timeout: float) -> bool:
        """Block until `predicate(self)` holds (checked at every change), at most `timeout` s."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout=timeout)

    def gated(self, step: Callable[..., T] | None) -> Callable[..., T] | None:
        """`step` that first yields to requests in flight (None stays None): for the callables a
        background worker is given (load a model version, explain a product)."""
        if step is None:
            return None

        @functools.wraps(step)
        def after_requests(*args, **kwargs):
            self.yield_to_requests()
            return step(*args, **kwargs)
        return after_requests


def in_foreground(handler: Callable[..., T]) -> Callable[..., T]:
    """Decorate a request handler method of an object with a `busy` (`Foreground`): background
    steps wait while it runs. The signature stays the handler's (Gradio reads it)."""
    @functools.wraps(handler)
    def serving(self, *args, **kwargs):
        with self.busy.serving():
            return handler(self, *args, **kwargs)
    return serving
