"""Metadata joins files by key, never by position, and nothing wrong gets in: shuffled,
missing, duplicate and differently spelled keys; boxes that do not parse or are inverted;
values that do not fit their column. Every refusal leaves the database byte-identical."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.errors import IngestError

from .strategies import examples
from .test_fuzz_ingest import state


def write_masks(folder: Path, stems: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, stem in enumerate(stems):
        path = folder / f"{stem}.npy"
        np.save(path, np.full((3, 4), k, np.uint8))
        paths.append(path)
    return paths


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def values_by_image(db: ms.Database, column: str) -> dict[str, object]:
    return dict(db.query(f"SELECT image_id, {column} FROM masks").rows())


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text("abcxyz01", min_size=1, max_size=6), min_size=1, max_size=8,
                unique=True),
       st.randoms(use_true_random=False), st.data())
def test_rows_join_their_files_whatever_their_order_and_key_spelling(tmp_path_factory, stems,
                                                                     rnd, data):
    root = tmp_path_factory.mktemp("join")
    paths = write_masks(root / "seg", stems)
    spellings = data.draw(st.lists(st.sampled_from(["stem", "name", "path"]),
                                   min_size=len(stems), max_size=len(stems)))
    rows = []
    for k, (path, how) in enumerate(zip(paths, spellings, strict=True)):
        key = {"stem": path.stem, "name": path.name, "path": str(path)}[how]
        rows.append([key, k * 10, f"{k},{k},{k + 2},{k + 3}"])
    rnd.shuffle(rows)
    meta = write_csv(root / "meta.csv", ["file", "v", "bbox"], rows)
    db = ms.connect(root / "db")
    db.ingest([root / "seg"], metadata=meta)
    v = values_by_image(db, "v")
    assert v == {stem: k * 10 for k, stem in enumerate(stems)}
    boxes = dict(db.query("SELECT image_id, bbox FROM masks").rows())
    assert boxes == {stem: {"x0": k, "y0": k, "x1": k + 2, "y1": k + 3}
                     for k, stem in enumerate(stems)}
    # The pixels are those of the file the row names.
    for (mask_id, stem) in db.query("SELECT mask_id, image_id FROM masks").rows():
        assert db.mask(mask_id)[0, 0] == stems.index(stem)


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text("abc01", min_size=1, max_size=4), min_size=2, max_size=6, unique=True),
       st.sampled_from(["drop", "duplicate", "extra", "drop-allowed"]),
       st.randoms(use_true_random=False))
def test_a_wrong_table_is_refused_whole(tmp_path_factory, stems, fault, rnd):
    """A row dropped, a key written twice, a row for no file: refused, naming it, and the
    database stays byte-identical; a dropped row with allow_missing gives NULLs."""
    root = tmp_path_factory.mktemp("wrong")
    paths = write_masks(root / "seg", stems)
    rows = [[stem, k] for k, stem in enumerate(stems)]
    victim = rnd.randrange(len(rows))
    if fault.startswith("drop"):
        del rows[victim]
    elif fault == "duplicate":
        rows.append([stems[victim], 99])
    else:
        rows.append(["no-such-file", 99])
    rnd.shuffle(rows)
    meta = write_csv(root / "meta.csv", ["file", "v"], rows)
    db = ms.connect(root / "db")
    db.ingest(np.zeros((1, 3, 4), np.uint8), image_id=["first"], metadata={"v": [0]})
    before = state(root / "db")
    if fault == "drop-allowed":
        db.ingest(paths, metadata=meta, allow_missing=True)
        got = values_by_image(db, "v")
        assert got.pop(stems[victim]) is None
        assert got == {"first": 0} | {s: k for k, s in enumerate(stems) if k != victim}
        return
    message = {"drop": rf"1 file has no row in meta\.csv .*{stems[victim]}\.npy",
               "duplicate": rf"key '{stems[victim]}' appears twice",
               "extra": r"1 row names no file being ingested: 'no-such-file'"}[fault]
    with pytest.raises(IngestError, match=message):
        db.ingest(paths, metadata=meta)
    assert state(root / "db") == before


@pytest.fixture
def base(tmp_path):
    """A database with one ingest, and three mask files to add."""
    db = ms.connect(tmp_path / "db")
    db.ingest(np.zeros((1, 3, 4), np.uint8), image_id=["first"], metadata={
        "v": [1], "score": [0.5], "bbox": [(0, 0, 2, 2)]})
    return db, write_masks(tmp_path / "seg", ["a", "b", "c"])


def refused(db: ms.Database, message: str, *args, **kwargs) -> None:
    before = state(Path(db.path))
    with pytest.raises(IngestError, match=message):
        db.ingest(*args, **kwargs)
    assert state(Path(db.path)) == before


def test_a_missing_row_is_an_error_or_nulls_when_allowed(base, tmp_path):
    db, paths = base
    meta = write_csv(tmp_path / "m.csv", ["file", "v"], [["c", 3], ["a", 1]])
    refused(db, r"1 file has no row in m\.csv \(by 'file'\): .*b\.npy; add rows, or pass "
                r"allow_missing=True", paths, metadata=meta)
    db.ingest(paths, metadata=meta, allow_missing=True)
    assert values_by_image(db, "v") == {"first": 1, "a": 1, "b": None, "c": 3}


def test_rows_without_a_file_duplicates_and_ambiguous_keys_are_errors(base, tmp_path):
    db, paths = base
    extra = write_csv(tmp_path / "x.csv", ["file", "v"], [["a", 1], ["b", 2], ["c", 3],
                                                         ["zz", 9]])
    refused(db, r"x\.csv: 1 row names no file being ingested: 'zz' \(row 3\)", paths,
            metadata=extra)
    dup = write_csv(tmp_path / "d.csv", ["file", "v"], [["a", 1], ["b", 2], ["a.npy", 3],
                                                       ["c", 4]])
    refused(db, r"rows \[0, 2\] of d\.csv all name it", paths, metadata=dup)
    twice = write_csv(tmp_path / "t.csv", ["file", "v"], [["a", 1], ["b", 2], ["b", 5],
                                                         ["c", 3]])
    refused(db, r"t\.csv: key 'b' appears twice, in rows 1 and 2", paths, metadata=twice)
    other = write_masks(tmp_path / "other", ["a"])
    stems = write_csv(tmp_path / "s.csv", ["file", "v"], [["a", 1]])
    refused(db, r"s\.csv: key 'a' \(row 0\) names 2 files: .*; use a longer key",
            [paths[0], other[0]], metadata=stems)
    nokey = write_csv(tmp_path / "n.csv", ["name", "v"], [["a", 1]])
    refused(db, r"n\.csv has no column 'file' to match rows to files by .* key= \(--key\)",
            paths[:1], metadata=nokey)
    db.ingest(paths[:1], metadata=nokey, key="name")
    assert values_by_image(db, "v")["a"] == 1


def test_keys_are_text_even_when_they_look_like_numbers(tmp_path):
    paths = write_masks(tmp_path / "seg", ["007", "8"])
    meta = write_csv(tmp_path / "m.csv", ["file", "v"], [["8", 2], ["007", 1]])
    db = ms.connect(tmp_path / "db")
    db.ingest(paths, metadata=meta)
    assert values_by_image(db, "v") == {"007": 1, "8": 2}


def test_a_malformed_box_is_refused_naming_the_line_and_nothing_changes(base, tmp_path):
    db, paths = base
    bad = write_csv(tmp_path / "m.csv", ["file", "bbox"], [["a", "1,2,3,4"], ["b", "1,2,30"],
                                                          ["c", "[0, 0, 5, 5]"]])
    refused(db, r"m\.csv, column 'bbox', line 3: '1,2,30' is not a box \(4 numbers",
            paths, metadata=bad)
    # The column's type stays box: a later, correct ingest is accepted.
    good = write_csv(tmp_path / "g.csv", ["file", "bbox"], [["a", "1,2,3,4"], ["b", "(1 2 3 4)"],
                                                           ["c", "[0, 0, 5, 5]"]])
    db.ingest(paths, metadata=good)
    assert db.columns()["bbox"] == "box"
    assert values_by_image(db, "bbox")["b"] == {"x0": 1, "y0": 2, "x1": 3, "y1": 4}


def test_inverted_boxes_are_refused_and_xywh_boxes_are_converted(base, tmp_path):
    db, paths = base
    refused(db, r"metadata column 'bbox', row 1: box \(10, 10, 2, 2\) has x1 < x0 or y1 < y0 "
                r".*box_format='xywh'", paths, metadata={"bbox": [(0, 0, 1, 1), (10, 10, 2, 2),
                                                               None], "file": ["a", "b", "c"]})
    coco = {"file": ["a", "b", "c"], "bbox": [(10.2, 10.7, 2.5, 3.0), (0, 0, 4, 3), None]}
    db.ingest(paths, metadata=coco, box_format="xywh")
    boxes = values_by_image(db, "bbox")
    assert boxes["a"] == {"x0": 10, "y0": 10, "x1": 13, "y1": 14}   # floor x, ceil(x + w)
    assert boxes["b"] == {"x0": 0, "y0": 0, "x1": 4, "y1": 3}
    assert boxes["c"] is None
    refused(db, r"row 0: a box needs 4 integers \(x0, y0, x1, y1\), got \(1\.5, 0, 2, 2\)",
            np.zeros((1, 3, 4), np.uint8), image_id=["z"], metadata={"bbox": [(1.5, 0, 2, 2)]})


def test_values_that_do_not_fit_their_column_name_the_line(base, tmp_path):
    db, paths = base
    meta = write_csv(tmp_path / "m.csv", ["file", "score", "v"],
                     [["a", "0.5", "1"], ["b", "high", "2"], ["c", "0.25", "3"]])
    refused(db, r"m\.csv, column 'score', line 3: 'high' is not a number, as the column's "
                r"float64 values in the database are", paths, metadata=meta)
    assert db.columns()["score"] == "float64"


def test_dataframes_arrow_tables_and_parquet(base, tmp_path):
    pd = pytest.importorskip("pandas")
    db, paths = base
    frame = pd.DataFrame({"file": ["c", "a", "b"], "v": [3, 1, 2]})
    db.ingest(paths, metadata=frame)
    table = pa.table({"file": ["b", "a", "c"], "v": [20, 10, 30]})
    db.ingest(paths, metadata=table)
    pq.write_table(pa.table({"file": ["a", "c", "b"], "v": [100, 300, 200]}),
                   tmp_path / "m.parquet")
    db.ingest(paths, metadata=tmp_path / "m.parquet")
    rows = db.query("SELECT image_id, v FROM masks ORDER BY mask_id").rows()
    assert rows == [("first", 1), ("a", 1), ("b", 2), ("c", 3), ("a", 10), ("b", 20),
                    ("c", 30), ("a", 100), ("b", 200), ("c", 300)]


def test_arrays_stay_positional_with_their_length_checked(base):
    db, _ = base
    refused(db, r"metadata column 'v' has 1 values for 2 masks \(arrays are matched to "
                r"metadata by position\)", np.zeros((2, 3, 4), np.uint8), image_id=[1, 2],
            metadata={"v": [1]})
    refused(db, r"key='file' joins metadata to files; arrays are matched", np.zeros(
        (2, 3, 4), np.uint8), image_id=["x", "y"], metadata={"v": [1, 2]}, key="file")


def test_id_columns_may_come_from_the_metadata(tmp_path):
    paths = write_masks(tmp_path / "seg", ["a", "b"])
    meta = write_csv(tmp_path / "m.csv", ["file", "image_id", "model_id"],
                     [["b", "img-2", 7], ["a", "img-1", 7]])
    db = ms.connect(tmp_path / "db")
    db.ingest(paths, metadata=meta)
    assert db.query("SELECT image_id, model_id FROM masks ORDER BY mask_id").rows() == [
        ("img-1", 7), ("img-2", 7)]
    with pytest.raises(IngestError, match="model_id is given both as an argument and by a "
                                          r"column of m\.csv"):
        db.ingest(paths, metadata=meta, model_id=3)
