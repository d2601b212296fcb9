"""CLI commands for bulk decisions: `auto-accept`, `undo-batch`, `batches`.

Added to `labeler.cli.main` by labeler/cli/__init__.py; same conventions:
`--workspace DIR`, one-line errors with a non-zero exit. These are admin actions: whoever runs
them holds the workspace file, and `--by` names them in every decision row written.
"""
from __future__ import annotations

from pathlib import Path

import click

from labeler import taxonomy
from labeler.cli.common import _table, open_workspace, workspace_option

BY = click.option("--by", default="admin", show_default=True,
                  help="Admin name stored as the reviewer of the decisions written.")


@click.command("auto-accept")
@workspace_option
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Fused top-1 probability to accept at or above (default: the live version's stored "
                   "auto_accept_threshold, else the app setting, 0.80).")
@click.option("--dry-run", is_flag=True, help="Only say what would be accepted; write nothing.")
@BY
def auto_accept_cmd(workspace: Path, threshold: float | None, dry_run: bool, by: str) -> None:
    """Accept every undecided product the live model puts at or above the threshold, as one batch.

    Each becomes an 'auto_accept' decision (version, threshold, top-5 kept) that the label rule
    and the review queue count as an accept. Products a reviewer holds right now, and products
    whose imported label differs from the model's top-1, are left for review. Take the whole
    batch back with `undo-batch BATCH`.
    """
    from labeler import bulk
    ws = open_workspace(workspace)
    ws.require_products()
    res = bulk.auto_accept(ws, by, threshold=threshold, dry_run=dry_run)
    rows = [("model version", res.version),
            ("threshold", f"{res.threshold.value:g} (from {res.threshold.source})"),
            ("would accept" if dry_run else "accepted", len(res.accepted)),
            ("left: held by a reviewer", len(res.held)),
            ("left: decided meanwhile", len(res.decided_meanwhile)),
            ("left: imported label differs", len(res.conflicts))]
    tax = taxonomy.of(ws)
    rows += [(f"  {tax.code(code)} {tax.name(code)}", n) for code, n in list(res.by_category().items())[:10]]
    if not dry_run:
        rows.append(("batch", res.batch_id or "none (nothing to accept)"))
    click.echo(("Auto-accept, dry run (nothing written):" if dry_run else "Auto-accept:"))
    click.echo(_table(rows))
    if res.batch_id:
        click.echo(f"Undo all of it with: python -m labeler undo-batch {res.batch_id} --workspace {workspace}")


@click.command("undo-batch")
@workspace_option
@click.argument("batch")
@BY
def undo_batch_cmd(workspace: Path, batch: str, by: str) -> None:
    """Take back every decision of a batch (auto-accept, import) still in effect, in one step."""
    from labeler import bulk
    ws = open_workspace(workspace)
    res = bulk.undo_batch(ws, batch, by)
    if res.undo_batch_id is None:
        click.echo(f"Batch {batch}: nothing left to undo ({res.already_undone} decisions already undone).")
        return
    click.echo(f"Batch {batch}: {res.undone} decisions undone (undo batch {res.undo_batch_id})"
               + (f"; {res.already_undone} were already undone." if res.already_undone else "."))


@click.command("batches")
@workspace_option
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
def batches_cmd(workspace: Path, limit: int) -> None:
    """List recent decision batches (newest first) and how many of their decisions are in effect."""
    from labeler import bulk
    ws = open_workspace(workspace, read_only=True)
    rows = bulk.batches(ws, limit)
    if not rows:
        click.echo("No batches yet.")
        return
    for r in rows:
        extra = f" of {r['undoes_batch']}" if r["undoes_batch"] else ""
        thr = f" at >= {r['threshold']:g}" if r["threshold"] is not None else ""
        state = "" if r["kind"] == "undo" else f", {r['in_effect']} in effect"
        click.echo(f"{r['id']}  {r['kind']}{extra}{thr}  by {r['reviewer']}  {r['n_decisions']} decisions"
                   f"{state}  ({r['created_at']})")
