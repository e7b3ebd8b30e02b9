"""Source images: where an ``image_path`` value points, confined to the image root, and
reading the image.

``resolve_image`` is the one place that decides which files may be read: a value that
leaves the root by ``..``, by an absolute path elsewhere or by a symbolic link pointing out
of it gives None, as do values that are not text, hold a NUL, or name no regular file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = 64_000_000      # larger files are refused, not decoded


def _within(root: str, path: str) -> bool:
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:
        return False


def resolve_image(root: str | os.PathLike[str] | None, value: object) -> Path | None:
    """The regular file ``value`` names under ``root`` (relative values are taken from the
    root; absolute ones must lie inside it), with every symbolic link followed and the
    result still inside the root; None for anything else, and always None without a
    root."""
    if root is None or not isinstance(value, str) or not value or "\x00" in value:
        return None
    try:
        base = os.path.realpath(os.fspath(root))
        target = os.path.realpath(os.path.join(base, value))
    except (OSError, ValueError):
        return None
    if not _within(base, target) or target == base or not os.path.isfile(target):
        return None
    return Path(target)


def locate_image(root: str | None, value: object, confined: bool) -> Path | None:
    """The source image file of a mask: under the root by ``resolve_image``; without a
    root, and unless ``confined``, the path as it stands (absolute, or relative to the
    current directory, as ``from_coco(images_dir=...)`` writes a relative folder's)."""
    if root is not None or confined:
        return resolve_image(root, value)
    if not isinstance(value, str) or not value or "\x00" in value:
        return None
    try:
        path = os.path.realpath(value)
    except (OSError, ValueError):
        return None
    return Path(path) if os.path.isfile(path) else None


def read_image(path: Path | None, width: int, height: int) -> np.ndarray | None:
    """The image at ``path`` as (height, width, 3) uint8 RGB, stretched to that size if it
    differs; None when there is no path or the file is not a readable image."""
    if path is None:
        return None
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                return None
            img.draft("RGB", (width, height))     # JPEG: decode at a reduced scale
            rgb = img.convert("RGB")
            if rgb.size != (width, height):
                rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(rgb)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
