#!/usr/bin/env python
"""Aggregation benchmark: per-image queries over two models' saliency maps (IoU top-k with
intersect/union, AVG across models with HAVING) timed with the index, without it and against
NumPy; then a 20-query exploration session on a lazily indexed database, a second pass over
it, and the same session on an eagerly indexed database (twice) and without the index.

    .venv/bin/python benchmarks/bench_aggregation.py            # 10,000 images, 20,000 maps
    .venv/bin/python benchmarks/bench_aggregation.py --quick    # 1,000 images (smoke run)

See benchmarks/README.md for what it prints. Exits with status 2 if any result differs between
the index, the brute-force path, NumPy, or the lazy and eager databases, and with status 3 if
the engine raises.
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
    shown,
    timed,
    write_json,
)
from masksearch.synth import saliency_maps  # noqa: E402

SIZE = 224
MODELS = 2
CHUNK_IMAGES = 1000           # images generated and ingested per db.ingest call (2,000 maps)
SCAN_CHUNK = 256              # images per step of the NumPy IoU baseline
OTHER_SEED = 1_000_003        # seed offset of the maps blended into model 1's maps
MAX_SHIFT = 40                # pixels: model 1's map is model 0's shifted by up to this much
IOU_RANGE = (0.5, 1.0)        # (lo, hi]
BBOX_RANGE = (0.6, 1.0)       # (lo, hi]
HAVING_SHARE = 0.01           # share of images the AVG filter should return
TOPK = 10
WARM_IMAGES = 40              # images in the scratch databases that warm the kernels up


def engine_error(what: str, sql: str, exc: BaseException) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!!! ENGINE ERROR in {what}: {type(exc).__name__}: {exc}\n   {sql}\n{bar}",
          file=sys.stderr, flush=True)
    raise SystemExit(3) from exc


def run_sql(db: ms.Database, sql: str, what: str, **kw) -> ms.Result:
    try:
        return db.query(sql, **kw)
    except Exception as e:
        engine_error(what, sql, e)


# --- data and databases -----------------------------------------------------------------------
@dataclass
class Data:
    db: ms.Database             # eagerly indexed
    maps: np.ndarray            # (n, 2, 224, 224) float32, memory-mapped: [image, model]
    boxes: np.ndarray           # (n, 4) int64 x0, y0, x1, y1, one per image
    base_id: int                # mask_id of image 0, model 0 (image i, model j: base + 2i + j)
    paths: dict
    build: dict = field(default_factory=dict)


def _paths(workdir: Path, n: int) -> dict[str, Path]:
    return {"db": workdir / f"agg-{n}.msdb", "lazy": workdir / f"agg-{n}-lazy.msdb",
            "warm": workdir / "agg-warmup-eager.msdb",
            "warm_lazy": workdir / "agg-warmup-lazy.msdb",
            "maps": workdir / f"aggmaps-{n}.npy", "boxes": workdir / f"aggboxes-{n}.npy",
            "marker": workdir / f"agg-{n}.build.json"}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _reusable(p: dict[str, Path], n: int, seed: int) -> dict | None:
    """The build record of an existing, complete database of this size and seed, if any."""
    try:
        record = json.loads(p["marker"].read_text())
        if (record.get("n"), record.get("seed"), record.get("chunk"),
                record.get("max_shift")) != (n, seed, CHUNK_IMAGES, MAX_SHIFT):
            return None
        maps = np.load(p["maps"], mmap_mode="r")
        boxes = np.load(p["boxes"])
        if maps.shape != (n, MODELS, SIZE, SIZE) or maps.dtype != np.float32 \
                or boxes.shape != (n, 4):
            return None
        if ms.connect(p["db"]).info()["masks"] != n * MODELS:
            return None
        return record
    except (OSError, ValueError, KeyError, ms.MaskSearchError):
        return None


def _shifted(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``m`` moved by (dy, dx) pixels, zeros shifted in."""
    out = np.zeros_like(m)
    h, w = m.shape
    ys = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[ys[1], xs[1]] = m[ys[0], xs[0]]
    return out


def two_models(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2, 224, 224) maps and (n, 4) boxes. Model 0: ``saliency_maps``. Model 1: model 0's
    map shifted by up to MAX_SHIFT pixels and blended with an unrelated map, both by a random
    per-image strength, renormalized to max 1.0: IoUs spread from 0 to about 1."""
    m0, boxes = saliency_maps(n, size=SIZE, seed=seed)
    other, _ = saliency_maps(n, size=SIZE, seed=seed + OTHER_SEED)
    rng = np.random.default_rng([seed, OTHER_SEED])
    strength = rng.uniform(0.03, 1.0, n)
    radius, angle = strength * MAX_SHIFT, rng.uniform(0, 2 * np.pi, n)
    dy = np.rint(radius * np.sin(angle)).astype(int)
    dx = np.rint(radius * np.cos(angle)).astype(int)
    blend = (strength * rng.uniform(0.2, 0.8, n)).astype(np.float32)
    out = np.empty((n, MODELS, SIZE, SIZE), np.float32)
    out[:, 0] = m0
    for i in range(n):
        b = (1 - blend[i]) * _shifted(m0[i], dy[i], dx[i]) + blend[i] * other[i]
        peak = b.max()
        out[i, 1] = b / peak if peak > 0 else b
    if not (out.min() >= 0 and out.max() <= 1.0):
        sys.exit("!!! data generation produced values outside [0, 1]")
    return out, boxes


def prepare(workdir: Path, n: int, seed: int, rebuild: bool) -> Data:
    workdir.mkdir(parents=True, exist_ok=True)
    p = _paths(workdir, n)
    record = None if rebuild else _reusable(p, n, seed)
    if record is not None:
        log(f"Reusing {p['db']} ({n:,} images x {MODELS} models, seed {seed}); pass --rebuild "
            "to rebuild it.")
        log(f"  eager ingest rate measured when it was built ({record['built_at']}): "
            f"{record['ingest']['masks_per_s']:,.0f} masks/s (not re-measured)")
        record["reused"] = True
    else:
        record = build(p, n, seed)
    return Data(ms.connect(p["db"]), np.load(p["maps"], mmap_mode="r"), np.load(p["boxes"]),
                record["base_id"], p, record)


def _ids(start: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.arange(start, start + m)
    return np.repeat(images, MODELS), np.tile(np.arange(MODELS), m)


def build(p: dict[str, Path], n: int, seed: int) -> dict:
    for key in ("db", "lazy", "maps", "boxes", "marker"):
        _remove(p[key])
    log(f"Building {p['db']}: {n:,} images x {MODELS} models = {n * MODELS:,} Grad-CAM-like "
        f"{SIZE}x{SIZE} float32 maps (seed {seed}), {CHUNK_IMAGES * MODELS:,} per ingest call")
    maps = np.lib.format.open_memmap(p["maps"], mode="w+", dtype=np.float32,
                                     shape=(n, MODELS, SIZE, SIZE))
    boxes = np.empty((n, 4), np.int64)
    db = ms.connect(p["db"])
    t_gen = t_save = t_ingest = 0.0
    ids: list[int] = []
    for k, start in enumerate(range(0, n, CHUNK_IMAGES)):
        m = min(CHUNK_IMAGES, n - start)
        t0 = time.perf_counter()
        chunk, chunk_boxes = two_models(m, seed + k)
        t1 = time.perf_counter()
        maps[start:start + m] = chunk
        boxes[start:start + m] = chunk_boxes
        t2 = time.perf_counter()
        image_id, model_id = _ids(start, m)
        ids += db.ingest(chunk.reshape(m * MODELS, SIZE, SIZE), image_id=image_id,
                         model_id=model_id, mask_type="saliency",
                         metadata={"bbox": np.repeat(chunk_boxes, MODELS, axis=0)})
        t3 = time.perf_counter()
        t_gen, t_save, t_ingest = t_gen + t1 - t0, t_save + t2 - t1, t_ingest + t3 - t2
        log(f"  {start + m:>7,} / {n:,} images: generate {t1 - t0:5.1f} s, ingest "
            f"{t3 - t2:5.1f} s ({m * MODELS / (t3 - t2):,.0f} masks/s)")
        del chunk
    maps.flush()
    del maps
    np.save(p["boxes"], boxes)
    total = n * MODELS
    if ids != list(range(ids[0], ids[0] + total)):
        sys.exit("!!! ENGINE BUG: ingest did not assign consecutive mask ids !!!")
    record = {"n": n, "seed": seed, "chunk": CHUNK_IMAGES, "max_shift": MAX_SHIFT,
              "base_id": ids[0], "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
              "engine": engine_version(),
              "ingest": {"seconds": t_ingest, "masks_per_s": total / t_ingest,
                         "generate_seconds": t_gen, "npy_write_seconds": t_save}}
    p["marker"].write_text(json.dumps(record, indent=1))
    log(f"  generation {t_gen:.1f} s, writing the .npy copy {t_save:.1f} s, "
        f"ingest {t_ingest:.1f} s")
    log(f"Eager ingest rate: {total / t_ingest:,.0f} masks/s (compression, CHI build, fsync; "
        "excluding data generation)")
    return record


def fresh_copy(d: Data, path: Path, mode: str, n: int | None = None) -> tuple[ms.Database, dict]:
    """A new database at ``path`` with ``index=mode`` holding the masks of the first ``n``
    images (default: all); with "lazy" no CHI is built."""
    _remove(path)
    n = len(d.maps) if n is None else n
    db = ms.connect(path, index=mode)
    t_ingest = 0.0
    for start in range(0, n, CHUNK_IMAGES):
        m = min(CHUNK_IMAGES, n - start)
        chunk = np.asarray(d.maps[start:start + m]).reshape(m * MODELS, SIZE, SIZE)
        image_id, model_id = _ids(start, m)
        t0 = time.perf_counter()
        db.ingest(chunk, image_id=image_id, model_id=model_id, mask_type="saliency",
                  metadata={"bbox": np.repeat(d.boxes[start:start + m], MODELS, axis=0)})
        t_ingest += time.perf_counter() - t0
    info = db.info()
    want = 0 if mode == "lazy" else n * MODELS
    if info["masks"] != n * MODELS or info["indexed_masks"] != want:
        sys.exit(f"!!! ENGINE BUG: the {mode} database has {info['masks']} masks and "
                 f"{info['indexed_masks']} CHIs after ingest; expected {n * MODELS} and {want}")
    return db, {"seconds": t_ingest, "masks_per_s": n * MODELS / t_ingest}


def aggregate_cache_dir(db: ms.Database) -> Path | None:
    """Where the engine caches CHIs of aggregated masks (intersect/union/mean), if it does."""
    try:
        from masksearch.store import agg_cache
    except ImportError:
        return None
    return Path(db.path) / getattr(agg_cache, "DIRECTORY", "aggcache")


def aggregate_cache_size(db: ms.Database) -> tuple[int, int]:
    """(files, bytes) of the aggregated-mask CHI cache."""
    where = aggregate_cache_dir(db)
    files = [f for f in where.iterdir() if f.is_file()] if where and where.is_dir() else []
    return len(files), sum(f.stat().st_size for f in files)


# Decided by every mask's CHI bounds alone (a count is never negative): reads no pixels but
# opens every segment and its index.
PRIME_SQL = "SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) < 0"


def cold_aggregate_cache(db: ms.Database) -> ms.Database:
    """``db`` reopened without its cached CHIs of aggregated masks (a cache: deleting it is
    safe), so the next grouped query starts cold as on a fresh database; primed, so that the
    next query does not pay for opening the segments either."""
    where = aggregate_cache_dir(db)
    if where is not None and where.exists():
        shutil.rmtree(where)
    db = ms.connect(db.path)
    run_sql(db, PRIME_SQL, "priming a reopened database")
    return db


# --- NumPy baselines, written as a user would ----------------------------------------------------
def np_iou(maps: np.ndarray, rng=IOU_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """Per image: pixels of min(model 0, model 1) and of max(...) in (lo, hi] over the full map.
    The maps lie in [0, 1], so ``> lo`` is the whole range test."""
    lo, _ = rng
    n = len(maps)
    inter = np.empty(n, np.int64)
    union = np.empty(n, np.int64)
    for s in range(0, n, SCAN_CHUNK):
        c = maps[s:s + SCAN_CHUNK]
        inter[s:s + SCAN_CHUNK] = (np.minimum(c[:, 0], c[:, 1]) > lo).sum((1, 2))
        union[s:s + SCAN_CHUNK] = (np.maximum(c[:, 0], c[:, 1]) > lo).sum((1, 2))
    return inter, union


def np_iou_topk(maps: np.ndarray, descending: bool, k: int = TOPK) -> list[tuple]:
    inter, union = np_iou(maps)
    ids = np.arange(len(maps))
    valid = union > 0                                  # IoU is NULL when the union is empty
    iou = inter[valid] / union[valid]
    order = np.lexsort((ids[valid], -iou if descending else iou))[:k]
    rows = [(int(i), float(v)) for i, v in zip(ids[valid][order], iou[order], strict=True)]
    rows += [(int(i), None) for i in ids[~valid]][:k - len(rows)]     # NULLs last
    return rows


def np_attn(maps: np.ndarray, boxes: np.ndarray, rng=BBOX_RANGE) -> np.ndarray:
    """Per image: the mean over models of CP(mask, bbox, (lo, hi]) / area(bbox)."""
    lo, hi = rng
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    share = np.empty((len(maps), MODELS))
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        c = maps[i, :, y0:y1, x0:x1]
        share[i] = ((c > lo) & (c <= hi)).sum((1, 2)) / area[i]
    return (share[:, 0] + share[:, 1]) / MODELS        # one addition: correctly rounded


def np_having(maps: np.ndarray, boxes: np.ndarray, threshold: float) -> list[tuple]:
    attn = np_attn(maps, boxes)
    return [(int(i), float(attn[i])) for i in np.flatnonzero(attn > threshold)]


def choose_threshold(values: np.ndarray, share: float) -> float:
    """A short decimal T with about ``share`` of ``values`` strictly above it and no value
    within rounding distance of it."""
    v = np.sort(values)[::-1]
    k = max(1, round(share * len(v)))
    while k < len(v) - 1 and not v[k] < v[k - 1]:
        k += 1
    for digits in range(2, 18):
        t = round((v[k] + v[k - 1]) / 2, digits)
        if v[k] < t < v[k - 1]:
            return t
    return float((v[k] + v[k - 1]) / 2)


# --- part 1: timed queries ----------------------------------------------------------------------
@dataclass
class Query:
    name: str
    sql: str
    numpy: Callable[[], list[tuple]]   # (image_id, value) rows in output order
    ordered: bool


def iou_sql(descending: bool, roi: str = "full", rng=IOU_RANGE, where: str = "model_id IN (0, 1)",
            k: int | None = TOPK, having: str | None = None) -> str:
    r = f"({rng[0]}, {rng[1]}]"
    sql = (f"SELECT image_id, CP(intersect(mask), {roi}, {r}) / CP(union(mask), {roi}, {r}) "
           f"AS iou FROM masks WHERE {where} GROUP BY image_id")
    if having:
        return f"{sql} HAVING {having}"
    return f"{sql} ORDER BY iou {'DESC' if descending else 'ASC'} LIMIT {k}"


def attn_sql(tail: str, rng=BBOX_RANGE, func: str = "AVG", alias: str = "attn") -> str:
    return (f"SELECT image_id, {func}(CP(mask, bbox, ({rng[0]}, {rng[1]}]) / area(bbox)) AS "
            f"{alias} FROM masks GROUP BY image_id {tail}")


def make_queries(d: Data, threshold: float) -> list[Query]:
    return [
        Query(f"IoU top-{TOPK} DESC", iou_sql(True), lambda: np_iou_topk(d.maps, True), True),
        Query(f"IoU top-{TOPK} ASC", iou_sql(False), lambda: np_iou_topk(d.maps, False), True),
        Query("AVG attn HAVING > T", attn_sql(f"HAVING attn > {threshold}"),
              lambda: np_having(d.maps, d.boxes, threshold), False),
    ]


def check(q: Query, fast: ms.Result, slow: ms.Result, want: list[tuple]) -> None:
    if not fast.to_arrow().equals(slow.to_arrow()):
        fail(f"{q.name}: the result with the index differs from use_index=False\n"
             f"   {q.sql}\n   index ({len(fast)} rows): {fast.rows()[:10]}...\n"
             f"   no index ({len(slow)} rows): {slow.rows()[:10]}...")
    got = fast.rows()
    if not q.ordered:
        got = sorted(got)
    if got != want:
        only_db = sorted(set(got) - set(want))[:10]
        only_np = sorted(set(want) - set(got))[:10]
        fail(f"{q.name}: the engine's rows differ from NumPy's\n   {q.sql}\n"
             f"   engine {len(got)} rows, numpy {len(want)} rows; only engine: {only_db}; "
             f"only numpy: {only_np}\n   engine: {got[:TOPK]}\n   numpy:  {want[:TOPK]}")


def run_query(d: Data, q: Query, repeat: int) -> dict:
    log(f"\n== {q.name}\n   {q.sql}")
    # First run with the aggregated-mask CHI cache cold (kernels were warmed up on a scratch
    # database); it also opens the segments. Then one untimed run of the other two.
    d.db = cold_aggregate_cache(d.db)
    first, t_first = timed(lambda: run_sql(d.db, q.sql, q.name))
    slow = run_sql(d.db, q.sql, q.name, use_index=False)
    want = q.numpy()         # pages the .npy into memory
    check(q, first, slow, want)
    t_idx, t_scan, t_np = [], [], []
    for _ in range(repeat):
        fast, t = timed(lambda: run_sql(d.db, q.sql, q.name))
        t_idx.append(t)
        slow, t = timed(lambda: run_sql(d.db, q.sql, q.name, use_index=False))
        t_scan.append(t)
        got_np, t = timed(q.numpy)
        t_np.append(t)
        if got_np != want:
            fail(f"{q.name}: the NumPy baseline is not deterministic")
        # Check every repetition: the engine may be under concurrent development.
        check(q, fast, slow, want)
    s = fast.stats
    f = first.stats
    row = {"query": q.name, "sql": q.sql, "rows": len(fast),
           "first_index_ms": t_first * 1e3, "first_verified": f.verified,
           "first_bytes_read": f.bytes_read, "first_chis_built": f.chis_built,
           "index_ms": ms_stats(t_idx), "no_index_ms": ms_stats(t_scan),
           "numpy_ms": ms_stats(t_np),
           "speedup_vs_no_index": statistics.median(t_scan) / statistics.median(t_idx),
           "speedup_vs_numpy": statistics.median(t_np) / statistics.median(t_idx),
           "verified": s.verified, "bytes_read": s.bytes_read,
           "rejected_by_metadata": s.rejected_by_metadata,
           "no_index_verified": slow.stats.verified, "no_index_bytes_read": slow.stats.bytes_read,
           "first_rows": [list(r) for r in fast.rows()[:TOPK]]}
    log(f"   {len(fast)} rows | index {fmt_ms(t_idx)} | no index {fmt_ms(t_scan)} | "
        f"numpy {fmt_ms(t_np)} | {row['speedup_vs_no_index']:.1f}x vs no index, "
        f"{row['speedup_vs_numpy']:.1f}x vs numpy")
    log(f"   index, first run (cold cache): {t_first * 1e3:,.1f} ms, {f.verified:,} of "
        f"{f.masks_total:,} masks verified ({f.bytes_read / 1e6:.1f} MB read), "
        f"{f.chis_built:,} CHIs built")
    log(f"   index, later runs: {s.verified:,} verified ({s.bytes_read / 1e6:.1f} MB read); "
        f"no index: {slow.stats.verified:,} verified ({slow.stats.bytes_read / 1e6:.1f} MB read)")
    if q.ordered:
        log("   " + ", ".join(f"{i}: {v:.4f}" if v is not None else f"{i}: NULL"
                              for i, v in fast.rows()))
    return row


def part1_table(rows: list[dict], masks: int) -> str:
    head = ["query", "rows", "index ms", "no-index ms", "numpy ms", "vs no-index", "vs numpy",
            "verified: index / no index", "index 1st run ms (cold cache)", "verified 1st run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([
            f"`{r['query']}`", str(r["rows"]),
            f"{r['index_ms']['median']:,.1f} (min {r['index_ms']['min']:,.1f})",
            f"{r['no_index_ms']['median']:,.1f} (min {r['no_index_ms']['min']:,.1f})",
            f"{r['numpy_ms']['median']:,.1f} (min {r['numpy_ms']['min']:,.1f})",
            f"{r['speedup_vs_no_index']:.1f}x", f"{r['speedup_vs_numpy']:.1f}x",
            f"{r['verified']:,} / {r['no_index_verified']:,} of {masks:,}",
            f"{r['first_index_ms']:,.1f}", f"{r['first_verified']:,}"]) + " |")
    return "\n".join(lines)


# --- part 2: an exploration session -------------------------------------------------------------
def session_queries(threshold: float) -> list[tuple[str, str]]:
    """20 (what changed, sql) steps; each changes one threshold, box, model or query shape."""
    box_c = "box(37, 41, 181, 179)"
    box_tl, box_br, box_mid = "box(0, 0, 112, 112)", "box(112, 112, 224, 224)", \
        "box(56, 56, 168, 168)"

    def rows(model: int, share: float, rng=BBOX_RANGE) -> str:
        return (f"SELECT mask_id FROM masks WHERE model_id = {model} AND "
                f"CP(mask, bbox, ({rng[0]}, {rng[1]}]) / area(bbox) < {share}")

    def top(model: int, box: str) -> str:
        return (f"SELECT mask_id, CP(mask, {box}, (0.8, 1.0]) AS c FROM masks "
                f"WHERE model_id = {model} ORDER BY c DESC LIMIT 25")

    def hot(box: str, t: int) -> str:
        return f"SELECT mask_id FROM masks WHERE CP(mask, {box}, (0.8, 1.0]) > {t}"

    return [
        ("start: model 0, CP(bbox)/area < 0.05", rows(0, 0.05)),
        ("model 0 -> 1", rows(1, 0.05)),
        ("threshold 0.05 -> 0.1", rows(1, 0.1)),
        ("range (0.6 -> (0.8", rows(1, 0.1, (0.8, 1.0))),
        ("top-25 CP(box) model 1", top(1, box_c)),
        ("model 1 -> 0", top(0, box_c)),
        ("box -> top-left quadrant", top(0, box_tl)),
        ("box -> bottom-right quadrant", top(0, box_br)),
        ("filter CP(box) > 3000, both models", hot(box_br, 3000)),
        ("threshold 3000 -> 5000", hot(box_br, 5000)),
        (f"AVG over models HAVING attn > {threshold}", attn_sql(f"HAVING attn > {threshold}")),
        (f"threshold {threshold} -> 0.5", attn_sql("HAVING attn > 0.5")),
        ("range (0.6 -> (0.8", attn_sql("HAVING attn > 0.5", (0.8, 1.0))),
        ("HAVING -> ORDER BY attn DESC LIMIT 10",
         attn_sql("ORDER BY attn DESC LIMIT 10", (0.8, 1.0))),
        ("AVG -> MIN (both models ignore the box)",
         attn_sql("HAVING lo > 0.35", func="MIN", alias="lo")),
        (f"IoU top-{TOPK} DESC", iou_sql(True)),
        ("DESC -> ASC", iou_sql(False)),
        ("IoU range (0.5 -> (0.7", iou_sql(False, rng=(0.7, 1.0))),
        ("top-k -> HAVING iou < 0.05", iou_sql(False, rng=(0.7, 1.0), having="iou < 0.05")),
        (f"full -> {box_mid}", iou_sql(False, roi=box_mid, rng=(0.7, 1.0),
                                       having="iou < 0.05")),
    ]


# key, what, which database, use_index, cold aggregate cache before the pass
PASSES = [("lazy-1", "lazy database, first pass", "lazy", True),
          ("lazy-2", "lazy database, second pass", "lazy", True),
          ("eager-1", "eager database, aggregated-mask CHI cache emptied first", "eager", True),
          ("eager-2", "eager database, second pass", "eager", True),
          ("no-index", "eager database, use_index=False", "eager", False)]


def run_session(db: ms.Database, steps: list[tuple[str, str]], label: str, use_index: bool,
                verbose: bool = True) -> list[dict]:
    out = []
    if verbose:
        log(f"\n-- {label}")
        log(f"   {'#':>2} {'rows':>6} {'ms':>9} {'MB read':>9} {'verified':>9} {'CHIs built':>10}"
            f"  change")
    for i, (change, sql) in enumerate(steps, 1):
        what = f"session step {i} ({label})"
        r, t = timed(lambda sql=sql, what=what: run_sql(db, sql, what, use_index=use_index))
        s = r.stats
        row = {"step": i, "change": change, "rows": len(r), "ms": t * 1e3,
               "bytes_read": s.bytes_read, "verified": s.verified, "chis_built": s.chis_built,
               "result": r.rows()}
        out.append(row)
        if verbose:
            log(f"   {i:>2} {len(r):>6,} {t * 1e3:>9,.1f} {s.bytes_read / 1e6:>9,.1f} "
                f"{s.verified:>9,} {s.chis_built:>10,}  {change}")
    return out


def warm_up(d: Data, queries: list[Query], steps: list[tuple[str, str]]) -> None:
    """Run every statement on small scratch databases (eager and lazy): compiles or loads
    every kernel, so that no timed run pays for it and the real databases' caches stay cold."""
    n = min(WARM_IMAGES, len(d.maps))
    for key, mode in (("warm", "eager"), ("warm_lazy", "lazy")):
        db, _ = fresh_copy(d, d.paths[key], mode, n)
        for sql in [q.sql for q in queries] + [sql for _, sql in steps]:
            for use_index in (True, False, True):
                run_sql(db, sql, f"warm-up on {d.paths[key].name}", use_index=use_index)


def totals(rows: list[dict]) -> dict:
    return {"ms": sum(r["ms"] for r in rows), "bytes_read": sum(r["bytes_read"] for r in rows),
            "verified": sum(r["verified"] for r in rows),
            "chis_built": sum(r["chis_built"] for r in rows)}


def check_session(steps, passes: dict[str, list[dict]]) -> None:
    ref = passes["no-index"]
    for name, rows in passes.items():
        for i, (a, b) in enumerate(zip(rows, ref, strict=True)):
            if a["result"] != b["result"]:
                only_a = sorted(set(a["result"]) - set(b["result"]))[:10]
                only_b = sorted(set(b["result"]) - set(a["result"]))[:10]
                fail(f"session step {i + 1}: {name} differs from use_index=False\n"
                     f"   {steps[i][1]}\n   {name}: {len(a['result'])} rows, no index: "
                     f"{len(b['result'])} rows; only {name}: {only_a}; only no-index: {only_b}"
                     f"\n   {name}: {a['result'][:10]}\n   no-index: {b['result'][:10]}")


def session_table(passes: dict[str, list[dict]]) -> str:
    head = ["#", "change", "rows", "lazy-1 ms", "lazy-1 MB read", "lazy-1 verified",
            "lazy-1 CHIs built", "lazy-2 ms", "lazy-2 verified", "eager-1 ms",
            "eager-1 verified", "eager-2 ms", "eager-2 verified", "no-index ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    l1, l2, e1, e2, ni = (passes[p[0]] for p in PASSES)
    for a, b, c, e, f in zip(l1, l2, e1, e2, ni, strict=True):
        lines.append("| " + " | ".join([
            str(a["step"]), a["change"], f"{a['rows']:,}", f"{a['ms']:,.1f}",
            f"{a['bytes_read'] / 1e6:,.1f}", f"{a['verified']:,}", f"{a['chis_built']:,}",
            f"{b['ms']:,.1f}", f"{b['verified']:,}", f"{c['ms']:,.1f}", f"{c['verified']:,}",
            f"{e['ms']:,.1f}", f"{e['verified']:,}", f"{f['ms']:,.1f}"]) + " |")
    return "\n".join(lines)


def totals_table(tot: dict[str, dict]) -> str:
    head = ["pass", "total ms", "MB read", "masks verified", "CHIs built"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for key, label, _, _ in PASSES:
        t = tot[key]
        lines.append(f"| {key} ({label}) | {t['ms']:,.0f} | {t['bytes_read'] / 1e6:,.1f} | "
                     f"{t['verified']:,} | {t['chis_built']:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000,
                    help="number of images, two maps each (default 10000)")
    ap.add_argument("--quick", action="store_true", help="smoke run with 1,000 images")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per query (default 5)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data",
                    help="where the databases and the .npy copy live (default benchmarks/data/)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild even if a database exists")
    ap.add_argument("--seed", type=int, default=0, help="data seed (chunk k uses seed + k)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                    help="folder for aggregation-<n>.json (default benchmarks/results/)")
    args = ap.parse_args(argv)
    n = 1000 if args.quick else args.images
    if n < 2 * TOPK or args.repeat < 1:
        ap.error(f"--images must be at least {2 * TOPK} and --repeat positive")

    t_start = time.perf_counter()
    mach = machine()
    load_start = os.getloadavg()
    log(f"masksearch aggregation benchmark: {n:,} images x {MODELS} models, "
        f"repeat={args.repeat}; {mach['platform']}, {mach['cpu_count']} CPUs, Python "
        f"{mach['python']}, numpy {mach['numpy']}, numba {mach['numba']}, "
        f"pyarrow {mach['pyarrow']}; load average {load_start[0]:.2f}")
    d = prepare(args.workdir, n, args.seed, args.rebuild)
    info = d.db.info()
    masks = n * MODELS
    raw = masks * SIZE * SIZE * 4
    idx, pix = info["index_bytes"], info["pixel_bytes"]
    log(f"\nSizes: {masks:,} masks; raw float32 pixels {raw / 1e6:,.1f} MB; stored "
        f"{pix / 1e6:,.1f} MB ({info['codec']}); index {idx / 1e6:,.1f} MB = "
        f"{idx / pix * 100:.2f}% of stored pixels; {info['segments']} segments")

    inter, union = np_iou(d.maps)
    iou = inter / np.maximum(union, 1)
    log("IoU of the two models per image over (0.5, 1.0]: percentiles 1/10/50/90/99 = "
        + "/".join(f"{v:.3f}" for v in np.percentile(iou, [1, 10, 50, 90, 99]))
        + f"; {int((inter == 0).sum())} images with IoU 0, {int((union == 0).sum())} NULL")
    attn = np_attn(d.maps, d.boxes)
    threshold = choose_threshold(attn, HAVING_SHARE)
    ones = int((attn == attn.max()).sum())
    log(f"AVG filter threshold: T = {threshold}; {int((attn > threshold).sum()):,} images "
        f"qualify ({(attn > threshold).mean() * 100:.2f}%)"
        + (f"; {ones:,} images tie at the largest attn, {attn.max()}, so no T returns fewer "
           "but 0" if ones > HAVING_SHARE * n else ""))

    queries = make_queries(d, threshold)
    steps = session_queries(threshold)
    log(f"Warming the kernels up on two scratch databases of {min(WARM_IMAGES, n)} images ...")
    warm_up(d, queries, steps)

    # --- part 1
    log(f"\n=== Part 1: grouped queries, median of {args.repeat} runs after a first run")
    rows = [run_query(d, q, args.repeat) for q in queries]
    log(f"\nPart 1 results ({n:,} images, {masks:,} masks, median of {args.repeat} runs, ms):\n")
    log(part1_table(rows, masks))

    # --- part 2
    log("\n=== Part 2: a 20-query exploration session")
    log("Creating a fresh database with index=\"lazy\" (same masks, no CHIs) ...")
    lazy, lazy_ingest = fresh_copy(d, d.paths["lazy"], "lazy")
    log(f"  lazy ingest: {lazy_ingest['seconds']:.1f} s = {lazy_ingest['masks_per_s']:,.0f} "
        f"masks/s (eager ingest: {d.build['ingest']['masks_per_s']:,.0f} masks/s)")
    for i, (change, sql) in enumerate(steps, 1):
        log(f"  {i:>2}. [{change}] {sql}")
    log("'CHIs built' counts the masks' own CHIs (lazy indexing) and cached CHIs of "
        "aggregated masks.")
    passes: dict[str, list[dict]] = {}
    lazy_info = None
    for key, label, which, use_index in PASSES:
        if which == "lazy":
            db = lazy
        else:
            if key == "eager-1":
                d.db = cold_aggregate_cache(d.db)
            db = d.db
        passes[key] = run_session(db, steps, f"{key}: {label}", use_index)
        if key == "lazy-1":
            lazy_info = lazy.info()
            deltas = len(list(Path(lazy.path).glob("segments/*/chi-delta-*")))
            files, nbytes = aggregate_cache_size(lazy)
            log(f"   after the first pass: {lazy_info['indexed_masks']:,} of {masks:,} masks "
                f"indexed, their CHIs {lazy_info['index_bytes'] / 1e6:,.1f} MB in {deltas:,} "
                f"delta files; aggregated-mask CHI cache {nbytes / 1e6:,.1f} MB in {files:,} "
                "files")
    check_session(steps, passes)
    tot = {k: totals(v) for k, v in passes.items()}
    log("\nSession totals:")
    for key, label, _, _ in PASSES:
        t = tot[key]
        log(f"   {key:>8}: {t['ms']:>9,.0f} ms, {t['bytes_read'] / 1e6:>9,.1f} MB read, "
            f"{t['verified']:>7,} masks verified, {t['chis_built']:>6,} CHIs built  ({label})")

    # --- summary
    ratios = {f"{a}_over_{b}_ms".replace("-", "_"): tot[a]["ms"] / tot[b]["ms"]
              for a, b in (("lazy-1", "eager-1"), ("lazy-2", "eager-2"),
                           ("no-index", "lazy-1"), ("no-index", "eager-1"))}
    log(f"\nResults ({n:,} images, {masks:,} masks):\n")
    log(part1_table(rows, masks))
    log("\nExploration session (one run per pass, ms):\n")
    log(session_table(passes))
    log("")
    log(totals_table(tot))
    log(f"\nIngest: eager {d.build['ingest']['masks_per_s']:,.0f} masks/s"
        f"{' (reused database)' if 'reused' in d.build else ''}, lazy "
        f"{lazy_ingest['masks_per_s']:,.0f} masks/s. Index {idx / pix * 100:.2f}% of stored "
        f"pixels; after the lazy session {lazy_info['indexed_masks']:,} masks indexed.")
    log("All results identical with the index, with use_index=False and with NumPy; "
        "the session's results identical on the lazy and eager databases and without the index.")
    load_end = os.getloadavg()
    log(f"Load average (1/5/15 min) at the start {'/'.join(f'{x:.2f}' for x in load_start)}, "
        f"at the end {'/'.join(f'{x:.2f}' for x in load_end)} ({mach['cpu_count']} CPUs).")

    summary = {"benchmark": "bench_aggregation", "images": n, "masks": masks,
               "repeat": args.repeat, "seed": args.seed,
               "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": mach,
               "load_average": {"start": load_start, "end": load_end},
               "engine": engine_version(), "database_built_with": d.build.get("engine"),
               "ingest": {"eager": d.build["ingest"], "lazy": lazy_ingest,
                          "eager_reused": "reused" in d.build},
               "sizes": {"raw_pixel_bytes": raw, "pixel_bytes": pix, "index_bytes": idx,
                         "index_share_of_stored": idx / pix, "segments": info["segments"],
                         "cell_size": info["cell_size"], "codec": info["codec"],
                         "lazy_index_bytes_after_first_pass": lazy_info["index_bytes"],
                         "lazy_indexed_masks_after_first_pass": lazy_info["indexed_masks"]},
               "iou_percentiles": dict(zip(["p1", "p10", "p50", "p90", "p99"],
                                           np.percentile(iou, [1, 10, 50, 90, 99]).tolist(),
                                           strict=True)),
               "having_threshold": threshold, "queries": rows,
               "session": {"steps": [{"change": c, "sql": s} for c, s in steps],
                           "passes": {k: [{x: y for x, y in r.items() if x != "result"}
                                          for r in v] for k, v in passes.items()},
                           "totals": tot, "ratios": ratios},
               "total_seconds": time.perf_counter() - t_start}
    out = args.results / f"aggregation-{n}.json"
    write_json(out, summary)
    for key in ("warm", "warm_lazy"):
        _remove(d.paths[key])
    log(f"Wrote {shown(out)} ({time.perf_counter() - t_start:.0f} s in total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
