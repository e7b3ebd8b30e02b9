"""Ingest: every accepted input form, dtypes kept, metadata typed, bad input refused, atomic."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import masksearch as ms
from masksearch.errors import IngestError, StoreError

from .strategies import examples

ROOT = Path(__file__).resolve().parents[1]


def snapshot(db: ms.Database):
    return db.query("SELECT * FROM masks").to_pylist()


@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint16", "float16", "float32"])
def test_pixels_round_trip_with_their_dtype(tmp_path, dtype):
    rng = np.random.default_rng(1)
    masks = [(rng.random((h, w)) * 300).astype(dtype) for h, w in [(5, 7), (16, 16), (33, 2)]]
    db = ms.connect(tmp_path / "db")
    ids = db.ingest(masks, image_id=[10, 11, 12])
    assert ids == [0, 1, 2]
    for i, m in zip(ids, masks, strict=True):
        got = db.mask(i)
        assert got.dtype == m.dtype
        assert got.shape == m.shape
        np.testing.assert_array_equal(got, m)


def test_stack_sequence_and_files(tmp_path):
    rng = np.random.default_rng(2)
    stack = rng.random((3, 8, 9)).astype(np.float32)
    png8 = (rng.random((6, 6)) * 255).astype(np.uint8)
    png16 = (rng.random((6, 5)) * 60000).astype(np.uint16)
    npy = rng.random((4, 4)).astype(np.float32)
    files = tmp_path / "files"
    files.mkdir()
    Image.fromarray(png8).save(files / "a.png")
    Image.fromarray(png16).save(files / "b.png")
    np.save(files / "c.npy", npy)
    db = ms.connect(tmp_path / "db")
    assert db.ingest(stack, image_id="s") == [0, 1, 2]
    ids = db.ingest(str(files / "*"), model_id="m1")
    assert ids == [3, 4, 5]
    np.testing.assert_array_equal(db.mask(3), png8)
    np.testing.assert_array_equal(db.mask(4), png16)
    assert db.mask(4).dtype == np.uint16
    np.testing.assert_array_equal(db.mask(5), npy)
    rows = db.query("SELECT mask_id, image_id, model_id FROM masks WHERE mask_id >= 3").rows()
    assert rows == [(3, "a", "m1"), (4, "b", "m1"), (5, "c", "m1")]  # stems by default
    # A folder works like its files.
    assert len(db.ingest(files, image_id=["x", "y", "z"], model_id="m2")) == 3


def test_metadata_types_and_boxes(tmp_path):
    db = ms.connect(tmp_path / "db")
    masks = np.zeros((3, 10, 10), np.uint8)
    db.ingest(masks, image_id=[1, 2, 3], metadata={
        "label": ["cat", None, "dog"], "score": [0.5, 1, None], "ok": [True, False, None],
        "bbox": np.array([[0, 0, 5, 5], [1, 2, 3, 4], [2, 2, 10, 10]]),
        "other_box": [(0, 0, 1, 1), None, (3, 3, 9, 9)]})
    cols = db.columns()
    assert cols["label"] == "string"
    assert cols["score"] == "float64"
    assert cols["ok"] == "bool"
    assert cols["bbox"] == "box"
    assert cols["other_box"] == "box"
    rows = db.query("SELECT area(bbox), area(other_box), score FROM masks").rows()
    assert rows == [(25, 1, 0.5), (4, None, 1.0), (64, 36, None)]


def test_columns_merge_across_ingests(tmp_path):
    db = ms.connect(tmp_path / "db")
    db.ingest(np.zeros((2, 4, 4), np.uint8), image_id=[1, 2], metadata={"bbox": [None, None]})
    db.ingest(np.zeros((1, 4, 4), np.uint8), image_id=[3],
              metadata={"bbox": [(0, 0, 2, 2)], "n": [1]})
    db.ingest(np.zeros((1, 4, 4), np.uint8), image_id=[4], metadata={"n": [2.5]})
    assert db.columns()["bbox"] == "box"
    assert db.columns()["n"] == "float64"
    assert db.query("SELECT area(bbox), n FROM masks").rows() == [
        (None, None), (None, None), (4, 1.0), (None, 2.5)]


@pytest.mark.parametrize(("masks", "kwargs", "message"), [
    (np.full((2, 3, 3), np.nan, np.float32), {"image_id": [1, 2]}, "mask 0: every pixel is NaN"),
    (np.zeros((0, 3, 3), np.float32), {"image_id": []}, "nothing to ingest"),
    ([np.zeros((3, 0), np.uint8)], {"image_id": [1]}, "mask 0: the mask is empty"),
    ([np.zeros((3, 3), np.uint8), np.zeros((2, 3, 3))], {"image_id": [1, 2]},
     "mask 1: a mask must be 2-D"),
    (np.zeros((2, 2, 3, 3)), {"image_id": [1, 2]}, "expected an (N, H, W) or (N, 1, H, W) array"),
    ([np.full((3, 3), 2**40, np.int64)], {"image_id": [1]},
     "mask 0: dtype int64 is not supported"),
    ([np.full((3, 3), 0.1)], {"image_id": [1]}, "dtype float64 is not supported"),
    (np.zeros((2, 3, 3), np.uint8), {"image_id": [1, 2], "metadata": {"x": [1]}},
     "metadata column 'x' has 1 values for 2 masks"),
    (np.zeros((2, 3, 3), np.uint8), {"image_id": [1]}, "image_id has 1 values for 2 masks"),
    (np.zeros((2, 3, 3), np.uint8), {"image_id": [1, 2], "metadata": {"mask_id": [1, 2]}},
     "metadata column 'mask_id' is reserved"),
    (np.zeros((2, 3, 3), np.uint8), {"image_id": [1, 2], "metadata": {"b": [(1, 2, 3), None]}},
     "metadata column 'b'"),
    (np.zeros((2, 3, 3), np.uint8), {"image_id": [1, None]}, "image_id is required"),
    (np.zeros((2, 3, 3), np.uint8), {}, "image_id is required"),
])
def test_bad_input_is_refused_and_changes_nothing(tmp_path, masks, kwargs, message):
    db = ms.connect(tmp_path / "db")
    db.ingest(np.ones((2, 3, 3), np.uint8), image_id=[100, 101], metadata={"x": [1, 2]})
    before = snapshot(db)
    with pytest.raises(IngestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        db.ingest(masks, **kwargs)
    assert snapshot(db) == before
    assert sorted(p.name for p in (tmp_path / "db" / "segments").iterdir()) == sorted(
        s.name for s in db.store.manifest.segments)


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    db = ms.connect(tmp_path / "db")
    with pytest.raises(IngestError, match=r"broken\.png: cannot read mask file"):
        db.ingest([bad])
    with pytest.raises(IngestError, match=r"rgb\.png: PNG mode RGB is a colour image, not a mask; pick one channel"):
        db.ingest([rgb])
    with pytest.raises(IngestError, match="no such file"):
        db.ingest([tmp_path / "missing.npy"])
    with pytest.raises(IngestError, match="matches no file"):
        db.ingest(str(tmp_path / "*.tif"))
    assert db.info()["masks"] == 0


def test_type_conflict_across_ingests_is_refused(tmp_path):
    db = ms.connect(tmp_path / "db")
    db.ingest(np.zeros((1, 3, 3), np.uint8), image_id=[1], metadata={"label": ["a"]})
    with pytest.raises(IngestError, match="column 'label' holds string values"):
        db.ingest(np.zeros((1, 3, 3), np.uint8), image_id=[2], metadata={"label": [3]})
    with pytest.raises(IngestError, match="column 'image_id' holds int64"):
        db.ingest(np.zeros((1, 3, 3), np.uint8), image_id=["x"])


def test_failure_midway_rolls_back(tmp_path):
    """An error after some segments are written leaves no trace."""
    db = ms.connect(tmp_path / "db", segment_size=2)
    db.ingest(np.ones((3, 4, 4), np.uint8), image_id=[1, 2, 3])
    before = snapshot(db)
    masks = [np.zeros((4, 4), np.uint8)] * 5 + [np.full((4, 4), np.nan, np.float32)]
    with pytest.raises(IngestError, match="mask 5"):
        db.ingest(masks, image_id=list(range(6)))
    assert snapshot(db) == before
    assert len(list((tmp_path / "db" / "segments").iterdir())) == len(
        db.store.manifest.segments)
    # Mask ids of the failed ingest are not burnt; the next ingest continues the sequence.
    assert db.ingest(np.zeros((1, 4, 4), np.uint8), image_id=[9]) == [3]


def test_failed_background_write_rolls_back(tmp_path, monkeypatch):
    """Segment files are written on a thread of their own while the next masks compress: a
    write failing there (a full disk, say) fails the ingest and leaves no trace."""
    import errno

    from masksearch.store import segments

    db = ms.connect(tmp_path / "db", segment_size=2)
    db.ingest(np.ones((3, 4, 4), np.uint8), image_id=[1, 2, 3])
    before = snapshot(db)
    real, calls = segments.write_bytes, []

    def full_disk(path, data):
        calls.append(path.name)
        if len(calls) == 2:     # the second segment's metadata file
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(segments, "write_bytes", full_disk)
    with pytest.raises(OSError, match="No space left"):
        db.ingest(np.zeros((7, 4, 4), np.uint8), image_id=list(range(7)))
    monkeypatch.undo()
    assert calls == ["meta.parquet", "meta.parquet"]
    assert snapshot(db) == before
    assert len(list((tmp_path / "db" / "segments").iterdir())) == len(
        db.store.manifest.segments)
    assert db.ingest(np.zeros((1, 4, 4), np.uint8), image_id=[9]) == [3]


def test_existing_folder_that_is_not_a_database(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file.txt").write_text("hi")
    with pytest.raises(StoreError, match="not a masksearch database"):
        ms.connect(tmp_path / "x")


def test_settings_are_fixed_at_creation(tmp_path):
    ms.connect(tmp_path / "db", cell_size=8)
    with pytest.raises(StoreError, match="chosen when a database is created"):
        ms.connect(tmp_path / "db", cell_size=4)
    with pytest.raises(StoreError, match="cell_size"):
        ms.connect(tmp_path / "db2", cell_size=0)
    with pytest.raises(StoreError, match="bin_edges"):
        ms.connect(tmp_path / "db3", bin_edges={"float32": [0.5, 0.2]})


def test_mask_unknown_id(tmp_path):
    db = ms.connect(tmp_path / "db")
    db.ingest(np.zeros((1, 3, 3), np.uint8), image_id=[1])
    with pytest.raises(StoreError, match="mask_id 5 does not exist"):
        db.mask(5)


KILL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, masksearch as ms
    db = ms.connect(sys.argv[1], segment_size=50)
    rng = np.random.default_rng(int(sys.argv[2]))
    for k in range(100):
        m = rng.random((100, 32, 32)).astype(np.float32)
        db.ingest(m, image_id=list(range(100)), metadata={"batch": [k] * 100})
        print(k, flush=True)
""")


@pytest.mark.slow
def test_kill_during_ingest_leaves_a_consistent_database(tmp_path):
    """SIGKILL a writer at several moments: reopening shows only whole ingests."""
    path = tmp_path / "db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = np.random.default_rng(0)
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), str(attempt)],
                                stdout=subprocess.PIPE, env=env, text=True)
        time.sleep(1.0 + rng.random() * 2.0)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        reported = len(out.split())
        db = ms.connect(path)
        if "batch" in db.store.columns():
            batches = [r[0] for r in db.query("SELECT batch FROM masks").rows()]
        else:   # killed before its first ingest was committed (a slow start): no masks
            assert db.query("SELECT mask_id FROM masks").rows() == []
            batches = []
        # Every ingest is all 100 masks or none, and each reported one is there.
        counts = {b: batches.count(b) for b in set(batches)}
        assert all(c % 100 == 0 for c in counts.values()), counts
        assert len(batches) >= 100 * reported
        # Queries still work and agree with the brute-force path.
        q = "SELECT mask_id FROM masks WHERE CP(mask, box(3, 5, 20, 30), (0.9, 1.0]) > 60"
        assert db.query(q).rows() == db.query(q, use_index=False).rows()
    # Leftovers of killed writers are removed by the next writer.
    db.ingest(np.zeros((1, 4, 4), np.uint8), image_id=[0], metadata={"batch": [-1]})
    committed = {s.name for s in db.store.manifest.segments}
    assert {p.name for p in (path / "segments").iterdir()} == committed


def test_bool_masks_with_odd_bytes_count_as_true(tmp_path):
    m = np.array([[0, 255, 1, 2]], np.uint8).view(np.bool_)
    db = ms.connect(tmp_path / "db")
    db.ingest([m], image_id=[1])
    assert db.query("SELECT CP(mask, full, [1, 1]), CP(mask, full, (0, 1]) FROM masks").rows() \
        == [(3, 3)]
    np.testing.assert_array_equal(db.mask(0), [[False, True, True, True]])


@pytest.mark.parametrize(("metadata", "message"), [
    ({"_seg": [1]}, "reserved"),
    ({"Score": [1], "score": [2]}, "clashes with column 'Score'"),
])
def test_reserved_and_clashing_names(tmp_path, metadata, message):
    db = ms.connect(tmp_path / "db")
    with pytest.raises(IngestError, match=message):
        db.ingest(np.zeros((1, 2, 2), np.uint8), image_id=[1], metadata=metadata)


def test_clash_with_an_existing_column(tmp_path):
    db = ms.connect(tmp_path / "db")
    db.ingest(np.zeros((1, 2, 2), np.uint8), image_id=[1], metadata={"Score": [1]})
    with pytest.raises(IngestError, match="clashes"):
        db.ingest(np.zeros((1, 2, 2), np.uint8), image_id=[2], metadata={"score": [1]})
    with pytest.raises(IngestError, match="reserved"):
        db.ingest(np.zeros((1, 2, 2), np.uint8), image_id=[2], metadata={"IMAGE_ID": [1]})


@settings(max_examples=examples(25), deadline=None)
@given(st.sampled_from(["float32", "float16", "uint8", "bool"]), st.integers(1, 4),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**32 - 1)), min_size=1,
                max_size=10))
def test_guessed_bin_edges_give_the_segments_of_measured_ones(dtype, per_segment, specs):
    """Ingest guesses a segment's bin edges (values in [0, 1], then the last segment's) and
    measures the values while compressing: every segment has the edges and index that
    measuring first gives (NumPy's nanmin / nanmax, then ``default_edges``)."""
    import tempfile
    import warnings

    from masksearch.index.chi import build_segment_index, default_edges, kernel_view
    from masksearch.store.segments import Segment

    scales = [1.0, 0.5, 3.0, 255.0]       # values in [0, 1], then some beyond
    masks = []
    for kind, seed in specs:
        rng = np.random.default_rng(seed)
        m = rng.random((6, 5)) * scales[kind] - (0.25 if kind == 2 else 0.0)
        if dtype == "bool":
            m = m > 0.5
        elif dtype == "uint8":
            m = np.clip(m * (1 + 40 * kind), 0, 255)
        masks.append(m.astype(dtype))
    with tempfile.TemporaryDirectory() as tmp:
        db = ms.connect(Path(tmp) / "db", segment_size=per_segment)
        db.ingest(masks, image_id=list(range(len(masks))))
        for info in db.store.manifest.segments:
            seg = Segment(Path(tmp) / "db" / "segments" / info.name)
            got = [seg.pixels(r) for r in range(seg.count)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo = min(float(np.nanmin(kernel_view(m))) for m in got)
                hi = max(float(np.nanmax(kernel_view(m))) for m in got)
            edges = default_edges(got[0].dtype, lo, hi)
            np.testing.assert_array_equal(seg.info["edges"], edges)
            want = build_segment_index(got, edges, seg.index.cell)
            np.testing.assert_array_equal(seg.index.counts, want.counts)
            np.testing.assert_array_equal(seg.index.eq, want.eq)
            np.testing.assert_array_equal(seg.index.stats, want.stats)
        db.close()
