"""Hostile ingest input: odd dtypes, shapes, memory layouts and values, corrupt files and
mismatched metadata. Each input is either stored exactly (its pixels read back with the same
values, CP counts equal NumPy's) or refused with an ``IngestError`` that leaves every file of
the database as it was."""

from __future__ import annotations

import hashlib
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from PIL import Image

import masksearch as ms
from masksearch.errors import IngestError

from .oracle import num_text
from .strategies import examples

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOAT_DTYPES = ["float16", "float32", "float64", "longdouble"]
OTHER_DTYPES = ["bool", "complex64", "complex128", "object", "U3", "datetime64[s]"]


def state(root: Path) -> dict[str, str]:
    """Every file of the database (but the lock file and the registrations of open
    connections in readers/, which are not data) and a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "lock" and p.parent.name != "readers"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    database = ms.connect(tmp_path_factory.mktemp("ingest-fuzz") / "db")
    database.ingest(np.ones((2, 5, 5), np.uint8), image_id=[0, 1], metadata={"k": [1, 2]})
    return database


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(INT_DTYPES + FLOAT_DTYPES + OTHER_DTYPES))
    h, w = draw(st.sampled_from([(0, 3), (3, 0), (1, 1), (1, 40), (40, 1)]) |
                st.tuples(st.integers(1, 30), st.integers(1, 30)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["small", "wide", "huge", "special"]))
    if dtype in INT_DTYPES:
        info = np.iinfo(dtype)
        top = {"small": 255, "wide": 70000, "huge": info.max, "special": 2**24 + 1}[style]
        low = 0 if style == "small" or info.min == 0 else max(info.min, -top)
        a = rng.integers(low, min(top, info.max), (h, w), endpoint=True, dtype=dtype)
    elif dtype in FLOAT_DTYPES:
        a = {"small": rng.random((h, w)).astype(np.float32).astype(np.float64),
             "wide": rng.normal(0, 1e3, (h, w)), "huge": rng.normal(0, 1e300, (h, w)),
             "special": rng.choice([np.nan, np.inf, -np.inf, 0.5, 1e-45, 1e39, 0.1],
                                   (h, w))}[style]
        with np.errstate(over="ignore"):
            a = a.astype(dtype)
    elif dtype == "bool":
        a = rng.random((h, w)) < 0.5
    elif dtype == "object":
        a = np.empty((h, w), object)
        a[...] = 1
    else:
        a = rng.integers(0, 9, (h, w)).astype(dtype)
    layout = draw(st.sampled_from(["c", "fortran", "strided", "transposed", "byteswapped"]))
    if layout == "fortran":
        a = np.asfortranarray(a)
    elif layout == "strided":
        big = np.repeat(np.repeat(a, 2, axis=0), 3, axis=1)
        a = big[::2, ::3]
    elif layout == "transposed":
        a = np.ascontiguousarray(a.T).T
    elif layout == "byteswapped" and a.dtype.kind in "iufc" and a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder())
    event(f"{dtype} {style} {layout}")
    return a


def acceptable(a: np.ndarray) -> bool:
    """Whether an exact supported-dtype form of these values exists (what must be accepted)."""
    if a.size == 0 or a.dtype.kind not in "biuf":
        return False
    if a.dtype.kind == "f":
        if np.isnan(a).all():
            return False
        with np.errstate(over="ignore"):
            narrow = a.astype(np.float32)
        return bool(((narrow == a) | (np.isnan(narrow) & np.isnan(a))).all())
    if a.dtype.kind == "b":
        return True
    lo, hi = int(a.min()), int(a.max())
    return (lo >= 0 and hi <= 65535) or (lo >= -(2**24) and hi <= 2**24)


@settings(max_examples=examples(300))
@given(arrays())
def test_each_array_is_stored_exactly_or_refused_without_a_trace(db, a):
    root = Path(db.path)
    before = state(root)
    n_before = db.info()["masks"]
    try:
        (mask_id,) = db.ingest([a], image_id=[7])
    except IngestError as e:
        assert "mask 0" in str(e)
        assert not acceptable(a), f"refused an exactly storable {a.dtype} mask: {e}"
        assert state(root) == before
        assert db.info()["masks"] == n_before
        event("refused")
        return
    event("stored")
    assert acceptable(a), f"accepted {a.dtype} values that no supported dtype holds exactly"
    got = db.mask(mask_id)
    assert got.dtype.name in ("bool", "uint8", "uint16", "float16", "float32")
    assert got.shape == a.shape
    values = a.astype(np.float64) if a.dtype.kind != "b" else a
    assert np.array_equal(got.astype(values.dtype), values, equal_nan=True)
    # Exact CP counts over the original values, at a few range ends taken from the data.
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    ends = sorted({float(v) for v in np.ravel(finite)[:3]} | {-np.inf, np.inf})
    for lo, hi in itertools.pairwise(ends):
        sql = (f"SELECT CP(mask, full, ({num_text(lo)}, {num_text(hi)}]) FROM masks "
               f"WHERE mask_id = {mask_id}")
        want = int(((values > lo) & (values <= hi)).sum())
        assert db.query(sql).rows() == [(want,)] == db.query(sql, use_index=False).rows()


@pytest.mark.parametrize("shape", [(1, 10_000), (10_000, 1)])
def test_long_thin_masks(db, shape):
    a = (np.arange(shape[0] * shape[1]) % 7).astype(np.uint8).reshape(shape)
    (mask_id,) = db.ingest([a], image_id=[8])
    assert np.array_equal(db.mask(mask_id), a)
    sql = f"SELECT CP(mask, box(0, 0, 5000, 5000), (2, 5]) FROM masks WHERE mask_id = {mask_id}"
    sub = a[:5000, :5000]
    assert db.query(sql).rows() == [(int(((sub > 2) & (sub <= 5)).sum()),)]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bool", "uint8"])
def test_ten_thousand_squared(tmp_path, dtype):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, (10_000, 10_000), dtype=np.uint8)
    if dtype == "bool":
        a = a > 1
    db = ms.connect(tmp_path / "db")
    (mask_id,) = db.ingest([a], image_id=[1])
    assert np.array_equal(db.mask(mask_id), a)
    box = (123, 4567, 8901, 9999)
    sub = a[box[1]:box[3], box[0]:box[2]]
    want = int((sub > 0).sum())
    sql = "SELECT CP(mask, box({}, {}, {}, {}), (0, 3]) FROM masks".format(*box)
    assert db.query(sql).rows() == [(want,)] == db.query(sql, use_index=False).rows()


# --- files -----------------------------------------------------------------------------------
def png_bytes(a: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def damaged_pngs() -> list[tuple[str, bytes]]:
    good = png_bytes((np.arange(64 * 48) % 251).astype(np.uint8).reshape(64, 48))
    cases = [("empty", b""), ("signature only", good[:8]), ("not a png", b"GIF89a" + good[6:])]
    cases += [(f"truncated at {n}", good[:n]) for n in (20, 33, 60, len(good) // 2,
                                                          len(good) - 12, len(good) - 1)]
    rng = np.random.default_rng(3)
    for pos in sorted(set(rng.integers(8, len(good), 14).tolist()) | {16, 20, 29}):
        data = bytearray(good)
        data[pos] ^= 0x5A
        cases.append((f"byte {pos} flipped", bytes(data)))
    return cases


@pytest.mark.parametrize(("name", "data"), damaged_pngs(), ids=[n for n, _ in damaged_pngs()])
def test_damaged_png_is_refused_naming_the_file_or_read_exactly(tmp_path, name, data):
    db = ms.connect(tmp_path / "db")
    db.ingest(np.ones((1, 5, 5), np.uint8), image_id=["x"])
    before = state(tmp_path / "db")
    path = tmp_path / "in" / "m.png"
    path.parent.mkdir()
    path.write_bytes(data)
    try:
        (mask_id,) = db.ingest([path])
    except IngestError as e:
        assert str(path) in str(e)
        assert state(tmp_path / "db") == before
        return
    # Decoded after all (damage in a part the decoder skips): the pixels are the image's.
    with Image.open(path) as im:
        assert np.array_equal(db.mask(mask_id), np.array(im))


def test_png_modes(tmp_path):
    db = ms.connect(tmp_path / "db")
    rng = np.random.default_rng(2)
    folder = tmp_path / "in"
    folder.mkdir()
    gray16 = rng.integers(0, 65535, (9, 7)).astype(np.uint16)
    (folder / "a16.png").write_bytes(png_bytes(gray16))
    (folder / "b1.png").write_bytes(png_bytes(rng.random((6, 6)) < 0.5))
    ids = db.ingest([folder / "a16.png", folder / "b1.png"])
    assert np.array_equal(db.mask(ids[0]), gray16)
    assert db.mask(ids[1]).dtype == np.bool_
    before = state(tmp_path / "db")
    for name, data in [("rgb.png", png_bytes(np.zeros((4, 4, 3), np.uint8))),
                       ("la.png", png_bytes(np.zeros((4, 4, 2), np.uint8), "LA"))]:
        (folder / name).write_bytes(data)
        with pytest.raises(IngestError, match=f"{name}: PNG mode .* is a colour image, not a "
                                              "mask; pick one channel"):
            db.ingest([folder / name])
    np.save(folder / "obj.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(IngestError, match=r"obj\.npy: cannot read mask file"):
        db.ingest([folder / "obj.npy"])
    (folder / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(IngestError, match=r"bad\.npy: cannot read mask file"):
        db.ingest([folder / "bad.npy"])
    np.save(folder / "f8.npy", np.full((3, 3), 0.1))
    with pytest.raises(IngestError, match=r"f8.npy: dtype float64 .*pixel \(0, 0\) = 0.1 would change"):
        db.ingest([folder / "f8.npy"])
    assert state(tmp_path / "db") == before


# --- metadata --------------------------------------------------------------------------------
BAD_METADATA = [
    ({"metadata": {"big": [2**70, 1]}}, "metadata column 'big', row 0: .* 64-bit integer"),
    ({"metadata": {"s": ["ok", "\ud800"]}}, "metadata column 's', row 1: .* not valid Unicode"),
    ({"metadata": {"b": [(0, 0, 2**70, 1), None]}}, "metadata column 'b', row 0: a box"),
    ({"metadata": {"f": [10**400, 1.5]}}, "beyond the float64 range"),
    ({"metadata": {"x": {"a": 1, "b": 2}}}, "expected a sequence of values, one per mask, "
                                            "got dict"),
    ({"metadata": {"x": {1, 2}}}, "expected a sequence of values, one per mask, got set"),
    ({"metadata": [1, 2]}, "metadata must be a dict of columns, a pandas DataFrame, a "
                           "pyarrow Table, or a CSV or Parquet file, got list"),
    ({"metadata": {"x": [1]}}, "metadata column 'x' has 1 values for 2 masks"),
    ({"metadata": {"x": np.zeros((2, 3))}}, "expected one value per mask, got shape"),
    ({"metadata": {"x": [b"a", b"b"]}}, "unsupported value b'a'"),
    ({"metadata": {"x": [1, "a"]}}, "mixes types"),
    ({"metadata": {"x": [float("inf"), 1.0]}}, "row 0: infinite values"),
    ({"metadata": {"k": ["a", "b"]}}, "metadata column 'k', row 0: 'a' is not an integer, "
                                      "as the column's int64 values in the database are"),
    ({"metadata": {"K": [1, 2]}}, "clashes with column 'k'"),
    ({"metadata": {"9x": [1, 2]}}, "not a valid identifier"),
    ({"metadata": {"_x": [1, 2]}}, "reserved"),
    ({"image_id": [2**63, 1]}, "image_id, row 0: .* 64-bit integer"),
    ({"image_id": [1.5, 2]}, "image_id must be integers or strings"),
    ({"model_id": {"a": 1, "b": 2}}, "model_id: expected a sequence of 2 values, got dict"),
    ({"mask_type": [[1], [2]]}, "unsupported value"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_METADATA)
def test_mismatched_metadata_is_refused_without_a_trace(db, kwargs, message):
    root = Path(db.path)
    before = state(root)
    kwargs = {"image_id": [5, 6], **kwargs}
    with pytest.raises(IngestError, match=message):
        db.ingest(np.zeros((2, 4, 4), np.uint8), **kwargs)
    assert state(root) == before


def test_refusal_after_segments_were_written_leaves_no_trace(tmp_path):
    db = ms.connect(tmp_path / "db", segment_size=2)
    db.ingest(np.ones((3, 4, 4), np.uint8), image_id=[1, 2, 3])
    before = state(tmp_path / "db")
    masks = [np.zeros((4, 4), np.uint8)] * 5 + [np.zeros((4, 4), np.complex64)]
    with pytest.raises(IngestError, match="mask 5: dtype complex64 is not supported"):
        db.ingest(masks, image_id=list(range(6)))
    assert state(tmp_path / "db") == before


@pytest.mark.parametrize(("values", "dtype", "stored"), [
    (np.arange(12).reshape(3, 4), "int64", "uint8"),
    (np.arange(12).reshape(3, 4) * 300, "int64", "uint16"),
    (np.arange(-6, 6).reshape(3, 4), "int8", "float32"),
    (np.arange(12).reshape(3, 4) * 2**20, "uint32", "float32"),
    (np.array([[0.5, 0.25], [np.nan, np.inf]]), "float64", "float32"),
])
def test_lossless_conversions(tmp_path, values, dtype, stored):
    db = ms.connect(tmp_path / "db")
    a = values.astype(dtype)
    (mask_id,) = db.ingest([a], image_id=[1])
    got = db.mask(mask_id)
    assert got.dtype == np.dtype(stored)
    assert np.array_equal(got.astype(np.float64), a.astype(np.float64), equal_nan=True)
