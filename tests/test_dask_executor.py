"""Queries on a Dask cluster (``connect(path, executor=client)``): every shard's fragment runs
as a task on a worker that opens the segments itself, the merge runs in the client; answers
equal the brute-force oracle, as the local executor's do. An in-process cluster runs the
property tests; a cluster of worker processes runs the same queries for real."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.exec.settings import ExecSettings

from . import oracle, test_mutations
from .dask_faults import kill_a_worker, slow_down_masks
from .strategies import examples
from .test_engine_oracle import (
    _build,
    check_answers,
    databases,
    group_queries,
    queries,
)

distributed = pytest.importorskip("distributed")


def _check_on_cluster(client, database, specs, remote_masks: int = 256) -> None:
    ms_, meta, cell, split = database
    tmp = tempfile.mkdtemp()
    tuned = ExecSettings(remote_masks=remote_masks)
    try:
        _build(tmp, ms_, meta, cell, split).close()
        db = ms.connect(tmp + "/db", executor=client)
        check_answers(db, oracle.as_rows(ms_, 0, meta), specs, [tuned])
        db.close()
    finally:
        shutil.rmtree(tmp)


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(databases(), st.lists(st.one_of(queries(), group_queries()), min_size=1, max_size=3),
       st.sampled_from([0, 256]))
def test_queries_on_a_cluster_equal_the_oracle(client, database, specs, remote_masks):
    """``remote_masks=0``: the merge verifies groups' members and aggregated masks on the
    workers, whatever their number."""
    _check_on_cluster(client, database, specs, remote_masks)


QUERIES = [
    "SELECT mask_id FROM masks WHERE CP(mask, box(1, 2, 13, 11), (0.5, 1.0]) > 60",
    "SELECT mask_id, CP(mask, bbox, (0.5, 1.0]) AS c FROM masks ORDER BY c DESC LIMIT 5",
    "SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / CP(union(mask), full, "
    "(0.5, 1.0]) AS iou FROM masks GROUP BY image_id ORDER BY iou ASC LIMIT 3",
    "SELECT count(*) AS n, avg(CP(mask, full, (0.2, 0.4])) AS a FROM masks",
]


def saliency_db(path):
    rng = np.random.default_rng(0)
    maps = rng.random((40, 24, 24)).astype(np.float32)
    boxes = [(2, 3, 15, 17)] * 40
    db = ms.connect(path, segment_size=8, cell_size=8)
    db.ingest(maps, image_id=np.arange(40) // 2, metadata={"bbox": boxes})
    return db


def test_worker_processes_open_the_segments_themselves(tmp_path):
    """Two worker processes: each shard's fragment runs in a process that opens the
    database from its path; the answers and the statistics of EXPLAIN ANALYZE equal the
    local executor's."""
    local = saliency_db(tmp_path / "db")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    try:
        with distributed.Client(cluster) as c:
            db = ms.connect(tmp_path / "db", executor=c)
            for sql in QUERIES:
                assert db.query(sql).rows() == local.query(sql).rows(), sql
            workers = c.run(lambda: __import__("os").getpid())
            assert len(set(workers.values())) == 2
            on, here = db.query(QUERIES[0]).stats, local.query(QUERIES[0]).stats
            assert (on.masks_total, on.verified, on.accepted_by_index) == (
                here.masks_total, here.verified, here.accepted_by_index)
            # EXPLAIN ANALYZE shows what each worker did: 5 segments, 40 masks in all.
            plan = [v for (v,) in db.query("EXPLAIN ANALYZE " + QUERIES[0])]
            per_worker = [re.match(r"worker (\S+): (\d+) shards, (\d+) masks, (\d+) verified",
                                   line) for line in plan if line.startswith("worker ")]
            assert per_worker
            assert all(m is not None for m in per_worker)
            assert {m.group(1) for m in per_worker} <= set(workers)
            assert sum(int(m.group(2)) for m in per_worker) == 5
            assert sum(int(m.group(3)) for m in per_worker) == 40
            assert sum(int(m.group(4)) for m in per_worker) == here.verified
            assert not [line for line in local.query("EXPLAIN ANALYZE " + QUERIES[0]).rows()
                        if line[0].startswith("worker ")]
    finally:
        cluster.close()


def test_a_commit_during_a_query_does_not_reach_its_workers(client, tmp_path):
    """Workers read the state the query started on: a snapshot taken before a DELETE
    answers, through the cluster, as before it."""
    from masksearch.exec.dask_runner import DaskRunner
    from masksearch.exec.executor import execute
    from masksearch.lang.binder import bind
    from masksearch.lang.parser import parse
    from masksearch.plan.planner import plan

    local = saliency_db(tmp_path / "db")
    before = local.store.snapshot()
    want = local.query(QUERIES[0]).rows()
    local.query("DELETE FROM masks WHERE image_id < 10")
    physical = plan(bind(parse(QUERIES[0]), QUERIES[0], before.columns))
    table, _ = execute(physical, before, runner=DaskRunner(client, str(tmp_path / "db")),
                       settings=ExecSettings(), read_only=True)
    assert [tuple(r.values()) for r in table.to_pylist()] == want
    assert local.query(QUERIES[0]).rows() != want


def test_a_bad_executor_is_refused(tmp_path):
    saliency_db(tmp_path / "db")
    with pytest.raises(ms.StoreError, match=r"executor must be a distributed\.Client"):
        ms.connect(tmp_path / "db", executor=42)


@pytest.mark.slow
def test_a_worker_killed_during_a_query_gives_the_exact_answer_or_a_clear_error(tmp_path):
    """One of two worker processes dies while the query's tasks run: Dask runs its tasks
    again on the other (the nanny restarts it), and the answer is exact; if the cluster
    gives up, the error is a QueryError that says so, never a wrong or partial answer."""
    import threading
    import time

    local = saliency_db(tmp_path / "db")
    sql = QUERIES[0]
    want = local.query(sql, use_index=False).rows()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    try:
        with distributed.Client(cluster) as c:
            c.run(slow_down_masks, 0.1)
            db = ms.connect(tmp_path / "db", executor=c)
            got: list = []

            def run() -> None:
                try:
                    got.append(db.query(sql, use_index=False).rows())
                except ms.MaskSearchError as e:
                    got.append(e)

            thread = threading.Thread(target=run)
            thread.start()
            time.sleep(0.8)          # tasks are running: 40 masks at 100 ms, on 2 workers
            assert thread.is_alive(), "the query ended before the worker was killed"
            kill_a_worker(c)
            thread.join(120)
            assert not thread.is_alive()
            assert got, "the query returned nothing"
            if isinstance(got[0], ms.MaskSearchError):
                assert "Dask cluster could not run the query" in str(got[0])
            else:
                assert got[0] == want
    finally:
        cluster.close()


def _top_k_queries():
    return queries().filter(lambda q: bool(q.order) and q.limit is not None)


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(databases(), st.lists(_top_k_queries(), min_size=1, max_size=3),
       st.integers(1, 3))
def test_top_k_over_many_shards_equals_the_oracle(client, database, specs, segment_size):
    """A top-k over segments of a few masks each, a task per segment: the global floor
    from every shard's bounds, the shards run best first and skipped once they cannot
    reach the floor; with NULLs, NaNs and ties the answer is the oracle's."""
    ms_, meta, cell, _ = database
    cell, mode = cell
    tmp = tempfile.mkdtemp()
    try:
        ms.connect(tmp + "/db", cell_size=cell, index=mode, segment_size=segment_size).ingest(
            ms_, image_id=[i // 2 for i in range(len(ms_))], metadata=meta)
        db = ms.connect(tmp + "/db", executor=client)
        check_answers(db, oracle.as_rows(ms_, 0, meta), specs, [ExecSettings(),
                                                                 ExecSettings(shard_segments=1)])
        db.close()
    finally:
        shutil.rmtree(tmp)


def test_a_top_k_verifies_only_the_shards_that_can_contribute(client, tmp_path):
    """Segments of very different values: the index's floor rules most segments out before
    any pixel is read (EXPLAIN ANALYZE counts them), fewer masks are verified than by
    per-segment top-ks that know nothing of each other, and the answer is the local one."""
    rng = np.random.default_rng(1)
    level = np.repeat(np.arange(12), 8) / 12.0       # segment j: values around j / 12
    maps = np.clip(level[:, None, None] + rng.random((96, 16, 16)) * 0.2, 0, 1)
    local = ms.connect(tmp_path / "db", segment_size=8, cell_size=4)
    local.ingest(maps.astype(np.float32), image_id=np.arange(96))
    sql = "SELECT mask_id, CP(mask, box(1, 1, 11, 13), (0.5, 1.0]) AS c FROM masks " \
          "ORDER BY c DESC LIMIT 5"
    one = ExecSettings(shard_segments=1)       # a task per segment
    db = ms.connect(tmp_path / "db", executor=client)
    want = local.query(sql, use_index=False).rows()
    assert db.query(sql, settings=one).rows() == want
    plan = [v for (v,) in db.query("EXPLAIN ANALYZE " + sql, settings=one)]
    merge = next(line for line in plan if "MergeRows" in line)
    skipped = int(re.search(r"skipped (\d+)", merge).group(1))
    assert skipped >= 6, merge
    apart = local.query(sql, settings=one)
    assert apart.rows() == want
    assert db.query(sql, settings=one).stats.verified < apart.stats.verified
    assert db.query(sql).rows() == want                   # tasks of several segments
    assert db.query(sql, use_index=False).rows() == want


def test_a_large_manifest_goes_to_the_cluster_once(client, tmp_path, monkeypatch):
    """Above ``SCATTER_ABOVE`` segment entries per query, tasks take a future of the
    manifest sent once; the answers stay the local ones."""
    from masksearch.exec import dask_runner
    local = saliency_db(tmp_path / "db")
    db = ms.connect(tmp_path / "db", executor=client)
    scattered = []
    scatter = client.scatter
    monkeypatch.setattr(dask_runner, "SCATTER_ABOVE", 10)
    monkeypatch.setattr(client, "scatter", lambda *a, **k: scattered.append(1) or scatter(
        *a, **k))
    for sql in QUERIES:
        assert db.query(sql, settings=ExecSettings(shard_segments=1)).rows() == \
            local.query(sql).rows(), sql
    assert len(scattered) == 1                 # once for the state the queries read
    local.query("DELETE FROM masks WHERE image_id = 3")
    assert db.query(QUERIES[0], settings=ExecSettings(shard_segments=1)).rows() == \
        local.query(QUERIES[0]).rows()
    assert len(scattered) == 2                 # a new state: sent again


@settings(max_examples=examples(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(test_mutations.OPS, min_size=1, max_size=7))
def test_changes_through_a_cluster_agree_with_the_model(client, tmp_path_factory, ops):
    """DELETE and UPDATE find their rows with fragments run on the workers (the commit stays
    in the client); every state then answers through the cluster as the model says."""
    db = ms.connect(tmp_path_factory.mktemp("changes") / "db", segment_size=4, cell_size=8,
                    executor=client)
    model = test_mutations.Model()
    test_mutations.apply(db, model, ("ingest", 6, 1, False))
    for op in ops:
        test_mutations.apply(db, model, op)
        if model.rows:
            test_mutations.check(db, model)
    assert db.check().ok
    db.close()


def test_the_merge_counts_many_masks_on_the_workers(client, tmp_path, monkeypatch):
    """Grouped queries whose merge reads members: with ``remote_masks=0`` the workers
    count them (the client's own aggregation is never reached), and the answers equal the
    local executor's."""
    from masksearch.exec import dask_runner
    from masksearch.exec.groups import verify as group_verify
    local = saliency_db(tmp_path / "db")
    db = ms.connect(tmp_path / "db", executor=client)

    sqls = [QUERIES[2], "SELECT image_id, AVG(CP(mask, bbox, (0.5, 1.0])) AS a FROM masks "
            "GROUP BY image_id HAVING a > 30", "SELECT image_id, CP(mean(mask), full, "
            "(0.4, 0.6]) AS m FROM masks GROUP BY image_id ORDER BY m DESC LIMIT 4"]
    wants = [local.query(sql, use_index=False).rows() for sql in sqls]

    def not_here(*args):
        raise AssertionError("the client read a group's member")

    monkeypatch.setattr(group_verify, "read_mask", not_here)
    calls: list[str] = []
    for name in ("count_rows", "count_groups"):
        method = getattr(dask_runner.DaskPixels, name)
        monkeypatch.setattr(dask_runner.DaskPixels, name,
                            lambda self, *a, _m=method, _n=name: calls.append(_n) or _m(self, *a))
    for sql, want in zip(sqls, wants, strict=True):
        for use_index in (True, False):
            got = db.query(sql, use_index=use_index, settings=ExecSettings(remote_masks=0))
            assert got.rows() == want, (sql, use_index)
    assert {"count_rows", "count_groups"} <= set(calls)


@pytest.mark.slow
def test_the_cli_runs_a_query_on_a_scheduler(tmp_path):
    """``masksearch query PATH SQL --scheduler ADDRESS``: a cluster of worker processes
    answers as the local executor; an address nobody answers is a clear error."""
    import subprocess
    import sys

    local = saliency_db(tmp_path / "db")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", scheduler_port=0)
    try:
        for sql in QUERIES[:3]:
            out = subprocess.run(
                [sys.executable, "-m", "masksearch", "query", str(tmp_path / "db"), sql,
                 "--format", "json", "--scheduler", cluster.scheduler_address],
                capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            here = subprocess.run(
                [sys.executable, "-m", "masksearch", "query", str(tmp_path / "db"), sql,
                 "--format", "json"], capture_output=True, text=True, timeout=120)
            assert out.stdout == here.stdout, sql
    finally:
        cluster.close()
    with socket_closed() as address:
        out = subprocess.run(
            [sys.executable, "-m", "masksearch", "query", str(tmp_path / "db"), QUERIES[0],
             "--scheduler", address], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert f"error: cannot reach the Dask scheduler at {address}" in out.stderr
    assert "Traceback" not in out.stderr
    local.close()


@contextlib.contextmanager
def socket_closed():
    """The address of a local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"tcp://127.0.0.1:{port}"


# --- found by review: each test failed before its fix -----------------------------------------
def test_a_database_replaced_at_the_same_path_is_read_anew(client, tmp_path, monkeypatch):
    """A and its copy B each take a DELETE (same version, same segments, other deletion
    vectors); after B replaces A, the workers and the client read B's state, not the one
    they kept for A's, whether the manifest is sent with the tasks or scattered."""
    from masksearch.exec import dask_runner
    a = saliency_db(tmp_path / "a")
    a.copy_to(tmp_path / "b")
    b = ms.connect(tmp_path / "b")
    a.query("DELETE FROM masks WHERE image_id IN (1, 2)")
    b.query("DELETE FROM masks WHERE image_id IN (3, 4)")
    sql = "SELECT mask_id FROM masks WHERE image_id < 7"
    one = ExecSettings(shard_segments=1)
    for scatter in (20_000, 1):
        monkeypatch.setattr(dask_runner, "SCATTER_ABOVE", scatter)
        path = tmp_path / f"db-{scatter}"
        a.copy_to(path)
        on = ms.connect(path, executor=client)
        assert on.query(sql, settings=one).rows() == a.query(sql).rows()
        shutil.rmtree(path)
        b.copy_to(path)
        assert on.query(sql, settings=one).rows() == b.query(sql).rows()
        again = ms.connect(path, executor=client)
        assert again.query(sql, settings=one).rows() == b.query(sql).rows()
        on.close()
        again.close()


def test_workers_do_not_keep_old_files_alive(client, tmp_path):
    """After a query on the cluster, changes made elsewhere retire and remove files just as
    without it: the workers register no reader (the client does, while its query runs)."""
    left = {}
    for cluster_query in (False, True):
        path = tmp_path / f"db-{cluster_query}"
        local = saliency_db(path)
        if cluster_query:
            on = ms.connect(path, executor=client)
            on.query(QUERIES[1])
            assert len(list((path / "readers").iterdir())) == 2   # the two connections'
            on.close()
        for i in range(5):
            local.query(f"DELETE FROM masks WHERE image_id = {i}")
        local.compact()
        left[cluster_query] = (len(local.store.manifest.retired),
                               len(list((path / "segments").iterdir())))
    assert left[True] == left[False]


def test_a_timeout_stops_the_wait_for_the_cluster(client, tmp_path, monkeypatch):
    """Verification slowed to 50 ms a mask: the query times out on the cluster as it does
    locally, instead of answering late."""
    import time

    import masksearch.exec.verify as verify

    saliency_db(tmp_path / "db")
    db = ms.connect(tmp_path / "db", executor=client)
    count, tiled = verify.count_in_range, verify.count_tiled

    def slow(*args):
        time.sleep(0.05)
        return count(*args)

    def slow_tiled(*args):          # masks stored in tiles: a segment's at a time
        time.sleep(0.05 * len(args[1]))
        return tiled(*args)

    monkeypatch.setattr(verify, "count_in_range", slow)
    monkeypatch.setattr(verify, "count_tiled", slow_tiled)
    start = time.perf_counter()
    with pytest.raises(ms.QueryTimeout):
        db.query(QUERIES[0], use_index=False, timeout=0.3)
    assert time.perf_counter() - start < 1.0


def test_a_relative_path_reaches_the_workers_whole(tmp_path, monkeypatch):
    saliency_db(tmp_path / "db").close()
    monkeypatch.chdir(tmp_path)
    assert ms.connect("db").store.address == str(tmp_path / "db")


def test_explain_analyze_counts_the_merge_s_pixel_work_per_worker(client, tmp_path):
    saliency_db(tmp_path / "db")
    db = ms.connect(tmp_path / "db", executor=client)
    sql = "SELECT image_id, CP(mean(mask), full, (0.4, 0.6]) AS m FROM masks GROUP BY image_id"
    stats = db.query(sql, use_index=False, settings=ExecSettings(remote_masks=0)).stats
    assert stats.verified == 40
    assert sum(w.verified for w in stats.workers.values()) == 40


def test_a_connection_closes_the_client_it_made(tmp_path):
    saliency_db(tmp_path / "db")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    try:
        db = ms.connect(tmp_path / "db", executor=cluster.scheduler_address)
        assert db.query(QUERIES[0]).rows() == ms.connect(tmp_path / "db").query(
            QUERIES[0]).rows()
        client = db._runner.client
        db.close()
        assert client.status == "closed"
    finally:
        cluster.close()
