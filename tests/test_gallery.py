"""Results as pictures: the notebook HTML (cards, escaping of hostile values, the "more
rows" line, the CP term drawn, grouped rows with their aggregated masks), save_html,
contact_sheet, the CLI's --html and the shell's .gallery."""

from __future__ import annotations

import base64
import html
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import masksearch as ms
from masksearch.cli import main as cli_main
from masksearch.errors import MaskSearchError
from masksearch.render import OUTLINE_COLOUR
from masksearch.render.cards import Card, Gallery, Thumb
from masksearch.render.html import document_html, gallery_html
from masksearch.render.legend import LEGEND_HEIGHT
from masksearch.render.selection import in_range, range_cuts_of
from masksearch.render.sheet import PAD
from masksearch.repl.shell import Shell
from masksearch.result import Result

from .strategies import examples

N = 14
SIDE = 16
HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
           "it's \"quoted\" & <b>bold</b>", "plain"]


@pytest.fixture(scope="module")
def gdb(tmp_path_factory):
    """14 float masks of 16x16 on 7 images (two models each), hostile labels."""
    rng = np.random.default_rng(11)
    maps = rng.choice(np.array([0.0, 0.3, 0.55, 0.7, 0.9, 1.0], np.float32), (N, SIDE, SIDE))
    boxes = np.array([[i % 5, i % 4, 8 + i % 7, 9 + i % 6] for i in range(N)])
    db = ms.connect(tmp_path_factory.mktemp("gallery") / "g.msdb")
    db.ingest(maps, image_id=np.arange(N) // 2, model_id=np.arange(N) % 2,
              mask_type="saliency",
              metadata={"bbox": boxes, "label": [HOSTILE[i % 4] for i in range(N)]})
    return db, maps, boxes


class Page(HTMLParser):
    """Tags, attributes and cards of an HTML text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.cards: list[dict] = []
        self._fig: dict | None = None
        self.texts: list[str] = []
        self.cells: list[str] = []          # the text of every th and td, in order
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        cls = a.get("class") or ""
        if tag == "div" and "ms-card" in cls.split():
            self.cards.append({"mask_id": a.get("data-mask-id"), "pics": []})
        elif tag == "figure" and "ms-pic" in cls.split():
            self._fig = {"mask_id": a.get("data-mask-id")}
            self.cards[-1]["pics"].append(self._fig)
        elif tag == "img" and self._fig is not None:
            self._fig["src"] = a.get("src")
            self._fig["alt"] = a.get("alt")
        elif tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None
        elif tag in ("th", "td") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)


def picture(src: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src[len(prefix):]))).convert("RGB"))


def outline_of(rgb: np.ndarray) -> np.ndarray:
    return (rgb[:-LEGEND_HEIGHT] == np.array(OUTLINE_COLOUR, np.uint8)).all(axis=2)


def oracle_outline(region: np.ndarray) -> np.ndarray:
    p = np.pad(region, 1, constant_values=False)
    return region & ~(p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:])


def expected_outline(pixels, box, range_text, scale=10) -> np.ndarray:
    """The outline a 16x16 mask gets at 160 px (10x): the boundary of its counted pixels."""
    counted = np.zeros(pixels.shape, bool)
    x0, y0, x1, y1 = box
    counted[y0:y1, x0:x1] = in_range(pixels[y0:y1, x0:x1], range_cuts_of(range_text))
    return oracle_outline(np.kron(counted, np.ones((scale, scale), bool)).astype(bool))


def assert_safe(text: str) -> None:
    """No script, no event handler attribute, no external resource; hostile strings only
    escaped."""
    page = Page(text)
    for tag, attrs in page.tags:
        assert tag not in ("script", "iframe", "object", "embed", "link")
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href"):
                assert value is not None
                assert value.startswith(("data:image/png;base64,", "#")), value
    assert "<script" not in text.lower()
    assert "<img src=x" not in text
    assert "<b>bold" not in text


# --- the notebook view ----------------------------------------------------------------------


def test_hostile_metadata_is_escaped(gdb):
    db, _, _ = gdb
    text = db.query("SELECT mask_id, label, image_id FROM masks")._repr_html_()
    assert_safe(text)
    for value in HOSTILE:
        assert html.escape(value, quote=True) in text
    # The escaped values read back as the stored strings.
    assert set(HOSTILE) <= set(Page(text).texts)


def test_hostile_column_names_and_aliases_are_escaped(gdb):
    db, _, _ = gdb
    result = Result(pa.table({'"><script>x</script>': ["<i>v</i>"]}), db.query(
        "SELECT mask_id FROM masks LIMIT 1").stats)
    text = result._repr_html_()
    assert_safe(text)
    assert "&quot;&gt;&lt;script&gt;x&lt;/script&gt;" in text
    assert "no pictures" in text


def test_cards_and_the_more_rows_line(gdb, tmp_path):
    """Up to 50 cards and a line saying how many rows are not shown; none when all are."""
    db, _, _ = gdb
    wide = ms.connect(tmp_path / "wide.msdb")
    wide.ingest(np.zeros((73, 4, 4), np.float32), image_id=np.arange(73))
    text = wide.query("SELECT mask_id FROM masks")._repr_html_()
    page = Page(text)
    assert len(page.cards) == 50
    assert [c["mask_id"] for c in page.cards] == [str(i) for i in range(50)]
    assert "23 more rows not shown" in text
    text = db.query("SELECT mask_id FROM masks")._repr_html_()
    assert len(Page(text).cards) == N
    assert "not shown" not in text
    one_more = wide.query("SELECT mask_id FROM masks LIMIT 51")._repr_html_()
    assert "1 more row not shown" in one_more


@pytest.mark.parametrize(("sql", "box_of", "range_text"), [
    # ORDER BY's term wins over WHERE's and the select list's.
    ("SELECT mask_id, CP(mask, full, (0.2, 1.0]) AS a FROM masks "
     "WHERE CP(mask, bbox, (0.6, 1.0]) > 3 ORDER BY CP(mask, box(2, 3, 12, 14), [0.7, 0.9]) "
     "DESC", "box", "[0.7, 0.9]"),
    # Then WHERE's.
    ("SELECT mask_id, CP(mask, full, (0.2, 1.0]) AS a FROM masks "
     "WHERE CP(mask, bbox, (0.6, 1.0]) > 3", "bbox", "(0.6, 1.0]"),
    # Then the select list's; mask_id not selected: found by running the query again.
    ("SELECT label, CP(mask, full, (0.2, 0.7]) AS a FROM masks ORDER BY label", "full",
     "(0.2, 0.7]"),
])
def test_each_card_draws_the_query_term(gdb, sql, box_of, range_text):
    """Every card's picture outlines exactly the pixels of the chosen CP term (checked
    against the oracle at 10x), and the cards are the result's rows in order."""
    db, maps, boxes = gdb
    ids = db.query(sql.replace("SELECT ", "SELECT mask_id AS id_, ", 1)).to_arrow().column("id_").to_pylist()
    page = Page(db.query(sql)._repr_html_())
    assert [int(c["mask_id"]) for c in page.cards] == ids
    assert ids
    for card in page.cards:
        mask_id = int(card["mask_id"])
        (pic,) = card["pics"]
        box = {"box": (2, 3, 12, 14), "bbox": tuple(boxes[mask_id]),
               "full": (0, 0, SIDE, SIDE)}[box_of]
        rgb = picture(pic["src"])
        assert rgb.shape == (160 + LEGEND_HEIGHT, 160, 3)
        assert np.array_equal(outline_of(rgb), expected_outline(maps[mask_id], box,
                                                                range_text))


def test_card_metadata_and_values(gdb):
    db, _, boxes = gdb
    page = Page(db.query("SELECT mask_id, CP(mask, bbox, (0.6, 1.0]) AS hot FROM masks "
                         "WHERE mask_id = 5")._repr_html_())
    texts = page.texts
    assert len(page.cards) == 1
    want = db.query("SELECT CP(mask, bbox, (0.6, 1.0]) FROM masks WHERE mask_id = 5").rows()
    assert str(want[0][0]) in texts
    x0, y0, x1, y1 = boxes[5]
    assert f"box({x0}, {y0}, {x1}, {y1})" in texts
    assert HOSTILE[5 % 4] in texts            # the label, a metadata value
    assert "model_id" in texts


def test_grouped_rows_show_members_and_aggregated_masks(gdb):
    """IoU per image: each card shows the group's two members and its intersect and union
    masks, each outlined as its own CP term counts (against np.minimum/np.maximum)."""
    db, maps, _ = gdb
    sql = ("SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / "
           "CP(union(mask), full, (0.5, 1.0]) AS iou FROM masks "
           "WHERE model_id IN (0, 1) GROUP BY image_id ORDER BY iou DESC LIMIT 4")
    result = db.query(sql)
    page = Page(result._repr_html_())
    assert len(page.cards) == 4
    full = (0, 0, SIDE, SIDE)
    for card, (image_id, _iou) in zip(page.cards, result.rows(), strict=True):
        members = [2 * image_id, 2 * image_id + 1]
        pics = card["pics"]
        assert [p["alt"] for p in pics] == [f"mask {members[0]}", f"mask {members[1]}",
                                            "intersect of 2 masks", "union of 2 masks"]
        assert [p["mask_id"] for p in pics[:2]] == [str(m) for m in members]
        a, b = maps[members[0]], maps[members[1]]
        for pic, pixels in zip(pics, [a, b, np.minimum(a, b), np.maximum(a, b)],
                               strict=True):
            assert np.array_equal(outline_of(picture(pic["src"])),
                                  expected_outline(pixels, full, "(0.5, 1.0]"))


def test_group_keys_not_selected_and_a_filtered_group(gdb):
    """A grouped query that selects no key: keys come from running it again; WHERE picks
    the members (here one model per image: one member, an aggregate of one)."""
    db, _, _ = gdb
    sql = ("SELECT AVG(CP(mask, bbox, (0.6, 1.0])) AS hot FROM masks WHERE model_id = 1 "
           "GROUP BY image_id ORDER BY hot DESC LIMIT 3")
    keys = db.query(sql.replace("SELECT ", "SELECT image_id, ", 1)).to_arrow().column("image_id").to_pylist()
    page = Page(db.query(sql)._repr_html_())
    assert [[p["mask_id"] for p in c["pics"]] for c in page.cards] == \
        [[str(2 * k + 1)] for k in keys]


def test_results_without_pictures(gdb):
    """EXPLAIN and results made by hand show their values only, escaped."""
    db, _, _ = gdb
    text = db.query("EXPLAIN SELECT mask_id FROM masks")._repr_html_()
    assert_safe(text)
    assert "no pictures" in text
    assert all(not c["pics"] for c in Page(text).cards)


_texts = st.text(st.sampled_from(list("<>\"'&=/ ;:ab\u00e9\u202e\n")) | st.characters(),
                 max_size=24)


@settings(max_examples=examples(200))
@given(fields=st.lists(st.tuples(_texts, _texts), min_size=1, max_size=4),
       meta=st.lists(st.tuples(_texts, _texts), max_size=3), title=_texts,
       mask_id=st.none() | st.integers(-5, 10**12))
def test_any_text_is_escaped_and_reads_back(fields, meta, title, mask_id):
    """Whatever the names, values and titles hold, the page's tags are only the gallery's
    own and every text reads back exactly as given (in the notebook fragment and the
    document)."""
    card = Card(tuple(fields), tuple(meta), (Thumb(b"\x89PNG", title, mask_id),), mask_id)
    gallery = Gallery([card], 3, term=title, note=None)
    for text in (gallery_html(gallery), document_html(gallery, title, 5)):
        assert {tag for tag, _ in Page(text).tags} <= ALLOWED_TAGS
        page = Page(text)
        assert page.cards[0]["mask_id"] == (None if mask_id is None else str(mask_id))
        assert page.cards[0]["pics"][0]["alt"] == title
        assert page.cells == [t for pair in [*fields, *meta] for t in pair]


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "div", "pre", "section",
                "nav", "a", "figure", "img", "figcaption", "table", "tr", "th", "td"}


# --- files ----------------------------------------------------------------------------------


def test_save_html_is_one_self_contained_paged_file(gdb, tmp_path):
    db, _, _ = gdb
    result = db.query("SELECT mask_id, label FROM masks ORDER BY mask_id")
    path = tmp_path / "out.html"
    assert result.save_html(path, per_page=5) == N
    text = path.read_text(encoding="utf-8")
    assert_safe(text)
    assert text.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in text
    page = Page(text)
    sections = [a.get("id") for t, a in page.tags if t == "section"]
    assert sections == ["p1", "p2", "p3"]
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert set(links) == {"#p1", "#p2", "#p3"}
    assert len(page.cards) == N
    assert "SELECT mask_id, label FROM masks ORDER BY mask_id" in page.texts
    # max_rows cuts, and says so.
    assert result.save_html(path, max_rows=4) == 4
    text = path.read_text(encoding="utf-8")
    assert len(Page(text).cards) == 4
    assert f"{N - 4} more rows not shown" in text
    with pytest.raises(MaskSearchError):
        result.save_html(path, per_page=0)


def test_contact_sheet_holds_every_picture(gdb, tmp_path):
    """One PNG; tile k is card k's picture, in rows of ``columns``."""
    db, _, _ = gdb
    sql = "SELECT mask_id, CP(mask, bbox, (0.6, 1.0]) AS hot FROM masks ORDER BY hot DESC"
    result = db.query(sql)
    path = tmp_path / "sheet.png"
    assert result.contact_sheet(path, columns=4, size=40) == N
    sheet = np.asarray(Image.open(path).convert("RGB"))
    ids = [r[0] for r in result.rows()]
    tile_h = 40 + LEGEND_HEIGHT
    cell_w = 40 + PAD
    cell_h = tile_h + 14 + PAD
    assert sheet.shape[:2] == (4 * cell_h + PAD, 4 * cell_w + PAD)
    for k, mask_id in enumerate(ids):
        x, y = PAD + (k % 4) * cell_w, PAD + (k // 4) * cell_h
        want = np.asarray(db.render(mask_id, roi="bbox", range="(0.6, 1.0]", size=40))
        assert np.array_equal(sheet[y:y + tile_h, x:x + 40], want)
    with pytest.raises(MaskSearchError, match="contact sheet"):
        db.query("EXPLAIN SELECT mask_id FROM masks").contact_sheet(path)


# --- the CLI and the shell ------------------------------------------------------------------


def test_cli_query_html(gdb, tmp_path, capsys):
    db, _, _ = gdb
    path = tmp_path / "cli.html"
    code = cli_main(["query", db.path, "SELECT mask_id, label FROM masks LIMIT 3",
                     "--html", str(path)])
    captured = capsys.readouterr()
    assert code == 0
    assert "mask_id" in captured.out
    assert f"wrote 3 cards to {path}" in captured.err
    page = Page(path.read_text(encoding="utf-8"))
    assert [c["mask_id"] for c in page.cards] == ["0", "1", "2"]
    assert_safe(path.read_text(encoding="utf-8"))


def test_shell_gallery(gdb, tmp_path):
    db, _, _ = gdb
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(db, out=out, err=err)
    path = tmp_path / "shell.html"
    shell.run(f".gallery {path}\n")
    assert "run a statement first" in err.getvalue()
    assert not path.exists()
    shell.run("SELECT mask_id, label FROM masks WHERE model_id = 1;\n"
              f".gallery {path}\n")
    assert f"wrote {N // 2} cards of the last result to {path}" in err.getvalue()
    page = Page(path.read_text(encoding="utf-8"))
    assert [c["mask_id"] for c in page.cards] == [str(i) for i in range(1, N, 2)]
    shell.run(".gallery\n")
    assert ".gallery takes one file name" in err.getvalue()
    shell.run(f".gallery {tmp_path / 'no-such-dir' / 'x.html'}\n")
    assert "error: .gallery" in err.getvalue()
    assert shell.failures == 3
    assert not Path(tmp_path / "no-such-dir").exists()
