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
    """Every file of a database folder and a digest of its bytes."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


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


