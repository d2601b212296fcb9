"""What the review app's web server serves besides Gradio's own routes: product images by id.

A product's image is fetched as `product-image/<product id>`: the route looks the id up in the
workspace and streams that product's stored image file, nothing else: no folder is ever handed
to Gradio's file route, so the workspace database, the auth file, the catalog and every other
file beside or below the images answer 403/404 whatever the path, encoding or symlink. The file
must still start like an image (JPEG, PNG, GIF, WebP, BMP): a stored path later swapped for
something else is not served. Behind --auth it answers only a logged-in browser, as Gradio's
routes do.

`app_kwargs(ws)` is what `labeler.app.serve` hands to `Blocks.launch(app_kwargs=...)`: FastAPI
routes given there are matched before Gradio's, and the middleware records each request's
client address for login throttling (`labeler.auth`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from starlette.middleware import Middleware

from labeler.auth import ClientAddressMiddleware
from labeler.views import IMAGE_ROUTE
from store.workspace import Workspace

MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
         (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))


def media_type(path: Path) -> str | None:
    """The image type read from the file's first bytes; None for a folder, a missing file or
    anything that does not start like an image."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in MAGIC if head.startswith(magic)), None)


def logged_in(request: Request) -> bool:
    """As Gradio's own `login_check`: no auth configured, or the request carries a login cookie."""
    app = request.app
    if getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None:
        return True
    if getattr(app, "auth_dependency", None) is not None:
        return False        # not used by this app; never guess how an external login works
    tokens = getattr(app, "tokens", {})
    cookie_id = getattr(app, "cookie_id", "")
    token = (request.cookies.get(f"access-token-{cookie_id}")
             or request.cookies.get(f"access-token-unsecure-{cookie_id}"))
    return token is not None and tokens.get(token) is not None


def image_route(ws: Workspace) -> APIRoute:
    """GET product-image/{product_id}: that product's stored image, 404 for anything else."""
    def product_image(product_id: str, request: Request) -> FileResponse:
        if not logged_in(request):
            raise HTTPException(status_code=401, detail="Not authenticated")
        product = ws.product(product_id)
        raw = product.get("image_path") if product else None
        path = Path(raw) if raw else None
        kind = media_type(path) if path is not None else None
        if kind is None:
            raise HTTPException(status_code=404, detail="No image for this product")
        return FileResponse(path, media_type=kind, content_disposition_type="inline",
                            headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})

    return APIRoute(f"/{IMAGE_ROUTE}/{{product_id:path}}", product_image, methods=["GET", "HEAD"],
                    include_in_schema=False)


def app_kwargs(ws: Workspace) -> dict[str, Any]:
    """FastAPI arguments for `Blocks.launch(app_kwargs=...)`: the image route, the address middleware."""
    return {"routes": [image_route(ws)], "middleware": [Middleware(ClientAddressMiddleware)]}
