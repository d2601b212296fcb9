"""Plumbing the command modules share: opening a workspace, the target and audit options, and
the rows a version's metrics print as. The entry-point plumbing itself (`--workspace`, user
errors, progress bar, tables) is `labeler.console`, shared with launch.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from labeler import auth
from labeler.console import FILE, FOLDER, TqdmProgress, table as _table, user_errors, workspace_option
from store.workspace import Workspace

__all__ = ["FILE", "FOLDER", "TqdmProgress", "_table", "actor", "apply_targets", "audit_options", "honest_rows",
           "open_workspace", "target_options", "user_errors", "workspace_option"]


def open_workspace(path: Path, *, create: bool = False, read_only: bool = False) -> Workspace:
    """read_only: the command only reads, so a workspace this process cannot write still opens
    (with `mode=ro`); commands that write refuse such a workspace in one line before writing."""
    return Workspace(path, create=create, read_only=read_only)


# -- train ------------------------------------------------------------------------------------
def target_options(fn: Callable) -> Callable:
    """--target-precision and --coverage: checked, then stored as the workspace's settings."""
    fn = click.option("--coverage", type=str, default=None,
                      help="Nominal coverage of the prediction sets, strictly between 0 and 1 (workspace "
                           "setting; default 0.90).")(fn)
    return click.option("--target-precision", type=str, default=None,
                        help="Precision the auto-accepted products must reach with 95 % confidence, strictly "
                             "between 0 and 1 (workspace setting; default 0.95).")(fn)


def apply_targets(ws: Workspace, target: str | None, coverage: str | None) -> None:
    """Check both values before writing either (a bad one: one line, nothing written)."""
    from labeler.training import set_targets
    set_targets(ws, target=target, coverage=coverage)


def honest_rows(metrics: dict) -> list[tuple[str, Any]]:
    """The version's metrics as rows: auto-accept and prediction sets in words, the rest as stored."""
    from labeler.model_versions import auto_accept_line
    rows: list[tuple[str, Any]] = []
    for k, v in metrics.items():
        if k == "auto_accept":
            rows.append(("auto-accept", auto_accept_line(v)))
        elif k == "conformal":
            rows.append(("prediction sets", f"nominal coverage {v['coverage']:.0%}: measured "
                                            f"{v['empirical_coverage']:.1%} on held-out halves, mean size "
                                            f"{v['mean_set_size']:.2f} categories"))
        elif not isinstance(v, dict):
            rows.append((k, v))
    return rows


def audit_options(fn: Callable) -> Callable:
    """`--by NAME` and `--why TEXT` for commands that change the live model: recorded in live_history."""
    fn = click.option("--why", default="", help="Why, recorded with the change (shown in the app's Models tab).")(fn)
    return click.option("--by", default=None, help="Who does it, for the record (default: your OS user name).")(fn)


def actor(by: str | None) -> str:
    """Who the record names: `--by`, else the OS user."""
    return (by or "").strip() or auth.os_user()
