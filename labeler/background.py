"""Background work that must not slow a reviewer down: the warm-up and the heatmap worker.

After a launch (or a retrain) the app loads the live model, its image backbones and the ranked
queue, then computes heatmaps ahead, all in background threads of the server process. On a
2-core machine that work competed with the first reviewers' requests (Enter -> next card p95
517 ms in the first minutes). Linux schedules each thread on its own, so a background thread
lowers its own priority (`nice`) when it starts: the request threads keep the CPU they need and
the warm-up uses what is left. Elsewhere this is a no-op.
"""
from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)
# added to the thread's niceness (0 normal .. 19 lowest); LABELER_BACKGROUND_NICE=0 turns it off
# (bench/bench_app.py --first-minute compares both)
BACKGROUND_NICE = int(os.environ.get("LABELER_BACKGROUND_NICE", "10"))


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
