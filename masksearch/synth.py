"""Seeded synthetic masks that look like real ones: Grad-CAM-like saliency maps with boxes,
human-attention maps, class-id label maps and binary masks (for demos, tests, benchmarks)."""

from __future__ import annotations

import numpy as np


def _bilinear_matrix(size: int, coarse: int) -> np.ndarray:
    """(size, coarse) weights of a bilinear upsampling with aligned cell centres."""
    pos = (np.arange(size) + 0.5) * coarse / size - 0.5
    pos = np.clip(pos, 0, coarse - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, coarse - 1)
    frac = pos - lo
    m = np.zeros((size, coarse))
    m[np.arange(size), lo] += 1 - frac
    m[np.arange(size), hi] += frac
    return m


def saliency_maps(n: int, size: int = 224, coarse: int = 7, seed: int = 0,
                  chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 maps in [0, 1] (max 1.0) and an object box per map as (n, 4) x0, y0, x1, y1.

    Each map is a ReLU'd mix of one or two Gaussian activations on a ``coarse`` grid plus noise,
    upsampled bilinearly (as Grad-CAM is). The box sits on the main activation for about 70%
    of the maps and elsewhere for the rest, so attention-inside-the-box varies widely.
    """
    rng = np.random.default_rng(seed)
    up = _bilinear_matrix(size, coarse)
    out = np.empty((n, size, size), dtype=np.float32)
    boxes = np.empty((n, 4), dtype=np.int64)
    yy, xx = np.mgrid[0:coarse, 0:coarse]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        cy, cx = rng.uniform(0, coarse - 1, (2, m, 1, 1))
        sigma = rng.uniform(0.6, 2.2, (m, 1, 1))
        act = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
        second = rng.random(m) < 0.4
        cy2, cx2 = rng.uniform(0, coarse - 1, (2, m, 1, 1))
        act += second[:, None, None] * 0.7 * np.exp(-((yy - cy2) ** 2 + (xx - cx2) ** 2) / 2.0)
        act += rng.normal(0, 0.12, act.shape)
        act = np.maximum(act - 0.1, 0)
        maps = up @ act @ up.T
        peak = maps.max(axis=(1, 2), keepdims=True)
        maps = np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0)
        out[start:start + m] = maps.astype(np.float32)
        # Object boxes: mostly around the main activation, sometimes anywhere.
        scale = size / coarse
        w = rng.integers(size // 6, size // 2, m)
        h = rng.integers(size // 6, size // 2, m)
        on = rng.random(m) < 0.7
        ccx = np.where(on, (cx[:, 0, 0] + 0.5) * scale, rng.uniform(0, size, m))
        ccy = np.where(on, (cy[:, 0, 0] + 0.5) * scale, rng.uniform(0, size, m))
        x0 = np.clip((ccx - w / 2).astype(int), 0, size - 1)
        y0 = np.clip((ccy - h / 2).astype(int), 0, size - 1)
        boxes[start:start + m] = np.stack(
            [x0, y0, np.minimum(x0 + w, size), np.minimum(y0 + h, size)], axis=1)
    return out, boxes


def attention_maps(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` float32 human-attention maps in [0, 1] (max 1.0): a few Gaussian fixations each
    (2 to 8, of varied spread and weight), as eye-tracking heat maps look."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), dtype=np.float32)
    axis = np.arange(size, dtype=np.float32)
    for i in range(n):
        k = int(rng.integers(2, 9))
        cx, cy = rng.uniform(0.1, 0.9, (2, k)) * size
        sigma = rng.uniform(size / 40, size / 10, k)
        weight = rng.uniform(0.3, 1.0, k)
        gx = np.exp(-((axis[None, :] - cx[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
        gy = np.exp(-((axis[None, :] - cy[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
        heat = np.einsum("k,ky,kx->yx", weight, gy, gx)
        out[i] = heat / heat.max()
    return out


def label_maps(n: int, size: int = 224, classes: int = 20, seed: int = 0) -> np.ndarray:
    """``n`` uint8 class-id maps: background 0 and 1 to 6 objects, ellipses and polygons
    with ids 1..``classes``, later shapes drawn over earlier ones (as segmentation output)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        img = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 7))):
            label = int(rng.integers(1, classes + 1))
            cx, cy = rng.uniform(0, size, 2)
            rx, ry = rng.uniform(size / 20, size / 4, 2)
            if rng.random() < 0.5:
                draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=label)
            else:
                corners = int(rng.integers(3, 7))
                angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
                points = [(float(cx + rx * np.cos(a)), float(cy + ry * np.sin(a)))
                          for a in angles]
                draw.polygon(points, fill=label)
        out[i] = np.asarray(img)
    return out


def binary_masks(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` bool object masks: the objects of a label map, all classes merged."""
    return label_maps(n, size, classes=1, seed=seed) > 0
