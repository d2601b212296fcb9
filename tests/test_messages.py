"""What the app says in pop-ups: markup in reviewer names, product ids and file names arrives as
text, and a user error is one line in the server console, never a traceback.

Driven through a live server with gradio_client (errors) and through the handlers themselves
(warnings: outside a browser Gradio hands them to Python's `warnings`); the toast in a real
browser is covered by tests/test_browser_review.py.
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client

from app_server import add_hostile_product, decisions, running_app
from app_workspace import app_workspace

ROOT = Path(__file__).resolve().parent.parent
HOSTILE_NAME = '<img src=x onerror="window.__xss=1">eve'
HOSTILE_ID = "<a href=javascript:alert(1)><img src=x onerror=alert(1)>42</a>"


def _escaped(text: str) -> bool:
    """True when no markup of the hostile strings survives and their escaped form is there."""
    return "<img" not in text and "<a " not in text and "&lt;img src=x onerror=" in text


def hold(root: Path, product_id: str, reviewer: str) -> None:
    """`reviewer` holds the product now (as if they had just been shown it)."""
    from store.workspace import Workspace
    ws = Workspace(root)
    ws.write(lambda c: (c.execute("DELETE FROM reservations WHERE product_id = ?", (product_id,)),
                        c.execute("INSERT INTO reservations (product_id, reviewer, expires_at) VALUES (?, ?, ?)",
                                  (product_id, reviewer, time.time() + 600))))
    ws.close()


def test_no_message_leaves_the_app_without_the_escaping_helper():
    """Every gr.Error / gr.Warning / gr.Info of the app goes through labeler.messages."""
    raw = re.compile(r"\bgr\.(Error|Warning|Info)\(")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "labeler").glob("*.py")) if p.name != "messages.py"
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if raw.search(line)]
    assert offenders == [], f"use labeler.messages.error/warning/info instead: {offenders}"


def test_markup_in_a_reviewer_name_and_a_product_id_arrives_escaped(sample_dir, tmp_path, caplog, capfd):
    root = app_workspace(sample_dir, tmp_path / "ws")
    pid = add_hostile_product(root, "alice", product_id=HOSTILE_ID)
    with running_app(root, tmp_path) as (demo, url):
        ui = demo.review_ui
        from labeler.app import Session
        from labeler import review

        # decide while someone named in markup took the product over: the warning names both
        s = Session(reviewer="alice")
        ui._next(s)
        assert s.card.product_id == pid                      # alice holds the hostile product
        hold(root, pid, HOSTILE_NAME)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            ui.accept({"key": s.card.key}, "", s)
        shown = [str(w.message) for w in seen if "being reviewed by" in str(w.message)]
        assert len(shown) == 1 and _escaped(shown[0]) and "&lt;a href=javascript:alert(1)&gt;" in shown[0], shown

        # undo a decision on a product held by that reviewer: the error names both, escaped
        hold(root, pid, "alice")
        from store.workspace import Workspace
        ws = Workspace(root)
        review.decide(ws, "alice", pid, "accept")
        ws.close()
        hold(root, pid, HOSTILE_NAME)
        client = Client(url, verbose=False)
        client.predict("alice", {}, "", api_name="/start")
        caplog.clear()
        capfd.readouterr()
        with caplog.at_level(logging.INFO, logger="labeler.app"), pytest.raises(Exception) as err:
            client.predict(api_name="/undo")
        assert _escaped(str(err.value)) and "cannot be undone" in str(err.value), str(err.value)
        assert [r for r in decisions(root) if r["action"] == "undo"] == []

        # the name box's own error: escaped too, and one line in the console, no traceback
        with pytest.raises(Exception, match="Type your name"):
            client.predict("   ", api_name="/set_reviewer")
        console = capfd.readouterr().err
        assert "Traceback" not in console, console
        lines = [r.getMessage() for r in caplog.records if r.name == "labeler.app"]
        assert any(m.startswith("user error: product ") and "cannot be undone" in m for m in lines), lines
        assert any(m.startswith("user error: Type your name first") for m in lines), lines
        assert all("\n" not in m for m in lines)

        # try-it with a file that is no image, named in markup: the error names it, escaped
        bad = tmp_path / "gradio-tmp" / "up" / '<img src=x onerror="x()">.jpg'
        bad.parent.mkdir(parents=True)
        bad.write_bytes(b"not an image")
        with pytest.raises(gr.Error) as err:
            ui.try_it(str(bad), "Piscine", "")
        assert _escaped(err.value.message) and "not an image" in err.value.message
        assert not bad.exists()                              # the upload was deleted after use


def test_markup_in_a_typed_reviewer_name_shows_as_text(sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    with running_app(root, tmp_path) as (_, url):
        client = Client(url, verbose=False)
        out = client.predict(HOSTILE_NAME, api_name="/set_reviewer")
        status = out[1]
        assert "<img" not in status and "&lt;img src=x onerror=" in status
        undone = client.predict(api_name="/undo")              # nothing to undo: an info, not an error
        assert undone is not None
