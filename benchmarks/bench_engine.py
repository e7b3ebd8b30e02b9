#!/usr/bin/env python
"""End-to-end engine benchmark: ingest rate, index size, and three query shapes timed with the
index, without it (``use_index=False``) and against a NumPy full scan over masks in RAM.

    .venv/bin/python benchmarks/bench_engine.py            # 20,000 maps (a few minutes)
    .venv/bin/python benchmarks/bench_engine.py --quick    # 2,000 maps (smoke run)
    .venv/bin/python benchmarks/bench_engine.py --generator gradcam   # ReLU'd-noise maps
    .venv/bin/python benchmarks/bench_engine.py --only "top-25 CP(bbox)" --loop 20  # to profile

See benchmarks/README.md for what it prints. Exits non-zero if any result differs between the
index, the brute-force path and NumPy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import masksearch as ms  # noqa: E402
from benchmarks.common import (  # noqa: E402
    engine_version,
    fail,
    fmt_ms,
    log,
    machine,
    ms_stats,
    timed,
    write_json,
)
from benchmarks.datasets import GENERATORS  # noqa: E402
from masksearch.store.index_cache import PLANES_ASKED  # noqa: E402

SIZE = 224
CHUNK = 2000                  # maps generated and ingested per db.ingest call
SCAN_CHUNK = 512              # masks per step of the NumPy baseline
BOX = (37, 41, 181, 179)      # x0, y0, x1, y1: not aligned to the 16-pixel index cells
HOT = (0.8, 1.0)              # (lo, hi]
BBOX_RANGE = (0.6, 1.0)       # (lo, hi]
BBOX_SHARE = 0.05
SELECTIVITY = 0.005           # share of masks the selective filter should return
TOPK = 25
INGEST_CHECK = 4000           # maps ingested afresh in every run for the ingest rate


# --- data and database ----------------------------------------------------------------------
@dataclass
class Data:
    db: ms.Database
    maps: np.ndarray          # (n, 224, 224) float32, memory-mapped from the workdir
    boxes: np.ndarray         # (n, 4) int64 x0, y0, x1, y1
    base_id: int              # mask_id of map 0 (map i has mask_id base_id + i)
    build: dict = field(default_factory=dict)


def _paths(workdir: Path, n: int, generator: str = "saliency") -> dict[str, Path]:
    g = "" if generator == "saliency" else f"{generator}-"
    return {"db": workdir / f"engine-{g}{n}.msdb", "maps": workdir / f"maps-{g}{n}.npy",
            "boxes": workdir / f"boxes-{g}{n}.npy",
            "marker": workdir / f"engine-{g}{n}.build.json"}


def _reusable(p: dict[str, Path], n: int, seed: int, generator: str) -> dict | None:
    """The build record of an existing, complete database of this size, seed and
    generator, if any."""
    try:
        record = json.loads(p["marker"].read_text())
        if (record.get("n"), record.get("seed"), record.get("chunk"),
                record.get("generator", "saliency")) != (n, seed, CHUNK, generator):
            return None
        maps = np.load(p["maps"], mmap_mode="r")
        boxes = np.load(p["boxes"])
        if maps.shape != (n, SIZE, SIZE) or maps.dtype != np.float32 or boxes.shape != (n, 4):
            return None
        if ms.connect(p["db"]).info()["masks"] != n:
            return None
        return record
    except (OSError, ValueError, KeyError, ms.MaskSearchError):
        return None


def prepare(workdir: Path, n: int, seed: int, rebuild: bool, generator: str = "saliency") -> Data:
    workdir.mkdir(parents=True, exist_ok=True)
    p = _paths(workdir, n, generator)
    record = None if rebuild else _reusable(p, n, seed, generator)
    if record is not None:
        log(f"Reusing {p['db']} ({n:,} masks, seed {seed}); pass --rebuild to rebuild it.")
        ingest_rate = record["ingest"]["masks_per_s"]
        log(f"  ingest rate measured when it was built ({record['built_at']}): "
            f"{ingest_rate:,.0f} masks/s (not re-measured)")
        record["reused"] = True
    else:
        record = build(p, n, seed, generator)
    db = ms.connect(p["db"])
    return Data(db, np.load(p["maps"], mmap_mode="r"), np.load(p["boxes"]),
                record["base_id"], record)


def build(p: dict[str, Path], n: int, seed: int, generator: str = "saliency") -> dict:
    for key in ("db", "maps", "boxes", "marker"):
        path = p[key]
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    log(f"Building {p['db']}: {n:,} Grad-CAM-like {SIZE}x{SIZE} float32 maps of the "
        f"{generator} generator (seed {seed}), {CHUNK:,} per ingest call")
    maps = np.lib.format.open_memmap(p["maps"], mode="w+", dtype=np.float32,
                                     shape=(n, SIZE, SIZE))
    boxes = np.empty((n, 4), np.int64)
    db = ms.connect(p["db"])
    t_gen = t_save = t_ingest = 0.0
    ids: list[int] = []
    for k, start in enumerate(range(0, n, CHUNK)):
        m = min(CHUNK, n - start)
        t0 = time.perf_counter()
        chunk, chunk_boxes = GENERATORS[generator](m, SIZE, seed + k)
        t1 = time.perf_counter()
        maps[start:start + m] = chunk
        boxes[start:start + m] = chunk_boxes
        t2 = time.perf_counter()
        i = np.arange(start, start + m)
        ids += db.ingest(chunk, image_id=i // 2, model_id=i % 2, mask_type="saliency",
                         metadata={"bbox": chunk_boxes})
        t3 = time.perf_counter()
        t_gen, t_save, t_ingest = t_gen + t1 - t0, t_save + t2 - t1, t_ingest + t3 - t2
        log(f"  {start + m:>7,} / {n:,}: generate {t1 - t0:5.1f} s, ingest {t3 - t2:5.1f} s "
            f"({m / (t3 - t2):,.0f} masks/s)")
        del chunk
    maps.flush()
    del maps
    np.save(p["boxes"], boxes)
    if ids != list(range(ids[0], ids[0] + n)):
        sys.exit("!!! ENGINE BUG: ingest did not assign consecutive mask ids !!!")
    record = {"n": n, "seed": seed, "chunk": CHUNK, "generator": generator, "base_id": ids[0],
              "built_at": time.strftime("%Y-%m-%d %H:%M:%S"), "engine": engine_version(),
              "ingest": {"seconds": t_ingest, "masks_per_s": n / t_ingest,
                         "generate_seconds": t_gen, "npy_write_seconds": t_save}}
    p["marker"].write_text(json.dumps(record, indent=1))
    log(f"  generation {t_gen:.1f} s, writing the .npy copy {t_save:.1f} s, "
        f"ingest {t_ingest:.1f} s")
    log(f"Ingest rate: {n / t_ingest:,.0f} masks/s ({n * SIZE * SIZE * 4 / t_ingest / 1e6:,.0f}"
        " MB/s of raw float32; end to end incl. compression, index build and fsync; "
        "excluding data generation)")
    return record


# --- NumPy baseline, written as a user would --------------------------------------------------
def np_box_counts(maps: np.ndarray, box=BOX, rng=HOT) -> np.ndarray:
    x0, y0, x1, y1 = box
    lo, hi = rng
    out = np.empty(len(maps), np.int64)
    for s in range(0, len(maps), SCAN_CHUNK):
        c = maps[s:s + SCAN_CHUNK, y0:y1, x0:x1]
        out[s:s + SCAN_CHUNK] = ((c > lo) & (c <= hi)).sum((1, 2))
    return out


def np_bbox_counts(maps: np.ndarray, boxes: np.ndarray, rng=BBOX_RANGE) -> np.ndarray:
    """Per-mask boxes: one slice per mask. (Broadcasting row and column masks over whole
    chunks was 4x slower, and a summed-area table 20x slower, on 2,000 maps.)"""
    lo, hi = rng
    out = np.empty(len(maps), np.int64)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        c = maps[i, y0:y1, x0:x1]
        out[i] = np.count_nonzero((c > lo) & (c <= hi))
    return out


# --- queries ----------------------------------------------------------------------------------
@dataclass
class Query:
    name: str
    sql: str
    numpy: Callable[[], list[int]]    # mask ids, in output order
    ordered: bool                      # compare order too (top-k)


def make_queries(d: Data, threshold: int) -> list[Query]:
    x0, y0, x1, y1 = BOX
    roi = f"box({x0}, {y0}, {x1}, {y1})"
    hot = f"({HOT[0]}, {HOT[1]}]"
    bb = f"({BBOX_RANGE[0]}, {BBOX_RANGE[1]}]"
    base = d.base_id

    def np_filter() -> list[int]:
        return (np.flatnonzero(np_box_counts(d.maps) > threshold) + base).tolist()

    def np_topk() -> list[int]:
        c = np_box_counts(d.maps)
        ids = np.arange(len(c)) + base
        order = np.lexsort((ids, -c))[:TOPK]      # count descending, ties by mask_id
        return ids[order].tolist()

    def np_share() -> tuple[np.ndarray, np.ndarray]:
        """CP(bbox)/area per mask (NaN where the box is empty), and the mask ids."""
        c = np_bbox_counts(d.maps, d.boxes)
        area = (d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(area > 0, c / np.where(area > 0, area, 1), np.nan)
        return share, np.arange(len(c)) + base

    def np_bbox() -> list[int]:
        share, ids = np_share()
        return ids[share < BBOX_SHARE].tolist()

    def np_share_top(desc: bool):
        def top() -> list[int]:
            share, ids = np_share()
            # NULL (empty box) last, then by share, ties by ascending mask_id
            order = np.lexsort((ids, -share if desc else share, np.isnan(share)))[:TOPK]
            return ids[order].tolist()
        return top

    return [
        Query("filter CP(box) > T",
              f"SELECT mask_id FROM masks WHERE CP(mask, {roi}, {hot}) > {threshold}",
              np_filter, False),
        Query(f"top-{TOPK} CP(box)",
              f"SELECT mask_id, CP(mask, {roi}, {hot}) AS c FROM masks "
              f"ORDER BY c DESC LIMIT {TOPK}", np_topk, True),
        Query(f"filter CP(bbox)/area < {BBOX_SHARE}",
              f"SELECT mask_id FROM masks WHERE CP(mask, bbox, {bb}) / area(bbox) < {BBOX_SHARE}",
              np_bbox, False),
    ] + [
        Query(f"top-{TOPK} CP(bbox)/area {order}",
              f"SELECT mask_id, CP(mask, bbox, {bb}) / area(bbox) AS share FROM masks "
              f"ORDER BY share {order} LIMIT {TOPK}", np_share_top(order == "DESC"), True)
        for order in ("DESC", "ASC")
    ]


def run_query(d: Data, q: Query, repeat: int) -> dict:
    log(f"\n== {q.name}\n   {q.sql}")
    # Warm-up: compiles the Numba kernels, opens segments, pages the .npy into memory; and
    # asks for the index as often as it takes to reach its steady state (the corner planes
    # are made on the third pass of one box, PLANES_ASKED), so that no timed run pays a
    # one-off cost. Those first runs' times are reported too.
    first = []
    for _ in range(PLANES_ASKED):
        fast, t = timed(lambda: d.db.query(q.sql))
        first.append(t)
    slow = d.db.query(q.sql, use_index=False)
    want = q.numpy()
    t_idx, t_scan, t_np = [], [], []
    for _ in range(repeat):
        fast, t = timed(lambda: d.db.query(q.sql))
        t_idx.append(t)
        slow, t = timed(lambda: d.db.query(q.sql, use_index=False))
        t_scan.append(t)
        got_np, t = timed(q.numpy)
        t_np.append(t)
        if got_np != want:
            fail(f"{q.name}: the NumPy baseline is not deterministic")
        # Check every repetition: the engine may be under concurrent development.
        check(q, fast, slow, want)
    s = fast.stats
    row = {"query": q.name, "sql": q.sql, "rows": len(fast),
           "index_ms": ms_stats(t_idx), "index_warmup_ms": [round(t * 1e3, 2) for t in first],
           "no_index_ms": ms_stats(t_scan),
           "numpy_ms": ms_stats(t_np),
           "speedup_vs_no_index": statistics.median(t_scan) / statistics.median(t_idx),
           "speedup_vs_numpy": statistics.median(t_np) / statistics.median(t_idx),
           "verified": s.verified, "accepted_by_index": s.accepted_by_index,
           "rejected_by_index": s.rejected_by_index, "bytes_read": s.bytes_read,
           "no_index_verified": slow.stats.verified, "no_index_bytes_read": slow.stats.bytes_read}
    log(f"   index warm-up runs (untimed): "
        f"{', '.join(f'{t * 1e3:.1f}' for t in first)} ms")
    log(f"   {len(fast)} rows | index {fmt_ms(t_idx)} | no index {fmt_ms(t_scan)} | "
        f"numpy {fmt_ms(t_np)} | {row['speedup_vs_no_index']:.1f}x vs no index, "
        f"{row['speedup_vs_numpy']:.1f}x vs numpy")
    log(f"   index: {s.verified:,} verified ({s.bytes_read / 1e6:.1f} MB read), "
        f"{s.accepted_by_index:,} accepted, {s.rejected_by_index:,} rejected of "
        f"{s.masks_total:,}; no index: {slow.stats.verified:,} verified "
        f"({slow.stats.bytes_read / 1e6:.1f} MB read)")
    return row


def loop_queries(d: Data, queries: list[Query], seconds: float) -> None:
    """Run each query with the index for ``seconds`` (after a checked warm-up), for a
    profiler; nothing is timed or written."""
    for q in queries:
        want = q.numpy()
        check(q, d.db.query(q.sql), d.db.query(q.sql, use_index=False), want)
        log(f"looping {q.name} for {seconds:g} s: {q.sql}")
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            d.db.query(q.sql)


def check(q: Query, fast: ms.Result, slow: ms.Result, want: list[int]) -> None:
    if not fast.to_arrow().equals(slow.to_arrow()):
        fail(f"{q.name}: the result with the index differs from use_index=False\n"
             f"   {q.sql}\n   index: {fast.to_pylist()[:10]}...\n"
             f"   no index: {slow.to_pylist()[:10]}...")
    got = fast.to_arrow().column("mask_id").to_pylist()
    if not q.ordered:
        got = sorted(got)
    if got != want:
        only_db = sorted(set(got) - set(want))[:10]
        only_np = sorted(set(want) - set(got))[:10]
        fail(f"{q.name}: the engine's mask ids differ from NumPy's\n   {q.sql}\n"
             f"   engine {len(got)} rows, numpy {len(want)} rows; only engine: {only_db}; "
             f"only numpy: {only_np}\n   engine: {got[:TOPK]}\n   numpy:  {want[:TOPK]}")


# --- ingest, measured in every run ------------------------------------------------------------
def ingest_rate(workdir: Path, n: int, seed: int, generator: str = "saliency") -> dict:
    """Masks/s of ``db.ingest`` (compression, CHI build, checksums, fsync, commit) for ``n``
    fresh maps into a new database, the maps made beforehand (not timed). A first, untimed
    ingest of a few maps compiles or loads the kernels."""
    path = workdir / "ingest-check.msdb"
    maps, boxes = GENERATORS[generator](n, SIZE, seed + 1000)
    i = np.arange(n)
    try:
        shutil.rmtree(path, ignore_errors=True)
        db = ms.connect(path)
        db.ingest(maps[:8], image_id=i[:8], metadata={"bbox": boxes[:8]})
        seconds = []
        for _ in range(3):
            shutil.rmtree(path, ignore_errors=True)
            db = ms.connect(path)
            _, t = timed(lambda db=db: db.ingest(maps, image_id=i // 2, model_id=i % 2,
                                                 mask_type="saliency",
                                                 metadata={"bbox": boxes}))
            seconds.append(t)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    best = statistics.median(seconds)
    log(f"Ingest now: {n:,} float32 {SIZE}x{SIZE} maps with their index in "
        f"{best:.2f} s (median of 3) = {n / best:,.0f} masks/s on {os.cpu_count()} cores")
    return {"masks": n, "seconds": seconds, "masks_per_s": n / best}


TARGETS = (   # (query, baseline key, at least): the targets for this benchmark
    ("filter CP(box) > T", "speedup_vs_numpy", 100.0),
    ("filter CP(box) > T", "speedup_vs_no_index", 20.0),
    (f"top-{TOPK} CP(bbox)/area DESC", "speedup_vs_numpy", 50.0),
    (f"top-{TOPK} CP(bbox)/area ASC", "speedup_vs_numpy", 50.0),
)


def targets(rows: list[dict], index_share: float, ingest: dict) -> list[dict]:
    by_name = {r["query"]: r for r in rows}
    out = [{"target": f"{q} {key.replace('speedup_vs_', 'vs ').replace('_', '-')} >= {at:g}x",
            "measured": f"{by_name[q][key]:.1f}x", "met": by_name[q][key] >= at}
           for q, key, at in TARGETS if q in by_name]
    out.append({"target": "index <= 5% of the compressed pixels",
                "measured": f"{index_share * 100:.2f}%", "met": index_share <= 0.05})
    out.append({"target": "ingest with index >= 2,000 masks/s",
                "measured": f"{ingest['masks_per_s']:,.0f} masks/s",
                "met": ingest["masks_per_s"] >= 2000})
    return out


# --- reporting --------------------------------------------------------------------------------
def markdown_table(rows: list[dict]) -> str:
    head = ["query", "rows", "index ms", "no-index ms", "numpy ms", "vs no-index", "vs numpy",
            "verified", "accepted / rejected by index"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([
            f"`{r['query']}`", str(r["rows"]),
            f"{r['index_ms']['median']:,.1f} (min {r['index_ms']['min']:,.1f})",
            f"{r['no_index_ms']['median']:,.1f} (min {r['no_index_ms']['min']:,.1f})",
            f"{r['numpy_ms']['median']:,.1f} (min {r['numpy_ms']['min']:,.1f})",
            f"{r['speedup_vs_no_index']:.1f}x", f"{r['speedup_vs_numpy']:.1f}x",
            f"{r['verified']:,}",
            f"{r['accepted_by_index']:,} / {r['rejected_by_index']:,}"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="number of masks (default 20000)")
    ap.add_argument("--quick", action="store_true", help="smoke run with 2,000 masks")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per query (default 5)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data",
                    help="where the database and the .npy copy live (default benchmarks/data/)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild even if a database exists")
    ap.add_argument("--seed", type=int, default=0, help="data seed (chunk k uses seed + k)")
    ap.add_argument("--only", default=None, help="with --loop: the queries whose name holds this")
    ap.add_argument("--loop", type=float, default=0.0,
                    help="only run the queries (--only) with the index this many seconds each, "
                    "for a profiler; nothing is timed or written")
    ap.add_argument("--generator", choices=sorted(GENERATORS), default="saliency",
                    help="saliency (Gaussian activations, the default) or gradcam (ReLU'd "
                    "noise); results go to engine-N.json or engine-N-gradcam.json")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                    help="folder for engine-<n>.json (default benchmarks/results/)")
    args = ap.parse_args(argv)
    n = 2000 if args.quick else args.n
    if n < 1 or args.repeat < 1:
        ap.error("--n and --repeat must be positive")

    t_start = time.perf_counter()
    mach = machine()
    log(f"masksearch engine benchmark: n={n:,} {args.generator} maps, repeat={args.repeat}; "
        f"{mach['platform']}, "
        f"{mach['cpu_count']} CPUs, Python {mach['python']}, numpy {mach['numpy']}, "
        f"numba {mach['numba']}, pyarrow {mach['pyarrow']}")
    d = prepare(args.workdir, n, args.seed, args.rebuild, args.generator)

    info = d.db.info()
    raw = n * SIZE * SIZE * 4
    idx, pix = info["index_bytes"], info["pixel_bytes"]
    log(f"\nSizes: raw float32 pixels {raw / 1e6:,.1f} MB; stored (compressed, codec "
        f"{info['codec']}) {pix / 1e6:,.1f} MB ({raw / pix:.2f}x); index {idx / 1e6:,.1f} MB "
        f"(cell {info['cell_size']} px) = {idx / pix * 100:.2f}% of stored pixels, "
        f"{idx / raw * 100:.2f}% of raw pixels; {info['segments']} segments")

    # T for the selective filter: about SELECTIVITY of the masks have CP > T.
    counts = np_box_counts(d.maps)
    k = max(1, round(SELECTIVITY * n))
    threshold = int(np.sort(counts)[::-1][min(k, n - 1)])
    log(f"Selective filter threshold: T = {threshold} (of {(BOX[2] - BOX[0]) * (BOX[3] - BOX[1])}"
        f" box pixels); {(counts > threshold).sum():,} masks qualify "
        f"({(counts > threshold).mean() * 100:.2f}%)")

    if args.loop:
        loop_queries(d, [q for q in make_queries(d, threshold)
                         if args.only is None or args.only in q.name], args.loop)
        return 0
    rows = [run_query(d, q, args.repeat) for q in make_queries(d, threshold)]
    log("")
    ingest_now = ingest_rate(args.workdir, min(n, INGEST_CHECK), args.seed, args.generator)

    log(f"\nResults (n={n:,}, median of {args.repeat} runs after {PLANES_ASKED} warm-up runs, "
        "ms):\n")
    log(markdown_table(rows))
    ingest = d.build["ingest"]
    log(f"\nIngest when the database was built: {ingest['masks_per_s']:,.0f} masks/s "
        f"(data generation took {ingest['generate_seconds']:.1f} s, ingest "
        f"{ingest['seconds']:.1f} s{', reused database' if 'reused' in d.build else ''}). "
        f"Index: {idx / pix * 100:.2f}% of stored pixels, {idx / raw * 100:.2f}% of raw.")
    log("All results identical with the index, with use_index=False and with NumPy.")
    goals = targets(rows, idx / pix, ingest_now)
    log(f"\nTargets (benchmarks issue; {n:,} masks, this run):")
    for g in goals:
        log(f"  {'met   ' if g['met'] else 'MISSED'}  {g['target']}: {g['measured']}")

    summary = {"benchmark": "bench_engine", "n": n, "generator": args.generator,
               "repeat": args.repeat, "seed": args.seed,
               "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": mach,
               "engine": engine_version(), "database_built_with": d.build.get("engine"),
               "ingest": ingest, "ingest_now": ingest_now, "targets": goals,
               "sizes": {"raw_pixel_bytes": raw, "pixel_bytes": pix, "index_bytes": idx,
                         "index_share_of_stored": idx / pix, "index_share_of_raw": idx / raw,
                         "compression_ratio": raw / pix, "segments": info["segments"],
                         "cell_size": info["cell_size"], "codec": info["codec"]},
               "filter_threshold": threshold, "queries": rows,
               "total_seconds": time.perf_counter() - t_start}
    out = args.results / (f"engine-{n}.json" if args.generator == "saliency"
                          else f"engine-{n}-{args.generator}.json")
    write_json(out, summary)
    log(f"Wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
        f"({time.perf_counter() - t_start:.0f} s in total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
