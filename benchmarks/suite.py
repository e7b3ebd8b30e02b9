#!/usr/bin/env python
"""The benchmark suite: the paper's query shapes over several kinds of masks, each against
the baselines, in one process on the same data; an index-settings sweep; the targets.

    .venv/bin/python benchmarks/suite.py --quick    # make bench: 2,000 masks per kind, < 5 min
    .venv/bin/python benchmarks/suite.py            # make bench-full: 20,000 masks per kind

Per query: masksearch with the index, masksearch with ``use_index=False``, a NumPy scan of
the masks in memory, DuckDB SQL over masks stored as nested lists (filters only, on the first
``--duck-masks`` masks, scaled up to the dataset), and the hardware floor: the time to decode
the masks the indexed query had to verify, spread over all cores. Every result is checked
against NumPy; a difference stops the run (exit status 2).

Writes ``benchmarks/results/suite-<n>.md`` and ``.json``, and PNG plots beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import masksearch as ms  # noqa: E402
from benchmarks import datasets  # noqa: E402
from benchmarks.common import engine_version, fail, log, machine, write_json  # noqa: E402
from benchmarks.workloads import Workload, workloads  # noqa: E402
from masksearch.store.index_cache import PLANES_ASKED  # noqa: E402

KINDS_QUICK = ("saliency", "attention", "labels", "binary")
KINDS_FULL = ("saliency", "attention", "labels", "binary", "saliency_u8")
SWEEP_CELLS = (8, 16, 32)
SWEEP_BINS = (10, 20, 40)


# --- one workload ---------------------------------------------------------------------------
def _keys(result: ms.Result, w: Workload) -> list:
    table = result.to_arrow()
    keys = table.column(0).to_pylist()
    return keys if w.ordered else sorted(keys)


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def run_workload(d: datasets.Dataset, w: Workload, repeat: int, decode_s: float,
                 duck: duckdb.DuckDBPyConnection | None, duck_n: int) -> dict:
    want = w.numpy()
    db = d.db
    # Warm-up of both sides (kernels, segments: nothing charged to one), the index's as
    # often as it takes to reach its steady state (corner planes made on the third pass).
    warmup_ms = []
    for _ in range(PLANES_ASKED):
        start = time.perf_counter()
        db.query(w.sql)
        warmup_ms.append(round((time.perf_counter() - start) * 1e3, 2))
    db.query(w.sql, use_index=False)
    t_idx, t_scan, t_np = [], [], []
    result = slow = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = db.query(w.sql)
        t_idx.append(time.perf_counter() - start)
        start = time.perf_counter()
        slow = db.query(w.sql, use_index=False)
        t_scan.append(time.perf_counter() - start)
        start = time.perf_counter()
        got_np = w.numpy()
        t_np.append(time.perf_counter() - start)
        for name, got in (("index", _keys(result, w)), ("no index", _keys(slow, w)),
                          ("numpy rerun", got_np)):
            if got != want:
                fail(f"{d.name} {w.family}: {name} gives {got[:10]}... ({len(got)} rows), "
                     f"NumPy {want[:10]}... ({len(want)} rows)\n   {w.sql}")
    s = result.stats
    units = d.n // datasets.MODELS if w.grouped else d.n
    row = {"dataset": d.name, "family": w.family, "sql": w.sql, "rows": len(want),
           "selectivity_target": w.selectivity, "selectivity": len(want) / units,
           "index_ms": _median_ms(t_idx), "no_index_ms": _median_ms(t_scan),
           "numpy_ms": _median_ms(t_np), "verified": s.verified, "masks": s.masks_total,
           "decided_by_index": (s.masks_total - s.verified) / max(1, s.masks_total),
           "floor_ms": s.verified * decode_s / (os.cpu_count() or 1) * 1e3,
           "all_index_ms": [round(t * 1e3, 2) for t in t_idx], "index_warmup_ms": warmup_ms}
    row["vs_numpy"] = row["numpy_ms"] / row["index_ms"]
    row["vs_no_index"] = row["no_index_ms"] / row["index_ms"]
    if duck is not None and w.duck_where is not None:
        row.update(_duck_list(duck, w, want, duck_n, d.n))
    log(f"  {w.family:32s} sel {row['selectivity'] * 100:6.2f}% | index {row['index_ms']:8.1f}"
        f" | no-index {row['no_index_ms']:8.1f} | numpy {row['numpy_ms']:8.1f} | "
        f"{row['vs_numpy']:6.1f}x numpy, {row['vs_no_index']:5.1f}x no-index | verified "
        f"{s.verified:,}" + (f" | duckdb-list {row['duck_list_ms']:,.0f} (scaled)"
                             if "duck_list_ms" in row else ""))
    return row


# --- DuckDB over nested lists ---------------------------------------------------------------
def duck_table(d: datasets.Dataset, k: int) -> duckdb.DuckDBPyConnection:
    """A DuckDB table pix(mask_id, bbox, px) of the first ``k`` masks, px a list of rows."""
    k = min(k, d.n)
    masks = np.ascontiguousarray(d.masks[:k])
    if masks.dtype == np.bool_:
        masks = masks.astype(np.uint8)
    h, w = masks.shape[1:]
    flat = pa.array(masks.reshape(-1))
    rows = pa.FixedSizeListArray.from_arrays(flat, w)
    px = pa.ListArray.from_arrays(pa.array(np.arange(0, k * h + 1, h, dtype=np.int32)),
                                  pa.ListArray.from_arrays(
                                      pa.array(np.arange(0, k * h * w + 1, w, dtype=np.int32)),
                                      rows.flatten()))
    columns = {"mask_id": pa.array(np.arange(k)), "px": px}
    if d.boxes is not None:
        b = d.boxes[:k]
        columns["bbox"] = pa.StructArray.from_arrays(
            [pa.array(b[:, i]) for i in range(4)], names=["x0", "y0", "x1", "y1"])
    con = duckdb.connect()
    con.register("pix_arrow", pa.table(columns))
    con.execute("CREATE TABLE pix AS SELECT * FROM pix_arrow")
    con.unregister("pix_arrow")
    return con


def _duck_list(con, w: Workload, want: list, k: int, n: int) -> dict:
    sql = f"SELECT mask_id FROM pix WHERE {w.duck_where} ORDER BY mask_id"
    start = time.perf_counter()
    got = [r[0] for r in con.execute(sql).fetchall()]
    seconds = time.perf_counter() - start
    k = con.execute("SELECT count(*) FROM pix").fetchone()[0]
    if got != [i for i in want if i < k]:
        fail(f"DuckDB list SQL disagrees with NumPy on the first {k} masks: {sql}")
    return {"duck_list_ms": seconds * 1e3 * n / k, "duck_list_masks": k}


# --- the index-settings sweep ---------------------------------------------------------------
def sweep(d: datasets.Dataset, workdir: Path, count: int) -> list[dict]:
    """Index size and pruning for cell sizes x bin counts, on ``count`` of the masks."""
    masks = np.ascontiguousarray(d.masks[:count])
    boxes = d.boxes[:count] if d.boxes is not None else None
    probes = [w for w in workloads(d) if w.family.startswith("filter")]
    out = []
    for cell in SWEEP_CELLS:
        for bins in SWEEP_BINS:
            path = workdir / f"sweep-{d.kind.name}-{cell}-{bins}.msdb"
            if path.exists():
                import shutil

                shutil.rmtree(path)
            edges = {d.kind.dtype: (np.arange(bins + 1) / bins).tolist()} \
                if d.kind.dtype.startswith("float") else None
            db = ms.connect(path, cell_size=cell, bin_edges=edges)
            i = np.arange(count)
            db.ingest(masks, image_id=i // datasets.MODELS, model_id=i % datasets.MODELS,
                      metadata={"bbox": boxes} if boxes is not None else None)
            info = db.info()
            decided, times = [], []
            for w in probes:
                r = db.query(w.sql)
                decided.append(1 - r.stats.verified / count)
                times.append(r.stats.seconds)
            out.append({"cell": cell, "bins": bins if edges else "default",
                        "index_share": info["index_bytes"] / info["pixel_bytes"],
                        "decided": float(np.mean(decided)),
                        "query_ms": float(np.median(times) * 1e3)})
            log(f"  cell {cell:3d}, bins {out[-1]['bins']!s:>7}: index "
                f"{out[-1]['index_share'] * 100:5.2f}% of compressed pixels, "
                f"{out[-1]['decided'] * 100:5.1f}% of masks decided without pixels")
    return out


# --- the targets, from this run --------------------------------------------------------
def targets(rows: list[dict], builds: dict, n: int, generator: str = "saliency") -> list[dict]:
    """Each target of the benchmarks issue that this run measures, with its figure, on the
    maps of ``generator``. The targets are set for 20,000 masks and more (``make
    bench-full``); a quick run shows where they stand on its own data."""
    sal = [r for r in rows if r["dataset"] == f"{generator}-{n}"]
    out = []

    def add(target: str, measured: str, met: bool, where: str) -> None:
        out.append({"target": target, "measured": measured, "met": bool(met), "where": where})

    for r in sal:
        if r["family"] == "filter CP(box) > T" and r["selectivity"] <= 0.01:
            where = f"{generator}, {r['selectivity'] * 100:.2f}% qualify"
            add("selective filter >= 100x NumPy", f"{r['vs_numpy']:.1f}x",
                r["vs_numpy"] >= 100, where)
            add("selective filter >= 20x brute force", f"{r['vs_no_index']:.1f}x",
                r["vs_no_index"] >= 20, where)
        if r["family"].startswith("top-25 CP(bbox)/area"):
            add("top-25 by CP/area over a per-mask box >= 50x NumPy", f"{r['vs_numpy']:.1f}x",
                r["vs_numpy"] >= 50, f"{generator}, {r['family'][-4:].strip()}")
    worst = max(rows, key=lambda r: r["index_ms"] / r["no_index_ms"])
    ratio = worst["index_ms"] / worst["no_index_ms"]
    add("never more than 1.2x the brute force (worst query of the run)",
        f"{ratio:.2f}x", ratio <= 1.2, f"{worst['dataset']}: {worst['family']}")
    b = builds.get(f"{generator}-{n}")
    if b:
        share = b["index_bytes"] / b["pixel_bytes"]
        add("index <= 5% of compressed pixels", f"{share * 100:.2f}%", share <= 0.05,
            f"{generator}, cell 16 px, 20 bins")
        rate = b["ingest"]["masks_per_s"]
        add("ingest with index >= 2,000 masks/s", f"{rate:,.0f} masks/s", rate >= 2000,
            f"{generator}, when the dataset was built ({b.get('built_at', 'earlier')})")
    return out


def targets_markdown(goals: list[dict], n: int) -> str:
    lines = [f"Targets of the benchmarks issue, measured in this run ({n:,} masks per kind; "
             "the targets are set for 20,000 and more):", "",
             "| target | measured | | on |", "|---|---:|---|---|"]
    lines += [f"| {g['target']} | {g['measured']} | {'met' if g['met'] else 'missed'} | "
              f"{g['where']} |" for g in goals]
    return "\n".join(lines)


# --- report ---------------------------------------------------------------------------------
def markdown(rows: list[dict], sweep_rows: list[dict]) -> str:
    head = ("| dataset | query | selectivity | rows | index ms | no-index ms | NumPy ms | "
            "DuckDB lists ms | floor ms | vs NumPy | vs no-index | decided by index |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        duck = f"{r['duck_list_ms']:,.0f}" if "duck_list_ms" in r else "-"
        lines.append(
            f"| {r['dataset']} | {r['family']} | {r['selectivity'] * 100:.2f}% | {r['rows']} "
            f"| {r['index_ms']:.1f} | {r['no_index_ms']:.1f} | {r['numpy_ms']:.1f} | {duck} | "
            f"{r['floor_ms']:.1f} | {r['vs_numpy']:.1f}x | {r['vs_no_index']:.1f}x | "
            f"{r['decided_by_index'] * 100:.1f}% |")
    if sweep_rows:
        lines += ["", "| cell px | bins | index / compressed pixels | masks decided without "
                  "pixels | median query ms |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {s['cell']} | {s['bins']} | {s['index_share'] * 100:.2f}% | "
                  f"{s['decided'] * 100:.1f}% | {s['query_ms']:.1f} |" for s in sweep_rows]
    return "\n".join(lines)


def plots(rows: list[dict], sweep_rows: list[dict], stem: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plots (pip install '.[bench]')")
        return []
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    families = sorted({(r["dataset"], r["family"]) for r in rows
                       if r["selectivity_target"] is not None and r["family"].startswith("filter")})
    for dataset, family in families:
        pts = sorted((r["selectivity"], r["vs_numpy"]) for r in rows
                     if r["dataset"] == dataset and r["family"] == family)
        if len(pts) > 1:
            ax.plot([p[0] * 100 for p in pts], [p[1] for p in pts], marker="o",
                    label=f"{dataset}: {family}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("masks qualifying (%)")
    ax.set_ylabel("speedup over the NumPy scan")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{stem}-speedup.png", dpi=110)
    written.append(f"{stem}-speedup.png")
    plt.close(fig)
    if sweep_rows:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for s in sweep_rows:
            ax.scatter(s["index_share"] * 100, s["decided"] * 100)
            ax.annotate(f"{s['cell']}px/{s['bins']}", (s["index_share"] * 100,
                                                       s["decided"] * 100), fontsize=7)
        ax.set_xlabel("index size (% of compressed pixels)")
        ax.set_ylabel("masks decided without reading pixels (%)")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(f"{stem}-index.png", dpi=110)
        written.append(f"{stem}-index.png")
        plt.close(fig)
    return written


def decode_seconds(d: datasets.Dataset, sample: int = 200) -> float:
    """Seconds to read and decode one mask, on one core (median over a sample), its bytes
    in the page cache as they are for the timed queries (each runs after a warm-up)."""
    ids = np.linspace(0, d.n - 1, min(sample, d.n)).astype(int)
    for i in ids:
        d.db.mask(int(i))
    times = []
    for i in ids:
        start = time.perf_counter()
        d.db.mask(int(i))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 masks per kind (make bench)")
    ap.add_argument("--n", type=int, default=None, help="masks per kind (default 20,000)")
    ap.add_argument("--kinds", default=None, help="comma-separated dataset kinds")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per query")
    ap.add_argument("--duck-masks", type=int, default=None,
                    help="masks in the DuckDB nested-list baseline table")
    ap.add_argument("--sweep-masks", type=int, default=2000,
                    help="saliency maps per index-settings sweep point (0: no sweep)")
    ap.add_argument("--generator", choices=sorted(datasets.GENERATORS), default="saliency",
                    help="the Grad-CAM-like maps of the default kinds, the sweep and the "
                    "targets: saliency (Gaussian activations, the default) or gradcam "
                    "(ReLU'd noise); results go to suite-N.* or suite-N-gradcam.*")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = args.n or (2000 if args.quick else 20000)
    kinds = args.kinds.split(",") if args.kinds else [
        k.replace("saliency", args.generator) for k in (KINDS_QUICK if args.quick
                                                        else KINDS_FULL)]
    repeat = args.repeat or (3 if args.quick else 5)
    duck_n = args.duck_masks or (100 if args.quick else 500)
    started = time.perf_counter()
    mach = machine()
    log(f"masksearch benchmark suite: {n:,} masks per kind ({', '.join(kinds)}), repeat "
        f"{repeat}; {mach['platform']}, {mach['cpu_count']} CPUs")
    rows, builds = [], {}
    for kind in kinds:
        d = datasets.load(args.workdir, kind, n, args.seed, log=log)
        builds[d.name] = d.record
        log(f"\n{d.name}: {d.kind.describe}; index {d.record['index_bytes'] / 1e6:,.1f} MB = "
            f"{d.record['index_bytes'] / d.record['pixel_bytes'] * 100:.2f}% of compressed "
            f"pixels ({d.record['pixel_bytes'] / 1e6:,.1f} MB); ingest "
            f"{d.record['ingest']['masks_per_s']:,.0f} masks/s")
        decode_s = decode_seconds(d)
        duck = duck_table(d, duck_n)
        try:
            for w in workloads(d):
                rows.append(run_workload(d, w, repeat, decode_s, duck, duck_n))
        finally:
            duck.close()
    sweep_rows = []
    if args.sweep_masks:
        log(f"\nindex settings sweep on {args.sweep_masks:,} {args.generator} maps:")
        d = datasets.load(args.workdir, args.generator, n, args.seed, log=log)
        sweep_rows = sweep(d, args.workdir, min(args.sweep_masks, n))
    goals = targets(rows, builds, n, args.generator)
    table = markdown(rows, sweep_rows) + "\n\n" + targets_markdown(goals, n)
    log("\n" + table)
    stem = args.results / (f"suite-{n}" if args.generator == "saliency"
                           else f"suite-{n}-{args.generator}")
    args.results.mkdir(parents=True, exist_ok=True)
    pictures = plots(rows, sweep_rows, stem)
    Path(f"{stem}.md").write_text(table + "\n")
    write_json(Path(f"{stem}.json"), {
        "benchmark": "suite", "n": n, "generator": args.generator, "repeat": repeat,
        "machine": mach,
        "engine": engine_version(), "duckdb": duckdb.__version__, "builds": builds,
        "rows": rows, "sweep": sweep_rows, "targets": goals, "plots": pictures,
        "seconds": time.perf_counter() - started})
    log(f"\nwrote {stem}.md, {stem}.json" + "".join(f", {p}" for p in pictures)
        + f" in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
