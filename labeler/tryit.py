"""Predict one ad-hoc product (the app's try-it tab) without touching the workspace."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from labeler import taxonomy
from labeler.taxonomy import Taxonomy
from labeler.config import Settings
from labeler.cards import Prediction, ReviewError, Vote
from models.predictor import prediction_rows

TRY_ID = "try-it"
log = logging.getLogger(__name__)


class TryItError(ReviewError):
    """What the visitor must fix (nothing to predict from, no model)."""


def prediction_from_row(row: dict, version: str, settings: Settings = Settings(),
                        calibration: dict | None = None, *, tax: Taxonomy | None = None,
                        classes: list[int] | None = None) -> Prediction:
    """A `prediction_rows` row as the review card's `Prediction` (same shape as a stored one),
    with the bundle's auto-accept threshold and prediction set (`bundle.info['calibration']`);
    `classes`: the bundle's columns, `tax`: the workspace's taxonomy (default: Rakuten's)."""
    from labeler.cards import prediction_view
    from models.honest import ALL_LABELS_SOURCE, Calibration
    tax = tax or taxonomy.default()
    return prediction_view({**row, "model_version": version, "source": ALL_LABELS_SOURCE},
                           Calibration.from_dict(calibration), settings, tax=tax,
                           classes=list(classes) if classes is not None else tax.keys())


def predict_one(bundle, *, title: str = "", description: str = "", image_path: str | None = None,
                settings: Settings = Settings(), tax: Taxonomy | None = None) -> tuple[Prediction, dict]:
    """Fused top-k and each voter's vote for a product typed or uploaded by the visitor.

    Nothing is written: no feature store is passed to the bundle, so image features are not
    cached in the workspace either. Returns the prediction and the product row used.
    """
    title, description = (title or "").strip(), (description or "").strip()
    has_image_model = getattr(bundle, "image", None) is not None
    if not title and not description and not image_path:
        raise TryItError("type a title (and a description) or upload an image to get a prediction")
    if not title and not description and not has_image_model:
        raise TryItError(f"model version {bundle.version} reads text only (no image model yet): type a title")
    product = {"id": TRY_ID, "title": title, "description": description,
               "image_path": image_path if image_path and has_image_model else None, "image_sha1": None}
    out = bundle.predict(pd.DataFrame([product]))
    row = prediction_rows([TRY_ID], out, k=settings.top_k)[0]
    return prediction_from_row(row, bundle.version, settings,
                               (getattr(bundle, "info", None) or {}).get("calibration"), tax=tax,
                               classes=out.get("codes", getattr(bundle, "codes", None))), product


def uploaded(value: dict | str | None) -> tuple[str | None, str | None]:
    """(path on the server, name it was uploaded under) of the try-it image: Gradio's file payload
    (`{"path": ..., "orig_name": ...}`, already moved into its upload folder) or a plain path."""
    if not value:
        return None, None
    if isinstance(value, str):
        return value, None
    path, name = value.get("path"), value.get("orig_name")
    if not path:
        raise TryItError("the image did not arrive as a file; upload it again (JPEG, PNG or WebP)")
    return str(path), Path(name).name if name else None


def upload_problem(path: str, name: str | None = None) -> str | None:
    """Why an uploaded file cannot be the product's photo, in the visitor's words, or None.

    The model's own rules (`models.imagecheck.check_image_file`: size, format, dimensions),
    decoded too, so a truncated JPEG is caught here and not silently predicted from text alone.
    The message names the file by the name it was uploaded under (`name`), never the server's
    temporary path."""
    from models.imagecheck import ImageProblem, check_image_file
    try:
        check_image_file(path, decode=True)
        return None
    except ImageProblem as exc:
        detail = str(exc)
    except Exception as exc:   # noqa: BLE001 - whatever PIL raises on an odd file: not usable
        detail = f"image {path} cannot be read ({type(exc).__name__}: {exc})"
    shown = name or Path(path).name
    detail = detail.replace(str(path), shown).split("; ")[0]
    return (f"the uploaded file {shown} is not an image the model can read: {detail}. "
            "Upload a JPEG, PNG or WebP photo, or remove it to predict from the title alone")


def upload_folder() -> Path:
    """Where Gradio writes uploads (GRADIO_TEMP_DIR, else <tmp>/gradio)."""
    from gradio.utils import get_upload_folder
    return Path(get_upload_folder()).resolve()


def discard_upload(path: str | None) -> bool:
    """Delete an uploaded file (and its now empty per-upload folder) once it was used.

    Only files inside Gradio's upload folder: a path named by an API caller elsewhere is never
    touched. Returns whether a file was deleted."""
    if not path:
        return False
    root = upload_folder()
    p = Path(path).resolve()
    if root not in p.parents or not p.is_file():
        return False
    try:
        p.unlink()
        if p.parent != root and not any(p.parent.iterdir()):
            os.rmdir(p.parent)
    except OSError as exc:
        log.warning("could not delete the upload %s: %s", p, exc)
        return False
    return True
