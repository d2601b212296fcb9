"""The Models tab's handlers: retrain from decisions, the versions table, make a version live,
what the live text model learned. Model-changing handlers check the caller's role on the server
(a mixin of `labeler.app.ReviewUI`, which holds `access`)."""
from __future__ import annotations

import time

import gradio as gr

from labeler import learned, messages, retrain, taxonomy, views
from labeler.app_review import HISTORY_ROWS, Session
from labeler.auth import AccessDenied
from store.workspace import WorkspaceError

RETRAIN_POLL_S = 0.5   # progress refresh of a running retrain


class ModelHandlers:
    """Retrain, versions, make live, learned words (needs `ws`, `access`, `warm`)."""

    def models(self, request: gr.Request = None) -> tuple:
        """Retrain panel (with who moved the live version, and what this login may do), versions
        table (newest first) and the version picker's choices."""
        handle = retrain.current_retrain(self.ws)
        runs = retrain.retrain_state(self.ws, limit=1)
        panel = views.retrain_status_html(handle.status() if handle else None,
                                          handle.result.lines() if handle and handle.result else (),
                                          runs[0] if runs else None)
        panel += views.live_history_html(self.ws.live_history(limit=HISTORY_ROWS * 2), note=self._rights(request))
        table = retrain.versions_table(self.ws)
        return (panel, views.versions_rows(table),
                gr.update(choices=[v["id"] for v in reversed(table) if v["status"] == "ready"], value=None))

    def models_learned(self):
        """What the live text model learned (read once per version: about a second)."""
        version = self.ws.live_version()
        if version is None:
            yield views.learned_html(None)
            return
        yield '<div class="muted">Reading what the model learned…</div>'
        try:
            yield views.learned_html(learned.learned(self.ws, version), taxonomy.of(self.ws))
        except (WorkspaceError, OSError) as exc:
            yield f'<div class="muted">Could not read the model: {views.text(str(exc))}</div>'

    def _rights(self, request: gr.Request | None) -> str:
        """'' when this login may change the model, else why not (shown above the live history)."""
        try:
            self.access.require_admin(_login(request), "Changing the model (retrain, make a version live)")
        except AccessDenied as exc:
            return str(exc)
        return ""

    def _admin(self, request: gr.Request | None, action: str, s: Session | None) -> str:
        """Who does `action` (recorded in live_history); gr.Error when this login may not.

        Checked here, on the server, for every model-changing event: hiding a button would not
        stop a call through the API."""
        try:
            return self.access.require_admin(_login(request), action, fallback=s.reviewer if s else "")
        except AccessDenied as exc:
            raise messages.error(f"refused: {exc}") from exc      # one line in the console, escaped

    def retrain_now(self, why: str | None = None, s: Session | None = None, request: gr.Request = None,
                    progress: gr.Progress = gr.Progress()) -> tuple:
        """Start the background retrain (or follow the one running) and report it until it ends.

        The work runs in its own thread: closing the tab does not stop it, reviewers keep
        deciding meanwhile, and the queue moves to the new version when it goes live. Admins
        only; who started it and their note go to live_history with the version it made live."""
        who = self._admin(request, "Retraining", s)
        handle = retrain.start_background_retrain(self.ws, who=who, why=(why or "").strip())
        while not handle.done:
            st = handle.status()
            progress(st["fraction"], desc=st["message"])
            time.sleep(RETRAIN_POLL_S)
        if handle.error:
            messages.warning(f"Retrain failed: {handle.error}")
        elif handle.result is not None:
            self.warm(self.ws.live_version())
            messages.info(f"{handle.result.version} {'is live' if handle.result.went_live else 'is ready, not live'}")
        return self.models(request)

    def make_live(self, version: str | None, why: str | None = None, s: Session | None = None,
                  request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> tuple:
        """Serve another ready version (roll back, or promote one a gate held back). Admins only."""
        who = self._admin(request, "Making a version live", s)
        if not version:
            raise messages.error("Pick a version in the list first.")
        running = retrain.current_retrain(self.ws)
        if running is not None and not running.done:
            raise messages.error("A retrain is running; switch versions once it has finished.")
        try:
            out = retrain.rollback(self.ws, version, progress=lambda f, d: progress(f, desc=d), who=who,
                                   why=(why or "").strip())
        except WorkspaceError as exc:
            raise messages.error(str(exc)) from exc
        self.warm(out["version"])
        messages.info(f"{out['version']} is live" + (f" ({out['rescored']} products scored)" if out["rescored"] else ""))
        return self.models(request)


def _login(request: gr.Request | None) -> str | None:
    """The logged-in name of this request (None without --auth)."""
    return getattr(request, "username", None) if request is not None else None
