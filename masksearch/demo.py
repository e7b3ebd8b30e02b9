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
from .synth import saliency_maps

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


def build(path: str | Path = DB_PATH, n: int = N_MASKS, seed: int = SEED) -> ms.Database:
    """The sample database at ``path``: reused if it holds ``n`` masks, else (re)built."""
    root = Path(path)
    if (root / "manifest.json").is_file():
        db = ms.connect(root)
        count = db.info()["masks"]
        if count == n:
            print(f"Reusing {root} ({n:,} masks); delete it to rebuild.")
            return db
        print(f"{root} holds {count:,} masks, not {n:,}: rebuilding it.")
        shutil.rmtree(root)
    elif root.exists():
        raise ms.MaskSearchError(f"{root} exists and is not a masksearch database; "
                                 "move it away or run the demo elsewhere")
    t0 = time.perf_counter()
    print(f"Generating {n:,} Grad-CAM-like 224x224 float32 saliency maps (seed {seed})...",
          flush=True)
    maps, boxes = saliency_maps(n, seed=seed)
    rng = np.random.default_rng(seed)
    image_labels = rng.choice(LABELS, n // 2 + 1)
    ids = np.arange(n)
    image_id, model_id = ids // 2, ids % 2          # two models' maps per image
    t1 = time.perf_counter()
    print(f"  generated in {t1 - t0:.1f} s ({maps.nbytes / 1e6:.0f} MB of pixels)", flush=True)
    db = ms.connect(root)
    bar, update = _progress_bar("ingest")
    try:
        db.ingest(maps, image_id=image_id, model_id=model_id, mask_type="saliency",
                  metadata={"bbox": boxes, "label": image_labels[image_id]}, progress=update)
    finally:
        bar.close()
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


def main() -> None:
    t0 = time.perf_counter()
    db = build()
    # Warm up (load the compiled kernels, open every segment's index and pixel files) so the
    # timings below show steady state, as in an interactive session.
    db.query("SELECT mask_id FROM masks WHERE CP(mask, box(3, 5, 40, 30), (0.5, 1.0]) > 100")
    db.query("SELECT mask_id FROM masks WHERE CP(mask, bbox, (0.5, 1.0]) > 100",
             use_index=False)
    ok = True
    for title, sql in QUERIES:
        ok &= run_query(db, title, sql)
    print()
    if ok:
        print(f"All {len(QUERIES)} queries gave identical results with and without the index "
              f"({time.perf_counter() - t0:.1f} s in total).")
    else:
        print("!!! SOME QUERIES DIFFERED BETWEEN THE INDEX AND THE BRUTE-FORCE SCAN !!!")


if __name__ == "__main__":
    main()
