"""The Try-it tab's handler: a typed or uploaded product predicted by the live model, nothing
saved (a mixin of `labeler.app.ReviewUI`)."""
from __future__ import annotations

import gradio as gr

from labeler import messages, review, taxonomy, tryit, views
from labeler.prefetch import render_heatmaps
from labeler.text_highlights import build_highlights, text_model
from store.workspace import WorkspaceError


class TryItHandlers:
    """`try_it` (needs `ws`, `settings` and the prefetcher's explainer)."""

    def try_it(self, image: dict | str | None, title: str, description: str,
               progress: gr.Progress = gr.Progress()) -> tuple[str, str, str, str]:
        """Predict a typed/uploaded product with the live model; the workspace is not touched.

        `image`: Gradio's file payload as uploaded (the event runs with preprocess=False: Gradio's
        Image would open the file with PIL before this handler, and a file that is not an image
        failed there with its own traceback) or a path. The file is checked here with the model's
        own rules, refused in one line if unusable, and deleted once used (`tryit.discard_upload`):
        nothing a visitor uploads stays on the server (Blocks' delete_cache sweeps the rest)."""
        try:
            path, name = tryit.uploaded(image)
        except tryit.TryItError as exc:
            raise messages.error(str(exc)) from exc
        try:
            return self._try_it(path, name, title, description, progress)
        finally:
            tryit.discard_upload(path)

    def _try_it(self, image: str | None, name: str | None, title: str, description: str,
                progress: gr.Progress) -> tuple[str, str, str, str]:
        from labeler.training import live_bundle
        problem = tryit.upload_problem(image, name) if image else None
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
