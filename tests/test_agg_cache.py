"""The cache of aggregated masks' CHIs: keys name the exact members, entries give the bounds
of their own CHI, survive new processes and merging of their files, and damage is reported."""

from __future__ import annotations

import numpy as np
import pytest

import masksearch as ms
from masksearch.errors import StoreError
from masksearch.exec.settings import ExecSettings
from masksearch.index.chi import build_segment_index, segment_bounds
from masksearch.ranges import Cut
from masksearch.store.agg_cache import DIRECTORY, MAX_PARTS, AggregateCache, entry_key, members_key


def test_keys_name_the_kind_and_the_exact_members():
    assert members_key([5, 2, 9]) == members_key([9, 5, 2]) == "2,5,9"
    assert entry_key("union", members_key([1, 2])) != entry_key("intersect", members_key([1, 2]))
    assert entry_key("union", members_key([1, 2])) != entry_key("union", members_key([1, 2, 3]))


def test_aggregate_cache_bounds_survive_merging_its_parts(tmp_path):
    """Every query that verifies groups writes a file of CHIs; past MAX_PARTS of them the
    cache merges them in memory (and on load). Bounds by key stay exactly those of each
    aggregated mask's own CHI, before and after, in this process and a new one."""
    rng = np.random.default_rng(5)
    edges = np.arange(21) / 20
    masks = [rng.random((20 + k % 3, 24)).astype(np.float64) for k in range(3 * MAX_PARTS)]
    keys = [f"intersect:{k}" for k in range(len(masks))]
    box = np.array([[3, 2, 17, 19]])
    lo, hi = Cut(0.3, True), Cut(0.85, False)
    want = [segment_bounds(build_segment_index([m], edges, 4), m.dtype, np.array([0]), box,
                           lo, hi) for m in masks]
    chis = [build_segment_index([m], edges, 4) for m in masks]
    cache = AggregateCache(tmp_path)
    for k in range(0, len(masks), 2):     # a file per pair: more parts than MAX_PARTS
        assert cache.add_built(keys[k:k + 2], chis[k:k + 2], masks[k].dtype) == 2
    assert cache.add_built(keys[:3], chis[:3], masks[0].dtype) == 0   # known: not added
    extra = rng.random((21, 24))
    # Known keys are left out of a file of new ones, the new ones' counts kept apart right.
    assert cache.add_built([keys[0], "union:x", keys[1]],
                           [chis[0], build_segment_index([extra], edges, 4), chis[1]],
                           extra.dtype) == 1
    keys.append("union:x")
    masks.append(extra)
    want.append(segment_bounds(build_segment_index([extra], edges, 4), extra.dtype,
                               np.array([0]), box, lo, hi))
    for c in (cache, AggregateCache(tmp_path)):
        found, lower, upper = c.bounds([*keys[::-1], "union:0"],
                                       np.repeat(box, len(keys) + 1, axis=0), lo, hi)
        assert found.tolist() == [True] * len(keys) + [False]
        got = list(zip(lower[:-1].tolist(), upper[:-1].tolist(), strict=True))[::-1]
        assert got == [(int(a[0]), int(b[0])) for a, b in want]
        assert c.parts <= MAX_PARTS


def test_a_damaged_file_is_reported_not_used(tmp_path):
    rng = np.random.default_rng(2)
    m = rng.random((16, 16))
    cache = AggregateCache(tmp_path)
    cache.add_built(["union:1,2"], [build_segment_index([m], np.arange(11) / 10, 4)], m.dtype)
    (path,) = (tmp_path / DIRECTORY).glob("*.npz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"aggcache/.*\.npz: the cached CHIs file is damaged"):
        AggregateCache(tmp_path).bounds(["union:1,2"], np.array([[0, 0, 16, 16]]),
                                        Cut(0.5, True), Cut(1.0, True))


def test_a_query_caches_at_most_its_share_of_groups(tmp_path):
    """``cached_groups`` bounds how many groups' aggregated masks one query indexes; later
    queries add more, and every answer stays exact."""
    rng = np.random.default_rng(3)
    maps = rng.random((40, 16, 16)).astype(np.float32)
    db = ms.connect(tmp_path / "db", cell_size=4)
    db.ingest(maps, image_id=np.arange(40) // 2)
    sql = "SELECT image_id, CP(union(mask), full, (0.7, 1]) AS c FROM masks GROUP BY image_id"
    want = db.query(sql, use_index=False).rows()
    assert want == [(g, int((np.maximum(maps[2 * g], maps[2 * g + 1]) > 0.7).sum()))
                    for g in range(20)]
    few = ExecSettings(cached_groups=3)
    first = db.query(sql, settings=few)
    assert first.rows() == want
    assert first.stats.chis_built == 3
    second = db.query(sql, settings=few)
    assert second.rows() == want
    assert second.stats.chis_built == 3
    cache = AggregateCache(tmp_path / "db")
    keys = [entry_key("union", members_key([2 * g, 2 * g + 1])) for g in range(20)]
    assert sum(k in cache for k in keys) == 6
