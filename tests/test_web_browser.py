"""The web app in a real browser: Playwright driving Debian's chromium against a server the
tests start on a free port. Load the page, build a query with the builder, run it and
compare the cards with db.query, page, open a detail view, see a syntax error marked, run
with the index on and off, cancel a long query, and hostile metadata that must not run.

Screenshots go to the test's folder, and to $MASKSEARCH_SCREENSHOTS when set (docs/images
holds small ones from such a run). Without chromium or Playwright the tests skip, except in
CI (CI=true), where they fail: .ci/run installs chromium.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest

import masksearch as ms

from .web_fixture import HOSTILE, N, build

CHROMIUM = "/usr/bin/chromium"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed (pip install -e '.[dev]')"
    if not os.path.exists(CHROMIUM):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


if (_reason := _missing()) is not None:
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests cannot run in CI: {_reason}")
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from masksearch.web.config import ServeConfig  # noqa: E402
from masksearch.web.server import BackgroundServer  # noqa: E402

from .slowdown import slow_down_verification  # noqa: E402

TOP = "SELECT mask_id, label, CP(mask, bbox, (0.6, 1.0]) AS hot FROM masks ORDER BY hot DESC LIMIT 40"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path, _, _ = build(tmp_path_factory.mktemp("webbrowser"))
    with BackgroundServer(ServeConfig(str(path), port=0)) as url, \
            ms.connect(path, read_only=True) as db:
        yield url, db


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


class Watch:
    """What the page did that it must not: script errors, dialogs (alert), failed requests."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))


@pytest.fixture
def page(browser, request, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.watch = Watch(pg)
    pg.shots = tmp_path
    yield pg
    context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(page.shots / name))
    folder = os.environ.get("MASKSEARCH_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def open_app(page: Page, url: str, sql: str | None = None, index: bool = True) -> None:
    query = "" if sql is None else f"?sql={quote(sql)}" + ("" if index else "&index=off")
    page.goto(url + query)
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)


def card_ids(page: Page) -> list[int]:
    return [int(v) for v in page.locator(".card").evaluate_all(
        "cards => cards.map(c => c.dataset.maskId)")]


def wait_loaded(img, timeout: float = 15) -> None:
    """Until the image has loaded (wait_for_function would need eval, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not img.evaluate("i => i.complete && i.naturalWidth > 0"):
        assert time.monotonic() < deadline, "the image did not load"
        time.sleep(0.05)


def test_page_loads_with_the_databases_columns_and_counts(served, page):
    url, db = served
    open_app(page, url)
    names = page.locator("#columns > li").evaluate_all("l => l.map(x => x.dataset.column)")
    assert names == list(db.columns())
    assert page.locator("#db-summary").inner_text().split("\n")[1] == str(N)
    label = page.locator("#columns > li[data-column=label]").inner_text()
    for value, n in db.query("SELECT label, COUNT(*) AS n FROM masks GROUP BY label").rows():
        assert value in label
        assert str(n) in label
    assert page.watch.errors == []


def test_builder_writes_a_query_that_runs_and_the_cards_are_db_querys(served, page):
    url, db = served
    open_app(page, url)
    form = page.locator("#builder-form")
    form.locator("select[name=roi]").select_option("bbox")
    form.locator("select[name=measure]").select_option("share")
    form.locator("input[name=lo]").fill("0.5")
    form.locator("select[name=mode]").select_option("topk")
    form.locator("input[name=k]").fill("12")
    form.locator("select[name=order]").select_option("ASC")
    form.locator("input[name=where]").fill("model_id = 1")
    page.click("#builder-run")
    expect(page.locator("#status")).to_have_class("ok", timeout=30_000)
    sql = page.locator("#sql").input_value()
    assert sql == ("SELECT mask_id, image_id, CP(mask, bbox, (0.5, 1.0]) / area(bbox) AS score\n"
                   "FROM masks\nWHERE model_id = 1\nORDER BY score ASC\nLIMIT 12")
    want = [r["mask_id"] for r in db.query(sql).to_pylist()]
    assert len(want) == 12
    assert card_ids(page) == want
    assert "sql=" in page.url
    page.locator(".card img").first.evaluate("img => img.decode()")
    shot(page, "web-builder.png")
    assert page.watch.errors == []


def test_a_box_drawn_on_the_sample_mask_goes_into_the_query(served, page):
    url, _ = served
    open_app(page, url)
    page.locator("#builder-form select[name=roi]").select_option("__drawn")
    img = page.locator(".draw-img")
    expect(img).to_be_visible()
    wait_loaded(img)
    box = img.bounding_box()
    scale = box["width"] / 32                     # the sample mask is 32 pixels wide
    page.mouse.move(box["x"] + 4 * scale + 1, box["y"] + 6 * scale + 1)
    page.mouse.down()
    page.mouse.move(box["x"] + 20 * scale + 1, box["y"] + 25 * scale + 1, steps=5)
    page.mouse.up()
    page.click("#builder-write")
    assert "CP(mask, box(4, 6, 20, 25), (0.6, 1.0])" in page.locator("#sql").input_value()


def test_the_url_opens_the_query_and_pages_through_it(served, page):
    url, db = served
    open_app(page, url, TOP)
    expect(page.locator("#status")).to_have_class("ok", timeout=30_000)
    want = [r["mask_id"] for r in db.query(TOP).to_pylist()]
    assert card_ids(page) == want[:24]
    page.click("#next")
    expect(page.locator("#page-info")).to_have_text("rows 25-40 of 40")
    assert card_ids(page) == want[24:]
    page.locator("input[name=view][value=table]").check()
    rows = page.locator("table.rows tbody tr").evaluate_all("r => r.map(x => x.dataset.maskId)")
    assert [int(v) for v in rows] == want[24:]
    page.click("#prev")
    expect(page.locator("#page-info")).to_have_text("rows 1-24 of 40")
    assert [int(v) for v in page.locator("table.rows tbody tr").evaluate_all(
        "r => r.map(x => x.dataset.maskId)")] == want[:24]


def test_a_card_opens_the_detail_view(served, page):
    url, db = served
    open_app(page, url, TOP)
    expect(page.locator("#status")).to_have_class("ok", timeout=30_000)
    first = page.locator(".card").first
    mask_id = int(first.get_attribute("data-mask-id"))
    first.click()
    dialog = page.locator("#detail")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("data-mask-id", str(mask_id))
    row = db.query(f"SELECT * FROM masks WHERE mask_id = {mask_id}").to_pylist()[0]
    expect(page.locator("#detail-meta tr")).to_have_count(len(row))
    meta = page.locator("#detail-meta").inner_text()
    for key in ("label", "image_id", "bbox"):
        assert key in meta
    assert row["label"] in meta
    hot = db.query(TOP).to_pylist()[0]["hot"]
    assert page.locator("#detail-values").inner_text().split("\n")[-1].split()[-1] == str(hot)
    wait_loaded(page.locator("#detail-img"))
    before = page.locator("#zoom-level").inner_text()
    page.click("#zoom-in")
    assert page.locator("#zoom-level").inner_text() != before
    page.click("#zoom-fit")
    shot(page, "web-detail.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.watch.errors == []


def test_a_syntax_error_is_marked_at_its_line_and_column(served, page):
    url, db = served
    open_app(page, url)
    sql = "SELECT mask_id,\n       CP(mask, full, (0.5 1.0]) AS hot\nFROM masks"
    with pytest.raises(ms.QuerySyntaxError) as raised:
        db.query(sql)
    page.fill("#sql", sql)
    page.click("#run")
    mark = page.locator("#sql-highlight .err-mark")
    expect(mark).to_have_count(1)
    e = raised.value
    expect(page.locator("#sql-error")).to_contain_text(f"line {e.line}, column {e.column}")
    assert mark.inner_text() == sql.split("\n")[e.line - 1][e.column - 1]
    shot(page, "web-error.png")
    page.fill("#sql", "SELECT mask_id FROM masks")
    expect(mark).to_have_count(0)


def test_index_on_and_off_chart_and_explain_analyze(served, page):
    url, db = served
    sql = ("SELECT mask_id, CP(mask, bbox, (0.6, 1.0]) / area(bbox) AS inside FROM masks "
           "WHERE inside < 0.1")
    open_app(page, url)
    page.fill("#sql", sql)
    page.click("#compare")
    expect(page.locator("#chart .bar")).to_have_count(2, timeout=30_000)
    expect(page.locator("#status")).to_have_class("ok", timeout=30_000)
    on, off = db.query(sql).stats, db.query(sql, use_index=False).stats
    times = page.locator("#chart .bar-time").all_text_contents()
    assert times[0].endswith(f"{on.verified} of {N} read")
    assert times[1].endswith(f"{off.verified} of {N} read")
    assert card_ids(page) == [r["mask_id"] for r in db.query(sql).to_pylist()][:24]
    shot(page, "web-chart.png")
    page.click("#explain")
    expect(page.locator("#plan")).to_contain_text("Verify", timeout=30_000)
    assert f"verified (pixels read): {on.verified} masks" in page.locator("#plan").inner_text()


@pytest.fixture
def slow_counts(monkeypatch):
    """Verification at 50 ms per mask (the server runs in this process): seconds a query."""
    slow_down_verification(monkeypatch, 0.05)


def test_a_long_query_shows_progress_and_cancels(served, page, slow_counts):
    url, _ = served
    open_app(page, url)
    page.fill("#sql", "SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 10")
    page.locator("#use-index").uncheck()
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("masks read", timeout=10_000)
    expect(page.locator("#progress")).to_be_visible()
    assert page.locator("#progress").evaluate(f"p => p.value > 0 && p.max === {N}")
    shot(page, "web-progress.png")
    start = time.monotonic()
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("query cancelled", timeout=10_000)
    assert time.monotonic() - start < 5
    expect(page.locator("#cancel")).to_be_disabled()
    expect(page.locator("#run")).to_be_enabled()


def test_hostile_metadata_is_shown_as_text_and_never_runs(served, page):
    url, db = served
    sql = "SELECT mask_id, label, image_path FROM masks WHERE mask_id < 24"
    open_app(page, url, sql)
    expect(page.locator("#status")).to_have_class("ok", timeout=30_000)
    captions = page.locator("#grid").inner_text()
    side = page.locator("#columns").inner_text()
    for text in HOSTILE:
        assert text in captions
        assert text in side
    page.locator(".card").nth(3).click()          # mask 3: label '"><img src=x onerror=...>'
    expect(page.locator("#detail-meta")).to_contain_text(HOSTILE[1])
    page.keyboard.press("Escape")
    page.locator("input[name=view][value=table]").check()
    assert HOSTILE[0] in page.locator("#table-view").inner_text()
    page.wait_for_timeout(300)
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("script:not([src])").count() == 0
    assert page.watch.dialogs == []
    assert page.watch.errors == []
    rows = db.query(sql).to_pylist()
    assert sum(r["label"] in HOSTILE for r in rows) == 16


@pytest.mark.parametrize(("sql", "fails"), [
    ("<script>alert(1)</script>", True),
    ("SELECT mask_id FROM masks WHERE label = '\"><img src=x onerror=alert(2)>' AND", True),
    ("SELECT mask_id, '<img src=x onerror=alert(3)>' AS x FROM masks LIMIT 2", False),
])
def test_hostile_query_text_in_the_url_and_in_errors_never_runs(served, page, sql, fails):
    url, _ = served
    open_app(page, url, sql)
    if fails:
        expect(page.locator("#sql-error")).to_be_visible()
    else:
        expect(page.locator(".card")).to_have_count(2)
        assert "<img src=x onerror=alert(3)>" in page.locator("#grid").inner_text()
    assert page.locator("#sql").input_value() == sql
    assert sql in page.locator("#sql-highlight").inner_text()
    page.wait_for_timeout(200)
    assert page.locator("img[src=x]").count() == 0
    assert page.watch.dialogs == []
    assert page.watch.errors == []


def test_grouped_rows_show_their_members_and_aggregated_masks(served, page):
    url, db = served
    sql = ("SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / "
           "CP(union(mask), full, (0.5, 1.0]) AS iou\nFROM masks\nGROUP BY image_id\n"
           "ORDER BY iou DESC LIMIT 6")
    open_app(page, url, sql)
    expect(page.locator(".card .thumbs")).to_have_count(6, timeout=30_000)
    rows = db.query(sql).to_pylist()
    cards = page.locator(".card")
    for k, row in enumerate(rows):
        assert cards.nth(k).get_attribute("data-image-id") == str(row["image_id"])
        members = [r["mask_id"] for r in db.query(
            f"SELECT mask_id FROM masks WHERE image_id = {row['image_id']}").to_pylist()]
        shown = cards.nth(k).locator("[data-member-id]").evaluate_all(
            "m => m.map(x => Number(x.dataset.memberId))")
        assert shown == members
        assert cards.nth(k).locator(".member figcaption").all_inner_texts()[-2:] == \
            [f"intersect of {len(members)} masks", f"union of {len(members)} masks"]
    shot(page, "web-groups.png")
    cards.first.locator("[data-member-id]").first.click()
    expect(page.locator("#detail")).to_have_attribute("data-mask-id", str(members_of(db, rows[0])))
    assert page.watch.errors == []


def members_of(db, row) -> int:
    return db.query(f"SELECT mask_id FROM masks WHERE image_id = {row['image_id']} "
                    "ORDER BY mask_id LIMIT 1").to_pylist()[0]["mask_id"]
