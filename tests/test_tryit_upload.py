"""Try-it uploads that are not a usable photo, sent through the API to a live server: one clear
line for the caller, one line in the server log, no traceback, and nothing left on disk."""
from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app_server import running_app
from app_workspace import app_workspace


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_a_non_image_and_a_truncated_jpeg_get_one_line_and_no_traceback(sample_dir, tmp_path, capfd, caplog):
    root = app_workspace(sample_dir, tmp_path / "ws")
    uploads = tmp_path / "gradio-tmp"            # GRADIO_TEMP_DIR of running_app
    photo = next((sample_dir / "images" / "image_train").glob("*.jpg"))
    notes = tmp_path / "shopping-list.jpg"       # a text file renamed .jpg
    notes.write_text("piscine, bâche, pompe\n" * 40, encoding="utf-8")
    cut = tmp_path / "cut-photo.jpg"             # a real JPEG, its second half lost
    cut.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    caplog.set_level(logging.INFO, logger="labeler.app")
    capfd.readouterr()                           # what building the workspace printed
    with running_app(root, tmp_path) as (demo, url):
        client = Client(url, verbose=False)
        said = {}
        for upload in (notes, cut):
            with pytest.raises(AppError) as refused:
                client.predict(handle_file(str(upload)), "Piscine gonflable", "", api_name="/try_it")
            said[upload.name] = str(refused.value)
        # a good photo still predicts (the check refuses only what the model cannot read)
        top5 = client.predict(handle_file(str(photo)), "Piscine gonflable", "", api_name="/try_it")[0]
        assert "t5-row" in top5
        # the name is the visitor's: shown as text in the toast (Gradio renders it as HTML)
        named = uploads / "up" / "x.jpg"
        named.parent.mkdir(parents=True, exist_ok=True)
        named.write_bytes(notes.read_bytes())
        with pytest.raises(gr.Error) as markup:
            demo.review_ui.try_it({"path": str(named), "orig_name": "<img src=x onerror=alert(1)>.jpg"}, "", "")
        assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in markup.value.message and "<img" not in markup.value.message
        bodies = {notes.read_bytes(), cut.read_bytes()}
        left = [p for p in files_under(uploads) if p.read_bytes() in bodies]
    out, err = capfd.readouterr()

    for name, message in said.items():
        assert message.startswith(f"the uploaded file {name} is not an image the model can read"), message
        assert "Upload a JPEG, PNG or WebP photo" in message and "\n" not in message
        assert str(tmp_path) not in message and "gradio" not in message.lower()   # no server path
    assert "cannot identify image file" in said[notes.name]
    assert "truncated" in said[cut.name]
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    logged = [r.getMessage() for r in caplog.records if r.name == "labeler.app" and "user error" in r.getMessage()]
    assert [m for m in logged if notes.name in m] and [m for m in logged if cut.name in m], logged
    assert all("\n" not in m for m in logged)
    assert left == [], left                      # the refused uploads were deleted at once
