"""Commands of the model loop: `train`, `retrain`, `versions`, `rollback`, `label-issues`.

Conventions of every command: `--workspace DIR`, tqdm progress on stderr, one-line errors with
a non-zero exit. Every move of the live version goes through `labeler.model_versions.make_live`
(recorded in live_history with --by / --why).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import click

from labeler import taxonomy
from labeler.cli.common import (FILE, TqdmProgress, _table, actor, apply_targets, audit_options, honest_rows,
                                open_workspace, target_options, workspace_option)


# -- train --------------------------------------------------------------------------------------
@click.command()
@workspace_option
@click.option("--no-cv", is_flag=True, help="Kept for scripts: the out-of-fold scores always run (every "
                                            "labelled product's card shows them).")
@click.option("--notes", default="", help="Free text stored with the model version (and as why it went live).")
@click.option("--by", default=None, help="Who trains it, for the record (default: your OS user name).")
@target_options
def train(workspace: Path, no_cv: bool, notes: str, by: str | None, target_precision: str | None,
          coverage: str | None) -> None:
    """Fit the models on the workspace's current labels and make the new version live.

    Labels: the imported ones, overridden by reviewers' decisions (majority of reviewers, a tie
    to the latest). Labelled products are scored out of fold (5 folds, models that never saw
    their label), the others by the model trained on all labels. From the out-of-fold scores:
    the auto-accept threshold reaching --target-precision with 95 % confidence, the conformal
    prediction sets (--coverage) and the suspect-label ranking. Who did it and why go to the
    live history.
    """
    from labeler.model_versions import make_live
    from labeler.training import train_version
    ws = open_workspace(workspace)
    apply_targets(ws, target_precision, coverage)
    with TqdmProgress("train") as bar:
        version = train_version(ws, progress=bar, evaluate=not no_cv, notes=notes, make_live=False)
    make_live(ws, version["id"], reason="train", who=actor(by), why=notes)
    rows = [("version", f"{version['id']} (live)"), ("trained on", f"{version['n_train']} products "
                                                                   f"({version['n_decisions']} reviewed)"),
            ("time", f"{version['duration_s']} s")]
    rows += honest_rows(version["metrics"]) or [("metrics", "none")]
    rows.append(("model saved to", version["path"]))
    click.echo("Trained:")
    click.echo(_table(rows))


def _pct(m: dict | None, key: str = "weighted_f1") -> str:
    return f"{m[key]:.4f}" if m and key in m else "-"


# -- retrain ------------------------------------------------------------------------------------
@click.command()
@workspace_option
@click.option("--min-delta", type=click.FloatRange(0, 1), default=None,
              help="Gate: keep the new version NOT live when its out-of-fold weighted F1 is lower than the "
                   "live one's by more than this (default: it goes live anyway, with a warning).")
@click.option("--cv", "cross_validate", is_flag=True,
              help="Kept for scripts: the out-of-fold scores (5-fold) always run.")
@audit_options
@target_options
def retrain(workspace: Path, min_delta: float | None, cross_validate: bool, by: str | None, why: str,
            target_precision: str | None, coverage: str | None) -> None:
    """Retrain on imported labels overridden by reviewer decisions; compare with the live version.

    Every label is trained on. The new version and the live one are compared on the products
    labelled now by their out-of-fold predictions (each from models that never saw that label);
    then the new version re-scores every product and goes live. If anything fails, the live
    version keeps serving and the reason is printed and recorded (`versions`).
    """
    from labeler.retrain import retrain as run_retrain
    ws = open_workspace(workspace)
    apply_targets(ws, target_precision, coverage)
    with TqdmProgress("retrain") as bar:
        result = run_retrain(ws, progress=bar, min_delta=min_delta, cross_validate=cross_validate, trigger="cli",
                             who=actor(by), why=why)
    click.echo("Retrained:")
    click.echo(_table([*result.lines(), ("recorded in", f"{ws.db_path.resolve()} (model_versions, retrain_runs)")]))


# -- versions -----------------------------------------------------------------------------------
@click.command()
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON instead of a table.")
def versions(workspace: Path, as_json: bool) -> None:
    """List model versions: which is live, validation metrics of each, and what changed.

    Metrics are out-of-fold on the labelled products (wF1 = weighted F1, mF1 = macro F1,
    acc = accuracy); 'vs parent' is the weighted-F1 change against the version live before it on
    the same products ('in-sample' when that version stored in-sample predictions). Recent retrain runs,
    failed or interrupted ones with their reason, follow the table.
    """
    from labeler.model_versions import versions_table
    from labeler.runs import retrain_state
    ws = open_workspace(workspace, read_only=True)
    table = versions_table(ws)
    runs = retrain_state(ws)
    if as_json:
        click.echo(json.dumps({"versions": table, "retrain_runs": runs}, indent=2, default=str))
        return
    if not table:
        click.echo(f"No model versions in {ws.root} yet; run `python -m labeler train`.")
        return
    header = ("", "version", "status", "created", "train", "decided", "time", "wF1", "mF1", "acc", "vs parent")
    rows = []
    for v in table:
        comp = v["compared_to"]
        if comp.get("in_sample"):
            vs = "in-sample"
        elif comp.get("delta_weighted_f1") is not None:
            vs = f"{comp['delta_weighted_f1']:+.4f}"
        else:
            vs = "-"
        val = v["validation"] or {}
        if not val and v["cv"]:      # versions from `train`: their cross-validation estimate
            fused = "fused_cv_weighted_f1" in v["cv"]
            val = {"weighted_f1": v["cv"].get("fused_cv_weighted_f1" if fused else "text_weighted_f1"),
                   "macro_f1": v["cv"].get("fused_cv_macro_f1" if fused else "text_macro_f1"),
                   "accuracy": v["cv"].get("fused_cv_accuracy" if fused else "text_accuracy")}
        rows.append(("*" if v["live"] else "", v["id"], v["status"], v["created_at"][:19].replace("T", " "),
                     str(v["n_train"] if v["n_train"] is not None else "-"),
                     str(v["n_decisions"] if v["n_decisions"] is not None else "-"),
                     f"{v['duration_s']:.1f}s" if v["duration_s"] is not None else "-",
                     _pct(val), _pct(val, "macro_f1"), _pct(val, "accuracy"), vs))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    click.echo("\n(* = live; wF1/mF1/acc out-of-fold on the labelled products)")
    click.echo("Auto-accept:")
    for v in table:
        if v.get("auto_accept"):
            click.echo(f"  {v['id']}: {v['auto_accept']}")
    click.echo("What changed:")
    for v in table:
        click.echo(f"  {v['id']}: {v['changes']}" + (f" [{v['notes']}]" if v["status"] == "failed" else ""))
    if runs:
        click.echo("Recent retrains:")
        for r in runs:
            line = f"  run {r['id']} {r['status']} ({r['trigger']}, {r['started_at'][:19].replace('T', ' ')})"
            line += f" -> {r['version']}" if r["version"] else ""
            if r["status"] == "running":
                line += f" {r['progress']:.0%}: {r['message']}"
            if r["error"]:
                line += f": {r['error']}"
            click.echo(line)


# -- rollback -----------------------------------------------------------------------------------
@click.command()
@workspace_option
@click.argument("version", required=False)
@audit_options
def rollback(workspace: Path, version: str | None, by: str | None, why: str) -> None:
    """Make VERSION live again (default: the live version's parent).

    Any 'ready' version can be named, newer ones too. Products that version never scored
    (imported since) are scored first. The running app picks it up on its next card.
    """
    from labeler.rollback import rollback as run_rollback
    ws = open_workspace(workspace)
    with TqdmProgress("rollback") as bar:
        out = run_rollback(ws, version, progress=bar, who=actor(by), why=why)
    if out["version"] == out["previous"]:
        click.echo(f"{out['version']} is already live; nothing changed.")
        return
    click.echo(_table([("live", out["version"]), ("was", out["previous"] or "none"),
                       ("scored now", f"{out['rescored']} products"),
                       ("recorded in", f"{ws.db_path.resolve()} (settings.live_model_version, live_history)")],
                      indent=""))


# -- label issues -------------------------------------------------------------------------------
@click.command("label-issues")
@workspace_option
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="How many to print.")
@click.option("--refresh", is_flag=True, help="Recompute (cross-validates the text model) even if stored.")
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True,
              help="Cross-validation folds for the out-of-fold probabilities.")
@click.option("--all", "include_reviewed", is_flag=True, help="Also list products a reviewer decided since.")
@click.option("--out", type=FILE, help="Also write the whole ranking (every labelled product) to this CSV.")
def label_issues(workspace: Path, limit: int, refresh: bool, folds: int, include_reviewed: bool,
                 out: Path | None) -> None:
    """Rank every labelled product, the probably wrong labels first (confident learning on
    out-of-fold probabilities).

    Every training stores this ranking from its out-of-fold fused scores: the products whose
    label the models that never saw it believe least come first; those confident learning flags
    (label below its category's mean self-confidence while another category is above its own)
    are marked. --refresh recomputes it with the text model alone (--folds). Feeds the app's
    'suspect labels' queue.
    """
    from labeler import label_issues as li
    ws = open_workspace(workspace)
    run = li.latest_run(ws)
    if run is None or refresh:
        with TqdmProgress("label issues") as bar:
            li.detect_label_issues(ws, folds=folds, progress=bar)
        run = li.latest_run(ws)
    rows = li.label_issues(ws, include_reviewed=include_reviewed)
    tax = taxonomy.of(ws)
    click.echo(f"{run['n_flagged']} of {run['n_products']} labels flagged (run {run['id']}, {run['created_at'][:19]}, "
               f"{run['folds']}-fold {run['method']}); {len(rows)} labelled products "
               f"{'listed' if include_reviewed else 'not yet reviewed'}, most suspect first.")
    if rows:
        header = ("rank", "flag", "product", "label", "suggested", "p(label)", "p(sugg.)", "title")
        table = [(str(r["rank"]), "*" if r["flagged"] else "", r["product_id"], _cat(r["given_label"], tax),
                  _cat(r["suggested"], tax), f"{r['given_prob']:.2f}", f"{r['suggested_prob']:.2f}", _short(r["title"], 50))
                 for r in rows[:limit]]
        widths = [max(len(x[i]) for x in [header, *table]) for i in range(len(header))]
        for r in [header, *table]:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    where: list[tuple[str, Any]] = [("stored in", f"{ws.db_path.resolve()} (table label_issues)")]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["rank", "product_id", "given_label", "suggested", "given_prob", "suggested_prob",
                             "margin", "flagged", "reviewed", "title"])
            for r in rows:
                writer.writerow([r["rank"], r["product_id"], tax.code_value(r["given_label"]), tax.code_value(r["suggested"]),
                                 round(r["given_prob"], 4), round(r["suggested_prob"], 4), round(r["margin"], 4),
                                 int(r["flagged"]), int(r["reviewed"]), r["title"]])
        where.append(("CSV", f"{out.resolve()} ({len(rows)} rows, every labelled product ranked)"))
    click.echo(_table(where, indent=""))


def _cat(code: int, tax: taxonomy.Taxonomy) -> str:
    return f"{tax.code(code)} {_short(tax.name(code), 22)}"


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
