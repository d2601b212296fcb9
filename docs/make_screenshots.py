"""Screenshots of the app for the README, taken in headless chromium on the demo catalog.

    python -m docs.make_screenshots            # writes docs/review.png, docs/stats.png, docs/try-it.png

A copy of the demo workspace (what launch.py makes of an empty workspace: the demo catalog and a
first model with its image ensemble; cached under /tmp per code version), a reviewer makes a few
keyboard decisions so the status line and history are real, the heatmaps of the card on screen
arrive, then each tab is shot and saved as a small palette PNG.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from PIL import Image

from labeler.local_app import running_app
from labeler.templates import demo_workspace

OUT = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
WIDTH = 1360


def small_png(src: Path, dest: Path, width: int = 1200) -> None:
    """Scale to `width` and quantize to 256 colours: a README image of a few hundred KB."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            dest, optimize=True)


def next_card(page, old: str | None) -> str:
    page.wait_for_function("old => { const c = document.querySelector('#review-card .card');"
                           " return c && c.dataset.productId && c.dataset.productId !== old; }", arg=old,
                           timeout=30_000)
    return page.evaluate("() => document.querySelector('#review-card .card').dataset.productId")


def main() -> None:
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        tmp = Path(tmp)
        from launch import prepare_workspace
        demo_workspace(tmp / "ws", functools.partial(prepare_workspace, demo=True))
        with running_app(tmp / "ws", tmp) as (_, url), sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": 900}, device_scale_factor=1)
            page.goto(url)
            page.wait_for_selector("#review-card >> text=Who is reviewing?")
            name = page.locator("#reviewer-name input, #reviewer-name textarea").first
            name.fill("camille")
            name.press("Enter")
            shown = next_card(page, None)
            name.press("Escape")
            for key in ("Enter", "2", "Enter", "s", "Enter"):
                page.keyboard.press(key)
                shown = next_card(page, shown)
            page.wait_for_function("() => document.querySelectorAll('#heatmaps figure img').length === 3",
                                   timeout=300_000)     # each image voter's heatmap of the card on screen
            page.wait_for_timeout(500)
            raw = tmp / "raw.png"
            page.screenshot(path=str(raw), full_page=True)
            small_png(raw, OUT / "review.png")

            page.get_by_role("tab", name="Stats").click()
            page.wait_for_selector(".stats .stat")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(raw), full_page=True)
            small_png(raw, OUT / "stats.png")

            page.get_by_role("tab", name="Try it").click()
            page.get_by_label("Title").fill("Piscine tubulaire ronde 3,66 m avec pompe de filtration")
            page.get_by_label("Description").fill("Structure acier, liner renforcé, échelle et bâche incluses.")
            page.get_by_role("button", name="Predict").click()
            page.wait_for_selector("#try-top5 .t5-row", timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(raw), full_page=True)
            small_png(raw, OUT / "try-it.png")
            browser.close()
    for name in ("review.png", "stats.png", "try-it.png"):
        f = OUT / name
        print(f"{f}  {f.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
