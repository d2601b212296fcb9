"""Command line: `python -m labeler <command>`.

A flat list of click commands sharing one `--workspace DIR` option (`workspace_option`), which
also turns user errors (store.WorkspaceError, importer.CatalogError) into one line on stderr and
a non-zero exit. To add a command:

    @main.command()
    @workspace_option
    def mycommand(workspace: Path) -> None:
        ws = open_workspace(workspace)          # raises WorkspaceError if it does not exist
        with TqdmProgress("working") as bar:    # the library's (fraction, description) callback
            ...
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
import pandas as pd
from tqdm import tqdm

from labeler.config import DEFAULT_WORKSPACE, Settings
from labeler.csvsafe import neutralise_frame, restore
from labeler.importer import CatalogError, ImportReport, ParsedCatalog
from store.workspace import Workspace, WorkspaceError

FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)


# -- shared plumbing --------------------------------------------------------------------------
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


def open_workspace(path: Path, *, create: bool = False, read_only: bool = False) -> Workspace:
    """read_only: the command only reads, so a workspace this process cannot write still opens
    (with `mode=ro`); commands that write refuse such a workspace in one line before writing."""
    return Workspace(path, create=create, read_only=read_only)


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


def _table(rows: list[tuple[str, Any]], indent: str = "  ") -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{indent}{k.ljust(width)}  {v}" for k, v in rows)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Human-in-the-loop labeling of Rakuten France product categories.

    Typical session: import a catalog, train, then review in the app (launch.py); evaluate and
    export whenever needed. Every command takes --workspace DIR (default ./workspace), except
    `users`, which edits the app's --auth file.
    """


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


@main.command("import")
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
def import_(workspace: Path, texts: Path | None, labels: Path | None, images: Path | None,
            plain_csv: Path | None, replace_demo: bool, labelstudio: Path | None) -> None:
    """Import a catalog (Rakuten challenge layout or plain CSV) into the workspace.

    Re-importing the same files adds nothing. Bad rows are reported (file, line, field, reason),
    skipped, and the rest imported; a summary table ends the output.

    \b
    python -m labeler import --texts X_train.csv --labels Y_train.csv --images images/image_train
    python -m labeler import --csv catalog.csv
    python -m labeler import --labelstudio project-1-export.json
    """
    from labeler import importer
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
    from labeler.retrain import auto_accept_line
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


@main.command()
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
    from labeler.cli_users import actor
    from labeler.training import train_version
    ws = open_workspace(workspace)
    apply_targets(ws, target_precision, coverage)
    with TqdmProgress("train") as bar:
        version = train_version(ws, progress=bar, evaluate=not no_cv, notes=notes, make_live=False)
    ws.move_live(version["id"], reason="train", who=actor(by), why=notes)
    rows = [("version", f"{version['id']} (live)"), ("trained on", f"{version['n_train']} products "
                                                                   f"({version['n_decisions']} reviewed)"),
            ("time", f"{version['duration_s']} s")]
    rows += honest_rows(version["metrics"]) or [("metrics", "none")]
    rows.append(("model saved to", version["path"]))
    click.echo("Trained:")
    click.echo(_table(rows))


# -- predict ----------------------------------------------------------------------------------
def prediction_frame(parsed_frame: pd.DataFrame, out: dict[str, Any], k: int = 5,
                     calibration: dict | None = None) -> pd.DataFrame:
    """One row per product: fused top-k, each model's top-1, disagreement, and the X index `row`."""
    from labeler import taxonomy
    codes = np.asarray(taxonomy.codes())
    fused = out["fused"]
    order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
    table: dict[str, Any] = {"productid": parsed_frame["id"].to_numpy()}
    for j in range(k):
        table[f"pred_{j + 1}"] = codes[order[:, j]]
    for j in range(k):
        table[f"prob_{j + 1}"] = np.round(np.take_along_axis(fused, order[:, j:j + 1], axis=1)[:, 0], 6)
    models = {"text": out["text"]}
    if out.get("image") is not None:
        models["image"] = out["image"]
        models.update(out.get("voters") or {})
    has_image = np.asarray(out.get("has_image", np.zeros(len(fused), bool)), bool)
    for name, probs in models.items():
        best = np.argmax(probs, axis=1)
        pred = pd.array(codes[best], dtype="Int64")
        prob = pd.array(np.round(probs[np.arange(len(best)), best], 6), dtype="Float64")
        if name != "text":   # image models say nothing about products without an image
            pred[~has_image], prob[~has_image] = pd.NA, pd.NA
        table[f"{name}_pred"], table[f"{name}_prob"] = pred, prob
    if out.get("image") is not None:
        table["disagreement"] = (has_image & (np.argmax(out["text"], 1) != np.argmax(out["image"], 1))).astype(int)
    table.update(honest_columns(fused, calibration))
    table["row"] = parsed_frame["row"].to_numpy()
    return pd.DataFrame(table)


def honest_columns(fused: np.ndarray, calibration: dict | None) -> dict[str, Any]:
    """auto_accept (0/1) and the threshold used, from the version's guarantee (a version trained
    before it: the fixed 0.80); pred_set (codes joined by |) and pred_set_size when it has sets."""
    from labeler import taxonomy
    from models.honest import Calibration
    cal = Calibration.from_dict(calibration)
    top1 = fused.max(axis=1) if len(fused) else np.zeros(0)
    threshold = Settings().auto_accept_threshold if cal is None else cal.auto_accept.threshold
    cols: dict[str, Any] = {
        "auto_accept": (top1 >= threshold).astype(int) if threshold is not None else np.zeros(len(fused), int),
        "auto_accept_threshold": pd.array([threshold] * len(fused), dtype="Float64")}
    if cal is not None:
        codes = np.asarray(taxonomy.codes())
        inside = cal.conformal.sets(fused)
        order = np.argsort(-fused, axis=1, kind="stable")
        cols["pred_set"] = ["|".join(str(codes[j]) for j in row if ins[j]) for row, ins in zip(order, inside)]
        cols["pred_set_size"] = inside.sum(axis=1).astype(int)
    return cols


def predict_catalog(ws: Workspace, bundle: Any, parsed: ParsedCatalog, *, batch_size: int = 512,
                    adapt: bool = False) -> pd.DataFrame:
    """Predictions of a model bundle for validated products, in batches with a progress bar
    (adapt: the text model refits with each batch's unseen texts, `TextClassifier.predict_proba`)."""
    from store.features import WorkspaceFeatures
    if not parsed.products:
        raise CatalogError(f"{parsed.source}: no valid product to predict ({len(parsed.problems)} rows rejected)")
    frame = parsed.frame()
    parts = []
    with tqdm(total=len(frame), desc=f"predict ({bundle.version})", unit="product", file=sys.stderr,
              leave=False) as bar:
        for start in range(0, len(frame), batch_size):
            part = frame.iloc[start:start + batch_size].reset_index(drop=True)
            parts.append(prediction_frame(part, bundle.predict(part, feature_store=WorkspaceFeatures(ws), adapt=adapt),
                                          calibration=(getattr(bundle, "info", None) or {}).get("calibration")))
            bar.update(len(part))
    return pd.concat(parts, ignore_index=True)


def _bundle(ws: Workspace, model_version: str | None) -> Any:
    """The model to predict with, loaded before any file is read so a missing one fails fast."""
    from labeler.training import live_bundle
    return live_bundle(ws, model_version)


def _report_rejected(parsed: ParsedCatalog) -> None:
    skipped = [p for p in parsed.problems if p.skipped]
    if skipped:
        counts = pd.Series([p.kind for p in skipped]).value_counts()
        click.echo(f"{len(skipped)} rows not predicted ({', '.join(f'{k}: {n}' for k, n in counts.items())}); "
                   f"first: {skipped[0]}", err=True)


def _parse_texts(texts: Path, images: Path | None) -> ParsedCatalog:
    from labeler.importer import read_challenge
    with TqdmProgress("read") as bar:
        parsed = read_challenge(texts, images=images, progress=bar)
    _report_rejected(parsed)
    return parsed


@main.command()
@workspace_option
@click.option("--texts", type=FILE, required=True, help="Rakuten X file of the products to predict.")
@click.option("--images", type=FOLDER, help="Folder of image_<imageid>_product_<productid>.jpg; optional.")
@click.option("--out", type=FILE, required=True, help="CSV file to write.")
@click.option("--model-version", help="Model version to use (default: the live one).")
@click.option("--batch-size", type=click.IntRange(1), default=512, show_default=True)
@click.option("--adapt", is_flag=True, help="Refit the text model's vocabulary, IDF and SVM with each batch's "
              "texts it has not seen (as unlabelled texts, about one training's time per batch): a product's "
              "probabilities then depend on the other products of its batch. Off: every product is scored "
              "alone, the same in any batch.")
def predict(workspace: Path, texts: Path, images: Path | None, out: Path, model_version: str | None,
            batch_size: int, adapt: bool) -> None:
    """Predict categories for an X file, without adding its products to the workspace.

    Writes one row per product: productid, pred_1..pred_5, prob_1..prob_5 (fused top-5), text_pred,
    text_prob, and with an image model image_pred, image_prob, one <voter>_pred/<voter>_prob pair
    per image voter and disagreement; auto_accept (0/1) with the auto_accept_threshold the version
    guarantees (empty: too few labels to guarantee its target precision, nothing auto-accepted),
    pred_set (category codes joined by |, the conformal prediction set) and pred_set_size; the
    last column, row, is the X index (for evaluate).
    """
    ws = open_workspace(workspace, read_only=True)
    bundle = _bundle(ws, model_version)
    frame = predict_catalog(ws, bundle, _parse_texts(texts, images), batch_size=batch_size, adapt=adapt)
    out.parent.mkdir(parents=True, exist_ok=True)
    neutralise_frame(frame).to_csv(out, index=False)
    click.echo(f"Predicted {len(frame)} products with model version {bundle.version}: {out.resolve()}")


# -- evaluate ---------------------------------------------------------------------------------
def read_predictions(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise CatalogError(f"predictions file {path} not found; write one with `python -m labeler predict`")
    try:
        frame = pd.read_csv(path, dtype={"row": str, "productid": str})
        for col in ("row", "productid"):        # predict wrote them neutralised (labeler/csvsafe.py)
            if col in frame.columns:
                frame[col] = frame[col].map(restore)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path} is not a readable CSV ({' '.join(str(exc).split())})") from None
    needed = ["productid", "pred_1", "prob_1", "row"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise CatalogError(f"{path} does not look like predictions: missing {', '.join(missing)}; found columns "
                           f"[{', '.join(map(str, frame.columns))}], expected [{', '.join(needed)}, ...] "
                           "as written by `python -m labeler predict`")
    return frame


def join_labels(predictions: pd.DataFrame, labels_path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Predictions with a `true` column, joined on the X index; notes on what did not join."""
    from labeler.importer import read_labels
    labels, problems = read_labels(labels_path)
    known = {i: code for i, (code, _, _) in labels.items() if code is not None}
    notes = [f"{len(labels) - len(known)} labels with an unknown category code ignored"] if len(known) < len(labels) else []
    notes += [str(p) for p in problems[:3]]
    rows = predictions["row"].astype(str).str.strip()
    predictions = predictions.assign(true=rows.map(known))
    unmatched = int(predictions["true"].isna().sum())
    if unmatched == len(predictions):
        raise CatalogError(f"no row of the predictions matches an index of {labels_path.name}: were the "
                           "predictions made on the X file of the same split?")
    if unmatched:
        notes.append(f"{unmatched} predicted products have no label in {labels_path.name}")
    if len(known) > len(predictions) - unmatched:
        notes.append(f"{len(known) - (len(predictions) - unmatched)} labelled products have no prediction")
    return predictions[predictions["true"].notna()].reset_index(drop=True), notes


@main.command()
@workspace_option
@click.option("--labels", type=FILE, required=True, help="Rakuten Y file with the true categories.")
@click.option("--predictions", type=FILE, help="Predictions CSV written by `predict` (joined on `row`).")
@click.option("--texts", type=FILE, help="Or an X file: predict it in memory first with the live model.")
@click.option("--images", type=FOLDER, help="Image folder for --texts; optional.")
@click.option("--model-version", help="Model version for --texts (default: the live one).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=Settings().auto_accept_threshold,
              show_default=True, help="Automation threshold on the fused top-1 probability.")
@click.option("--out-dir", type=FOLDER, help="Where reports go (default: WORKSPACE/reports).")
def evaluate(workspace: Path, labels: Path, predictions: Path | None, texts: Path | None, images: Path | None,
             model_version: str | None, threshold: float, out_dir: Path | None) -> None:
    """Score predictions against a Y file: accuracy, weighted and macro F1, per-category report,
    confusion-matrix PNG, and the share of products above the automation threshold with the
    precision on them."""
    from labeler import evaluation
    if (predictions is None) == (texts is None):
        raise click.UsageError("give either --predictions preds.csv or --texts X.csv")
    if predictions is not None:
        frame = read_predictions(predictions)
    else:
        ws = open_workspace(workspace, read_only=True)
        frame = predict_catalog(ws, _bundle(ws, model_version), _parse_texts(texts, images))
    joined, notes = join_labels(frame, labels)
    top_cols = [c for c in (f"pred_{j}" for j in range(1, 6)) if c in joined.columns]
    model_cols = [c for c in joined.columns if c.endswith("_pred") and not c.startswith("pred_")]
    ev = evaluation.evaluate(joined["true"].astype(int), joined["pred_1"].astype(int), joined["prob_1"],
                             threshold=threshold, top_k=joined[top_cols].to_numpy(),
                             by_model={c[:-len("_pred")]: joined[c].to_numpy() for c in model_cols})
    for note in notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(evaluation.format_report(ev))
    for line in evaluation.honest_lines(joined):
        click.echo(line)
    try:
        paths = evaluation.save_reports(ev, out_dir or workspace / "reports")
    except OSError as exc:
        raise click.ClickException(f"cannot write the reports to {out_dir or workspace / 'reports'} "
                                   f"({exc.strerror or exc}); pass --out-dir FOLDER") from None
    click.echo("")
    click.echo(_table([("confusion matrix", paths["confusion"].resolve()),
                       ("per category", paths["per_class"].resolve()),
                       ("summary", paths["summary"].resolve())], indent=""))


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


@main.command()
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
    Y_labels.csv     unnamed index (the X index when known), prdtypecode
    products.csv     the id map: index, productid, prdtypecode, reviewed
    decisions.jsonl  every decision ever recorded (append-only log), one JSON object per line
    """
    ws = open_workspace(workspace, read_only=True)
    if fmt != "csv":
        return export_other_format(ws, out, fmt, reviewed_only)
    ws.require_products()
    labels = ws.current_labels(reviewed_only=reviewed_only)
    reviewed = set(ws.current_labels(reviewed_only=True))
    products = [p for p in ws.query("SELECT id, source_row FROM products ORDER BY rowid") if p["id"] in labels]
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
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    click.echo(_table([("labels (Y layout)", f"{(out / 'Y_labels.csv').resolve()} ({len(products)} products, "
                                             f"{len(reviewed & set(labels))} reviewed)"),
                       ("id map", (out / "products.csv").resolve()),
                       ("decisions", f"{(out / 'decisions.jsonl').resolve()} ({len(decisions)})")], indent=""))


@main.command()
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


@main.command("explain")
@workspace_option
@click.option("--product", "product_id", required=True, help="Product id to explain.")
@click.option("--category", default=None,
              help="Category code to explain (default: the product's fused top-1, as on the review card).")
@click.option("--out", type=FOLDER, required=True, help="Folder for the PNG overlays and the text CSV (created if missing).")
@click.option("--model-version", default=None, help="Model version (default: the live one).")
def explain(workspace: Path, product_id: str, category: str | None, out: Path, model_version: str | None) -> None:
    """Explain a product: the text model's word contributions (CSV: field, span, start, end,
    contribution; they sum to the model's score) and one Grad-CAM / Ablation-CAM overlay PNG per
    image voter. `heatmap` is the same command."""
    from labeler import taxonomy
    from labeler.text_highlights import explain_product_text, text_model, write_text_csv
    from models.explain import write_heatmaps
    from models.features import ImageProblem

    ws = open_workspace(workspace, read_only=True)
    product = ws.product(product_id)
    if product is None:
        raise click.ClickException(f"no product {product_id!r} in workspace {workspace}")
    if category is not None and not taxonomy.is_known(category):
        raise click.ClickException(f"unknown category {category!r}; expected one of the 27 prdtypecode values: "
                                   + ", ".join(str(c) for c in taxonomy.codes()))
    bundle = _bundle(ws, model_version)
    code = int(category) if category is not None else _shown_top1(ws, bundle, product)
    out.mkdir(parents=True, exist_ok=True)
    model = text_model(bundle)
    if model is None:
        click.echo(f"no text explanation: model version {bundle.version} has no explainable text model")
    else:
        exp = explain_product_text(model, product, code)
        if not exp.has_text:
            click.echo(f"product {product_id} has no title or description text: no text explanation")
        else:
            path = out / f"product_{_safe(product_id)}_{code}_text.csv"
            write_text_csv(exp, path)
            click.echo(path.resolve())
            click.echo(f"  {taxonomy.name(code)} · {code}: {exp.summary()}")
    try:
        paths = write_heatmaps(bundle, product, out, code)
    except (ImageProblem, ValueError) as exc:
        click.echo(f"no heatmaps: {exc}")
        return
    for path in paths:
        click.echo(path.resolve())


main.add_command(explain, "heatmap")      # the command's earlier name


def _safe(text: str) -> str:
    import re
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(text))


def _shown_top1(ws: Workspace, bundle: Any, product: dict) -> int:
    """The fused top-1 stored for this version (what the card shows), else the bundle's own."""
    row = ws.prediction(product["id"], bundle.version)
    if row is not None:
        return int(row["top1"])
    frame = pd.DataFrame([{k: product.get(k) for k in ("id", "title", "description", "image_path", "image_sha1")}])
    return int(bundle.codes[int(np.argmax(bundle.predict(frame)["fused"][0]))])


# retrain, versions, rollback, label-issues live in their own module (the model loop)
from labeler import cli_models as _cli_models  # noqa: E402,F401  (registers its commands on `main`)
from labeler import cli_users as _cli_users  # noqa: E402,F401  (users add/list)
from labeler import cli_bulk as _cli_bulk  # noqa: E402,F401  (auto-accept, undo-batch, batches)
