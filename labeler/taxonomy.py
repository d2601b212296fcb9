"""A workspace's categories: the `Taxonomy` object, its CSV/JSON loaders, and the Rakuten default.

Codes and keys. A category has the **code** its owner writes (Rakuten's `2583`, or `toys`,
`A-12`) and a **key**, the int that every category column of the database (products.source_label,
decisions.category, predictions.top1, label_issues) and every probability array holds. A code that
is a whole number (digits only, no leading zero) is its own key, so the Rakuten 27 and every
workspace made before taxonomies existed read unchanged. Any other code gets a negative key (-1,
-2, ... in the order the workspace first saw it, never reused: store/taxonomy.py), so text codes
never meet a numeric one and the integer columns and arrays stay integers. Users see and type
codes; `Taxonomy.parse` turns what they typed (a code, or a key) into the key, the one normalising
step between input and storage; `Taxonomy.code` turns a key back into the code for display and
export.

Order. `Taxonomy.keys()` lists the categories in the order of the file (the Rakuten file is in
code order): the order of choices and tables. A model version's probability columns follow its
own classes (recorded with the version), not this order.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

TAXONOMY_PATH = Path(__file__).resolve().parent.parent / "assets" / "taxonomy.json"
FIELDS = ("code", "name", "description", "keywords", "parent")
REQUIRED = ("code", "name")
MAX_CODE_LEN = 64
_NUMERIC = re.compile(r"(0|[1-9][0-9]{0,17})")       # a whole number that is its own key (fits int64)
_KEYWORD_SPLIT = re.compile(r"[;|]")


class TaxonomyError(ValueError):
    """A taxonomy file or change that cannot be used; the message is one line naming the fix."""


@dataclass(frozen=True)
class Category:
    code: str                   # as its owner writes it: '2583', 'toys'
    key: int                    # what the database and the probability arrays hold
    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    parent: str | None = None   # the code of the parent category, if any

    @property
    def label(self) -> str:
        return f"{self.code} · {self.name}"


def is_numeric_code(code: str) -> bool:
    """A code that is its own key: digits only, no leading zero."""
    return bool(_NUMERIC.fullmatch(code))


@dataclass(frozen=True)
class Taxonomy:
    """An immutable, ordered set of categories with lookup by key and by code."""

    categories: tuple[Category, ...]
    source: str = ""                                     # where it came from, for messages
    _by_key: dict[int, Category] = field(default_factory=dict, repr=False, compare=False)
    _by_code: dict[str, Category] = field(default_factory=dict, repr=False, compare=False)
    _by_fold: dict[str, Category] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.categories:
            raise TaxonomyError(f"{self.source or 'taxonomy'}: no categories; give at least one")
        for c in self.categories:
            if c.key in self._by_key:
                raise TaxonomyError(f"{self.source or 'taxonomy'}: key {c.key} is used by "
                                    f"{self._by_key[c.key].code!r} and {c.code!r}")
            if c.code in self._by_code:
                raise TaxonomyError(f"{self.source or 'taxonomy'}: duplicate code {c.code!r}")
            if is_numeric_code(c.code) and c.key != int(c.code):
                raise TaxonomyError(f"{self.source or 'taxonomy'}: numeric code {c.code!r} must be its own key, "
                                    f"not {c.key}")
            self._by_key[c.key] = c
            self._by_code[c.code] = c
        folds: dict[str, list[Category]] = {}
        for c in self.categories:
            folds.setdefault(c.code.casefold(), []).append(c)
        self._by_fold.update({k: v[0] for k, v in folds.items() if len(v) == 1})
        for c in self.categories:
            if c.parent is not None and c.parent not in self._by_code:
                raise TaxonomyError(f"{self.source or 'taxonomy'}: category {c.code!r} names parent {c.parent!r}, "
                                    "which is not one of its codes")
        _check_no_cycle(self.categories, self.source)

    # -- lookup ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self) -> Iterator[Category]:
        return iter(self.categories)

    def keys(self) -> list[int]:
        """Every category's key, in taxonomy order."""
        return [c.key for c in self.categories]

    def codes(self) -> list[str]:
        """Every category's code as its owner writes it, in taxonomy order."""
        return [c.code for c in self.categories]

    @property
    def numeric(self) -> bool:
        """Every code is a whole number (keys are the codes themselves), as in Rakuten's."""
        return all(c.key >= 0 for c in self.categories)

    def get(self, key: object) -> Category | None:
        """The category of a key (an int, or what the database or numpy gives back)."""
        k = _as_key(key)
        return None if k is None else self._by_key.get(k)

    def __getitem__(self, key: object) -> Category:
        cat = self.get(key)
        if cat is None:
            raise KeyError(f"{key!r} is not a category key of {self.source or 'this taxonomy'}")
        return cat

    def name(self, key: object) -> str:
        cat = self.get(key)
        return cat.name if cat else f"unknown category {key}"

    def code(self, key: object) -> str:
        """The code shown and exported for a key ('toys'; '2583' for the Rakuten key 2583)."""
        cat = self.get(key)
        return cat.code if cat else str(key)

    def code_value(self, key: object) -> int | str:
        """The code as a value for files and tables: an int for a whole-number code (Rakuten's
        2583, as every export wrote it), the text otherwise ('toys')."""
        cat = self.get(key)
        if cat is None:
            return _as_key(key) if _as_key(key) is not None else str(key)
        return cat.key if is_numeric_code(cat.code) else cat.code

    def label(self, key: object) -> str:
        """'code · name' for a key; 'key · unknown category key' for a key not in the taxonomy."""
        cat = self.get(key)
        return cat.label if cat else f"{key} · unknown category"

    def parse(self, value: object) -> int | None:
        """The key of what a user or a file gave: a code ('toys', ' 2583 ', '2583.0' as a float
        column saves it, 'TOYS' when no other code folds to it), a key (an int, a numpy int, the
        string of an int), or a 'code · name' label; None when it names no category."""
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, float):
            if value != value or not value.is_integer():    # NaN, 2583.5
                return None
            value = int(value)
        k = _as_key(value)
        if k is not None and not isinstance(value, str):
            return k if k in self._by_key else None
        text = str(value).strip()
        if not text:
            return None
        for cand in (text, re.sub(r"\.0+$", "", text), text.split(" · ", 1)[0].strip()):
            if cand in self._by_code:
                return self._by_code[cand].key
        folded = self._by_fold.get(text.casefold())
        if folded is not None:
            return folded.key
        if re.fullmatch(r"-?[0-9]+", text) and int(text) in self._by_key:
            return int(text)
        return None

    def is_known(self, value: object) -> bool:
        return self.parse(value) is not None

    def require(self, value: object, what: str = "category") -> int:
        """`parse`, or a one-line `TaxonomyError` listing some codes."""
        key = self.parse(value)
        if key is None:
            raise TaxonomyError(f"{what}: {value!r} is not one of the {len(self)} category codes "
                                f"({self.describe_codes()})")
        return key

    def describe_codes(self, limit: int = 30) -> str:
        codes = self.codes()
        return ", ".join(codes[:limit]) + (f", … ({len(codes) - limit} more)" if len(codes) > limit else "")

    def parent_of(self, key: object) -> Category | None:
        cat = self.get(key)
        return None if cat is None or cat.parent is None else self._by_code[cat.parent]

    # -- text for the models -----------------------------------------------------------------
    def documents(self) -> dict[int, tuple[str, str, tuple[str, ...]]]:
        """key -> (name, description, keywords): what a text prior learns categories from."""
        return {c.key: (c.name, c.description, c.keywords) for c in self.categories}

    # -- rows ---------------------------------------------------------------------------------
    def to_rows(self) -> list[dict]:
        """One dict per category, in order: code, key, name, description, keywords, parent."""
        return [{"code": c.code, "key": c.key, "name": c.name, "description": c.description,
                 "keywords": list(c.keywords), "parent": c.parent} for c in self.categories]

    def with_keys(self, assigned: Mapping[str, int]) -> "Taxonomy":
        """The same categories with the keys a workspace gave their text codes."""
        cats = tuple(Category(c.code, assigned.get(c.code, c.key), c.name, c.description, c.keywords, c.parent)
                     for c in self.categories)
        return Taxonomy(cats, source=self.source)


def _as_key(value: object) -> int | None:
    """An int key from an int-like value (int, numpy integer, '-3'); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype.kind in "iu":  # numpy int
        return int(value)  # type: ignore[arg-type]
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        return int(value)
    return None


def _check_no_cycle(categories: Iterable[Category], source: str) -> None:
    parent = {c.code: c.parent for c in categories}
    for start in parent:
        seen, code = [start], parent[start]
        while code is not None:
            if code in seen:
                loop = " -> ".join(seen[seen.index(code):] + [code])
                raise TaxonomyError(f"{source or 'taxonomy'}: parents form a loop ({loop}); "
                                    "give one of them no parent")
            seen.append(code)
            code = parent.get(code)


# -- building from rows ----------------------------------------------------------------------
def from_rows(rows: Iterable[Mapping[str, Any]], *, source: str = "taxonomy", where: str = "entry",
              first: int = 1) -> Taxonomy:
    """A taxonomy from dicts with code, name, description, keywords, parent (and key, when a
    workspace assigned one). Every problem is one line naming `source`, the entry, the field
    and the fix; `where`/`first` say how entries are numbered ('row' 2 for a CSV's first data
    line, 'entry' 1 for a JSON list)."""
    cats: list[Category] = []
    seen: dict[str, int] = {}
    next_key = -1
    for i, row in enumerate(rows, start=first):
        at = f"{source} {where} {i}"
        if not isinstance(row, Mapping):
            raise TaxonomyError(f"{at}: expected an object with code, name, description; got {type(row).__name__}")
        unknown = [k for k in row if k not in FIELDS and k != "key"]
        if unknown:
            raise TaxonomyError(f"{at}: unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
        for f in REQUIRED:
            if f not in row:
                raise TaxonomyError(f"{at}: field {f!r} is missing; every category needs {', '.join(REQUIRED)}")
        code = _code(row["code"], at)
        if code in seen:
            raise TaxonomyError(f"{at}, field code: duplicate code {code!r} (first at {where} {seen[code]}); "
                                "give each category its own code")
        seen[code] = i
        name = _text(row.get("name"), at, "name").strip()
        if not name:
            raise TaxonomyError(f"{at}, field name: empty name for code {code!r}; give every category a name")
        description = _text(row.get("description"), at, "description").strip()
        keywords = _keywords(row.get("keywords"), at)
        parent_raw = row.get("parent")
        parent = None if parent_raw is None or str(parent_raw).strip() == "" else _code(parent_raw, at, "parent")
        if parent == code:
            raise TaxonomyError(f"{at}, field parent: category {code!r} is its own parent; leave parent empty")
        if is_numeric_code(code):
            key = int(code)
        elif row.get("key") is not None:
            key = int(row["key"])
        else:
            key, next_key = next_key, next_key - 1
        cats.append(Category(code, key, name, description, keywords, parent))
    if not cats:
        raise TaxonomyError(f"{source}: no categories; give at least one (fields: {', '.join(FIELDS)})")
    by_code = {c.code: i for i, c in zip(seen.values(), cats)}
    for c in cats:
        if c.parent is not None and c.parent not in by_code:
            raise TaxonomyError(f"{source} {where} {seen[c.code]}, field parent: unknown parent {c.parent!r} "
                                f"for {c.code!r}; use one of the file's codes or leave it empty")
    return Taxonomy(tuple(cats), source=source)


def _code(value: object, at: str, fname: str = "code") -> str:
    if isinstance(value, bool) or value is None:
        raise TaxonomyError(f"{at}, field {fname}: expected a code (text or a whole number), got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise TaxonomyError(f"{at}, field {fname}: {value!r} is not a whole number; write the code as text")
        value = int(value)
    if not isinstance(value, (int, str)):
        raise TaxonomyError(f"{at}, field {fname}: expected a code (text or a whole number), got {type(value).__name__}")
    code = str(value).strip()
    if not code:
        raise TaxonomyError(f"{at}, field {fname}: empty code; give every category a code")
    if len(code) > MAX_CODE_LEN:
        raise TaxonomyError(f"{at}, field {fname}: code {code[:20]!r}… is {len(code)} characters; "
                            f"keep codes to {MAX_CODE_LEN}")
    if any(ch in code for ch in "\r\n\t\0") or " · " in code:
        raise TaxonomyError(f"{at}, field {fname}: code {code!r} holds a tab, a line break or ' · '; "
                            "use a single-line code without them")
    if re.fullmatch(r"-?[0-9]+", code) and not is_numeric_code(code):
        raise TaxonomyError(f"{at}, field {fname}: code {code!r} is a number written with a sign, leading "
                            f"zeros or too many digits; write it as {_plain_number(code)} or give it a letter")
    return code


def _plain_number(code: str) -> str:
    n = int(code)
    return str(n) if 0 <= n < 10 ** 18 else "a shorter whole number"


def _text(value: object, at: str, fname: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise TaxonomyError(f"{at}, field {fname}: expected text, got {type(value).__name__}")
    return str(value)


def _keywords(value: object, at: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = _KEYWORD_SPLIT.split(value)
    elif isinstance(value, list):
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            raise TaxonomyError(f"{at}, field keywords: expected a list of words, found {bad[0]!r}")
        items = value
    else:
        raise TaxonomyError(f"{at}, field keywords: expected words separated by ';' (or a JSON list), "
                            f"got {type(value).__name__}")
    out: list[str] = []
    for k in (i.strip() for i in items):
        if k and k not in out:
            out.append(k)
    return tuple(out)


# -- files -----------------------------------------------------------------------------------
def load(path: Path | str) -> Taxonomy:
    """A taxonomy file: `.json` (a list of objects, or {"categories": [...]}) or `.csv` (a header
    with code, name and optionally description, keywords (separated by ';'), parent)."""
    path = Path(path)
    if not path.is_file():
        raise TaxonomyError(f"taxonomy file {path} does not exist (or is not a file); "
                            "give a .csv or .json file with code, name, description")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise TaxonomyError(f"taxonomy file {path}: expected a .json or .csv file, got {path.suffix or 'no extension'!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaxonomyError(f"taxonomy file {path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    return loads(text, fmt=suffix[1:], source=path.name)


def loads(text: str, *, fmt: str, source: str = "taxonomy") -> Taxonomy:
    """`load` on text already read; fmt 'json' or 'csv'."""
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaxonomyError(f"{source} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                                "fix the syntax") from None
        if isinstance(data, dict) and isinstance(data.get("categories"), list):
            data = data["categories"]
        if not isinstance(data, list):
            raise TaxonomyError(f"{source}: expected a JSON list of categories (or {{\"categories\": [...]}}), "
                                f"got {type(data).__name__}")
        return from_rows(data, source=source, where="entry", first=1)
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise TaxonomyError(f"{source} is empty; the first line names the columns: {', '.join(FIELDS)}")
        missing = [f for f in REQUIRED if f not in header]
        if missing:
            raise TaxonomyError(f"{source}, header: column {missing[0]!r} is missing (found {', '.join(header)}); "
                                f"the columns are {', '.join(FIELDS)}")
        reader.fieldnames = header
        rows = []
        for row in reader:
            if None in row:
                raise TaxonomyError(f"{source} row {reader.line_num}: more values than the {len(header)} columns "
                                    "of the header; quote values that hold commas")
            rows.append({k: v for k, v in row.items() if not (k in ("keywords", "parent", "description") and v == "")})
        return from_rows(rows, source=source, where="row", first=2)
    raise TaxonomyError(f"{source}: unknown taxonomy format {fmt!r}; use json or csv")


@lru_cache(maxsize=1)
def default() -> Taxonomy:
    """The Rakuten France taxonomy: the 27 prdtypecode categories, in code order."""
    return load(TAXONOMY_PATH)


# -- a workspace's taxonomy ------------------------------------------------------------------
def of(ws: Any) -> Taxonomy:
    """The workspace's taxonomy: its stored categories, or the Rakuten default when it has none."""
    from store import taxonomy as stored
    rev = stored.revision(ws)
    if rev is None:
        return default()
    return _cached(str(ws.db_path), rev, ws)


_CACHE: dict[tuple[str, str], Taxonomy] = {}


def _cached(db: str, rev: str, ws: Any) -> Taxonomy:
    hit = _CACHE.get((db, rev))
    if hit is None:
        from store import taxonomy as stored
        hit = from_rows(stored.rows(ws), source=f"taxonomy of {ws.root}")
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[(db, rev)] = hit
    return hit


_CLASSES: dict[tuple[str, str], tuple[int, ...]] = {}


def classes_of(ws: Any, version: str | None) -> list[int]:
    """The keys of a version's probability columns, in column order: what it recorded when it was
    trained, or the default taxonomy's keys for a version trained before versions recorded them."""
    if version is None:
        return of(ws).keys()
    hit = _CLASSES.get((str(ws.db_path), version))
    if hit is None:
        from store import taxonomy as stored
        recorded = stored.version_classes(ws, version)
        if recorded is None:
            return default().keys()
        hit = _CLASSES[(str(ws.db_path), version)] = tuple(recorded)
    return list(hit)


def set_for(ws: Any, new: Taxonomy, *, source: str = "") -> "Change":
    """Make `new` the workspace's taxonomy: codes it adds get keys (a removed text code gets its
    old key back), changed names, descriptions, keywords and parents replace the old ones, and a
    change that drops a code a product or a decision still holds is refused in one line, with
    nothing written."""
    from store import taxonomy as stored
    old = of(ws)
    rows = [{**r, "key": r["key"] if is_numeric_code(r["code"]) else None} for r in new.to_rows()]
    try:
        assigned = stored.replace(ws, rows, source=source or new.source)
    except stored.CategoryInUse as exc:
        raise TaxonomyError(f"{new.source or 'the new taxonomy'} leaves out category {old.label(exc.key)}, which "
                            f"{exc.n_products} products and {exc.n_decisions} decisions hold; keep it in the "
                            "file (removing a category is allowed only while nothing uses it)") from None
    new = new.with_keys(assigned)
    return Change(added=tuple(c.code for c in new if old.get(c.key) is None),
                  removed=tuple(c.code for c in old if new.get(c.key) is None), taxonomy=new)


@dataclass(frozen=True)
class Change:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    taxonomy: Taxonomy

    def describe(self) -> str:
        """One line for the CLI: how many categories, from where, what was added and removed."""
        parts = [f"taxonomy: {len(self.taxonomy)} categories from {self.taxonomy.source}"]
        for verb, codes in (("added", self.added), ("removed", self.removed)):
            if codes:
                shown = ", ".join(codes[:8]) + (f", … ({len(codes) - 8} more)" if len(codes) > 8 else "")
                parts.append(f"{verb} {shown}")
        if not self.added and not self.removed:
            parts.append("same codes as before")
        return "; ".join(parts)


def import_file(ws: Any, path: Path | str) -> Change:
    """`import --taxonomy FILE`: load the file and make it the workspace's taxonomy (`set_for`)."""
    return set_for(ws, load(path), source=Path(path).name)


# -- the Rakuten default's codes as plain functions, for scripts, benches and older tests --------
# Library code never uses them (tests/test_taxonomy.py checks): it asks `of(ws)`, a version's
# `classes_of`, or takes a Taxonomy.
def categories() -> tuple[Category, ...]:
    return default().categories


def codes() -> list[int]:
    return default().keys()


def by_code() -> dict[int, Category]:
    return {c.key: c for c in default()}


def name(code: object) -> str:
    return default().name(code)


def is_known(code: object) -> bool:
    """A Rakuten code given as a whole number (int, or its digits as text)."""
    return default().get(code) is not None
