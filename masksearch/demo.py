"""A guided tour: build a sample database of saliency maps and run the paper's query shapes.

Run with ``masksearch demo`` or ``python -m masksearch.demo``. The database ``demo.msdb`` is
created in the current directory (and reused by later runs).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import masksearch as ms

from .format import format_table
from .synth import attending_maps, object_boxes, source_images
from .warmup import warmup

if TYPE_CHECKING:
    from tqdm import tqdm

DB_PATH = "demo.msdb"
N_MASKS = 4000
SEED = 7
LABELS = ("bear", "cat", "deer", "dog", "fox", "wolf")

# (title, SQL). Each runs with the index and with use_index=False; the results must match.
QUERIES = [
    ("Filter: masks whose high attention covers under 5% of the object's box "
     "(spurious background features)",
     "SELECT mask_id, image_id, model_id, label,\n"
     "       CP(mask, bbox, (0.6, 1.0]) / area(bbox) AS attn_in_box\n"
     "FROM masks\n"
     "WHERE mask_type = 'saliency' AND CP(mask, bbox, (0.6, 1.0]) / area(bbox) < 0.05"),
    ("Selective filter: masks very hot inside a fixed, cell-unaligned region",
     "SELECT mask_id, image_id, model_id,\n"
     "       CP(mask, box(37, 41, 181, 179), (0.8, 1.0]) AS hot\n"
     "FROM masks\n"
     "WHERE CP(mask, box(37, 41, 181, 179), (0.8, 1.0]) > 5600"),
    ("Top-25: most high-saliency pixels in that region",
     "SELECT mask_id, image_id, model_id,\n"
     "       CP(mask, box(37, 41, 181, 179), (0.8, 1.0]) AS hot\n"
     "FROM masks\n"
     "ORDER BY hot DESC LIMIT 25"),
    ("Top-10 ascending: least attention inside the box, for foxes only",
     "SELECT mask_id, image_id, model_id,\n"
     "       CP(mask, bbox, (0.6, 1.0]) / CP(mask, full, (0.6, 1.0]) AS share_in_box\n"
     "FROM masks\n"
     "WHERE label = 'fox'\n"
     "ORDER BY share_in_box ASC LIMIT 10"),
    ("Spread: model 1's most spread-out maps over the full image (adversarial inputs?)",
     "SELECT mask_id, image_id,\n"
     "       CP(mask, full, (0.3, 1.0]) / area(full) AS spread\n"
     "FROM masks\n"
     "WHERE model_id = 1 AND CP(mask, full, (0.3, 1.0]) > 0.6 * area(full)\n"
     "ORDER BY spread DESC LIMIT 10"),
    ("Mask aggregation: images where the two models' high-saliency regions overlap most (IoU)",
     "SELECT image_id,\n"
     "       CP(intersect(mask), full, (0.5, 1.0]) / CP(union(mask), full, (0.5, 1.0]) AS iou\n"
     "FROM masks WHERE model_id IN (0, 1)\n"
     "GROUP BY image_id ORDER BY iou DESC LIMIT 10"),
    ("Aggregation: images where both models attend to the object (mean share inside the box)",
     "SELECT image_id, label, AVG(CP(mask, bbox, (0.6, 1.0]) / area(bbox)) AS attn\n"
     "FROM masks\n"
     "GROUP BY image_id, label HAVING attn > 0.9\n"
     "ORDER BY attn DESC LIMIT 10"),
]


def _progress_bar(desc: str) -> tuple[tqdm, Callable[[int, int | None], None]]:
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, unit="mask", file=sys.stderr, leave=False,
               disable=not sys.stderr.isatty(), dynamic_ncols=True)

    def update(done: int, total: int | None) -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    return bar, update


def images_folder(root: Path) -> Path:
    """Where the demo's source images go: ``demo_images`` next to ``demo.msdb``."""
    return root.with_name(root.stem + "_images")


def _reusable(root: Path, n: int) -> ms.Database | None:
    """The existing demo database if it holds ``n`` masks with their source images."""
    db = ms.connect(root)
    count = db.info()["masks"]
    if count == n and "image_path" in db.columns() and db.image_root is not None and \
            Path(db.image_root).is_dir():
        print(f"Reusing {root} ({n:,} masks, images in {db.image_root}); delete it to "
              "rebuild.")
        return db
    print(f"{root} holds {count:,} masks, not {n:,} with source images: rebuilding it.")
    return None


def _clear(root: Path) -> None:
    """Remove an old demo database and its images folder (only if it holds just images)."""
    shutil.rmtree(root, ignore_errors=True)
    folder = images_folder(root)
    if folder.is_dir():
        if any(p.suffix != ".jpg" for p in folder.iterdir()):
            raise ms.MaskSearchError(f"{folder} holds more than the demo's images; move it "
                                     "away or run the demo elsewhere")
        shutil.rmtree(folder)


def write_images(folder: Path, boxes: np.ndarray, labels: np.ndarray, seed: int) -> list[str]:
    """One JPEG scene per image (an object in its box), in chunks; their file names."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:05d}.jpg" for i in range(len(boxes))]
    for start in range(0, len(boxes), 256):
        part = source_images(boxes[start:start + 256], labels[start:start + 256],
                             seed=seed + start)
        for k, img in enumerate(part):
            Image.fromarray(img).save(folder / names[start + k], quality=88)
    return names


def build(path: str | Path = DB_PATH, n: int = N_MASKS, seed: int = SEED) -> ms.Database:
    """The sample database at ``path``: reused if it holds ``n`` masks, else (re)built.

    ``n // 2`` images, each a scene with one object in its box, written as JPEG files to
    ``demo_images`` next to the database (its image root); two models' saliency maps per
    image, model 0 attending to the object in 80% of the images, model 1 in 60%."""
    root = Path(path)
    if (root / "manifest.json").is_file():
        db = _reusable(root, n)
        if db is not None:
            return db
        _clear(root)
    elif root.exists():
        raise ms.MaskSearchError(f"{root} exists and is not a masksearch database; "
                                 "move it away or run the demo elsewhere")
    t0 = time.perf_counter()
    images = n // 2
    print(f"Generating {images:,} scenes and {n:,} Grad-CAM-like 224x224 float32 saliency "
          f"maps (seed {seed})...", flush=True)
    rng = np.random.default_rng(seed)
    boxes = object_boxes(images, seed=seed)
    labels = rng.integers(0, len(LABELS), images)
    maps = np.empty((n, 224, 224), np.float32)
    maps[0::2] = attending_maps(boxes[:(n + 1) // 2], seed=seed + 1, on_object=0.8)
    maps[1::2] = attending_maps(boxes[:n // 2], seed=seed + 2, on_object=0.6)
    folder = images_folder(root)
    names = write_images(folder, boxes, labels, seed)
    ids = np.arange(n)
    image_id, model_id = ids // 2, ids % 2          # two models' maps per image
    t1 = time.perf_counter()
    print(f"  generated in {t1 - t0:.1f} s ({maps.nbytes / 1e6:.0f} MB of pixels; "
          f"{images:,} images in {folder})", flush=True)
    db = ms.connect(root)
    bar, update = _progress_bar("ingest")
    try:
        db.ingest(maps, image_id=image_id, model_id=model_id, mask_type="saliency",
                  metadata={"bbox": boxes[image_id],
                            "label": np.array(LABELS)[labels[image_id]],
                            "image_path": np.array(names)[image_id]}, progress=update)
    finally:
        bar.close()
    db.image_root = folder
    info = db.info()
    print(f"  ingested into {root} in {time.perf_counter() - t1:.1f} s: "
          f"{info['pixel_bytes'] / 1e6:.0f} MB of compressed pixels, index "
          f"{info['index_bytes'] / 1e6:.1f} MB ({info['index_share'] * 100:.1f}%)", flush=True)
    return db


def _timed(db: ms.Database, sql: str, use_index: bool) -> tuple[ms.Result, float]:
    t = time.perf_counter()
    result = db.query(sql, use_index=use_index)
    return result, time.perf_counter() - t


def run_query(db: ms.Database, title: str, sql: str) -> bool:
    """Run ``sql`` with and without the index, print rows and timings; True if they agree."""
    print()
    print(f"== {title}")
    print("\n".join("   " + line for line in sql.splitlines()))
    # One untimed run of each side first: neither timing includes loading kernels or
    # opening files that the other side found ready.
    db.query(sql, use_index=True)
    db.query(sql, use_index=False)
    fast, t_index = _timed(db, sql, use_index=True)
    slow, t_scan = _timed(db, sql, use_index=False)
    print(format_table(fast.to_arrow(), max_rows=10))
    print(f"({len(fast)} rows)")
    s = fast.stats
    speedup = t_scan / t_index if t_index > 0 else float("inf")
    print(f"-> index {t_index * 1e3:.1f} ms vs scan {t_scan * 1e3:.1f} ms: {speedup:.1f}x; "
          f"{s.pruned:,} of {s.masks_total:,} masks decided without pixels "
          f"({s.rejected_by_metadata:,} by metadata, {s.accepted_by_index:,} accepted and "
          f"{s.rejected_by_index:,} rejected by the index), {s.verified:,} verified "
          f"(scan verified {slow.stats.verified:,})")
    same = fast.to_arrow().equals(slow.to_arrow())
    if not same:
        print("!!! MISMATCH: the indexed result differs from the brute-force result !!!")
    return same


PICTURES_SQL = ("SELECT mask_id, image_id, model_id, label,\n"
                "       CP(mask, bbox, (0.6, 1.0]) / area(bbox) AS attn_in_box\n"
                "FROM masks\n"
                "ORDER BY attn_in_box ASC LIMIT 25")


def show_pictures(db: ms.Database, html: str = "demo.html",
                  sheet: str = "demo_sheet.png") -> None:
    """The top-25 masks attending least to their object, as pictures: the time to the first
    picture and to all 25, an HTML page and a contact sheet."""
    print()
    print("== Pictures: the 25 masks attending least to their object (saliency over the "
          "image, the box framed, the pixels in (0.6, 1.0] outlined)")
    print("\n".join("   " + line for line in PICTURES_SQL.splitlines()))
    t0 = time.perf_counter()
    result = db.query(PICTURES_SQL)
    t1 = time.perf_counter()
    ids = [row[0] for row in result.rows()]
    db.render_png(ids[0], "bbox", "(0.6, 1.0]", 160)
    t2 = time.perf_counter()
    for mask_id in ids[1:]:
        db.render_png(mask_id, "bbox", "(0.6, 1.0]", 160)
    t3 = time.perf_counter()
    print(f"-> query {(t1 - t0) * 1e3:.1f} ms; first picture after {(t2 - t0) * 1e3:.1f} ms; "
          f"all {len(ids)} pictures after {(t3 - t0) * 1e3:.1f} ms "
          f"({(t3 - t1) / max(len(ids), 1) * 1e3:.1f} ms each)")
    result.save_html(html)
    result.contact_sheet(sheet)
    print(f"-> wrote {html} (open it in a browser) and {sheet}")


def main() -> None:
    t0 = time.perf_counter()
    # Compile the kernels into Numba's cache (once after an install; then they load in
    # milliseconds), so that neither side of a comparison below is charged compilation.
    print(f"Kernels ready in {warmup():.1f} s (compiled once into Numba's cache, then loaded).",
          flush=True)
    db = build()
    ok = True
    for title, sql in QUERIES:
        ok &= run_query(db, title, sql)
    print()
    if ok:
        print(f"All {len(QUERIES)} queries gave identical results with and without the index "
              f"({time.perf_counter() - t0:.1f} s in total).")
    else:
        print("!!! SOME QUERIES DIFFERED BETWEEN THE INDEX AND THE BRUTE-FORCE SCAN !!!")
    show_pictures(db)
    print()
    print(f"Open the web app on it:  masksearch serve {DB_PATH}")
    print(f"(or the shell:  masksearch {DB_PATH})")


if __name__ == "__main__":
    main()
