"""Databases on S3-compatible object storage, against real servers the tests start
(``tests/s3_server.py``: rclone serve s3, and moto's server, on 127.0.0.1). A database copied
there answers every query as the brute-force oracle does (here and through a Dask cluster),
reads one mask with one ranged read of its own bytes, refuses every write, and copies back
consistently. Most tests run on both servers; those that damage the stored files, kill a
process or count the bytes the server sent run on rclone's."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.exec.settings import ExecSettings
from masksearch.store.location import Location

from . import oracle
from .strategies import examples
from .test_cli import failed, ok, run
from .test_engine_oracle import _build, check_answers, databases, group_queries, queries

ROOT = Path(__file__).resolve().parents[1]
SQL = [
    "SELECT mask_id, CP(mask, bbox, (0.5, 1.0]) AS c FROM masks ORDER BY c DESC LIMIT 5",
    "SELECT mask_id FROM masks WHERE CP(mask, box(2, 3, 20, 17), (0.6, 1.0]) > 120",
    "SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / CP(union(mask), full, "
    "(0.5, 1.0]) AS iou FROM masks GROUP BY image_id ORDER BY iou DESC LIMIT 3",
    "SELECT label, count(*) AS n, avg(CP(mask, full, (0.2, 0.4])) AS a FROM masks "
    "GROUP BY label ORDER BY label",
]


def saliency_db(path: Path, n: int = 48, index: str | None = None) -> ms.Database:
    """Saliency maps of 32x32 in segments of 16, a box and a label each."""
    from masksearch.synth import saliency_maps

    maps, boxes = saliency_maps(n, size=32, coarse=5, seed=7)
    db = ms.connect(path, segment_size=16, cell_size=8, index=index)
    db.ingest(maps, image_id=np.arange(n) // 2,
              metadata={"bbox": boxes, "label": [("cat", "dog", "fox")[i % 3] for i in range(n)]})
    return db


@pytest.fixture(scope="module", params=["rclone", "moto"])
def server(request):
    """Each S3 server in turn."""
    return request.getfixturevalue("s3_server" if request.param == "rclone"
                                   else "moto_server")


@pytest.fixture(scope="module")
def published(server, tmp_path_factory):
    """A local database and its copy on the S3 server: (local db, url)."""
    db = saliency_db(tmp_path_factory.mktemp("s3-local") / "db")
    url = server.new_url()
    db.copy_to(url, storage_options=server.options)
    return db, url


# --- answers ---------------------------------------------------------------------------------
def _check_on_s3(server, database, specs, executor=None) -> None:
    ms_, meta, cell, split = database
    tmp = tempfile.mkdtemp()
    try:
        _build(tmp, ms_, meta, cell, split).close()
        url = server.new_url()
        ms.connect(tmp + "/db").copy_to(url, storage_options=server.options)
        db = ms.connect(url, storage_options=server.options, executor=executor)
        check_answers(db, oracle.as_rows(ms_, 0, meta), specs,
                      [ExecSettings(), replace(ExecSettings(), shard_segments=1)])
        db.close()
    finally:
        shutil.rmtree(tmp)


@settings(max_examples=examples(30), deadline=None)
@given(databases(), st.lists(st.one_of(queries(), group_queries()), min_size=1, max_size=3))
def test_queries_on_s3_equal_the_oracle(server, database, specs):
    """Random databases (eager and lazy indexing, several segments) copied to the server:
    every query, with the index and without, on one shard and a shard per segment, gives the
    oracle's rows."""
    _check_on_s3(server, database, specs)


@settings(max_examples=examples(16), deadline=None)
@given(databases(), st.lists(st.one_of(queries(), group_queries()), min_size=1, max_size=2))
def test_queries_on_s3_through_a_cluster_equal_the_oracle(s3_server, client, database, specs):
    """The same through a Dask cluster: each worker opens the database on the server."""
    _check_on_s3(s3_server, database, specs, executor=client)


def test_a_cluster_answers_as_the_local_copy(server, client, published):
    local, url = published
    db = ms.connect(url, storage_options=server.options, executor=client)
    for sql in SQL:
        assert db.query(sql).rows() == local.query(sql).rows(), sql
    # What the workers are sent: the URL and the options, picklable, secrets not shown.
    where = db.store.address
    assert isinstance(where, Location)
    assert pickle.loads(pickle.dumps(where)) == where
    assert server.options["secret_key"] not in repr(where)


# --- ranged reads ------------------------------------------------------------------------------
def test_one_mask_fetches_only_its_own_bytes(server, published):
    """After the segment's layout (two small reads, once), reading a mask fetches exactly
    its compressed bytes: counted by the connection and by the server itself."""
    local, url = published
    db = ms.connect(url, storage_options=server.options)
    traffic = db.store.traffic
    db.mask(0)                                  # metadata, the first segment's layout
    pixels_file = local.store.segments[0].pixel_bytes()
    for mask_id in (3, 9, 14):
        blob = local.store.segments[0].blob_size(mask_id)
        counted = server.control_port is not None   # rclone counts what it sends
        before, requests = traffic.bytes, traffic.requests
        served = server.served_bytes() if counted else 0
        assert np.array_equal(db.mask(mask_id), local.mask(mask_id))
        assert traffic.bytes - before == blob
        assert not counted or server.served_bytes() - served == blob
        assert traffic.requests - requests == 2     # is the manifest the same? the mask
    # The first mask of another segment: its bytes and the layout's, far below the file.
    segment = db.store.segments[1]
    before = traffic.bytes
    db.mask(20)
    first = traffic.bytes - before
    assert first < segment.blob_size(4) + 1024 + 8 * 17 + 1024 < pixels_file // 4


def test_a_selective_query_reads_a_small_part_of_the_pixels(server, published):
    local, url = published
    db = ms.connect(url, storage_options=server.options)
    sql = "SELECT mask_id FROM masks WHERE CP(mask, box(2, 3, 20, 17), (0.6, 1.0]) > 120"
    db.query("SELECT count(*) FROM masks")         # metadata of every segment
    before = db.store.traffic.bytes
    result = db.query(sql)
    assert result.rows() == local.query(sql).rows()
    fetched = db.store.traffic.bytes - before
    pixels = sum(s.pixel_bytes() for s in local.store.segments)
    index = sum(s.index_bytes() for s in local.store.segments)
    assert fetched <= result.stats.bytes_read + index + 3 * 4096
    assert result.stats.verified < 48
    assert fetched < pixels


# --- copies ------------------------------------------------------------------------------------
def test_copy_there_and_back_passes_check_and_answers_alike(server, published, tmp_path):
    local, url = published
    remote = ms.connect(url, storage_options=server.options)
    assert remote.check().ok
    back = tmp_path / "back"
    result = remote.copy_to(back)
    assert result.masks == 48
    assert result.destination == str(back)
    assert "ok: no damage found" in ok(run("check", str(back), cwd=tmp_path)).stdout
    copy = ms.connect(back, create=False)
    for sql in SQL:
        assert copy.query(sql).rows() == local.query(sql).rows() == remote.query(sql).rows()
    assert copy.info()["masks"] == 48
    assert not copy.read_only
    # Only the state's files: no reader registrations, locks or retired files went along.
    names = {key.split("/")[0] for key in server.objects(url)}
    assert "manifest.json" in names
    assert names <= {"manifest.json", "segments", "aggcache", "settings.json"}


def test_a_copy_has_only_the_state_it_started_from(server, tmp_path):
    """Deleted rows, a rewritten metadata file and compaction: the copy holds the live state
    (retired files stay behind) and answers as the source does."""
    db = saliency_db(tmp_path / "db", n=36)
    db.query("DELETE FROM masks WHERE image_id < 4")
    db.query("UPDATE masks SET label = 'owl' WHERE mask_id > 30")
    url = server.new_url()
    db.copy_to(url, storage_options=server.options)
    db.compact()
    remote = ms.connect(url, storage_options=server.options)
    for sql in SQL:
        assert remote.query(sql).rows() == db.query(sql).rows()
    assert remote.mask_count() == 28
    assert remote.check().ok
    copied = {key.rsplit("/", 1)[-1] for key in server.objects(url)}
    manifest = remote.store.manifest
    assert manifest.retired == ()
    named = {s[key]["name"] for s in map(vars, manifest.segments) for key in ("meta", "deleted")
             if s[key]}
    assert named <= copied
    assert len([n for n in copied if n.startswith(("meta-", "deleted-"))]) == len(named)


def test_a_lazily_indexed_database_answers_exactly_and_saves_nothing(server, tmp_path):
    """The CHIs queries built locally (index deltas) go along with the copy; the masks
    without one are read, and no CHI is saved on the storage."""
    local = saliency_db(tmp_path / "db", n=30, index="lazy")
    local.query("SELECT mask_id FROM masks WHERE label = 'cat' AND CP(mask, full, (0.5, 1.0]) "
                "> 10")
    indexed = local.info()["indexed_masks"]
    assert 0 < indexed < 30
    url = server.new_url()
    local.copy_to(url, storage_options=server.options)
    before = server.objects(url)
    remote = ms.connect(url, storage_options=server.options)
    assert remote.info()["indexed_masks"] == indexed
    for sql in SQL:
        for use_index in (True, False):
            assert remote.query(sql, use_index=use_index).rows() == \
                local.query(sql, use_index=use_index).rows()
    assert server.objects(url) == before


def test_a_copy_reads_the_state_it_started_from_while_others_commit(server, tmp_path):
    """Another connection deletes rows and compacts in the middle of a copy: the copy holds
    the state it started from (the files that state reads stay while it copies)."""
    db = saliency_db(tmp_path / "db", n=48)
    want = [db.query(sql).rows() for sql in SQL]
    other = ms.connect(tmp_path / "db")
    changed: list[int] = []

    def meanwhile(done: int, total: int) -> None:
        if not changed and done > total // 4:
            other.query("DELETE FROM masks WHERE image_id < 10")
            changed.append(other.compact().masks_rewritten)

    url = server.new_url()
    db.copy_to(url, storage_options=server.options, progress=meanwhile)
    assert changed
    assert changed[0] > 0
    assert other.mask_count() == 28
    remote = ms.connect(url, storage_options=server.options)
    assert [remote.query(sql).rows() for sql in SQL] == want
    assert remote.mask_count() == 48
    assert remote.check().ok


def test_copies_never_overwrite(server, published, tmp_path):
    local, url = published
    with pytest.raises(ms.StoreError, match=r"exists at .* already: a copy never overwrites"):
        local.copy_to(url, storage_options=server.options)
    other = server.new_url()
    server.put(other + "/notes.txt", b"mine")
    with pytest.raises(ms.StoreError, match="is not empty"):
        local.copy_to(other, storage_options=server.options)
    assert list(server.objects(other)) == ["notes.txt"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    remote = ms.connect(url, storage_options=server.options)
    with pytest.raises(ms.StoreError, match="is not empty"):
        remote.copy_to(tmp_path / "full")


def test_a_failed_copy_leaves_no_database(server, tmp_path):
    """Interrupted after its first files (Ctrl-C), or stopped by a damaged source file:
    nothing of the copy stays, and no database appears."""
    db = saliency_db(tmp_path / "db", n=32)
    url = server.new_url()

    def interrupt(done: int, total: int) -> None:
        if done > total // 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        db.copy_to(url, storage_options=server.options, progress=interrupt)
    assert not server.objects(url)
    with pytest.raises(ms.StoreError, match="no masksearch database at s3://"):
        ms.connect(url, storage_options=server.options)
    pixels = db.store.segments[1].directory / "pixels.arrow"
    data = bytearray(pixels.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pixels.write_bytes(bytes(data))
    with pytest.raises(ms.StoreError, match=r"pixels\.arrow: the file is damaged"):
        ms.connect(tmp_path / "db").copy_to(url, storage_options=server.options)
    assert not server.objects(url)


def test_a_killed_copy_leaves_no_manifest(s3_server, tmp_path):
    """A process killed (SIGKILL) in the middle of a copy: its files stay, but no manifest,
    so no database appears; a copy to a new place then works."""
    saliency_db(tmp_path / "db", n=32).close()
    url = s3_server.new_url()
    script = textwrap.dedent(f"""
        import os, signal, masksearch as ms
        def die(done, total):
            if done > total // 2:
                os.kill(os.getpid(), signal.SIGKILL)
        ms.connect({str(tmp_path / 'db')!r}).copy_to({url!r}, storage_options={
            s3_server.options!r}, progress=die)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), **s3_server.env)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = s3_server.local(url)
    assert any(p.is_file() for p in left.rglob("*")), "the copy had written files"
    assert not (left / "manifest.json").exists()
    with pytest.raises(ms.StoreError, match="no masksearch database"):
        ms.connect(url, storage_options=s3_server.options)


# --- refusals and errors -----------------------------------------------------------------------
def test_every_write_is_refused_and_changes_nothing(server, published):
    local, url = published
    before = server.objects(url)
    db = ms.connect(url, storage_options=server.options)
    assert db.read_only
    assert db.path == url
    maps = np.zeros((2, 8, 8), np.float32)
    attempts = [
        lambda: db.ingest(maps, image_id=[1, 2]),
        lambda: db.writer().__enter__(),
        lambda: db.query("DELETE FROM masks WHERE image_id = 1"),
        lambda: db.query("UPDATE masks SET label = 'x' WHERE image_id = 1"),
        lambda: db.query("ALTER TABLE masks ADD COLUMN note string"),
        lambda: db.query("EXPLAIN ANALYZE DELETE FROM masks WHERE image_id = 1"),
        lambda: db.add_metadata({"image_id": [1], "score": [0.5]}),
        db.compact, db.build_index, db.rebuild_index,
        lambda: setattr(db, "image_root", str(ROOT)),
    ]
    for attempt in attempts:
        with pytest.raises(ms.StoreError, match=r"object storage, which masksearch only "
                                                r"reads: it has no safe commit there"):
            attempt()
    with pytest.raises(ms.StoreError, match=r"Change a local copy instead: db\.copy_to"):
        db.compact()
    assert server.objects(url) == before
    assert db.query(SQL[0]).rows() == local.query(SQL[0]).rows()


def test_clear_errors(s3_server, tmp_path):
    options = s3_server.options
    with pytest.raises(ms.StoreError, match=r"no masksearch database at s3://masks/.*copy"):
        ms.connect(s3_server.new_url(), storage_options=options)
    with pytest.raises(ms.StoreError, match="storage_options are for databases on object "
                                            "storage"):
        ms.connect(tmp_path / "db", storage_options=options)
    with pytest.raises(ms.StoreError, match=r"storage_options: .*endpoint_overide"):
        ms.connect(s3_server.new_url(), storage_options={"endpoint_overide": "x"})
    with pytest.raises(ms.StoreError, match=r"not gs://"):
        ms.connect("gs://bucket/db")
    with pytest.raises(ms.StoreError, match="names a bucket"):
        ms.connect("s3://")
    with pytest.raises(ms.StoreError, match="cannot read the database"):
        ms.connect(s3_server.new_url(), storage_options={**options, "secret_key": "wrong"})
    url = s3_server.new_url()
    saliency_db(tmp_path / "small", n=6).copy_to(url, storage_options=options)
    with pytest.raises(ms.StoreError, match="index settings are chosen when a database is"):
        ms.connect(url, storage_options=options, cell_size=4)


def test_a_damaged_remote_mask_is_reported(s3_server, tmp_path):
    local = saliency_db(tmp_path / "db", n=12)
    url = s3_server.new_url()
    local.copy_to(url, storage_options=s3_server.options)
    seg, row = local.store.locate(5)
    blob = seg.blob(row).to_pybytes()
    remote_pixels = s3_server.local(url) / "segments" / seg.name / "pixels.arrow"
    data = bytearray(remote_pixels.read_bytes())
    data[data.index(blob) + len(blob) // 2] ^= 0x55
    remote_pixels.write_bytes(bytes(data))
    db = ms.connect(url, storage_options=s3_server.options)
    with pytest.raises(ms.StoreError, match=r"pixels\.arrow: mask 5 is damaged \(checksum"):
        db.mask(5)
    assert np.array_equal(db.mask(4), local.mask(4))
    report = db.check()
    assert report.damaged_mask_ids == [5]
    with pytest.raises(ms.StoreError, match="the file is damaged"):
        db.copy_to(tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


# --- the command line ----------------------------------------------------------------------
def test_the_command_line_copies_and_queries(s3_server, tmp_path, monkeypatch):
    saliency_db(tmp_path / "db", n=24).close()
    url = s3_server.new_url()
    options = [f"--storage-option={k}={v}" for k, v in s3_server.options.items()]
    out = ok(run("copy", "db", url, *options, cwd=tmp_path)).stdout
    assert out.startswith("copied 24 masks (")
    assert out.rstrip().endswith(f"from db to {url}")
    sql = "SELECT mask_id, label FROM masks WHERE label = 'dog' ORDER BY mask_id LIMIT 3"
    local = ok(run("query", "db", sql, "--format", "csv", cwd=tmp_path))
    for k, v in s3_server.env.items():      # the AWS environment, no options
        monkeypatch.setenv(k, v)
    remote = ok(run("query", url, sql, "--format", "csv", cwd=tmp_path))
    assert remote.stdout == local.stdout
    assert "dog" in remote.stdout
    ok(run("copy", url, "back", cwd=tmp_path))
    assert "ok: no damage found" in ok(run("check", "back", cwd=tmp_path)).stdout
    assert "only reads" in failed(run("query", url, "DELETE FROM masks WHERE mask_id = 1",
                                      cwd=tmp_path))
    assert "never overwrites" in failed(run("copy", "db", url, cwd=tmp_path))
    assert "KEY=VALUE" in failed(run("query", url, sql, "--storage-option", "nonsense",
                                     cwd=tmp_path))
    assert "is for s3:// URLs" in failed(run("info", "db", "--storage-option", "region=x",
                                             cwd=tmp_path))


def test_a_stopped_query_leaves_nothing_fetched_ahead(server, published, monkeypatch):
    """Verification asks for many masks' bytes at once; a query that times out meanwhile
    drops what it did not read (found by review: 384 blobs stayed held)."""
    import time

    import masksearch.exec.verify as verify

    _, url = published
    db = ms.connect(url, storage_options=server.options)
    count, tiled = verify.count_in_range, verify.count_tiled

    def slow(*args):
        time.sleep(0.02)
        return count(*args)

    def slow_tiled(*args):          # masks stored in tiles: counted a chunk at a time
        time.sleep(0.02 * len(args[1]))
        return tiled(*args)

    monkeypatch.setattr(verify, "count_in_range", slow)
    monkeypatch.setattr(verify, "count_tiled", slow_tiled)
    with pytest.raises(ms.QueryTimeout):
        db.query("SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 3",
                 use_index=False, timeout=0.2)
    time.sleep(0.3)       # requests in flight end
    held = [seg._blobs._fetched for seg in db.store.segments]
    assert all(not fetched for fetched in held)
