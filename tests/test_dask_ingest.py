"""Ingest of Dask collections (``db.ingest(dask_array_or_bag)``): workers write the segments
of their partitions, the client commits once. The database equals what a local ingest of
the same masks makes (rows, pixels, answers); a failed or cancelled ingest commits nothing
and leaves no file."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masksearch as ms

from . import oracle
from .dask_faults import kill_a_worker, slow_down
from .strategies import examples, masks
from .test_engine_oracle import _same, expected, queries

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dbag = pytest.importorskip("dask.bag")


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "lock" and "readers" not in p.parts}


def _rows(db: ms.Database) -> list[tuple]:
    return db.query("SELECT mask_id, image_id, model_id, height, width, k FROM masks").rows()


@st.composite
def stacks(draw):
    """Masks of one shape and dtype (a Dask array) or of several (a bag), chunked."""
    n = draw(st.integers(1, 12))
    uniform = draw(st.booleans())
    if uniform:
        first = draw(masks(max_side=12))
        rest = [draw(masks(max_side=12).filter(lambda m, f=first: m.shape == f.shape
                                                and m.dtype == f.dtype)) for _ in range(n - 1)]
        values = [first, *rest]
    else:
        values = [draw(masks(max_side=12)) for _ in range(n)]
    return values, uniform, draw(st.integers(1, 5)), draw(st.integers(1, 4))


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(stacks(), st.lists(queries(), min_size=1, max_size=2))
def test_a_collection_ingested_on_the_cluster_equals_a_local_ingest(client, data, specs):
    values, uniform, chunk, segment = data
    n = len(values)
    k = list(range(n))
    tmp = tempfile.mkdtemp()
    try:
        local = ms.connect(tmp + "/local", segment_size=segment, cell_size=4)
        local.ingest(values, image_id=[i // 2 for i in range(n)], metadata={"k": k})
        on = ms.connect(tmp + "/cluster", segment_size=segment, cell_size=4, executor=client)
        collection = da.from_array(np.stack(values), chunks=(chunk, -1, -1)) if uniform \
            else dbag.from_sequence(values, partition_size=chunk)
        seen: list[tuple[int, int]] = []
        ids = on.ingest(collection, image_id=[i // 2 for i in range(n)], metadata={"k": k},
                        progress=lambda done, total: seen.append((done, total)))
        assert list(ids) == list(range(n))
        assert seen[-1] == (n, n)
        assert _rows(on) == _rows(local)
        for i in range(n):
            got = on.mask(i)
            assert got.dtype == values[i].dtype
            assert np.array_equal(got, values[i], equal_nan=got.dtype.kind == "f")
        rows = oracle.as_rows(values, 0, {"k": k, "label": ["cat"] * n,
                                          "score": [None] * n, "bbox": [None] * n})
        for spec in specs:
            want = expected(spec, rows)
            if want is None or "label" in spec.sql() or "score" in spec.sql() \
                    or "bbox" in spec.sql():
                continue
            assert _same(on.query(spec.sql()).rows(), want), spec.sql()
        assert on.check().ok
        assert not [p for p in Path(tmp, "cluster", "segments").iterdir()
                    if p.name.startswith("ingest-")]
    finally:
        shutil.rmtree(tmp)


def test_a_bag_of_files_joins_its_metadata_by_key(client, tmp_path):
    """Files on a shared folder: the client lists them and joins the metadata by key; the
    workers read and write them; the result equals a local ingest of the same files."""
    rng = np.random.default_rng(3)
    paths = []
    for i in range(9):
        path = tmp_path / "masks" / f"img{i}.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, rng.random((10, 12)).astype(np.float32))
        paths.append(str(path))
    meta = {"file": [f"img{i}" for i in reversed(range(9))], "k": list(reversed(range(9)))}
    local = ms.connect(tmp_path / "local", segment_size=2)
    local.ingest(paths, metadata=meta)
    on = ms.connect(tmp_path / "cluster", segment_size=2, executor=client)
    on.ingest(dbag.from_sequence(paths, npartitions=4), metadata=meta)
    assert _rows(on) == _rows(local)
    assert on.query("SELECT image_id, k FROM masks WHERE image_id = 'img4'").rows() == [
        ("img4", 4)]
    for i in range(9):
        assert np.array_equal(on.mask(i), local.mask(i))


def test_an_upsert_from_the_cluster_replaces_in_the_same_commit(client, tmp_path):
    db = ms.connect(tmp_path / "db", segment_size=3, executor=client)
    maps = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)
    db.ingest(maps, image_id=np.arange(6), model_id="a")
    again = db.ingest(da.from_array(maps[:4] / 2, chunks=(2, 8, 8)), image_id=np.arange(4),
                      model_id="a", replace_on=["image_id", "model_id"])
    assert again.replaced == 4
    assert db.query("SELECT count(*) FROM masks").rows() == [(6,)]
    assert np.array_equal(db.mask(again[0]), maps[0] / 2)


def test_a_bad_mask_on_a_worker_commits_nothing_and_leaves_no_file(client, tmp_path):
    """Partition 3 holds a 3-D element: the worker's error names it, the tasks still
    running finish writing nothing that stays, and every file is as before."""
    db = ms.connect(tmp_path / "db", segment_size=2, executor=client)
    good = list(np.random.default_rng(1).random((4, 6, 6)).astype(np.float32))
    db.ingest(good, image_id=[0, 1, 2, 3])
    before = _files(tmp_path / "db")
    values = good * 3 + [np.zeros((2, 6, 6), np.float32)] + good
    with pytest.raises(ms.IngestError, match=r"mask 12\b"):
        db.ingest(dbag.from_sequence(values, partition_size=4), image_id=list(range(17)))
    assert _files(tmp_path / "db") == before
    assert db.query("SELECT count(*) FROM masks").rows() == [(4,)]


def test_an_ingest_stopped_by_ctrl_c_commits_nothing(client, tmp_path):
    """The progress callback raises KeyboardInterrupt after the first partition: nothing
    is committed, and the next writer removes whatever the cancelled tasks wrote."""
    db = ms.connect(tmp_path / "db", segment_size=2, executor=client)
    maps = np.random.default_rng(2).random((40, 8, 8)).astype(np.float32)

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        db.ingest(da.from_array(maps, chunks=(4, 8, 8)), image_id=np.arange(40),
                  progress=stop)
    _wait_idle(client)          # the tasks that were running when it stopped have ended
    db.ingest(maps[:2], image_id=[0, 1])      # the next writer cleans up
    assert db.query("SELECT count(*) FROM masks").rows() == [(2,)]
    assert sorted(os.listdir(tmp_path / "db" / "segments")) == sorted(
        s.name for s in db.store.manifest.segments)


def _wait_idle(client) -> None:
    import time

    deadline = time.monotonic() + 30
    while any(client.run(lambda dask_worker: dask_worker.state.executing_count).values()):
        assert time.monotonic() < deadline, "the cluster's tasks never ended"
        time.sleep(0.05)


def test_without_a_cluster_dask_s_own_scheduler_writes(tmp_path):
    db = ms.connect(tmp_path / "db", segment_size=3)
    maps = np.random.default_rng(4).random((7, 5, 5))
    ids = db.ingest(da.from_array(maps, chunks=(3, 5, 5)), image_id=np.arange(7),
                    dtype="float32")
    assert list(ids) == list(range(7))
    assert np.array_equal(db.mask(6), maps[6].astype(np.float32))


def test_a_collection_of_the_wrong_shape_is_refused(tmp_path):
    db = ms.connect(tmp_path / "db")
    with pytest.raises(ms.IngestError, match=r"shape \(N, H, W\)"):
        db.ingest(da.zeros((4, 4), chunks=2), image_id=[0, 1, 2, 3])
    with pytest.raises(ms.IngestError, match="image_id is required"):
        db.ingest(da.zeros((2, 4, 4), chunks=1))


@pytest.mark.slow
def test_a_worker_killed_during_an_ingest_commits_all_or_nothing(tmp_path):
    """One of two worker processes dies while partitions are written: Dask runs its tasks
    again elsewhere and the database holds every mask exactly, or the ingest fails with
    an IngestError and the database is as before; no staging folder is left."""
    import threading
    import time

    db_path = tmp_path / "db"
    ms.connect(db_path, segment_size=4).ingest(np.zeros((1, 8, 8), np.float32), image_id=[0])
    before = _files(db_path)
    maps = np.random.default_rng(5).random((48, 8, 8)).astype(np.float32)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    try:
        with distributed.Client(cluster) as c:
            c.run(slow_down, "masksearch.ingest.cluster", "checked_pixels", 0.04)
            db = ms.connect(db_path, segment_size=4, executor=c)
            outcome: list = []

            def run() -> None:
                try:
                    outcome.append(db.ingest(da.from_array(maps, chunks=(6, 8, 8)),
                                             image_id=np.arange(48)))
                except ms.MaskSearchError as e:
                    outcome.append(e)

            thread = threading.Thread(target=run)
            thread.start()
            time.sleep(1.0)
            assert thread.is_alive(), "the ingest ended before the worker was killed"
            kill_a_worker(c)
            thread.join(180)
            assert not thread.is_alive()
            assert outcome
            if isinstance(outcome[0], ms.MaskSearchError):
                assert "nothing was committed" in str(outcome[0])
                assert _files(db_path) == before
            else:
                assert list(outcome[0]) == list(range(1, 49))
                for i in range(48):
                    assert np.array_equal(db.mask(i + 1), maps[i])
                assert db.check().ok
            assert not [p for p in (db_path / "segments").iterdir()
                        if p.name.startswith("ingest-")]
    finally:
        cluster.close()


def test_a_bag_of_files_with_an_empty_partition_ingests_the_rest(client, tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / "masks" / f"m{i}.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.full((4, 5), i / 10, np.float32))
        paths.append(str(path))
    bag = dbag.from_sequence(paths, npartitions=3).filter(lambda p: not p.endswith(
        ("m2.npy", "m3.npy")))
    db = ms.connect(tmp_path / "db", executor=client)
    ids = db.ingest(bag)
    assert db.query("SELECT image_id FROM masks ORDER BY mask_id").rows() == [
        ("m0",), ("m1",), ("m4",), ("m5",)]
    assert np.array_equal(db.mask(ids[2]), np.full((4, 5), 0.4, np.float32))


def test_an_error_of_the_progress_callback_is_its_own(client, tmp_path):
    """The callback's exception comes out as it was (not as the cluster's), nothing is
    committed, and no task is left writing."""
    db = ms.connect(tmp_path / "db", segment_size=2, executor=client)
    before = _files(tmp_path / "db")
    maps = np.random.default_rng(6).random((12, 6, 6)).astype(np.float32)

    def broken(done, total):
        raise ValueError("my callback broke")

    with pytest.raises(ValueError, match="my callback broke"):
        db.ingest(da.from_array(maps, chunks=(3, 6, 6)), image_id=np.arange(12),
                  progress=broken)
    assert _files(tmp_path / "db") == before


def test_a_read_only_connection_refuses_a_collection_before_computing_it(client, tmp_path):
    ms.connect(tmp_path / "db").ingest(np.zeros((1, 4, 4), np.float32), image_id=[0])
    db = ms.connect(tmp_path / "db", read_only=True, executor=client)
    computed = []
    bag = dbag.from_sequence([np.zeros((4, 4), np.float32)] * 3).map(
        lambda m: computed.append(1) or m)
    with pytest.raises(ms.StoreError, match="read-only"):
        db.ingest(bag, image_id=[1, 2, 3])
    assert not computed
