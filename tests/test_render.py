"""Rendering masks as pictures: the overlay rules pixel by pixel against a NumPy oracle, the
count against the engine's CP, sizes, kinds, source images, the image root and its
settings file, and the confinement of source images to the root with hostile paths."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import masksearch as ms
from masksearch.errors import MaskSearchError, StoreError
from masksearch.render import OUTLINE_COLOUR, ROI_COLOUR, draw, resolve_image
from masksearch.render.colormap import LUT
from masksearch.render.kinds import style_of
from masksearch.render.legend import LEGEND_HEIGHT
from masksearch.render.overlay import BASE_COLOUR
from masksearch.render.palette import PALETTE, TINT
from masksearch.render.selection import in_range, range_cuts_of
from masksearch.store.settings import SETTINGS

from .oracle import range_text
from .strategies import boxes, examples, masks, value_ranges

# --- the oracle -----------------------------------------------------------------------------


def oracle_counted(pixels: np.ndarray, box, rng) -> np.ndarray:
    """(H, W) bool: the pixels CP counts, by the definition: inside the clipped box, value
    in the range compared as float64 with the range's ends (NaN never)."""
    lo, lo_closed, hi, hi_closed = rng
    h, w = pixels.shape
    ys, xs = np.mgrid[0:h, 0:w]
    x0, y0, x1, y1 = box
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    v = pixels.astype(np.float64)
    with np.errstate(invalid="ignore"):
        above = v >= lo if lo_closed else v > lo
        below = v <= hi if hi_closed else v < hi
    return inside & above & below


def oracle_outline(region: np.ndarray) -> np.ndarray:
    """The pixels of ``region`` with a side-neighbour outside it or off the picture, by
    padding with False and looking at the four neighbours."""
    p = np.pad(region, 1, constant_values=False)
    all_in = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return region & ~all_in


def upscale(region: np.ndarray, s: int) -> np.ndarray:
    return np.kron(region, np.ones((s, s), bool)).astype(bool)


def painted(rgb: np.ndarray, colour) -> np.ndarray:
    return (rgb == np.array(colour, np.uint8)).all(axis=2)


def test_outline_and_roi_colours_never_arise_from_the_mask_layers():
    """The pixel-exact checks below read the outline from the picture by its colour: no
    colormap, palette, tint or base colour (alone or blended over the base) equals it."""
    base = np.array(BASE_COLOUR, np.float32)
    colours = [*LUT, *PALETTE, np.rint(base * 0.2 + TINT.astype(np.float32) * 0.8),
               base, np.array((128, 128, 128))]
    used = {tuple(int(c) for c in colour) for colour in colours}
    assert tuple(OUTLINE_COLOUR) not in used
    assert tuple(OUTLINE_COLOUR) != tuple(ROI_COLOUR)


@settings(max_examples=examples(300))
@given(data=st.data(), scale=st.integers(1, 4))
def test_outlined_pixels_are_exactly_those_in_range_and_roi(data, scale):
    """On tiny masks of every dtype, boxes sticking out or missing, every kind of range:
    the picture's outline-coloured pixels are exactly the boundary of the counted pixels
    upscaled, the counted pixels are the oracle's, and the count is their number."""
    pixels = data.draw(masks(max_side=12))
    h, w = pixels.shape
    box = data.draw(boxes(h, w))
    rng = data.draw(value_ranges(pixels))
    cuts = range_cuts_of(range_text(rng))
    pic = draw(pixels, style_of(pixels), box=box, cuts=cuts, size=(w * scale, h * scale))
    want = oracle_counted(pixels, box, rng)
    assert np.array_equal(pic.counted, want)
    assert pic.count == int(want.sum())
    outline = oracle_outline(upscale(want, scale))
    assert np.array_equal(pic.outline, outline)
    assert np.array_equal(painted(pic.rgb, OUTLINE_COLOUR), outline)
    # Every outlined picture pixel shows a counted mask pixel; every counted mask pixel's
    # block is enclosed: its pixels are outlined or have all four neighbours counted.
    blocks = upscale(want, scale)
    assert not (pic.outline & ~blocks).any()


@settings(max_examples=examples(100))
@given(data=st.data())
def test_roi_frame_is_the_boundary_of_the_region(data):
    """Without a range the ROI's frame is painted: exactly the region's boundary pixels
    (upscaled), none for the full mask; nothing is outlined or counted."""
    pixels = data.draw(masks(max_side=10))
    h, w = pixels.shape
    box = data.draw(boxes(h, w))
    scale = data.draw(st.integers(1, 3))
    pic = draw(pixels, style_of(pixels), box=box, cuts=None, size=(w * scale, h * scale))
    ys, xs = np.mgrid[0:h, 0:w]
    x0, y0, x1, y1 = box
    region = upscale((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1), scale)
    full = region.all()
    want = np.zeros_like(region) if full else oracle_outline(region)
    assert np.array_equal(pic.frame, want)
    assert np.array_equal(painted(pic.rgb, ROI_COLOUR), want)
    assert pic.count is None
    assert not pic.outline.any()


def test_a_hand_made_mask_is_outlined_where_it_should_be():
    """A 4x5 float mask, box(1, 0, 4, 3), range (0.5, 1.0] at 3x: the counted pixels and
    the outline written out by hand."""
    pixels = np.array([[0.9, 0.9, 0.2, 0.7, 1.0],
                       [0.1, 0.6, 0.8, 0.5, 0.9],
                       [0.0, 0.7, np.nan, 0.55, 0.3],
                       [1.0, 1.0, 1.0, 1.0, 1.0]], np.float32)
    pic = draw(pixels, style_of(pixels), box=(1, 0, 4, 3), cuts=range_cuts_of("(0.5, 1.0]"),
               size=(15, 12))
    counted = np.array([[0, 1, 0, 1, 0],
                        [0, 1, 1, 0, 0],
                        [0, 1, 0, 1, 0],
                        [0, 0, 0, 0, 0]], bool)
    assert np.array_equal(pic.counted, counted)
    assert pic.count == 6
    # Column 1's three pixels form one 9x3 block: its middle column (rows 1-7) is inside,
    # and so are its right column's rows 3-5, next to pixel (1, 2)'s block: 27 - 7 - 3.
    assert pic.outline[0:9, 3:6].sum() == 17
    assert not pic.outline[1:8, 4].any()
    assert not pic.outline[3:6, 5].any()
    assert np.array_equal(pic.outline, oracle_outline(upscale(counted, 3)))
    assert not pic.outline[9:].any()        # the last row is outside the box


# --- the count against the engine -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory):
    rng = np.random.default_rng(5)
    maps = rng.choice(np.array([0.0, 0.25, 0.5, 0.6, 0.75, 1.0], np.float32), (12, 9, 11))
    boxes_ = np.array([[i % 4, i % 3, 4 + i % 7, 3 + i % 6] for i in range(12)])
    db = ms.connect(tmp_path_factory.mktemp("tiny") / "tiny.msdb")
    db.ingest(maps, image_id=np.arange(12), mask_type="saliency", metadata={"bbox": boxes_})
    return db, maps, boxes_


@pytest.mark.parametrize("range_", ["(0.5, 1.0]", "[0.25, 0.6]", "(-inf, 0.25)", "[1, 1]"])
def test_render_outlines_what_the_query_counts(tiny_db, range_):
    """db.render(id, roi='bbox', range=...) at 4x outlines exactly the pixels whose number
    the engine's CP gives, for every mask."""
    db, maps, boxes_ = tiny_db
    counts = dict(db.query(f"SELECT mask_id, CP(mask, bbox, {range_}) FROM masks").rows())
    cuts = range_cuts_of(range_)
    for mask_id, count in counts.items():
        img = db.render(mask_id, roi="bbox", range=range_, size=44, legend=False)
        assert img.size == (44, 36)
        assert img.mode == "RGB"
        rgb = np.asarray(img)
        x0, y0, x1, y1 = boxes_[mask_id]
        want = np.zeros((9, 11), bool)
        want[y0:y1, x0:x1] = in_range(maps[mask_id][y0:y1, x0:x1], cuts)
        assert int(want.sum()) == count
        assert np.array_equal(painted(rgb, OUTLINE_COLOUR), oracle_outline(upscale(want, 4)))


def test_roi_and_range_arguments(tiny_db):
    """ROI as a box tuple, 'full' or a box column; range as a text or (lo, hi) = (lo, hi];
    a range without a ROI counts over the full mask; bad arguments are refused."""
    db, maps, _ = tiny_db
    a = np.asarray(db.render(3, roi=(0, 0, 11, 9), range=(0.5, 1.0), legend=False))
    b = np.asarray(db.render(3, roi="full", range="(0.5, 1.0]", legend=False))
    c = np.asarray(db.render(3, range="(0.5, 1.0]", legend=False))
    assert np.array_equal(a, b)
    assert np.array_equal(b, c)
    want = (maps[3] > 0.5) & (maps[3] <= 1.0)
    assert np.array_equal(painted(a, OUTLINE_COLOUR), oracle_outline(want))
    with pytest.raises(MaskSearchError, match="not a box column"):
        db.render(3, roi="label")
    with pytest.raises(MaskSearchError):
        db.render(3, roi=(1, 2, 3))
    with pytest.raises(MaskSearchError):
        db.render(3, range="(1.0, 0.5]")
    with pytest.raises(MaskSearchError):
        db.render(3, range=(0.9, 0.1))
    with pytest.raises(StoreError, match="does not exist"):
        db.render(999)


def test_sizes_and_the_legend(tiny_db):
    """size None is native, an int the longest side (aspect kept), (w, h) exact; the legend
    adds LEGEND_HEIGHT rows under the picture."""
    db, _, _ = tiny_db
    assert db.render(0, legend=False).size == (11, 9)
    assert db.render(0).size == (11, 9 + LEGEND_HEIGHT)
    assert db.render(0, size=110, legend=False).size == (110, 90)
    assert db.render(0, size=(30, 20), legend=False).size == (30, 20)
    with pytest.raises(ValueError, match="positive"):
        db.render(0, size=0)
    png = db.render_png(0, roi="bbox", range="(0.5, 1]", size=64)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert db.render_png(0, roi="bbox", range="(0.5, 1]", size=64) is png      # cached
    again = Image.open(io.BytesIO(png))
    assert np.array_equal(np.asarray(again.convert("RGB")),
                          np.asarray(db.render(0, roi="bbox", range="(0.5, 1]", size=64)))


# --- kinds ----------------------------------------------------------------------------------


def test_kinds_follow_dtype_values_and_mask_type():
    assert style_of(np.zeros((2, 2), bool)).kind == "binary"
    assert style_of(np.array([[0, 255]], np.uint8)).kind == "binary"
    assert style_of(np.array([[0, 3, 7]], np.uint8)).kind == "label"
    assert style_of(np.arange(100, dtype=np.uint8).reshape(10, 10)).kind == "float"
    assert style_of(np.arange(100, dtype=np.uint8).reshape(10, 10), "segmentation").kind \
        == "label"
    assert style_of(np.array([[0, 3, 7]], np.uint8), "saliency").kind == "float"
    f = style_of(np.array([[0.0, 0.4]], np.float32))
    assert (f.kind, f.lo, f.hi) == ("float", 0.0, 1.0)
    d = style_of(np.array([[2.0, 7.5, np.nan]], np.float32), "depth")
    assert (d.kind, d.lo, d.hi) == ("float", 2.0, 7.5)


def test_colormap_lightness_rises():
    """The colormap is perceptual: its lightness (Rec. 709 luma) rises with the value
    (entry to entry up to the rounding to 8 bits; strictly over every 4 entries)."""
    luma = LUT.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(luma) > -0.5).all()
    assert (np.diff(luma[::4]) > 0).all()
    assert luma[-1] - luma[0] > 150
    assert LUT.shape == (256, 3)


def test_label_and_binary_colours():
    """Label maps: class c in palette colour (c - 1) mod 20, class 0 left as the base;
    binary masks: the tint over the base; float maps: the colormap."""
    labels = np.array([[0, 1, 2, 21]], np.uint8)
    rgb = draw(labels, style_of(labels), box=None, cuts=None).rgb
    assert tuple(rgb[0, 0]) == BASE_COLOUR
    assert tuple(rgb[0, 1]) == tuple(PALETTE[0])
    assert tuple(rgb[0, 2]) == tuple(PALETTE[1])
    assert tuple(rgb[0, 3]) == tuple(PALETTE[0])
    binary = np.array([[False, True]])
    rgb = draw(binary, style_of(binary), box=None, cuts=None).rgb
    assert tuple(rgb[0, 0]) == BASE_COLOUR
    expect = np.rint(np.array(BASE_COLOUR) * 0.2 + TINT * 0.8)
    assert np.abs(rgb[0, 1].astype(int) - expect).max() <= 1
    floats = np.array([[0.0, 1.0]], np.float32)
    rgb = draw(floats, style_of(floats), box=None, cuts=None).rgb
    assert tuple(rgb[0, 0]) == tuple(LUT[0])
    assert tuple(rgb[0, 1]) == tuple(LUT[255])


# --- source images and the image root --------------------------------------------------------


@pytest.fixture
def image_db(tmp_path):
    """Two 8x8 float masks whose image_path values are relative to tmp/images."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 10, 10)).save(images / "sub" / "a.png")
    maps = np.zeros((2, 8, 8), np.float32)
    maps[:, 2:5, 2:5] = 1.0
    db = ms.connect(tmp_path / "img.msdb")
    db.ingest(maps, image_id=[0, 1], metadata={"image_path": ["sub/a.png", "../outside.png"]})
    Image.new("RGB", (8, 8), (0, 200, 0)).save(tmp_path / "outside.png")
    return db, images


def test_source_image_under_the_root_is_blended(image_db):
    """With the root set, the mask is blended over its image (stretched to the picture):
    pixel = image * (1 - w) + colour * w with w = 0.25 + 0.45 t; a path leaving the root
    gives the mask alone."""
    db, images = image_db
    alone = np.asarray(db.render(0, legend=False))
    assert tuple(alone[0, 0]) == tuple(LUT[0])
    db.image_root = images
    over = np.asarray(db.render(0, legend=False)).astype(int)
    expect0 = np.array((200, 10, 10)) * 0.75 + LUT[0] * 0.25
    expect1 = np.array((200, 10, 10)) * 0.30 + LUT[255] * 0.70
    assert np.abs(over[0, 0] - expect0).max() <= 1
    assert np.abs(over[3, 3] - expect1).max() <= 1
    assert np.array_equal(np.asarray(db.render(1, legend=False)), alone)


def test_png_cache_follows_the_image_file_and_commits(image_db):
    """render_png's cache: the same bytes while nothing changes; a new picture when the
    source image file changes or the image root does; emptied by a commit."""
    db, images = image_db
    db.image_root = images
    first = db.render_png(0, size=16)
    assert db.render_png(0, size=16) is first
    Image.new("RGB", (16, 16), (10, 10, 200)).save(images / "sub" / "a.png")
    os.utime(images / "sub" / "a.png", ns=(1, 10**18))
    second = db.render_png(0, size=16)
    assert second != first
    want = np.asarray(db.render(0, size=16))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(second)).convert("RGB")), want)
    db.image_root = None
    assert db.render_png(0, size=16) != second
    assert len(db._pictures._png) == 3
    db.ingest(np.zeros((1, 8, 8), np.float32), image_id=[9])
    db.render_png(0, size=16)
    assert len(db._pictures._png) == 1        # the commit emptied the cache


def test_image_root_is_kept_in_the_settings(image_db, tmp_path, monkeypatch):
    """db.image_root: absolute, persisted in settings.json (sealed), seen by a new and by a
    read-only connection; read-only connections cannot set it; None clears it; a path that
    is no folder is refused."""
    db, images = image_db
    assert db.image_root is None
    monkeypatch.chdir(tmp_path)
    db.image_root = "images"
    assert db.image_root == str(images)
    assert ms.connect(db.path).image_root == str(images)
    ro = ms.connect(db.path, read_only=True)
    assert ro.image_root == str(images)
    before = (Path(db.path) / SETTINGS).read_bytes()
    with pytest.raises(StoreError, match="read-only"):
        ro.image_root = None
    assert (Path(db.path) / SETTINGS).read_bytes() == before
    with pytest.raises(StoreError, match="not a folder"):
        db.image_root = tmp_path / "nothing-here"
    db.image_root = None
    assert db.image_root is None
    assert ms.connect(db.path).image_root is None
    assert db.check().ok


def test_a_damaged_settings_file_is_reported(image_db):
    db, images = image_db
    db.image_root = images
    path = Path(db.path) / SETTINGS
    path.write_bytes(path.read_bytes().replace(b"images", b"imagez"))
    with pytest.raises(StoreError, match="damaged"):
        _ = db.image_root


def test_a_read_only_connection_writes_no_settings(image_db):
    db, _ = image_db
    ro = ms.connect(db.path, read_only=True)
    ro.render(0)
    ro.render_png(0, size=20)
    assert not (Path(db.path) / SETTINGS).exists()


@pytest.fixture
def hostile_root(tmp_path):
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "ok.png").write_bytes(b"x")
    (root / "%2e%2e").mkdir()
    (tmp_path / "secret.png").write_bytes(b"s")
    (root / "out-link.png").symlink_to(tmp_path / "secret.png")
    (root / "dir-link").symlink_to(tmp_path)
    (root / "in-link.png").symlink_to(root / "d" / "ok.png")
    return root


@pytest.mark.parametrize("value", [
    "../secret.png", "d/../../secret.png", "..", ".", "", "/etc/passwd", "/",
    "out-link.png", "dir-link/secret.png", "d", "d/missing.png", "d/ok.png\x00.txt",
    "%2e%2e/secret.png", "%2e%2e/%2e%2e/secret.png", "..%2fsecret.png",
    "d/./../../root/../secret.png", "//etc/passwd", "\\..\\secret.png", None, 3, b"d/ok.png",
])
def test_resolve_image_refuses_paths_leaving_the_root(hostile_root, value):
    assert resolve_image(hostile_root, value) is None


def test_resolve_image_accepts_files_under_the_root(hostile_root, tmp_path):
    ok = (hostile_root / "d" / "ok.png").resolve()
    assert resolve_image(hostile_root, "d/ok.png") == ok
    assert resolve_image(hostile_root, "./d/../d/ok.png") == ok
    assert resolve_image(hostile_root, str(ok)) == ok            # absolute, inside
    assert resolve_image(hostile_root, "in-link.png") == ok      # a link within the root
    assert resolve_image(str(hostile_root), "d/ok.png") == ok
    assert resolve_image(None, "d/ok.png") is None               # no root: nothing
    # A root given through a symbolic link is the folder it points to.
    (tmp_path / "root-link").symlink_to(hostile_root)
    assert resolve_image(tmp_path / "root-link", "d/ok.png") == ok


def test_confined_rendering_reads_no_absolute_paths_without_a_root(tmp_path):
    """Without a root, absolute image paths are read by the library, but not with
    confined=True (what the web app asks for)."""
    Image.new("RGB", (4, 4), (255, 255, 0)).save(tmp_path / "abs.png")
    db = ms.connect(tmp_path / "abs.msdb")
    db.ingest(np.zeros((1, 4, 4), np.float32), image_id=[0],
              metadata={"image_path": [str(tmp_path / "abs.png")]})
    free = np.asarray(db.render(0, legend=False))
    confined = np.asarray(db.render(0, legend=False, confined=True))
    assert tuple(confined[0, 0]) == tuple(LUT[0])
    assert tuple(free[0, 0]) != tuple(LUT[0])


def test_without_a_root_relative_paths_are_taken_from_the_current_directory(tmp_path,
                                                                              monkeypatch):
    """As from_coco writes them for a relative images_dir; never with confined=True."""
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (4, 4), (255, 255, 0)).save(tmp_path / "imgs" / "a.png")
    db = ms.connect(tmp_path / "rel.msdb")
    db.ingest(np.zeros((1, 4, 4), np.float32), image_id=[0],
              metadata={"image_path": ["imgs/a.png"]})
    monkeypatch.chdir(tmp_path)
    assert tuple(np.asarray(db.render(0, legend=False))[0, 0]) != tuple(LUT[0])
    assert tuple(np.asarray(db.render(0, legend=False, confined=True))[0, 0]) == \
        tuple(LUT[0])
    monkeypatch.chdir(tmp_path / "imgs")
    assert tuple(np.asarray(db.render(0, legend=False))[0, 0]) == tuple(LUT[0])


# --- speed ----------------------------------------------------------------------------------


def test_rendering_a_224_float_mask_takes_milliseconds(tmp_path):
    """A 224x224 float mask with ROI, range and legend renders in a few ms (the bound here
    is loose: the machine is shared)."""
    from masksearch.synth import saliency_maps

    maps, boxes_ = saliency_maps(8, seed=3)
    db = ms.connect(tmp_path / "speed.msdb")
    db.ingest(maps, image_id=np.arange(8), metadata={"bbox": boxes_})
    db.render(0, roi="bbox", range="(0.6, 1.0]")
    t = time.perf_counter()
    for i in range(8):
        db.render(i, roi="bbox", range="(0.6, 1.0]")
    assert (time.perf_counter() - t) / 8 < 0.05
