"""Mask sources round-trip against an independent reader: PNG modes through Pillow, NPY
stacks and NPZ archives through NumPy, tensors through ``__array__`` and DLPack; lossy
conversions happen only when asked for, exactly as documented."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import masksearch as ms
from masksearch.errors import IngestError

from .strategies import examples
from .test_fuzz_ingest import state


def png(path: Path, a: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(a, mode=mode).save(path)
    return path


def pillow(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


class OnlyArray:
    """A tensor-like object NumPy reads through ``__array__`` only."""

    def __init__(self, a: np.ndarray):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class OnlyDLPack:
    """A tensor-like object that offers nothing but DLPack (as CuPy and JAX do)."""

    def __init__(self, a: np.ndarray):
        self._a = a

    def __dlpack__(self, *args, **kwargs):
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_png_modes_are_read_as_pillow_reads_them(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "in"
    folder.mkdir()
    gray8 = rng.integers(0, 256, (9, 11)).astype(np.uint8)
    gray16 = rng.integers(0, 65536, (7, 5)).astype(np.uint16)
    bits = rng.random((6, 10)) < 0.4
    palette = Image.fromarray(rng.integers(0, 21, (12, 8)).astype(np.uint8), mode="P")
    palette.putpalette(list(rng.integers(0, 256, 768)))   # colours do not matter: indices do
    files = [png(folder / "g8.png", gray8), png(folder / "g16.png", gray16),
             png(folder / "b1.png", bits)]
    palette.save(folder / "voc.png")
    files.append(folder / "voc.png")
    db = ms.connect(tmp_path / "db")
    ids = db.ingest(folder)                       # a folder: its files in name order
    by_name = dict(zip(sorted(p.name for p in files), ids, strict=True))
    for path in files:
        got = db.mask(by_name[path.name])
        assert np.array_equal(got, pillow(path)), path.name
    assert db.mask(by_name["voc.png"]).dtype == np.uint8           # the palette indices
    assert db.mask(by_name["b1.png"]).dtype == np.bool_
    assert db.mask(by_name["g16.png"]).dtype == np.uint16
    rows = db.query("SELECT image_id FROM masks ORDER BY mask_id").rows()
    assert [r[0] for r in rows] == sorted(p.stem for p in files)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_pngs_are_refused_naming_the_file_and_the_way_out(tmp_path, mode):
    db = ms.connect(tmp_path / "db")
    db.ingest(np.zeros((1, 4, 4), np.uint8), image_id=["first"])
    before = state(tmp_path / "db")
    path = png(tmp_path / "photo.png", np.zeros((4, 4, len(mode)), np.uint8), mode)
    with pytest.raises(IngestError, match=rf"photo\.png: PNG mode {mode} is a colour image, "
                                          r"not a mask; pick one channel, e\.g\. "):
        db.ingest([path])
    assert state(tmp_path / "db") == before


def test_npy_stacks_and_npz_archives(tmp_path):
    rng = np.random.default_rng(4)
    stack = rng.random((3, 6, 5)).astype(np.float32)
    nchw = rng.integers(0, 9, (2, 1, 4, 4)).astype(np.uint8)
    single = rng.random((5, 5)) < 0.5
    np.save(tmp_path / "stack.npy", stack)
    np.save(tmp_path / "nchw.npy", nchw)
    np.savez(tmp_path / "both.npz", one=single, many=stack[:2])
    db = ms.connect(tmp_path / "db")
    ids = db.ingest([tmp_path / "stack.npy", tmp_path / "nchw.npy", tmp_path / "both.npz"])
    want = [*stack, *nchw[:, 0], single, *stack[:2]]
    assert len(ids) == len(want)
    for i, m in zip(ids, want, strict=True):
        assert np.array_equal(db.mask(i), m)
    # Every mask of a file takes the file's stem as image_id.
    ids_of = [r[0] for r in db.query("SELECT image_id FROM masks ORDER BY mask_id").rows()]
    assert ids_of == ["stack"] * 3 + ["nchw"] * 2 + ["both"] * 3


def test_a_stack_of_the_wrong_rank_is_refused_naming_the_file(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4, 5), np.float32))
    db = ms.connect(tmp_path / "db")
    with pytest.raises(IngestError, match=r"cube\.npy: expected one mask \(H, W\) or a stack "
                                          r"\(N, H, W\) or \(N, 1, H, W\), got shape"):
        db.ingest([tmp_path / "cube.npy"])


def test_tensors_through_array_and_dlpack(tmp_path):
    rng = np.random.default_rng(5)
    a = rng.random((2, 1, 8, 7)).astype(np.float32)      # (N, 1, H, W), as models emit
    b = rng.integers(0, 3, (4, 4)).astype(np.uint8)
    db = ms.connect(tmp_path / "db")
    ids = db.ingest(OnlyArray(a), image_id=[1, 2])
    assert np.array_equal(db.mask(ids[0]), a[0, 0])
    assert np.array_equal(db.mask(ids[1]), a[1, 0])
    ids = db.ingest([OnlyDLPack(b), OnlyArray(b[None]), OnlyDLPack(a[0])], image_id=[3, 4, 5])
    assert np.array_equal(db.mask(ids[0]), b)
    assert np.array_equal(db.mask(ids[1]), b)             # (1, H, W): one channel
    assert np.array_equal(db.mask(ids[2]), a[0, 0])


def test_torch_tensors_when_torch_is_installed(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.rand(3, 1, 6, 6, requires_grad=True)
    db = ms.connect(tmp_path / "db")
    ids = db.ingest(t * 1, image_id=[0, 1, 2])
    assert np.array_equal(db.mask(ids[2]), t.detach().numpy()[2, 0])


def test_lossy_conversions_only_when_asked(tmp_path):
    db = ms.connect(tmp_path / "db")
    f64 = np.array([[0.1, 0.5], [1 / 3, 1.0]])
    with pytest.raises(IngestError, match=r"mask 0: dtype float64 is not supported; .* its "
                                          r"values are not all float32 values .* pass "
                                          r"dtype='float32'"):
        db.ingest(f64[None], image_id=[0])
    (i,) = db.ingest(f64[None], image_id=[0], dtype="float32")
    assert np.array_equal(db.mask(i), f64.astype(np.float32))
    k = np.arange(256, dtype=np.uint8).reshape(16, 16)
    (j,) = db.ingest(k[None], image_id=[1], scale=255)
    got = db.mask(j)
    assert got.dtype == np.float32
    assert np.array_equal(got, np.float32(k.astype(np.float64) / 255))   # float32(k / 255)
    with pytest.raises(IngestError, match="scale=0: must be a positive number"):
        db.ingest(k[None], image_id=[2], scale=0)
    with pytest.raises(IngestError, match="the only lossy conversion is dtype='float32'"):
        db.ingest(k[None], image_id=[2], dtype="uint8")


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=5),
       st.sampled_from(["npy", "npz", "png"]))
def test_any_mix_of_file_masks_round_trips(tmp_path_factory, shapes, kind):
    root = tmp_path_factory.mktemp("mix")
    rng = np.random.default_rng(len(shapes))
    masks = [rng.integers(0, 200, s).astype(np.uint8) for s in shapes]
    paths = []
    for k, m in enumerate(masks):
        path = root / f"m{k}.{kind}"
        if kind == "npy":
            np.save(path, m)
        elif kind == "npz":
            np.savez(path, m=m)
        else:
            buf = io.BytesIO()
            Image.fromarray(m).save(buf, format="PNG")
            path.write_bytes(buf.getvalue())
        paths.append(path)
    db = ms.connect(root / "db")
    ids = db.ingest(paths)
    for i, m in zip(ids, masks, strict=True):
        assert np.array_equal(db.mask(i), m)
