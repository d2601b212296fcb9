"""What every command-line entry point shares (`python -m labeler`, launch.py): the
`--workspace` option, user errors as one line, a tqdm bar for the library's progress callback,
and two-column tables. Interface level: services never import it."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click
from tqdm import tqdm

from labeler.config import DEFAULT_WORKSPACE
from labeler.importer import CatalogError
from store.workspace import WorkspaceError

FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)


def user_errors(fn: Callable) -> Callable:
    """User mistakes become one clear line and exit status 1, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (WorkspaceError, CatalogError) as exc:
            raise click.ClickException(" ".join(str(exc).split("\n"))) from None
    return wrapper


def workspace_option(fn: Callable) -> Callable:
    """The shared `--workspace DIR` option (passed as `workspace: Path`) plus user-error handling."""
    return click.option(
        "--workspace", "-w", type=FOLDER, default=DEFAULT_WORKSPACE, show_default=True,
        help="Workspace folder holding workspace.db and model versions (env LABELER_WORKSPACE).",
    )(user_errors(fn))


class TqdmProgress:
    """Adapts the library's `progress(fraction, description)` callback to a tqdm bar on stderr.

    The bar appears on the first call, so a command that fails early prints only its error."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: tqdm | None = None

    def __call__(self, fraction: float, desc: str) -> None:
        if self.bar is None:
            self.bar = tqdm(total=100, desc=self.desc, file=sys.stderr, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar:30}| {elapsed} {postfix}")
        self.bar.set_postfix_str(desc, refresh=False)
        self.bar.update(round(min(1.0, max(0.0, fraction)) * 100, 1) - self.bar.n)  # throttled redraw

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def table(rows: list[tuple[str, Any]], indent: str = "  ") -> str:
    """Rows of (label, value) as two aligned columns."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{indent}{k.ljust(width)}  {v}" for k, v in rows)
