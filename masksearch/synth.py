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


def random_boxes(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` boxes (x0, y0, x1, y1) of 1/6 to 1/2 of the side each way, inside the image."""
    rng = np.random.default_rng(seed)
    w = rng.integers(size // 6, size // 2, n)
    h = rng.integers(size // 6, size // 2, n)
    x0 = (rng.random(n) * (size - w + 1)).astype(np.int64)
    y0 = (rng.random(n) * (size - h + 1)).astype(np.int64)
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def gradcam_maps(n: int, size: int = 224, coarse: int = 7, seed: int = 0,
                 boxes: np.ndarray | None = None, on_object: float = 0.6,
                 chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Grad-CAM-like float32 maps in [0, 1] and an object box each ((n, 4) x0, y0, x1, y1).

    Each map is a ``coarse`` x ``coarse`` grid of Gaussian noise (its mean drawn per map),
    ReLU'd, upsampled bilinearly to ``size`` x ``size`` and divided by its maximum (1.0;
    all zero if no cell is positive), as Grad-CAM's last-layer activations are. For a share
    ``on_object`` of the maps a Gaussian bump of the box's extent is added at the box, so the
    map attends to the object; the others show scattered blobs. ``boxes`` (n, 4) gives the
    boxes (e.g. one box per image shared by several models' maps), else they are drawn by
    ``random_boxes``. Unlike ``saliency_maps``, most maps have several hot spots.
    """
    rng = np.random.default_rng(seed)
    boxes = random_boxes(n, size, seed=seed + 1) if boxes is None else np.asarray(boxes)
    if boxes.shape != (n, 4):
        raise ValueError(f"gradcam_maps: boxes must have shape ({n}, 4), not {boxes.shape}")
    up = _bilinear_matrix(size, coarse).astype(np.float32)
    out = np.empty((n, size, size), dtype=np.float32)
    scale = size / coarse
    yy, xx = np.mgrid[0:coarse, 0:coarse]
    for start in range(0, n, chunk):
        b = boxes[start:start + chunk].astype(np.float64)
        m = len(b)
        cx = ((b[:, 0] + b[:, 2]) / 2 / scale - 0.5)[:, None, None]
        cy = ((b[:, 1] + b[:, 3]) / 2 / scale - 0.5)[:, None, None]
        sigma = (np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / scale / 3 + 0.3)[:, None, None]
        amp = (rng.random(m) < on_object) * rng.uniform(1.0, 3.0, m)
        act = rng.normal(rng.uniform(-1.0, 0.3, (m, 1, 1)), 1.0, (m, coarse, coarse))
        act += amp[:, None, None] * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
        maps = up @ np.maximum(act, 0).astype(np.float32) @ up.T
        peak = maps.max(axis=(1, 2), keepdims=True)
        out[start:start + m] = maps / np.where(peak > 0, peak, np.float32(1))
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


# --- scenes: source images with objects, and saliency maps that attend to them -------------

# An object's colour per class (body, darker head), for up to 8 classes.
_OBJECT_COLOURS = np.array([(176, 112, 60), (200, 180, 150), (150, 100, 70), (120, 90, 60),
                            (214, 110, 40), (130, 130, 135), (90, 120, 160), (160, 60, 90)],
                           dtype=np.float32)


def object_boxes(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` object boxes (x0, y0, x1, y1) of 1/5 to 1/2 of the side, inside the image."""
    rng = np.random.default_rng(seed)
    w = rng.integers(size // 5, size // 2, n)
    h = rng.integers(size // 5, size // 2, n)
    x0 = (rng.random(n) * (size - w)).astype(np.int64)
    y0 = (rng.random(n) * (size - h)).astype(np.int64)
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def attending_maps(boxes: np.ndarray, size: int = 224, coarse: int = 7, seed: int = 0,
                   on_object: float = 0.75) -> np.ndarray:
    """Grad-CAM-like float32 maps in [0, 1], one per box: the main activation sits on the box
    (of about its size) for a share ``on_object`` of the maps and anywhere for the rest; a
    weaker second activation in 40% of them; noise; upsampled bilinearly."""
    rng = np.random.default_rng(seed)
    n = len(boxes)
    scale = size / coarse
    on = rng.random(n) < on_object
    cx = np.where(on, (boxes[:, 0] + boxes[:, 2]) / 2 / scale - 0.5,
                  rng.uniform(0, coarse - 1, n))
    cy = np.where(on, (boxes[:, 1] + boxes[:, 3]) / 2 / scale - 0.5,
                  rng.uniform(0, coarse - 1, n))
    extent = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / scale
    sigma = np.clip(extent * rng.uniform(0.25, 0.45, n), 0.5, 2.5)
    yy, xx = np.mgrid[0:coarse, 0:coarse]
    act = np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)
                 / (2 * sigma[:, None, None] ** 2))
    second = (rng.random(n) < 0.4)[:, None, None]
    cy2, cx2 = rng.uniform(0, coarse - 1, (2, n, 1, 1))
    act += second * 0.6 * np.exp(-((yy - cy2) ** 2 + (xx - cx2) ** 2) / 2.0)
    act = np.maximum(act + rng.normal(0, 0.1, act.shape) - 0.1, 0)
    up = _bilinear_matrix(size, coarse)
    maps = up @ act @ up.T
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype(np.float32)


def _background(rng: np.random.Generator, size: int, up: np.ndarray) -> np.ndarray:
    """(size, size, 3) float32: a sky-to-ground gradient with soft light and dark blotches."""
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    top = rng.uniform([90, 130, 170], [150, 190, 230]).astype(np.float32)
    ground = rng.uniform([60, 90, 40], [120, 150, 80]).astype(np.float32)
    blotches = (up @ rng.normal(0, 16, (6, 6)).astype(np.float32) @ up.T)[..., None]
    return top * (1 - t) + ground * t + blotches


def _draw_object(img: np.ndarray, box: np.ndarray, colour: np.ndarray, left: bool) -> None:
    """An ellipse body, shaded, and a darker round head, inside ``box`` (in place)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + (y1 - y0) * 0.08
    rx, ry = (x1 - x0) * 0.42, (y1 - y0) * 0.34
    body = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    hx, hy, hr = cx + rx * (-0.75 if left else 0.75), cy - ry * 0.8, min(rx, ry) * 0.45
    head = ((xx - hx) ** 2 + (yy - hy) ** 2) / hr ** 2
    shade = np.clip(1.15 - 0.35 * body, 0.6, 1.2)[..., None]
    part = img[y0:y1, x0:x1]
    part[:] = np.where((body <= 1)[..., None], colour * shade, part)
    part[:] = np.where((head <= 1)[..., None], colour * 0.8, part)


def source_images(boxes: np.ndarray, labels: np.ndarray, size: int = 224,
                  seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 scenes: a background and, in each box, an object of its
    class's colour (a shaded ellipse body and a head), as a camera-trap photo might hold."""
    rng = np.random.default_rng(seed)
    up = _bilinear_matrix(size, 6).astype(np.float32)
    grain = rng.normal(0, 4, (2 * size, 2 * size, 3)).astype(np.float32)
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, box in enumerate(boxes):
        img = _background(rng, size, up)
        colour = _OBJECT_COLOURS[int(labels[i]) % len(_OBJECT_COLOURS)]
        _draw_object(img, box, colour, bool(rng.random() < 0.5))
        dy, dx = rng.integers(0, size, 2)
        img += grain[dy:dy + size, dx:dx + size]
        np.clip(img, 0, 255, out=img)
        out[i] = img
    return out
