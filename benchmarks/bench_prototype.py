#!/usr/bin/env python
"""masksearch against a baseline built the way the MaskSearch paper's prototype is, on the
prototype's example workloads: 1,000 images x 2 models of 224x224 float32 Grad-CAM-like maps
with object boxes.

    .venv/bin/python benchmarks/bench_prototype.py                        # gradcam maps
    .venv/bin/python benchmarks/bench_prototype.py --generator saliency   # the other generator
    py-spy record --native -o iou.txt --format raw -- .venv/bin/python \
        benchmarks/bench_prototype.py --only "IoU top" --loop 20            # profile masksearch

The baseline (``benchmarks/prototype_baseline.py``) keeps every map uncompressed in memory
as one NumPy array, with a CHI per mask over 16 value bins on a 28-pixel grid, and the
intersect and union masks of the IoU queries materialized beforehand with their CHIs (none
of it timed). masksearch answers through ``ms.connect`` and ``db.query``, after its own
untimed counterpart of those masks, ``db.prepare_aggregates`` (the CHIs of every image's
intersect and union masks; ``--no-prepare`` leaves it out); both one-off costs are reported. Every answer of
both is checked against a NumPy brute force (ids; the values of top-k); a difference exits
with status 2. Timings: warm medians of ``--repeat`` runs, the two sides alternating, after
one untimed run of the baseline and three of masksearch (its index's steady state: corner
planes are made on the third pass of one box); and masksearch's first run on a new
connection (cold).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import masksearch as ms  # noqa: E402
from benchmarks import prototype_baseline as pb  # noqa: E402
from benchmarks.common import engine_version, fail, log, machine, write_json  # noqa: E402
from benchmarks.datasets import GENERATORS, MODELS  # noqa: E402
from benchmarks.workloads import Range  # noqa: E402
from masksearch.exec.settings import ExecSettings  # noqa: E402
from masksearch.store.index_cache import PLANES_ASKED  # noqa: E402

SIZE = 224
K = 25
PAPER_BOX = (50, 50, 200, 200)      # the paper's filter: CP(mask, region, (0.6, 1.0]) > 5000
PAPER_T, PAPER_V = 0.6, 5000
HOT = Range(0.6, False, 1.0, True)
BAND = Range(0.2, False, 0.4, True)  # an (lv, uv] band of middling saliency
IOU = Range(0.5, False, 1.0, True)
WILDS_SHARE = 0.02                   # CP(bbox) / area(bbox) below this: attention off the object

Answer = tuple[list[int], list | None, int]    # keys, values (top-k), masks verified


# --- the data, on both sides --------------------------------------------------------------------
@dataclass
class Data:
    maps: np.ndarray         # (n, 224, 224) float32, in memory
    boxes: np.ndarray        # (n, 4) clipped object boxes, mask i of image i // 2
    areas: np.ndarray        # (n,) float64
    chi: pb.Chi
    inter: np.ndarray        # (images, 224, 224): pixel-wise min of an image's two maps
    union: np.ndarray        # pixel-wise max
    chi_inter: pb.Chi
    chi_union: pb.Chi
    db: ms.Database
    path: Path
    ingest_s: float
    prepare_s: dict


def prepare(images: int, generator: str, seed: int, workdir: Path, aggregates: bool = True
            ) -> Data:
    n = images * MODELS
    t0 = time.perf_counter()
    maps, boxes = GENERATORS[generator](n, SIZE, seed)
    t1 = time.perf_counter()
    path = workdir / f"prototype-{generator}-{images}.msdb"
    shutil.rmtree(path, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    db = ms.connect(path)
    i = np.arange(n)
    db.ingest(maps, image_id=i // MODELS, model_id=i % MODELS, mask_type=generator,
              metadata={"bbox": boxes})
    t2 = time.perf_counter()
    boxes = pb.clip_boxes(boxes, SIZE, SIZE)
    chi = pb.build_chi(maps)
    pairs = maps.reshape(images, MODELS, SIZE, SIZE)
    inter, union = pairs.min(axis=1), pairs.max(axis=1)
    chi_inter, chi_union = pb.build_chi(inter), pb.build_chi(union)
    t3 = time.perf_counter()
    if aggregates:      # masksearch's counterpart of the baseline's materialized masks
        done = db.prepare_aggregates("image_id", ("intersect", "union"))
        log(f"masksearch prepare_aggregates: {done.groups:,} groups' intersect and union "
            f"CHIs in {done.seconds:.2f} s ({done.masks_read:,} masks read)")
    t4 = time.perf_counter()
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float64)
    if not np.all(areas > 0):
        raise SystemExit("bench_prototype: the generator made an empty box")
    log(f"{n:,} {generator} maps (seed {seed}) made in {t1 - t0:.1f} s; masksearch ingest "
        f"{t2 - t1:.1f} s ({n / (t2 - t1):,.0f} masks/s); baseline CHIs and intersect/union "
        f"masks {t3 - t2:.1f} s ({(chi.nbytes + chi_inter.nbytes + chi_union.nbytes) / 1e6:.1f}"
        f" MB of CHIs, {(maps.nbytes + inter.nbytes + union.nbytes) / 1e6:,.0f} MB of maps)")
    return Data(maps, boxes, areas, chi, inter, union, chi_inter, chi_union, db, path,
                t2 - t1, {"generate": t1 - t0, "ingest": t2 - t1, "baseline_index": t3 - t2,
                          "masksearch_prepare_aggregates": t4 - t3 if aggregates else None})


# --- the baseline's answers -------------------------------------------------------------------------
def base_box_filter(d: Data, box, rng: Range, v: int) -> Answer:
    rows = np.arange(len(d.maps))
    lower, upper = pb.bounds(d.chi, rows, np.array(box), rng)
    ids, verified = pb.filter_rows(lower, upper, lambda r: pb.counts_in_box(d.maps, r, box, rng),
                                   ">", v)
    return ids.tolist(), None, verified


def _ratio_bounds(d: Data, rng: Range) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(d.maps))
    lower, upper = pb.bounds(d.chi, rows, d.boxes, rng)
    return lower / d.areas, upper / d.areas


def _ratio(d: Data, row: int, rng: Range) -> float:
    return pb.count_one(d.maps, row, tuple(d.boxes[row]), rng) / d.areas[row]


def base_ratio_filter(d: Data, rng: Range, op: str, t: float) -> Answer:
    lower, upper = _ratio_bounds(d, rng)
    ids, verified = pb.filter_rows(
        lower, upper, lambda rows: np.array([_ratio(d, r, rng) for r in rows.tolist()]), op, t)
    return ids.tolist(), None, verified


def base_ratio_top(d: Data, rng: Range, descending: bool) -> Answer:
    lower, upper = _ratio_bounds(d, rng)
    return pb.top_k(lower, upper, lambda r: _ratio(d, r, rng), K, descending)


def base_box_top(d: Data, box, rng: Range, descending: bool) -> Answer:
    rows = np.arange(len(d.maps))
    lower, upper = pb.bounds(d.chi, rows, np.array(box), rng)
    keys, values, verified = pb.top_k(lower.astype(np.float64), upper.astype(np.float64),
                                      lambda r: pb.count_one(d.maps, r, box, rng), K,
                                      descending)
    return keys, [int(v) for v in values], verified


def base_mean_top(d: Data, rng: Range) -> Answer:
    """AVG over an image's two maps of CP(bbox)/area, top-k DESC."""
    lower, upper = _ratio_bounds(d, rng)
    lo = (lower[0::2] + lower[1::2]) / 2
    hi = (upper[0::2] + upper[1::2]) / 2
    return pb.top_k(lo, hi, lambda g: (_ratio(d, 2 * g, rng) + _ratio(d, 2 * g + 1, rng)) / 2,
                    K, True)


def _iou_bounds(d: Data, rng: Range) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = np.arange(len(d.inter))
    full = np.array((0, 0, SIZE, SIZE))
    li, ui = pb.bounds(d.chi_inter, rows, full, rng)
    lu, uu = pb.bounds(d.chi_union, rows, full, rng)
    return li, ui, lu, uu


def _iou(d: Data, g: int, rng: Range) -> float | None:
    u = int(np.count_nonzero(rng.holds(d.union[g])))
    return int(np.count_nonzero(rng.holds(d.inter[g]))) / u if u else None


def base_iou_top(d: Data, rng: Range, descending: bool) -> Answer:
    """IoU per image, top-k; NULL (no union pixel) sorts last: as -inf DESC, +inf ASC."""
    li, ui, lu, uu = _iou_bounds(d, rng)
    null = -np.inf if descending else np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        lower, upper = li / uu, ui / np.maximum(lu, 1)
    maybe_null = (lu == 0) & (uu > 0)
    if descending:
        lower[maybe_null] = null
    else:
        upper[maybe_null] = null
    lower[uu == 0] = upper[uu == 0] = null                      # NULL for sure

    def exact(g: int) -> float:
        v = _iou(d, g, rng)
        return null if v is None else v

    keys, values, verified = pb.top_k(lower, upper, exact, K, descending)
    return keys, [None if np.isinf(v) else v for v in values], verified


def base_iou_filter(d: Data, rng: Range, op: str, t: float) -> Answer:
    li, ui, lu, uu = _iou_bounds(d, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        # NULL never qualifies: sure NULLs get bounds that fail both predicates (NaN).
        lower = np.where(uu == 0, np.nan, np.where(lu > 0, li / uu, -np.inf))
        upper = np.where(uu == 0, np.nan, np.where(lu > 0, ui / np.maximum(lu, 1), np.inf))

    def exact(groups: np.ndarray) -> np.ndarray:
        return np.array([np.nan if (v := _iou(d, g, rng)) is None else v
                         for g in groups.tolist()])

    ids, verified = pb.filter_rows(lower, upper, exact, op, t)
    return ids.tolist(), None, verified


# --- the brute force (the oracle of both sides) ---------------------------------------------------
def brute_counts(d: Data, box, rng: Range) -> np.ndarray:
    if box is None:      # each mask's own box
        return np.array([pb.count_one(d.maps, i, tuple(d.boxes[i]), rng)
                         for i in range(len(d.maps))])
    return np.concatenate([pb.counts_in_box(d.maps, np.arange(s, min(s + 256, len(d.maps))),
                                            box, rng) for s in range(0, len(d.maps), 256)])


def brute_iou(d: Data, rng: Range) -> np.ndarray:
    return np.array([np.nan if (v := _iou(d, g, rng)) is None else v
                     for g in range(len(d.inter))])


def _top(values: np.ndarray, descending: bool) -> tuple[list[int], list]:
    """k best keys, NaN (NULL) last, ties by ascending key; and their values."""
    keys = np.arange(len(values))
    order = np.lexsort((keys, -values if descending else values, np.isnan(values)))[:K]
    return order.tolist(), [None if np.isnan(values[i]) else values[i].item() for i in order]


# --- the workloads -----------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    sql: str
    baseline: Callable[[], Answer]
    expected: tuple[list[int], list | None]
    ordered: bool


def _share_above(values: np.ndarray, share: float) -> float:
    """A threshold with about ``share`` of the (non-NaN) values strictly above it."""
    ranked = np.sort(values[~np.isnan(values)])[::-1]
    return float(ranked[min(len(ranked) - 1, max(1, round(share * len(ranked))))])


def _share_below(values: np.ndarray, share: float) -> float:
    """A threshold with about ``share`` of the values strictly below it; when more than that
    share ties at the smallest value, the next value up (so that the ties qualify)."""
    ranked = np.sort(values[~np.isnan(values)])
    t = ranked[min(len(ranked) - 1, max(1, round(share * len(ranked))))]
    above = ranked[ranked > t]
    return float(above[0] if t == ranked[0] and len(above) else t)


def workloads(d: Data) -> list[Workload]:
    box_sql = "box({}, {}, {}, {})".format(*PAPER_BOX)
    hot, band = HOT.sql, BAND.sql
    paper = brute_counts(d, PAPER_BOX, HOT)
    ratio = brute_counts(d, None, HOT) / d.areas
    banded = brute_counts(d, PAPER_BOX, BAND)
    v_band = int(_share_above(banded.astype(np.float64), 0.01))
    mean = (ratio[0::2] + ratio[1::2]) / 2
    iou = brute_iou(d, IOU)
    # Many IoUs are 0 (maps hot in different places): "below" takes a larger share.
    iou_hi, iou_lo = _share_above(iou, 0.01), _share_below(iou, 0.4)
    iou_sql = (f"CP(intersect(mask), full, {IOU.sql}) / CP(union(mask), full, {IOU.sql})")
    out = [
        Workload(f"paper filter CP({box_sql}, {hot}) > {PAPER_V}",
                 f"SELECT mask_id FROM masks WHERE CP(mask, {box_sql}, {hot}) > {PAPER_V}",
                 lambda: base_box_filter(d, PAPER_BOX, HOT, PAPER_V),
                 (np.flatnonzero(paper > PAPER_V).tolist(), None), False),
        Workload(f"WILDS filter CP(bbox, {hot}) / area < {WILDS_SHARE}",
                 f"SELECT mask_id FROM masks WHERE CP(mask, bbox, {hot}) / area(bbox) "
                 f"< {WILDS_SHARE}",
                 lambda: base_ratio_filter(d, HOT, "<", WILDS_SHARE),
                 (np.flatnonzero(ratio < WILDS_SHARE).tolist(), None), False),
    ]
    for desc in (True, False):
        word = "DESC" if desc else "ASC"
        out.append(Workload(
            f"object-box top-{K} CP(bbox, {hot}) / area {word}",
            f"SELECT mask_id, CP(mask, bbox, {hot}) / area(bbox) AS r FROM masks "
            f"ORDER BY r {word} LIMIT {K}",
            lambda desc=desc: base_ratio_top(d, HOT, desc), _top(ratio, desc), True))
    out.append(Workload(
        f"(lv, uv] filter CP({box_sql}, {band}) > {v_band}",
        f"SELECT mask_id FROM masks WHERE CP(mask, {box_sql}, {band}) > {v_band}",
        lambda: base_box_filter(d, PAPER_BOX, BAND, v_band),
        (np.flatnonzero(banded > v_band).tolist(), None), False))
    for desc in (True, False):
        word = "DESC" if desc else "ASC"
        keys, _ = _top(banded.astype(np.float64), desc)
        out.append(Workload(
            f"(lv, uv] top-{K} CP({box_sql}, {band}) {word}",
            f"SELECT mask_id, CP(mask, {box_sql}, {band}) AS c FROM masks "
            f"ORDER BY c {word} LIMIT {K}",
            lambda desc=desc: base_box_top(d, PAPER_BOX, BAND, desc),
            (keys, [int(banded[i]) for i in keys]), True))
    out.append(Workload(
        f"mean across models top-{K} AVG(CP(bbox, {hot}) / area) DESC",
        f"SELECT image_id, AVG(CP(mask, bbox, {hot}) / area(bbox)) AS a FROM masks "
        f"GROUP BY image_id ORDER BY a DESC LIMIT {K}",
        lambda: base_mean_top(d, HOT), _top(mean, True), True))
    for desc in (True, False):
        word = "DESC" if desc else "ASC"
        out.append(Workload(
            f"IoU top-{K} {IOU.sql} {word}",
            f"SELECT image_id, {iou_sql} AS iou FROM masks GROUP BY image_id "
            f"ORDER BY iou {word} LIMIT {K}",
            lambda desc=desc: base_iou_top(d, IOU, desc), _top(iou, desc), True))
    for op, t in ((">", iou_hi), ("<", iou_lo)):
        out.append(Workload(
            f"IoU filter {IOU.sql} {op} {t:.4g}",
            f"SELECT image_id FROM masks GROUP BY image_id HAVING {iou_sql} {op} {t!r}",
            lambda op=op, t=t: base_iou_filter(d, IOU, op, t),
            (np.flatnonzero((iou > t) if op == ">" else (iou < t)).tolist(), None), False))
    return out


# --- running ----------------------------------------------------------------------------------------
def _masksearch_answer(result: ms.Result, ordered: bool) -> tuple[list[int], list | None]:
    table = result.to_arrow()
    keys = table.column(0).to_pylist()
    if not ordered:
        return sorted(keys), None
    return keys, table.column(1).to_pylist()


def _check(w: Workload, side: str, got: tuple[list[int], list | None]) -> None:
    keys, values = got
    want_keys, want_values = w.expected
    if keys != want_keys or (w.ordered and values != want_values):
        fail(f"{w.name}: {side} gives {keys[:8]}... {(values or [])[:4]} ({len(keys)} rows), "
             f"the brute force {want_keys[:8]}... {(want_values or [])[:4]} "
             f"({len(want_keys)} rows)\n   {w.sql}")


def run(d: Data, w: Workload, repeat: int, loop: float = 0.0,
        settings: ExecSettings | None = None) -> dict:
    t0 = time.perf_counter()
    first = w.baseline()                                    # the baseline's first run
    base_first = time.perf_counter() - t0
    _check(w, "the baseline", (first[0], first[1]))
    with ms.connect(d.path, create=False) as fresh:         # masksearch's first run
        t0 = time.perf_counter()
        result = fresh.query(w.sql, settings=settings)
        ms_cold = time.perf_counter() - t0
    _check(w, "masksearch (new connection)", _masksearch_answer(result, w.ordered))
    with ms.connect(d.path, create=False) as fresh:         # the brute force's, to compare
        t0 = time.perf_counter()
        brute = fresh.query(w.sql, use_index=False)
        brute_cold = time.perf_counter() - t0
    _check(w, "masksearch's brute force", _masksearch_answer(brute, w.ordered))
    for _ in range(PLANES_ASKED):     # warm-up of the shared connection, to the index's
        d.db.query(w.sql, settings=settings)    # steady state (planes made on the third pass)
    t_base, t_ms = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = w.baseline()
        t_base.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = d.db.query(w.sql, settings=settings)
        t_ms.append(time.perf_counter() - t0)
        _check(w, "the baseline", (got[0], got[1]))
        _check(w, "masksearch", _masksearch_answer(result, w.ordered))
    end = time.perf_counter() + loop                        # for a profiler: masksearch only
    while time.perf_counter() < end:
        d.db.query(w.sql, settings=settings)
    base_ms, ms_ms = statistics.median(t_base) * 1e3, statistics.median(t_ms) * 1e3
    row = {"workload": w.name, "sql": w.sql, "rows": len(w.expected[0]),
           "baseline_ms": base_ms, "masksearch_ms": ms_ms, "speedup": base_ms / ms_ms,
           "baseline_first_ms": base_first * 1e3, "masksearch_cold_ms": ms_cold * 1e3,
           "brute_force_cold_ms": brute_cold * 1e3,
           "baseline_verified": got[2], "masksearch_verified": result.stats.verified,
           "baseline_all_ms": [round(t * 1e3, 3) for t in t_base],
           "masksearch_all_ms": [round(t * 1e3, 3) for t in t_ms]}
    log(f"  {w.name:58s} {row['rows']:5d} rows | baseline {base_ms:7.2f} ms "
        f"(verified {got[2]:4d}) | masksearch {ms_ms:7.2f} ms (verified "
        f"{result.stats.verified:4d}, cold {ms_cold * 1e3:7.1f}, brute force cold "
        f"{brute_cold * 1e3:7.1f}) | {row['speedup']:5.2f}x")
    return row


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def markdown(rows: list[dict], repeat: int, prep: dict | None = None) -> str:
    lines = ["| workload | rows | baseline ms | masksearch ms | speedup | masksearch cold ms "
             "| brute force cold ms | verified (baseline / masksearch) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['rows']} | {r['baseline_ms']:.2f} | "
                     f"{r['masksearch_ms']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['masksearch_cold_ms']:.1f} | {r['brute_force_cold_ms']:.1f} | "
                     f"{r['baseline_verified']} / "
                     f"{r['masksearch_verified']} |")
    g = geomean([r["speedup"] for r in rows])
    lines.append(f"| **geometric mean** | | | | **{g:.2f}x** | | | |")
    lines.append(f"\nWarm medians of {repeat} runs (baseline and masksearch alternating, after "
                 f"1 and {PLANES_ASKED} untimed runs); "
                 "speedup = baseline ms / masksearch ms; cold = masksearch's first run on a "
                 "new connection (brute force: with use_index=False).")
    if prep is not None:
        made = prep.get("masksearch_prepare_aggregates")
        lines.append(
            "One-off preparation, untimed on both sides: the baseline's CHIs and "
            f"intersect/union masks {prep['baseline_index']:.2f} s; masksearch's "
            + (f"prepare_aggregates (intersect and union CHIs of every image) {made:.2f} s."
               if made is not None else "prepare_aggregates not run (--no-prepare)."))
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[dict]:
    slower = [r["workload"] for r in rows if r["speedup"] <= 1]
    g = geomean([r["speedup"] for r in rows])
    return [{"target": "every workload faster with masksearch",
             "measured": f"{len(rows) - len(slower)} of {len(rows)} faster"
             + (f"; slower: {', '.join(slower)}" if slower else ""), "met": not slower},
            {"target": "geometric mean >= 3x", "measured": f"{g:.2f}x", "met": g >= 3}]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000, help="images (2 maps each; 1000)")
    ap.add_argument("--generator", choices=sorted(GENERATORS), default="gradcam")
    ap.add_argument("--repeat", type=int, default=15, help="timed runs per workload (15)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--only", default=None,
                    help="run only the workloads whose name holds this text")
    ap.add_argument("--loop", type=float, default=0.0,
                    help="run each masksearch query this many seconds more (for a profiler)")
    ap.add_argument("--no-prepare", action="store_true",
                    help="skip masksearch's prepare_aggregates (the automatic path only)")
    ap.add_argument("--no-exact-groups", action="store_true",
                    help="masksearch without the exact path of grouped queries (the general "
                         "path only, to compare)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip `masksearch warmup` (smoke tests: compilation is then timed)")
    args = ap.parse_args(argv)
    if args.images < 30 or args.repeat < 1:
        ap.error("--images must be at least 30 and --repeat positive")
    started = time.perf_counter()
    mach = machine()
    log(f"masksearch against the prototype-style baseline: {args.images:,} images x {MODELS} "
        f"models, {args.generator} maps, repeat {args.repeat}; {mach['platform']}, "
        f"{mach['cpu_count']} CPUs")
    if not args.no_warmup:
        from masksearch.warmup import warmup

        log(f"masksearch warmup: {warmup(('float32',)):.1f} s (kernels compiled or loaded, "
            "before anything is timed)")
    d = prepare(args.images, args.generator, args.seed, args.workdir, not args.no_prepare)
    try:
        how = ExecSettings(exact_groups=False) if args.no_exact_groups else None
        rows = [run(d, w, args.repeat, args.loop, how) for w in workloads(d)
                if args.only is None or args.only in w.name]
    finally:
        d.db.close()
        if not args.keep:
            shutil.rmtree(d.path, ignore_errors=True)
    goals = targets(rows)
    table = markdown(rows, args.repeat, d.prepare_s)
    log("\n" + table + "\n")
    for g in goals:
        log(f"  {'met   ' if g['met'] else 'MISSED'}  {g['target']}: {g['measured']}")
    if args.only or args.loop:
        return 0                                            # a partial run: nothing written
    stem = args.results / (f"prototype-{args.generator}-{args.images}"
                           + ("-no-prepare" if args.no_prepare else "")
                           + ("-general" if args.no_exact_groups else ""))
    args.results.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.md").write_text(table + "\n")
    write_json(Path(f"{stem}.json"), {
        "benchmark": "bench_prototype", "images": args.images, "models": MODELS,
        "generator": args.generator, "seed": args.seed, "repeat": args.repeat,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": mach, "engine": engine_version(),
        "baseline": {"cell": pb.CELL, "bins": pb.BINS,
                     "chi_bytes": d.chi.nbytes + d.chi_inter.nbytes + d.chi_union.nbytes},
        "prepare_seconds": d.prepare_s, "rows": rows, "targets": goals,
        "geomean_speedup": geomean([r["speedup"] for r in rows]),
        "seconds": time.perf_counter() - started})
    log(f"\nwrote {stem}.md and .json in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
