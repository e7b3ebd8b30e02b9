"""The index held compressed, decoded into a bounded cache (store/index_cache.py): answers
never change with the budget, the budget is kept, and a segment holds no decoded counts."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.exec.row_counts import index_waves
from masksearch.exec.segment_groups import segment_groups
from masksearch.exec.settings import ExecSettings
from masksearch.index.chi import build_segment_index
from masksearch.store.index_cache import (
    IndexCache,
    ResidentIndex,
    configured_budget,
    index_cache,
    index_nbytes,
    parse_bytes,
    set_index_cache_budget,
)

from . import oracle
from .strategies import examples
from .test_engine_oracle import check_answers, databases, group_queries, queries


@pytest.fixture
def budget():
    """Set the process's index cache budget for one test; restored (and emptied) after."""
    cache = index_cache()
    before = cache.fixed
    cache.clear()
    yield set_index_cache_budget
    cache.set_budget(before)
    cache.clear()


def _index(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return build_segment_index([rng.random((20, 20), dtype=np.float32) for _ in range(n)],
                               np.linspace(0, 1, 6), 4)


def test_parse_bytes():
    assert parse_bytes("0") == 0
    assert parse_bytes("1000") == 1000
    assert parse_bytes("512MB") == 512 * 10**6
    assert parse_bytes("2GiB") == 2 << 30
    assert parse_bytes(" 1.5 kib ") == 1536
    for bad in ("", "-1", "12 parsecs", "MB"):
        with pytest.raises(ValueError, match="not a size"):
            parse_bytes(bad)


def test_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("MASKSEARCH_INDEX_CACHE", "64MiB")
    assert configured_budget() == 64 << 20
    monkeypatch.setenv("MASKSEARCH_INDEX_CACHE", "lots")
    with pytest.raises(ValueError, match="MASKSEARCH_INDEX_CACHE: 'lots' is not a size"):
        configured_budget()
    monkeypatch.delenv("MASKSEARCH_INDEX_CACHE")
    assert configured_budget() is None


def test_the_default_budget_adapts_to_the_index_held():
    """40% of memory, less what takes decoded and held index past 75%."""
    cache = IndexCache(None, memory=1000)
    assert cache.budget == 400

    class Owner:
        pass

    a, b = Owner(), Owner()
    cache.track_held(a, 300)
    assert cache.budget == 400          # 300 + 400 <= 750
    cache.track_held(b, 200)
    assert cache.budget == 250          # 750 - 500
    del a
    assert cache.held == 200
    assert cache.budget == 400
    cache.set_budget(123)
    assert cache.budget == 123


def test_negative_budget_refused(budget):
    with pytest.raises(ValueError, match="cannot be negative"):
        budget(-1)


def test_least_recently_used_goes_first():
    a, b, c = _index(3, 0), _index(3, 1), _index(3, 2)
    size = index_nbytes(a)
    cache = IndexCache(2 * size)
    assert cache.get("a", lambda: a) is a
    assert cache.get("b", lambda: b) is b
    assert cache.get("a", lambda: pytest.fail("a is held")) is a   # a is now the newest
    cache.new_pass()
    assert cache.get("c", lambda: c) is c                          # b goes
    assert cache.holds("a")
    assert cache.holds("c")
    assert not cache.holds("b")
    assert cache.used == 2 * size
    assert cache.decoded == 3
    cache.set_budget(size)
    assert cache.holds("c")
    assert not cache.holds("a")
    assert cache.used == size


def test_a_pass_never_evicts_what_it_used():
    """A pass over more than the cache holds keeps what came first (and finds it on the
    next pass), rather than evicting each time what the next pass needs first."""
    a, b, c = _index(3, 0), _index(3, 1), _index(3, 2)
    size = index_nbytes(a)
    cache = IndexCache(2 * size)
    for _ in range(3):
        cache.new_pass()
        for key, ix in (("a", a), ("b", b), ("c", c)):
            assert cache.get(key, lambda ix=ix: ix) is ix
    # a and b were kept on the first pass; c, decoded on every pass, never displaced them.
    assert cache.holds("a")
    assert cache.holds("b")
    assert not cache.holds("c")
    assert cache.decoded == 3 + 1 + 1
    cache.new_pass()
    cache.get("c", lambda: c)           # a new pass: the oldest, unused so far, goes
    assert cache.holds("c")
    assert cache.holds("b")
    assert not cache.holds("a")


def test_an_index_larger_than_the_budget_is_not_kept():
    a = _index(4)
    cache = IndexCache(index_nbytes(a) - 1)
    assert cache.get("a", lambda: a) is a
    assert not cache.holds("a")
    assert cache.used == 0


def _database(tmp: str, n: int = 12) -> tuple[ms.Database, np.ndarray]:
    rng = np.random.default_rng(3)
    masks = rng.random((n, 24, 24), dtype=np.float32)
    db = ms.connect(tmp + "/db", cell_size=4, segment_size=3)
    db.ingest(masks, image_id=np.arange(n) // 2)
    return db, masks


def test_segments_hold_their_counts_compressed(tmp_path, budget):
    budget(0)
    db, masks = _database(str(tmp_path))
    sql = "SELECT mask_id FROM masks WHERE CP(mask, box(2, 3, 19, 21), (0.5, 1.0]) > 150"
    got = sorted(r[0] for r in db.query(sql).rows())
    want = [i for i, m in enumerate(masks) if ((m[3:21, 2:19] > 0.5).sum() > 150)]
    assert got == want
    segments = db.store.segments
    assert len(segments) == 4
    for seg in segments:
        held = seg.index_overview
        assert isinstance(held, ResidentIndex)
        assert not hasattr(held, "counts")
        assert held.decoded_nbytes() == index_nbytes(seg.index)
    assert index_cache().used == 0
    db.close()


def test_info_reports_the_index_memory(tmp_path, budget):
    budget(None)
    db, _ = _database(str(tmp_path))
    db.query("SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 100")
    memory = db.info()["index_memory"]
    held = sum(s.index_overview.held_nbytes() for s in db.store.segments)
    decoded = sum(s.index_overview.decoded_nbytes() for s in db.store.segments)
    assert memory["held"] == held
    assert memory["decoded"] == decoded      # the query decoded every segment
    assert memory["cache_used"] >= decoded
    assert memory["cache_budget"] == index_cache().budget
    budget(0)
    assert db.info()["index_memory"]["decoded"] == 0
    db.close()


def test_waves_fit_the_budget(tmp_path, budget):
    db, _ = _database(str(tmp_path))
    segments = db.store.segments
    one = segments[0].index_overview.decoded_nbytes()
    seg = np.repeat(np.arange(len(segments)), 3)
    groups = segment_groups(seg)
    budget(one * 2)
    index_cache().clear()
    waves = index_waves(segments, groups)
    assert [len(w) for w in waves] == [2, 2]
    budget(one * 10)
    assert [len(w) for w in index_waves(segments, groups)] == [4]
    db.close()


def test_a_small_cache_decodes_again_and_stays_within_budget(tmp_path, budget):
    db, _ = _database(str(tmp_path))
    one = db.store.segments[0].index_overview.decoded_nbytes()
    budget(one + one // 2)           # one segment's decoded index at a time
    sql = "SELECT mask_id FROM masks WHERE CP(mask, box(2, 3, 19, 21), (0.5, 1.0]) > 150"
    cache = index_cache()
    first = db.query(sql).rows()
    decoded = cache.decoded
    assert db.query(sql).rows() == first
    assert cache.decoded > decoded      # evicted segments were decoded again
    assert cache.used <= cache.budget
    budget(10 * one)
    db.query(sql)
    decoded = cache.decoded
    db.query(sql)
    assert cache.decoded == decoded     # all held: nothing decoded again
    db.close()


@pytest.mark.parametrize("size", ["0", "one segment"])
@settings(max_examples=examples(25), deadline=None)
@given(database=databases(), specs=st.lists(st.one_of(queries(), group_queries()),
                                            min_size=1, max_size=3))
def test_answers_do_not_depend_on_the_budget(size, database, specs):
    """The engine's answers equal the oracle's with no cache at all, and with room for
    about one segment's index (queries then run in waves of segments)."""
    ms_, meta, cell, split = database
    cell, mode = cell if isinstance(cell, tuple) else (cell, "eager")
    cache = index_cache()
    before = cache.fixed
    tmp = tempfile.mkdtemp()
    try:
        db = ms.connect(tmp + "/db", cell_size=cell, index=mode, segment_size=2)
        for lo, hi in ((0, split), (split, len(ms_))):
            if hi > lo:
                db.ingest(ms_[lo:hi], image_id=[i // 2 for i in range(lo, hi)],
                          metadata={k: v[lo:hi] for k, v in meta.items()})
        sizes = [s.index_overview.decoded_nbytes() for s in db.store.segments
                 if isinstance(s.index_overview, ResidentIndex)]
        cache.clear()
        cache.set_budget(0 if size == "0" or not sizes else max(sizes))
        check_answers(db, oracle.as_rows(ms_, 0, meta), specs, [ExecSettings()])
        assert cache.used <= cache.budget
        db.close()
    finally:
        cache.set_budget(before)
        cache.clear()
        shutil.rmtree(tmp)
