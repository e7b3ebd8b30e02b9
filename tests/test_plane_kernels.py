"""Corner planes (``kernels.plane_kernels``): the coarse bounds of one box read from the
transposed counts, and of a box per mask read from its rectangles' gathered counts, equal
``chi_bounds``' bit for bit; the cache makes planes only in spare room; and queries that
read either answer as the brute force does, the first time and the next."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms
import masksearch.exec.rows as rows_module
import masksearch.store.index_cache as index_cache_module
from masksearch.exec.regions import regions
from masksearch.exec.settings import ExecSettings
from masksearch.index.chi import box_rects, corner_planes, kernel_arrays, one_shape
from masksearch.kernels import bound_kernels, dispatch, plane_kernels, twins
from masksearch.lang import ast
from masksearch.store.index_cache import IndexCache, index_cache, index_nbytes

from .strategies import examples
from .test_engine_oracle import _check, databases, queries, saliency_db
from .test_index_cache import _index
from .test_twins import _decide, bound_cases, boxes, cut_values, masks
from .test_twins import _index as twin_index


@st.composite
def plane_cases(draw, min_n: int = 1, max_n: int = 6):
    """Masks of one shape, some of their rows, one box and a range's cuts."""
    dtype, ms_ = draw(masks(min_n=min_n, max_n=max_n, one_shape=True))
    cell = draw(st.sampled_from([1, 3, 4, 8, 16]))
    index = twin_index(dtype, ms_, cell)
    n = len(ms_)
    rows = np.array(draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=8)), np.int64)
    box = np.array(draw(boxes(int(index.heights[0]), int(index.widths[0]))), np.int64)
    cut = (draw(cut_values(index.edges)), draw(st.booleans()),
           draw(cut_values(index.edges)), draw(st.booleans()))
    return index, rows, box, cut


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(plane_cases(), plane_cases(20, 40)), st.booleans(), st.data())
def test_plane_bounds_equal_chi_bounds(case, refine, data):
    """Few masks (what refinement reads, read from the planes) or many of which few rows
    are refined (read from each mask's counts)."""
    index, rows, box, cut = case
    low, high = _decide(data.draw, len(rows))
    planes = corner_planes(index)
    chi = kernel_arrays(index)
    every = np.tile(box, (len(rows), 1))
    want = (np.full(len(rows), -7, np.int64), np.full(len(rows), -7, np.int64))
    bound_kernels.chi_bounds(chi, index.cell, rows, every, cut, refine, (low, high), want)
    for bounds in (plane_kernels.plane_bounds, twins.plane_bounds):
        got = (np.full(len(rows), -7, np.int64), np.full(len(rows), -7, np.int64))
        bounds(chi, planes, index.cell, rows, box, cut, refine, (low, high), got)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@settings(max_examples=examples(300), deadline=None)
@given(bound_cases(), st.data())
def test_box_rect_bounds_equal_chi_bounds(case, data):
    """Rectangle counts gathered for all rows (in two parts), bounds of a part of them."""
    index, rows, bx, cut = case
    m = len(rows)
    split = data.draw(st.integers(0, m))
    start = data.draw(st.integers(0, m))
    stop = data.draw(st.integers(start, m))
    chi = kernel_arrays(index)
    nan = np.full(m, np.nan)
    want = (np.full(m, -7, np.int64), np.full(m, -7, np.int64))
    bound_kernels.chi_bounds(chi, index.cell, rows, bx, cut, False, (nan, nan), want)
    n_cuts = len(index.edges) + 1
    whole = box_rects(index, rows, bx)
    for gather, bounds in ((plane_kernels.gather_box_rects, plane_kernels.box_rect_bounds),
                           (twins.gather_box_rects, twins.box_rect_bounds)):
        rects = np.zeros(2 * n_cuts * m, index.counts.dtype)
        sizes = np.zeros((m, 3), np.int64)
        gather(chi, index.cell, rows, bx, 0, split, rects, sizes)
        gather(chi, index.cell, rows, bx, split, m, rects, sizes)
        np.testing.assert_array_equal(rects, whole.rects)
        np.testing.assert_array_equal(sizes, whole.sizes)
        got = (np.full(m, -7, np.int64), np.full(m, -7, np.int64))
        bounds(chi, rects, sizes, rows, start, stop, cut, got)
        np.testing.assert_array_equal(got[0][start:stop], want[0][start:stop])
        np.testing.assert_array_equal(got[1][start:stop], want[1][start:stop])
        assert (got[0][:start] == -7).all()
        assert (got[0][stop:] == -7).all()


@settings(max_examples=examples(100), deadline=None)
@given(st.integers(1, 70), st.integers(1, 200), st.data())
def test_transpose_counts_kernel_and_twin(n_masks, per_mask, data):
    counts = np.arange(n_masks * per_mask, dtype=np.uint32).astype(np.uint16)
    start = data.draw(st.integers(0, per_mask))
    stop = data.draw(st.integers(start, per_mask))
    want = counts.reshape(n_masks, per_mask).T.copy().reshape(-1)
    for transpose in (plane_kernels.transpose_counts, twins.transpose_counts):
        got = np.zeros_like(counts)
        transpose(counts, n_masks, start, stop, got)
        np.testing.assert_array_equal(got[start * n_masks:stop * n_masks],
                                      want[start * n_masks:stop * n_masks])
        assert not got[:start * n_masks].any()
        assert not got[stop * n_masks:].any()


def test_corner_planes_are_the_counts_transposed():
    index = _index(5)
    planes = corner_planes(index)
    n = len(index.heights)
    np.testing.assert_array_equal(planes.reshape(-1, n), index.counts.reshape(n, -1).T)
    assert one_shape(index.heights, index.widths)
    assert not one_shape(np.array([3, 3]), np.array([3, 4]))
    assert not one_shape(np.zeros(0, np.int64), np.zeros(0, np.int64))


def test_planes_only_in_spare_room():
    a, b = _index(3, 0), _index(3, 1)
    size = index_nbytes(a)
    planes = np.zeros(size // 2, np.uint8)
    cache = IndexCache(2 * size)
    cache.get("a", lambda: a)
    # Made on the third time of asking.
    assert cache.get_spare("p", lambda: pytest.fail("asked once"), planes.nbytes, 3) is None
    assert cache.get_spare("p", lambda: pytest.fail("asked twice"), planes.nbytes, 3) is None
    assert not cache.holds("p")
    assert cache.get_spare("p", lambda: planes, planes.nbytes, 3) is planes
    assert cache.holds("p")
    assert cache.get_spare("p", lambda: pytest.fail("held"), planes.nbytes) is planes
    # No room left for another without evicting: not made, nothing evicted.
    assert cache.get_spare("q", lambda: pytest.fail("no room"), size) is None
    assert cache.holds("a")
    assert cache.holds("p")
    # A decoded index needing the room evicts planes like any older entry.
    cache.new_pass()
    cache.get("b", lambda: b)
    assert cache.holds("b")
    assert not cache.holds("a")
    assert cache.used <= 2 * size


EVERY_PASS = ExecSettings(plane_rows=1)


@pytest.fixture
def planes_on_every_pass(monkeypatch):
    """Corner planes made on the first pass that asks (``EVERY_PASS``: every fixed-box
    pass over a full index asks), with the kernels."""
    monkeypatch.setattr(index_cache_module, "PLANES_ASKED", 1)
    index_cache().clear()
    with dispatch.force("numba"):
        yield
    index_cache().clear()


@settings(max_examples=examples(40))
@given(saliency_db(), st.lists(queries(), min_size=1, max_size=4), st.sampled_from([4, 8, 16]))
def test_queries_over_planes_equal_oracle(planes_on_every_pass, database, specs, cell):
    ms_, meta = database
    _check(ms_, meta, cell, len(ms_), specs, EVERY_PASS)


@settings(max_examples=examples(60))
@given(databases(), st.lists(queries(), min_size=1, max_size=4))
def test_queries_over_box_rects_equal_oracle(database, specs):
    """With the kernels, queries over the bbox column gather its rectangles' counts on
    the first pass and read them on the next; a fixed box's are gathered on its second
    query and read on the third."""
    ms_, meta, cell, split = database
    with dispatch.force("numba"):
        _check(ms_, meta, cell, split, specs * 3)


def test_a_fixed_box_filter_reads_the_planes(planes_on_every_pass, tmp_path):
    """The planes are made and kept by a fixed-box query over a full index, and the
    answer is the brute force's."""
    rng = np.random.default_rng(5)
    maps = rng.random((30, 40, 40), dtype=np.float32)
    db = ms.connect(tmp_path / "db", cell_size=8)
    db.ingest(maps, image_id=np.arange(30))
    sql = "SELECT mask_id FROM masks WHERE CP(mask, box(3, 5, 29, 31), (0.5, 1.0]) > 330"
    cache = index_cache()
    before = {k for k in cache._entries if isinstance(k, tuple) and k[-1] == "planes"}
    got = sorted(r[0] for r in db.query(sql, settings=EVERY_PASS).rows())
    made = {k for k in cache._entries if isinstance(k, tuple) and k[-1] == "planes"}
    assert made - before
    want = [i for i, m in enumerate(maps) if (m[5:31, 3:29] > 0.5).sum() > 330]
    assert got == want
    assert 0 < len(want) < 30


def _planes_held() -> set:
    return {k for k in index_cache()._entries if isinstance(k, tuple) and k[-1] == "planes"}


@pytest.mark.parametrize("x0s", [(8, 0, 16, 8), (8, 8, 8, 8)])
def test_planes_are_made_on_the_third_pass(tmp_path, x0s):
    """A process that queries once or twice (a CLI call) never pays for the planes; the
    third pass of one box makes them, whether the boxes are new or the same (whose later
    passes read its gathered rectangles, but whose refinement may read the planes)."""
    index_cache().clear()
    rng = np.random.default_rng(6)
    maps = rng.random((20, 32, 32), dtype=np.float32)
    db = ms.connect(tmp_path / "db", cell_size=8)
    db.ingest(maps, image_id=np.arange(20))
    with dispatch.force("numba"):
        for passes, x0 in enumerate(x0s, start=1):
            # Boxes on the cell lines and a range on the bin edges: settled by the coarse
            # pass alone, one pass (one ask) a query.
            sql = (f"SELECT mask_id FROM masks WHERE CP(mask, box({x0}, 8, 32, 32), "
                   "(0.5, 1.0]) > 200")
            want = [i for i, m in enumerate(maps) if (m[8:32, x0:32] > 0.5).sum() > 200]
            got = sorted(r[0] for r in db.query(sql, settings=EVERY_PASS).rows())
            assert got == want
            assert bool(_planes_held()) == (passes >= 3)
    index_cache().clear()


def _gathered(db: ms.Database) -> dict:
    """The rectangles gathered for the regions the connection's snapshot remembers, by
    region."""
    memos = [m for k, m in db._store.snapshot()._memos.items() if k[0] == "regions"]
    return {k[0]: v for m in memos for k, v in m.items() if isinstance(k, tuple)
            and k[1:] == ("rects",) and v}


def test_a_repeated_fixed_box_gathers_its_rectangles_on_its_second_query(tmp_path):
    """The first query with a box reads the planes (or each mask's counts); the second
    gathers the box's rectangles; later ones read them; at most RECTS_KEPT regions keep
    theirs. Every answer is the brute force's."""
    index_cache().clear()
    rng = np.random.default_rng(7)
    maps = rng.random((24, 32, 32), dtype=np.float32)
    db = ms.connect(tmp_path / "db", cell_size=8)
    db.ingest(maps, image_id=np.arange(24))
    boxes = [(3, 5, 29, 30), (1, 2, 20, 27), (0, 9, 31, 31)]
    with dispatch.force("numba"):
        for box in boxes:
            x0, y0, x1, y1 = box
            half = (x1 - x0) * (y1 - y0) // 2
            sql = (f"SELECT mask_id FROM masks WHERE CP(mask, box({x0}, {y0}, {x1}, {y1}), "
                   f"(0.5, 1.0]) > {half}")
            want = [i for i, m in enumerate(maps) if (m[y0:y1, x0:x1] > 0.5).sum() > half]
            for query in range(3):
                got = sorted(r[0] for r in db.query(sql).rows())
                assert got == want
                held = _gathered(db)
                assert (ast.BoxRoi(*box) in held) == (query >= 1)
                assert len(held) <= rows_module.RECTS_KEPT
            assert 0 < len(want) < 24
    index_cache().clear()


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=0, max_size=6),
       st.sampled_from([ast.FullRoi(), ast.BoxRoi(-3, 2, 17, 50), ast.BoxRoi(5, 5, 5, 9)]),
       st.data())
def test_regions_say_one_box_only_when_every_row_has_it(shapes, roi, data):
    """``Regions.one_box`` lets the planes be read without comparing boxes: it must never
    be set where the boxes differ (taken rows included)."""
    rows = pa.table({"height": [h for h, _ in shapes], "width": [w for _, w in shapes]})
    reg = regions(roi, rows)
    idx = np.array(data.draw(st.lists(st.integers(0, max(0, len(shapes) - 1)), max_size=5))
                   if shapes else [], np.int64)
    for r in (reg, reg.take(idx)):
        if r.one_box:
            assert (r.boxes == r.boxes[:1]).all()
    same = len({s for s in shapes}) == 1
    assert reg.one_box == same
