"""Retrain runs: one at a time per workspace, progress others can follow, and runs whose
process died recognised (by pid, host and the process start time in /proc) and marked
'interrupted', their half-built version 'failed'. The rows live in `store.runs`."""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from labeler.model_versions import RetrainError
from labeler.domain import Progress
from store import runs
from store.workspace import Workspace

log = logging.getLogger(__name__)

_ACTIVE_RUNS: set[tuple[str, int]] = set()     # (db path, run id) running in this process
_ACTIVE_LOCK = threading.Lock()


class RetrainBusy(RetrainError):
    """Another retrain of this workspace is running."""


def _process_started_after(pid: int, iso: str) -> bool:
    """True when the process now holding `pid` started after `iso` (so it is not the run's)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
        started = btime + int(stat[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return False
    return started > datetime.fromisoformat(iso).timestamp() + 1.0


def run_is_alive(ws: Workspace, run: dict) -> bool:
    """Whether the process that started `run` still runs it (another machine's run: trusted)."""
    if run["host"] != socket.gethostname():
        return True       # another machine's run: we cannot tell, trust the row
    pid = int(run["pid"])
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            return (str(ws.db_path), int(run["id"])) in _ACTIVE_RUNS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _process_started_after(pid, run["started_at"])


def mark_interrupted(ws: Workspace) -> list[dict]:
    """Runs left 'running' by a dead process become 'interrupted'; their unfinished version 'failed'."""
    if ws.read_only:       # only a writer repairs the record; a reader shows it as stored
        return []
    stale = [r for r in runs.running(ws) if not run_is_alive(ws, r)]
    for run in stale:
        reason = f"interrupted: process {run['pid']} ended during '{run['message'] or 'start'}'"
        runs.mark_interrupted(ws, run, reason)
        log.warning("retrain run %s was %s", run["id"], reason)
    return stale


def begin_run(ws: Workspace, trigger: str) -> int:
    """A new 'running' run of this process; RetrainBusy naming the running one otherwise."""
    mark_interrupted(ws)
    run_id, busy = runs.begin(ws, trigger=trigger, pid=os.getpid(), host=socket.gethostname())
    if busy is not None:
        raise RetrainBusy(f"a retrain of this workspace is already running (run {busy['id']}, started "
                          f"{busy['started_at']} by {busy['trigger']} on {busy['host']} pid {busy['pid']}, "
                          f"{busy['progress']:.0%}: {busy['message'] or 'starting'}); wait for it to finish")
    with _ACTIVE_LOCK:
        _ACTIVE_RUNS.add((str(ws.db_path), run_id))
    return run_id


def end_run(ws: Workspace, run_id: int, status: str, **fields: Any) -> None:
    """Record how the run ended (status and fields of `store.runs.finish`); it is no longer ours."""
    try:
        runs.finish(ws, run_id, status, **fields)
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_RUNS.discard((str(ws.db_path), run_id))


def run_progress(ws: Workspace, run_id: int, outer: Progress | None) -> Progress:
    """The caller's callback, plus the run row (throttled) so other processes can follow it."""
    last = [0.0, ""]

    def report(fraction: float, message: str) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if outer is not None:
            outer(fraction, message)
        now = time.monotonic()
        if message == last[1] and now - last[0] < 0.25 and fraction < 1.0:
            return        # a new stage is always recorded; repeats of one stage at most 4 times a second
        last[0], last[1] = now, message
        try:
            runs.set_progress(ws, run_id, fraction, message)
        except sqlite3.Error as exc:   # progress display must never break the retrain
            log.warning("could not record retrain progress: %s", exc)

    return report


def retrain_state(ws: Workspace, limit: int = 5) -> list[dict]:
    """Latest retrain runs, newest first (stale 'running' rows are marked interrupted first)."""
    mark_interrupted(ws)
    return runs.latest(ws, limit)
