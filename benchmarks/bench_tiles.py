#!/usr/bin/env python
"""Tile codecs per pixel type, measured: bytes a mask, and the time to decode a mask's tiles
(all of them, and decoding and counting 36 tiles, about the border tiles a box query
needs), for each choice of
LZ4 / zstd / none, with or without byte shuffling, against the whole-mask blobs of the
older layout (byte shuffle + LZ4 frame of the whole mask).

    .venv/bin/python benchmarks/bench_tiles.py                # 300 maps of each generator
    .venv/bin/python benchmarks/bench_tiles.py --n 1000
    .venv/bin/python benchmarks/bench_tiles.py --engine 10000  # + both layouts, one run
    .venv/bin/python benchmarks/bench_tiles.py --ingest 2000   # + ingest rate of both

With ``--engine N``: bench_engine.py's databases of N maps (whole-mask blobs, as ingested
before tiles; built if absent) are copied, the copies upgraded to tiles (``db.upgrade()``,
timed), and bench_costs.py's verify query (a box off the cells, a range on bin edges, T at
the median count) runs on both, interleaved, ``--repeat`` times each: the cost per
verified mask of both layouts in one run, answers checked against NumPy.

Maps: the seeded generators of ``benchmarks/datasets.py`` (float32 saliency and gradcam),
and the gradcam maps converted to float16, uint16 (x 65535), uint8 (x 255) and bool
(> 0.5). zstd per tile can only be decoded through pyarrow, a call per tile: it is
measured that way (the kernels cannot call it). Writes ``benchmarks/results/tiles-N.json``
and ``.md``; docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_costs import VERIFY_BOX, VERIFY_RANGE, _filter_sql  # noqa: E402
from benchmarks.bench_engine import np_box_counts, prepare  # noqa: E402
from benchmarks.common import engine_version, fail, log, machine, write_json  # noqa: E402
from benchmarks.datasets import GENERATORS  # noqa: E402
from masksearch.kernels import tile_kernels as tk  # noqa: E402
from masksearch.store.codec import decode_mask, encode_mask  # noqa: E402
from masksearch.store.tiles import TileCodec, decode_tiled, encode_tiled  # noqa: E402

CELL = 16
BORDER = 36          # about the border tiles of a 10 x 10-cell box: what a box query decodes


def _variants(n: int, seed: int) -> dict[str, np.ndarray]:
    sal, _ = GENERATORS["saliency"](n, 224, seed)
    cam, _ = GENERATORS["gradcam"](n, 224, seed)
    sal, cam = sal.astype(np.float32), cam.astype(np.float32)
    return {"float32 saliency": sal, "float32 gradcam": cam,
            "float16 gradcam": cam.astype(np.float16),
            "uint16 gradcam": np.round(np.clip(cam, 0, 1) * 65535).astype(np.uint16),
            "uint8 gradcam": np.round(np.clip(cam, 0, 1) * 255).astype(np.uint8),
            "bool gradcam": cam > 0.5}


def _median_us(fn, items) -> float:
    fn(items[0])
    times = []
    for it in items:
        t0 = time.perf_counter()
        fn(it)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _tile_decoder(maps: np.ndarray, codec: TileCodec):
    """Decode one mask's tiles with the kernels: all of them (``decode_tiles``), or count
    the ``BORDER`` tiles of a 6 x 6-cell box (``tile_counts`` without the index: each
    decoded and counted, what verification does with a tile the index cannot settle)."""
    _, h, w = maps.shape
    itemsize = maps.dtype.itemsize
    out = np.empty((h, w * itemsize), np.uint8)
    scratch = np.empty(2 * CELL * CELL * itemsize, np.uint8)
    chi = (np.zeros(1, np.uint8), np.zeros(2, np.int64), np.array([h]), np.array([w]),
           np.zeros(1), np.zeros((1, 1), np.uint8), np.zeros((1, 2)))
    box = np.array([[[3 * CELL, 3 * CELL, 9 * CELL, 9 * CELL]]], np.int64)
    cuts = np.array([[0.5, 0.0, 1.0, 1.0]])
    counts, decoded = np.zeros((1, 1), np.int64), np.zeros(1, np.int64)
    kind = tk.KINDS[maps.dtype.name]

    def all_tiles(blob: np.ndarray) -> None:
        tk.decode_tiles(blob, itemsize, CELL, codec.shuffle, out, scratch)

    def border(blob: np.ndarray) -> None:
        tk.tile_counts(blob, np.zeros(1, np.int64), np.array([blob.size]), chi,
                       (kind, itemsize, CELL, codec.shuffle), np.zeros(1, np.int64),
                       np.zeros(1, bool), box, cuts, counts, decoded, scratch)
        assert decoded[0] == BORDER
    return all_tiles, border


def _zstd_tiles(maps: np.ndarray, shuffle: bool) -> tuple[list[list[bytes]], float, float]:
    """zstd per tile through pyarrow: (blobs, bytes a mask, us to decode BORDER tiles)."""
    codec = pa.Codec("zstd", compression_level=1)
    h, w = maps.shape[1:]
    masks = []
    for m in maps:
        tiles = []
        for y in range(0, h, CELL):
            for x in range(0, w, CELL):
                raw = np.ascontiguousarray(m[y:y + CELL, x:x + CELL]).view(np.uint8).ravel()
                if shuffle and m.itemsize > 1:
                    raw = raw.reshape(-1, m.itemsize).T.copy().ravel()
                tiles.append(codec.compress(raw.tobytes(), asbytes=True))
        masks.append(tiles)
    size = statistics.mean(sum(len(t) for t in tiles) for tiles in masks)
    nbytes = CELL * CELL * maps.dtype.itemsize

    def border(tiles: list[bytes]) -> None:
        for t in tiles[:BORDER]:
            codec.decompress(t, decompressed_size=nbytes)
    return masks, size, _median_us(border, masks)


def measure(name: str, maps: np.ndarray) -> list[dict]:
    rows = []
    raw = maps[0].nbytes
    for whole in ("lz4", "zstd"):
        blobs = [encode_mask(m, whole) for m in maps]
        t0 = time.perf_counter()
        blobs = [encode_mask(m, whole) for m in maps]
        enc = (time.perf_counter() - t0) * 1e6 / len(maps)
        size = statistics.mean(b.size for b in blobs)
        dec = _median_us(lambda b, c=whole: decode_mask(b, maps.dtype, *maps.shape[1:], c),
                         blobs)
        rows.append({"maps": name, "layout": f"whole mask, shuffle + {whole}",
                     "bytes": size, "ratio": raw / size, "encode_us": enc,
                     "decode_all_us": dec, "decode_border_us": dec})
    choices = [TileCodec(False, False)] + [
        TileCodec(True, shuffle, keep) for shuffle in
        ((False, True) if maps.itemsize > 1 else (False,)) for keep in (4, 8, 16)]
    for codec in choices:
        encode_tiled(maps[0], CELL, codec)
        t0 = time.perf_counter()
        blobs = [encode_tiled(m, CELL, codec) for m in maps]
        enc = (time.perf_counter() - t0) * 1e6 / len(maps)
        arrays = [np.frombuffer(b, np.uint8) for b in blobs]
        for b, m in zip(blobs[:20], maps[:20], strict=False):
            assert (decode_tiled(b, maps.dtype, *maps.shape[1:], CELL, codec).view(np.uint8)
                    == m.view(np.uint8)).all()
        all_tiles, border = _tile_decoder(maps, codec)
        size = statistics.mean(b.size for b in blobs)
        rows.append({"maps": name, "layout": "tiles, " + ("shuffle + " if codec.shuffle else "")
                     + (f"lz4 where smaller, matches >= {codec.min_match}" if codec.compress
                        else "none"),
                     "bytes": size, "ratio": raw / size, "encode_us": enc,
                     "decode_all_us": _median_us(all_tiles, arrays),
                     "decode_border_us": _median_us(border, arrays)})
    for shuffle in ((False, True) if maps.itemsize > 1 else (False,)):
        _, size, border_us = _zstd_tiles(maps[:min(len(maps), 100)], shuffle)
        rows.append({"maps": name, "layout": "tiles, " + ("shuffle + " if shuffle else "")
                     + "zstd (pyarrow call a tile)", "bytes": size, "ratio": raw / size,
                     "encode_us": float("nan"), "decode_all_us": float("nan"),
                     "decode_border_us": border_us})
    for r in rows:
        log(f"  {name:17s} {r['layout']:38s} {r['bytes']:9,.0f} B (x{r['ratio']:.2f})  "
            f"decode all {r['decode_all_us']:7.1f} us, {BORDER} tiles "
            f"{r['decode_border_us']:6.1f} us")
    return rows


def layouts(generator: str, n: int, repeat: int, workdir: Path) -> dict:
    """The verify query on a database of whole-mask blobs and on its upgraded copy, run
    alternately; medians."""
    import shutil
    import tempfile

    import masksearch as ms

    # Both databases' decoded indexes held at once: alternating queries must not evict
    # each other's (the comparison is of the pixels' layout, not of the index cache).
    ms.set_index_cache("2GiB")
    d = prepare(workdir, n, 0, False, generator)
    counts = np_box_counts(d.maps, VERIFY_BOX, VERIFY_RANGE)
    t = int(np.median(counts))
    sql = _filter_sql(VERIFY_BOX, VERIFY_RANGE, t)
    want = (np.flatnonzero(counts > t) + d.base_id).tolist()
    if {seg.tiles is not None for seg in d.db.store.segments} != {False}:
        fail(f"{d.db.path} is not in whole-mask blobs: rebuild it at a commit before tiles")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        copy = Path(tmp) / "tiled.msdb"
        shutil.copytree(d.db.path, copy)
        tiled = ms.connect(copy)
        t0 = time.perf_counter()
        tiled.upgrade()
        upgrade_s = time.perf_counter() - t0
        dbs = {"whole": d.db, "tiles": tiled}
        times: dict[str, list[float]] = {k: [] for k in dbs}
        verified = {}
        for db in dbs.values():         # untimed first runs (kernels, index, checksums)
            db.query(sql)
        for _ in range(repeat):
            for name, db in dbs.items():
                t0 = time.perf_counter()
                result = db.query(sql)
                times[name].append(time.perf_counter() - t0)
                got = result.to_arrow().column("mask_id").to_pylist()
                if got != want:
                    fail(f"{name}: {len(got)} masks, NumPy {len(want)}")
                verified[name] = result.stats.verified
        sizes = {k: db.info()["pixel_bytes"] / n for k, db in dbs.items()}
        tiled.close()
    out = {"generator": generator, "n": n, "sql": sql, "upgrade_s": upgrade_s,
           "bytes_per_mask": sizes}
    for name in dbs:
        ms_ = statistics.median(times[name]) * 1e3
        out[name] = {"ms": ms_, "verified": verified[name],
                     "us_per_verified": ms_ * 1e3 / max(1, verified[name]),
                     "all_ms": [round(x * 1e3, 2) for x in times[name]]}
    out["ratio"] = out["whole"]["ms"] / out["tiles"]["ms"]
    log(f"  {generator}: {verified['tiles']:,} masks verified; whole-mask blobs "
        f"{out['whole']['ms']:.1f} ms = {out['whole']['us_per_verified']:.1f} us a verified "
        f"mask, tiles {out['tiles']['ms']:.1f} ms = {out['tiles']['us_per_verified']:.1f} us "
        f"({out['ratio']:.1f}x); upgrade {upgrade_s:.1f} s; pixel bytes a mask "
        f"{sizes['whole']:,.0f} -> {sizes['tiles']:,.0f}")
    return out


def ingest_rates(n: int, rounds: int, workdir: Path) -> dict:
    """Ingest rate of n gradcam maps (one ``db.ingest``, the index built) writing whole-mask
    blobs and writing tiles, alternating, ``rounds`` times each after an untimed round."""
    import tempfile

    import masksearch as ms
    from masksearch.store import tiles

    maps, _ = GENERATORS["gradcam"](n, 224, 0)
    maps = np.ascontiguousarray(maps, np.float32)
    tiled = tiles.TILED_CODECS
    rates: dict[str, list[float]] = {"whole": [], "tiles": []}
    try:
        for k in range(rounds + 1):
            for name in rates:
                tiles.TILED_CODECS = frozenset() if name == "whole" else tiled
                with tempfile.TemporaryDirectory(dir=workdir) as tmp:
                    db = ms.connect(Path(tmp) / "db")
                    t0 = time.perf_counter()
                    db.ingest(maps, image_id=np.arange(n))
                    rate = n / (time.perf_counter() - t0)
                    db.close()
                if k:
                    rates[name].append(rate)
    finally:
        tiles.TILED_CODECS = tiled
    log(f"  ingest of {n:,} gradcam maps: whole-mask blobs "
        f"{', '.join(f'{r:,.0f}' for r in rates['whole'])} masks/s; tiles "
        f"{', '.join(f'{r:,.0f}' for r in rates['tiles'])} masks/s")
    return {"n": n, "masks_per_s": rates}


def markdown(rows: list[dict]) -> str:
    lines = ["| maps | layout | bytes a mask | ratio | decode a mask (us) | "
             f"decode {BORDER} tiles (us) | encode (us) |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        def f(v: float) -> str:
            return "-" if v != v else f"{v:.1f}"
        lines.append(f"| {r['maps']} | {r['layout']} | {r['bytes']:,.0f} | {r['ratio']:.2f} | "
                     f"{f(r['decode_all_us'])} | {f(r['decode_border_us'])} | "
                     f"{f(r['encode_us'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="maps per generator (300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--engine", type=int, default=0,
                    help="also the verify query on both layouts, on N maps per generator")
    ap.add_argument("--only-engine", action="store_true", help="skip the codec table")
    ap.add_argument("--ingest", type=int, default=0,
                    help="also the ingest rate of N gradcam maps in both layouts")
    ap.add_argument("--repeat", type=int, default=15, help="timed runs of each layout (15)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data")
    args = ap.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.only_engine:
        log(f"tile codecs on {args.n} 224x224 maps per kind, cell {CELL}")
        rows = []
        for name, maps in _variants(args.n, args.seed).items():
            rows += measure(name, maps)
        ingest = ingest_rates(args.ingest, 3, args.workdir) if args.ingest else None
        table = markdown(rows)
        if ingest is not None:
            r = ingest["masks_per_s"]
            table += (f"\n\nIngest of {ingest['n']:,} gradcam maps with the index, masks/s "
                      f"(3 rounds, alternating): whole-mask blobs "
                      f"{', '.join(f'{x:,.0f}' for x in r['whole'])}; tiles "
                      f"{', '.join(f'{x:,.0f}' for x in r['tiles'])}")
        log("\n" + table)
        stem = args.results / f"tiles-{args.n}"
        Path(f"{stem}.md").write_text(table + "\n")
        write_json(Path(f"{stem}.json"), {"benchmark": "bench_tiles", "n": args.n,
                                          "seed": args.seed, "machine": machine(),
                                          "engine": engine_version(), "results": rows,
                                          "ingest": ingest})
    if args.engine:
        log(f"the verify query on both layouts, {args.engine:,} maps per generator")
        runs = [layouts(g, args.engine, args.repeat, args.workdir)
                for g in ("saliency", "gradcam")]
        write_json(args.results / f"tiles-engine-{args.engine}.json", {
            "benchmark": "bench_tiles --engine", "repeat": args.repeat, "machine": machine(),
            "engine": engine_version(), "results": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
