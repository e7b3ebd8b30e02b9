#!/usr/bin/env python
"""Changing data: many small ingests and compaction, and DELETE.

    .venv/bin/python benchmarks/bench_mutations.py            # 20,000 maps (1,000 ingests of 20)
    .venv/bin/python benchmarks/bench_mutations.py --quick    # 4,000 maps (200 ingests of 20)

Three databases of the same N Grad-CAM-like 224x224 float32 maps (``synth.saliency_maps``,
chunk k of 20 made with seed k, metadata ``bbox`` and ``bucket = mask_id % 10``):
  once      all N maps in one commit (a ``db.writer()`` block: full segments);
  small     N / 20 ingests of 20 maps, automatic compaction on (the default);
  no-comp   the same ingests with automatic compaction off (one small segment each).
On each, bench_engine.py's selective filter (``CP(mask, box(37, 41, 181, 179), (0.8, 1.0]) >
T``, T chosen so that about 0.5% qualify) and top-25 by ``CP(mask, bbox, (0.6, 1.0]) /
area(bbox)`` DESC, their answers checked against NumPy, then timed ``--repeat`` times in
rounds (each round runs every query on every layout in turn; medians); then on ``once``: DELETE of 10% of the masks by a metadata predicate
(``bucket = 3``) and DELETE by the selective CP predicate, timed, with the share of masks whose
pixels the CP delete read. Prints ratios to ``once`` and writes
``benchmarks/results/mutations-N.json``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import masksearch as ms  # noqa: E402
from benchmarks.common import engine_version, fail, log, machine, shown, write_json  # noqa: E402
from masksearch import synth  # noqa: E402

CHUNK = 20
BOX = (37, 41, 181, 179)
HOT = (0.8, 1.0)
PEAK = (0.6, 1.0)
TOPK = 25


def chunk(k: int) -> tuple[np.ndarray, np.ndarray]:
    return synth.saliency_maps(CHUNK, seed=k)


def counts(maps: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per map: CP over BOX in HOT, and CP over its bbox in PEAK divided by the box area."""
    x0, y0, x1, y1 = BOX
    region = maps[:, y0:y1, x0:x1]
    box = ((region > HOT[0]) & (region <= HOT[1])).sum((1, 2))
    ratio = np.empty(len(maps))
    for i, (m, (a, b, c, d)) in enumerate(zip(maps, boxes, strict=True)):
        r = m[b:d, a:c]
        ratio[i] = ((r > PEAK[0]) & (r <= PEAK[1])).sum() / max((c - a) * (d - b), 1)
    return box, ratio


def build(path: Path, n: int, layout: str) -> float:
    """Ingest the N maps as ``layout`` says; seconds spent ingesting (not generating)."""
    shutil.rmtree(path, ignore_errors=True)
    db = ms.connect(path, auto_compact=layout != "no-comp")
    spent = 0.0
    # "once": one commit of all maps (a streaming writer: full segments, memory of one).
    writer = db.writer() if layout == "once" else None
    if writer is not None:
        writer.__enter__()
    for k in range(n // CHUNK):
        maps, boxes = chunk(k)
        first = k * CHUNK
        meta = {"bbox": boxes, "bucket": [(first + i) % 10 for i in range(CHUNK)]}
        t = time.perf_counter()
        add = writer.add if writer is not None else db.ingest
        add(maps, image_id=list(range(first, first + CHUNK)), metadata=meta)
        spent += time.perf_counter() - t
    if writer is not None:
        t = time.perf_counter()
        writer.__exit__(None, None, None)
        spent += time.perf_counter() - t
    db.close()
    return spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    n = 4_000 if args.quick else args.n - args.n % CHUNK
    log(f"bench_mutations: {n:,} maps, {n // CHUNK:,} ingests of {CHUNK}")
    box_c, ratio = map(np.concatenate, zip(*(counts(*chunk(k)) for k in range(n // CHUNK)),
                                           strict=True))
    t = int(np.sort(box_c)[int(len(box_c) * 0.995)])
    queries = {
        "selective filter": f"SELECT mask_id FROM masks WHERE CP(mask, box{BOX}, (0.8, 1.0]) "
                            f"> {t}",
        "top-25 CP(bbox)/area DESC": "SELECT mask_id FROM masks ORDER BY CP(mask, bbox, "
                                     f"(0.6, 1.0]) / area(bbox) DESC LIMIT {TOPK}",
    }
    want = {"selective filter": [(int(i),) for i in np.flatnonzero(box_c > t)],
            "top-25 CP(bbox)/area DESC": [(int(i),) for i in np.lexsort(
                (np.arange(n), -ratio))[:TOPK]]}
    summary: dict = {"n": n, "chunk": CHUNK, "machine": machine(), "engine": engine_version(),
                     "layouts": {}}
    layouts = ("once", "small", "no-comp")
    dbs = {}
    for layout in layouts:
        path = args.workdir / f"mutations-{layout}-{n}.msdb"
        spent = build(path, n, layout)
        dbs[layout] = ms.connect(path)
        summary["layouts"][layout] = {"ingest_s": round(spent, 2),
                                      "segments": len(dbs[layout].store.segments)}
        log(f"  {layout:8s} built: ingest {spent:7.1f} s, "
            f"{len(dbs[layout].store.segments):5d} segments")
    # Timed in rounds, the layouts in turn, so that the machine's drift hits all alike.
    times: dict = {(layout, q): [] for layout in layouts for q in queries}
    for layout in layouts:
        for name, sql in queries.items():
            if dbs[layout].query(sql).rows() != want[name]:     # also the warm-up
                fail(f"{layout}: {name} differs from NumPy")
    for _ in range(args.repeat):
        for layout in layouts:
            for name, sql in queries.items():
                start = time.perf_counter()
                dbs[layout].query(sql)
                times[layout, name].append(time.perf_counter() - start)
    for layout in layouts:
        entry = summary["layouts"][layout]
        for name in queries:
            entry[name] = round(statistics.median(times[layout, name]) * 1e3, 2)
        log(f"  {layout:8s} " + ", ".join(f"{q} {entry[q]:.1f} ms" for q in queries))
        dbs[layout].close()
    once = summary["layouts"]["once"]
    for layout in ("small", "no-comp"):
        ratios = {q: summary["layouts"][layout][q] / once[q] for q in queries}
        summary["layouts"][layout]["ratio_to_once"] = {q: round(r, 2) for q, r in ratios.items()}
        log(f"  {layout:8s} / once: " + ", ".join(f"{q} {r:.2f}x" for q, r in ratios.items()))
    db = ms.connect(args.workdir / f"mutations-once-{n}.msdb")
    start = time.perf_counter()
    r = db.query("DELETE FROM masks WHERE bucket = 3")
    meta_s = time.perf_counter() - start
    start = time.perf_counter()
    cp_sql = queries["selective filter"].replace("SELECT mask_id FROM", "DELETE FROM")
    r2 = db.query(cp_sql)
    cp_s = time.perf_counter() - start
    expected = int(((box_c > t) & (np.arange(n) % 10 != 3)).sum())
    if r.rows() != [(n // 10,)] or r2.rows() != [(expected,)]:
        fail(f"DELETE counts: {r.rows()} {r2.rows()}, want {n // 10} and {expected}")
    read = r2.stats.verified / max(r2.stats.masks_total, 1)
    summary["delete"] = {"metadata_10pct_s": round(meta_s, 3), "cp_selective_s": round(cp_s, 3),
                         "cp_rows": expected, "cp_share_read": round(read, 4)}
    log(f"  DELETE 10% by metadata: {meta_s * 1e3:.0f} ms; by the selective CP predicate: "
        f"{cp_s * 1e3:.0f} ms, {expected} rows, {read:.1%} of the masks read")
    out = args.results / f"mutations-{n}.json"
    write_json(out, summary)
    log(f"wrote {shown(out)}")


if __name__ == "__main__":
    main()
