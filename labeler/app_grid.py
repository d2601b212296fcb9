"""The Grid tab's handlers: open a page of one predicted category, accept it but the marked
products, undo the last page (over `labeler.grid`). Laid out by `labeler.app.grid_tab`."""
from __future__ import annotations

from typing import Any

import gradio as gr

from labeler import grid, messages, review, taxonomy, views
from labeler.config import Settings
from store.workspace import Workspace


class GridHandlers:
    """The handlers over one workspace and its settings."""

    def __init__(self, ws: Workspace, settings: Settings):
        self.ws = ws
        self.settings = settings

    @staticmethod
    def who(name: str, request: gr.Request | None) -> str:
        user = getattr(request, "username", None) if request is not None else None
        return user or (name or "").strip()

    def show(self, page: Any, note: str) -> tuple:
        if page is None:
            return (views.grid_html(None, []), gr.update(choices=[], value=[]), note, None)
        tiles = [(i + 1, item, grid.thumbnail_uri(self.ws, item.image_path))
                 for i, item in enumerate(page.items)]
        marks = [(f"{n} · {item.title[:60]}", item.product_id) for n, item, _ in tiles]
        return views.grid_html(page, tiles, taxonomy.of(self.ws)), gr.update(choices=marks, value=[]), note, page

    def open_page(self, name: str, category: int | None, order: str, request: gr.Request) -> tuple:
        if category is None:
            raise messages.error("choose a category first")
        try:
            page = grid.open_page(self.ws, self.who(name, request), int(category), order=order,
                                  settings=self.settings)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return self.show(page, "" if page else "Nothing left to validate in this category.") + (None,)

    def accept(self, name: str, marked: list[str], page: Any, order: str, request: gr.Request) -> tuple:
        if page is None:
            raise messages.error("open a page first")
        try:
            res = grid.accept_page(self.ws, self.who(name, request), page, marked or [])
            nxt = grid.open_page(self.ws, self.who(name, request), page.category, order=order,
                                 settings=self.settings)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        note = [f"Accepted {len(res.accepted)}; {len(res.marked)} marked went back to the queue."]
        note += res.problems()
        return self.show(nxt, "  \n".join(note)) + (res.batch_id,)

    def undo(self, name: str, batch: str | None, page: Any, request: gr.Request) -> tuple:
        if not batch:
            raise messages.error("no accepted page to undo")
        try:
            out = grid.undo_page(self.ws, self.who(name, request), batch)
            again = (grid.open_page(self.ws, self.who(name, request), page.category, settings=self.settings)
                     if page else None)
        except review.ReviewError as exc:
            raise messages.error(str(exc)) from None
        return self.show(again, f"Undid {out.undone} decisions of the last page.") + (None,)
