#!/usr/bin/env python
"""COCO ingest benchmark: a generated COCO instances file of 50,000 annotations ingested with
``db.ingest(ms.from_coco(path))``, its masks/s and peak memory.

    .venv/bin/python benchmarks/bench_coco.py            # 5,000 images x 10 = 50,000 masks
    .venv/bin/python benchmarks/bench_coco.py --quick    # 500 images x 10 = 5,000 masks

Each measurement runs in a process of its own, so that its peak resident memory (ru_maxrss)
is its own: reading the file alone (``from_coco`` and every mask's ``load``), the ingest, and,
for comparison, pycocotools reading the file with ``COCO(path)`` and ``annToMask``. The
ingested masks are then checked against pycocotools (a sample, and every annotation's pixel
count); a difference exits with status 2. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import engine_version, fail, log, machine, shown, write_json  # noqa: E402

PER_IMAGE = 10
SIZE = 256
CATEGORIES = ["person", "bicycle", "car", "dog", "cat", "chair", "bottle", "cup"]
CHECKED = 500                 # masks compared pixel by pixel with pycocotools' annToMask


# --- the data -----------------------------------------------------------------------------
def _star(rng: np.random.Generator, points: int, cx: float, cy: float, r: float) -> list[float]:
    t = np.sort(rng.uniform(0, 2 * np.pi, points))
    rr = r * rng.uniform(0.55, 1.0, points)
    xs = np.clip(cx + rr * np.cos(t), 0, SIZE)
    ys = np.clip(cy + rr * np.sin(t), 0, SIZE)
    return [float(v) for v in np.stack([xs, ys], 1).ravel().round(2)]


def _runs(m: np.ndarray) -> list[int]:
    """The uncompressed COCO counts of a mask (runs down the columns, zeros first)."""
    flat = m.T.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    return [0, *runs] if flat[0] else runs


def annotation(rng: np.random.Generator, mask_utils: Any, ann_id: int, image_id: int
               ) -> dict:
    """One COCO annotation: 60% polygons (a fifth of them in 2-3 parts), 30% compressed RLE,
    10% uncompressed RLE (iscrowd = 1), as COCO files hold them."""
    cx, cy = rng.uniform(20, SIZE - 20, 2)
    r = float(rng.uniform(6, 60))
    kind = rng.random()
    parts = [_star(rng, int(rng.integers(8, 40)), cx, cy, r)]
    if kind < 0.12:
        parts += [_star(rng, int(rng.integers(6, 20)), *rng.uniform(10, SIZE - 10, 2),
                        float(rng.uniform(4, 20))) for _ in range(int(rng.integers(1, 3)))]
    rle = mask_utils.merge(mask_utils.frPyObjects(parts, SIZE, SIZE))
    seg: object
    if kind < 0.6:
        seg = parts
    elif kind < 0.9:
        seg = {"size": [SIZE, SIZE], "counts": rle["counts"].decode("ascii")}
    else:
        seg = {"size": [SIZE, SIZE], "counts": _runs(mask_utils.decode(rle).astype(bool))}
    x, y, w, h = (round(float(v), 2) for v in mask_utils.toBbox(rle))
    return {"id": ann_id, "image_id": image_id, "category_id": int(rng.integers(1, 9)),
            "segmentation": seg, "area": float(mask_utils.area(rle)), "bbox": [x, y, w, h],
            "iscrowd": int(kind >= 0.9)}


def generate(path: Path, images: int, seed: int) -> None:
    """A COCO instances file, written as it is made (images, annotations, then categories,
    the order of COCO's own files)."""
    import pycocotools.mask as mask_utils

    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        f.write('{"info": {"description": "masksearch bench_coco"}, "licenses": [],\n'
                '"images": [')
        f.write(",\n".join(json.dumps({"id": i + 1, "file_name": f"{i + 1:012d}.jpg",
                                       "height": SIZE, "width": SIZE})
                           for i in range(images)))
        f.write('],\n"annotations": [')
        for i in range(images):
            chunk = (json.dumps(annotation(rng, mask_utils, i * PER_IMAGE + k + 1, i + 1))
                     for k in range(PER_IMAGE))
            f.write(("" if i == 0 else ",\n") + ",\n".join(chunk))
        f.write('],\n"categories": [')
        f.write(", ".join(json.dumps({"id": k + 1, "name": name, "supercategory": "thing"})
                          for k, name in enumerate(CATEGORIES)))
        f.write("]}\n")
    os.replace(tmp, path)


# --- the measurements, each in its own process --------------------------------------------
def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # Linux: KiB


def warm_up() -> None:
    """Imports pycocotools and ijson and compiles (or loads) the RLE check's kernel."""
    import ijson  # noqa: F401
    import pycocotools.mask  # noqa: F401

    from masksearch.ingest.coco import rle_string_total

    rle_string_total(np.frombuffer(b"0", dtype=np.uint8))


def child_source(path: Path) -> dict:
    """from_coco and every mask's load: the COCO reader's own work."""
    import masksearch as ms

    warm_up()
    before = peak_mb()
    t = time.perf_counter()
    source = ms.from_coco(path)
    first_pass = time.perf_counter() - t
    n = pixels = 0
    for batch in source.batches(4096):
        for item in batch.items:
            pixels += int(np.count_nonzero(item.load()))
        n += len(batch.items)
    return {"masks": n, "seconds": time.perf_counter() - t, "first_pass_seconds": first_pass,
            "pixels": pixels, "peak_mb_before": before, "peak_mb": peak_mb()}


def child_ingest(path: Path, db_path: Path) -> dict:
    """db.ingest(ms.from_coco(path)) into a new database."""
    import masksearch as ms

    shutil.rmtree(db_path, ignore_errors=True)
    warm = db_path.with_name(db_path.name + ".warm")
    shutil.rmtree(warm, ignore_errors=True)
    with ms.connect(warm) as db:        # imports and compiles (or loads) the kernels
        db.ingest(np.zeros((2, 8, 8), bool), image_id=[0, 1])
    shutil.rmtree(warm)
    warm_up()
    before = peak_mb()
    with ms.connect(db_path) as db:
        t = time.perf_counter()
        ids = db.ingest(ms.from_coco(path))
        seconds = time.perf_counter() - t
        info = db.info()
    return {"masks": len(ids), "seconds": seconds, "peak_mb_before": before,
            "peak_mb": peak_mb(), "segments": info["segments"],
            "pixel_bytes": info["pixel_bytes"], "index_bytes": info["index_bytes"]}


def child_pycocotools(path: Path) -> dict:
    """pycocotools reading the same file: COCO(path), then annToMask for every annotation."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    before = peak_mb()
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    loaded = time.perf_counter() - t
    pixels = sum(int(np.count_nonzero(coco.annToMask(ann))) for ann in coco.dataset[
        "annotations"])
    return {"masks": len(coco.dataset["annotations"]), "seconds": time.perf_counter() - t,
            "load_seconds": loaded, "pixels": pixels, "peak_mb_before": before,
            "peak_mb": peak_mb()}


CHILDREN = {"source": child_source, "ingest": child_ingest, "pycocotools": child_pycocotools}


def in_child(what: str, *args: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", what, *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"the {what} measurement failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- checks -------------------------------------------------------------------------------
def check(path: Path, db_path: Path, seed: int) -> dict:
    """The stored masks against pycocotools: every mask's pixel count against
    ``maskUtils.area``, ``CHECKED`` of them pixel by pixel against ``annToMask``, and every
    annotation's columns."""
    import contextlib
    import io

    import pycocotools.mask as mask_utils
    from pycocotools.coco import COCO

    import masksearch as ms

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    anns = coco.dataset["annotations"]
    with ms.connect(db_path, read_only=True) as db:
        rows = db.query("SELECT mask_id, annotation_id, image_id, category, area, bbox, "
                        "CP(mask, full, (0, 1]) AS px FROM masks ORDER BY mask_id").rows()
        if len(rows) != len(anns):
            fail(f"{len(rows)} masks stored for {len(anns)} annotations")
        for (mask_id, ann_id, image_id, category, area, bbox, px), ann in zip(
                rows, anns, strict=True):
            want = (ann["id"], ann["image_id"], coco.cats[ann["category_id"]]["name"],
                    ann["area"], int(mask_utils.area(coco.annToRLE(ann))))
            if (ann_id, image_id, category, area, px) != want:
                fail(f"mask {mask_id}: {(ann_id, image_id, category, area, px)} != {want}")
            x, y, w, h = ann["bbox"]
            box = {"x0": int(np.floor(x)), "y0": int(np.floor(y)),
                   "x1": int(np.ceil(x + w)), "y1": int(np.ceil(y + h))}
            if bbox != box:
                fail(f"mask {mask_id}: bbox {bbox} != {box}")
        sample = np.random.default_rng(seed).choice(len(anns), min(CHECKED, len(anns)),
                                                    replace=False)
        for i in sample:
            if not np.array_equal(db.mask(rows[i][0]), coco.annToMask(anns[i]).astype(bool)):
                fail(f"mask {rows[i][0]} differs from pycocotools' annToMask of annotation "
                     f"{anns[i]['id']}")
    return {"masks": len(rows), "pixel_checked": len(sample)}


# --- main ---------------------------------------------------------------------------------
def _rate(r: dict) -> float:
    return r["masks"] / r["seconds"]


def _report(file_mb: float, source: dict, ingest: dict, coco: dict) -> None:
    log(f"\n{'':34}{'masks/s':>10}{'seconds':>10}{'peak RSS':>11}{'of it before':>14}")
    for name, r in (("from_coco + load (decode only)", source),
                    ("db.ingest(ms.from_coco(path))", ingest),
                    ("pycocotools COCO() + annToMask", coco)):
        log(f"{name:34}{_rate(r):>10,.0f}{r['seconds']:>10.2f}{r['peak_mb']:>8,.0f} MB"
            f"{r['peak_mb_before']:>11,.0f} MB")
    log(f"\nThe file: {file_mb:,.1f} MB. Ingest's peak memory over what the process held "
        f"before it: {ingest['peak_mb'] - ingest['peak_mb_before']:,.0f} MB; reading the file "
        f"alone: {source['peak_mb'] - source['peak_mb_before']:,.0f} MB (pycocotools, which "
        f"loads it whole: {coco['peak_mb'] - coco['peak_mb_before']:,.0f} MB).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000,
                    help=f"images of {SIZE}x{SIZE}, {PER_IMAGE} annotations each "
                         f"(default 5000)")
    ap.add_argument("--quick", action="store_true", help="smoke run with 500 images")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data",
                    help="where the file and the database go (default benchmarks/data/)")
    ap.add_argument("--rebuild", action="store_true", help="generate the file again")
    ap.add_argument("--seed", type=int, default=0, help="data seed")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                    help="where the JSON summary goes (default benchmarks/results/)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](*map(Path, args.child[1:]))))
        return 0

    images = 500 if args.quick else args.images
    n = images * PER_IMAGE
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"coco-{n}-seed{args.seed}.json"
    db_path = args.workdir / f"coco-{n}.msdb"
    if args.rebuild or not path.exists():
        log(f"Generating {shown(path)}: {images:,} images of {SIZE}x{SIZE}, {n:,} "
            f"annotations ...")
        t = time.perf_counter()
        generate(path, images, args.seed)
        log(f"  {time.perf_counter() - t:.1f} s")
    file_mb = path.stat().st_size / 2**20
    log(f"{shown(path)}: {n:,} annotations, {file_mb:,.1f} MB")

    log("Reading it with from_coco (every mask decoded) ...")
    source = in_child("source", path)
    log("Ingesting it with db.ingest(ms.from_coco(path)) ...")
    ingest = in_child("ingest", path, db_path)
    log("Reading it with pycocotools (COCO + annToMask) ...")
    coco = in_child("pycocotools", path)
    if not source["masks"] == ingest["masks"] == coco["masks"] == n:
        fail(f"mask counts differ: source {source['masks']}, ingest {ingest['masks']}, "
             f"pycocotools {coco['masks']}, file {n}")
    if source["pixels"] != coco["pixels"]:
        fail(f"from_coco's masks hold {source['pixels']} pixels, pycocotools' "
             f"{coco['pixels']}")
    log("Checking the database against pycocotools ...")
    checked = check(path, db_path, args.seed)
    _report(file_mb, source, ingest, coco)
    log(f"Checked: every mask's pixel count and columns, {checked['pixel_checked']} masks "
        f"pixel by pixel, against pycocotools.")

    from importlib.metadata import version

    import ijson

    summary = {"benchmark": "coco", "annotations": n, "images": images,
               "image_size": [SIZE, SIZE], "seed": args.seed, "file_bytes": path.stat().st_size,
               "source": source, "ingest": ingest, "pycocotools": coco,
               "ingest_masks_per_s": _rate(ingest), "ingest_peak_rss_mb": ingest["peak_mb"],
               "checked": checked, "ijson_backend": ijson.backend,
               "ijson_version": version("ijson"), "pycocotools_version": version("pycocotools"),
               "machine": machine(), "engine": engine_version(),
               "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = args.results / f"coco-{n}.json"
    write_json(out, summary)
    log(f"Summary: {shown(out)}")
    shutil.rmtree(db_path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
