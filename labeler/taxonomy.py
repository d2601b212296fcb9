"""The Rakuten France taxonomy: 27 prdtypecode categories with names and descriptions."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TAXONOMY_PATH = Path(__file__).resolve().parent.parent / "assets" / "taxonomy.json"


@dataclass(frozen=True)
class Category:
    code: int
    name: str
    description: str

    @property
    def label(self) -> str:
        return f"{self.code} · {self.name}"


@lru_cache(maxsize=1)
def categories() -> tuple[Category, ...]:
    """All categories, ordered by code (the column order of every probability array)."""
    rows = json.loads(TAXONOMY_PATH.read_text(encoding="utf-8"))
    return tuple(sorted((Category(int(r["code"]), r["name"], r["description"]) for r in rows),
                        key=lambda c: c.code))


def codes() -> list[int]:
    return [c.code for c in categories()]


def by_code() -> dict[int, Category]:
    return {c.code: c for c in categories()}


def name(code: int) -> str:
    cat = by_code().get(int(code))
    return cat.name if cat else f"unknown category {code}"


def is_known(code: object) -> bool:
    try:
        return int(str(code).strip()) in by_code() and str(code).strip().lstrip("-").isdigit()
    except ValueError:
        return False
