"""The review app serves each product's own image and no other file, whatever the path, encoding
or symlink: tried on a real server over a shop folder that holds the catalog, the auth file, the
workspace, a private sub-folder and symlinks to secrets next to the product images.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from app_server import running_app
from shop_catalog import ADMIN, ADMIN_PW, make_shop

DENIED = (401, 403, 404)


@pytest.fixture(scope="module")
def shop(sample_dir, tmp_path_factory):
    return make_shop(sample_dir, tmp_path_factory.mktemp("serve"), train=False)


def attempts(shop) -> list[str]:
    """Every way we know to name each secret on Gradio's file routes and on the image route."""
    image_dir = shop.folder.resolve()
    urls = []
    for secret in shop.secrets.values():
        for p in {str(secret), str(secret.resolve())}:
            rel = Path(p).relative_to(image_dir) if Path(p).is_relative_to(image_dir) else Path(p).name
            urls += [f"gradio_api/file={p}", f"gradio_api/file={quote(p)}", f"gradio_api/file={quote(p, safe='')}",
                     f"gradio_api/file/{p.lstrip('/')}", f"file={p}",
                     f"gradio_api/file={image_dir}/private/../{rel}",
                     f"gradio_api/file={image_dir}/private/%2e%2e/{rel}",
                     f"product-image/{quote(p, safe='')}", f"product-image/..%2F{rel}",
                     f"product-image/{shop.image_ids[0]}/../{rel}", f"product-image/{shop.image_ids[0]}%2F..%2F{rel}"]
    return urls


def raw_get(url: str, path: str, cookie: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side clean-up of `..` or encodings)."""
    import http.client
    from urllib.parse import urlsplit
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Cookie": cookie})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def secret_bytes(shop) -> list[bytes]:
    return [p.resolve().read_bytes()[:64] for p in shop.secrets.values()]


def test_only_product_images_are_served(shop, tmp_path):
    """A logged-in reviewer gets each product's image by id, and 401/403/404 for every other file."""
    from labeler.auth import read_auth_file
    import sqlite3
    with sqlite3.connect(shop.workspace / "workspace.db") as db:
        stored = dict(db.execute("SELECT id, image_path FROM products WHERE image_path IS NOT NULL"))
    assert sorted(stored) == sorted(shop.image_ids)
    with running_app(shop.workspace, tmp_path, auth=read_auth_file(shop.auth_file)) as (_, url):
        base = url.rstrip("/") + "/"
        # not logged in: no image either
        assert requests.get(base + f"product-image/{shop.image_ids[0]}", timeout=10).status_code == 401
        with requests.Session() as browser:
            assert browser.post(base + "login", data={"username": ADMIN, "password": ADMIN_PW},
                                timeout=30).status_code == 200
            for pid in shop.image_ids:
                got = browser.get(base + f"product-image/{pid}", timeout=10)
                assert got.status_code == 200 and got.content == Path(stored[pid]).read_bytes()
                assert got.headers["content-type"] == "image/jpeg"
                assert got.headers["x-content-type-options"] == "nosniff"
            assert browser.get(base + "product-image/no-such-product", timeout=10).status_code == 404
            without_image = next(p for p in _ids(shop) if p not in stored)
            assert browser.get(base + f"product-image/{without_image}", timeout=10).status_code == 404
            cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
            leaks = []
            for path in attempts(shop):
                status, body = raw_get(url, "/" + path, cookie)
                if status not in DENIED or any(s in body for s in secret_bytes(shop)):
                    leaks.append((path, status))
            assert leaks == []


def test_a_stored_image_path_swapped_for_another_file_is_not_served(shop, tmp_path):
    """The route serves files that start like an image: a product row pointing at the auth file
    (a hand-edited database, a replaced file) answers 404."""
    import shutil
    import sqlite3
    root = tmp_path / "ws"
    shutil.copytree(shop.workspace, root)
    with sqlite3.connect(root / "workspace.db") as db:
        db.execute("UPDATE products SET image_path = ? WHERE id = ?", (str(shop.auth_file), shop.image_ids[0]))
        db.execute("UPDATE products SET image_path = ? WHERE id = ?", (str(shop.folder), shop.image_ids[1]))
    with running_app(root, tmp_path) as (_, url):
        base = url.rstrip("/") + "/"
        for pid in shop.image_ids[:2]:
            r = requests.get(base + f"product-image/{pid}", timeout=10)
            assert r.status_code == 404 and b"scrypt" not in r.content
        assert requests.get(base + f"product-image/{shop.image_ids[2]}", timeout=10).status_code == 200


def test_cards_and_preloads_point_at_the_image_route(shop, tmp_path):
    """The card's <img> and the preloaded next images use the route by id, never a file path."""
    from gradio_client import Client
    with running_app(shop.workspace, tmp_path) as (_, url):
        client = Client(url, verbose=False)
        seen = []
        out = client.predict("paula", api_name="/set_reviewer")
        for _ in range(len(_ids(shop))):
            cur, html = out[0], out[1]
            if cur is None or not cur.get("product_id"):
                break
            seen.append(html)
            if all(f"product-image/{pid}?" in "".join(seen) for pid in shop.image_ids):
                break
            out = client.predict(cur, "", api_name="/skip")
    pages = "".join(seen)
    assert "gradio_api/file=" not in pages and str(shop.folder) not in pages
    shown = {pid for pid in shop.image_ids if f'src="product-image/{pid}?v=' in pages}
    assert shown == set(shop.image_ids)


def _ids(shop) -> list[str]:
    import sqlite3
    with sqlite3.connect(shop.workspace / "workspace.db") as db:
        return [r[0] for r in db.execute("SELECT id FROM products ORDER BY rowid")]
