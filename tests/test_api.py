"""The Python surface: iterating results, to_pandas and its extra, close and the context
manager, read-only connections."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import masksearch as ms
from masksearch.synth import saliency_maps

ROOT = Path(__file__).resolve().parents[1]
HOT = "SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 300"
IOU = ("SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / "
       "CP(union(mask), full, (0.5, 1.0]) AS iou FROM masks GROUP BY image_id "
       "HAVING iou > 0.1")


@pytest.fixture(scope="module")
def maps():
    return saliency_maps(40, size=32, coarse=4, seed=5)


def build(path: Path, maps, **kw) -> ms.Database:
    masks, boxes = maps
    db = ms.connect(path, cell_size=8, **kw)
    db.ingest(masks, image_id=np.arange(len(masks)) // 2, metadata={"bbox": boxes})
    return db


def files_of(path: Path) -> dict[str, str]:
    """Every file of a database folder and a digest of its bytes (but the registrations of
    open connections in readers/, which are not data)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.parent.name != "readers"}


def mapped(path: Path) -> list[str]:
    """The files of ``path`` this process has memory-mapped."""
    return [line for line in Path("/proc/self/maps").read_text().splitlines()
            if str(path.resolve()) in line]


# --- Result ---------------------------------------------------------------------------------
def test_result_iterates_over_its_rows(tmp_path, maps):
    db = build(tmp_path / "db", maps)
    r = db.query("SELECT mask_id, image_id, bbox FROM masks WHERE mask_id < 3")
    assert list(r) == r.rows()
    assert len(r) == 3
    first = next(iter(r))
    assert isinstance(first, tuple)
    assert first[:2] == (0, 0)
    assert [mask_id for mask_id, _, _ in r] == [0, 1, 2]
    assert list(db.query("SELECT mask_id FROM masks WHERE mask_id < 0")) == []


def test_to_pandas(tmp_path, maps):
    pandas = pytest.importorskip("pandas")
    db = build(tmp_path / "db", maps)
    r = db.query("SELECT mask_id, CP(mask, full, (0.5, 1.0]) AS hot FROM masks LIMIT 4")
    frame = r.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["mask_id", "hot"]
    assert frame.to_dict("records") == r.to_pylist()


def test_to_pandas_without_pandas_names_the_extra(tmp_path, maps):
    build(tmp_path / "db", maps).close()
    # As if pandas were not installed. (``sys.modules["pandas"] = None`` would break
    # pyarrow itself: its compiled pandas check takes the None for the module.)
    script = f"""
import sys

class NoPandas:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NoPandas())
import masksearch as ms
r = ms.connect({str(tmp_path / "db")!r}).query("SELECT mask_id FROM masks LIMIT 2")
try:
    r.to_pandas()
except ms.MaskSearchError as e:
    print(type(e).__name__, e)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == \
        "MaskSearchError to_pandas needs pandas: pip install masksearch[pandas]"


def test_pandas_is_an_extra_and_in_dev():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'pandas = ["pandas>=2"]' in text
    dev = text.split("dev = [", 1)[1].split("]", 1)[0]
    assert '"pandas>=2"' in dev


# --- close and the context manager ----------------------------------------------------------
CALLS = {
    "query": lambda db: db.query(HOT),
    "explain": lambda db: db.explain(HOT),
    "notices": lambda db: db.notices(HOT),
    "ingest": lambda db: db.ingest(np.zeros((1, 4, 4), np.uint8), image_id=0),
    "build_index": lambda db: db.build_index(),
    "rebuild_index": lambda db: db.rebuild_index(),
    "check": lambda db: db.check(),
    "mask": lambda db: db.mask(0),
    "columns": lambda db: db.columns(),
    "info": lambda db: db.info(),
    "store": lambda db: db.store,
    "read_only": lambda db: db.read_only,
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_method_of_a_closed_database_says_so(tmp_path, maps, call):
    db = build(tmp_path / "db", maps)
    before = files_of(tmp_path / "db")
    db.close()
    with pytest.raises(ms.StoreError, match=r"^the database at .*db is closed$"):
        CALLS[call](db)
    assert files_of(tmp_path / "db") == before
    db.close()      # again: nothing happens
    assert db.closed
    assert "closed" in repr(db)
    assert db.path == str(tmp_path / "db")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_close_releases_the_memory_maps(tmp_path, maps):
    db = build(tmp_path / "db", maps)
    r = db.query(HOT, use_index=False)      # reads every mask's pixels
    assert mapped(tmp_path / "db")
    db.close()
    assert mapped(tmp_path / "db") == []
    assert len(r) == len(r.rows())          # results stay valid


def test_with_closes_on_leaving(tmp_path, maps):
    build(tmp_path / "db", maps).close()
    with ms.connect(tmp_path / "db") as db:
        assert len(db.query(HOT)) > 0
        assert not db.closed
    assert db.closed
    with pytest.raises(ms.StoreError, match="is closed"):
        db.query(HOT)
    with pytest.raises(ZeroDivisionError), ms.connect(tmp_path / "db") as db2:
        raise ZeroDivisionError
    assert db2.closed


# --- read-only connections -----------------------------------------------------------------
def test_read_only_never_creates(tmp_path):
    with pytest.raises(ms.StoreError, match="no masksearch database at"):
        ms.connect(tmp_path / "none", read_only=True)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("write", ["ingest", "build_index", "rebuild_index"])
def test_read_only_refuses_every_write(tmp_path, maps, write):
    build(tmp_path / "db", maps, index="lazy").close()
    before = files_of(tmp_path / "db")
    db = ms.connect(tmp_path / "db", read_only=True)
    assert db.read_only
    with pytest.raises(ms.StoreError, match="read-only: this connection cannot write"):
        CALLS[write](db)
    assert files_of(tmp_path / "db") == before
    assert not ms.connect(tmp_path / "db").read_only


def test_read_only_queries_save_nothing(tmp_path, maps):
    """On a lazily indexed database, read-only queries give the exact rows and build and
    save no CHI (no index delta, no cached aggregated mask), where a writable connection
    saves them."""
    masks, _ = maps
    build(tmp_path / "db", maps, index="lazy").close()
    before = files_of(tmp_path / "db")
    ro = ms.connect(tmp_path / "db", read_only=True)
    for q in (HOT, IOU, "SELECT mask_id, CP(mask, bbox, (0.2, 0.7]) AS c FROM masks "
              "ORDER BY c DESC LIMIT 5"):
        for _ in range(2):
            r = ro.query(q)
            assert r.rows() == ro.query(q, use_index=False).rows()
            assert r.stats.chis_built == 0
    want = np.flatnonzero(((masks > 0.5) & (masks <= 1.0)).sum((1, 2)) > 300).tolist()
    assert [m for (m,) in ro.query(HOT)] == want
    assert files_of(tmp_path / "db") == before
    rw = ms.connect(tmp_path / "db")
    assert rw.query(HOT).stats.chis_built > 0
    assert rw.query(IOU).stats.chis_built > 0
    assert files_of(tmp_path / "db") != before
    # A read-only connection uses the CHIs a writer saved, and still writes nothing.
    saved = files_of(tmp_path / "db")
    ro = ms.connect(tmp_path / "db", read_only=True)
    assert ro.query(HOT).stats.verified < len(masks)
    assert ro.query(HOT).rows() == rw.query(HOT).rows()
    assert ro.query(IOU).rows() == rw.query(IOU, use_index=False).rows()
    assert files_of(tmp_path / "db") == saved


def test_read_only_creation_settings_are_refused_as_usual(tmp_path, maps):
    build(tmp_path / "db", maps).close()
    with pytest.raises(ms.StoreError, match="chosen when a database is created"):
        ms.connect(tmp_path / "db", read_only=True, cell_size=4)
