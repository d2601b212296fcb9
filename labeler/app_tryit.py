"""The Try-it tab's handler: a typed or uploaded product predicted by the live model, nothing
saved (a mixin of `labeler.app.ReviewUI`), and its upload widget, `ProductPhoto`, which refuses
a file that is not a usable photo in one line before any handler runs."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from labeler import messages, review, taxonomy, tryit, views
from labeler.prefetch import render_heatmaps
from labeler.text_highlights import build_highlights, text_model
from store.workspace import WorkspaceError


class ProductPhoto(gr.Image):
    """The try-it upload: `gr.Image` (drawn by the page as one) whose server side checks the file
    with the model's own rules before the handler sees it.

    Gradio's Image opens every upload with PIL in `preprocess`, before the handler: a file that is
    not an image (a .txt renamed .jpg, sent by `gradio_client` or a script) failed there with
    Gradio's traceback in the server console and a vague error for the caller, and a truncated
    JPEG got through to be predicted from the title alone. Here either is one escaped line
    (`messages.error`, logged once, no traceback) and the uploaded file is deleted at once."""

    is_template = True      # the front end draws the plain Image component

    def preprocess(self, payload):
        if payload is None:
            return None
        name = Path(payload.orig_name).name if payload.orig_name else None
        try:
            path = super().preprocess(payload)
        except Exception as exc:   # noqa: BLE001 - PIL's UnidentifiedImageError, OSError, ValueError...
            problem = ((tryit.upload_problem(payload.path, name) if payload.path else None)
                       or f"the uploaded image {name or ''} cannot be read ({type(exc).__name__}); "
                       "upload a JPEG, PNG or WebP photo")
            tryit.discard_upload(payload.path)
            raise messages.error(problem) from exc
        problem = tryit.upload_problem(path, name) if path else None
        if problem:
            for p in {path, payload.path}:
                tryit.discard_upload(p)
            raise messages.error(problem)
        return path


class TryItHandlers:
    """`try_it` (needs `ws`, `settings` and the prefetcher's explainer)."""

    def try_it(self, image: str | None, title: str, description: str,
               progress: gr.Progress = gr.Progress()) -> tuple[str, str, str, str]:
        """Predict a typed/uploaded product with the live model; the workspace is not touched.

        The uploaded file is deleted once predicted (`tryit.discard_upload`): nothing a visitor
        uploads stays on the server (Blocks' delete_cache sweeps uploads never predicted)."""
        try:
            return self._try_it(image, title, description, progress)
        finally:
            tryit.discard_upload(image)

    def _try_it(self, image: str | None, title: str, description: str, progress: gr.Progress) -> tuple[str, str, str, str]:
        from labeler.training import live_bundle
        problem = tryit.upload_problem(image) if image else None    # a path given without ProductPhoto
        if problem:
            raise messages.error(problem)
        try:
            progress(0.1, desc="loading the live model")
            bundle = live_bundle(self.ws)
            progress(0.3, desc="predicting")
            tax = taxonomy.of(self.ws)
            pred, product = tryit.predict_one(bundle, title=title, description=description, image_path=image,
                                              settings=self.settings, tax=tax)
        except (WorkspaceError, review.ReviewError) as exc:
            raise messages.error(str(exc)) from exc
        progress(0.6, desc="computing heatmaps")
        heat = render_heatmaps(bundle, product, pred.top1, self.prefetch.explainer)
        threshold = self.settings.auto_accept_threshold
        return (views.top5_html(pred, threshold=threshold, clickable=False), views.votes_html(pred, has_image=bool(product.get("image_path"))),
                views.heatmaps_html(heat.items, category=heat.category, note=heat.note, tax=tax),
                self._try_words(bundle, product, pred, tax))

    @staticmethod
    def _try_words(bundle, product: dict, pred, tax) -> str:
        """The typed title and description with the text model's words, per top-5 category."""
        model = text_model(bundle)
        if model is None or not (product.get("title") or product.get("description")):
            return views.text_explanation_html(None)
        return views.text_explanation_html(build_highlights(model, product, [v.code for v in pred.top5], tax),
                                           [(v.code, v.name) for v in pred.top5])
