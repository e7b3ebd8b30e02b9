"""Crash safety: a writer SIGKILLed at every crash point of a scenario of ingests, and of one
of lazy indexing (queries persisting CHIs, build_index, rebuild_index), leaves a database
that opens, holds every ingest that reported success and nothing half-written, answers
exactly like the brute-force oracle, passes ``check``, and has its leftovers removed on open.

The kills are driven by tests/crash_driver.py (see there); this file checks the results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import masksearch as ms

from .crash_driver import SIDE, ingest_batches

ROOT = Path(__file__).resolve().parents[1]
BOX = (3, 2, 17, 19)   # x0, y0, x1, y1


def run_driver(scenario: str, out: Path, stride: int = 1) -> list[dict]:
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "crash_driver.py"), scenario,
                           str(out), str(stride)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def count(m: np.ndarray, box, lo: float, hi: float) -> int:
    x0, y0, x1, y1 = box
    region = m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    return int(((region > lo) & (region <= hi)).sum())


def oracle(masks: list[np.ndarray], meta: list[dict]) -> dict[str, list]:
    """Expected rows of ``QUERIES`` over ``masks`` (mask ids 0..n-1), computed with NumPy."""
    n = len(masks)
    c_box = [count(m, BOX, 0.5, 1.0) for m in masks]
    c_bbox = [count(m, meta[i]["bbox"], 0.25, 0.75) for i, m in enumerate(masks)]
    top = sorted((i for i in range(n) if meta[i]["op"] == 2), key=lambda i: (-c_bbox[i], i))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        if meta[i]["op"] == 0:
            groups.setdefault(meta[i]["pair"], []).append(i)
    inter = {g: count(np.minimum.reduce([masks[i] for i in ids]), (0, 0, SIDE, SIDE), 0.25,
                      1.0) for g, ids in groups.items()}
    return {
        "filter": [(i, c_box[i]) for i in range(n) if c_box[i] > 30],
        "meta": [(i, meta[i]["image_id"], meta[i]["op"], meta[i]["pair"]) for i in range(n)],
        "topk": [(i, c_bbox[i]) for i in top[:4]],
        "group": sorted(inter.items(), key=lambda kv: (-kv[1], kv[0]))[:2],
    }


QUERIES = {
    "filter": "SELECT mask_id, CP(mask, box({}, {}, {}, {}), (0.5, 1.0]) AS c FROM masks "
              "WHERE c > 30".format(*BOX),
    "meta": "SELECT mask_id, image_id, op, pair FROM masks",
    "topk": "SELECT mask_id, CP(mask, bbox, (0.25, 0.75]) AS c FROM masks WHERE op = 2 "
            "ORDER BY c DESC LIMIT 4",
    "group": "SELECT pair, CP(intersect(mask), full, (0.25, 1.0]) AS c FROM masks "
             "WHERE op = 0 GROUP BY pair ORDER BY c DESC LIMIT 2",
}


def committed_state(n_ops: int) -> tuple[list[np.ndarray], list[dict]]:
    masks, meta = [], []
    for b in ingest_batches()[:n_ops]:
        masks += b["masks"]
        for i, image_id in enumerate(b["image_id"]):
            meta.append({"image_id": image_id, "op": b["metadata"]["op"][i],
                         "pair": b["metadata"]["pair"][i],
                         "bbox": tuple(int(v) for v in b["metadata"]["bbox"][i])})
    return masks, meta


def assert_no_leftovers(root: Path, db: ms.Database) -> None:
    committed = {s.name for s in db.store.manifest.segments}
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    assert {p.name for p in (root / "segments").iterdir()} == committed
    for name in committed:
        seg = root / "segments" / name
        if (seg / "chi.json").exists():
            assert not list(seg.glob("chi-delta-*")), "deltas left beside a full index"
        else:
            assert not [f for f in ("chi_hist.lz4", "chi_eq.npy", "chi_stats.npy")
                        if (seg / f).exists()], "a partial index is visible"


def check_outcome(rec: dict, n_ops_done: int, n_ops_max: int) -> tuple[int, int]:
    """Check one killed writer's database; returns how many ingests it holds and how many
    masks had a CHI when it was opened."""
    root = Path(rec["path"])
    case = f"kill point {rec['k']} ({rec['point']})"
    db = ms.connect(root)
    indexed = db.info()["indexed_masks"]
    sizes = np.cumsum([0] + [len(b["masks"]) for b in ingest_batches()])
    n_masks = db.info()["masks"]
    # Every ingest that reported success is there; the one in flight is all there or absent.
    assert n_masks in (sizes[n_ops_done], sizes[min(n_ops_done + 1, n_ops_max)]), case
    n_ops = int(np.searchsorted(sizes, n_masks))
    masks, meta = committed_state(n_ops)
    want = oracle(masks, meta)
    for name, sql in QUERIES.items() if n_ops else ():  # no columns before the first ingest
        for use_index in (True, False):
            got = db.query(sql, use_index=use_index).rows()
            assert got == want[name], f"{case}: {name} (index {use_index})"
    for i, m in enumerate(masks):
        assert np.array_equal(db.mask(i), m), f"{case}: mask {i}"
    assert_no_leftovers(root, db)
    report = db.check()
    assert report.ok, f"{case}: {report.summary()}"
    return n_ops, indexed


def summarize(records: list[dict]) -> str:
    kinds = sorted({r["point"].split(" ")[0] for r in records})
    return f"{len(records)} kill points ({', '.join(kinds)})"


@pytest.mark.slow
def test_kill_at_every_crash_point_of_ingests(tmp_path):
    records = run_driver("ingest", tmp_path)
    assert len(records) == records[0]["points"] >= 50
    assert all(r["killed"] for r in records)
    seen = set()
    for rec in records:
        done = sum(1 for d in rec["done"] if d.startswith("ingest"))
        seen.add(check_outcome(rec, done, len(ingest_batches()))[0])
    # Kills left 0, 1, ... and all ingests committed (after the last commit's rename).
    assert seen == set(range(len(ingest_batches()) + 1)), "kills should hit every ingest"
    print(summarize(records))
    # A database left by a kill takes new writes.
    db = ms.connect(records[len(records) // 2]["path"])
    db.ingest(np.ones((2, SIDE, SIDE), np.float32), image_id=[1, 2])
    assert db.check().ok


@pytest.mark.slow
def test_kill_at_every_crash_point_of_index_builds(tmp_path):
    records = run_driver("index", tmp_path)
    assert len(records) == records[0]["points"] >= 50
    assert all(r["killed"] for r in records)
    n_ops = 3  # the index scenario starts from the first three ingests
    indexed = set()
    for rec in records:
        ops, n_indexed = check_outcome(rec, n_ops, n_ops)
        assert ops == n_ops
        indexed.add(n_indexed)
    assert len(indexed) >= 3, "kills should land before, during and after index builds"
    print(summarize(records))
    # Whatever the kill left, completing the index works and changes no answer.
    for rec in records[::10]:
        db = ms.connect(rec["path"])
        db.build_index()
        assert db.info()["indexed_masks"] == db.info()["masks"]
        assert db.query(QUERIES["topk"]).rows() == oracle(*committed_state(n_ops))["topk"]


def test_kill_points_quick(tmp_path):
    """A reduced run (every 9th point of the ingest scenario) for quick local runs."""
    records = run_driver("ingest", tmp_path, stride=9)
    assert len(records) >= 15
    for rec in records:
        done = sum(1 for d in rec["done"] if d.startswith("ingest"))
        check_outcome(rec, done, len(ingest_batches()))


def observed(db: ms.Database) -> dict:
    """What a database answers: every row, every mask's pixels, and queries with the index
    and without (which must agree)."""
    rows = db.query("SELECT * FROM masks").to_pylist()
    pixels = {r["mask_id"]: db.mask(r["mask_id"]) for r in rows}
    answers = {}
    for sql in (QUERIES["filter"], QUERIES["topk"], QUERIES["group"]):
        with_index = db.query(sql).rows()
        assert with_index == db.query(sql, use_index=False).rows(), sql
        answers[sql] = with_index
    return {"rows": rows, "pixels": pixels, "answers": answers}


def numpy_answers(state: dict) -> dict:
    """QUERIES' answers over a state's rows and pixels, with NumPy."""
    rows, pixels = state["rows"], state["pixels"]
    c_box = {r["mask_id"]: count(pixels[r["mask_id"]], BOX, 0.5, 1.0) for r in rows}
    filt = [(i, c) for i, c in sorted(c_box.items()) if c > 30]
    bbox = {r["mask_id"]: None if r["bbox"] is None else
            count(pixels[r["mask_id"]], tuple(r["bbox"].values()), 0.25, 0.75)
            for r in rows if r["op"] == 2}     # CP over a NULL box is NULL: last
    top = sorted(bbox.items(), key=lambda kv: (kv[1] is None, -(kv[1] or 0), kv[0]))[:4]
    groups: dict = {}
    for r in rows:
        if r["op"] == 0:
            groups.setdefault(r["pair"], []).append(pixels[r["mask_id"]])
    inter = {g: count(np.minimum.reduce(ms_), (0, 0, SIDE, SIDE), 0.25, 1.0)
             for g, ms_ in groups.items()}
    group = sorted(inter.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    return {QUERIES["filter"]: filt, QUERIES["topk"]: top, QUERIES["group"]: group}


def same_state(a: dict, b: dict) -> bool:
    return a["rows"] == b["rows"] and a["answers"] == b["answers"] and \
        a["pixels"].keys() == b["pixels"].keys() and \
        all(np.array_equal(a["pixels"][k], b["pixels"][k]) for k in a["pixels"])


@pytest.mark.slow
def test_kill_at_every_crash_point_of_changes(tmp_path):
    """DELETE (by metadata and by CP), UPDATE, ALTER ADD/DROP, add_metadata, an upsert, a
    streaming writer's commit and compaction, killed at every crash point: the database
    opens, equals the state before the change in flight or after it (never a mix, checked
    row by row, pixel by pixel and against NumPy), passes check, and keeps no leftovers."""
    from .crash_driver import CHANGES, SEGMENT_SIZE, prepare_changes

    records = run_driver("changes", tmp_path / "kills")
    assert len(records) == records[0]["points"] >= 100
    assert all(r["killed"] for r in records)
    # The states the scenario goes through, from an undisturbed run.
    ref = tmp_path / "ref"
    prepare_changes(ref)
    db = ms.connect(ref, segment_size=SEGMENT_SIZE)
    states = [observed(db)]
    for _, change in CHANGES:
        db.query(change) if isinstance(change, str) else change(db)
        states.append(observed(db))
    db.close()
    for state in states:
        assert state["answers"] == numpy_answers(state)
    assert len({len(s["rows"]) for s in states}) >= 4, "the changes change the row count"
    hit = set()
    for rec in records:
        done = sum(1 for d in rec["done"] if d != "open")
        case = f"kill point {rec['k']} ({rec['point']})"
        with ms.connect(rec["path"]) as killed:
            got = observed(killed)
            assert got["answers"] == numpy_answers(got), case
            matches = [i for i in (done, done + 1)
                       if i < len(states) and same_state(got, states[i])]
            assert matches, f"{case}: neither the state before nor after change {done}"
            hit.add(matches[-1])
            assert killed.check().ok, case
            root = Path(rec["path"])
            assert not [p for p in root.rglob("*") if ".tmp" in p.name], case
            segs = {s.name: s for s in killed.store.manifest.segments}
            assert {p.name for p in (root / "segments").iterdir()} == set(segs), case
            for name, info in segs.items():
                used = {spec["name"] for spec in (info.meta, info.deleted) if spec}
                extra = {p.name for p in (root / "segments" / name).iterdir()
                         if p.name.startswith(("meta-", "deleted-"))} - used
                assert not extra, f"{case}: {extra}"
    assert hit == set(range(len(states))), "kills should leave every state"
