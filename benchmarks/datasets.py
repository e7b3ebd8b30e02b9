"""Benchmark datasets: seeded synthetic masks, ingested once and reused.

Each dataset lives in the work folder as ``<name>-<n>.msdb`` (the database), ``<name>-<n>.npy``
(the same masks as one array, for the NumPy and DuckDB baselines) and ``<name>-<n>.json``
(the build record: seed, ingest rate, sizes). A dataset whose record matches the request is
reused; anything else is rebuilt.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import masksearch as ms
from masksearch import synth

CHUNK = 2000     # masks generated and ingested per db.ingest call
MODELS = 2       # saliency datasets: masks i and i + 1 are two models' maps of one image


@dataclass(frozen=True)
class Kind:
    """How a dataset's masks are made."""

    name: str
    dtype: str
    size: int
    make: Callable[[int, int, int], tuple[np.ndarray, np.ndarray | None]]  # n, size, seed
    describe: str


def _saliency(n, size, seed):
    return synth.saliency_maps(n, size=size, coarse=7 if size <= 224 else 14, seed=seed)


def _attention(n, size, seed):
    return synth.attention_maps(n, size=size, seed=seed), None


def _labels(n, size, seed):
    return synth.label_maps(n, size=size, seed=seed), None


def _binary(n, size, seed):
    return synth.binary_masks(n, size=size, seed=seed), None


def _saliency_u8(n, size, seed):
    maps, boxes = _saliency(n, size, seed)
    return np.round(maps * 255).astype(np.uint8), boxes


def _gradcam(n, size, seed):
    """Grad-CAM-like maps of ReLU'd noise; the two models' maps of an image (masks 2i and
    2i + 1) share the image's object box."""
    boxes = np.repeat(synth.random_boxes((n + 1) // MODELS, size, seed=seed), MODELS, axis=0)
    return synth.gradcam_maps(n, size=size, coarse=7 if size <= 224 else 14, seed=seed,
                              boxes=boxes[:n])


def _gradcam_u8(n, size, seed):
    maps, boxes = _gradcam(n, size, seed)
    return np.round(maps * 255).astype(np.uint8), boxes


# The generators of float32 Grad-CAM-like maps with boxes: name -> make(n, size, seed).
GENERATORS: dict[str, Callable[[int, int, int], tuple[np.ndarray, np.ndarray]]] = {
    "saliency": _saliency, "gradcam": _gradcam}


KINDS = {k.name: k for k in (
    Kind("saliency", "float32", 224, _saliency,
         "Grad-CAM-like saliency maps, 7x7 activations upsampled to 224x224, with a box"),
    Kind("saliency448", "float32", 448, _saliency,
         "Grad-CAM-like saliency maps, 14x14 activations upsampled to 448x448, with a box"),
    Kind("saliency_u8", "uint8", 224, _saliency_u8,
         "the saliency maps quantized to uint8 (0-255), with a box"),
    Kind("gradcam", "float32", 224, _gradcam,
         "Grad-CAM-like maps, 7x7 ReLU'd Gaussian noise (and a bump on the object for 60%) "
         "upsampled to 224x224, the image's object box"),
    Kind("gradcam_u8", "uint8", 224, _gradcam_u8,
         "the Grad-CAM-like noise maps quantized to uint8 (0-255), with a box"),
    Kind("attention", "float32", 224, _attention,
         "human-attention maps: 2-8 Gaussian fixations"),
    Kind("labels", "uint8", 224, _labels, "class-id label maps: 0 and 1-6 shapes of 20 classes"),
    Kind("binary", "bool", 224, _binary, "binary object masks"),
)}


@dataclass
class Dataset:
    kind: Kind
    n: int
    db: ms.Database
    masks: np.ndarray            # (n, size, size), memory-mapped
    boxes: np.ndarray | None     # (n, 4) when the kind has boxes
    record: dict

    @property
    def name(self) -> str:
        return f"{self.kind.name}-{self.n}"


def _paths(workdir: Path, kind: Kind, n: int) -> dict[str, Path]:
    stem = workdir / f"{kind.name}-{n}"
    return {"db": stem.with_suffix(".msdb"), "npy": stem.with_suffix(".npy"),
            "boxes": workdir / f"{kind.name}-{n}.boxes.npy", "record": stem.with_suffix(".json")}


def load(workdir: Path, kind_name: str, n: int, seed: int = 0, *, index: str = "eager",
         log: Callable[[str], None] = print) -> Dataset:
    """The dataset, built if no matching one exists in ``workdir``."""
    kind = KINDS[kind_name]
    workdir.mkdir(parents=True, exist_ok=True)
    p = _paths(workdir, kind, n)
    want = {"kind": kind.name, "n": n, "seed": seed, "chunk": CHUNK, "index": index}
    try:
        record = json.loads(p["record"].read_text())
        if {k: record.get(k) for k in want} != want:
            raise ValueError("different dataset")
        db = ms.connect(p["db"])
        if db.info()["masks"] != n:
            raise ValueError("incomplete")
        log(f"reusing {p['db']} ({record['ingest']['masks_per_s']:,.0f} masks/s when built)")
    except (OSError, ValueError, KeyError, ms.MaskSearchError):
        record = _build(p, kind, n, seed, index, want, log)
        db = ms.connect(p["db"])
    boxes = np.load(p["boxes"]) if p["boxes"].exists() else None
    return Dataset(kind, n, db, np.load(p["npy"], mmap_mode="r"), boxes, record)


def _build(p, kind: Kind, n: int, seed: int, index: str, want: dict, log) -> dict:
    for path in p.values():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    log(f"building {p['db']}: {n:,} {kind.describe} (seed {seed})")
    masks = np.lib.format.open_memmap(p["npy"], mode="w+", dtype=np.dtype(kind.dtype),
                                      shape=(n, kind.size, kind.size))
    boxes = None
    db = ms.connect(p["db"], index=index)
    t_gen = t_ingest = 0.0
    for k, start in enumerate(range(0, n, CHUNK)):
        m = min(CHUNK, n - start)
        t0 = time.perf_counter()
        chunk, chunk_boxes = kind.make(m, kind.size, seed + k)
        t1 = time.perf_counter()
        masks[start:start + m] = chunk
        if chunk_boxes is not None:
            if boxes is None:
                boxes = np.empty((n, 4), np.int64)
            boxes[start:start + m] = chunk_boxes
        i = np.arange(start, start + m)
        metadata = {"bbox": chunk_boxes} if chunk_boxes is not None else None
        t2 = time.perf_counter()
        ids = db.ingest(chunk, image_id=i // MODELS, model_id=i % MODELS,
                        mask_type=kind.name, metadata=metadata)
        t3 = time.perf_counter()
        if ids != i.tolist():    # mask i has mask_id i: the baselines rely on it
            raise SystemExit(f"ingest assigned unexpected mask ids: {ids[:3]}...")
        t_gen, t_ingest = t_gen + t1 - t0, t_ingest + t3 - t2
        log(f"  {start + m:>9,} / {n:,}: generate {t1 - t0:5.1f} s, ingest {t3 - t2:5.1f} s "
            f"({m / (t3 - t2):,.0f} masks/s)")
    masks.flush()
    if boxes is not None:
        np.save(p["boxes"], boxes)
    info = db.info()
    record = {**want, "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
              "ingest": {"seconds": t_ingest, "masks_per_s": n / t_ingest,
                         "generate_seconds": t_gen},
              "pixel_bytes": info["pixel_bytes"], "index_bytes": info["index_bytes"],
              "raw_bytes": int(masks.nbytes)}
    p["record"].write_text(json.dumps(record, indent=1))
    return record
