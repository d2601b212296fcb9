"""Catalog import: the Rakuten challenge layout and a plain CSV, into a workspace.

One reader per layout, streaming: the file is read, validated, its images checked and its
products staged CHUNK_ROWS (2,048) rows at a time, so an import's memory follows the chunk, not
the catalog (issue 19). `import_challenge` / `import_plain_csv` stage on the workspace's
connection (`store.imports.Staging`: SQLite's temp schema, not the workspace file) and, once the
whole file was read, publish the batch in ONE `Workspace.write` transaction: an interrupted or
failed import never leaves half a batch behind, and the review app's writes are not held up while
a large catalog is read. `read_challenge` / `read_plain_csv` run the same readers with no
workspace and return every valid product (`predict --texts` uses them).

What still grows with the catalog while importing: the problems (one `Problem` per reported row)
and the image folder's index (names only: ~275 bytes per file). Not the X or Y file: their rows,
texts, ids, indexes and labels are either in the chunk or in the staging tables.

What stops an import (raises `CatalogError`, nothing written): a missing or unreadable file, a
CSV that cannot be parsed (also when the bad line comes after many good chunks: they were only
staged), wrong or missing columns, an image folder that does not exist, a Y file whose index
matches none of X's rows.

What is a bad row (reported with file, line, field and reason, stored in `import_problems`, the
row skipped, the rest imported): a product with nothing to predict from (no title, no
description and no usable image), empty or duplicate product id within the file, non-UTF-8
bytes in any field, unknown category code, an X row without a Y row (or a Y row without an X
row, which is ignored), a row with the wrong number of fields.

A product needs a title, a description or an image, not a title: one with only a photo or only
a description is imported (title stored as '') and predicted from what it has (the image model
alone, or its description). The image counts once it passed the checks below, so a row whose
only content is a missing or broken image is refused, naming why.

Long text is kept, capped: a field may be up to 16 MiB in the CSV; a title is stored up to
TITLE_MAX_CHARS (1,000) characters and a description up to DESCRIPTION_MAX_CHARS (20,000), and
each cut is reported (file, line, field, length; the product is imported).

Images, a deliberate choice: in the challenge layout a product's image is looked up as
`image_<imageid>_product_<productid>.jpg` in the folder given with `--images`. A product whose
file is simply not in that folder is NOT a bad row: real catalogs (and the shared sample, where
only 420 of 1,949 products have one) hold many products without images, so it is imported with
`image_path` NULL and only counted in the summary ("no image file"). A file that IS there must
pass the model loader's own rules (`models.imagecheck`: at most 50 MiB, a known format, 32 px to
64 Mpx, read from the header, then a streamed decode that catches corrupt or truncated data,
never the whole file in memory); one that does not is a reported problem and the product is
still imported, without image. The plain CSV names its
image explicitly, so there a named file that does not exist is a reported problem too (product
imported without image); an empty `image` cell is simply a product without image.

Re-importing adds nothing: products whose id is already in the workspace are counted as
"already present" and left untouched (title, label and image included).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

from labeler import taxonomy
from labeler.taxonomy import Taxonomy
from models.imagecheck import ImageProblem, ImageRefused, check_image_file, file_sha1
from models.textclean import has_text
from store import imports
from store.workspace import Workspace

log = logging.getLogger(__name__)
from labeler.domain import Progress  # noqa: E402 (the one progress type)

X_COLUMNS = ("", "designation", "description", "productid", "imageid")
Y_COLUMNS = ("", "prdtypecode")
PLAIN_REQUIRED = ("id", "title")
PLAIN_OPTIONAL = ("description", "image", "label")
IMAGE_NAME = re.compile(r"^image_(\d+)_product_(\d+)\.jpe?g$", re.IGNORECASE)
SURROGATE = re.compile("[\udc80-\udcff]")
# Stored text is capped (the Rakuten sample's longest title is 250 characters, its longest
# description 9,709): a longer value is cut, and the cut reported with file, line and field.
TITLE_MAX_CHARS = 1_000
DESCRIPTION_MAX_CHARS = 20_000
# One CSV field may hold up to 16 MiB (Python's default stops at 128 KiB and aborts the import);
# past that it is most likely an unclosed quote swallowing the rest of the file.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
# Rows read, validated, image-checked and staged at a time: what an import holds in memory.
CHUNK_ROWS = 2048

# Problem kinds: what the summary counts ("skipped by reason").
NOTHING_TO_PREDICT = "no text and no image"
EMPTY_ID = "empty product id"
DUPLICATE_ID = "duplicate id"
NON_UTF8 = "non-UTF-8 bytes"
UNKNOWN_CATEGORY = "unknown category code"
NO_LABEL_ROW = "Y index not matching X"
BAD_FIELD_COUNT = "wrong number of fields"
CORRUPT_IMAGE = "corrupt image"
IMAGE_REFUSED = "image outside the limits"
MISSING_IMAGE = "missing image"
TEXT_TRUNCATED = "text truncated"


class CatalogError(Exception):
    """A catalog file cannot be imported at all; the message names the file and the fix."""


@dataclass(frozen=True)
class Problem:
    """One reported bad row. `line` is where the record starts in the file (header = line 1)."""
    file: str
    line: int | None
    field: str | None
    kind: str
    message: str
    action: str = "skipped"          # 'skipped' | 'imported without image' | 'ignored'

    @property
    def skipped(self) -> bool:
        return self.action == "skipped"

    def __str__(self) -> str:
        where = f"{Path(self.file).name}" + (f" line {self.line}" if self.line else "")
        field_ = f" [{self.field}]" if self.field else ""
        return f"{where}{field_}: {self.message} ({self.action})"


@dataclass
class ProductRecord:
    """A validated product, ready to store or to predict."""
    id: str
    title: str
    description: str
    image_path: str | None
    image_sha1: str | None
    source_label: int | None
    source_row: str | None


@dataclass
class ParsedCatalog:
    """What a set of files holds after validation; nothing written anywhere yet."""
    source: str
    files: list[Path]
    fingerprint: str
    n_rows: int
    products: list[ProductRecord]
    problems: list[Problem]
    n_without_image: int = 0         # no file for the product in the image folder: normal, counted
    notes: list[str] = field(default_factory=list)

    def frame(self):
        """Products as the DataFrame `ModelBundle.predict` expects (id, title, description, image_path)."""
        return products_frame(self.products)


def products_frame(products: list[ProductRecord]):
    """Validated products as the DataFrame `ModelBundle.predict` expects."""
    import pandas as pd
    return pd.DataFrame({
        "id": [p.id for p in products],
        "title": [p.title for p in products],
        "description": [p.description for p in products],
        "image_path": [p.image_path for p in products],
        "image_sha1": [p.image_sha1 for p in products],
        "row": [p.source_row for p in products],
    })


@dataclass
class ImportReport:
    """Counts and problems of one import, for the CLI summary and the app."""
    source: str
    workspace: Path
    batch_id: int
    fingerprint: str
    n_rows: int
    imported: int
    already_present: int
    with_image: int                     # among the imported products
    without_image: int                  # among the imported products (no file, or a bad one)
    problems: list[Problem]
    notes: list[str]
    duration_s: float
    previous_batch: int | None = None   # an earlier batch with the same fingerprint

    @property
    def skipped(self) -> int:
        return sum(p.skipped for p in self.problems)

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems if p.skipped).most_common())

    def other_problems(self) -> dict[str, int]:
        """Reported problems whose row was still imported or harmlessly ignored."""
        return dict(Counter(f"{p.kind} ({p.action})" for p in self.problems if not p.skipped).most_common())


# -- reading CSV files ------------------------------------------------------------------------
class _Counted(io.RawIOBase):
    """A binary file that counts, and may hash, the bytes read through it: the progress of a
    streamed read, and the import fingerprint without reading the file a second time."""

    def __init__(self, path: Path, hasher: Any = None):
        self.fh, self.hasher, self.done = path.open("rb"), hasher, 0
        self.size = os.fstat(self.fh.fileno()).st_size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.fh.readinto(buffer)
        if n:
            self.done += n
            if self.hasher is not None:
                self.hasher.update(memoryview(buffer)[:n])
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()


def _hash_file(h: Any, path: Path) -> None:
    h.update(path.name.encode())
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def _fingerprint(paths: list[Path], extra: str = "") -> str:
    """sha256 of each file's name and bytes, then `extra`: what says "these files were imported"."""
    h = hashlib.sha256()
    for path in paths:
        _hash_file(h, path)
    h.update(extra.encode())
    return h.hexdigest()


def _check_file(path: Path | str, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise CatalogError(f"{what} file {path} not found; check the path")
    if not path.is_file():
        raise CatalogError(f"{what} path {path} is a folder, expected a CSV file")
    return path


def _records(path: Path, hasher: Any = None) -> tuple[list[str], Iterator[tuple[int, list[str]]], _Counted]:
    """Header, (start line, fields) per record, and the byte counter of the file (which feeds
    `hasher` the file's bytes as they are read); undecodable bytes kept as surrogates."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    if hasher is not None:
        hasher.update(path.name.encode())
    raw = _Counted(path, hasher)
    fh = io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding="utf-8-sig", errors="surrogateescape",
                          newline="")
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        fh.close()
        raise CatalogError(f"{path} is empty; expected a header row") from None
    except csv.Error as exc:
        fh.close()
        raise CatalogError(f"{path} line 1 is not valid CSV ({exc})") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        try:
            for fields in reader:
                if fields:                      # blank lines carry no product
                    yield start, fields
                start = reader.line_num + 1
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise CatalogError(f"{path} line {start}: a field is over {CSV_FIELD_LIMIT // 2**20} MiB, most "
                                   "likely an unclosed quote; check the quoting from that line on") from None
            raise CatalogError(f"{path} line {start} is not valid CSV ({exc}); fix or remove that line") from None
        finally:
            fh.close()

    return [h.strip() for h in header], rows(), raw


def _require_columns(path: Path, header: list[str], expected: tuple[str, ...], layout: str,
                     optional: tuple[str, ...] = ()) -> dict[str, int]:
    """Column name -> position; one clear message naming found and expected columns otherwise."""
    if SURROGATE.search("".join(header)):
        raise CatalogError(f"{path}: the header is not UTF-8 text; re-save the file as UTF-8")
    found = [h if h else "<unnamed index>" for h in header]
    names = [h.lower() for h in header]
    missing = [c for c in expected if c.lower() not in names]
    if missing or len(set(names)) != len(names):
        shown = [c if c else "<unnamed index>" for c in expected]
        want = ", ".join(shown) + (f" (optional: {', '.join(optional)})" if optional else "")
        problem = (f"missing {', '.join(c if c else '<unnamed index>' for c in missing)}" if missing
                   else "duplicate column names")
        raise CatalogError(f"{path} does not look like {layout}: {problem}; found columns "
                           f"[{', '.join(found)}], expected [{want}]")
    return {c: names.index(c.lower()) for c in (*expected, *optional) if c.lower() in names}


def _non_utf8(file: str, line: int, values: dict[str, str]) -> Problem | None:
    for name, value in values.items():
        m = SURROGATE.search(value)
        if m:
            byte = ord(m.group()) - 0xDC00
            context = value[max(0, m.start() - 15):m.start()].encode("utf-8", "replace").decode()
            return Problem(file, line, name or "index", NON_UTF8,
                           f"non-UTF-8 byte 0x{byte:02X} after {context!r}; re-save the file as UTF-8")
    return None


def _rows(file: str, header: list[str], rows: Iterator[tuple[int, list[str]]], cols: dict[str, int],
          problems: list[Problem]) -> Iterator[tuple[int, dict[str, str] | None, bool]]:
    """(line, {column: value}, ok) per record; a wrong field count or non-UTF-8 bytes is reported
    and yields ok=False (with the values when they could be split, so the index is still known)."""
    width = len(header)
    for line, fields in rows:
        if len(fields) != width:
            problems.append(Problem(file, line, None, BAD_FIELD_COUNT,
                                    f"{len(fields)} fields, expected {width}; check quoting on that line"))
            yield line, None, False
            continue
        value = {c: fields[i] for c, i in cols.items()}
        bad = _non_utf8(file, line, value) if SURROGATE.search("".join(fields)) else None   # one scan a row
        if bad:
            problems.append(bad)
        yield line, value, bad is None


def _capped(file: str, line: int, field_: str, pid: str, text: str, limit: int, problems: list[Problem]) -> str:
    """`text`, cut to `limit` characters; a cut is reported (file, line, field, length)."""
    if len(text) <= limit:
        return text
    problems.append(Problem(file, line, field_, TEXT_TRUNCATED,
                            f"product {pid}: {field_} is {len(text):,} characters, stored the first {limit:,}",
                            "imported, truncated"))
    return text[:limit]


def _parse_code(value: str, tax: Taxonomy) -> int | None:
    """The key of a known category code ('toys'; '2583.0', a Y file saved from floats, is 2583)."""
    return tax.parse(value.strip())


def _label_rows(path: Path, tax: Taxonomy, problems: list[Problem]
                ) -> Iterator[tuple[str, int | None, int, str]]:
    """(index, category key or None if unknown, line, raw value) per readable Y row; a row with
    the wrong number of fields or non-UTF-8 bytes is reported in `problems` and ignored."""
    header, rows, _ = _records(path)
    cols = _require_columns(path, header, Y_COLUMNS, "a Rakuten Y file")
    file = str(path)
    codes: dict[str, int | None] = {}          # a Y file holds a few distinct codes: each parsed once

    def valid() -> Iterator[tuple[str, int | None, int, str]]:
        for line, fields in rows:
            if len(fields) != len(header):
                problems.append(Problem(file, line, None, BAD_FIELD_COUNT,
                                        f"{len(fields)} fields, expected {len(header)}", "ignored"))
                continue
            index, raw = fields[cols[""]].strip(), fields[cols["prdtypecode"]]
            bad = _non_utf8(file, line, {"": index, "prdtypecode": raw}) if SURROGATE.search(index + raw) else None
            if bad:
                problems.append(Problem(bad.file, bad.line, bad.field, bad.kind, bad.message, "ignored"))
                continue
            code = raw.strip()
            if code in codes:
                label = codes[code]
            else:
                label = _parse_code(code, tax)
                if len(codes) < 10_000:        # bounded, whatever a broken file holds
                    codes[code] = label
            yield index, label, line, code
    return valid()


def _duplicate_label(file: str, line: int, index: str, first: int) -> Problem:
    return Problem(file, line, "index", DUPLICATE_ID, f"index {index} already labelled at line {first}", "ignored")


def read_labels(path: Path | str, tax: Taxonomy | None = None) -> tuple[dict[str, tuple[int | None, int, str]], list[Problem]]:
    """Y file -> {index: (category key or None if unknown, line, raw value)} and its row problems;
    codes are read in `tax` (default: the Rakuten taxonomy). Held whole: what `evaluate` joins
    predictions with (an import stages its Y file instead, `_stage_labels`)."""
    path = _check_file(path, "labels (Y)")
    problems: list[Problem] = []
    labels: dict[str, tuple[int | None, int, str]] = {}
    for index, label, line, raw in _label_rows(path, tax or taxonomy.default(), problems):
        if index in labels:
            problems.append(_duplicate_label(str(path), line, index, labels[index][1]))
        else:
            labels[index] = (label, line, raw)
    return labels, problems


def _stage_labels(path: Path, tax: Taxonomy, staging: imports.Staging, chunk_rows: int) -> list[Problem]:
    """The Y file's rows staged beside the X rows (`Staging.labels`), a chunk at a time, so an
    import holds no entry per Y row either; returns its row problems."""
    problems: list[Problem] = []
    for part in _chunked(_label_rows(path, tax, problems), chunk_rows):
        earlier = staging.labels([index for index, _, _, _ in part])
        seen: dict[str, int] = {}
        rows = []
        for index, label, line, raw in part:
            first = seen.get(index) or (earlier[index][1] if index in earlier else None)
            if first:
                problems.append(_duplicate_label(str(path), line, index, first))
                continue
            seen[index] = line
            rows.append((index, label, line, raw))
        staging.add_labels(rows)
    return problems


# -- images -----------------------------------------------------------------------------------
def _image_index(folder: Path) -> dict[tuple[str, str], str]:
    """(imageid, productid) -> file name in `folder` (the resolved target for a symbolic link),
    from one directory listing: no stat and no Path object per file."""
    index = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            m = IMAGE_NAME.match(entry.name)
            if m and entry.is_file():
                index[(m.group(1), m.group(2))] = (str(Path(entry.path).resolve()) if entry.is_symlink()
                                                   else entry.name)
    if not index:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir()
                            and any(IMAGE_NAME.match(f.name) for f in p.iterdir()))
        if subfolders:
            raise CatalogError(f"image folder {folder} holds no image_<imageid>_product_<productid>.jpg "
                               f"files, but its subfolders {', '.join(subfolders)} do; pass one of them "
                               f"(e.g. --images {folder / subfolders[0]})")
    return index


def check_image(path: Path) -> tuple[str | None, str | None, str | None]:
    """(sha1, None, None) for an image the model's loader will use, else (None, kind, reason).

    The loader's own rules (`models.imagecheck`: file size, format, dimensions from the header,
    then a streamed decode); the hash reads 1 MiB blocks. Nothing is held whole in memory."""
    try:
        check_image_file(path, decode=True)
        return file_sha1(path), None, None
    except ImageRefused as exc:
        return None, IMAGE_REFUSED, str(exc)
    except ImageProblem as exc:
        return None, CORRUPT_IMAGE, str(exc)
    except OSError as exc:
        return None, CORRUPT_IMAGE, f"cannot read {path} ({exc.strerror or exc})"


Found = tuple[ProductRecord, int, "str | None", "Path | None"]     # product, line, X index as read, image file


def _attach_images(found: list[Found], file: str, problems: list[Problem], checker: "_Checker",
                   kind_missing: str | None, skip: set[str]) -> None:
    """Verify each product's image file; a bad file is reported and the product kept without image.

    Products in `skip` (already in the workspace, so never written again) are not checked."""
    wanted = [(rec, line, path) for rec, line, _, path in found if path is not None and rec.id not in skip]
    present = [(rec, line, path) for rec, line, path in wanted if path.is_file()]
    if kind_missing:
        for rec, line, path in wanted:
            if not path.is_file():
                problems.append(Problem(file, line, "image", kind_missing, f"image file {path} not found",
                                        "imported without image"))
    for (rec, line, path), (sha1, kind, reason) in zip(present, checker([p for _, _, p in present])):
        if sha1 is None:
            problems.append(Problem(file, line, "image", kind or CORRUPT_IMAGE, reason or "unreadable image",
                                    "imported without image"))
        else:
            rec.image_path, rec.image_sha1 = str(path), sha1


def _refuse_empty(found: list[Found], file: str, problems: list[Problem], title_field: str, skip: set[str],
                  no_image: str) -> tuple[list[Found], list[Found]]:
    """(kept, refused): kept have something to predict from: a title, a description or an image
    that passed its checks. A refused row is reported once, on its title field, saying why its
    image did not count (its image problem in `problems`, reported as "imported without image",
    is folded in) and what to give it. Products in `skip` are already stored, never written
    again: kept."""
    kept: list[Found] = []
    refused: list[Found] = []
    image_problems = {p.line: p for p in problems if p.field == "image"} if problems else {}
    for item in found:
        rec, line, _, path = item
        if rec.id in skip or rec.image_path is not None or has_text(rec.title, rec.description):
            kept.append(item)
            continue
        refused.append(item)
        image_problem = image_problems.get(line)
        if image_problem is not None:
            problems.remove(image_problem)
            why = image_problem.message
        else:
            why = no_image if path is None else f"image file {path} not found"
        problems.append(Problem(file, line, title_field, NOTHING_TO_PREDICT,
                                f"product {rec.id}: no {title_field}, no description and no usable image ({why}); "
                                f"give it a {title_field}, a description or an image file"))
    return kept, refused


class _Checker:
    """Image checks on a few threads (decoding releases the GIL), the pool started at the first
    image and kept for every chunk of the import; progress is told how many are done."""

    def __init__(self, tell: Callable[[int], None]):
        self.pool: ThreadPoolExecutor | None = None
        self.done, self.tell = 0, tell

    def __call__(self, paths: list[Path]) -> list[tuple[str | None, str | None, str | None]]:
        if not paths:
            return []
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        out = []
        for result in self.pool.map(check_image, paths):
            out.append(result)
            self.done += 1
            if self.done % 64 == 0:
                self.tell(self.done)
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


# -- the two layouts, read a chunk at a time ----------------------------------------------------
def _noop(fraction: float, desc: str) -> None:
    log.debug("%3.0f%% %s", 100 * fraction, desc)


@dataclass
class _Reading:
    """An import being read: the files, and what the chunks read so far found."""
    source: str
    files: list[Path]
    notes: list[str]
    problems: list[Problem]
    n_rows: int = 0
    n_without_image: int = 0
    fingerprint: str = ""


Chunks = Iterator[list[tuple[ProductRecord, bool]]]     # per chunk: (kept product, already stored)


def _chunked(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while True:
        part = list(islice(items, size))
        if not part:
            return
        yield part


def _in_file_order(row_problems: list[Problem], more: list[tuple[int, Problem]]) -> list[Problem]:
    """A chunk's problems in the order of its X lines (a Y file's problem goes where its X row is)."""
    if not more:
        return row_problems
    return [p for _, p in sorted([(p.line or 0, p) for p in row_problems] + more, key=lambda t: t[0])]


def _finish_chunk(reading: _Reading, found: list[Found], file: str, problems: list[Problem],
                  staging: imports.Staging, checker: _Checker, *, kind_missing: str | None, title_field: str,
                  no_image: str, count_without_image: bool) -> list[tuple[ProductRecord, bool]]:
    """Images checked, empty products refused, the chunk staged; its (product, already stored) kept."""
    stored = staging.stored([rec.id for rec, _, _, _ in found])
    chunk_problems: list[Problem] = []
    _attach_images(found, file, chunk_problems, checker, kind_missing, stored)
    kept, refused = _refuse_empty(found, file, chunk_problems, title_field, stored, no_image)
    problems.extend(chunk_problems)
    if count_without_image:
        reading.n_without_image += sum(path is None for _, _, _, path in kept)
    staging.add([(rec, idx, line, imports.STORED if rec.id in stored else imports.NEW) for rec, line, idx, _ in kept]
                + [(rec, idx, line, imports.REFUSED) for rec, line, idx, _ in refused])
    return [(rec, rec.id in stored) for rec, _, _, _ in kept]


def _progress(progress: Progress, raw: _Counted, what: str) -> Callable[[int, int], None]:
    def tell(rows: int, images: int) -> None:
        progress(0.95 * raw.done / max(1, raw.size),
                 f"reading {what}: {rows} rows" + (f", {images} images checked" if images else ""))
    return tell


def _challenge(texts: Path | str, labels: Path | str | None, images: Path | str | None, *, tax: Taxonomy,
               staging: imports.Staging, progress: Progress, chunk_rows: int
               ) -> tuple[_Reading, Iterator[list[tuple[ProductRecord, bool]]]]:
    """The files checked (a `CatalogError` now, before any row is read, for a missing file or a
    wrong column), then the X file's rows a chunk at a time, each chunk validated, its images
    checked and staged, yielding its kept products; `_Reading` is complete once it is exhausted
    (Y rows without an X row reported; a Y file matching no X index raises `CatalogError`)."""
    x_path = _check_file(texts, "texts (X)")
    y_path = _check_file(labels, "labels (Y)") if labels is not None else None
    image_dir = None
    if images is not None:
        image_dir = Path(images).resolve()
        if not image_dir.is_dir():
            raise CatalogError(f"image folder {images} not found; pass the folder holding "
                               "image_<imageid>_product_<productid>.jpg files")
    hasher = hashlib.sha256()
    header, rows, raw = _records(x_path, hasher)
    cols = _require_columns(x_path, header, X_COLUMNS, "a Rakuten X file")
    problems = _stage_labels(y_path, tax, staging, chunk_rows) if y_path else []
    image_index = _image_index(image_dir) if image_dir else {}
    source = f"{x_path}" + (f" + {y_path}" if y_path else "") + (f" + images {image_dir}" if image_dir else "")
    notes = [] if image_dir else ["no image folder given: products imported without images (--images DIR)"]
    reading = _Reading(source, [x_path] + ([y_path] if y_path else []), notes, problems)
    no_image = (f"no image_<imageid>_product_<productid>.jpg for it in {image_dir}" if image_dir
                else "no image folder given: --images DIR")
    file = str(x_path)
    tell = _progress(progress, raw, x_path.name)
    checker = _Checker(lambda n: tell(reading.n_rows, n))

    def chunks() -> Iterator[list[tuple[ProductRecord, bool]]]:
        saw_index = False
        row_problems: list[Problem] = []   # a chunk's wrong field counts and non-UTF-8 bytes
        progress(0.0, f"reading {x_path.name}")
        try:
            for part in _chunked(_rows(file, header, rows, cols, row_problems), chunk_rows):
                reading.n_rows += len(part)
                candidates = []
                indexes = []
                for line, value, ok in part:
                    if value is None:
                        continue
                    index = value[""].strip()
                    indexes.append(index)
                    if ok:
                        candidates.append((line, index, value))
                saw_index = saw_index or bool(indexes)
                y_labels = staging.labels(indexes, match=True) if y_path is not None else {}
                earlier_id, earlier_index = staging.seen([v["productid"].strip() for _, _, v in candidates],
                                                         [i for _, i, _ in candidates])
                seen_index: dict[str, int] = {}
                seen_id: dict[str, int] = {}
                more: list[tuple[int, Problem]] = []
                found: list[Found] = []
                for line, index, value in candidates:
                    pid = value["productid"].strip()
                    at = f"index {index}" if index else "row"
                    if not pid:
                        more.append((line, Problem(file, line, "productid", EMPTY_ID, f"{at}: empty productid")))
                        continue
                    first = seen_index.get(index) or earlier_index.get(index)
                    if first:
                        more.append((line, Problem(file, line, "index", DUPLICATE_ID,
                                                   f"index {index} already used at line {first}")))
                        continue
                    first = seen_id.get(pid) or earlier_id.get(pid)
                    if first:
                        more.append((line, Problem(file, line, "productid", DUPLICATE_ID,
                                                   f"{at}: productid {pid} already at line {first}")))
                        continue
                    label = None
                    if y_path is not None:
                        if index not in y_labels:
                            more.append((line, Problem(file, line, "index", NO_LABEL_ROW,
                                                       f"index {index} (product {pid}) has no row in {y_path.name}")))
                            continue
                        label, y_line, code = y_labels[index]
                        if label is None:
                            more.append((line, Problem(str(y_path), y_line, "prdtypecode", UNKNOWN_CATEGORY,
                                                       f"index {index} (product {pid}): {code!r} is not one of the "
                                                       f"{len(tax)} category codes")))
                            continue
                    seen_index[index], seen_id[pid] = line, line
                    image = None
                    if image_dir is not None:
                        name = image_index.get((value["imageid"].strip(), pid))
                        image = None if name is None else image_dir / name
                    cut: list[Problem] = []
                    title = _capped(file, line, "designation", pid, value["designation"].strip(), TITLE_MAX_CHARS, cut)
                    description = _capped(file, line, "description", pid, value["description"],
                                          DESCRIPTION_MAX_CHARS, cut)
                    more += [(line, p) for p in cut]
                    found.append((ProductRecord(pid, title, description, None, None, label, index or None),
                                  line, index, image))
                problems.extend(_in_file_order(row_problems, more))
                row_problems.clear()
                yield _finish_chunk(reading, found, file, problems, staging, checker, kind_missing=None,
                                    title_field="designation", no_image=no_image,
                                    count_without_image=image_dir is not None)
                tell(reading.n_rows, checker.done)
        finally:
            checker.close()
        if y_path is not None:
            if saw_index and not staging.any_label_matched():
                raise CatalogError(f"no index of {y_path.name} matches {x_path.name} ({reading.n_rows} rows): "
                                   "is the Y file from the same split as the X file?")
            for index, y_line in staging.unmatched_labels():
                problems.append(Problem(str(y_path), y_line, "index", NO_LABEL_ROW,
                                        f"index {index} has no row in {x_path.name}", "ignored"))
            _hash_file(hasher, y_path)
        hasher.update(str(image_dir or "").encode())
        reading.fingerprint = (hasher.hexdigest() if raw.done == raw.size
                               else _fingerprint(reading.files, str(image_dir or "")))
        progress(0.95, f"read {reading.n_rows} rows")

    return reading, chunks()


def _plain(path: Path | str, *, tax: Taxonomy, staging: imports.Staging, progress: Progress, chunk_rows: int
           ) -> tuple[_Reading, Iterator[list[tuple[ProductRecord, bool]]]]:
    """A plain CSV (id, title, and optional description, image, label) read as `_challenge`
    reads an X file: checked first, then a chunk at a time."""
    path = _check_file(path, "catalog CSV")
    hasher = hashlib.sha256()
    header, rows, raw = _records(path, hasher)
    cols = _require_columns(path, header, PLAIN_REQUIRED, "a plain catalog CSV", PLAIN_OPTIONAL)
    folder = path.resolve().parent
    file = str(path)
    ignored = [h for h in header if h and h.lower() not in (*PLAIN_REQUIRED, *PLAIN_OPTIONAL)]
    reading = _Reading(str(path), [path], [f"ignored columns: {', '.join(ignored)}"] if ignored else [], [])
    tell = _progress(progress, raw, path.name)
    checker = _Checker(lambda n: tell(reading.n_rows, n))

    def chunks() -> Iterator[list[tuple[ProductRecord, bool]]]:
        problems = reading.problems
        row_problems: list[Problem] = []
        progress(0.0, f"reading {path.name}")
        try:
            for part in _chunked(_rows(file, header, rows, cols, row_problems), chunk_rows):
                reading.n_rows += len(part)
                candidates = [(line, value) for line, value, ok in part if ok]
                earlier, _ = staging.seen([v["id"].strip() for _, v in candidates])
                seen: dict[str, int] = {}
                more: list[tuple[int, Problem]] = []
                found: list[Found] = []
                for line, value in candidates:
                    pid = value["id"].strip()
                    if not pid:
                        more.append((line, Problem(file, line, "id", EMPTY_ID, "empty id")))
                        continue
                    first = seen.get(pid) or earlier.get(pid)
                    if first:
                        more.append((line, Problem(file, line, "id", DUPLICATE_ID,
                                                   f"id {pid} already at line {first}")))
                        continue
                    raw_label = value.get("label", "").strip()
                    label = _parse_code(raw_label, tax) if raw_label else None
                    if raw_label and label is None:
                        more.append((line, Problem(file, line, "label", UNKNOWN_CATEGORY,
                                                   f"product {pid}: {raw_label!r} is not one of the "
                                                   f"{len(tax)} category codes")))
                        continue
                    seen[pid] = line
                    image = value.get("image", "").strip()
                    image_path = (folder / image).resolve() if image else None
                    cut: list[Problem] = []
                    title = _capped(file, line, "title", pid, value["title"].strip(), TITLE_MAX_CHARS, cut)
                    description = _capped(file, line, "description", pid, value.get("description", ""),
                                          DESCRIPTION_MAX_CHARS, cut)
                    more += [(line, p) for p in cut]
                    found.append((ProductRecord(pid, title, description, None, None, label, None), line, None,
                                  image_path))
                problems.extend(_in_file_order(row_problems, more))
                row_problems.clear()
                yield _finish_chunk(reading, found, file, problems, staging, checker, kind_missing=MISSING_IMAGE,
                                    title_field="title", no_image="empty image cell", count_without_image=True)
                tell(reading.n_rows, checker.done)
        finally:
            checker.close()
        reading.fingerprint = hasher.hexdigest() if raw.done == raw.size else _fingerprint([path])
        progress(0.95, f"read {reading.n_rows} rows")

    return reading, chunks()


# -- parse only, or import --------------------------------------------------------------------
def _parsed(reading: _Reading, products: list[ProductRecord]) -> ParsedCatalog:
    return ParsedCatalog(reading.source, reading.files, reading.fingerprint, reading.n_rows, products,
                         reading.problems, reading.n_without_image, reading.notes)


@contextlib.contextmanager
def _streamed(open_: Callable[[imports.Staging], tuple[_Reading, Chunks]]
              ) -> Iterator[tuple[_Reading, Iterator[list[ProductRecord]]]]:
    """A layout's kept products a chunk at a time, staged on a scratch database (what checks
    duplicate ids across chunks) that lives as long as the block."""
    conn = imports.scratch()
    try:
        with imports.Staging(conn, workspace=False) as staging:
            reading, chunks = open_(staging)
            yield reading, ([rec for rec, _ in chunk] for chunk in chunks)
    finally:
        conn.close()


def _parse(open_: Callable[[imports.Staging], tuple[_Reading, Chunks]]) -> ParsedCatalog:
    """Every kept product of a layout's chunks in one list."""
    with _streamed(open_) as (reading, chunks):
        products = [rec for chunk in chunks for rec in chunk]
    return _parsed(reading, products)


def read_challenge(texts: Path | str, labels: Path | str | None = None, images: Path | str | None = None,
                   *, progress: Progress | None = None, tax: Taxonomy | None = None,
                   chunk_rows: int = CHUNK_ROWS) -> ParsedCatalog:
    """Validate an X file (with optional Y file and image folder) in the Rakuten challenge layout,
    writing nothing; label codes are read in `tax`, the workspace's taxonomy (default: Rakuten's).
    Every valid product is returned: this is what `predict --texts` reads, not what `import` does
    (`import_challenge` streams)."""
    return _parse(lambda staging: _challenge(texts, labels, images, tax=tax or taxonomy.default(), staging=staging,
                                             progress=progress or _noop, chunk_rows=chunk_rows))


def stream_challenge(texts: Path | str, images: Path | str | None = None, *, progress: Progress | None = None,
                     tax: Taxonomy | None = None, chunk_rows: int = CHUNK_ROWS
                     ) -> contextlib.AbstractContextManager[tuple[_Reading, Iterator[list[ProductRecord]]]]:
    """`read_challenge` of an X file a chunk of valid products at a time, for a caller that is
    done with each chunk before the next is read (`predict --texts`: memory follows the chunk,
    not the file). The reading's `problems` and counts are whole once the chunks are exhausted."""
    return _streamed(lambda staging: _challenge(texts, None, images, tax=tax or taxonomy.default(), staging=staging,
                                                progress=progress or _noop, chunk_rows=chunk_rows))


def read_plain_csv(path: Path | str, *, progress: Progress | None = None, tax: Taxonomy | None = None,
                   chunk_rows: int = CHUNK_ROWS) -> ParsedCatalog:
    """Validate a plain CSV: id, title, and optional description, image (relative to the CSV's
    folder, or absolute) and label (a category code, empty for unlabelled); writes nothing."""
    return _parse(lambda staging: _plain(path, tax=tax or taxonomy.default(), staging=staging,
                                         progress=progress or _noop, chunk_rows=chunk_rows))


def _import(ws: Workspace, open_: Callable[[imports.Staging], tuple[_Reading, Chunks]],
            progress: Progress | None) -> ImportReport:
    """Read a catalog a chunk at a time into staging (its images checked against the products
    already stored, one chunk in memory), then publish it as one batch in ONE transaction."""
    progress = progress or _noop
    started = time.perf_counter()
    if ws.read_only:            # the one-line refusal any write gives, before a row is read
        ws.write(lambda conn: None)
    with imports.Staging(ws.conn, workspace=True) as staging:
        reading, chunks = open_(staging)
        for _ in chunks:
            pass
        previous = imports.first_batch_with(ws, reading.fingerprint)
        problems = [imports.Problem(p.file, None if p.line is None else str(p.line), p.field,
                                    f"{p.kind}: {p.message} ({p.action})") for p in reading.problems]
        batch, kept, imported, with_image = imports.publish(
            ws, staging, source=reading.source, fingerprint=reading.fingerprint, n_rows=reading.n_rows,
            n_skipped=sum(p.skipped for p in reading.problems), problems=problems,
            progress=lambda done, total: progress(0.95 + 0.05 * done / total, f"writing {done}/{total}"))
    progress(1.0, f"imported {imported} products")
    log.info("batch %s: %s imported, %s already present, %s problems", batch, imported, kept - imported,
             len(reading.problems))
    return ImportReport(reading.source, ws.root, batch, reading.fingerprint, reading.n_rows, imported,
                        kept - imported, with_image, imported - with_image, reading.problems, reading.notes,
                        round(time.perf_counter() - started, 3), previous)


def import_challenge(ws: Workspace, texts: Path | str, labels: Path | str | None = None,
                     images: Path | str | None = None, *, progress: Progress | None = None,
                     chunk_rows: int = CHUNK_ROWS) -> ImportReport:
    """Import X (+ optional Y and image folder) in the Rakuten challenge layout."""
    return _import(ws, lambda staging: _challenge(texts, labels, images, tax=taxonomy.of(ws), staging=staging,
                                                  progress=progress or _noop, chunk_rows=chunk_rows), progress)


def import_plain_csv(ws: Workspace, path: Path | str, *, progress: Progress | None = None,
                     chunk_rows: int = CHUNK_ROWS) -> ImportReport:
    """Import a plain CSV (id, title, description, image, label)."""
    return _import(ws, lambda staging: _plain(path, tax=taxonomy.of(ws), staging=staging,
                                              progress=progress or _noop, chunk_rows=chunk_rows), progress)
