"""Statements that change data, against a model kept in plain Python: random sequences of
ingests, upserts, deletes (by metadata and by CP), updates, ALTER TABLE and compaction, with
filter, top-k and grouped queries checked against NumPy after every step, index on and off."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.errors import BindError, IngestError, StoreError

from .strategies import examples

SIDE = 16
BOX = (2, 3, 11, 13)     # x0, y0, x1, y1: not aligned with the 8-pixel cells


def masks_of(seed: int, n: int) -> np.ndarray:
    """Masks with a share of hot pixels that varies by mask (selective filters)."""
    rng = np.random.default_rng(seed)
    hot = rng.random((n, 1, 1)) ** 2
    return (rng.random((n, SIDE, SIDE)) * (rng.random((n, SIDE, SIDE)) < hot + 0.1)
            ).astype(np.float32)


def cp(m: np.ndarray, box=BOX, lo=0.5, hi=1.0) -> int:
    x0, y0, x1, y1 = box
    region = m[y0:y1, x0:x1]
    return int(((region > lo) & (region <= hi)).sum())


class Model:
    """The database as it should be: rows with their pixels, by mask id."""

    def __init__(self) -> None:
        self.rows: dict[int, dict] = {}
        self.next_id = 0
        self.extra = False

    def ingest(self, masks, image_ids, model, ks, replace: bool) -> None:
        if replace:
            keys = set(zip(image_ids, [model] * len(image_ids), strict=True))
            self.rows = {i: r for i, r in self.rows.items()
                         if (r["image_id"], r["model_id"]) not in keys}
        for m, image_id, k in zip(masks, image_ids, ks, strict=True):
            self.rows[self.next_id] = {"image_id": image_id, "model_id": model, "k": k,
                                       "pixels": m, **({"extra": 7} if self.extra else {})}
            self.next_id += 1


OPS = st.one_of(
    st.tuples(st.just("ingest"), st.integers(1, 7), st.integers(0, 10**6), st.booleans()),
    st.tuples(st.just("delete_meta"), st.integers(0, 10)),
    st.tuples(st.just("delete_cp"), st.integers(0, 60)),
    st.tuples(st.just("update"), st.integers(0, 4), st.integers(-3, 3)),
    st.tuples(st.just("alter"),),
    st.tuples(st.just("compact"),),
)


def apply(db: ms.Database, model: Model, op: tuple) -> None:
    kind = op[0]
    if kind == "ingest":
        _, n, seed, replace = op
        rng = np.random.default_rng(seed)
        masks = masks_of(seed, n)
        image_ids = rng.integers(0, 5, n).tolist()
        model_id = "ab"[seed % 2]
        ks = rng.integers(0, 10, n).tolist()
        ids = db.ingest(masks, image_id=image_ids, model_id=model_id, metadata={"k": ks},
                        replace_on=["image_id", "model_id"] if replace else None)
        assert ids == list(range(model.next_id, model.next_id + n)), "ids are never reused"
        model.ingest(list(masks), image_ids, model_id, ks, replace)
    elif kind == "delete_meta":
        gone = [i for i, r in model.rows.items() if r["k"] < op[1]]
        assert db.query(f"DELETE FROM masks WHERE k < {op[1]}").rows() == [(len(gone),)]
        for i in gone:
            del model.rows[i]
    elif kind == "delete_cp":
        sql = f"DELETE FROM masks WHERE CP(mask, box{BOX}, (0.5, 1.0]) > {op[1]}"
        gone = [i for i, r in model.rows.items() if cp(r["pixels"]) > op[1]]
        assert db.query(sql).rows() == [(len(gone),)]
        for i in gone:
            del model.rows[i]
    elif kind == "update":
        _, image_id, d = op
        hit = [r for r in model.rows.values() if r["image_id"] == image_id]
        sql = f"UPDATE masks SET k = k + {d} WHERE image_id = {image_id}"
        assert db.query(sql).rows() == [(len(hit),)]
        for r in hit:
            r["k"] += d
    elif kind == "alter":
        if model.extra:
            db.query("ALTER TABLE masks DROP COLUMN extra")
        else:
            db.query("ALTER TABLE masks ADD COLUMN extra BIGINT DEFAULT 7")
        model.extra = not model.extra
        for r in model.rows.values():
            r.pop("extra", None)
            if model.extra:
                r["extra"] = 7
    else:
        db.compact()


def check(db: ms.Database, model: Model) -> None:
    rows = model.rows
    meta = [(i, r["image_id"], r["model_id"], r["k"]) for i, r in sorted(rows.items())]
    assert db.query("SELECT mask_id, image_id, model_id, k FROM masks").rows() == meta
    if model.extra:
        assert db.query("SELECT mask_id, extra FROM masks").rows() == [
            (i, 7) for i in sorted(rows)]
    counts = {i: cp(r["pixels"]) for i, r in rows.items()}
    topk = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    groups: dict = {}
    for _, r in sorted(rows.items()):
        groups.setdefault(r["image_id"], []).append(r["pixels"])
    inter = sorted(((g, cp(np.minimum.reduce(ms_), (0, 0, SIDE, SIDE), 0.25, 1.0))
                    for g, ms_ in groups.items()), key=lambda kv: (-kv[1], kv[0]))[:2]
    queries = {
        f"SELECT mask_id FROM masks WHERE CP(mask, box{BOX}, (0.5, 1.0]) > 20":
            [(i,) for i, c in sorted(counts.items()) if c > 20],
        f"SELECT mask_id, CP(mask, box{BOX}, (0.5, 1.0]) AS c FROM masks ORDER BY c DESC "
        "LIMIT 3": topk,
        "SELECT image_id, CP(intersect(mask), full, (0.25, 1.0]) AS c FROM masks "
        "GROUP BY image_id ORDER BY c DESC LIMIT 2": inter,
    }
    for sql, want in queries.items():
        for use_index in (True, False):
            assert db.query(sql, use_index=use_index).rows() == want, (sql, use_index)
    for i in list(rows)[:3]:
        assert np.array_equal(db.mask(i), rows[i]["pixels"])


@settings(max_examples=examples(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=9), index=st.sampled_from(["eager", "lazy"]))
def test_random_changes_agree_with_the_model(tmp_path_factory, ops, index):
    """Lazily built CHIs stay with their masks through deletes and compactions."""
    db = ms.connect(tmp_path_factory.mktemp("changes") / "db", segment_size=4, cell_size=8,
                    index=index)
    model = Model()
    apply(db, model, ("ingest", 6, 1, False))
    for op in ops:
        apply(db, model, op)
        if model.rows:
            check(db, model)
    assert db.check().ok
    db.close()


@pytest.fixture
def db(tmp_path):
    database = ms.connect(tmp_path / "db", segment_size=4, cell_size=8)
    database.ingest(masks_of(3, 10), image_id=list(range(10)), model_id="a",
                    metadata={"k": list(range(10)), "label": ["x"] * 10})
    return database


def test_delete_by_cp_reads_only_the_masks_the_index_cannot_decide(tmp_path):
    """A selective CP predicate: the index accepts or rejects most masks, only the rest
    are read, and the rows deleted are exactly those NumPy finds."""
    masks = np.zeros((200, 32, 32), np.float32)
    masks[:10, 0:16, 0:16] = 1.0       # 10 masks hot in the box, the rest cold
    masks[10:20, 8:24, 8:24] = 0.7     # 10 partly inside
    db = ms.connect(tmp_path / "db", cell_size=8)
    db.ingest(masks, image_id=list(range(200)))
    r = db.query("DELETE FROM masks WHERE CP(mask, box(0, 0, 16, 16), (0.5, 1.0]) > 100")
    want = sum(cp(m, (0, 0, 16, 16)) > 100 for m in masks)
    assert r.rows() == [(want,)]
    assert r.stats.verified < 20
    assert db.query("SELECT count(*) FROM masks").rows() == [(200 - want,)]


def test_explain_shows_the_plan_and_changes_nothing(db):
    before = db.query("SELECT count(*) FROM masks").rows()
    text = "\n".join(v for (v,) in db.query(
        "EXPLAIN DELETE FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 10"))
    assert text.startswith("Delete")
    assert "BoundFilter" in text
    assert db.query("SELECT count(*) FROM masks").rows() == before
    lines = [v for (v,) in db.query("EXPLAIN ANALYZE UPDATE masks SET k = 0 WHERE k > 6")]
    assert lines[0] == "Update set k"
    assert "3 rows affected" in lines
    assert db.query("SELECT count(*) FROM masks WHERE k = 0").rows() == [(4,)]


@pytest.mark.parametrize(("sql", "message"), [
    ("UPDATE masks SET mask_id = 1", "column 'mask_id' cannot be set"),
    ("UPDATE masks SET height = 1", "column 'height' cannot be set"),
    ("UPDATE masks SET label = 3", "column 'label' holds string values; 3 is number"),
    ("UPDATE masks SET k = k / 2", "column 'k' holds int64 values; mask 1 would get 0.5"),
    ("UPDATE masks SET k = 1, k = 2", "column 'k' is set twice"),
    ("UPDATE masks SET nope = 1", "unknown column 'nope'"),
    ("UPDATE masks SET k = avg(k)", "SET cannot use aggregates"),
    ("ALTER TABLE masks DROP COLUMN image_id", "column 'image_id' cannot be dropped"),
    ("ALTER TABLE masks ADD COLUMN K BIGINT", "column 'k' exists already"),
    ("ALTER TABLE masks ADD COLUMN x INTEGRAL", "unknown type 'INTEGRAL'"),
    ("ALTER TABLE masks ADD COLUMN _x BIGINT", "reserved"),
    ("ALTER TABLE masks ADD COLUMN x BOX DEFAULT 3", "DEFAULT 3 is not a BOX value"),
    ("DELETE FROM other", "unknown table 'other'"),
    ("DELETE FROM masks WHERE count(*) > 1", "WHERE cannot use aggregates"),
])
def test_refused_statements_name_the_problem_and_change_nothing(db, sql, message):
    from .test_api import files_of

    before = files_of(db.store.root)
    with pytest.raises(ms.MaskSearchError, match=message) as e:
        db.query(sql)
    assert isinstance(e.value, (BindError, ms.QueryError))
    assert "^" in str(e.value) or "mask 1" in str(e.value)
    assert files_of(db.store.root) == before


def test_a_read_only_connection_refuses_changes(db):
    ro = ms.connect(db.store.root, read_only=True)
    for sql in ("DELETE FROM masks", "UPDATE masks SET k = 1",
                "ALTER TABLE masks ADD COLUMN z BIGINT"):
        with pytest.raises(StoreError, match="open read-only"):
            ro.query(sql)
    assert "Delete" in ro.query("EXPLAIN DELETE FROM masks").rows()[0][0]
    assert ro.query("SELECT count(*) FROM masks").rows() == [(10,)]


def test_a_query_answers_from_the_state_it_started_on(db):
    """A snapshot taken before a delete and a compaction by another connection still reads
    its masks; their files go once no connection uses that state."""
    other = ms.connect(db.store.root, segment_size=4)
    old = db.store.snapshot()
    pixels = [old.segments[k].pixels(r) for k, r in zip(
        old.table.column("_seg").to_numpy(), old.table.column("_row").to_numpy(),
        strict=True)]
    other.query("DELETE FROM masks WHERE k < 8")
    other.compact()
    retired = other.store.manifest.retired
    assert retired, "the old segments are retired, not removed: a reader uses them"
    again = [old.segments[k].pixels(r) for k, r in zip(
        old.table.column("_seg").to_numpy(), old.table.column("_row").to_numpy(),
        strict=True)]
    assert all(np.array_equal(a, b) for a, b in zip(pixels, again, strict=True))
    assert old.table.num_rows == 10
    assert db.query("SELECT count(*) FROM masks").rows() == [(2,)]   # refreshes: new state
    root = db.store.root
    del old, pixels, again
    db.close()
    other.query("DELETE FROM masks WHERE k = 8")   # the next writer removes them
    paths = [p for e in retired for p in e["paths"]]
    assert not any((root / p).exists() for p in paths)


def test_streaming_writer_commits_whole_segments_or_nothing(tmp_path):
    db = ms.connect(tmp_path / "db", segment_size=8)
    with db.writer(model_id="m") as w:
        for b in range(6):
            ids = w.add(masks_of(b, 4), image_id=[b] * 4)
            assert ids == list(range(4 * b, 4 * b + 4))
    assert [s.live for s in db.store.manifest.segments] == [8, 8, 8]
    def failing_loop(batches: int, **kw) -> None:
        with db.writer(**kw) as w:
            for b in range(batches):
                w.add(masks_of(b, 4), image_id=[b] * 4)
            raise RuntimeError("the loop failed")

    with pytest.raises(RuntimeError):
        failing_loop(1, model_id="n")
    assert db.query("SELECT count(*) FROM masks").rows() == [(24,)]
    assert len(list((tmp_path / "db" / "segments").iterdir())) == 3
    with pytest.raises(RuntimeError):   # after a commit of 8
        failing_loop(3, model_id="c", commit_every=5)
    assert db.query("SELECT count(*) FROM masks WHERE model_id = 'c'").rows() == [(8,)]
    with pytest.raises(IngestError, match="commit_every"):
        db.writer(commit_every=0)


def test_add_metadata_joins_by_key_never_by_position(db, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image_id,species,box\n7,cat,\"1,2,3,4\"\n2,dog,\"0,0,5,5\"\n")
    assert db.add_metadata(csv) == 2
    got = db.query("SELECT image_id, species, box FROM masks WHERE species IS NOT NULL "
                   "ORDER BY image_id").rows()
    assert got == [(2, "dog", {"x0": 0, "y0": 0, "x1": 5, "y1": 5}),
                   (7, "cat", {"x0": 1, "y0": 2, "x1": 3, "y1": 4})]
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,species\n3,cat\n3,dog\n")
    with pytest.raises(IngestError, match=r"bad.csv, line 3: key '3' appears twice"):
        db.add_metadata(bad)
    bad.write_text("image_id,species\n3,cat\n99,dog\n")
    with pytest.raises(IngestError, match=r"1 key\(s\) match no mask: '99' \(line 3\)"):
        db.add_metadata(bad)
    assert db.add_metadata(bad, allow_missing=True) == 1
    bad.write_text("image_id,k\n3,many\n")
    with pytest.raises(IngestError, match="k"):
        db.add_metadata(bad)


def test_upsert_replaces_a_model_rerun_in_one_commit(db):
    ids = db.ingest(masks_of(5, 3), image_id=[1, 2, 42], model_id="a",
                    metadata={"k": [100, 101, 102]}, replace_on=["image_id", "model_id"])
    assert ids == [10, 11, 12]
    assert ids.replaced == 2
    got = db.query("SELECT mask_id, image_id, k FROM masks WHERE image_id IN (1, 2, 42)")
    assert got.rows() == [(10, 1, 100), (11, 2, 101), (12, 42, 102)]
    with pytest.raises(IngestError, match="replace_on: no column 'nope'"):
        db.ingest(masks_of(5, 1), image_id=[1], replace_on="nope")


def test_aggregated_mask_cache_never_answers_for_a_changed_group(db):
    sql = ("SELECT image_id, CP(union(mask), full, (0.5, 1.0]) AS c FROM masks "
           "GROUP BY image_id ORDER BY c DESC LIMIT 3")
    db.ingest(masks_of(8, 10), image_id=list(range(10)), model_id="b",
              metadata={"k": list(range(10))})
    # Stored CHIs of every group's union (a top-k's first look caches none since f1d6aff).
    db.prepare_aggregates("image_id", "union")
    first = db.query(sql)
    assert first.rows() == db.query(sql, use_index=False).rows()
    db.query("DELETE FROM masks WHERE model_id = 'b' AND image_id < 5")
    assert db.query(sql).rows() == db.query(sql, use_index=False).rows()
    cache = db.store.root / "aggcache"
    assert any(cache.iterdir())
    result = db.compact()
    assert result.cached_chis_removed > 0
    assert db.query(sql).rows() == db.query(sql, use_index=False).rows()


def test_ctrl_c_in_a_writer_block_commits_nothing_of_it(tmp_path):
    db = ms.connect(tmp_path / "db", segment_size=8)
    db.ingest(masks_of(1, 3), image_id=[0, 1, 2])
    before = sorted(p.name for p in (tmp_path / "db" / "segments").iterdir())

    def interrupted() -> None:
        with db.writer(model_id="m") as w:
            w.add(masks_of(2, 20), image_id=list(range(20)))   # two segments written already
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert sorted(p.name for p in (tmp_path / "db" / "segments").iterdir()) == before
    assert db.query("SELECT count(*) FROM masks").rows() == [(3,)]
    assert db.check().ok


def test_a_streaming_writer_holds_about_one_segment_in_memory(tmp_path):
    """200 batches of 8 masks of 64 KB (100 MB in all) through one writer: the peak of
    NumPy memory stays near one segment (16 masks, 1 MB), not the stream."""
    import tracemalloc

    db = ms.connect(tmp_path / "db", segment_size=16)
    rng = np.random.default_rng(0)
    template = rng.random((8, 128, 128)).astype(np.float32)
    db.ingest(template, image_id=[0] * 8)   # compiles the kernels before measuring
    tracemalloc.start()
    try:
        with db.writer(model_id="m") as w:
            for b in range(200):
                w.add(template + np.float32(b), image_id=[b] * 8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert db.query("SELECT count(*) FROM masks").rows() == [(1608,)]
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MB"


def test_compaction_moves_masks_exactly_whatever_their_edges_and_shapes(tmp_path):
    """Segments with other bin edges (uint8 masks of 4 and of 200 values: masks decoded and
    indexed anew) and with other count types (8x8 and 20x20 masks: compressed bytes and CHIs
    copied as they are) compact into segments whose answers equal NumPy's."""
    rng = np.random.default_rng(4)
    db = ms.connect(tmp_path / "db", segment_size=64, cell_size=4, auto_compact=False)
    few = [rng.integers(0, 4, (12, 12)).astype(np.uint8) for _ in range(5)]
    many = [rng.integers(0, 200, (12, 12)).astype(np.uint8) for _ in range(5)]
    small = [rng.random((8, 8)).astype(np.float32) for _ in range(5)]
    large = [rng.random((20, 20)).astype(np.float32) for _ in range(5)]
    masks = []
    for part in (few, many, small, large):
        db.ingest(part, image_id=list(range(len(masks), len(masks) + 5)))
        masks += part
    result = db.compact()
    assert result.segments_before == 4
    assert result.segments_after == 2      # one per pixel type
    assert result.masks_rewritten == 20
    for sql, lo, hi in (("(2, 150]", 2, 150), ("(0.5, 1.0]", 0.5, 1.0)):
        q = f"SELECT mask_id, CP(mask, box(1, 2, 7, 11), {sql}) AS c FROM masks ORDER BY mask_id"
        want = [(i, cp(m, (1, 2, 7, 11), lo, hi)) for i, m in enumerate(masks)]
        assert db.query(q).rows() == want
        assert db.query(q, use_index=False).rows() == want
    for i, m in enumerate(masks):
        assert np.array_equal(db.mask(i), m)
    assert db.check().ok


# --- found in review -------------------------------------------------------------------------

def test_a_refused_add_adds_nothing_to_the_writer(tmp_path):
    db = ms.connect(tmp_path / "db")
    good = list(masks_of(1, 3))
    with db.writer(model_id=1) as w:
        with pytest.raises(IngestError, match="mask 3: a mask must be 2-D"):
            w.add([*good, np.zeros(3, np.float32)], image_id=[20, 21, 22, 23])
        with pytest.raises(IngestError, match="metadata column 'k'"):
            w.add(good, image_id=[1, 2, 3], metadata={"k": [1, "x", 2]})
        assert w.add(good[:1], image_id=[30]) == [0]
    assert db.query("SELECT mask_id, image_id FROM masks").rows() == [(0, 30)]
    assert "k" not in db.columns()


@pytest.mark.parametrize(("sql", "message"), [
    ("UPDATE masks SET image_id = NULL WHERE k = 2",
     "image_id is required for every mask; mask 2 would get NULL"),
    ("UPDATE masks SET mask_type = 1.5", "column 'mask_type' holds int64 values"),
    ("UPDATE masks SET mask_type = true", "mask_type holds integers or text, not bool"),
    ("UPDATE masks SET k = 1.5", "column 'k' holds int64 values; mask 0 would get 1.5"),
    ("UPDATE masks SET mask = 1", "the pixels cannot be set"),
    ("UPDATE masks SET label = box(0, 0, 4, 4)", "column 'label' holds string values; a box"),
])
def test_updates_keep_the_rules_of_ingest(db, sql, message):
    from .test_api import files_of

    before = files_of(db.store.root)
    with pytest.raises(ms.MaskSearchError, match=re.escape(message)) as e:
        db.query(sql)
    assert "^" in str(e.value), "the error shows where in the statement"
    assert files_of(db.store.root) == before


def test_update_sets_a_box_column_to_a_box(db):
    db.query("ALTER TABLE masks ADD COLUMN bbox BOX")
    assert db.query("UPDATE masks SET bbox = box(1, 2, 9, 10) WHERE k < 3").rows() == [(3,)]
    got = db.query("SELECT mask_id, CP(mask, bbox, (0.5, 1.0]) AS c FROM masks WHERE k < 3")
    want = [(i, cp(m, (1, 2, 9, 10))) for i, m in enumerate(masks_of(3, 10)[:3])]
    assert got.rows() == want


def test_regions_remembered_for_a_snapshot_follow_an_update(db, tmp_path):
    """The clipped boxes a query works out are kept with the snapshot's rows: after an
    UPDATE of the box column (a new snapshot), queries here and on another connection see
    the new boxes, not the remembered ones."""
    db.query("ALTER TABLE masks ADD COLUMN bbox BOX")
    db.query("UPDATE masks SET bbox = box(1, 2, 9, 10)")
    sql = "SELECT mask_id, CP(mask, bbox, (0.5, 1.0]) AS c FROM masks ORDER BY mask_id"
    masks = masks_of(3, 10)
    assert db.query(sql).rows() == [(i, cp(m, (1, 2, 9, 10))) for i, m in enumerate(masks)]
    assert db.query(sql).rows() == [(i, cp(m, (1, 2, 9, 10))) for i, m in enumerate(masks)]
    db.query("UPDATE masks SET bbox = box(0, 5, 7, 16) WHERE k >= 4")
    want = [(i, cp(m, (1, 2, 9, 10) if i < 4 else (0, 5, 7, 16))) for i, m in enumerate(masks)]
    assert db.query(sql).rows() == want
    other = ms.connect(db.store.root, create=False)
    assert other.query(sql).rows() == want


def test_a_refused_update_on_a_lazy_database_leaves_every_file(tmp_path):
    from .test_api import files_of

    db = ms.connect(tmp_path / "db", index="lazy", cell_size=8)
    db.ingest(masks_of(3, 10), image_id=list(range(10)), metadata={"k": list(range(10))})
    before = files_of(db.store.root)
    with pytest.raises(ms.QueryError, match="holds int64 values"):
        db.query(f"UPDATE masks SET k = CP(mask, box{BOX}, (0.5, 1.0]) / 7")
    assert files_of(db.store.root) == before


def test_add_metadata_keeps_types_and_text(tmp_path):
    db = ms.connect(tmp_path / "db")
    db.ingest(masks_of(1, 3), image_id=["000123", "000456", "7"],
              metadata={"k": [1, 2, 3], "code": ["a", "b", "c"]})
    csv = tmp_path / "t.csv"
    csv.write_text("image_id,code\n000123,007\n000456,010\n")
    assert db.add_metadata(csv) == 2
    assert db.query("SELECT image_id, code FROM masks ORDER BY mask_id").rows() == [
        ("000123", "007"), ("000456", "010"), ("7", "c")]
    csv.write_text("image_id,k\n7,1.5\n")
    with pytest.raises(IngestError, match="column 'k' holds int64 values in the database; "
                                          "the table gives float64"):
        db.add_metadata(csv)
    csv.write_text("image_id,note,note\n7,a,b\n")
    with pytest.raises(IngestError, match=r"t\.csv: column 'note' appears twice"):
        db.add_metadata(csv)


def test_info_counts_live_masks(db):
    db.query("DELETE FROM masks WHERE k < 4")
    info = db.info()
    assert info["masks"] == 6
    assert info["dtypes"] == {"float32": 6}
    assert info["indexed_masks"] == 6


def test_an_upsert_matches_keys_as_stored_with_their_default(db):
    db.query("ALTER TABLE masks ADD COLUMN grp VARCHAR DEFAULT 'g'")
    db.query("UPDATE masks SET grp = NULL WHERE k = 0")
    ids = db.ingest(masks_of(6, 1), image_id=[99], replace_on=["GRP"])
    assert ids.replaced == 9
    assert db.query("SELECT mask_id, grp FROM masks").rows() == [(0, None), (10, "g")]


def test_pictures_after_a_delete_show_the_right_rows(db):
    """The renderer finds a mask's metadata row by its id: after a delete in its segment,
    a mask keeps its own box; a result's cards skip masks deleted since the query ran."""
    db.query("ALTER TABLE masks ADD COLUMN bbox BOX DEFAULT box(0, 0, 16, 16)")
    db.query("UPDATE masks SET bbox = box(0, 0, 4, 4) WHERE k = 2")
    db.query("UPDATE masks SET bbox = box(3, 3, 12, 12) WHERE k = 3")
    before = np.asarray(db.render(3, roi="bbox"))
    result = db.query("SELECT mask_id, k FROM masks WHERE k < 5")
    db.query("DELETE FROM masks WHERE k = 1")        # an earlier row of the same segment
    assert np.array_equal(np.asarray(db.render(3, roi="bbox")), before)
    html = result._repr_html_()
    assert "deleted since the query ran" in html
    assert html.count('data-mask-id="') >= 4


def test_a_writer_block_refuses_other_writes_of_its_connection_at_once(tmp_path):
    db = ms.connect(tmp_path / "db", lock_timeout=30)
    db.ingest(masks_of(1, 2), image_id=[0, 1])
    start = time.monotonic()
    with db.writer() as w:
        w.add(masks_of(2, 1), image_id=[2])
        with pytest.raises(StoreError, match="this connection is writing already"):
            db.query("DELETE FROM masks WHERE image_id = 0")
    assert time.monotonic() - start < 10
    assert db.query("SELECT count(*) FROM masks").rows() == [(3,)]
