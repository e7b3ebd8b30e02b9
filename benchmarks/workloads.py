"""The paper's query shapes over a dataset, each with its NumPy answer written as a user would
(load the masks, slice, count) and, for filters, the same query in DuckDB SQL over masks
stored as nested lists.

A workload's NumPy answer is the list of result keys (mask_id, or image_id for grouped
queries) in output order; unordered results are compared sorted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .datasets import MODELS, Dataset

SCAN_CHUNK = 256
SELECTIVITIES = (0.001, 0.01, 0.1, 0.5)
TOPK = 25
BOX = (37, 41, 181, 179)        # not aligned to the 16-pixel cells


@dataclass(frozen=True)
class Range:
    lo: float
    lo_closed: bool
    hi: float
    hi_closed: bool

    @property
    def sql(self) -> str:
        return (f"{'[' if self.lo_closed else '('}{self.lo:g}, {self.hi:g}"
                f"{']' if self.hi_closed else ')'}")

    def holds(self, values: np.ndarray) -> np.ndarray:
        """Whether each pixel lies in the range, comparing exact values (as masksearch does)
        at the speed of the pixels' own dtype: each end becomes the equivalent comparison
        with a value of that dtype (``v > 0.8`` is ``v >= float32(0.8)``, which is above
        0.8), so no pixel is converted."""
        lo_op, lo = _native(self.lo, self.lo_closed, values.dtype, above=True)
        hi_op, hi = _native(self.hi, self.hi_closed, values.dtype, above=False)
        return lo_op(values, lo) & hi_op(values, hi)

    def duck(self, v: str) -> str:
        return (f"{v} {'>=' if self.lo_closed else '>'} {self.lo!r} AND "
                f"{v} {'<=' if self.hi_closed else '<'} {self.hi!r}")


def _native(end: float, closed: bool, dtype: np.dtype, above: bool):
    """(comparison, value of ``dtype``) equal, for every value of ``dtype``, to comparing
    with the float ``end`` (``>=``/``>`` when ``above``, else ``<=``/``<``)."""
    if dtype.kind != "f":
        return ((np.greater_equal if closed else np.greater) if above else
                (np.less_equal if closed else np.less)), np.float64(end)
    t = dtype.type(end)
    exact = float(t) == end
    if above:   # v >= end / v > end
        if exact:
            return (np.greater_equal if closed else np.greater), t
        return (np.greater_equal, t) if float(t) > end else (np.greater, t)
    if exact:
        return (np.less_equal if closed else np.less), t
    return (np.less_equal, t) if float(t) < end else (np.less, t)


@dataclass(frozen=True)
class Workload:
    family: str                     # e.g. "filter CP(box) > T"
    sql: str
    numpy: Callable[[], list]
    ordered: bool
    selectivity: float | None = None   # the share of masks (or images) meant to qualify
    duck_where: str | None = None      # DuckDB predicate over table pix(mask_id, bbox, px)
    grouped: bool = False


# --- NumPy, as a user would write it ------------------------------------------------------
def box_counts(masks: np.ndarray, box, rng: Range) -> np.ndarray:
    """CP of every mask in one fixed box, a chunk of masks at a time."""
    x0, y0, x1, y1 = box
    out = np.empty(len(masks), np.int64)
    for s in range(0, len(masks), SCAN_CHUNK):
        part = masks[s:s + SCAN_CHUNK, y0:y1, x0:x1]
        out[s:s + SCAN_CHUNK] = rng.holds(part).sum((1, 2))
    return out


def bbox_counts(masks: np.ndarray, boxes: np.ndarray, rng: Range) -> np.ndarray:
    """CP of every mask in its own box: one slice per mask."""
    out = np.empty(len(masks), np.int64)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        out[i] = np.count_nonzero(rng.holds(masks[i, y0:y1, x0:x1]))
    return out


def _above_share(values: np.ndarray, share: float) -> float:
    """A threshold t with about ``share`` of the values strictly above it."""
    ranked = np.sort(values)[::-1]
    k = min(len(ranked) - 1, max(1, round(share * len(ranked))))
    return ranked[k]


def _ids_where(keep: np.ndarray) -> list[int]:
    return np.flatnonzero(keep).tolist()


def _top(values: np.ndarray, k: int, descending: bool) -> list[int]:
    keys = np.arange(len(values))
    return keys[np.lexsort((keys, -values if descending else values))][:k].tolist()


# --- the workloads of one dataset ---------------------------------------------------------
def workloads(d: Dataset) -> list[Workload]:
    kind = d.kind.name
    size = d.kind.size
    box = tuple(int(v * size / 224) for v in BOX)
    box_sql = "box({}, {}, {}, {})".format(*box)
    # hot: the range of the box filters; wide: of whole-mask counts; peak: of the per-box
    # ratios, narrow enough that few boxes are saturated (ratio 1), so thresholds spread.
    if kind in ("labels", "binary"):
        hot = Range(3, True, 3, True) if kind == "labels" else Range(1, True, 1, True)
        wide = Range(1, True, 255, True) if kind == "labels" else Range(1, True, 1, True)
        peak = hot
    elif kind.endswith("_u8"):      # saliency_u8, gradcam_u8
        hot, wide = Range(204, False, 255, True), Range(153, False, 255, True)
        peak = Range(229, False, 255, True)
    else:
        hot, wide = Range(0.8, False, 1.0, True), Range(0.6, False, 1.0, True)
        peak = Range(0.9, False, 1.0, True)
    out: list[Workload] = []
    counts = box_counts(d.masks, box, hot)
    for share in SELECTIVITIES:
        t = int(_above_share(counts, share))
        out.append(Workload(
            "filter CP(box) > T", f"SELECT mask_id FROM masks WHERE CP(mask, {box_sql}, "
            f"{hot.sql}) > {t}", lambda t=t: _ids_where(box_counts(d.masks, box, hot) > t),
            False, share, _duck_count("px", box, hot) + f" > {t}"))
    full = box_counts(d.masks, (0, 0, size, size), wide)
    t = int(_above_share(full, 0.01))
    out.append(Workload(
        "filter CP(full) > T", f"SELECT mask_id FROM masks WHERE CP(mask, full, {wide.sql}) > {t}",
        lambda t=t: _ids_where(box_counts(d.masks, (0, 0, size, size), wide) > t), False, 0.01,
        _duck_count("px", (0, 0, size, size), wide) + f" > {t}"))
    if d.boxes is not None:
        ratio = bbox_counts(d.masks, d.boxes, peak) / _areas(d.boxes)
        for share in SELECTIVITIES:
            r = float(_above_share(ratio, share))
            out.append(Workload(
                "filter CP(bbox)/area > r", f"SELECT mask_id FROM masks WHERE "
                f"CP(mask, bbox, {peak.sql}) / area(bbox) > {r!r}",
                lambda r=r: _ids_where(bbox_counts(d.masks, d.boxes, peak)
                                       / _areas(d.boxes) > r), False, share,
                f"{_duck_count('px', None, peak)} / ((bbox.x1 - bbox.x0) * "
                f"(bbox.y1 - bbox.y0)) > {r!r}"))
        for desc in (True, False):
            out.append(Workload(
                f"top-{TOPK} CP(bbox)/area {'DESC' if desc else 'ASC'}",
                f"SELECT mask_id, CP(mask, bbox, {peak.sql}) / area(bbox) AS r FROM masks "
                f"ORDER BY r {'DESC' if desc else 'ASC'} LIMIT {TOPK}",
                lambda desc=desc: _top(bbox_counts(d.masks, d.boxes, peak) / _areas(d.boxes),
                                       TOPK, desc), True))
        mean = ratio.reshape(-1, MODELS).mean(axis=1)
        a = float(_above_share(mean, 0.01))
        out.append(Workload(
            "mean across models HAVING", f"SELECT image_id, AVG(CP(mask, bbox, {peak.sql}) / "
            f"area(bbox)) AS a FROM masks GROUP BY image_id HAVING a > {a!r}",
            lambda a=a: _ids_where((bbox_counts(d.masks, d.boxes, peak) / _areas(d.boxes))
                                   .reshape(-1, MODELS).mean(axis=1) > a), False, 0.01,
            grouped=True))
    else:
        out.append(Workload(
            f"top-{TOPK} CP(full) DESC", f"SELECT mask_id, CP(mask, full, {wide.sql}) AS c "
            f"FROM masks ORDER BY c DESC LIMIT {TOPK}",
            lambda: _top(box_counts(d.masks, (0, 0, size, size), wide), TOPK, True), True))
    iou_range = hot if kind in ("labels", "binary") else Range(0.5, False, 1.0, True)
    out.append(Workload(
        "IoU of two models, top-10 ASC",
        f"SELECT image_id, CP(intersect(mask), full, {iou_range.sql}) / CP(union(mask), full, "
        f"{iou_range.sql}) AS iou FROM masks GROUP BY image_id ORDER BY iou ASC LIMIT 10",
        lambda: _iou_top(d.masks, iou_range, 10), True, grouped=True))
    return out


def _areas(boxes: np.ndarray) -> np.ndarray:
    return ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float64)


def _iou_top(masks: np.ndarray, rng: Range, k: int) -> list[int]:
    """Per image, IoU of its two models' masks (min / max pixel-wise); NULLs sort last."""
    n_images = len(masks) // MODELS
    iou = np.empty(n_images)
    for g in range(n_images):
        a, b = masks[MODELS * g], masks[MODELS * g + 1]
        inter = np.count_nonzero(rng.holds(np.minimum(a, b)))
        union = np.count_nonzero(rng.holds(np.maximum(a, b)))
        iou[g] = inter / union if union else np.nan
    keys = np.arange(n_images)
    order = np.lexsort((keys, iou, np.isnan(iou)))
    return keys[order][:k].tolist()


def _duck_count(column: str, box, rng: Range) -> str:
    """DuckDB SQL counting a mask's pixels in a box and range, the mask a list of rows."""
    if box is None:   # the row's own box
        rows, cols = f"{column}[bbox.y0 + 1:bbox.y1]", "r[bbox.x0 + 1:bbox.x1]"
    else:
        x0, y0, x1, y1 = box
        rows, cols = f"{column}[{y0 + 1}:{y1}]", f"r[{x0 + 1}:{x1}]"
    return (f"list_sum(list_transform({rows}, lambda r: len(list_filter({cols}, "
            f"lambda v: {rng.duck('v')}))))")
