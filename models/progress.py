"""The one progress-callback type every long stage takes: `progress(fraction 0-1, what it is doing)`.

Defined here, at the bottom (models import nothing from labeler or store); `labeler.domain`
re-exports it for the services and interfaces.
"""
from __future__ import annotations

from typing import Callable

Progress = Callable[[float, str], None]


def scaled(progress: Progress, start: float, end: float) -> Progress:
    """A stage's own 0-1 progress as the [start, end] part of an outer bar."""
    return lambda f, msg: progress(start + (end - start) * float(f), msg)


def silent(fraction: float, desc: str) -> None:
    """A progress callback that reports nothing."""
