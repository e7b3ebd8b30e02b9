"""Turning what users pass to ``ingest`` into a list of named 2-D arrays, refusing bad input."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import IngestError

SUPPORTED_DTYPES = ("bool", "uint8", "uint16", "float16", "float32")
FLOAT32_EXACT_INTS = 2 ** 24   # every integer of at most this magnitude is a float32


@dataclass(frozen=True)
class MaskSource:
    """One mask to ingest: where it came from (for errors) and how to load it."""

    label: str               # "mask 3" or a file name, used in error messages
    array: np.ndarray | None = None
    path: Path | None = None

    @property
    def stem(self) -> str:
        return self.path.stem if self.path is not None else self.label

    def load(self) -> np.ndarray:
        pixels = self.array if self.path is None else _read_file(self.path)
        return check_mask(pixels, self.label)


def _read_file(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        from PIL import Image

        with Image.open(path) as im:
            if im.mode not in ("L", "1", "I;16", "I;16B", "I;16L", "I"):
                raise IngestError(f"{path}: PNG mode {im.mode} is not a grayscale mask "
                                  "(use 8- or 16-bit grayscale)")
            arr = np.array(im)
            if im.mode == "I":
                if arr.size and (arr.min() < 0 or arr.max() > 65535):
                    raise IngestError(f"{path}: 32-bit PNG values do not fit 16 bits")
                arr = arr.astype(np.uint16)
            return arr
    except IngestError:
        raise
    except Exception as e:  # PIL and numpy raise many types for unreadable files
        raise IngestError(f"{path}: cannot read mask file ({type(e).__name__}: {e})") from None


def check_mask(pixels: object, label: str) -> np.ndarray:
    """A C-contiguous native-endian 2-D array of a supported dtype, or an ``IngestError``.

    Other integer and float dtypes are converted when no value changes (see ``_lossless``)."""
    if not isinstance(pixels, np.ndarray):
        raise IngestError(f"{label}: expected a NumPy array, got {type(pixels).__name__}")
    if pixels.ndim != 2:
        raise IngestError(f"{label}: a mask must be 2-D, got shape {pixels.shape}")
    if pixels.size == 0:
        raise IngestError(f"{label}: the mask is empty (shape {pixels.shape})")
    if pixels.dtype.name not in SUPPORTED_DTYPES:
        pixels = _lossless(pixels, label)
    if pixels.dtype.kind == "f" and np.isnan(pixels).all():
        raise IngestError(f"{label}: every pixel is NaN")
    pixels = pixels.astype(pixels.dtype.newbyteorder("="), copy=False)
    if pixels.dtype == np.bool_:
        # A bool array viewed from other bytes may hold values other than 0 and 1.
        raw = np.ascontiguousarray(pixels).view(np.uint8)
        if raw.max() > 1:
            pixels = raw != 0
    return np.ascontiguousarray(pixels)


def _lossless(pixels: np.ndarray, label: str) -> np.ndarray:
    """Integers as uint8, uint16 or float32 (the first that holds every value exactly);
    floats as float32 when every value is a float32. Anything else is refused."""
    kind = pixels.dtype.kind
    refuse = (f"{label}: dtype {pixels.dtype} is not supported; masks are "
              f"{', '.join(SUPPORTED_DTYPES)}")
    if kind in "iu":
        lo, hi = int(pixels.min()), int(pixels.max())
        for target in (np.uint8, np.uint16):
            if lo >= 0 and hi <= np.iinfo(target).max:
                return pixels.astype(target)
        if lo >= -FLOAT32_EXACT_INTS and hi <= FLOAT32_EXACT_INTS:
            return pixels.astype(np.float32)
        raise IngestError(f"{refuse}; its values ({lo}..{hi}) fit none of them exactly "
                          "(convert with .astype(...))")
    if kind == "f":
        with np.errstate(over="ignore"):
            narrow = pixels.astype(np.float32)
        same = (narrow == pixels) | (np.isnan(narrow) & np.isnan(pixels))
        if same.all():
            return narrow
        r, c = (int(i) for i in np.argwhere(~same)[0])
        raise IngestError(f"{refuse}; its values are not all float32 values (pixel ({r}, "
                          f"{c}) = {pixels[r, c]} would change); convert with "
                          ".astype(np.float32) if rounding is acceptable")
    raise IngestError(f"{refuse} (convert with .astype(...))")


def _expand_paths(items: Sequence[str | os.PathLike]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if any(ch in text for ch in "*?["):
            matched = sorted(glob.glob(text))
            if not matched:
                raise IngestError(f"{text}: the pattern matches no file")
            paths.extend(Path(m) for m in matched)
        elif Path(text).is_dir():
            found = sorted(p for p in Path(text).iterdir()
                           if p.suffix.lower() in (".png", ".npy"))
            if not found:
                raise IngestError(f"{text}: the folder holds no .png or .npy file")
            paths.extend(found)
        elif Path(text).exists():
            paths.append(Path(text))
        else:
            raise IngestError(f"{text}: no such file")
    return paths


def mask_sources(masks: object) -> list[MaskSource]:
    """Classify the ``masks`` argument of ``ingest`` into one source per mask."""
    if isinstance(masks, np.ndarray):
        if masks.ndim == 3 and masks.shape[0] == 0:
            raise IngestError("masks: nothing to ingest (the array holds 0 masks)")
        if masks.ndim == 3:
            return [MaskSource(f"mask {i}", array=masks[i]) for i in range(masks.shape[0])]
        if masks.ndim == 2:
            return [MaskSource("mask 0", array=masks)]
        raise IngestError(f"masks: expected an (N, H, W) array or 2-D masks, got shape "
                          f"{masks.shape}")
    if isinstance(masks, (str, os.PathLike)):
        masks = [masks]
    if not isinstance(masks, Sequence) and not isinstance(masks, Iterator):
        raise IngestError(f"masks: expected arrays, paths or globs, got {type(masks).__name__}")
    items = list(masks)
    if not items:
        raise IngestError("masks: nothing to ingest")
    if all(isinstance(x, (str, os.PathLike)) for x in items):
        return [MaskSource(str(p), path=p) for p in _expand_paths(items)]
    sources = []
    for i, x in enumerate(items):
        if isinstance(x, (str, os.PathLike)):
            raise IngestError(f"mask {i}: paths and arrays cannot be mixed in one ingest")
        sources.append(MaskSource(f"mask {i}", array=x))
    return sources
