"""Concurrency: one writer at a time (a second one waits, then fails clearly after its
timeout); readers in other processes keep working during ingests and index builds and see
the state before or after each commit, never a mix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import masksearch as ms
from masksearch.errors import StoreError

ROOT = Path(__file__).resolve().parents[1]
BATCHES, PER_BATCH, SIDE = 12, 20, 32


def batch(b: int) -> np.ndarray:
    """Batch b: mask j has exactly b * PER_BATCH + j + 1 pixels in (0.5, 1.0]."""
    masks = np.full((PER_BATCH, SIDE, SIDE), (b + 1) / 100, np.float32)
    for j in range(PER_BATCH):
        masks[j].reshape(-1)[:b * PER_BATCH + j + 1] = 1.0
    return masks


def expected_state(k: int) -> list[tuple]:
    """Rows of ``STATE_SQL`` after the first k batches."""
    return [(b, PER_BATCH, sum(b * PER_BATCH + j + 1 for j in range(PER_BATCH)))
            for b in range(k)]


STATE_SQL = ("SELECT batch, COUNT(*) AS n, SUM(CP(mask, full, (0.5, 1.0])) AS s FROM masks "
             "GROUP BY batch ORDER BY batch")

WRITER = textwrap.dedent("""
    import sys, time, numpy as np, masksearch as ms
    from pathlib import Path
    from tests.test_concurrency import BATCHES, PER_BATCH, batch
    path, sync = sys.argv[1], Path(sys.argv[2])
    while len(list(sync.glob("ready-*"))) < int(sys.argv[3]):
        time.sleep(0.02)
    db = ms.connect(path)
    for b in range(1, BATCHES):
        db.ingest(batch(b), image_id=list(range(PER_BATCH)),
                  metadata={"batch": [b] * PER_BATCH})
        print("committed", b, flush=True)
        time.sleep(0.05)
    db.build_index()
    (sync / "finished").write_text("")
""")

READER = textwrap.dedent("""
    import json, sys, numpy as np, masksearch as ms
    from pathlib import Path
    from tests.test_concurrency import STATE_SQL, batch
    path, sync, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    db = ms.connect(path)
    rng = np.random.default_rng(int(name))
    states, reads = [], 0
    (sync / f"ready-{name}").write_text("")
    while True:
        last = (sync / "finished").exists()
        rows = db.query(STATE_SQL, use_index=bool(reads % 2)).rows()
        states.append(rows)
        if rows:  # a mask of a batch this state holds reads back exactly
            b = int(rng.integers(0, len(rows)))
            ids = db.query(f"SELECT mask_id FROM masks WHERE batch = {b}").rows()
            j = int(rng.integers(0, len(ids)))
            assert np.array_equal(db.mask(ids[j][0]), batch(b)[j])
        reads += 1
        if last:
            break
    print(json.dumps({"states": states, "reads": reads}))
""")


def reader_states(readers: list[subprocess.Popen], valid: set[str], last: list
                  ) -> tuple[set[str], int]:
    """Wait for the reader processes: every state each saw must be one of ``valid`` (as
    JSON), and its last read, which started after the writer finished, ``last``. Returns the
    states seen and how many reads there were."""
    seen, reads = set(), 0
    for r in readers:
        out, err = r.communicate(timeout=300)
        assert r.returncode == 0, err
        result = json.loads(out)
        for rows in result["states"]:
            assert json.dumps(rows) in valid, f"a state no commit produced: {rows}"
            seen.add(json.dumps(rows))
        reads += result["reads"]
        assert result["states"][-1] == json.loads(json.dumps(last))
    return seen, reads


def python(script: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("index", ["eager", "lazy"])
def test_readers_see_whole_commits_during_ingests(tmp_path, index):
    path, sync = tmp_path / "db", tmp_path / "sync"
    sync.mkdir()
    db = ms.connect(path, index=index)
    db.ingest(batch(0), image_id=list(range(PER_BATCH)), metadata={"batch": [0] * PER_BATCH})
    readers = [python(READER, str(path), str(sync), str(i)) for i in range(2)]
    writer = python(WRITER, str(path), str(sync), str(len(readers)))
    _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    valid = {json.dumps(expected_state(k)) for k in range(1, BATCHES + 1)}
    seen, reads = reader_states(readers, valid, expected_state(BATCHES))
    print(f"{reads} reads saw {len(seen)} of {BATCHES} committed states")
    assert len(seen) >= 3, "readers should have seen states between commits"
    final = ms.connect(path)
    assert final.query(STATE_SQL).rows() == expected_state(BATCHES)
    assert final.check().ok
    assert not [p for p in path.rglob("*") if ".tmp" in p.name]


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from masksearch.store.store import Store
    store = Store(sys.argv[1])
    with store.write_lock():
        Path(sys.argv[2]).write_text("")
        time.sleep(float(sys.argv[3]))
""")


def hold_lock(path: Path, flag: Path, seconds: float) -> subprocess.Popen:
    proc = python(HOLDER, str(path), str(flag), str(seconds))
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc


def test_second_writer_fails_clearly_after_its_timeout(tmp_path):
    path = tmp_path / "db"
    db = ms.connect(path, lock_timeout=0.5)
    db.ingest(batch(0), image_id=list(range(PER_BATCH)), metadata={"batch": [0] * PER_BATCH})
    holder = hold_lock(path, tmp_path / "held", seconds=30)
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreError, match=r"another process is writing to the database "
                                             r"\(waited 0.5 s for .*lock\)"):
            db.ingest(batch(1), image_id=list(range(PER_BATCH)),
                      metadata={"batch": [1] * PER_BATCH})
        assert 0.5 <= time.monotonic() - t0 < 5
        with pytest.raises(StoreError, match="another process is writing"):
            db.build_index()
        # Readers are not blocked by the writer.
        assert db.query(STATE_SQL).rows() == expected_state(1)
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder: the next writer proceeds at once.
    db.ingest(batch(1), image_id=list(range(PER_BATCH)), metadata={"batch": [1] * PER_BATCH})
    assert db.query(STATE_SQL).rows() == expected_state(2)


def test_second_writer_waits_for_the_first(tmp_path):
    path = tmp_path / "db"
    db = ms.connect(path)
    db.ingest(batch(0), image_id=list(range(PER_BATCH)), metadata={"batch": [0] * PER_BATCH})
    holder = hold_lock(path, tmp_path / "held", seconds=1.0)
    t0 = time.monotonic()
    db.ingest(batch(1), image_id=list(range(PER_BATCH)), metadata={"batch": [1] * PER_BATCH})
    waited = time.monotonic() - t0
    holder.wait(timeout=60)
    assert waited > 0.3, "the ingest should have waited for the lock"
    assert db.query(STATE_SQL).rows() == expected_state(2)


def test_cleanup_on_open_spares_live_readers_temporary_files(tmp_path):
    """Queries write index deltas without the lock; opening the database must not delete
    a live process's temporary file, but removes those of dead processes."""
    path = tmp_path / "db"
    db = ms.connect(path, index="lazy")
    db.ingest(batch(0), image_id=list(range(PER_BATCH)), metadata={"batch": [0] * PER_BATCH})
    seg = next((path / "segments").iterdir())
    live = seg / f"chi-delta-x.npz.tmp-{os.getpid()}"
    dead_pid = 2 ** 22 + 12345  # above the default pid_max: no such process
    dead = seg / f"chi-delta-y.npz.tmp-{dead_pid}"
    live.write_bytes(b"in progress")
    dead.write_bytes(b"left by a killed reader")
    ms.connect(path)
    assert live.exists()
    assert not dead.exists()


CHANGE_STATE_SQL = ("SELECT batch, COUNT(*) AS n, SUM(v) AS v, SUM(CP(mask, full, (0.5, 1.0])) "
                    "AS s FROM masks GROUP BY batch ORDER BY batch")


def change_steps() -> list[tuple]:
    """20 changes: updates, deletes by CP, ingests of new batches and compactions."""
    steps: list[tuple] = []
    for i in range(20):
        kind = ("update", "delete", "ingest", "compact")[i % 4]
        steps.append((kind, i // 4))
    return steps


def change_states() -> list[list[tuple]]:
    """Rows of CHANGE_STATE_SQL before the changes and after each one."""
    model = {b: {j: 0 for j in range(PER_BATCH)} for b in range(4)}

    def rows() -> list[tuple]:
        return [(b, len(ms_), sum(ms_.values()), sum(b * PER_BATCH + j + 1 for j in ms_))
                for b, ms_ in sorted(model.items()) if ms_]

    states = [rows()]
    for kind, n in change_steps():
        if kind == "update":
            model[n % 4] = {j: v + 1 for j, v in model[n % 4].items()}
        elif kind == "delete":   # the masks with the fewest hot pixels of batch n % 4
            b = n % 4
            model[b] = {j: v for j, v in model[b].items() if b * PER_BATCH + j + 1 > (
                b * PER_BATCH + 3 * (n + 1))}
        elif kind == "ingest":
            model[4 + n] = {j: 0 for j in range(PER_BATCH)}
        states.append(rows())
    return states


CHANGER = textwrap.dedent("""
    import sys, time, masksearch as ms
    from pathlib import Path
    from tests.test_concurrency import PER_BATCH, batch, change_steps
    path, sync = sys.argv[1], Path(sys.argv[2])
    while len(list(sync.glob("ready-*"))) < int(sys.argv[3]):
        time.sleep(0.02)
    db = ms.connect(path, segment_size=8)
    for kind, n in change_steps():
        b = n % 4
        if kind == "update":
            db.query(f"UPDATE masks SET v = v + 1 WHERE batch = {b}")
        elif kind == "delete":
            db.query(f"DELETE FROM masks WHERE batch = {b} AND "
                     f"CP(mask, full, (0.5, 1.0]) <= {b * PER_BATCH + 3 * (n + 1)}")
        elif kind == "ingest":
            db.ingest(batch(4 + n), image_id=list(range(PER_BATCH)),
                      metadata={"batch": [4 + n] * PER_BATCH, "v": [0] * PER_BATCH})
        else:
            db.compact()
        time.sleep(0.03)
    (sync / "finished").write_text("")
""")

# Rows of a batch are deleted too: a mask is found by its batch and image_id (its j).
CHANGE_READER = READER.replace("STATE_SQL", "CHANGE_STATE_SQL").replace(
    "b = int(rng.integers(0, len(rows)))", "b = rows[int(rng.integers(0, len(rows)))][0]"
).replace("SELECT mask_id FROM masks", "SELECT mask_id, image_id FROM masks").replace(
    "batch(b)[j]", "batch(b)[ids[j][1]]")


@pytest.mark.slow
def test_readers_see_whole_commits_during_changes_and_compactions(tmp_path):
    """Readers in two other processes query while a writer makes 20 changes (updates,
    deletes by CP, ingests, compactions; old files are retired while readers use them):
    every state they see is one the changes committed, and masks read back exactly."""
    path, sync = tmp_path / "db", tmp_path / "sync"
    sync.mkdir()
    db = ms.connect(path, segment_size=8)
    for b in range(4):
        db.ingest(batch(b), image_id=list(range(PER_BATCH)),
                  metadata={"batch": [b] * PER_BATCH, "v": [0] * PER_BATCH})
    db.close()
    readers = [python(CHANGE_READER, str(path), str(sync), str(i)) for i in range(2)]
    writer = python(CHANGER, str(path), str(sync), str(len(readers)))
    _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    states = change_states()
    valid = {json.dumps(s) for s in states}
    assert len(valid) == 16     # compactions change no answer
    seen, _ = reader_states(readers, valid, states[-1])
    assert len(seen) >= 3, "readers should have seen states between commits"
    final = ms.connect(path)
    assert final.query(CHANGE_STATE_SQL).rows() == [tuple(r) for r in states[-1]]
    assert final.check().ok
    final.close()
    with ms.connect(path) as last:   # no reader left: every retired file goes
        last.compact()
        retired = [p for e in last.store.manifest.retired for p in e["paths"]]
        assert not [p for p in retired if (path / p).exists()]
        segments = {s.name for s in last.store.manifest.segments}
        assert {p.name for p in (path / "segments").iterdir()} == segments
    assert not [p for p in path.rglob("*") if ".tmp" in p.name]
