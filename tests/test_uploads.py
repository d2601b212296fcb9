"""Try-it uploads on a live server: a size limit, and nothing a visitor uploads stays on disk."""
from __future__ import annotations

from pathlib import Path

import httpx
from gradio_client import Client, handle_file

from app_server import running_app
from app_workspace import app_workspace


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_uploads_are_limited_and_deleted_after_use(sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    uploads = tmp_path / "gradio-tmp"            # GRADIO_TEMP_DIR of running_app
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(21 * 1024 * 1024))
    photo = next((sample_dir / "images" / "image_train").glob("*.jpg"))
    with running_app(root, tmp_path) as (demo, url):
        from labeler.app import MAX_UPLOAD, UPLOAD_SWEEP
        assert MAX_UPLOAD == "20mb" and demo.delete_cache == UPLOAD_SWEEP

        # over the limit: refused before it is stored (today: 300 MB accepted in a second)
        with open(big, "rb") as f:
            r = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.jpg", f, "image/jpeg")}, timeout=120)
        assert r.status_code == 413, (r.status_code, r.text[:200])
        assert not [p for p in files_under(uploads) if p.stat().st_size > 20 * 1024 * 1024]

        # a product photo: predicted, then the uploaded file is gone from the server
        client = Client(url, verbose=False)
        top5, votes = client.predict(handle_file(str(photo)), "Piscine gonflable", "", api_name="/try_it")[:2]
        assert "t5-row" in top5 and "models agree" in votes or "text model only" in votes
        left = [p for p in files_under(uploads) if p.suffix.lower() in (".jpg", ".jpeg")
                and p.read_bytes() == photo.read_bytes()]
        assert left == [], left
