"""Query control: timeouts, cancellation from another thread, and progress reports."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import masksearch as ms
from masksearch.synth import saliency_maps

from .slowdown import slow_down_verification

N = 300
Q = "SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 100"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    maps, _ = saliency_maps(N, size=32, coarse=4, seed=5)
    database = ms.connect(tmp_path_factory.mktemp("ctl") / "c.msdb", cell_size=8)
    database.ingest(maps, image_id=np.arange(N))
    return database, maps


@pytest.fixture
def slow_counts(monkeypatch):
    """Verification at 2 ms per mask, so a query runs long enough to be stopped."""
    slow_down_verification(monkeypatch, 0.002)


def test_timeout_stops_a_query_and_the_next_one_runs(db, slow_counts):
    database, maps = db
    start = time.monotonic()
    with pytest.raises(ms.QueryTimeout, match=r"timeout of 0\.1 s"):
        database.query(Q, use_index=False, timeout=0.1)
    assert time.monotonic() - start < 0.1 + 0.5   # stops within a few masks per thread
    rows = database.query(Q, use_index=False, timeout=60).to_pylist()
    expect = np.flatnonzero((maps > 0.5).sum(axis=(1, 2)) > 100)
    assert [r["mask_id"] for r in rows] == expect.tolist()


def test_keyboard_interrupt_from_progress_stops_the_worker_threads(db, slow_counts):
    database, _ = db
    calls = []

    def interrupt(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    before = set(threading.enumerate())
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        database.query(Q, use_index=False, progress=interrupt)
    # Stopped after the first chunk, not after all N masks (N * 2 ms / 2 threads = 0.3 s).
    assert calls == [calls[0]]
    assert calls[0] < N
    assert time.monotonic() - start < 0.25
    # The verifying threads are gone, not left running the remaining masks.
    assert [t.name for t in set(threading.enumerate()) - before
            if not t.name.startswith("masksearch")] == []


def test_progress_reports_reach_the_total(db):
    database, _maps = db
    seen = []
    database.query(Q, use_index=False, progress=lambda d, t: seen.append((d, t)))
    assert seen
    assert seen[-1] == (N, N)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
