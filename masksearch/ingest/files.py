"""Mask files: PNG (grayscale 8/16-bit, 1-bit, palette label maps), NPY (one mask or a
stack) and NPZ (each array in it), given as paths, folders or glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IngestError
from .arrays import layer
from .items import MaskItem

MASK_SUFFIXES = (".png", ".npy", ".npz")   # what a folder is searched for
# PNG modes stored as they are: 8-bit, 16-bit and 32-bit grayscale (values must fit
# 16 bits), 1-bit, and palette images (their indices: a label map, as VOC and ADE20K keep).
GRAY_MODES = ("L", "1", "I;16", "I;16B", "I;16L", "I", "P")
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "La")


def expand_paths(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files named by ``items``: files as given, globs sorted, folders' mask files."""
    paths: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if any(ch in text for ch in "*?["):
            matched = sorted(glob.glob(text))
            if not matched:
                raise IngestError(f"{text}: the pattern matches no file")
            paths.extend(Path(m) for m in matched)
        elif Path(text).is_dir():
            found = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in MASK_SUFFIXES)
            if not found:
                raise IngestError(f"{text}: the folder holds no .png, .npy or .npz file")
            paths.extend(found)
        elif Path(text).exists():
            paths.append(Path(text))
        else:
            raise IngestError(f"{text}: no such file")
    return paths


def file_items(paths: list[Path]) -> list[MaskItem]:
    """One item per mask of each file; a file holding several masks (an NPY stack, an NPZ)
    gives one per mask, keyed ``name[i]`` (and ``name:array[i]`` in an NPZ)."""
    items: list[MaskItem] = []
    for path in paths:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            items += _npy_items(path)
        elif suffix == ".npz":
            items += _npz_items(path)
        else:
            items.append(MaskItem(str(path), partial(read_image, path), _keys(path),
                                  path.stem))
    return items


def _keys(path: Path, suffix: str = "") -> tuple[str, ...]:
    """The names a metadata table may use for a file: its path as given, its name, its
    stem (each with ``suffix`` for one mask of several)."""
    return tuple(dict.fromkeys(f"{k}{suffix}" for k in (str(path), path.name, path.stem)))


def _stack_items(path: Path, label: str, array: np.ndarray, key_suffix: str = ""
                 ) -> list[MaskItem]:
    """Items for a 2-D array (one mask) or a stack (N, H, W) / (N, 1, H, W)."""
    if array.ndim == 2:
        return [MaskItem(label, partial(np.asarray, array), _keys(path, key_suffix),
                         path.stem)]
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise IngestError(f"{label}: expected one mask (H, W) or a stack (N, H, W) or "
                          f"(N, 1, H, W), got shape {array.shape}")
    return [MaskItem(f"{label}[{i}]", partial(layer, array, i),
                     _keys(path, f"{key_suffix}[{i}]"), path.stem) for i in range(array.shape[0])]



def _npy_items(path: Path) -> list[MaskItem]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)   # masks read when loaded
    except Exception as e:  # numpy raises many types for unreadable files
        raise IngestError(f"{path}: cannot read mask file ({type(e).__name__}: {e})") from None
    return _stack_items(path, str(path), array)


def _npz_items(path: Path) -> list[MaskItem]:
    items: list[MaskItem] = []
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as e:  # zipfile and numpy raise many types for damaged files
        raise IngestError(f"{path}: cannot read mask file ({type(e).__name__}: {e})") from None
    if not arrays:
        raise IngestError(f"{path}: the archive holds no array")
    for name, array in arrays.items():
        items += _stack_items(path, f"{path}:{name}", array, f":{name}")
    return items


def read_image(path: Path) -> np.ndarray:
    """The pixels of a PNG (or another image Pillow reads) as a mask: grayscale values,
    1-bit as bool, palette indices as a label map; colour images are refused."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _image_pixels(path, im)
    except IngestError:
        raise
    except Exception as e:  # Pillow raises many types for unreadable files
        raise IngestError(f"{path}: cannot read mask file ({type(e).__name__}: {e})") from None


def _image_pixels(path: Path, im: Any) -> np.ndarray:
    mode = im.mode
    if mode in COLOUR_MODES:
        raise IngestError(f"{path}: PNG mode {mode} is a colour image, not a mask; pick one "
                          "channel, e.g. Image.open(path).getchannel('R') or "
                          "np.asarray(Image.open(path))[..., 0], and ingest that array")
    if mode not in GRAY_MODES:
        raise IngestError(f"{path}: PNG mode {mode} is not a grayscale, 1-bit or palette "
                          "mask")
    arr = np.array(im)
    if mode == "I":
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise IngestError(f"{path}: 32-bit PNG values do not fit 16 bits")
        arr = arr.astype(np.uint16)
    return arr
