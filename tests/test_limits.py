"""Limits and long runs: queries over a database larger than a process's memory cap stream
(they finish under the cap, while holding the masks in memory would not fit); 10,000 queries
in a row leave resident memory and open file descriptors where they were.

Grouped queries over aggregated masks are covered too: their cell-by-cell bounds are worked
out a bounded chunk of groups at a time.

The cap is RLIMIT_DATA (private writable memory: heap, anonymous maps, thread stacks), set in
a child process after its kernels are loaded. RLIMIT_AS would also count the memory-mapped
pixel files and Numba/LLVM's reserved address space, which are not memory a query holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import masksearch as ms

ROOT = Path(__file__).resolve().parents[1]
SIDE = 512                  # uint8 masks of 256 kB
N_MASKS = 2400              # 600 MB of pixels
CAP_MB = 300                # memory the queries may add to the process (half the pixels)


def run_child(script: str, *args: str, timeout: int = 600, **extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])


def tile(i: int) -> np.ndarray:
    """Mask i: a 64x64 pattern of values 0..3 scaled up 8x (compressible), shifted by i."""
    base = np.random.default_rng(0).integers(0, 4, (64, 64), dtype=np.uint8)
    return np.roll(np.kron(base, np.ones((8, 8), np.uint8)), i, axis=1)


STREAM = textwrap.dedent("""
    import json, resource, sys, threading, time, numpy as np, masksearch as ms
    from tests.test_limits import tile, N_MASKS

    def vm(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    # Load every kernel the queries use (on a small database) before the cap.
    warm = ms.connect(sys.argv[2])
    warm.ingest(np.stack([tile(i) for i in range(8)]), image_id=np.arange(8) // 2)
    queries = [
        ("SELECT mask_id FROM masks WHERE CP(mask, box(10, 20, 300, 400), (1, 3]) > 56600",
         False),
        ("SELECT mask_id, CP(mask, full, (2, 3]) AS c FROM masks ORDER BY c DESC LIMIT 5",
         True),
        ("SELECT image_id, SUM(CP(mask, box(0, 0, 100, 512), (0, 2])) AS c FROM masks "
         "GROUP BY image_id ORDER BY c DESC LIMIT 3", False),
        ("SELECT image_id, CP(intersect(mask), full, (1, 3]) / CP(union(mask), full, (1, 3]) "
         "AS iou FROM masks GROUP BY image_id ORDER BY iou ASC LIMIT 3", True),
    ]
    for sql, use_index in queries:
        warm.query(sql, use_index=use_index)
    db = ms.connect(sys.argv[1])
    base = vm("VmData")
    cap = base + int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_DATA, (cap << 20, cap << 20))
    out = {"base_mb": base, "cap_mb": cap}
    peak, done = [base], []

    def watch():  # the highest VmData seen, sampled every millisecond
        while not done:
            peak[0] = max(peak[0], vm("VmData"))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for k, (sql, use_index) in enumerate(queries):
        r = db.query(sql, use_index=use_index)
        out[f"q{k}"] = {"rows": r.rows(), "verified": r.stats.verified,
                        "bytes_read": r.stats.bytes_read}
    total = 0
    for i in range(N_MASKS):
        total += int(db.mask(i).sum())
    out["sum"] = total
    done.append(True)
    watcher.join()
    out["vm_data_mb"], out["peak_vm_data_mb"] = vm("VmData"), peak[0]
    try:  # the control: holding every mask does not fit under the cap
        held = [db.mask(i) for i in range(N_MASKS)]
        out["control"] = f"held {len(held)} masks"
    except MemoryError:
        out["control"] = "MemoryError"
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_queries_stream_under_a_memory_cap(tmp_path):
    db = ms.connect(tmp_path / "db")
    for start in range(0, N_MASKS, 200):
        db.ingest(np.stack([tile(i) for i in range(start, start + 200)]),
                  image_id=np.arange(start, start + 200) // 2)
    raw_mb = N_MASKS * SIDE * SIDE / 2**20
    assert raw_mb >= 2 * CAP_MB
    # Arrow's allocations through malloc: jemalloc keeps address space it reserved earlier,
    # which the cap would not see.
    out = run_child(STREAM, str(tmp_path / "db"), str(tmp_path / "warm"), str(CAP_MB),
                    ARROW_DEFAULT_MEMORY_POOL="system", MALLOC_ARENA_MAX="2")
    print(json.dumps(out))
    assert out["control"] == "MemoryError", "the cap should be too small to hold the masks"
    counts = [int(((tile(i)[20:400, 10:300] > 1) & (tile(i)[20:400, 10:300] <= 3)).sum())
              for i in range(N_MASKS)]
    assert out["q0"]["rows"] == [[i] for i, c in enumerate(counts) if c > 56600] != []
    assert out["q0"]["verified"] == N_MASKS  # brute force: every mask was read under the cap
    full = [int((tile(i) > 2).sum()) for i in range(N_MASKS)]
    top = sorted(range(N_MASKS), key=lambda i: (-full[i], i))[:5]
    assert out["q1"]["rows"] == [[i, full[i]] for i in top]
    left = [int(((tile(i)[:, :100] > 0) & (tile(i)[:, :100] <= 2)).sum()) for i in range(N_MASKS)]
    pairs = {}
    for i in range(N_MASKS):
        pairs[i // 2] = pairs.get(i // 2, 0) + left[i]
    assert out["q2"]["rows"] == [list(kv) for kv in sorted(pairs.items(),
                                                           key=lambda kv: (-kv[1], kv[0]))[:3]]
    iou = {}
    for g in range(N_MASKS // 2):
        a, b = tile(2 * g), tile(2 * g + 1)
        inter = int(((np.minimum(a, b) > 1) & (np.minimum(a, b) <= 3)).sum())
        union = int(((np.maximum(a, b) > 1) & (np.maximum(a, b) <= 3)).sum())
        iou[g] = inter / union
    assert out["q3"]["rows"] == [[g, iou[g]] for g in sorted(iou, key=lambda g: (iou[g], g))[:3]]
    assert out["sum"] == sum(int(tile(i).sum()) for i in range(N_MASKS))


LONG_RUN = textwrap.dedent("""
    import json, os, sys, numpy as np, masksearch as ms

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def fds():
        return len(os.listdir("/proc/self/fd"))

    rng = np.random.default_rng(0)
    db = ms.connect(sys.argv[1], index="lazy")
    db.ingest(rng.random((40, 32, 32)).astype(np.float32), image_id=np.arange(40) // 2,
              metadata={"bbox": [(1, 2, 20, 30)] * 40, "label": ["a", "b"] * 20})
    db.ingest(rng.integers(0, 5, (20, 32, 32)).astype(np.uint8), image_id=np.arange(20) + 100)
    queries = [
        "SELECT mask_id FROM masks WHERE CP(mask, box(3, 4, 20, 21), (0.5, 1.0]) > {t}",
        "SELECT mask_id, CP(mask, bbox, (0.{t}, 1.0]) AS c FROM masks ORDER BY c DESC LIMIT 3",
        "SELECT image_id, CP(intersect(mask), full, (0.{t}, 1.0]) / CP(union(mask), full, "
        "(0.{t}, 1.0]) AS iou FROM masks WHERE image_id < 100 GROUP BY image_id "
        "ORDER BY iou LIMIT 2",
        "SELECT label, AVG(CP(mask, full, (0.5, 1.0])) FROM masks GROUP BY label "
        "HAVING COUNT(*) > {t}",
        "EXPLAIN ANALYZE SELECT mask_id FROM masks WHERE CP(mask, full, [2, 4]) > {t}",
        "SELECT mask_id FROM masks WHERE nope > {t}",   # a binding error
        "SELECT FROM masks WHERE {t}",                  # a syntax error
    ]
    n = int(sys.argv[2])
    samples = []
    for k in range(n):
        sql = queries[k % len(queries)].format(t=1 + k % 9)
        try:
            db.query(sql, use_index=k % 5 != 0)
        except ms.MaskSearchError:
            pass
        if k % 3 == 0:
            db.mask(k % 60)
        if k % 50 == 0:
            db.info()
        if k in (n // 10, n // 2, n - 1):
            samples.append({"query": k + 1, "rss_mb": rss_mb(), "fds": fds()})
    print(json.dumps(samples))
""")


@pytest.mark.slow
def test_ten_thousand_queries_leave_memory_and_files_where_they_were(tmp_path):
    samples = run_child(LONG_RUN, str(tmp_path / "db"), "10000")
    print(json.dumps(samples))
    after_warmup, middle, end = samples
    assert end["fds"] == after_warmup["fds"] == middle["fds"]
    # Growth over the last 9,000 queries: below 8 MB (under 1 kB per query), and none in the
    # second half beyond noise.
    assert end["rss_mb"] - after_warmup["rss_mb"] < 8, samples
    assert end["rss_mb"] - middle["rss_mb"] < 4, samples
    assert not [p for p in (tmp_path / "db").rglob("*") if ".tmp" in p.name]


# --- cancelled queries -----------------------------------------------------------------------
CANCEL_QUERIES = [
    "SELECT mask_id FROM masks WHERE CP(mask, box(3, 4, 20, 21), (0.5, 1.0]) > 120",
    "SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / CP(union(mask), full, "
    "(0.5, 1.0]) AS iou FROM masks GROUP BY image_id ORDER BY iou DESC LIMIT 3",
]


def lazy_database(path: Path) -> tuple[ms.Database, list]:
    rng = np.random.default_rng(3)
    db = ms.connect(path, index="lazy")  # queries write CHI files: the case to watch
    db.ingest(rng.random((400, 32, 32)).astype(np.float32), image_id=np.arange(400) // 2)
    want = [db.query(q, use_index=False).rows() for q in CANCEL_QUERIES]
    # That brute-force pass built CHIs; start again from none.
    for delta in path.glob("segments/*/chi-delta-*"):
        delta.unlink()
    return ms.connect(path), want


def assert_nothing_left(path: Path, db: ms.Database, want: list) -> None:
    assert not [p for p in path.rglob("*") if ".tmp" in p.name]
    with db.store.write_lock(timeout=0):  # no lock left held
        pass
    assert [db.query(q).rows() for q in CANCEL_QUERIES] == want
    assert db.check().ok


def test_timed_out_and_interrupted_queries_leave_no_lock_or_temporary_file(tmp_path):
    db, want = lazy_database(tmp_path / "db")
    stopped = 0
    for k in range(12):
        sql = CANCEL_QUERIES[k % 2]
        try:
            if k % 3 == 0:
                db.query(sql, timeout=0.0005 * k)
            else:
                def interrupt(done, total, at=k):
                    if done >= at:
                        raise KeyboardInterrupt
                db.query(sql, progress=interrupt)
        except (ms.QueryCancelled, KeyboardInterrupt):
            stopped += 1
    assert stopped >= 6
    assert_nothing_left(tmp_path / "db", ms.connect(tmp_path / "db"), want)


CTRL_C = textwrap.dedent("""
    import sys, time, masksearch as ms
    from tests.test_limits import CANCEL_QUERIES
    db = ms.connect(sys.argv[1])
    print("ready", flush=True)
    interrupted = k = 0
    end = time.monotonic() + float(sys.argv[2])   # for a while, however fast the queries are
    while time.monotonic() < end:
        try:
            db.query(CANCEL_QUERIES[k % 2])
        except KeyboardInterrupt:
            interrupted += 1
        k += 1
    print("finished", interrupted, flush=True)
""")


@pytest.mark.slow
def test_ctrl_c_at_random_moments_leaves_no_temporary_file(tmp_path):
    """SIGINT (Ctrl-C) at random moments of a process running lazy queries, which write
    CHI files; a SIGINT between two queries ends the process, which is fine too."""
    import signal
    import time

    _db, want = lazy_database(tmp_path / "db")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = np.random.default_rng(4)
    interrupts, outcomes = 0, []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", CTRL_C, str(tmp_path / "db"), "1.4"],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 1.5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(float(rng.uniform(0.005, 0.1)))
            proc.send_signal(signal.SIGINT)
            interrupts += 1
        outcomes.append(proc.communicate(timeout=300)[0].strip() or "ended by a SIGINT")
        assert not [p for p in (tmp_path / "db").rglob("*") if ".tmp" in p.name]
    print(f"{interrupts} SIGINTs sent; the processes: {outcomes}")
    assert interrupts >= 20
    assert_nothing_left(tmp_path / "db", ms.connect(tmp_path / "db"), want)
