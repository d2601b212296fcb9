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


def is_image(path: str) -> bool:
    """Whether PIL recognises the file as an image (reads the header, not the whole file)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:   # noqa: BLE001 - any decoder error means "not an image we can use"
        return False


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
