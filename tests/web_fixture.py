"""The database the web app's tests serve: saliency maps with boxes, labels that include
hostile strings, and image_path values pointing at real images under an image root, outside
it, through a symlink out of it, and written to escape it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

import masksearch as ms
from masksearch.synth import saliency_maps

N = 120
SIZE = 32
HOSTILE = ["<script>alert('x')</script>", '"><img src=x onerror=alert(1)>',
           "it's \"quoted\" & <b>bold</b>", "../../etc/passwd"]
LABELS = ["cat", "dog", *HOSTILE]
# image_path of mask i is IMAGE_PATHS[i % len(IMAGE_PATHS)]
IMAGE_PATHS = ["img0.png", "sub/img1.png", "../outside.png", "/etc/passwd",
               "link_out.png", "%2e%2e/outside.png", "..%2foutside.png", None]
INSIDE = {0: "img0.png", 1: "sub/img1.png"}   # index in IMAGE_PATHS -> the file under the root


def build(folder: Path) -> tuple[Path, Path, np.ndarray]:
    """``folder/web.msdb`` with its image root ``folder/images``; returns both and the maps."""
    root = folder / "images"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name in ("img0.png", "sub/img1.png"):
        pixels = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(folder / "outside.png")
    os.symlink(folder / "outside.png", root / "link_out.png")
    maps, boxes = saliency_maps(N, size=SIZE, coarse=4, seed=11)
    db = ms.connect(folder / "web.msdb", cell_size=8)
    db.ingest(maps, image_id=np.arange(N) // 2, model_id=np.arange(N) % 2,
              mask_type="saliency",
              metadata={"bbox": boxes,
                        "label": [LABELS[i % len(LABELS)] for i in range(N)],
                        "image_path": [IMAGE_PATHS[i % len(IMAGE_PATHS)] for i in range(N)]})
    db.image_root = str(root)
    db.close()
    return folder / "web.msdb", root, maps
