"""Catalog commands: import (a catalog, or Label Studio annotations), export, backup."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pandas as pd

from labeler import taxonomy
from labeler.cli.common import FILE, FOLDER, TqdmProgress, _table, open_workspace, workspace_option
from labeler.csvsafe import neutralise_frame
from labeler.importer import ImportReport
from store.workspace import Workspace


# -- import -----------------------------------------------------------------------------------
def print_import_summary(report: ImportReport, ws: Workspace, problems_file: Path | None) -> None:
    rows: list[tuple[str, Any]] = [("rows read", report.n_rows), ("imported", report.imported),
                                   ("  with image", report.with_image)]
    if report.without_image:
        rows.append(("  without image", report.without_image))
    rows.append(("already present", report.already_present))
    rows.append(("skipped", report.skipped))
    rows += [(f"  {reason}", n) for reason, n in report.skipped_by_reason().items()]
    for reason, n in report.other_problems().items():
        rows.append((reason, n))
    rows += [("time", f"{report.duration_s:.1f} s"),
             ("workspace", f"{ws.root.resolve()} ({ws.count_products()} products)")]
    click.echo(f"Import summary, batch {report.batch_id}:")
    click.echo(_table(rows))
    if report.previous_batch is not None and report.imported == 0:
        click.echo(f"These files were already imported (batch {report.previous_batch}); nothing new.")
    for note in report.notes:
        click.echo(f"Note: {note}")
    if report.problems:
        click.echo(f"Problems ({len(report.problems)}), first {min(10, len(report.problems))}:")
        for p in report.problems[:10]:
            click.echo(f"  {p}")
        if problems_file is not None:
            click.echo(f"All problems: {problems_file} (also in table import_problems, batch {report.batch_id})")


def write_problems(report: ImportReport, ws: Workspace) -> Path | None:
    if not report.problems:
        return None
    path = ws.root / "reports" / f"import_batch_{report.batch_id}_problems.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise_frame(pd.DataFrame([{"file": p.file, "line": p.line, "field": p.field, "reason": p.kind,
                                    "message": p.message, "action": p.action} for p in report.problems])
                     ).to_csv(path, index=False)
    return path


def keep_demo_apart(ws: Workspace, workspace: Path, replace_demo: bool) -> None:
    """A real catalog never mixes into the demo's workspace: refuse, or remove the demo first."""
    from labeler import demo
    n_demo = len(demo.demo_product_ids(ws))
    if not n_demo and not replace_demo:
        return
    if not replace_demo:
        raise click.ClickException(
            f"workspace {ws.root} holds the demo catalog ({n_demo} products); import your catalog into its "
            f"own workspace with --workspace DIR (e.g. --workspace rakuten, then `python launch.py --workspace "
            f"rakuten`), or pass --replace-demo to remove the demo from {workspace} first")
    removed = demo.remove_demo(ws)
    click.echo(f"Removed the demo catalog from {ws.root}: {removed['products']} products, "
               f"{removed['model versions']} model versions.")


@click.command("import")
@workspace_option
@click.option("--texts", type=FILE, help="Rakuten X file (unnamed index, designation, description, "
                                        "productid, imageid).")
@click.option("--labels", type=FILE, help="Rakuten Y file (same index, prdtypecode); optional.")
@click.option("--images", type=FOLDER, help="Folder of image_<imageid>_product_<productid>.jpg; optional.")
@click.option("--csv", "plain_csv", type=FILE, help="Plain CSV instead: id, title[, description, image, label]; "
                                                  "image paths relative to the CSV's folder or absolute.")
@click.option("--replace-demo", is_flag=True, help="The workspace holds the demo catalog: remove it first "
                                                   "(only while nobody reviewed it). Default: refuse.")
@click.option("--labelstudio", type=FILE, help="Label Studio JSON export: its choices annotations become "
                                               "decisions by their annotators (products must be imported).")
@click.option("--taxonomy", "taxonomy_file", type=FILE,
              help="The workspace's categories (CSV or JSON: code, name, description, keywords, parent); "
                   "set before the catalog's labels are read. Default: the 27 Rakuten categories.")
def import_(workspace: Path, texts: Path | None, labels: Path | None, images: Path | None,
            plain_csv: Path | None, replace_demo: bool, labelstudio: Path | None, taxonomy_file: Path | None) -> None:
    """Import a catalog (Rakuten challenge layout or plain CSV) into the workspace.

    Re-importing the same files adds nothing. Bad rows are reported (file, line, field, reason),
    skipped, and the rest imported; a summary table ends the output.

    \b
    python -m labeler import --texts X_train.csv --labels Y_train.csv --images images/image_train
    python -m labeler import --csv catalog.csv
    python -m labeler import --labelstudio project-1-export.json
    python -m labeler import --taxonomy categories.csv --csv catalog.csv

    --taxonomy sets the workspace's categories (codes may be text: 'toys'); a later --taxonomy may
    add categories and rename them, and removes one only while no product or decision holds it.
    """
    from labeler import importer
    if taxonomy_file is not None:
        if labelstudio is not None:
            raise click.UsageError("--taxonomy goes alone or with a catalog (--csv or --texts), not with --labelstudio")
        ws = open_workspace(workspace, create=True)
        try:
            click.echo(taxonomy.import_file(ws, taxonomy_file).describe())
        except taxonomy.TaxonomyError as exc:
            raise click.ClickException(str(exc)) from None
        if texts is None and plain_csv is None:
            return
    if labelstudio is not None:
        if texts or labels or images or plain_csv:
            raise click.UsageError("--labelstudio imports annotations only; import the catalog in its own run")
        return import_labelstudio_cmd(workspace, labelstudio)
    if (texts is None) == (plain_csv is None):
        raise click.UsageError("give either --texts X.csv (challenge layout) or --csv FILE (plain CSV)")
    if plain_csv is not None and (labels or images):
        raise click.UsageError("--labels and --images go with --texts; a plain CSV holds its own label and image")
    ws = open_workspace(workspace, create=True)
    keep_demo_apart(ws, workspace, replace_demo)
    with TqdmProgress("import") as bar:
        if plain_csv is not None:
            report = importer.import_plain_csv(ws, plain_csv, progress=bar)
        else:
            report = importer.import_challenge(ws, texts, labels, images, progress=bar)
    print_import_summary(report, ws, write_problems(report, ws))


# -- export -----------------------------------------------------------------------------------
def export_index(products: list[dict]) -> list[int]:
    """Y-layout index per product: its X index when numeric and unique, else a fresh one past the max."""
    seen: set[int] = set()
    out: list[int | None] = []
    for p in products:
        raw = (p.get("source_row") or "").strip()
        value = int(raw) if raw.lstrip("-").isdigit() else None
        if value is None or value in seen:
            out.append(None)
        else:
            seen.add(value)
            out.append(value)
    nxt = max(seen, default=-1) + 1
    for i, value in enumerate(out):
        if value is None:
            out[i], nxt = nxt, nxt + 1
    return out  # type: ignore[return-value]


@click.command()
@workspace_option
@click.option("--out", type=FOLDER, required=True, help="Folder to write the export into.")
@click.option("--reviewed-only", is_flag=True, help="Only products a reviewer accepted or corrected.")
@click.option("--format", "fmt", type=click.Choice(["csv", "labelstudio", "parquet"]), default="csv",
              show_default=True, help="labelstudio: JSON tasks with predictions and annotations plus a "
                                      "labeling config; parquet: one row per product (labeler/interop.py).")
def export(workspace: Path, out: Path, reviewed_only: bool, fmt: str) -> None:
    """Export current labels as a Rakuten Y file and every decision as JSONL.

    Text cells of the CSV files that start with =, +, -, @, a tab or a carriage return get a
    leading ' so no spreadsheet runs them as formulas (OWASP); decisions.jsonl is as stored.

    \b
    Y_labels.csv     unnamed index (the X index when known), prdtypecode (the taxonomy's codes)
    products.csv     the id map: index, productid, prdtypecode, reviewed
    decisions.jsonl  every decision ever recorded (append-only log), one JSON object per line,
                     with `category_code`: the code of its category key
    """
    ws = open_workspace(workspace, read_only=True)
    if fmt != "csv":
        return export_other_format(ws, out, fmt, reviewed_only)
    ws.require_products()
    tax = taxonomy.of(ws)
    labels = {pid: tax.code_value(key) for pid, key in ws.current_labels(reviewed_only=reviewed_only).items()}
    reviewed = set(ws.current_labels(reviewed_only=True))
    products = [p for p in ws.products() if p["id"] in labels]
    index = export_index(products)
    out.mkdir(parents=True, exist_ok=True)
    y = pd.DataFrame({"prdtypecode": [labels[p["id"]] for p in products]}, index=pd.Index(index, name=None))
    neutralise_frame(y).to_csv(out / "Y_labels.csv")
    neutralise_frame(pd.DataFrame({"index": index, "productid": [p["id"] for p in products],
                                   "prdtypecode": [labels[p["id"]] for p in products],
                                   "reviewed": [p["id"] in reviewed for p in products]})
                     ).to_csv(out / "products.csv", index=False)
    decisions = ws.decisions()
    with (out / "decisions.jsonl").open("w", encoding="utf-8") as fh:
        for d in decisions:
            d["shown_top5"] = json.loads(d["shown_top5"]) if d["shown_top5"] else None
            d["category_code"] = None if d["category"] is None else tax.code_value(d["category"])
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    click.echo(_table([("labels (Y layout)", f"{(out / 'Y_labels.csv').resolve()} ({len(products)} products, "
                                             f"{len(reviewed & set(labels))} reviewed)"),
                       ("id map", (out / "products.csv").resolve()),
                       ("decisions", f"{(out / 'decisions.jsonl').resolve()} ({len(decisions)})")], indent=""))


@click.command()
@workspace_option
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Backup file to write (or an existing folder: workspace-<UTC time>.db inside it).")
@click.option("--force", is_flag=True, help="Overwrite --out if it already exists.")
def backup(workspace: Path, out: Path, force: bool) -> None:
    """Copy workspace.db to a single checked file, safe while the app runs (SQLite online backup).

    \b
    Restore: stop the app, copy the backup over WORKSPACE/workspace.db, and delete
    WORKSPACE/workspace.db-wal and workspace.db-shm if they exist.
    """
    from datetime import datetime, timezone
    ws = open_workspace(workspace, read_only=True)
    if out.is_dir():
        out = out / f"workspace-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.db"
    live = {ws.db_path.resolve(), *(ws.db_path.with_name(ws.db_path.name + s).resolve() for s in ("-wal", "-shm"))}
    if out.resolve() in live:
        raise click.ClickException(f"--out {out} is the workspace's own database; pick a file outside it")
    if out.exists() and not force:
        raise click.ClickException(f"{out} already exists; pass --force to overwrite it, or choose another file")
    out.parent.mkdir(parents=True, exist_ok=True)
    with TqdmProgress("backup") as bar:
        result = ws.backup(out, progress=bar)
    click.echo(_table([("backup", f"{result.path.resolve()} ({result.size_bytes / 2**20:.1f} MiB, "
                                  f"{result.products} products, {result.decisions} decisions)"),
                       ("checked", "SQLite quick_check ok"),
                       ("restore", f"stop the app, copy it over {ws.db_path.resolve()}, delete workspace.db-wal "
                                   "and workspace.db-shm beside it")], indent=""))


def export_other_format(ws: Workspace, out: Path, fmt: str, reviewed_only: bool) -> None:
    """`export --format labelstudio|parquet` (labeler/interop.py): every product, whatever its review."""
    from labeler import interop
    if reviewed_only:
        raise click.UsageError(f"--reviewed-only goes with --format csv; {fmt} exports every product "
                               "with its review state")
    ws.require_products()
    if fmt == "labelstudio":
        res = interop.export_labelstudio(ws, out)
        click.echo(_table([("tasks", f"{res['tasks'].resolve()} ({res['n_tasks']} tasks, "
                                     f"{res['n_annotations']} annotations, {res['n_with_predictions']} with "
                                     "predictions)"), ("labeling config", res["config"].resolve())], indent=""))
    else:
        res = interop.export_parquet(ws, out)
        click.echo(f"parquet  {res['path'].resolve()} ({res['n_rows']} products, {res['n_decisions']} decisions)")


def import_labelstudio_cmd(workspace: Path, path: Path) -> None:
    """`import --labelstudio FILE`: a summary, then one line per bad task; the good ones imported."""
    from labeler import interop
    ws = open_workspace(workspace)
    ws.require_products()
    rep = interop.import_labelstudio(ws, path)
    click.echo(f"Label Studio import of {path.name}:")
    click.echo(_table([("tasks", rep.n_tasks), ("decisions imported", rep.imported),
                       ("already present", rep.already_present), ("tasks without annotations", rep.without_annotations),
                       ("cancelled annotations", rep.cancelled), ("problems", len(rep.problems)),
                       ("batch", rep.batch_id or "none")]))
    for line in rep.problems:
        click.echo(line, err=True)
    if rep.batch_id:
        click.echo(f"Take it back with: python -m labeler undo-batch {rep.batch_id}")
