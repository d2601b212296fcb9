"""CLI: `adjudicate list` (disputed products, kappa per reviewer pair) and `adjudicate rule`.

Added to `labeler.cli.main` by labeler/cli/__init__.py. A ruling is an admin
action: with `--auth FILE` (the app's logins) `--by` must be an admin there; without it, whoever
holds the workspace file rules, as for `auto-accept`.
"""
from __future__ import annotations

from pathlib import Path

import click

from labeler import taxonomy
from labeler.cli.common import open_workspace, workspace_option


@click.group("adjudicate")
def adjudicate() -> None:
    """Settle products whose reviewers disagree: list them, then rule (the ruling is final)."""


@adjudicate.command("list")
@workspace_option
@click.option("--all", "include_ruled", is_flag=True, help="Also list disputes an admin already ruled.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
def list_cmd(workspace: Path, include_ruled: bool, limit: int) -> None:
    """Each disputed product with every reviewer's choice and comment, then kappa per reviewer pair."""
    from labeler import adjudication
    ws = open_workspace(workspace, read_only=True)
    tax = taxonomy.of(ws)
    ov = adjudication.overview(ws, include_ruled=include_ruled, limit=limit)
    if not ov.disputes:
        click.echo("No open disputes" + (f" ({ov.n_ruled} already ruled; --all lists them)." if ov.n_ruled else "."))
    for d in ov.disputes:
        model = f"model {tax.code(d.model_top1)} {d.model_prob:.0%}" if d.model_top1 is not None else "not scored"
        click.echo(f"{d.product_id}  {d.title[:70]}  ({model}; imported {tax.code(d.imported) if d.imported is not None else '-'})")
        for v in d.votes:
            note = f'  "{v.comment}"' if v.comment else ""
            click.echo(f"    {v.reviewer:<16} {tax.label(v.category)}{note}")
        if d.ruling is not None:
            click.echo(f"    ruled by {d.ruling.reviewer}: {tax.label(d.ruling.category)}")
    if ov.pairs:
        click.echo("Agreement per reviewer pair (products both decided):")
        for p in ov.pairs:
            click.echo(f"  {p.a} / {p.b}: n={p.n}  agreement {p.agreement:.0%}  "
                       f"kappa {'n/a (one category only)' if p.kappa is None else f'{p.kappa:.2f}'}")


@adjudicate.command("rule")
@workspace_option
@click.argument("product")
@click.argument("category")
@click.option("--by", required=True, help="The admin ruling (stored as the decision's reviewer).")
@click.option("--comment", default="", help="Why (stored with the ruling).")
@click.option("--auth", "auth_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The app's auth file: --by must be an admin in it.")
def rule_cmd(workspace: Path, product: str, category: str, by: str, comment: str, auth_file: Path | None) -> None:
    """Make CATEGORY (code or exact name) the final label of PRODUCT."""
    from labeler import adjudication
    from labeler.auth import Access, AccessDenied, AuthFileError, read_auth_file
    if auth_file is not None:
        try:
            Access({u.name: u for u in read_auth_file(auth_file)}).require_admin(by, "Ruling a dispute")
        except AccessDenied as exc:
            raise click.ClickException(f"refused: {exc}") from None
        except AuthFileError as exc:
            raise click.ClickException(str(exc)) from None
    ws = open_workspace(workspace)
    try:
        row = adjudication.rule(ws, by, product, category, comment=comment)
    except adjudication.AdjudicationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{row['product_id']}: ruled {taxonomy.of(ws).label(row['category'])} by {row['reviewer']} "
               f"(decision {row['id']}, final for the label)")
