"""``masksearch warmup``: compile the Numba kernels into their on-disk cache ahead of use.

The kernels are ``@njit(cache=True)`` functions, compiled for the argument types of their
first call and cached next to their source (``__pycache__``) or in ``NUMBA_CACHE_DIR``. On a
fresh install the first query compiles the variants it needs (seconds); later processes load
them from the cache. ``warmup()`` runs ingest and the query shapes of the language on tiny
databases of every stored pixel type in a temporary folder, so that each variant queries and
ingest use is compiled once, up front (``make demo`` runs it after installing).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .api import connect
from .exec.settings import ExecSettings

_REGION = "box(3, 5, 27, 29)"
_QUERIES = (
    f"SELECT mask_id FROM masks WHERE CP(mask, {_REGION}, (0.5, 1.0]) > 100",
    "SELECT mask_id FROM masks WHERE CP(mask, full, [0.2, 0.7)) < 300",
    "SELECT mask_id, CP(mask, bbox, (0.5, 1.0]) / area(bbox) AS r FROM masks "
    "WHERE CP(mask, bbox, (0.5, 1.0]) / area(bbox) < 0.5",
    f"SELECT mask_id, CP(mask, {_REGION}, (0.5, 1.0]) AS c FROM masks ORDER BY c DESC LIMIT 3",
    "SELECT mask_id, CP(mask, bbox, (0.5, 1.0]) / area(bbox) AS r FROM masks "
    "ORDER BY r ASC LIMIT 3",
    "SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / CP(union(mask), full, "
    "(0.5, 1.0]) AS iou FROM masks GROUP BY image_id ORDER BY iou DESC LIMIT 3",
    "SELECT image_id, AVG(CP(mask, bbox, (0.5, 1.0]) / area(bbox)) AS a FROM masks "
    "GROUP BY image_id HAVING a > 0.1 ORDER BY a DESC LIMIT 3",
)


def _masks(dtype: str, rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    values = rng.random((n, size, size))
    if dtype == "bool":
        return values > 0.5
    if dtype in ("uint8", "uint16"):
        return (values * 255).astype(dtype)
    return values.astype(dtype)


def warmup(dtypes: tuple[str, ...] = ("float32", "uint8", "bool", "uint16", "float16"),
           progress: Callable[[str], None] | None = None) -> float:
    """Compile (or load) every kernel variant that ingest and queries use; the seconds
    taken. Safe to run again: cached variants load in milliseconds."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    n, size = 24, 32
    boxes = [(i % 5, i % 7, 16 + i % 9, 20 + i % 11) for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="masksearch-warmup-") as tmp:
        for dtype in dtypes:
            for index in ("eager", "lazy"):
                if progress is not None:
                    progress(f"{dtype} masks, {index} index")
                with connect(Path(tmp) / f"{dtype}-{index}.msdb", index=index) as db:
                    db.ingest(_masks(dtype, rng, n, size), image_id=np.arange(n) // 2,
                              model_id=np.arange(n) % 2, metadata={"bbox": boxes})
                    for sql in _QUERIES:
                        db.query(sql)
                        db.query(sql, use_index=False)
                        # Corner planes (made for large segments only) on these few masks.
                        db.query(sql, settings=ExecSettings(plane_rows=1))
                    db.check()
    return time.perf_counter() - t0
