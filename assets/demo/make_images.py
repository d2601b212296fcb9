"""Draw the demo catalog's product images procedurally (run from anywhere; rewrites images/).

One simple, recognisable drawing per category (some categories draw a second or third object
to match the product's title), colours varied per product from a seed derived from its id, so
the output is deterministic. 256x256 JPEGs, drawn at 2x and downscaled for smooth edges.

    python assets/demo/make_images.py
"""
from __future__ import annotations

import csv
import hashlib
import math
import random
import textwrap
import unicodedata
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "catalog.csv"
SIZE = 256
S = 2 * SIZE      # drawing canvas, downscaled at the end
Draw = ImageDraw.ImageDraw


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def text(d: Draw, xy: tuple[float, float], s: str, size: int, fill="black", width: int = 0) -> None:
    """Centred (multi-line when width > 0) text; accents dropped, the embedded font lacks them."""
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    lines = textwrap.wrap(s, width) if width else [s]
    f = font(size)
    y = xy[1] - (len(lines) - 1) * size * 0.6
    for line in lines:
        d.text((xy[0], y), line, font=f, fill=fill, anchor="mm")
        y += size * 1.2


def short(title: str, n: int = 3) -> str:
    return " ".join(title.split(" - ")[0].split()[:n])


def pastel(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(200, 245) for _ in range(3))  # type: ignore[return-value]


def vivid(rng: random.Random) -> tuple[int, int, int]:
    h = rng.random()
    r, g, b = (int(255 * (0.5 + 0.5 * math.cos(2 * math.pi * (h + k / 3)))) for k in range(3))
    return (r // 2 + 40, g // 2 + 40, b // 2 + 40)


# -- one drawing per category -----------------------------------------------------------------
def book(d: Draw, rng, v, title, *, old: bool) -> None:
    cover = (120 + rng.randint(-20, 20), 80, 50) if old else vivid(rng)
    d.rectangle((130, 60, 390, 450), fill=(60, 40, 30) if old else (40, 40, 40))        # spine shadow
    d.rectangle((120, 50, 380, 440), fill=cover, outline=(40, 25, 15), width=4)
    d.line((140, 50, 140, 440), fill=(0, 0, 0), width=3)
    if old:
        d.polygon([(380, 440), (350, 440), (380, 410)], fill=(225, 210, 180))          # dog-eared corner
        d.rectangle((170, 110, 350, 200), outline=(210, 180, 110), width=3)
        text(d, (260, 155), short(title, 4), 22, fill=(230, 210, 150), width=14)
    else:
        d.rectangle((140, 280, 380, 440), fill=tuple(min(255, c + 60) for c in cover))
        text(d, (260, 150), short(title, 5), 28, fill="white", width=12)
        text(d, (260, 400), "ROMAN", 22, fill=(40, 40, 40))


def game_case(d: Draw, rng, v, title) -> None:
    banner = [((0, 60, 160), "PS4"), ((16, 124, 16), "XBOX ONE"), ((220, 0, 20), "SWITCH")][v % 3]
    d.rounded_rectangle((140, 40, 372, 470), 12, fill=vivid(rng), outline=(20, 20, 20), width=4)
    d.rectangle((140, 40, 372, 100), fill=banner[0])
    text(d, (256, 70), banner[1], 30, fill="white")
    d.ellipse((190, 190, 320, 320), fill=pastel(rng))
    text(d, (256, 390), short(title, 3), 26, fill="white", width=14)


def gamepad(d: Draw, cx: int = 256, cy: int = 270, scale: float = 1.0, color=(40, 40, 48)) -> None:
    k = scale
    d.rounded_rectangle((cx - 150 * k, cy - 60 * k, cx + 150 * k, cy + 50 * k), int(50 * k), fill=color)
    d.ellipse((cx - 190 * k, cy - 50 * k, cx - 70 * k, cy + 110 * k), fill=color)
    d.ellipse((cx + 70 * k, cy - 50 * k, cx + 190 * k, cy + 110 * k), fill=color)
    d.rectangle((cx - 135 * k, cy - 20 * k, cx - 85 * k, cy), fill=(200, 200, 200))     # d-pad
    d.rectangle((cx - 120 * k, cy - 35 * k, cx - 100 * k, cy + 15 * k), fill=(200, 200, 200))
    for dx, dy, c in [(110, -30, (230, 60, 60)), (140, -5, (60, 160, 230)), (80, -5, (240, 200, 40)),
                      (110, 20, (60, 200, 90))]:
        d.ellipse((cx + (dx - 12) * k, cy + (dy - 12) * k, cx + (dx + 12) * k, cy + (dy + 12) * k), fill=c)


def gaming_accessory(d: Draw, rng, v, title) -> None:
    if v == 2:   # headset
        d.arc((120, 90, 392, 380), 180, 360, fill=(30, 30, 30), width=28)
        for x in (100, 352):
            d.rounded_rectangle((x, 230, x + 60, 350), 25, fill=vivid(rng), outline=(20, 20, 20), width=4)
        d.line((130, 330, 200, 400), fill=(30, 30, 30), width=10)
        d.ellipse((190, 390, 215, 415), fill=(30, 30, 30))
    else:
        gamepad(d, color=(35, 35, 40) if v == 0 else (235, 235, 235))
        if v == 1:   # cable
            d.line([(256, 210), (256, 150), (330, 110), (420, 140), (440, 60)], fill=(30, 30, 30), width=8)


def console(d: Draw, rng, v, title) -> None:
    if v in (0, 2):   # handheld
        body = vivid(rng) if v == 0 else (64, 200, 200)
        d.rounded_rectangle((90, 150, 422, 370), 50, fill=body, outline=(20, 20, 20), width=4)
        d.rectangle((170, 175, 342, 300), fill=(20, 20, 30))
        d.rectangle((180, 185, 332, 290), fill=(120, 200, 120))
        d.rectangle((115, 250, 155, 265), fill=(30, 30, 30)); d.rectangle((128, 237, 142, 278), fill=(30, 30, 30))
        d.ellipse((360, 230, 385, 255), fill=(200, 40, 40)); d.ellipse((380, 255, 405, 280), fill=(40, 40, 200))
    else:             # mini home console with a pad
        d.rounded_rectangle((130, 130, 382, 250), 20, fill=(225, 225, 225), outline=(60, 60, 60), width=4)
        d.rectangle((170, 150, 342, 170), fill=(60, 60, 60))
        d.ellipse((150, 205, 175, 230), fill=(200, 40, 40))
        gamepad(d, cy=360, scale=0.55, color=(120, 120, 130))


def pop_figure(d: Draw, rng, v, title) -> None:
    d.rectangle((120, 50, 392, 470), fill=vivid(rng), outline=(20, 20, 20), width=4)
    d.rectangle((150, 110, 362, 440), fill=(235, 240, 250))                          # window
    d.rounded_rectangle((210, 300, 302, 420), 20, fill=vivid(rng))                    # body
    d.rounded_rectangle((175, 150, 337, 300), 45, fill=(245, 215, 185))               # big head
    d.ellipse((210, 205, 240, 240), fill="black"); d.ellipse((272, 205, 302, 240), fill="black")
    d.pieslice((160, 130, 352, 210), 180, 360, fill=(30, 30, 30))                     # hair
    text(d, (256, 80), "POP!" if v == 0 else "COLLECTOR", 26, fill="white")


def trading_card(d: Draw, rng, v, title) -> None:
    for i in range(3 if v == 1 else 1):   # a lot shows a small fan of cards
        o = 18 * i
        d.rounded_rectangle((150 + o, 50 + o, 362 + o, 460 + o), 16, fill=(230, 190, 60), outline=(90, 70, 20), width=4)
    d.rectangle((170, 100, 342, 250), fill=vivid(rng), outline=(60, 60, 60), width=3)
    d.polygon([(256, 120), (300, 220), (212, 220)], fill=(250, 120, 40))
    d.rectangle((170, 270, 342, 420), fill=(245, 240, 220))
    for y in range(290, 410, 25):
        d.line((185, y, 327, y), fill=(150, 150, 150), width=3)
    text(d, (256, 78), "RARE" if v != 2 else "N° 215", 20, fill=(60, 40, 0))


def miniature(d: Draw, rng, v, title) -> None:
    if v == 1:  # game master screen
        for i, x in enumerate((80, 200, 320)):
            d.polygon([(x, 140 + 10 * (i % 2)), (x + 115, 140), (x + 115, 400), (x, 400 + 10 * (i % 2))],
                      fill=(110, 30, 30), outline=(60, 10, 10))
        text(d, (256, 260), "MENEUR DE JEU", 26, fill=(240, 210, 150))
        return
    grey = (150, 150, 155)
    for k, cx in enumerate((190, 322) if v == 2 else (256,)):
        d.ellipse((cx - 80, 400, cx + 80, 450), fill=(40, 40, 40))                   # round base
        d.polygon([(cx - 45, 405), (cx + 45, 405), (cx + 30, 250), (cx - 30, 250)], fill=grey)
        d.ellipse((cx - 30, 190, cx + 30, 250), fill=grey)
        d.line((cx + 40, 330, cx + 80, 150), fill=(190, 190, 195), width=10)         # sword
        d.line((cx + 25, 290, cx + 75, 300), fill=(120, 120, 120), width=8)


def teddy(d: Draw, rng, v, title) -> None:
    if v == 1:   # puzzle
        colors = [vivid(rng) for _ in range(4)]
        for i in range(3):
            for j in range(3):
                x, y = 106 + 100 * i, 106 + 100 * j
                d.rectangle((x, y, x + 100, y + 100), fill=colors[(i + j) % 4], outline="white", width=4)
                d.ellipse((x + 85, y + 35, x + 115, y + 65), fill=colors[(i + j + 1) % 4])
        return
    if v == 2:   # doll in a ball gown
        dress = vivid(rng)
        d.polygon([(256, 210), (150, 440), (362, 440)], fill=dress)
        d.rectangle((236, 180, 276, 260), fill=dress)
        d.ellipse((216, 100, 296, 185), fill=(245, 215, 185))
        d.pieslice((206, 85, 306, 175), 180, 360, fill=(240, 200, 80))
        return
    fur = (150 + rng.randint(-20, 20), 100, 60)
    for cx in (170, 342):
        d.ellipse((cx - 45, 80, cx + 45, 170), fill=fur)
    d.ellipse((156, 300, 356, 470), fill=fur)
    d.ellipse((166, 100, 346, 280), fill=fur)
    d.ellipse((216, 190, 296, 260), fill=(220, 190, 150))
    d.ellipse((213, 160, 233, 180), fill="black"); d.ellipse((279, 160, 299, 180), fill="black")
    d.ellipse((244, 200, 268, 218), fill="black")


def board_game(d: Draw, rng, v, title) -> None:
    if v == 1:   # puzzle cube
        faces = [(230, 40, 40), (40, 160, 60), (40, 80, 220), (250, 210, 40), (250, 140, 30), (245, 245, 245)]
        for i in range(3):
            for j in range(3):
                x, y = 136 + 80 * i, 136 + 80 * j
                d.rounded_rectangle((x, y, x + 76, y + 76), 10, fill=rng.choice(faces))
        return
    if v == 2:   # card deck
        for i in range(4):
            d.rounded_rectangle((150 + 20 * i, 110 + 12 * i, 330 + 20 * i, 390 + 12 * i), 16,
                                fill=vivid(rng), outline="white", width=5)
        text(d, (300, 290), "DÉFIS", 34, fill="white")
        return
    d.rectangle((60, 60, 452, 452), fill=(235, 220, 180), outline=(120, 80, 40), width=6)
    for i in range(8):
        for x, y in [(80 + 44 * i, 80), (80 + 44 * i, 392), (80, 80 + 44 * i), (392, 80 + 44 * i)]:
            d.rectangle((x, y, x + 40, y + 40), fill=vivid(rng) if (i % 3 == 0) else (250, 245, 230),
                        outline=(120, 80, 40), width=2)
    for k, (x, y) in enumerate([(190, 200), (270, 240)]):
        d.rounded_rectangle((x, y, x + 60, y + 60), 10, fill="white", outline="black", width=3)
        for px, py in [(15, 15), (45, 45)] + ([(30, 30)] if k else []):
            d.ellipse((x + px - 6, y + py - 6, x + px + 6, y + py + 6), fill="black")


def drone(d: Draw, rng, v, title) -> None:
    d.rectangle((0, 0, S, S), fill=(200, 225, 245))
    if v == 2:   # kit plane
        body = (120, 130, 110)
        d.polygon([(60, 260), (400, 240), (460, 256), (400, 272)], fill=body)
        d.polygon([(220, 250), (300, 120), (330, 120), (290, 255)], fill=body)
        d.polygon([(220, 262), (300, 392), (330, 392), (290, 257)], fill=body)
        d.polygon([(70, 258), (40, 200), (70, 200), (110, 256)], fill=body)
        return
    color = vivid(rng) if v == 0 else (30, 30, 30)
    for dx, dy in [(-1, -1), (1, -1), (-1, 1), (1, 1)]:
        d.line((256, 256, 256 + 130 * dx, 256 + 130 * dy), fill=color, width=18)
        cx, cy = 256 + 130 * dx, 256 + 130 * dy
        d.ellipse((cx - 75, cy - 75, cx + 75, cy + 75), outline=(90, 90, 90), width=6)
        d.line((cx - 65, cy - 10, cx + 65, cy + 10), fill=(240, 240, 240) if v else (60, 60, 60), width=10)
    d.rounded_rectangle((206, 206, 306, 306), 20, fill=color)
    if v == 0:
        d.ellipse((240, 290, 272, 322), fill=(20, 20, 20))   # camera


def baby_bar(d: Draw, rng, v, title) -> None:
    if v == 0:   # baby socks
        for k, x in enumerate((140, 290)):
            c = vivid(rng) if k == 0 else pastel(rng)
            d.rounded_rectangle((x, 110, x + 80, 320), 30, fill=c)
            d.rounded_rectangle((x, 260, x + 150, 330), 35, fill=c)
            for i in range(4):
                d.ellipse((x + 20 + 30 * i, 318, x + 32 + 30 * i, 330), fill=(240, 240, 240))
    elif v == 1:  # foosball balls
        for x, y in [(170, 200), (300, 200), (235, 310), (120, 320), (360, 320), (235, 420)]:
            d.ellipse((x - 50, y - 50, x + 50, y + 50), fill=(200, 160, 100), outline=(140, 100, 60), width=4)
    else:         # dartboard
        colors = [(20, 20, 20), (240, 230, 200)]
        for i in range(20):
            d.pieslice((76, 76, 436, 436), i * 18, (i + 1) * 18, fill=colors[i % 2])
        for r, c in [(140, (200, 40, 40)), (120, None), (70, (40, 140, 60)), (55, None), (20, (200, 40, 40))]:
            if c:
                d.ellipse((256 - r, 256 - r, 256 + r, 256 + r), outline=c, width=14)
        d.ellipse((246, 246, 266, 266), fill=(200, 40, 40))


def outdoor(d: Draw, rng, v, title) -> None:
    d.rectangle((0, 0, S, S), fill=(200, 230, 250))
    d.rectangle((0, 340, S, S), fill=(120, 190, 90))
    if v == 0:   # trampoline
        for x in (110, 190, 322, 402):
            d.line((x, 300, x + (-20 if x < 256 else 20), 420), fill=(60, 60, 60), width=8)
        d.ellipse((80, 250, 432, 350), fill=(30, 30, 30), outline=(40, 110, 200), width=14)
        for x in range(100, 420, 40):
            d.line((x, 120, x, 300), fill=(90, 90, 90), width=3)
        d.arc((80, 90, 432, 160), 180, 360, fill=(40, 110, 200), width=8)
    elif v == 1:  # carnival mask
        gold = (220, 180, 40)
        d.chord((110, 190, 402, 360), 180, 360, fill=gold)
        d.polygon([(110, 275), (402, 275), (330, 330), (256, 300), (182, 330)], fill=gold)
        d.ellipse((170, 230, 235, 275), fill=(200, 230, 250)); d.ellipse((277, 230, 342, 275), fill=(200, 230, 250))
        for i in range(5):
            d.line((360, 200, 380 + 25 * i, 70), fill=vivid(rng), width=14)
    else:         # fishing rod
        d.rectangle((0, 300, S, 340), fill=(70, 130, 200))
        d.line((80, 460, 440, 80), fill=(60, 40, 20), width=10)
        d.ellipse((120, 380, 170, 430), fill=(50, 50, 50))
        d.line((440, 80, 470, 310), fill=(230, 230, 230), width=2)
        d.ellipse((460, 300, 480, 325), fill=(220, 40, 40))


def childcare(d: Draw, rng, v, title) -> None:
    if v == 1:   # bib
        c = pastel(rng)
        d.polygon([(130, 140), (382, 140), (256, 430)], fill=c, outline=(150, 150, 150))
        d.ellipse((206, 110, 306, 190), fill="white")
        d.ellipse((236, 250, 276, 290), fill=vivid(rng))
        return
    c = vivid(rng) if v == 0 else (50, 50, 60)
    if v == 2:   # car seat
        d.rounded_rectangle((160, 90, 360, 420), 60, fill=c)
        d.rounded_rectangle((190, 200, 330, 400), 40, fill=(120, 120, 130))
        d.line((215, 210, 256, 320), fill=(230, 60, 60), width=10); d.line((297, 210, 256, 320), fill=(230, 60, 60), width=10)
        d.rectangle((140, 420, 380, 450), fill=(40, 40, 40))
        return
    d.pieslice((120, 90, 360, 330), 180, 300, fill=c)                               # canopy
    d.polygon([(150, 210), (340, 210), (310, 300), (170, 300)], fill=(120, 120, 130))
    d.line((340, 210, 400, 110), fill=(60, 60, 60), width=10)                       # handle
    d.line((170, 300, 140, 420), fill=(60, 60, 60), width=8); d.line((310, 300, 360, 420), fill=(60, 60, 60), width=8)
    for x in (140, 360):
        d.ellipse((x - 30, 400, x + 30, 460), outline=(30, 30, 30), width=10)


def furniture(d: Draw, rng, v, title) -> None:
    d.rectangle((0, 380, S, S), fill=(210, 190, 160))
    wood = (170, 120, 70)
    if v == 0:   # armchair
        grey = (140, 140, 150)
        d.rounded_rectangle((140, 120, 372, 300), 30, fill=grey)
        d.rounded_rectangle((110, 230, 402, 330), 25, fill=(120, 120, 130))
        for x in (140, 360):
            d.line((x, 330, x + (-15 if x < 256 else 15), 420), fill=wood, width=12)
    elif v == 1:  # coffee table
        d.polygon([(90, 250), (422, 250), (470, 300), (42, 300)], fill=wood)
        d.rectangle((42, 300, 470, 318), fill=(130, 90, 50))
        for x in (70, 440):
            d.rectangle((x - 8, 318, x + 8, 420), fill=(130, 90, 50))
    else:         # mattress
        d.rounded_rectangle((60, 230, 452, 330), 25, fill=(245, 245, 245), outline=(180, 180, 190), width=5)
        d.rectangle((60, 290, 452, 300), fill=(170, 190, 220))
        for x in range(100, 440, 60):
            d.ellipse((x - 5, 255, x + 5, 265), fill=(200, 200, 210))


def cushion(d: Draw, rng, v, title) -> None:
    a, b = vivid(rng), pastel(rng)
    if v == 2:   # folded plaid
        for i in range(4):
            d.rounded_rectangle((110, 160 + 50 * i, 402, 220 + 50 * i), 20, fill=(30, 40, 90) if i % 2 == 0 else (45, 60, 120))
        return
    if v == 1:   # folded bed linen with pillowcases
        d.rectangle((100, 250, 412, 420), fill="white", outline=(180, 180, 180), width=4)
        d.rectangle((130, 150, 382, 250), fill=(250, 250, 250), outline=(180, 180, 180), width=4)
        d.line((100, 330, 412, 330), fill=(200, 200, 200), width=3)
        return
    d.rounded_rectangle((110, 110, 402, 402), 70, fill=b, outline=a, width=8)
    for i in range(4):
        for j in range(4):
            x, y = 150 + 56 * i, 150 + 56 * j
            d.polygon([(x + 28, y), (x + 56, y + 28), (x + 28, y + 56), (x, y + 28)], fill=a if (i + j) % 2 else b)


def grocery(d: Draw, rng, v, title) -> None:
    if v == 2:   # candy
        for k in range(9):
            x, y = 120 + 130 * (k % 3), 140 + 110 * (k // 3)
            c = vivid(rng)
            d.ellipse((x - 35, y - 25, x + 35, y + 25), fill=c)
            d.polygon([(x - 35, y), (x - 65, y - 22), (x - 65, y + 22)], fill=c)
            d.polygon([(x + 35, y), (x + 65, y - 22), (x + 65, y + 22)], fill=c)
        return
    fill = (230, 160, 30) if v == 0 else (110, 150, 60)
    d.rounded_rectangle((150, 160, 362, 440), 30, fill=fill, outline=(120, 80, 20), width=5)   # jar / tin
    d.rectangle((170, 110, 342, 165), fill=(90, 60, 30) if v == 0 else (60, 90, 40))
    d.rectangle((175, 250, 337, 350), fill=(250, 245, 230))
    text(d, (256, 300), "MIEL" if v == 0 else "THÉ VERT", 30, fill=(90, 60, 20))


def decor(d: Draw, rng, v, title) -> None:
    if v == 0:   # bedside lamp
        d.polygon([(180, 100), (332, 100), (380, 240), (132, 240)], fill=(235, 220, 190), outline=(160, 140, 110))
        d.ellipse((196, 240, 316, 400), fill=vivid(rng))
        d.rectangle((186, 395, 326, 420), fill=(80, 80, 80))
    elif v == 1:  # tree wall sticker
        d.rectangle((0, 0, S, S), fill=(245, 240, 230))
        d.line((256, 460, 256, 220), fill=(40, 40, 40), width=24)
        for ang in (-50, -20, 20, 50):
            a = math.radians(ang - 90)
            d.line((256, 300, 256 + 160 * math.cos(a), 300 + 160 * math.sin(a)), fill=(40, 40, 40), width=12)
        for x, y in [(140, 160), (370, 150), (300, 90)]:
            d.ellipse((x - 18, y - 12, x + 18, y + 12), fill=vivid(rng))
    else:         # light garland
        d.rectangle((0, 0, S, S), fill=(25, 30, 60))
        for row in range(3):
            pts = [(x, 120 + 130 * row + 40 * math.sin(x / 60)) for x in range(20, 500, 10)]
            d.line(pts, fill=(60, 90, 60), width=4)
            for x, y in pts[::4]:
                d.ellipse((x - 9, y - 9, x + 9, y + 9), fill=(255, 220, 120))


def pets(d: Draw, rng, v, title) -> None:
    if v == 1:   # cat tree
        beige = (220, 200, 170)
        d.rectangle((220, 120, 260, 440), fill=(200, 180, 130))
        for y, (x0, x1) in [(120, (150, 330)), (250, (230, 420)), (380, (110, 300))]:
            d.rectangle((x0, y - 20, x1, y), fill=beige)
        d.rounded_rectangle((300, 300, 420, 380), 20, fill=beige)
        d.ellipse((335, 320, 385, 370), fill=(60, 50, 40))
        d.rectangle((90, 440, 430, 470), fill=beige)
        return
    if v == 0:   # dog basket
        d.ellipse((70, 200, 442, 440), fill=vivid(rng))
        d.ellipse((120, 240, 392, 400), fill=pastel(rng))
    else:        # double bowl
        for cx in (170, 342):
            d.chord((cx - 90, 220, cx + 90, 420), 0, 180, fill=(190, 195, 200))
            d.ellipse((cx - 90, 270, cx + 90, 330), fill=(150, 155, 160))
    # bone
    d.rounded_rectangle((196, 110, 316, 140), 12, fill="white", outline=(180, 180, 180))
    for x in (196, 316):
        for y in (110, 140):
            d.ellipse((x - 18, y - 18, x + 18, y + 18), fill="white", outline=(180, 180, 180))


def magazine(d: Draw, rng, v, title) -> None:
    paper = (235, 225, 200)
    d.rectangle((110, 40, 402, 470), fill=paper, outline=(150, 140, 120), width=3)
    d.rectangle((110, 40, 402, 120), fill=vivid(rng))
    mast = {0: "LE JOURNAL", 1: "AUTO HEBDO", 2: "COMICS"}[v % 3]
    text(d, (256, 80), mast, 34, fill="white")
    d.rectangle((140, 150, 372, 330), fill=pastel(rng), outline=(120, 120, 120))
    for y in range(360, 450, 22):
        d.line((140, y, 372, y), fill=(140, 130, 110), width=4)
    number = [w for w in title.split() if w[:1].isdigit()]
    text(d, (350, 140), f"N° {number[0]}" if number else "N° 1", 18, fill=(60, 40, 30))


def book_lot(d: Draw, rng, v, title) -> None:
    y = 440
    for i in range(6 if v == 0 else 5):
        h = rng.randint(40, 60)
        x0 = 110 + rng.randint(-20, 20)
        d.rectangle((x0, y - h, x0 + 290, y), fill=vivid(rng), outline=(30, 30, 30), width=3)
        d.rectangle((x0 + 20, y - h + 12, x0 + 90, y - 12), fill=(240, 230, 200))
        y -= h
    text(d, (256, y - 40), "LOT", 40, fill=(60, 60, 60))


def game_lot(d: Draw, rng, v, title) -> None:
    if v == 0:
        d.rounded_rectangle((150, 300, 362, 400), 16, fill=(50, 50, 55))
        d.rectangle((190, 315, 322, 335), fill=(20, 20, 20))
    for i in range(5):
        x = 90 + 60 * i
        top = 80 if v else 120
        d.rounded_rectangle((x, top + 10 * (i % 2), x + 110, top + 170 + 10 * (i % 2)), 8, fill=vivid(rng),
                            outline=(20, 20, 20), width=3)
    if v == 2:
        d.rectangle((130, 270, 382, 460), fill=(90, 40, 120), outline=(20, 20, 20), width=4)
        text(d, (256, 365), "BIG BOX", 34, fill="white")
    elif v == 1:
        text(d, (256, 380), "LOT x8", 40, fill=(40, 40, 40))


def stationery(d: Draw, rng, v, title) -> None:
    if v == 1:   # gel pens
        for i in range(6):
            x = 130 + 50 * i
            c = vivid(rng)
            d.rounded_rectangle((x, 110, x + 30, 400), 10, fill=c)
            d.polygon([(x, 400), (x + 30, 400), (x + 15, 440)], fill=(40, 40, 40))
        return
    cover = vivid(rng) if v == 0 else (190, 160, 120)
    d.rectangle((130, 70, 400, 450), fill=cover, outline=(40, 40, 40), width=3)
    for y in range(90, 440, 30):
        d.ellipse((112, y, 148, y + 16), outline=(80, 80, 80), width=4)
    d.rectangle((190, 130, 370, 200), fill="white")
    text(d, (280, 165), "A5" if v else "24x32", 26, fill=(40, 40, 40))
    d.line((360, 300, 470, 180), fill=(240, 200, 40), width=18)                      # pencil
    d.polygon([(355, 306), (364, 292), (345, 318)], fill=(60, 60, 60))


def garden_furniture(d: Draw, rng, v, title) -> None:
    d.rectangle((0, 0, S, S), fill=(195, 225, 250))
    d.rectangle((0, 330, S, S), fill=(110, 180, 80))
    wood = (150, 100, 60) if v != 0 else (90, 70, 55)
    if v == 2:   # storage chest
        d.rectangle((110, 220, 402, 400), fill=wood, outline=(60, 40, 20), width=4)
        d.rectangle((100, 200, 412, 230), fill=(120, 80, 45))
        for y in range(250, 400, 30):
            d.line((110, y, 402, y), fill=(110, 70, 40), width=3)
        return
    d.rectangle((90, 260, 422, 295), fill=wood)                                       # seat
    d.rectangle((90, 170, 422, 200), fill=wood); d.rectangle((90, 210, 422, 240), fill=wood)
    for x in (100, 400):
        d.rectangle((x, 170, x + 14, 400), fill=(80, 60, 40))
    if v == 0:
        d.rounded_rectangle((100, 240, 412, 270), 10, fill=(240, 240, 230))            # cushions


def pool(d: Draw, rng, v, title) -> None:
    if v == 1:   # chlorine bucket
        d.polygon([(150, 150), (362, 150), (340, 440), (172, 440)], fill=(240, 240, 245), outline=(120, 120, 130))
        d.rectangle((140, 130, 372, 160), fill=(40, 110, 200))
        text(d, (256, 300), "CHLORE", 34, fill=(40, 110, 200))
        return
    d.rectangle((0, 0, S, S), fill=(120, 190, 90))
    d.ellipse((50, 150, 462, 420), fill=(40, 120, 200))
    d.ellipse((75, 165, 437, 395), fill=(90, 190, 235) if v == 0 else (150, 200, 240))
    if v == 2:   # bubble cover
        for x in range(100, 420, 30):
            for y in range(190, 380, 30):
                if ((x - 256) / 180) ** 2 + ((y - 285) / 110) ** 2 < 1:
                    d.ellipse((x - 8, y - 8, x + 8, y + 8), outline=(40, 100, 180), width=2)
    else:
        for y in range(230, 360, 40):
            d.arc((140, y, 260, y + 20), 0, 180, fill="white", width=3)
        d.line((400, 130, 400, 260), fill=(200, 200, 200), width=8); d.line((430, 130, 430, 260), fill=(200, 200, 200), width=8)
        for y in (170, 210, 250):
            d.line((400, y, 430, y), fill=(200, 200, 200), width=6)


def tools(d: Draw, rng, v, title) -> None:
    if v == 0:   # drill
        body = (240, 160, 30)
        d.rounded_rectangle((110, 150, 380, 250), 40, fill=body)
        d.polygon([(210, 240), (290, 240), (270, 420), (200, 420)], fill=body)
        d.rectangle((190, 400, 300, 450), fill=(40, 40, 40))
        d.rectangle((380, 180, 440, 220), fill=(60, 60, 60)); d.line((440, 200, 490, 200), fill=(150, 150, 150), width=10)
    elif v == 1:  # hose reel
        d.ellipse((110, 140, 370, 400), outline=(40, 150, 60), width=30)
        d.ellipse((160, 190, 320, 350), outline=(40, 150, 60), width=24)
        d.line((370, 270, 450, 420), fill=(40, 150, 60), width=16)
        d.rectangle((420, 400, 480, 440), fill=(230, 160, 30))
    else:        # wrenches
        for i, c in enumerate([(180, 180, 190), (150, 150, 160)]):
            ang = math.radians(40 + 90 * i)
            x0, y0 = 256 - 170 * math.cos(ang), 256 - 170 * math.sin(ang)
            x1, y1 = 256 + 170 * math.cos(ang), 256 + 170 * math.sin(ang)
            d.line((x0, y0, x1, y1), fill=c, width=26)
            d.ellipse((x0 - 35, y0 - 35, x0 + 35, y0 + 35), outline=c, width=16)
            d.pieslice((x1 - 40, y1 - 40, x1 + 40, y1 + 40), 0, 300, fill=c)


def pc_download(d: Draw, rng, v, title) -> None:
    d.rounded_rectangle((70, 90, 442, 340), 16, fill=(30, 30, 35))
    d.rectangle((90, 110, 422, 320), fill=vivid(rng))
    d.rectangle((226, 340, 286, 400), fill=(60, 60, 65)); d.rectangle((170, 400, 342, 420), fill=(60, 60, 65))
    d.rectangle((236, 150, 276, 240), fill="white")
    d.polygon([(206, 235), (306, 235), (256, 290)], fill="white")
    text(d, (256, 460), "CODE PC", 30, fill=(40, 40, 40))


DRAWINGS: dict[int, Callable] = {
    10: lambda d, r, v, t: book(d, r, v, t, old=True), 40: game_case, 50: gaming_accessory, 60: console,
    1140: pop_figure, 1160: trading_card, 1180: miniature, 1280: teddy, 1281: board_game, 1300: drone,
    1301: baby_bar, 1302: outdoor, 1320: childcare, 1560: furniture, 1920: cushion, 1940: grocery,
    2060: decor, 2220: pets, 2280: magazine, 2403: book_lot, 2462: game_lot, 2522: stationery,
    2582: garden_furniture, 2583: pool, 2585: tools, 2705: lambda d, r, v, t: book(d, r, v, t, old=False),
    2905: pc_download,
}


def draw_product(product_id: str, label: int, variant: int, title: str) -> Image.Image:
    rng = random.Random(int(hashlib.sha1(product_id.encode()).hexdigest()[:8], 16))
    img = Image.new("RGB", (S, S), pastel(rng))
    DRAWINGS[label](ImageDraw.Draw(img), rng, variant, title)
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def main(out_dir: Path | None = None) -> list[Path]:
    with CATALOG.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    seen: dict[int, int] = {}
    written = []
    for row in rows:
        label = int(row["label"])
        variant = seen.get(label, 0)
        seen[label] = variant + 1
        path = (out_dir / Path(row["image"]).name) if out_dir else HERE / row["image"]
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_product(row["id"], label, variant, row["title"]).save(path, "JPEG", quality=80, optimize=True)
        written.append(path)
    return written


if __name__ == "__main__":
    paths = main()
    print(f"wrote {len(paths)} images, {sum(p.stat().st_size for p in paths) / 1024:.0f} KiB, to {HERE / 'images'}")
