#!/usr/bin/env python
"""Per-mask costs of masksearch on 224x224 float32 Grad-CAM-like maps, for each generator:
the cost of a verified mask, the bound pass per mask, the resident index per mask, the
ingest rate, and the cold start of a new process.

    .venv/bin/python benchmarks/bench_costs.py                 # 10,000 maps per generator
    .venv/bin/python benchmarks/bench_costs.py --only verify --loop 20   # one part, looped
    py-spy record --native -o verify.txt --format raw -- \\
        .venv/bin/python benchmarks/bench_costs.py --only verify --loop 20   # profile it

The databases are bench_engine.py's (``engine-N.msdb``, ``engine-gradcam-N.msdb`` in the
work folder; built if absent, then reused). Answers are checked against NumPy over the
maps' ``.npy`` copy. Writes ``benchmarks/results/costs-N.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_engine import ingest_rate, np_box_counts, prepare  # noqa: E402
from benchmarks.common import engine_version, fail, log, machine, write_json  # noqa: E402
from benchmarks.datasets import GENERATORS  # noqa: E402

PARTS = ("verify", "bounds", "index", "ingest", "cold")
VERIFY_BOX, VERIFY_RANGE = (37, 41, 181, 179), (0.8, 1.0)   # not on the 16-pixel cells
SETTLED_BOX, SETTLED_RANGE = (32, 48, 176, 192), (0.5, 1.0)  # cells and bin edges: exact


def _timed_query(db, sql: str, repeat: int, loop: float, **kw) -> tuple[list[float], object]:
    """Median-ready times of ``repeat`` runs after one untimed run (and, with ``loop``,
    runs for that many seconds more, for a profiler)."""
    result = db.query(sql, **kw)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = db.query(sql, **kw)
        times.append(time.perf_counter() - t0)
    end = time.perf_counter() + loop
    while time.perf_counter() < end:
        db.query(sql, **kw)
    return times, result


def _filter_sql(box, rng, t: int) -> str:
    return (f"SELECT mask_id FROM masks WHERE CP(mask, box({', '.join(map(str, box))}), "
            f"({rng[0]}, {rng[1]}]) > {t}")


def _median_count(d, verify: bool) -> int:
    """T at the median count of the verify query's (or the settled query's) box."""
    box, rng = (VERIFY_BOX, VERIFY_RANGE) if verify else (SETTLED_BOX, SETTLED_RANGE)
    return int(np.median(np_box_counts(d.maps, box, rng)))


def _check(result, counts: np.ndarray, t: int, base: int, what: str) -> None:
    got = result.to_arrow().column("mask_id").to_pylist()
    want = (np.flatnonzero(counts > t) + base).tolist()
    if got != want:
        fail(f"{what}: masksearch returned {len(got)} masks, NumPy {len(want)}")


def verify_cost(d, repeat: int, loop: float) -> dict:
    """A box query whose bounds leave many masks undecided (T at the median count): its
    time per verified mask; the brute force's (every mask verified) per mask; one mask's
    read and decode (``db.mask``, one thread) and NumPy's count of one mask in memory."""
    counts = np_box_counts(d.maps, VERIFY_BOX, VERIFY_RANGE)
    t = int(np.median(counts))
    sql = _filter_sql(VERIFY_BOX, VERIFY_RANGE, t)
    times, result = _timed_query(d.db, sql, repeat, loop)
    _check(result, counts, t, d.base_id, "verify query")
    s = result.stats
    brute, slow = _timed_query(d.db, sql, max(3, repeat // 3), 0.0, use_index=False)
    _check(slow, counts, t, d.base_id, "verify query without the index")
    n = len(d.maps)
    ids = np.linspace(0, n - 1, min(200, n)).astype(int) + d.base_id
    for i in ids:
        d.db.mask(int(i))
    decode = []
    for i in ids:
        t0 = time.perf_counter()
        d.db.mask(int(i))
        decode.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    np_box_counts(d.maps, VERIFY_BOX, VERIFY_RANGE)
    numpy_s = time.perf_counter() - t0
    ms = statistics.median(times) * 1e3
    return {"sql": sql, "verified": s.verified, "accepted": s.accepted_by_index,
            "rejected": s.rejected_by_index, "ms": ms, "all_ms": [round(x * 1e3, 2) for x in times],
            "us_per_verified": ms * 1e3 / max(1, s.verified),
            "no_index_ms": statistics.median(brute) * 1e3,
            "no_index_us_per_mask": statistics.median(brute) * 1e6 / n,
            "decode_us": statistics.median(decode) * 1e6,
            "numpy_us_per_mask": numpy_s * 1e6 / n}


def bound_pass(d, repeat: int, loop: float) -> dict:
    """A filter the index settles entirely (box on the cells, range ends on bin edges),
    end to end, per mask."""
    counts = np_box_counts(d.maps, SETTLED_BOX, SETTLED_RANGE)
    t = int(np.median(counts))
    sql = _filter_sql(SETTLED_BOX, SETTLED_RANGE, t)
    times, result = _timed_query(d.db, sql, repeat, loop)
    _check(result, counts, t, d.base_id, "settled query")
    ms = statistics.median(times) * 1e3
    return {"sql": sql, "verified": result.stats.verified, "rows": len(result), "ms": ms,
            "all_ms": [round(x * 1e3, 2) for x in times], "ns_per_mask": ms * 1e6 / len(d.maps)}


# Run in new processes. COLD: the import, connect and first queries of a new process.
# RESIDENT: the engine warmed up on a tiny database first (modules, kernels), then the
# resident memory before and after a query loads the index, the index as held (compressed
# counts and small arrays), the decoded index in the cache, and the settled query again
# (with MASKSEARCH_INDEX_CACHE=0: decoding every segment's counts each time).
COLD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import masksearch as ms
t1 = time.perf_counter()
db = ms.connect({path!r}, create=False)
t2 = time.perf_counter()
db.query({settled!r})
t3 = time.perf_counter()
db.query({verify!r})
t4 = time.perf_counter()
db.query({verify!r})
t5 = time.perf_counter()
print(json.dumps({{"import_ms": (t1 - t0) * 1e3, "connect_ms": (t2 - t1) * 1e3,
                  "first_query_ms": (t3 - t2) * 1e3, "first_verify_query_ms": (t4 - t3) * 1e3,
                  "warm_verify_query_ms": (t5 - t4) * 1e3}}))
"""
RESIDENT = r"""
import json, os, sys, tempfile, time
sys.path.insert(0, {root!r})
import numpy as np
import masksearch as ms
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
with tempfile.TemporaryDirectory() as tmp:
    tiny = ms.connect(os.path.join(tmp, "tiny.msdb"))
    tiny.ingest(np.random.default_rng(0).random((8, 224, 224), dtype=np.float32), image_id=0)
    tiny.query({settled!r})
    tiny.close()
from masksearch.store.index_cache import index_cache
db = ms.connect({path!r}, create=False)
before = rss()
db.query({settled!r})
after = rss()
t0 = time.perf_counter()
db.query({settled!r})
again_ms = (time.perf_counter() - t0) * 1e3
held = sum(seg.index_overview.held_nbytes() for seg in db.store.segments)
info = db.info()
print(json.dumps({{"rss_before": before, "rss_after": after, "index_held_bytes": held,
                  "index_decoded_bytes": index_cache().used, "settled_again_ms": again_ms,
                  "index_disk_bytes": info["index_bytes"], "masks": info["masks"]}}))
"""


def _run_probe(code: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=None if env is None else {**os.environ, **env})
    if done.returncode:
        fail(f"the probe process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe(d, runs: int, loop: float) -> dict:
    """New processes (``runs`` of each kind): the cold start, and the resident index."""
    sqls = {"root": str(ROOT), "path": str(d.db.path),
            "settled": _filter_sql(SETTLED_BOX, SETTLED_RANGE, _median_count(d, False)),
            "verify": _filter_sql(VERIFY_BOX, VERIFY_RANGE, _median_count(d, True))}
    cold, resident, uncached = [], [], []
    end = time.perf_counter() + loop
    while len(cold) < runs or time.perf_counter() < end:
        cold.append(_run_probe(COLD.format(**sqls)))
        resident.append(_run_probe(RESIDENT.format(**sqls)))
        uncached.append(_run_probe(RESIDENT.format(**sqls), {"MASKSEARCH_INDEX_CACHE": "0"}))
    med = {k: statistics.median(r[k] for r in cold) for k in cold[0]}
    med |= {k: statistics.median(r[k] for r in resident) for k in resident[0]}
    off = {k: statistics.median(r[k] for r in uncached) for k in uncached[0]}
    n = med["masks"]
    return {**med, "runs": len(cold),
            "resident_bytes_per_mask": (med["rss_after"] - med["rss_before"]) / n,
            "uncached_rss_bytes_per_mask": (off["rss_after"] - off["rss_before"]) / n,
            "index_held_bytes_per_mask": med["index_held_bytes"] / n,
            "index_decoded_bytes_per_mask": med["index_decoded_bytes"] / n,
            "uncached_settled_ms": off["settled_again_ms"],
            "index_disk_bytes_per_mask": med["index_disk_bytes"] / n,
            "all": {"cold": cold, "resident": resident, "uncached": uncached}}


def measure(generator: str, args) -> dict:
    log(f"\n== {generator}: {args.n:,} maps")
    d = prepare(args.workdir, args.n, args.seed, False, generator)
    out: dict = {"generator": generator, "n": args.n, "build_ingest": d.build["ingest"]}
    parts = args.only.split(",") if args.only else PARTS
    if "verify" in parts:
        v = out["verify"] = verify_cost(d, args.repeat, args.loop)
        log(f"  verify: {v['verified']:,} masks verified in {v['ms']:.1f} ms = "
            f"{v['us_per_verified']:.1f} us a verified mask (no index: "
            f"{v['no_index_us_per_mask']:.1f} us a mask; one mask's read and decode "
            f"{v['decode_us']:.1f} us; NumPy {v['numpy_us_per_mask']:.1f} us a mask)")
    if "bounds" in parts:
        b = out["bounds"] = bound_pass(d, args.repeat, args.loop)
        log(f"  bound pass: {b['ms']:.2f} ms for {args.n:,} masks = {b['ns_per_mask']:.0f} ns a "
            f"mask end to end ({b['verified']} verified, {b['rows']:,} rows)")
    if "index" in parts or "cold" in parts:
        p = out["probe"] = probe(d, args.probe_runs, args.loop)
        log(f"  resident index: held {p['index_held_bytes_per_mask']:,.0f} B a mask "
            f"(compressed), decoded in the cache {p['index_decoded_bytes_per_mask']:,.0f} B; "
            f"RSS growth of the first query {p['resident_bytes_per_mask']:,.0f} B a mask, "
            f"{p['uncached_rss_bytes_per_mask']:,.0f} B with the cache off (settled query "
            f"then {p['uncached_settled_ms']:.1f} ms); on disk "
            f"{p['index_disk_bytes_per_mask']:,.0f} B")
        log(f"  cold start (median of {p['runs']} processes): import {p['import_ms']:.0f} ms, "
            f"connect {p['connect_ms']:.0f} ms, first query (settled) "
            f"{p['first_query_ms']:.0f} ms, first verify query {p['first_verify_query_ms']:.0f}"
            f" ms, again {p['warm_verify_query_ms']:.0f} ms")
    if "ingest" in parts:
        end = time.perf_counter() + args.loop
        rates = [ingest_rate(args.workdir, min(args.n, args.ingest_n), args.seed, generator)]
        while time.perf_counter() < end:
            rates.append(ingest_rate(args.workdir, min(args.n, args.ingest_n), args.seed,
                                     generator))
        out["ingest"] = rates[0]
    d.db.close()
    return out


def markdown(results: list[dict]) -> str:
    head = "| figure | " + " | ".join(r["generator"] for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]

    def row(label: str, fmt) -> None:
        try:
            cells = [fmt(r) for r in results]
        except KeyError:
            return
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("verify query: masks verified", lambda r: f"{r['verify']['verified']:,}")
    row("verify query: ms", lambda r: f"{r['verify']['ms']:.1f}")
    row("**cost per verified mask (us)**", lambda r: f"**{r['verify']['us_per_verified']:.1f}**")
    row("no index: us a mask (every mask verified)",
        lambda r: f"{r['verify']['no_index_us_per_mask']:.1f}")
    row("one mask read and decoded, `db.mask` (us)", lambda r: f"{r['verify']['decode_us']:.1f}")
    row("NumPy in memory: us a mask", lambda r: f"{r['verify']['numpy_us_per_mask']:.1f}")
    row("settled filter: ms end to end", lambda r: f"{r['bounds']['ms']:.2f}")
    row("**bound pass per mask (ns, end to end)**",
        lambda r: f"**{r['bounds']['ns_per_mask']:.0f}**")
    row("**resident index per mask: held, compressed (bytes)**",
        lambda r: f"**{r['probe']['index_held_bytes_per_mask']:,.0f}**")
    row("decoded index per mask in the cache (bytes; bounded by MASKSEARCH_INDEX_CACHE)",
        lambda r: f"{r['probe']['index_decoded_bytes_per_mask']:,.0f}")
    row("RSS growth per mask, first query (default cache / cache off)",
        lambda r: f"{r['probe']['resident_bytes_per_mask']:,.0f} / "
                  f"{r['probe']['uncached_rss_bytes_per_mask']:,.0f}")
    row("settled filter with the cache off (ms; every segment decoded)",
        lambda r: f"{r['probe']['uncached_settled_ms']:.1f}")
    row("index on disk per mask (bytes)",
        lambda r: f"{r['probe']['index_disk_bytes_per_mask']:,.0f}")
    row("**ingest with index (masks/s)**", lambda r: f"**{r['ingest']['masks_per_s']:,.0f}**")
    row("cold: `import masksearch` (ms)", lambda r: f"{r['probe']['import_ms']:.0f}")
    row("cold: connect (ms)", lambda r: f"{r['probe']['connect_ms']:.0f}")
    row("cold: first query, settled by the index (ms)",
        lambda r: f"{r['probe']['first_query_ms']:.0f}")
    row("cold: first verify query (ms)", lambda r: f"{r['probe']['first_verify_query_ms']:.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="maps per generator (10,000)")
    ap.add_argument("--generators", default="saliency,gradcam")
    ap.add_argument("--only", default=None, help=f"comma-separated parts of {', '.join(PARTS)}")
    ap.add_argument("--repeat", type=int, default=9, help="timed runs per query (9)")
    ap.add_argument("--probe-runs", type=int, default=3, help="new processes for cold/index")
    ap.add_argument("--ingest-n", type=int, default=4000, help="maps per ingest-rate run")
    ap.add_argument("--loop", type=float, default=0.0,
                    help="repeat each part for this many seconds more (for a profiler)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    generators = args.generators.split(",")
    unknown = set(generators) - set(GENERATORS)
    unknown |= set(args.only.split(",")) - set(PARTS) if args.only else set()
    if unknown:
        ap.error(f"unknown generator or part: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    mach = machine()
    log(f"masksearch per-mask costs: {args.n:,} 224x224 float32 maps per generator "
        f"({', '.join(generators)}), repeat {args.repeat}; {mach['platform']}, "
        f"{mach['cpu_count']} CPUs")
    results = [measure(g, args) for g in generators]
    table = markdown(results)
    log("\n" + table)
    stem = args.results / f"costs-{args.n}"
    if not args.only and not args.loop:
        args.results.mkdir(parents=True, exist_ok=True)
        Path(f"{stem}.md").write_text(table + "\n")
        write_json(Path(f"{stem}.json"), {
            "benchmark": "bench_costs", "n": args.n, "repeat": args.repeat, "seed": args.seed,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": mach,
            "engine": engine_version(), "results": results,
            "seconds": time.perf_counter() - started})
        log(f"\nwrote {stem}.md and .json in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
