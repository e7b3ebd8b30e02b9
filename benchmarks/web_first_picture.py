"""Time to the first picture in the web app, measured in a real browser (Playwright driving
Debian's chromium), and screenshots of its main views.

    python benchmarks/web_first_picture.py demo.msdb [--shots docs/images] [--runs 5]

Starts ``masksearch serve`` in this process on a free port, opens ``/?sql=...`` with the
demo's top-25 query (a cold server each run: no picture cached) and reports, per run, the
time from the navigation to the first card's picture being decoded, and to every picture of
the first screen. Screenshots are palette PNGs, small enough for docs/.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from urllib.parse import quote

from PIL import Image
from playwright.sync_api import Page, sync_playwright

from masksearch.web.config import ServeConfig
from masksearch.web.server import BackgroundServer

SQL = ("SELECT mask_id, image_id, model_id, label,\n"
       "       CP(mask, bbox, (0.6, 1.0]) / area(bbox) AS attn_in_box\n"
       "FROM masks\nORDER BY attn_in_box ASC LIMIT 25")
FIRST = ".card img"
ALL_VISIBLE = """imgs => imgs.filter(i => i.getBoundingClientRect().top < innerHeight)
                       .every(i => i.complete && i.naturalWidth > 0)"""


def _wait(page: Page, check: str, selector: str, timeout: float = 60) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if page.locator(selector).count() and page.locator(selector).evaluate_all(check):
            return time.perf_counter()
        time.sleep(0.005)
    raise TimeoutError(f"{selector}: not loaded after {timeout} s")


def one_run(browser, db: str, shots: Path | None) -> tuple[float, float]:
    with BackgroundServer(ServeConfig(db, port=0)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        start = time.perf_counter()
        page.goto(f"{url}?sql={quote(SQL)}")
        first = _wait(page, "imgs => imgs[0].complete && imgs[0].naturalWidth > 0", FIRST)
        every = _wait(page, ALL_VISIBLE, FIRST)
        if shots is not None:
            save_views(page, shots)
        page.close()
    return first - start, every - start


def shot(page: Page, path: Path, **options) -> None:
    page.screenshot(path=str(path), **options)
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def save_views(page: Page, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.locator("#compare").click()
    page.locator("#chart .bar").nth(1).wait_for()
    page.wait_for_timeout(500)
    shot(page, folder / "web-app.png")
    page.locator(".card").first.click()
    page.locator("#detail-img").wait_for()
    page.wait_for_timeout(800)
    shot(page, folder / "web-detail.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shots", type=Path, help="folder for the screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium)
        times = [one_run(browser, args.db, args.shots if k == 0 else None)
                 for k in range(args.runs)]
        browser.close()
    for k, (first, every) in enumerate(times):
        print(f"run {k}: first picture {first * 1e3:.0f} ms, first screen {every * 1e3:.0f} ms")
    print(f"median: first picture {statistics.median(t[0] for t in times) * 1e3:.0f} ms, "
          f"first screen {statistics.median(t[1] for t in times) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
