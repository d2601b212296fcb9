"""Catalog import: the Rakuten challenge layout and a plain CSV, into a workspace.

Two layers. `read_challenge` / `read_plain_csv` parse and validate files without touching a
workspace (the CLI's `predict` uses them too); `import_challenge` / `import_plain_csv` write what
they parsed into one import batch, in ONE `Workspace.write` transaction, so an interrupted or
failed import never leaves half a batch behind.

What stops an import (raises `CatalogError`, nothing written): a missing or unreadable file, a
CSV that cannot be parsed, wrong or missing columns, an image folder that does not exist, a Y
file whose index matches none of X's rows.

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

import csv
import hashlib
import logging
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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
        import pandas as pd
        return pd.DataFrame({
            "id": [p.id for p in self.products],
            "title": [p.title for p in self.products],
            "description": [p.description for p in self.products],
            "image_path": [p.image_path for p in self.products],
            "image_sha1": [p.image_sha1 for p in self.products],
            "row": [p.source_row for p in self.products],
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
def _fingerprint(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    h.update(extra.encode())
    return h.hexdigest()


def _check_file(path: Path | str, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise CatalogError(f"{what} file {path} not found; check the path")
    if not path.is_file():
        raise CatalogError(f"{what} path {path} is a folder, expected a CSV file")
    return path


def _records(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and (start line, fields) per record; undecodable bytes kept as surrogates."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    fh = path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
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

    return [h.strip() for h in header], rows()


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
    for line, fields in rows:
        if len(fields) != len(header):
            problems.append(Problem(file, line, None, BAD_FIELD_COUNT,
                                    f"{len(fields)} fields, expected {len(header)}; check quoting on that line"))
            yield line, None, False
            continue
        value = {c: fields[i] for c, i in cols.items()}
        bad = _non_utf8(file, line, value)
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


def read_labels(path: Path | str, tax: Taxonomy | None = None) -> tuple[dict[str, tuple[int | None, int, str]], list[Problem]]:
    """Y file -> {index: (category key or None if unknown, line, raw value)} and its row problems;
    codes are read in `tax` (default: the Rakuten taxonomy)."""
    tax = tax or taxonomy.default()
    path = _check_file(path, "labels (Y)")
    header, rows = _records(path)
    cols = _require_columns(path, header, Y_COLUMNS, "a Rakuten Y file")
    labels: dict[str, tuple[int | None, int, str]] = {}
    problems: list[Problem] = []
    file = str(path)
    for line, fields in rows:
        if len(fields) != len(header):
            problems.append(Problem(file, line, None, BAD_FIELD_COUNT,
                                    f"{len(fields)} fields, expected {len(header)}", "ignored"))
            continue
        index, raw = fields[cols[""]].strip(), fields[cols["prdtypecode"]]
        bad = _non_utf8(file, line, {"": index, "prdtypecode": raw})
        if bad:
            problems.append(Problem(bad.file, bad.line, bad.field, bad.kind, bad.message, "ignored"))
            continue
        if index in labels:
            problems.append(Problem(file, line, "index", DUPLICATE_ID,
                                    f"index {index} already labelled at line {labels[index][1]}", "ignored"))
            continue
        labels[index] = (_parse_code(raw, tax), line, raw.strip())
    return labels, problems


# -- images -----------------------------------------------------------------------------------
def _image_index(folder: Path) -> dict[tuple[str, str], Path]:
    """(imageid, productid) -> file, from one directory listing (no stat per product)."""
    index = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            m = IMAGE_NAME.match(entry.name)
            if m and entry.is_file():
                index[(m.group(1), m.group(2))] = Path(entry.path).resolve()
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


def _check_images(paths: list[Path], progress: Progress, start: float, span: float
                  ) -> list[tuple[str | None, str | None, str | None]]:
    if not paths:
        return []
    out: list[tuple[str | None, str | None, str | None]] = []
    step = max(1, len(paths) // 50)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for i, result in enumerate(pool.map(check_image, paths), 1):
            out.append(result)
            if i % step == 0 or i == len(paths):
                progress(start + span * i / len(paths), f"checking images {i}/{len(paths)}")
    return out


def _attach_images(products: list[tuple[ProductRecord, int, Path | None]], file: str, problems: list[Problem],
                   progress: Progress, kind_missing: str | None, skip: frozenset[str] | set[str]) -> None:
    """Verify each product's image file; a bad file is reported and the product kept without image.

    Products in `skip` (already in the workspace, so never written again) are not checked."""
    wanted = [(rec, line, path) for rec, line, path in products if path is not None and rec.id not in skip]
    present = [(rec, line, path) for rec, line, path in wanted if path.is_file()]
    if kind_missing:
        for rec, line, path in wanted:
            if not path.is_file():
                problems.append(Problem(file, line, "image", kind_missing, f"image file {path} not found",
                                        "imported without image"))
    checked = _check_images([p for _, _, p in present], progress, 0.3, 0.65)
    for (rec, line, path), (sha1, kind, reason) in zip(present, checked):
        if sha1 is None:
            problems.append(Problem(file, line, "image", kind or CORRUPT_IMAGE, reason or "unreadable image",
                                    "imported without image"))
        else:
            rec.image_path, rec.image_sha1 = str(path), sha1


def _refuse_empty(found: list[tuple[ProductRecord, int, Path | None]], file: str, problems: list[Problem],
                  title_field: str, skip: frozenset[str] | set[str], no_image: str
                  ) -> list[tuple[ProductRecord, int, Path | None]]:
    """The products with something to predict from: a title, a description or an image that
    passed its checks. A refused row is reported once, on its title field, saying why its image
    did not count (its image problem, reported above as "imported without image", is folded in)
    and what to give it. Products in `skip` are already stored, never written again: kept."""
    kept: list[tuple[ProductRecord, int, Path | None]] = []
    for rec, line, path in found:
        if rec.id in skip or rec.image_path is not None or has_text(rec.title, rec.description):
            kept.append((rec, line, path))
            continue
        image_problems = [p for p in problems if p.file == file and p.line == line and p.field == "image"]
        for p in image_problems:
            problems.remove(p)
        if image_problems:
            why = image_problems[0].message
        else:
            why = no_image if path is None else f"image file {path} not found"
        problems.append(Problem(file, line, title_field, NOTHING_TO_PREDICT,
                                f"product {rec.id}: no {title_field}, no description and no usable image ({why}); "
                                f"give it a {title_field}, a description or an image file"))
    return kept


# -- the two layouts --------------------------------------------------------------------------
def _noop(fraction: float, desc: str) -> None:
    log.debug("%3.0f%% %s", 100 * fraction, desc)


def read_challenge(texts: Path | str, labels: Path | str | None = None, images: Path | str | None = None,
                   *, progress: Progress | None = None, known_ids: frozenset[str] | set[str] = frozenset(),
                   tax: Taxonomy | None = None) -> ParsedCatalog:
    """Validate an X file (with optional Y file and image folder) in the Rakuten challenge layout;
    label codes are read in `tax`, the workspace's taxonomy (default: Rakuten's).

    `known_ids`: products already stored; their images are not verified again (a re-import of a
    large catalog then costs seconds, not minutes)."""
    progress = progress or _noop
    x_path = _check_file(texts, "texts (X)")
    y_path = _check_file(labels, "labels (Y)") if labels is not None else None
    image_dir = None
    if images is not None:
        image_dir = Path(images).resolve()
        if not image_dir.is_dir():
            raise CatalogError(f"image folder {images} not found; pass the folder holding "
                               "image_<imageid>_product_<productid>.jpg files")
    header, rows = _records(x_path)
    cols = _require_columns(x_path, header, X_COLUMNS, "a Rakuten X file")
    tax = tax or taxonomy.default()
    y_labels, problems = read_labels(y_path, tax) if y_path else ({}, [])
    image_index = _image_index(image_dir) if image_dir else {}
    progress(0.02, f"reading {x_path.name}")

    file = str(x_path)
    seen_index: dict[str, int] = {}
    seen_id: dict[str, int] = {}
    all_index: set[str] = set()
    found: list[tuple[ProductRecord, int, Path | None]] = []
    n_rows = 0
    for line, value, ok in _rows(file, header, rows, cols, problems):
        n_rows += 1
        if value is not None:
            all_index.add(value[""].strip())
        if not ok:
            continue
        index, pid = value[""].strip(), value["productid"].strip()
        at = f"index {index}" if index else "row"
        if not pid:
            problems.append(Problem(file, line, "productid", EMPTY_ID, f"{at}: empty productid")); continue
        if index in seen_index:
            problems.append(Problem(file, line, "index", DUPLICATE_ID,
                                    f"index {index} already used at line {seen_index[index]}")); continue
        if pid in seen_id:
            problems.append(Problem(file, line, "productid", DUPLICATE_ID,
                                    f"{at}: productid {pid} already at line {seen_id[pid]}")); continue
        label = None
        if y_path is not None:
            if index not in y_labels:
                problems.append(Problem(file, line, "index", NO_LABEL_ROW,
                                        f"index {index} (product {pid}) has no row in {y_path.name}")); continue
            label, y_line, raw = y_labels[index]
            if label is None:
                problems.append(Problem(str(y_path), y_line, "prdtypecode", UNKNOWN_CATEGORY,
                                        f"index {index} (product {pid}): {raw!r} is not one of the "
                                        f"{len(tax)} category codes")); continue
        seen_index[index], seen_id[pid] = line, line
        image = image_index.get((value["imageid"].strip(), pid)) if image_dir else None
        title = _capped(file, line, "designation", pid, value["designation"].strip(), TITLE_MAX_CHARS, problems)
        description = _capped(file, line, "description", pid, value["description"], DESCRIPTION_MAX_CHARS, problems)
        rec = ProductRecord(pid, title, description, None, None, label, index or None)
        found.append((rec, line, image))
        if n_rows % 5000 == 0:
            progress(0.02 + 0.28 * min(1.0, n_rows / 100_000), f"reading {x_path.name}: {n_rows} rows")
    progress(0.3, f"read {n_rows} rows")

    if y_path is not None:
        if all_index and not all_index & y_labels.keys():
            raise CatalogError(f"no index of {y_path.name} matches {x_path.name} ({n_rows} rows): "
                               "is the Y file from the same split as the X file?")
        for index, (_, y_line, _) in y_labels.items():
            if index not in all_index:
                problems.append(Problem(str(y_path), y_line, "index", NO_LABEL_ROW,
                                        f"index {index} has no row in {x_path.name}", "ignored"))
    _attach_images(found, file, problems, progress, kind_missing=None, skip=known_ids)
    no_image = (f"no image_<imageid>_product_<productid>.jpg for it in {image_dir}" if image_dir
                else "no image folder given: --images DIR")
    found = _refuse_empty(found, file, problems, "designation", known_ids, no_image)
    n_without_image = sum(path is None for _, _, path in found) if image_dir else 0
    progress(0.95, "validated")
    fingerprint = _fingerprint([x_path] + ([y_path] if y_path else []), str(image_dir or ""))
    source = f"{x_path}" + (f" + {y_path}" if y_path else "") + (f" + images {image_dir}" if image_dir else "")
    notes = [] if image_dir else ["no image folder given: products imported without images (--images DIR)"]
    return ParsedCatalog(source, [x_path] + ([y_path] if y_path else []), fingerprint, n_rows,
                         [r for r, _, _ in found], problems, n_without_image, notes)


def read_plain_csv(path: Path | str, *, progress: Progress | None = None,
                   known_ids: frozenset[str] | set[str] = frozenset(), tax: Taxonomy | None = None) -> ParsedCatalog:
    """Validate a plain CSV: id, title, and optional description, image (relative to the CSV's
    folder, or absolute) and label (a category code, empty for unlabelled)."""
    progress = progress or _noop
    tax = tax or taxonomy.default()
    path = _check_file(path, "catalog CSV")
    header, rows = _records(path)
    cols = _require_columns(path, header, PLAIN_REQUIRED, "a plain catalog CSV", PLAIN_OPTIONAL)
    folder = path.resolve().parent
    file = str(path)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    found: list[tuple[ProductRecord, int, Path | None]] = []
    n_rows = 0
    progress(0.02, f"reading {path.name}")
    for line, value, ok in _rows(file, header, rows, cols, problems):
        n_rows += 1
        if not ok:
            continue
        pid = value["id"].strip()
        if not pid:
            problems.append(Problem(file, line, "id", EMPTY_ID, "empty id")); continue
        if pid in seen:
            problems.append(Problem(file, line, "id", DUPLICATE_ID, f"id {pid} already at line {seen[pid]}")); continue
        raw_label = value.get("label", "").strip()
        label = _parse_code(raw_label, tax) if raw_label else None
        if raw_label and label is None:
            problems.append(Problem(file, line, "label", UNKNOWN_CATEGORY,
                                    f"product {pid}: {raw_label!r} is not one of the "
                                    f"{len(tax)} category codes")); continue
        seen[pid] = line
        image = value.get("image", "").strip()
        image_path = (folder / image).resolve() if image else None
        title = _capped(file, line, "title", pid, value["title"].strip(), TITLE_MAX_CHARS, problems)
        description = _capped(file, line, "description", pid, value.get("description", ""),
                              DESCRIPTION_MAX_CHARS, problems)
        found.append((ProductRecord(pid, title, description, None, None, label, None), line, image_path))
    progress(0.3, f"read {n_rows} rows")
    _attach_images(found, file, problems, progress, kind_missing=MISSING_IMAGE, skip=known_ids)
    found = _refuse_empty(found, file, problems, "title", known_ids, "empty image cell")
    n_without_image = sum(path is None for _, _, path in found)
    progress(0.95, "validated")
    ignored = [h for h in header if h and h.lower() not in (*PLAIN_REQUIRED, *PLAIN_OPTIONAL)]
    notes = [f"ignored columns: {', '.join(ignored)}"] if ignored else []
    return ParsedCatalog(str(path), [path], _fingerprint([path]), n_rows, [r for r, _, _ in found],
                         problems, n_without_image, notes)


# -- writing into a workspace -----------------------------------------------------------------
def store_catalog(ws: Workspace, parsed: ParsedCatalog, *, progress: Progress | None = None) -> ImportReport:
    """One import batch in ONE transaction (`store.imports.store_batch`): the batch row, its new
    products and its problems."""
    progress = progress or _noop
    started = time.perf_counter()
    previous = imports.first_batch_with(ws, parsed.fingerprint)
    problems = [imports.Problem(p.file, None if p.line is None else str(p.line), p.field,
                                f"{p.kind}: {p.message} ({p.action})") for p in parsed.problems]
    batch, new = imports.store_batch(
        ws, source=parsed.source, fingerprint=parsed.fingerprint, n_rows=parsed.n_rows,
        n_skipped=sum(p.skipped for p in parsed.problems), products=parsed.products, problems=problems,
        progress=lambda done, total: progress(0.95 + 0.05 * done / total, f"writing {done}/{total}"))
    imported, already = len(new), len(parsed.products) - len(new)
    with_image = sum(p.image_path is not None for p in new)
    progress(1.0, f"imported {imported} products")
    log.info("batch %s: %s imported, %s already present, %s problems", batch, imported, already,
             len(parsed.problems))
    return ImportReport(parsed.source, ws.root, batch, parsed.fingerprint, parsed.n_rows, imported, already,
                        with_image, imported - with_image, parsed.problems, parsed.notes,
                        round(time.perf_counter() - started, 3), previous)


def _stored_ids(ws: Workspace) -> set[str]:
    return imports.product_ids(ws)


def import_challenge(ws: Workspace, texts: Path | str, labels: Path | str | None = None,
                     images: Path | str | None = None, *, progress: Progress | None = None) -> ImportReport:
    """Import X (+ optional Y and image folder) in the Rakuten challenge layout."""
    started = time.perf_counter()
    parsed = read_challenge(texts, labels, images, progress=progress, known_ids=_stored_ids(ws),
                            tax=taxonomy.of(ws))
    report = store_catalog(ws, parsed, progress=progress)
    report.duration_s = round(time.perf_counter() - started, 3)
    return report


def import_plain_csv(ws: Workspace, path: Path | str, *, progress: Progress | None = None) -> ImportReport:
    """Import a plain CSV (id, title, description, image, label)."""
    started = time.perf_counter()
    report = store_catalog(ws, read_plain_csv(path, progress=progress, known_ids=_stored_ids(ws), tax=taxonomy.of(ws)),
                           progress=progress)
    report.duration_s = round(time.perf_counter() - started, 3)
    return report
