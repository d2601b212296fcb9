"""The Browse tab's handlers: search, filters, sort and pages over `labeler.browse`, one
product's detail, and a new decision recorded from the table. Laid out by `labeler.app.browse_tab`."""
from __future__ import annotations

from typing import Any

import gradio as gr

from labeler import browse, messages, review, taxonomy, views
from store.workspace import Workspace


class BrowseHandlers:
    """The handlers over one workspace (the tab's only shared state)."""

    def __init__(self, ws: Workspace):
        self.ws = ws

    def run(self, text: str, imported: int | None, predicted: int | None, decided: int | None, status: str,
            reviewer: str, lo: float, hi: float, sort: str, flags: list[str], in_set: int | None,
            page: float) -> tuple:
        try:
            result = browse.browse(self.ws, browse.BrowseQuery(
                text=text or "", imported=imported, predicted=predicted, decided=decided, in_set=in_set, status=status,
                reviewer=(reviewer or "").strip() or None, min_confidence=lo if lo > 0 else None,
                max_confidence=hi if hi < 1 else None, sort=sort, disagreement="disagreement" in (flags or []),
                suspect="suspect" in (flags or []), page=max(1, int(page or 1))))
        except browse.BrowseError as exc:
            raise messages.error(str(exc)) from None
        return browse.table_rows(result, tax=taxonomy.of(self.ws)), browse.summary(result), result.page

    def open_product(self, pid: str) -> str:
        try:
            return views.browse_detail_html(browse.product_detail(self.ws, pid), taxonomy.of(self.ws))
        except browse.BrowseError as exc:
            raise messages.error(str(exc)) from None

    def pick_row(self, evt: gr.SelectData) -> tuple:
        row = evt.row_value or []
        pid = str(row[0]) if row else ""
        return pid, self.open_product(pid) if pid else views.browse_detail_html(None)

    def set_category(self, name: str, pid: str, category: int | None, request: gr.Request) -> str:
        reviewer = getattr(request, "username", None) or (name or "").strip()
        if category is None:
            raise messages.error("choose the category to record")
        try:
            browse.change_decision(self.ws, reviewer, (pid or "").strip(), category)
        except (review.ReviewError, browse.BrowseError) as exc:
            raise messages.error(str(exc)) from None
        return self.open_product(pid)


def first_page(run: Any, *values: Any) -> tuple:
    """A filter changed: back to page 1 of the new result."""
    return run(*values[:-1], 1)
