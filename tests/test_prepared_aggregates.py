"""Prepared aggregates (``Database.prepare_aggregates``): every group's aggregated masks'
CHIs stored ahead of the queries. Answers equal the brute-force oracle with and without them,
with the index on and off, also after random ingests, deletes and updates of the group key
made after preparing (those groups then find no entry of their members); preparing again
computes only the groups without one; bad arguments are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.exec.settings import ExecSettings

from . import oracle
from .strategies import examples, masks
from .test_engine_oracle import LABELS, check_answers, group_queries, predicates

IOU = ("CP(intersect(mask), full, (0.5, 1]) / CP(union(mask), full, (0.5, 1])")
HOW = [ExecSettings(), ExecSettings(probe_groups=0, cached_groups=0, shard_segments=1)]


@st.composite
def mask_rows(draw, side: int, n: int):
    """``n`` masks of one square shape (so that most groups can be aggregated; a few
    groups of two shapes are left to the other tests) and their metadata."""
    pixels = [draw(masks(max_side=side, min_side=side)) for _ in range(n)]
    label = [draw(st.sampled_from(LABELS)) for _ in range(n)]
    score = [draw(st.one_of(st.none(), st.floats(0, 1, width=32).map(float)))
             for _ in range(n)]
    bbox = []
    for _ in range(n):
        x0, y0 = draw(st.integers(-2, side)), draw(st.integers(-2, side))
        bbox.append((x0, y0, draw(st.integers(x0, side + 3)), draw(st.integers(y0, side + 3))))
    return pixels, {"label": label, "score": score, "bbox": bbox}


def mutations(images: int):
    """Changes made after preparing: ("ingest", n new masks, their image ids),
    ("delete", which live row), ("update", which live row, its new image id)."""
    image = st.integers(0, images + 1)
    return st.lists(st.one_of(
        st.tuples(st.just("ingest"), st.lists(image, min_size=1, max_size=3)),
        st.tuples(st.just("delete"), st.integers(0, 1000)),
        st.tuples(st.just("update"), st.integers(0, 1000), image)), max_size=4)


def _ingest(db: ms.Database, rows: list[dict], pixels, meta, image_ids) -> None:
    ids = db.ingest(pixels, image_id=image_ids, metadata=meta)
    for k, mask_id in enumerate(ids):
        rows.append({"mask_id": int(mask_id), "image_id": int(image_ids[k]),
                     "pixels": pixels[k], **{c: v[k] for c, v in meta.items()}})


def _mutate(db: ms.Database, rows: list[dict], change, draw_rows) -> None:
    if change[0] == "ingest":
        pixels, meta = draw_rows(len(change[1]))
        _ingest(db, rows, pixels, meta, list(change[1]))
    elif rows and change[0] == "delete":
        row = rows.pop(change[1] % len(rows))
        assert db.query(f"DELETE FROM masks WHERE mask_id = {row['mask_id']}").rows() == [(1,)]
    elif rows and change[0] == "update":
        row = rows[change[1] % len(rows)]
        row["image_id"] = change[2]
        assert db.query(f"UPDATE masks SET image_id = {change[2]} "
                        f"WHERE mask_id = {row['mask_id']}").rows() == [(1,)]


@settings(max_examples=examples(30), deadline=None)
@given(st.data(), st.sampled_from([4, 6, 9]), st.integers(2, 12),
       st.sampled_from(["image_id", "label"]),
       st.sampled_from([("intersect", "union"), ("mean",), ("union", "mean", "intersect")]),
       st.one_of(st.none(), predicates()), st.lists(group_queries(), min_size=1, max_size=3),
       st.sampled_from([2, 3, 4]))
def test_prepared_aggregates_equal_oracle_after_changes(tmp_path_factory, data, side, n,
                                                        group_by, kinds, where, specs, cell):
    """Prepare, check; change the data (the prepared groups then differ from the stored
    ones), check; prepare again, check. Each check: every query equals the oracle, index on
    and off, one shard and a shard per segment, with and without the automatic cache."""
    tmp = tmp_path_factory.mktemp("prep")
    draw_rows = lambda k: data.draw(mask_rows(side, k))   # noqa: E731
    pixels, meta = draw_rows(n)
    db = ms.connect(tmp / "db", cell_size=cell)
    rows: list[dict] = []
    _ingest(db, rows, pixels, meta, [i // 2 for i in range(n)])
    where_sql = None if where is None else oracle.render(where)
    done = db.prepare_aggregates(group_by, kinds, where=where_sql)
    keep = [r for r in rows if where is None or oracle.evaluate(where, r) is True]
    assert done.groups == len({r[group_by] for r in keep})
    assert done.computed + done.already == done.groups
    check_answers(db, rows, specs, HOW)
    for change in data.draw(mutations(n // 2)):
        _mutate(db, rows, change, draw_rows)
    check_answers(db, rows, specs, HOW)
    again = db.prepare_aggregates(group_by, kinds, where=where_sql)
    keep = [r for r in rows if where is None or oracle.evaluate(where, r) is True]
    assert again.groups == len({r[group_by] for r in keep})
    check_answers(db, rows, specs, HOW)
    with ms.connect(tmp / "db", create=False) as fresh:     # files read by a new connection
        check_answers(fresh, rows, specs, HOW[:1])
    db.close()


def _pairs(tmp_path, images: int = 12, side: int = 16) -> tuple[ms.Database, list[dict]]:
    rng = np.random.default_rng(7)
    pixels = [rng.random((side, side)).astype(np.float32) for _ in range(2 * images)]
    meta = {"label": [LABELS[i % 3] for i in range(2 * images)]}
    db = ms.connect(tmp_path / "db", cell_size=4)
    rows: list[dict] = []
    _ingest(db, rows, pixels, meta, [i // 2 for i in range(2 * images)])
    return db, rows


def _iou_oracle(rows: list[dict]) -> dict[int, float | None]:
    out: dict[int, float | None] = {}
    for image in sorted({r["image_id"] for r in rows}):
        stack = np.stack([r["pixels"] for r in rows if r["image_id"] == image])
        inter = ((stack.min(0) > 0.5) & (stack.min(0) <= 1)).sum()
        union = ((stack.max(0) > 0.5) & (stack.max(0) <= 1)).sum()
        out[image] = float(inter / union) if union else None
    return out


def _analyze(db: ms.Database, sql: str) -> str:
    """EXPLAIN ANALYZE of ``sql``, caching no group's CHIs on the way."""
    return "\n".join(r[0] for r in db.query("EXPLAIN ANALYZE " + sql,
                                             settings=ExecSettings(cached_groups=0)).rows())


def test_prepared_groups_answer_without_pixels_and_changed_ones_fall_back(tmp_path):
    db, rows = _pairs(tmp_path)
    sql = f"SELECT image_id, {IOU} AS iou FROM masks GROUP BY image_id ORDER BY image_id"
    cold = ExecSettings(cached_groups=0)
    assert db.prepare_aggregates().computed == 12
    got = db.query(sql, settings=cold)
    assert got.rows() == sorted(_iou_oracle(rows).items())
    assert got.stats.verified == 0          # the prepared CHIs are exact on aligned cells
    plan = _analyze(db, sql)
    assert "stored 12, prepared 12" in plan
    # Image 3 gets another member, image 5 loses one, one of image 7's moves to image 8.
    _ingest(db, rows, [np.full((16, 16), 0.7, np.float32)], {"label": ["cat"]}, [3])
    db.query(f"DELETE FROM masks WHERE mask_id = {rows[10]['mask_id']}")
    del rows[10]
    moved = next(r for r in rows if r["image_id"] == 7)
    db.query(f"UPDATE masks SET image_id = 8 WHERE mask_id = {moved['mask_id']}")
    moved["image_id"] = 8
    got = db.query(sql, settings=cold)
    assert got.rows() == sorted(_iou_oracle(rows).items())
    assert "prepared 8," in _analyze(db, sql)      # 3, 5, 7, 8 changed
    assert db.query(sql, use_index=False).rows() == got.rows()
    again = db.prepare_aggregates()
    assert (again.groups, again.computed, again.already) == (12, 4, 8)
    assert "prepared 12," in _analyze(db, sql)
    # Compaction and a new connection keep them; info counts them.
    db.compact()
    with ms.connect(tmp_path / "db", create=False) as fresh:
        assert fresh.query(sql, settings=cold).rows() == sorted(_iou_oracle(rows).items())
        # Entries of former memberships stay (never matched) until compaction finds one of
        # their members deleted: image 5's old pair went, images 3, 7 and 8's old ones stay.
        assert fresh.info()["prepared_aggregates"] == {"intersect": 15, "union": 15}


def test_prepared_with_where_serve_only_those_groups(tmp_path):
    db, rows = _pairs(tmp_path)
    db.prepare_aggregates("image_id", ["intersect", "union"], where="label != 'dog'")
    cold = ExecSettings(cached_groups=0)
    filtered = (f"SELECT image_id, {IOU} AS iou FROM masks WHERE label != 'dog' "
                "GROUP BY image_id ORDER BY iou DESC LIMIT 5")
    keep = [r for r in rows if r["label"] != "dog"]
    want = sorted(_iou_oracle(keep).items(), key=lambda kv: (kv[1] is None, -(kv[1] or 0),
                                                             kv[0]))[:5]
    assert db.query(filtered, settings=cold).rows() == want
    assert "prepared 12," in _analyze(db, filtered)
    whole = f"SELECT image_id, {IOU} AS iou FROM masks GROUP BY image_id ORDER BY image_id"
    # Only the images without a dog have the same members in both.
    same = sum(all(r["label"] != "dog" for r in rows if r["image_id"] == i) for i in range(12))
    assert 0 < same < 12
    assert f"prepared {same}," in _analyze(db, whole)
    assert db.query(whole, settings=cold).rows() == sorted(_iou_oracle(rows).items())


def test_bad_arguments_are_refused_by_name(tmp_path):
    db, _ = _pairs(tmp_path, images=2)
    with pytest.raises(ValueError, match="unknown kind 'avg'"):
        db.prepare_aggregates("image_id", ("intersect", "avg"))
    with pytest.raises(ValueError, match="names no column"):
        db.prepare_aggregates(())
    with pytest.raises(ValueError, match="'image id' is not a column name"):
        db.prepare_aggregates("image id")
    with pytest.raises(ms.QueryError, match="nope"):
        db.prepare_aggregates("nope")
    with pytest.raises(ms.QueryError):
        db.prepare_aggregates("image_id", where="label ===")
    db.ingest([np.zeros((5, 5), np.float32)], image_id=[0])
    with pytest.raises(ms.QueryError, match="differ in shape"):
        db.prepare_aggregates("image_id")
    db.close()
    with ms.connect(tmp_path / "db", read_only=True) as ro, \
            pytest.raises(ms.StoreError, match="read-only"):
        ro.prepare_aggregates("label")


def test_a_top_ks_first_look_builds_no_chis(tmp_path):
    """A top-k over groups first reads groups with trivial bounds, as the brute force does;
    building aggregated masks' CHIs there would make a cold query slower than the brute
    force, so only the index's passes build them."""
    db, rows = _pairs(tmp_path)
    sql = f"SELECT image_id, {IOU} AS iou FROM masks GROUP BY image_id ORDER BY iou ASC LIMIT 3"
    want = sorted(_iou_oracle(rows).items(), key=lambda kv: (kv[1] is None, kv[1] or 0,
                                                             kv[0]))[:3]
    first = db.query(sql)                   # 12 groups: the first look reads them all
    assert first.rows() == want
    assert first.stats.verified == 24
    assert first.stats.chis_built == 0
    asked = db.query(sql, settings=ExecSettings(probe_groups=0))    # the index at once
    assert asked.rows() == want
    assert asked.stats.chis_built > 0


_PREPARE_KILLED = """
import sys
import masksearch as ms
from masksearch.exec.settings import ExecSettings
from masksearch.store import faults
db = ms.connect(sys.argv[1], create=False)
faults.arm(int(sys.argv[2]), trace=True)
db.prepare_aggregates("image_id", ("intersect", "union"), settings=ExecSettings(chis_held=4))
print(len(faults.trace()))
"""


def test_a_prepare_killed_at_any_crash_point_leaves_a_consistent_database(tmp_path):
    """SIGKILLed at each crash point of its file writes (40 groups, saved in one or more
    files), a preparation leaves a database that opens, passes ``check``, answers like the
    oracle, keeps no half-written file, and is prepared again to the end."""
    import subprocess
    import sys

    db, rows = _pairs(tmp_path, images=40)
    db.close()
    sql = f"SELECT image_id, {IOU} AS iou FROM masks GROUP BY image_id ORDER BY image_id"
    want = sorted(_iou_oracle(rows).items())
    run = [sys.executable, "-c", _PREPARE_KILLED, str(tmp_path / "db")]
    points = int(subprocess.run([*run, "0"], capture_output=True, text=True,
                                check=True).stdout.split()[-1])
    # Each file is written, synced and renamed; how many files (batches of CHIs saved as the
    # verifying threads finish) varies from run to run, so a later point may not be reached.
    assert points >= 4
    killed = 0
    for n in range(1, points + 1):
        target = tmp_path / f"db-{n}"
        _copy_without_prepared(tmp_path / "db", target)
        proc = subprocess.run([sys.executable, "-c", _PREPARE_KILLED, str(target), str(n)],
                              capture_output=True, text=True)
        assert proc.returncode in (-9, 0), proc.stderr[-2000:]
        killed += proc.returncode == -9
        with ms.connect(target, create=False) as db:
            assert db.check().ok
            assert db.query(sql, settings=ExecSettings(cached_groups=0)).rows() == want
            assert not list((target / "aggcache").glob("*.tmp*"))    # half-written: gone
            done = db.prepare_aggregates()
            assert done.computed + done.already == 40
            assert db.query(sql, settings=ExecSettings(cached_groups=0)).rows() == want
            assert db.info()["prepared_aggregates"] == {"intersect": 40, "union": 40}
    assert killed >= 4


def _copy_without_prepared(src, dest) -> None:
    import shutil

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("aggcache", "lock"))
