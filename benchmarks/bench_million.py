#!/usr/bin/env python
"""The scale run: 1,000,000 uint8 224x224 saliency maps on one machine.

    .venv/bin/python benchmarks/bench_million.py              # 1,000,000 masks (~30 min)
    .venv/bin/python benchmarks/bench_million.py --n 100000   # a smaller rehearsal

Ingests the maps in chunks (generated on the fly; no copy is kept, so the NumPy baseline is
the brute-force path, ``use_index=False``), recording the ingest rate and the process's peak
resident memory, then times a selective filter (about 0.1% qualify, a box not aligned to the
cells) and a top-25, each checked against the brute-force path. Writes
``benchmarks/results/million-<n>.json``. The database is kept in the work folder and reused.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import masksearch as ms  # noqa: E402
from benchmarks.common import engine_version, fail, log, machine, write_json  # noqa: E402
from masksearch.synth import saliency_maps  # noqa: E402

CHUNK = 5000
BOX = (37, 41, 181, 179)
HOT = "(204, 255]"          # uint8 counterpart of (0.8, 1.0]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(path: Path, n: int, seed: int) -> dict:
    db = ms.connect(path)
    have = db.info()["masks"]
    t_ingest = t_gen = 0.0
    for start in range(have, n, CHUNK):
        m = min(CHUNK, n - start)
        t0 = time.perf_counter()
        maps, boxes = saliency_maps(m, seed=seed + start // CHUNK)
        maps = np.round(maps * 255).astype(np.uint8)
        t1 = time.perf_counter()
        i = np.arange(start, start + m)
        db.ingest(maps, image_id=i // 2, model_id=i % 2, mask_type="saliency",
                  metadata={"bbox": boxes})
        t2 = time.perf_counter()
        t_gen, t_ingest = t_gen + t1 - t0, t_ingest + t2 - t1
        if (start // CHUNK) % 20 == 0 or start + m == n:
            log(f"  {start + m:>9,} / {n:,}: ingest {m / (t2 - t1):,.0f} masks/s, "
                f"peak RSS {peak_rss_mb():,.0f} MB")
    done = n - have
    return {"ingested_now": done, "ingest_seconds": t_ingest, "generate_seconds": t_gen,
            "masks_per_s": done / t_ingest if t_ingest else None,
            "peak_rss_mb_after_ingest": peak_rss_mb()}


def timed(db: ms.Database, sql: str, repeat: int) -> tuple[list, list[float], ms.Result]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = db.query(sql)
        times.append(time.perf_counter() - start)
    return [list(r) for r in result.rows()], times, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    path = args.workdir / f"million-{args.n}.msdb"
    args.workdir.mkdir(parents=True, exist_ok=True)
    mach = machine()
    log(f"scale run: {args.n:,} uint8 224x224 saliency maps in {path}; {mach['platform']}, "
        f"{mach['cpu_count']} CPUs")
    build_record = build(path, args.n, args.seed)
    db = ms.connect(path)
    info = db.info()
    log(f"stored: {info['pixel_bytes'] / 1e9:,.2f} GB of pixels, index "
        f"{info['index_bytes'] / 1e9:,.3f} GB ({info['index_share'] * 100:.2f}%)")
    x0, y0, x1, y1 = BOX
    count = f"CP(mask, box({x0}, {y0}, {x1}, {y1}), {HOT})"
    # The threshold for ~0.1%: from the brute-force counts (also the exactness reference).
    start = time.perf_counter()
    all_counts = db.query(f"SELECT mask_id, {count} AS c FROM masks", use_index=False)
    brute_s = time.perf_counter() - start
    ids = np.array(all_counts.to_arrow().column("mask_id").to_numpy())
    counts = np.array(all_counts.to_arrow().column("c").to_numpy())
    t = int(np.sort(counts)[::-1][max(1, args.n // 1000)])
    log(f"brute force over every mask: {brute_s:,.1f} s; T = {t}")
    filter_sql = f"SELECT mask_id FROM masks WHERE {count} > {t}"
    top_sql = f"SELECT mask_id, {count} AS c FROM masks ORDER BY c DESC LIMIT 25"
    want_filter = sorted(ids[counts > t].tolist())
    order = np.lexsort((ids, -counts))[:25]
    want_top = [[int(ids[i]), int(counts[i])] for i in order]
    db.query(filter_sql)                      # warm-up: loads every segment's index
    rows, t_filter, r_filter = timed(db, filter_sql, args.repeat)
    if sorted(r[0] for r in rows) != want_filter:
        fail("the selective filter differs from the brute force")
    rows, t_top, r_top = timed(db, top_sql, args.repeat)
    if rows != want_top:
        fail("the top-25 differs from the brute force")
    summary = {
        "benchmark": "bench_million", "n": args.n, "machine": mach, "engine": engine_version(),
        "build": build_record, "pixel_bytes": info["pixel_bytes"],
        "index_bytes": info["index_bytes"], "brute_force_seconds": brute_s,
        "filter": {"sql": filter_sql, "rows": len(want_filter),
                   "median_ms": statistics.median(t_filter) * 1e3,
                   "all_ms": [round(x * 1e3, 1) for x in t_filter],
                   "verified": r_filter.stats.verified},
        "top25": {"sql": top_sql, "median_ms": statistics.median(t_top) * 1e3,
                  "all_ms": [round(x * 1e3, 1) for x in t_top],
                  "verified": r_top.stats.verified},
        "peak_rss_mb": peak_rss_mb()}
    log(json.dumps({k: summary[k] for k in ("filter", "top25", "peak_rss_mb")}, indent=1))
    write_json(args.results / f"million-{args.n}.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
