"""Crash-test driver, run as its own process by tests/test_crash.py.

It runs a scenario of writes once to learn its crash points (``faults.trace``), then, for each
kill point k, forks a child that runs the scenario again on a fresh database with the k-th
crash point armed: the child SIGKILLs itself there. The child prints ``done <op>`` after each
operation that returned; the driver records, per k, the point's name, the operations that
reported success and whether the child died. It writes one JSON line per k to stdout; the test
process then reopens every database and checks it.

Forking keeps each child cheap (masksearch and its compiled kernels are loaded once); Numba's
``workqueue`` threading layer is fork-safe, so the test runs the driver with it.

    python tests/crash_driver.py SCENARIO OUT_DIR [STRIDE]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import masksearch as ms
from masksearch.store import faults

SIDE = 24


def ingest_batches() -> list[dict]:
    """Masks and metadata of the ingest scenario's operations (deterministic)."""
    rng = np.random.default_rng(7)
    batches = []
    for op, (n, kind) in enumerate([(6, "float32"), (5, "uint8"), (12, "float32"),
                                    (9, "mixed")]):
        masks = []
        for i in range(n):
            if kind == "float32" or (kind == "mixed" and i % 2 == 0):
                m = rng.random((SIDE, SIDE)).astype(np.float32)
            elif kind == "uint8":
                m = rng.integers(0, 4, (SIDE - 4 * (i % 2), SIDE)).astype(np.uint8)
            else:
                m = rng.integers(0, 1000, (SIDE, SIDE)).astype(np.uint16)
            masks.append(m)
        boxes = rng.integers(0, SIDE // 2, (n, 2))
        boxes = np.concatenate([boxes, boxes + rng.integers(1, SIDE // 2, (n, 2))], axis=1)
        batches.append({"masks": masks, "image_id": [op * 100 + i for i in range(n)],
                        "metadata": {"op": [op] * n, "pair": [i // 2 for i in range(n)],
                                     "bbox": boxes}})
    return batches


LAZY_QUERIES = [
    "SELECT mask_id FROM masks WHERE CP(mask, box(3, 2, 17, 19), (0.5, 1.0]) > 100",
    "SELECT pair, CP(intersect(mask), full, (0.3, 1.0]) AS c FROM masks "
    "WHERE op = 0 GROUP BY pair ORDER BY c DESC LIMIT 2",
    "SELECT mask_id, CP(mask, bbox, (0.2, 0.7]) AS c FROM masks WHERE op = 2 "
    "ORDER BY c DESC LIMIT 4",
]


SEGMENT_SIZE = 8   # several segments per ingest


def run_ingest(path: Path, report) -> None:
    db = ms.connect(path, segment_size=SEGMENT_SIZE)
    report("open")
    for k, b in enumerate(ingest_batches()):
        db.ingest(b["masks"], image_id=b["image_id"], metadata=b["metadata"])
        report(f"ingest {k}")


def prepare_index(path: Path) -> None:
    """The starting point of the index scenario: a lazy database, some CHIs built already."""
    db = ms.connect(path, index="lazy", segment_size=SEGMENT_SIZE)
    for b in ingest_batches()[:3]:
        db.ingest(b["masks"], image_id=b["image_id"], metadata=b["metadata"])
    db.query(LAZY_QUERIES[0])


def run_index(path: Path, report) -> None:
    db = ms.connect(path)
    report("open")
    for k, sql in enumerate(LAZY_QUERIES[1:]):
        db.query(sql)  # builds and persists CHIs of the masks it reads
        report(f"query {k}")
    db.build_index()
    report("build_index")
    db.rebuild_index()
    report("rebuild_index")


def prepare_changes(path: Path) -> None:
    """The starting point of the changes scenario: the ingests' masks, small segments."""
    db = ms.connect(path, segment_size=SEGMENT_SIZE)
    for b in ingest_batches():
        db.ingest(b["masks"], image_id=b["image_id"], metadata=b["metadata"])


def change_masks() -> list[np.ndarray]:
    """New masks of the upsert and the streaming writer in the changes scenario."""
    rng = np.random.default_rng(11)
    return [rng.random((SIDE, SIDE)).astype(np.float32) for _ in range(5)]


def _upsert(db: ms.Database) -> None:
    new = change_masks()
    db.ingest(new[:3], image_id=[200, 201, 202], metadata={"op": [2, 2, 2], "pair": [0, 0, 1]},
              replace_on=["image_id"])


def _stream(db: ms.Database) -> None:
    with db.writer(model_id="w") as w:
        w.add(change_masks()[3:], image_id=[900, 901], metadata={"op": [5, 5]})


# Every kind of change, in order; each reports when it returned (see test_crash.py).
CHANGES: list[tuple[str, object]] = [
    ("delete by metadata", "DELETE FROM masks WHERE op = 1"),
    ("delete by CP", "DELETE FROM masks WHERE CP(mask, box(3, 2, 17, 19), (0.5, 1.0]) > 120"),
    ("update", "UPDATE masks SET pair = pair + 10 WHERE op = 2"),
    ("alter add", "ALTER TABLE masks ADD COLUMN flag BOOLEAN DEFAULT true"),
    ("alter drop", "ALTER TABLE masks DROP COLUMN flag"),
    ("add_metadata", lambda db: db.add_metadata(
        {"image_id": [1, 2, 301, 302, 303], "note": ["a", "b", "c", "d", "e"]},
        allow_missing=True)),
    ("upsert", _upsert),
    ("writer", _stream),
    ("compact", lambda db: db.compact()),
]


def run_changes(path: Path, report) -> None:
    db = ms.connect(path, segment_size=SEGMENT_SIZE)
    report("open")
    for name, change in CHANGES:
        if isinstance(change, str):
            db.query(change)
        else:
            change(db)
        report(name)


def prepare_upgrade(path: Path) -> None:
    """The starting point of the upgrade scenario: the ingests' masks in whole-mask blobs
    (the layout before tiles), in small segments, some rows deleted."""
    from masksearch.store import tiles

    tiled = tiles.TILED_CODECS
    tiles.TILED_CODECS = frozenset()
    try:
        prepare_changes(path)
        ms.connect(path).query("DELETE FROM masks WHERE op = 1 AND pair = 0")
    finally:
        tiles.TILED_CODECS = tiled


def run_upgrade(path: Path, report) -> None:
    db = ms.connect(path, segment_size=SEGMENT_SIZE)
    report("open")
    db.upgrade()
    report("upgrade")


SCENARIOS = {"ingest": (None, run_ingest), "index": (prepare_index, run_index),
             "changes": (prepare_changes, run_changes),
             "upgrade": (prepare_upgrade, run_upgrade)}


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    stride = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    prepare, run = SCENARIOS[scenario]
    base = out / "base"
    if prepare is not None:
        prepare(base)
    # A dry run learns the crash points (and loads every kernel before the forks).
    dry = out / "dry"
    if prepare is not None:
        shutil.copytree(base, dry)
    faults.arm(0, trace=True)
    run(dry, lambda op: None)
    names = faults.trace()
    faults.arm(0)
    shutil.rmtree(dry)
    for k in range(1, len(names) + 1, stride):
        path = out / f"k{k:04d}"
        if prepare is not None:
            shutil.copytree(base, path)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run until the k-th crash point kills it
            os.close(read)
            faults.arm(k)

            def report(op: str, fd: int = write) -> None:
                os.write(fd, f"{op}\n".encode())

            try:
                run(path, report)
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as f:
            done = f.read().splitlines()
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
        print(json.dumps({"k": k, "point": names[k - 1], "path": str(path),
                          "done": done, "killed": killed,
                          "points": len(names)}), flush=True)


if __name__ == "__main__":
    main()
