"""Tiled pixels (segment format 3) and partial verification: the LZ4 block codec against
pyarrow's, tiles round trip bit for bit, counts from tiles plus the index equal NumPy's for
every dtype, box, range and cell size (index on, off, and masks not indexed yet), the
engine equals the oracle on databases of both layouts, and ``upgrade`` rewrites an older
database into tiles with the same answers, crash-safely."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.cli import main as cli_main
from masksearch.exec.tile_verify import count_tiled, cut_array
from masksearch.index.chi import build_segment_index, default_edges, kernel_arrays, segment_cuts
from masksearch.kernels import dispatch
from masksearch.kernels import tile_kernels as tk
from masksearch.ranges import range_cuts
from masksearch.store import tiles
from masksearch.store.segments import Segment
from masksearch.store.tiles import TileCodec, decode_tiled, decode_tiled_numpy, encode_tiled

from . import oracle
from .strategies import DTYPES, boxes, examples, masks, value_ranges
from .test_engine_oracle import _build, check_answers, databases, queries


@contextmanager
def whole_mask_layout() -> Iterator[None]:
    """New segments written as before tiles: whole-mask blobs (segment format 2)."""
    tiled = tiles.TILED_CODECS
    tiles.TILED_CODECS = frozenset()
    try:
        yield
    finally:
        tiles.TILED_CODECS = tiled


def _layouts(db: ms.Database) -> set[str]:
    return {"tiles" if seg.tiles is not None else "whole" for seg in db.store.segments}


# --- the LZ4 block codec ---

@st.composite
def byte_strings(draw) -> np.ndarray:
    """Bytes with runs, repeats and noise: every kind of LZ4 sequence."""
    parts = draw(st.lists(st.one_of(
        st.binary(max_size=40),
        st.tuples(st.integers(0, 255), st.integers(1, 600)).map(lambda t: bytes([t[0]]) * t[1]),
        st.tuples(st.binary(min_size=1, max_size=9), st.integers(1, 80)).map(
            lambda t: t[0] * t[1])), max_size=12))
    return np.frombuffer(b"".join(parts), np.uint8).copy()


@settings(max_examples=examples(200))
@given(byte_strings(), st.sampled_from([4, 5, 8, 16]))
def test_lz4_blocks_round_trip_and_agree_with_pyarrow(data, keep):
    codec = pa.Codec("lz4_raw")
    n = data.size
    cap = tk.lz4_bound(n)
    dst = np.empty(cap, np.uint8)
    size = tk.lz4_compress(data, dst, cap, np.empty(1 << tk.HASH_LOG, np.int32), keep)
    assert 0 < size <= cap
    theirs = codec.decompress(dst[:size].tobytes(), decompressed_size=n) if n else b""
    assert theirs == data.tobytes()
    out = np.empty(n, np.uint8)
    assert tk.lz4_decompress(dst, 0, size, out, n)
    assert np.array_equal(out, data)
    if n:   # and pyarrow's blocks decode here
        block = np.frombuffer(codec.compress(data.tobytes(), asbytes=True), np.uint8)
        assert tk.lz4_decompress(block, 0, block.size, out, n)
        assert np.array_equal(out, data)
    # A second block with the table the first left (``origin``: no clearing): entries of
    # the first are never taken as matches of the second.
    table = np.full(1 << tk.HASH_LOG, -1, np.int32)
    tk.lz4_compress(data, np.empty(cap, np.uint8), cap, table, keep, 0)
    other = np.ascontiguousarray(data[::-1])
    size2 = tk.lz4_compress(other, dst, cap, table, keep, n)
    assert 0 < size2 <= cap
    assert tk.lz4_decompress(dst, 0, size2, out, n)
    assert np.array_equal(out, other)
    size = tk.lz4_compress(data, dst, cap, np.empty(1 << tk.HASH_LOG, np.int32), keep)
    # Too little room: refused, never written past it.
    if size > 1:
        small = np.zeros(size - 1, np.uint8)
        assert tk.lz4_compress(data, small, size - 1, np.empty(1 << tk.HASH_LOG, np.int32),
                               keep) == -1


@settings(max_examples=examples(200))
@given(byte_strings(), st.data())
def test_damaged_lz4_blocks_are_refused_without_reading_or_writing_outside(data, draw):
    n = data.size
    dst = np.empty(tk.lz4_bound(n), np.uint8)
    size = tk.lz4_compress(data, dst, dst.size, np.empty(1 << tk.HASH_LOG, np.int32))
    block = dst[:size].copy()
    cut = draw.draw(st.integers(0, size))
    flips = draw.draw(st.lists(st.tuples(st.integers(0, max(size - 1, 0)),
                                         st.integers(1, 255)), max_size=3))
    for at, x in flips:
        block[at] ^= x
    block = block[:cut]
    out = np.zeros(n + 8, np.uint8)
    guard = out[n:].copy()
    ok = tk.lz4_decompress(block, 0, block.size, out, n)
    assert np.array_equal(out[n:], guard)       # nothing written past n
    if ok and not flips and cut == size:
        assert np.array_equal(out[:n], data)


# --- tiles ---

def codecs():
    return st.builds(TileCodec, st.booleans(), st.booleans(), st.sampled_from([4, 8, 16]))


@settings(max_examples=examples(150))
@given(masks(max_side=40), st.sampled_from([1, 2, 3, 5, 16]), codecs())
def test_tiles_round_trip_bit_for_bit(mask, cell, codec):
    blob = encode_tiled(mask, cell, codec)
    h, w = mask.shape
    assert blob.size <= tk.tiled_size(h, w, mask.dtype.itemsize, cell)
    with dispatch.force("numba"):
        back = decode_tiled(blob, mask.dtype, h, w, cell, codec)
    twin = decode_tiled_numpy(blob, mask.dtype, h, w, cell, codec)   # no Numba: pyarrow's LZ4
    for got in (back, twin):
        assert got.dtype == mask.dtype
        assert np.array_equal(got.view(np.uint8), mask.view(np.uint8))
    short = pa.py_buffer(blob.to_pybytes()[:-1])
    with pytest.raises(ValueError, match="do not decode"), dispatch.force("numba"):
        decode_tiled(short, mask.dtype, h, w, cell, codec)
    with pytest.raises(ValueError, match="do not decode"):
        decode_tiled_numpy(short, mask.dtype, h, w, cell, codec)


def _numpy_count(mask: np.ndarray, box, lo, hi) -> int:
    """Pixels of ``mask[y0:y1, x0:x1]`` in the range given by its cuts, as float64."""
    x0, y0, x1, y1 = box
    v = mask[y0:y1, x0:x1].astype(np.float64)
    above = (v > lo.t) if lo.incl else (v >= lo.t)
    below = (v <= hi.t) if hi.incl else (v < hi.t)
    return int((above & below).sum())


def _clip(box, h: int, w: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    x0, y0 = min(max(x0, 0), w), min(max(y0, 0), h)
    return x0, y0, max(x0, min(x1, w)), max(y0, min(y1, h))


@st.composite
def tile_cases(draw):
    """Masks of one dtype (sizes not multiples of the cell), their tiles' codec, a cell
    size, bin edges (fitted or arbitrary), per mask a box per term, and the terms' ranges."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 5))
    ms_ = [draw(masks(dtype, max_side=40)) for _ in range(n)]
    cell = draw(st.sampled_from([2, 3, 4, 7, 16]))
    lo = min(float(np.nanmin(np.where(np.isinf(m), np.nan, m.astype(np.float64))))
             if np.isfinite(m.astype(np.float64)).any() else 0.0 for m in ms_)
    hi = max(float(np.nanmax(np.where(np.isinf(m), np.nan, m.astype(np.float64))))
             if np.isfinite(m.astype(np.float64)).any() else 0.0 for m in ms_)
    edges = default_edges(np.dtype(dtype), lo, hi) if draw(st.booleans()) else np.unique(
        np.array(draw(st.lists(st.sampled_from([0.0, 0.05, 0.25, 0.5, 0.6, 1.0, 2.0, 40.0]),
                               min_size=1, max_size=5)), np.float64))
    terms = draw(st.integers(1, 3))
    ranges = [draw(value_ranges(ms_[0])) for _ in range(terms)]
    boxes_ = [[_clip(draw(boxes(*m.shape)), *m.shape) for _ in range(terms)] for m in ms_]
    return ms_, draw(codecs()), cell, edges, ranges, boxes_


@settings(max_examples=examples(250))
@given(tile_cases(), st.data())
def test_tile_counts_equal_numpy(case, data):
    """Counts from the tiles the index cannot settle plus the cells it can equal NumPy's
    count, with the index (masks indexed or not, the cuts snapped to the edges or as they
    are) and without it."""
    ms_, codec, cell, edges, ranges, boxes_ = case
    dtype = ms_[0].dtype
    blobs = [np.frombuffer(encode_tiled(m, cell, codec), np.uint8) for m in ms_]
    stops = np.cumsum([b.size for b in blobs]).astype(np.int64)
    starts = stops - np.array([b.size for b in blobs], np.int64)
    data_ = np.concatenate(blobs)
    index = build_segment_index(ms_, edges, cell)
    rows = np.arange(len(ms_), dtype=np.int64)
    use = np.array(data.draw(st.lists(st.booleans(), min_size=len(ms_), max_size=len(ms_))))
    cuts = [range_cuts(str(lo), lc, str(hi), hc) for lo, lc, hi, hc in
            ((repr(float(a)), b, repr(float(c)), d) for a, b, c, d in ranges)]
    snapped = data.draw(st.booleans())
    given_cuts = list(segment_cuts(tuple(cuts), dtype.str, edges.tobytes())) if snapped \
        else cuts
    box_array = np.array(boxes_, np.int64)
    out = np.zeros((len(ms_), len(cuts)), np.int64)
    decoded = np.zeros(len(ms_), np.int64)
    scratch = np.empty(2 * cell * cell * dtype.itemsize, np.uint8)
    bad = tk.tile_counts(data_, starts, stops, kernel_arrays(index),
                         (tk.KINDS[dtype.name], dtype.itemsize, cell, codec.shuffle), rows,
                         use, box_array, cut_array(given_cuts), out, decoded, scratch)
    assert bad == -1
    for j, m in enumerate(ms_):
        for t, (lo, hi) in enumerate(cuts):
            assert out[j, t] == _numpy_count(m, boxes_[j][t], lo, hi), (j, t, lo, hi)
        gh, gw = -(-m.shape[0] // cell), -(-m.shape[1] // cell)
        assert decoded[j] <= gh * gw * len(cuts)


def test_settled_cells_are_not_decoded():
    """A box on the cells and a range on the bin edges: the index settles every cell
    inside; only the cells the box cuts through are decoded."""
    rng = np.random.default_rng(0)
    m = rng.random((64, 64)).astype(np.float32)
    cell = 16
    codec = TileCodec(True, False)
    blob = np.frombuffer(encode_tiled(m, cell, codec), np.uint8)
    index = build_segment_index([m], default_edges(m.dtype, 0.0, 1.0), cell)
    out, decoded = np.zeros((1, 1), np.int64), np.zeros(1, np.int64)
    lo, hi = range_cuts("0.5", False, "1.0", True)

    def run(box, use):
        tk.tile_counts(blob, np.array([0]), np.array([blob.size]), kernel_arrays(index),
                       (0, 4, cell, False), np.array([0]), np.array([use]),
                       np.array([[box]], np.int64), cut_array([(lo, hi)]), out, decoded,
                       np.empty(2 * cell * cell * 4, np.uint8))
        assert out[0, 0] == _numpy_count(m, box, lo, hi)
        return int(decoded[0])

    assert run((16, 16, 48, 48), True) == 0            # on the cells: all from the index
    assert run((16, 16, 48, 48), False) == 4           # without it: the four tiles
    assert run((10, 16, 48, 48), True) == 2            # cuts through a column of two cells
    assert run((0, 0, 64, 64), False) == 16


# --- segments and the engine, both layouts ---

@settings(max_examples=examples(60), deadline=None)
@given(databases(), st.lists(queries(), min_size=1, max_size=3), st.booleans(),
       st.sampled_from(["numba", "numpy"]))
def test_engine_equals_oracle_on_both_layouts(database, specs, whole, kernels):
    """The engine's answers equal the oracle's on a database of the older whole-mask layout
    and on one in tiles (index eager or lazy, on and off, a shard or a shard per
    segment), with the Numba kernels and with their Python twins."""
    from masksearch.exec.settings import ExecSettings

    ms_, meta, cell, split = database
    tmp = tempfile.mkdtemp()
    try:
        if whole:
            with whole_mask_layout():
                db = _build(tmp, ms_, meta, cell, split)
        else:
            db = _build(tmp, ms_, meta, cell, split)
        assert _layouts(db) == {"whole" if whole else "tiles"}
        with dispatch.force(kernels):
            check_answers(db, oracle.as_rows(ms_, 0, meta), specs,
                          [ExecSettings(), ExecSettings(shard_segments=1)])
    finally:
        shutil.rmtree(tmp)


def _maps(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for i in range(n):
        m = rng.random((37, 29)).astype(np.float32)
        m[: i % 9] = 0.0
        if i % 5 == 0:
            m[3, 4] = np.nan
        out.append(m)
    return out


QUERIES = [
    "SELECT mask_id, CP(mask, box(3, 5, 27, 33), (0.3, 0.8]) AS c FROM masks ORDER BY mask_id",
    "SELECT mask_id FROM masks WHERE CP(mask, box(16, 16, 29, 37), [0.5, 1.0]) > 40 "
    "ORDER BY mask_id",
    "SELECT mask_id, CP(mask, full, (0.25, 0.6)) AS c FROM masks ORDER BY c DESC, mask_id "
    "LIMIT 5",
]


def _answers(db: ms.Database) -> list:
    return [db.query(sql, use_index=use).rows() for sql in QUERIES for use in (True, False)]


def test_upgrade_rewrites_older_segments_in_tiles_with_the_same_answers(tmp_path, capsys):
    path = tmp_path / "db"
    maps = _maps(30, 1)
    with whole_mask_layout():
        db = ms.connect(path, segment_size=8)
        db.ingest(maps[:20], image_id=list(range(20)))
        db.query("DELETE FROM masks WHERE image_id = 3")
        db.close()
    db = ms.connect(path, segment_size=8)
    db.ingest(maps[20:], image_id=list(range(20, 30)))      # new ingests: tiles
    assert _layouts(db) == {"whole", "tiles"}
    before = _answers(db)
    ids = [r[0] for r in db.query("SELECT mask_id FROM masks ORDER BY mask_id").rows()]
    pixels = {i: db.mask(i) for i in ids}
    db.close()
    assert cli_main(["upgrade", str(path)]) == 0
    assert "masks rewritten in tiles" in capsys.readouterr().out
    db = ms.connect(path)
    assert _layouts(db) == {"tiles"}
    assert _answers(db) == before
    assert all(np.array_equal(db.mask(i), pixels[i], equal_nan=True) for i in ids)
    assert db.check().ok
    assert db.upgrade().masks_rewritten == 0
    assert cli_main(["upgrade", str(path)]) == 0
    assert "up to date" in capsys.readouterr().out
    # Only the segments' current files are left.
    names = {s.name for s in db.store.manifest.segments}
    assert {p.name for p in (Path(path) / "segments").iterdir()} == names


def test_a_damaged_tile_is_named(tmp_path):
    path = tmp_path / "db"
    db = ms.connect(path)
    db.ingest(_maps(4, 2), image_id=[0, 1, 2, 3])
    seg: Segment = db.store.segments[0]
    heights, widths = seg.shapes
    blob = seg.blob(1)
    assert seg.tiles is not None
    # A damaged blob is refused by its checksum before any tile is decoded.
    raw = bytearray((seg.directory / "pixels.arrow").read_bytes())
    at = raw.find(blob.to_pybytes()[:64])
    raw[at + 100] ^= 0xFF
    (seg.directory / "pixels.arrow").write_bytes(bytes(raw))
    db.close()
    db = ms.connect(path)
    with pytest.raises(ms.MaskSearchError, match="mask 1 is damaged"):
        db.query(QUERIES[0])
    with pytest.raises(ms.MaskSearchError, match="damaged"):
        count_tiled(db.store.segments[0], np.array([1]), np.zeros((1, 1, 4), np.int64),
                    cut_array([range_cuts("0.1", False, "0.9", True)]), None)
    assert not db.check().ok
    assert (heights[1], widths[1]) == (37, 29)


@pytest.mark.slow
def test_kill_at_every_crash_point_of_upgrade(tmp_path):
    """``upgrade`` killed at every crash point leaves the database before it (whole-mask
    segments) or after it (tiles), never a mix, with the same answers as NumPy's, passing
    check, with no leftovers."""
    from .crash_driver import SEGMENT_SIZE, prepare_upgrade
    from .test_crash import numpy_answers, observed, run_driver, same_state

    records = run_driver("upgrade", tmp_path / "kills")
    assert len(records) == records[0]["points"] >= 10
    assert all(r["killed"] for r in records)
    ref = tmp_path / "ref"
    prepare_upgrade(ref)
    db = ms.connect(ref, segment_size=SEGMENT_SIZE)
    states = [observed(db)]
    assert _layouts(db) == {"whole"}
    db.upgrade()
    assert _layouts(db) == {"tiles"}
    after = observed(db)
    db.close()
    assert same_state(after, states[0])
    assert after["answers"] == numpy_answers(after)
    hit = set()
    for rec in records:
        case = f"kill point {rec['k']} ({rec['point']})"
        with ms.connect(rec["path"]) as killed:
            got = observed(killed)
            assert got["answers"] == numpy_answers(got), case
            assert same_state(got, states[0]), case     # the same either way
            layouts = _layouts(killed)
            assert layouts in ({"whole"}, {"tiles"}), case
            hit.add(layouts.pop())
            assert killed.check().ok, case
            root = Path(rec["path"])
            assert not [p for p in root.rglob("*") if ".tmp" in p.name], case
            segs = {s.name for s in killed.store.manifest.segments}
            assert {p.name for p in (root / "segments").iterdir()} == segs, case
    assert hit == {"whole", "tiles"}


def test_a_timeout_stops_tiled_verification(tmp_path, monkeypatch):
    """Verification of tiled masks checks the query's control between segments (in the
    worker threads, which have none of their own)."""
    import time

    import masksearch.exec.verify as verify

    db = ms.connect(tmp_path / "db", segment_size=4)
    db.ingest(_maps(24, 3), image_id=list(range(24)))
    assert _layouts(db) == {"tiles"}
    counted = verify.count_tiled

    def slow(*args):
        time.sleep(0.05 * len(args[1]))
        return counted(*args)

    monkeypatch.setattr(verify, "count_tiled", slow)
    with pytest.raises(ms.QueryTimeout):
        db.query("SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 3",
                 use_index=False, timeout=0.2)


def test_float16_keys_count_every_value_as_numpy():
    """float16 tiles are counted by an integer key of their bits: over all 65,536 values
    (NaNs, infinities, -0 and +0, subnormals) and cuts on, between and beyond them, the
    count equals NumPy's."""
    bits = np.arange(65536, dtype=np.uint16)
    values = bits.view(np.float16).astype(np.float64)
    rng = np.random.default_rng(0)
    finite = values[np.isfinite(values)]
    ends = [-np.inf, np.inf, 0.0, -0.0, 1.0, 0.5, 65504.0, -65504.0, 6e-8, 1e-5, 0.1,
            0.30000001, 1e6, *rng.normal(0, 10, 8), *rng.choice(finite, 8)]
    for lo in ends:
        for hi in ends:
            for lo_incl in (False, True):
                for hi_incl in (False, True):
                    above = values > lo if lo_incl else values >= lo
                    below = values <= hi if hi_incl else values < hi
                    want = int((above & below).sum())
                    got = tk._count_half(bits, 65536, (0, 0, 65536, 1),
                                         (float(lo), lo_incl, float(hi), hi_incl))
                    assert got == want, (lo, lo_incl, hi, hi_incl)
