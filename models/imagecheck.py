"""The one set of rules an image file must pass to be used: the importer and the model's loader both
call `check_image_file`, so an image accepted at import is never dropped later for a rule the
import did not know.

The check reads the file's size from the file system and its format and dimensions from the
header (PIL's `Image.open` is lazy): a 1.5 GB file is refused without reading it. Decoding, when
asked for, streams from the file (JPEGs decoded at a reduced scale), never a copy in memory.

Rules (documented in the README, "Images"):
- at most MAX_FILE_BYTES on disk (50 MiB; catalog photos are tens of kB);
- a raster format PIL reads, in FORMATS;
- at least MIN_SIDE pixels on the short side (smaller carries too little to classify);
- at most MAX_PIXELS pixels (larger are refused before decoding: decompression bombs).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

NO_IMAGE = "product has no image file"
MIN_SIDE = 32
MAX_PIXELS = 64_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024
FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})


class ImageProblem(Exception):
    """An image that cannot be used; the message names the file and what to do."""


class ImageRefused(ImageProblem):
    """A readable image outside the rules (file size, format, dimensions)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about a usable image file."""
    path: Path
    format: str
    width: int
    height: int
    size_bytes: int


def _text_or_none(value: Any) -> str | None:
    """pandas hands missing values over as None, NaN or pd.NA: all mean 'none'."""
    if value is None or not isinstance(value, (str, Path)) or str(value).strip() == "":
        return None
    return str(value)


def existing_file(path: Path | str | None) -> Path:
    """The path of an existing regular file, else `ImageProblem`."""
    if _text_or_none(path) is None:
        raise ImageProblem(NO_IMAGE)
    p = Path(path)  # type: ignore[arg-type]
    if not p.is_file():
        raise ImageProblem(f"image {p} not found; re-import the catalog with the right --images folder")
    return p


def _header_rules(p: Path, img: Image.Image, size_bytes: int) -> ImageInfo:
    if img.format not in FORMATS:
        raise ImageRefused(f"image {p} is in format {img.format}, expected one of {', '.join(sorted(FORMATS))}; "
                           "convert it to JPEG or PNG")
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageRefused(f"image {p} is {w}x{h} pixels, over the {MAX_PIXELS:,}-pixel limit; "
                           "downscale it and re-import")
    if min(w, h) < MIN_SIDE:
        raise ImageRefused(f"image {p} is only {w}x{h} pixels (minimum side {MIN_SIDE}); "
                           "too small to classify, using text only")
    return ImageInfo(p, str(img.format), w, h, size_bytes)


def _decode_error(p: Path, exc: BaseException) -> ImageProblem:
    return ImageProblem(f"image {p} cannot be decoded ({type(exc).__name__}: {exc}); "
                        "replace the file or use text only")


_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def open_checked(path: Path | str | None) -> tuple[Image.Image, ImageInfo]:
    """The lazily opened image (not decoded; the caller closes it) once every header rule passed."""
    p = existing_file(path)
    try:
        size_bytes = p.stat().st_size
    except OSError as exc:
        raise ImageProblem(f"image {p} cannot be read ({exc.strerror or exc}); check its permissions") from exc
    if size_bytes > MAX_FILE_BYTES:
        raise ImageRefused(f"image {p} is {size_bytes / 2**20:,.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB "
                           "file limit; save a smaller copy (a few MB is plenty) and re-import")
    try:
        img = Image.open(p)     # over 89 Mpx PIL only warns: the pixel rule below refuses it anyway
    except _PIL_ERRORS as exc:
        raise _decode_error(p, exc) from exc
    try:
        return img, _header_rules(p, img, size_bytes)
    except BaseException:
        img.close()
        raise


def check_image_file(path: Path | str | None, *, decode: bool = False) -> ImageInfo:
    """`ImageInfo` if the file passes every rule, else `ImageProblem` naming the file and the fix.

    decode=True also decodes it (JPEG at 1/8 scale, streamed from the file), which catches truncated
    and corrupt data the header alone does not show; the loader decodes anyway."""
    img, info = open_checked(path)
    with img:
        if decode:
            try:
                if img.format == "JPEG":
                    img.draft("RGB", (64, 64))
                img.load()
            except _PIL_ERRORS as exc:
                raise _decode_error(info.path, exc) from exc
    return info


def file_sha1(path: Path | str, chunk: int = 1 << 20) -> str:
    """Content hash read in 1 MiB blocks: memory stays flat whatever the file size."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

