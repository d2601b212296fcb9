"""A small non-Rakuten catalog for the taxonomy tests: 5 categories of a garden-and-home shop with
text codes (and one whole-number code), a taxonomy CSV, products with titles from each category's
vocabulary and PIL-drawn images (one shape and colour family per category, jittered per product,
so an image voter has something real to learn). Deterministic from a seed.
"""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw


@dataclass(frozen=True)
class ShopCategory:
    code: str
    name: str
    description: str
    keywords: tuple[str, ...]
    parent: str
    words: tuple[str, ...]         # what this category's product titles are made of
    shape: str
    colour: tuple[int, int, int]


CATEGORIES = (
    ShopCategory("toys", "Jouets", "Jeux et jouets pour enfants", ("peluche", "poupée", "toupie"), "",
                 ("peluche", "poupée", "toupie", "puzzle", "doudou", "figurine", "train en bois"),
                 "circle", (210, 40, 40)),
    ShopCategory("garden", "Jardin", "Outils et mobilier de jardin", ("râteau", "tondeuse", "arrosoir"), "",
                 ("râteau", "tondeuse", "arrosoir", "sécateur", "bêche", "brouette", "tuyau d'arrosage"),
                 "triangle", (40, 150, 60)),
    ShopCategory("kitchen", "Cuisine", "Ustensiles et petit électroménager de cuisine", ("casserole", "poêle"), "",
                 ("casserole", "poêle", "fouet", "spatule", "cocotte", "passoire", "planche à découper"),
                 "square", (40, 70, 200)),
    ShopCategory("LAMP-01", "Luminaires", "Lampes, suspensions et ampoules", ("lampe", "ampoule"), "",
                 ("lampe", "ampoule", "suspension", "applique", "lampadaire", "guirlande lumineuse", "veilleuse"),
                 "diamond", (230, 200, 30)),
    ShopCategory("900", "Veilleuses", "Petites lampes de nuit pour enfants", ("veilleuse", "lampe de nuit"), "LAMP-01",
                 ("veilleuse", "lampe de nuit", "projecteur d'étoiles", "lumière douce", "nuit", "lune", "étoile"),
                 "stripes", (150, 60, 170)),
)
ADJECTIVES = ("rouge", "bleu", "grand", "petit", "en bois", "en métal", "neuf", "lot de 2", "premium", "classique")
NEW_CATEGORY = ShopCategory("books", "Livres", "Livres neufs et d'occasion", ("livre", "roman"), "",
                            ("livre", "roman", "bande dessinée", "poche", "tome", "album", "recueil"),
                            "book", (120, 80, 40))


def write_taxonomy(path: Path, categories=CATEGORIES) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["code", "name", "description", "keywords", "parent"])
        for c in categories:
            w.writerow([c.code, c.name, c.description, ";".join(c.keywords), c.parent])
    return path


def draw(cat: ShopCategory, rng: random.Random, size: int = 128) -> Image.Image:
    """One product photo: a jittered shape of the category's colour family on a light background."""
    bg = tuple(rng.randint(225, 250) for _ in range(3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    colour = tuple(max(0, min(255, v + rng.randint(-25, 25))) for v in cat.colour)
    cx, cy = size / 2 + rng.uniform(-12, 12), size / 2 + rng.uniform(-12, 12)
    r = rng.uniform(0.25, 0.38) * size
    if cat.shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif cat.shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif cat.shape == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif cat.shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif cat.shape == "stripes":
        for k in range(-3, 4, 2):
            y = cy + k * r / 3
            d.rectangle((cx - r, y - r / 6, cx + r, y + r / 6), fill=colour)
    else:  # book: a cover with a spine
        d.rectangle((cx - r * 0.7, cy - r, cx + r * 0.7, cy + r), fill=colour)
        d.rectangle((cx - r * 0.7, cy - r, cx - r * 0.5, cy + r), fill=(30, 30, 30))
    return im


def product_rows(folder: Path, categories=CATEGORIES, *, per_category: int = 10, seed: int = 0,
                 prefix: str = "s") -> list[dict]:
    """Products of each category with a drawn image in `folder`; label = the category's code."""
    rng = random.Random(seed)
    rows = []
    for cat in categories:
        for i in range(per_category):
            pid = f"{prefix}-{cat.code.lower()}-{i:02d}"
            words = rng.sample(cat.words, 2)
            title = f"{words[0].capitalize()} {rng.choice(ADJECTIVES)} {words[1]}"
            image = f"{pid}.jpg"
            draw(cat, rng).save(folder / image, quality=90)
            rows.append({"id": pid, "title": title, "description": f"{cat.name} : {words[1]} {rng.randint(1, 99)}",
                         "image": image, "label": cat.code})
    return rows


def write_catalog(folder: Path, rows: list[dict], name: str = "catalog.csv") -> Path:
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "title", "description", "image", "label"])
        w.writeheader()
        w.writerows(rows)
    return path
