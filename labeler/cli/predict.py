"""Model output commands: predict an X file, evaluate predictions against a Y file, explain a product."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import click
import numpy as np
import pandas as pd

from labeler import taxonomy
from labeler.cli.common import FILE, FOLDER, TqdmProgress, _table, open_workspace, workspace_option
from labeler.config import Settings
from labeler.csvsafe import neutralise_frame, restore
from labeler.engines import Engine
from labeler.importer import CatalogError, ProductRecord
from store.workspace import Workspace


# -- predict ----------------------------------------------------------------------------------
def _code_column(keys: np.ndarray, tax: Any) -> Any:
    """Category keys as the codes a file holds: Int64 for whole-number codes, text otherwise."""
    values = [tax.code_value(k) for k in keys]
    if all(isinstance(v, int) for v in values):
        return pd.array(values, dtype="Int64")
    return pd.array(values, dtype=object)


def prediction_frame(parsed_frame: pd.DataFrame, out: dict[str, Any], k: int = 5,
                     calibration: dict | None = None, tax: Any = None) -> pd.DataFrame:
    """One row per product: fused top-k, each model's top-1, disagreement, and the X index `row`;
    categories written as the codes of `tax`, the workspace's taxonomy (default: Rakuten's)."""
    tax = tax or taxonomy.default()
    codes = np.asarray(out.get("codes") or tax.keys())       # the key of each probability column
    fused = out["fused"]
    order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
    table: dict[str, Any] = {"productid": parsed_frame["id"].to_numpy()}
    for j in range(k):
        table[f"pred_{j + 1}"] = _code_column(codes[order[:, j]], tax)
    for j in range(k):
        table[f"prob_{j + 1}"] = np.round(np.take_along_axis(fused, order[:, j:j + 1], axis=1)[:, 0], 6)
    models = {"text": out["text"]}
    if out.get("image") is not None:
        models["image"] = out["image"]
        models.update(out.get("voters") or {})
    has_image = np.asarray(out.get("has_image", np.zeros(len(fused), bool)), bool)
    photo_only = has_image & ~np.asarray(out.get("has_text", np.ones(len(fused), bool)), bool)
    for name, probs in models.items():
        best = np.argmax(probs, axis=1)
        pred = _code_column(codes[best], tax)
        prob = pd.array(np.round(probs[np.arange(len(best)), best], 6), dtype="Float64")
        if name != "text":   # image models say nothing about products without an image
            pred[~has_image], prob[~has_image] = pd.NA, pd.NA
        elif photo_only.any():   # nor the text model about a product with only a photo
            pred[photo_only], prob[photo_only] = pd.NA, pd.NA
        table[f"{name}_pred"], table[f"{name}_prob"] = pred, prob
    if out.get("image") is not None:
        table["disagreement"] = (has_image & ~photo_only & (np.argmax(out["text"], 1) != np.argmax(out["image"], 1))).astype(int)
    table.update(honest_columns(fused, calibration, codes, tax))
    table["row"] = parsed_frame["row"].to_numpy()
    return pd.DataFrame(table)


def honest_columns(fused: np.ndarray, calibration: dict | None, keys: Any = None, tax: Any = None) -> dict[str, Any]:
    """auto_accept (0/1) and the threshold used, from the version's guarantee (a version trained
    before it: the fixed 0.80); pred_set (codes joined by |) and pred_set_size when it has sets.
    keys: the category key of each column of `fused`; tax: their codes (default: Rakuten's)."""
    tax = tax or taxonomy.default()
    from models.honest import Calibration
    cal = Calibration.from_dict(calibration)
    top1 = fused.max(axis=1) if len(fused) else np.zeros(0)
    threshold = Settings().auto_accept_threshold if cal is None else cal.auto_accept.threshold
    cols: dict[str, Any] = {
        "auto_accept": (top1 >= threshold).astype(int) if threshold is not None else np.zeros(len(fused), int),
        "auto_accept_threshold": pd.array([threshold] * len(fused), dtype="Float64")}
    if cal is not None:
        codes = np.asarray(keys if keys is not None else tax.keys())
        inside = cal.conformal.sets(fused)
        order = np.argsort(-fused, axis=1, kind="stable")
        cols["pred_set"] = ["|".join(tax.code(codes[j]) for j in row if ins[j]) for row, ins in zip(order, inside)]
        cols["pred_set_size"] = inside.sum(axis=1).astype(int)
    return cols


def predicted_parts(ws: Workspace, bundle: Any, chunks: Iterable[list[ProductRecord]], *, source: str,
                    rejected: list, batch_size: int = 512, adapt: bool = False, engine: Engine | None = None,
                    spool: Path | None = None, progress: Any = None) -> Iterator[pd.DataFrame]:
    """`prediction_frame` of a model bundle for validated products as the reader hands them over
    (`chunks`), in batches of `batch_size` whatever the chunks' size (adapt: the text model refits
    with each batch's unseen texts, `TextClassifier.predict_proba`), by `engine` (default: here).
    `rejected`: the reader's problems, for the message when nothing was valid."""
    calibration = (getattr(bundle, "info", None) or {}).get("calibration")
    tax = taxonomy.of(ws)
    n = 0
    for part, out in (engine or Engine()).predict(ws, bundle, chunks, batch_size=batch_size, adapt=adapt,
                                                  spool=spool, progress=progress):
        yield prediction_frame(part, out, calibration=calibration, tax=tax)
        n += len(part)
    if n == 0:
        raise CatalogError(f"{source}: no valid product to predict ({len(rejected)} rows rejected)")


@contextlib.contextmanager
def file_predictions(ws: Workspace, bundle: Any, texts: Path, images: Path | None, *, batch_size: int = 512,
                     adapt: bool = False, engine: Engine | None = None, spool: Path | None = None
                     ) -> Iterator[Iterator[pd.DataFrame]]:
    """`predicted_parts` of an X file read a chunk at a time (memory follows the chunk, not the
    file): here, each batch is predicted before the next chunk is read, under one progress bar
    (the file's share read); on Ray, the file is spooled first (its own bar), then predicted on the
    cluster (a second bar). Rejected rows are reported at the end, also when nothing was valid."""
    from labeler.importer import stream_challenge
    engine = engine or Engine()
    rejected: list = []
    remote = engine.name != "local"
    try:
        with TqdmProgress(f"read {texts.name}" if remote else f"predict ({bundle.version})") as bar, \
                TqdmProgress(f"predict ({bundle.version}, {engine.name})") as predicting, \
                stream_challenge(texts, images, progress=bar) as (reading, chunks):
            rejected = reading.problems
            yield predicted_parts(ws, bundle, chunks, source=reading.source, rejected=rejected,
                                  batch_size=batch_size, adapt=adapt, engine=engine, spool=spool,
                                  progress=predicting if remote else None)
    finally:
        _report_rejected(rejected)


def write_parts(parts: Iterable[pd.DataFrame], out: Path) -> int:
    """Each part appended to a CSV beside `out` as it comes, which becomes `out` once the last is
    written (a failure half-way leaves no file and no previous `out` overwritten); rows written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    n = 0
    try:
        with open(partial, "w", newline="", encoding="utf-8") as f:
            for part in parts:
                neutralise_frame(part).to_csv(f, index=False, header=n == 0)
                n += len(part)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return n


def _bundle(ws: Workspace, model_version: str | None) -> Any:
    """The model to predict with, loaded before any file is read so a missing one fails fast."""
    from labeler.training import live_bundle
    return live_bundle(ws, model_version)


def _report_rejected(problems: list) -> None:
    skipped = [p for p in problems if p.skipped]
    if skipped:
        counts = pd.Series([p.kind for p in skipped]).value_counts()
        click.echo(f"{len(skipped)} rows not predicted ({', '.join(f'{k}: {n}' for k, n in counts.items())}); "
                   f"first: {skipped[0]}", err=True)


@click.command()
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
    predict_file(workspace, texts, images, out, model_version, batch_size, adapt)


def predict_file(workspace: Path, texts: Path, images: Path | None, out: Path, model_version: str | None,
                 batch_size: int, adapt: bool, engine: Engine | None = None) -> None:
    """`predict`'s body, by `engine` (default: here; `labeler.cli.engines` passes Ray's). The
    products go through a spool beside `out` on engines that need one: its folder is made first."""
    engine = engine or Engine()
    ws = open_workspace(workspace, read_only=True)
    bundle = _bundle(ws, model_version)
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_predictions(ws, bundle, texts, images, batch_size=batch_size, adapt=adapt, engine=engine,
                          spool=out.parent) as parts:
        n = write_parts(parts, out)
    where = "" if engine.name == "local" else f" on {engine.name}"
    click.echo(f"Predicted {n} products with model version {bundle.version}{where}: {out.resolve()}")


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


def join_labels(predictions: pd.DataFrame, labels_path: Path, tax: Any = None) -> tuple[pd.DataFrame, list[str]]:
    """Predictions with a `true` column (category keys of `tax`), joined on the X index; notes on
    what did not join."""
    from labeler.importer import read_labels
    labels, problems = read_labels(labels_path, tax)
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


@click.command()
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
        tax = (taxonomy.of(open_workspace(workspace, read_only=True)) if (workspace / "workspace.db").exists()
               else taxonomy.default())
    else:
        ws = open_workspace(workspace, read_only=True)
        tax = taxonomy.of(ws)
        with file_predictions(ws, _bundle(ws, model_version), texts, images) as parts:
            frame = pd.concat(list(parts), ignore_index=True)
    joined, notes = join_labels(frame, labels, tax)
    top_cols = [c for c in (f"pred_{j}" for j in range(1, 6)) if c in joined.columns]
    model_cols = [c for c in joined.columns if c.endswith("_pred") and not c.startswith("pred_")]

    def keys(col: str) -> np.ndarray:       # the file's codes as category keys (NaN: none or unknown)
        return np.array([np.nan if (k := tax.parse(v)) is None else k for v in joined[col]], dtype=float)

    ev = evaluation.evaluate(joined["true"].astype(int), keys("pred_1").astype(int), joined["prob_1"],
                             threshold=threshold, top_k=np.stack([keys(c) for c in top_cols], axis=1),
                             by_model={c[:-len("_pred")]: keys(c) for c in model_cols}, tax=tax)
    for note in notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(evaluation.format_report(ev))
    for line in evaluation.honest_lines(joined.assign(pred_1=keys("pred_1")), tax):
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


@click.command("explain")
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
    from labeler.text_highlights import explain_product_text, text_model, write_text_csv
    from models.explain import write_heatmaps
    from models.features import ImageProblem

    ws = open_workspace(workspace, read_only=True)
    product = ws.product(product_id)
    if product is None:
        raise click.ClickException(f"no product {product_id!r} in workspace {workspace}")
    tax = taxonomy.of(ws)
    if category is not None and not tax.is_known(category):
        raise click.ClickException(f"unknown category {category!r}; expected one of the {len(tax)} category codes: "
                                   + tax.describe_codes())
    bundle = _bundle(ws, model_version)
    code = tax.parse(category) if category is not None else _shown_top1(ws, bundle, product)
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
            click.echo(f"  {tax.name(code)} · {tax.code(code)}: {exp.summary()}")
    try:
        paths = write_heatmaps(bundle, product, out, code)
    except (ImageProblem, ValueError) as exc:
        click.echo(f"no heatmaps: {exc}")
        return
    for path in paths:
        click.echo(path.resolve())


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
