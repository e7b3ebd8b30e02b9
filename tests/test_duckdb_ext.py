"""masksearch from DuckDB SQL against the brute-force oracle, joins with a user's tables
included, and a clean exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms

from .oracle import range_text
from .strategies import brute_cp, examples, value_ranges
from .test_engine_oracle import _build, databases

ROOT = Path(__file__).resolve().parents[1]


def _clip_area(shape, box):
    h, w = shape
    x0, y0, x1, y1 = box
    x0, x1 = min(max(x0, 0), w), min(max(x1, 0), w)
    y0, y1 = min(max(y0, 0), h), min(max(y1, 0), h)
    return max(x1 - x0, 0) * max(y1 - y0, 0)


@st.composite
def user_rows(draw, n_masks: int):
    """A user's table: mask ids (repeats allowed), a box per row (NULL sometimes), and
    count thresholds (NULL meaning an open end)."""
    k = draw(st.integers(1, 12))
    rows = []
    for _ in range(k):
        mid = draw(st.integers(0, n_masks - 1))
        box = None if draw(st.integers(0, 5)) == 0 else tuple(
            draw(st.integers(-3, 22)) for _ in range(4))
        low = draw(st.one_of(st.none(), st.integers(-1, 60), st.floats(0, 60, width=32)))
        high = draw(st.one_of(st.none(), st.integers(0, 400), st.floats(0, 400, width=32)))
        rows.append((mid, box, None if low is None else float(low),
                     None if high is None else float(high)))
    return rows


@settings(max_examples=examples(40))
@given(databases(), st.data())
def test_duckdb_functions_equal_oracle(database, data):
    masks, meta, cell, split = database
    rng = data.draw(value_ranges())
    rows = data.draw(user_rows(len(masks)))
    tmp = tempfile.mkdtemp()
    con = duckdb.connect()
    try:
        db = _build(tmp, masks, meta, cell, split)
        ms.attach_duckdb(con, db)
        boxes = pa.array([None if b is None else dict(zip(("x0", "y0", "x1", "y1"), b,
                                                          strict=True)) for _, b, _, _ in rows],
                         pa.struct([(f, pa.int32()) for f in ("x0", "y0", "x1", "y1")]))
        user = pa.table({"row": list(range(len(rows))), "mid": [r[0] for r in rows],
                         "roi": boxes, "low": [r[2] for r in rows],
                         "high": [r[3] for r in rows]})
        con.register("user_boxes", user)
        text = range_text(rng).replace("'", "''")
        got = con.execute(
            f"SELECT u.row, cp(m.mask_id, u.roi, '{text}'), area(m.mask_id, u.roi), "
            f"cp_between(m.mask_id, u.roi, '{text}', u.low, u.high), "
            f"cp(m.mask_id, m.bbox, '{text}'), cp(m.mask_id, full_image(), '{text}') "
            "FROM user_boxes u JOIN masks m ON m.mask_id = u.mid ORDER BY u.row").fetchall()
        want = []
        for i, (mid, box, low, high) in enumerate(rows):
            pixels = masks[mid]
            c = None if box is None else brute_cp(pixels, box, rng)
            area = None if box is None else _clip_area(pixels.shape, box)
            between = None if c is None else bool(
                (low is None or low <= c) and (high is None or c <= high))
            bbox = meta["bbox"][mid]
            own = None if bbox is None else brute_cp(pixels, tuple(bbox), rng)
            full = brute_cp(pixels, (0, 0, pixels.shape[1], pixels.shape[0]), rng)
            want.append((i, c, area, between, own, full))
        assert got == want
        # The same filter written in masksearch and in DuckDB gives the same masks.
        q = (f"SELECT mask_id FROM masks WHERE CP(mask, bbox, {range_text(rng)}) >= 2 "
             "ORDER BY mask_id")
        via_ms = [r["mask_id"] for r in db.query(q).to_pylist()]
        via_duck = [r[0] for r in con.execute(
            f"SELECT mask_id FROM masks WHERE cp_between(mask_id, bbox, '{text}', 2, NULL) "
            "ORDER BY mask_id").fetchall()]
        assert via_duck == via_ms
    finally:
        con.close()
        shutil.rmtree(tmp)


@pytest.fixture(scope="module")
def saliency(tmp_path_factory):
    from masksearch.synth import saliency_maps

    maps, boxes = saliency_maps(300, size=48, coarse=6, seed=4)
    path = tmp_path_factory.mktemp("duck") / "s.msdb"
    db = ms.connect(path, cell_size=8)
    db.ingest(maps, image_id=np.arange(300) // 3, model_id=np.arange(300) % 3,
              metadata={"bbox": boxes})
    return path, maps, boxes


def test_join_window_function_and_masksearch_statement_as_relation(saliency):
    path, maps, boxes = saliency
    con = duckdb.connect()
    try:
        ms.attach_duckdb(con, str(path))
        con.execute("CREATE TABLE labels AS SELECT i AS image_id, "
                    "CASE WHEN i % 4 = 0 THEN 'test' ELSE 'train' END AS split "
                    "FROM range(100) t(i)")
        # Per image of the test split, the model with the most attention inside the box.
        got = con.execute("""
            SELECT image_id, model_id, c FROM (
              SELECT m.image_id, m.model_id,
                     cp(m.mask_id, m.bbox, '(0.5, 1.0]') AS c,
                     row_number() OVER (PARTITION BY m.image_id
                                        ORDER BY cp(m.mask_id, m.bbox, '(0.5, 1.0]') DESC,
                                                 m.model_id) AS r
              FROM masks m JOIN labels l USING (image_id) WHERE l.split = 'test')
            WHERE r = 1 ORDER BY image_id""").fetchall()
        counts = np.array([int((maps[i, b[1]:b[3], b[0]:b[2]] > 0.5).sum())
                           for i, b in enumerate(boxes)])
        want = []
        for image in range(0, 100, 4):
            ids = [image * 3 + k for k in range(3)]
            best = max(ids, key=lambda i: (counts[i], -(i % 3)))
            want.append((image, best % 3, int(counts[best])))
        assert got == want

        att = ms.attach_duckdb(con, str(path))
        rel = att.query("SELECT mask_id, CP(mask, full, (0.8, 1.0]) AS hot FROM masks "
                        "ORDER BY hot DESC LIMIT 5")
        hot = (maps > 0.8).sum(axis=(1, 2))
        order = sorted(range(300), key=lambda i: (-hot[i], i))[:5]
        assert rel.fetchall() == [(i, int(hot[i])) for i in order]
        att.view("hottest", "SELECT mask_id, image_id FROM masks "
                            "WHERE CP(mask, full, (0.8, 1.0]) > 100")
        joined = con.execute("SELECT count(*) FROM hottest h JOIN labels l USING (image_id) "
                             "WHERE l.split = 'train'").fetchone()[0]
        assert joined == sum(1 for i in range(300) if hot[i] > 100 and (i // 3) % 4 != 0)
    finally:
        con.close()


def test_pruning_reads_few_masks(saliency):
    path, maps, _ = saliency
    con = duckdb.connect()
    try:
        attached = ms.attach_duckdb(con, str(path))
        got = con.execute("SELECT mask_id FROM masks WHERE cp_between(mask_id, box(5, 7, 37, "
                          "39), '(0.6, 1.0]', 600, NULL) ORDER BY mask_id").fetchall()
        pruned_read = attached.masks_read
        exact = con.execute("SELECT count(*) FROM masks WHERE cp(mask_id, box(5, 7, 37, 39), "
                            "'(0.6, 1.0]') >= 600").fetchone()[0]
    finally:
        con.close()
    want = np.flatnonzero((maps[:, 7:39, 5:37] > 0.6).sum(axis=(1, 2)) >= 600)
    assert [r[0] for r in got] == want.tolist()
    assert exact == len(want)
    assert pruned_read < 0.2 * len(maps)   # the index decided the rest
    # cp() needs every exact value: it reads every mask its bounds do not pin down.
    assert attached.masks_read - pruned_read > pruned_read


def test_errors_name_the_problem(saliency, tmp_path):
    path, _, _ = saliency
    con = duckdb.connect()
    try:
        ms.attach_duckdb(con, str(path))
        with pytest.raises(duckdb.Error, match=r"bad range '0.5, 1.0'"):
            con.execute("SELECT cp(mask_id, bbox, '0.5, 1.0') FROM masks").fetchall()
        with pytest.raises(duckdb.Error, match=r"bad range '\[0.9, 0.1\]'.*empty"):
            con.execute("SELECT cp(mask_id, bbox, '[0.9, 0.1]') FROM masks").fetchall()
        with pytest.raises(duckdb.Error, match="mask_id 123456 does not exist in the masksearch database"):
            con.execute("SELECT cp(123456, box(0, 0, 1, 1), '[0, 1]')").fetchall()
        assert con.execute("SELECT cp(NULL, box(0, 0, 1, 1), '[0, 1]'), "
                           "cp(1, NULL, '[0, 1]')").fetchall() == [(None, None)]
    finally:
        con.close()
    with pytest.raises(ms.MaskSearchError, match="no masksearch database"):
        ms.attach_duckdb(duckdb.connect(), str(tmp_path / "missing.msdb"))


def test_process_exits_cleanly_with_or_without_close(saliency):
    path, _, _ = saliency
    for close in ("", "con.close()"):
        script = (f"import duckdb, masksearch\ncon = duckdb.connect()\n"
                  f"masksearch.attach_duckdb(con, {str(path)!r})\n"
                  "print(con.execute(\"SELECT sum(cp(mask_id, bbox, '(0.5, 1.0]')) "
                  "FROM masks\").fetchone()[0])\n" + close + "\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert int(proc.stdout) > 0


def test_refresh_sees_ingests_of_other_processes_and_reruns_views(tmp_path):
    """While a connection is attached, another process ingests, then deletes: ``refresh()``
    shows the new state in the table, in the functions, and in every view registered with
    ``view()``, whose statements it runs again. Until then the table, the views and the
    functions all show the state of the last refresh (a deleted mask still reads back)."""
    path = tmp_path / "shared.msdb"
    first = np.zeros((3, 8, 8), np.uint8)
    first[:, :2, :] = 1                     # 16 pixels of value 1 each
    ms.connect(path).ingest(first, image_id=[0, 1, 2])
    con = duckdb.connect()
    try:
        att = ms.attach_duckdb(con, str(path))
        att.view("ones", "SELECT image_id, CP(mask, full, [1, 1]) AS n FROM masks "
                         "WHERE CP(mask, full, [1, 1]) > 0")
        att.view("per_image", "SELECT image_id, COUNT(*) AS k FROM masks GROUP BY image_id")
        assert con.sql("SELECT count(*), sum(n) FROM ones").fetchall() == [(3, 48)]
        script = ("import sys, numpy as np, masksearch as ms\n"
                  "ms.connect(sys.argv[1]).ingest(np.ones((2, 8, 8), np.uint8), "
                  "image_id=[2, 7])\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        # The table, the views and the functions see the new masks after refresh.
        with pytest.raises(duckdb.Error, match="mask_id 4 does not exist"):
            con.sql("SELECT cp(4, full_image(), '[1, 1]')").fetchall()
        assert con.sql("SELECT count(*) FROM masks").fetchall() == [(3,)]
        assert con.sql("SELECT count(*) FROM ones").fetchall() == [(3,)]
        att.refresh()
        assert con.sql("SELECT count(*) FROM masks").fetchall() == [(5,)]
        assert con.sql("SELECT count(*), sum(n) FROM ones").fetchall() == [(5, 48 + 128)]
        assert con.sql("SELECT image_id, k FROM per_image ORDER BY image_id").fetchall() == [
            (0, 1), (1, 1), (2, 2), (7, 1)]
        assert con.sql("SELECT sum(cp(mask_id, full_image(), '[1, 1]')) FROM masks"
                       ).fetchall() == [(48 + 128,)]
        assert con.sql("SELECT cp(4, full_image(), '[1, 1]')").fetchall() == [(64,)]
        script = ("import sys, masksearch as ms\n"
                  "ms.connect(sys.argv[1]).query('DELETE FROM masks WHERE image_id = 2')\n")
        proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert con.sql("SELECT sum(cp(mask_id, full_image(), '[1, 1]')) FROM masks"
                       ).fetchall() == [(48 + 128,)]      # the state of the last refresh
        att.refresh()
        assert con.sql("SELECT count(*), sum(n) FROM ones").fetchall() == [(3, 16 + 16 + 64)]
        assert con.sql("SELECT sum(cp(mask_id, full_image(), '[1, 1]')) FROM masks"
                       ).fetchall() == [(16 + 16 + 64,)]
        att.detach()
        for name in ("ones", "per_image", "masks"):
            with pytest.raises(duckdb.Error):
                con.sql(f"SELECT * FROM {name}").fetchall()
    finally:
        con.close()


def test_a_read_only_database_is_not_written_by_the_functions(tmp_path):
    """cp() and cp_between() read pixels of a lazily indexed database; over a read-only
    connection they save none of the CHIs they would build."""
    from .test_fuzz_ingest import state

    rng = np.random.default_rng(8)
    maps = rng.random((40, 16, 16)).astype(np.float32)
    path = tmp_path / "lazy.msdb"
    ms.connect(path, index="lazy").ingest(maps, image_id=np.arange(40))
    before = state(path)
    con = duckdb.connect()
    try:
        ms.attach_duckdb(con, ms.connect(path, read_only=True))
        got = con.execute("SELECT mask_id, cp(mask_id, box(1, 2, 13, 11), '(0.5, 1]') FROM "
                          "masks ORDER BY mask_id").fetchall()
        kept = con.execute("SELECT count(*) FROM masks WHERE cp_between(mask_id, full_image(),"
                           " '(0.5, 1]', 130, NULL)").fetchone()[0]
    finally:
        con.close()
    assert got == [(i, int((m[2:11, 1:13] > 0.5).sum())) for i, m in enumerate(maps)]
    assert kept == int(((maps > 0.5).sum((1, 2)) >= 130).sum())
    assert state(path) == before


def test_refresh_with_a_view_that_no_longer_runs_changes_nothing(tmp_path):
    """A view naming a column another statement dropped: refresh() says which view and how
    to go on, and leaves the table and every view as they were; drop_view() removes it."""
    db = ms.connect(tmp_path / "v.msdb")
    db.ingest(np.ones((3, 4, 4), np.uint8), image_id=[0, 1, 2],
              metadata={"label": ["a", "b", "a"]})
    con = duckdb.connect()
    try:
        att = ms.attach_duckdb(con, db)
        att.view("labels", "SELECT label, COUNT(*) AS n FROM masks GROUP BY label")
        att.view("n", "SELECT COUNT(*) AS n FROM masks")
        db.query("DELETE FROM masks WHERE image_id = 0")
        db.query("ALTER TABLE masks DROP COLUMN label")
        with pytest.raises(ms.MaskSearchError, match=r"view 'labels' no longer runs .*"
                                                     r"drop_view\('labels'\)"):
            att.refresh()
        assert con.sql("SELECT count(*) FROM masks").fetchall() == [(3,)]
        assert con.sql("SELECT n FROM n").fetchall() == [(3,)]
        att.drop_view("labels")
        att.refresh()
        assert con.sql("SELECT count(*) FROM masks").fetchall() == [(2,)]
        assert con.sql("SELECT n FROM n").fetchall() == [(2,)]
        with pytest.raises(ms.MaskSearchError, match="no view 'labels'"):
            att.drop_view("labels")
    finally:
        con.close()
