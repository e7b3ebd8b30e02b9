"""A mask's pixels as the store keeps them: a 2-D NumPy array of a supported dtype.

Arrays, tensors (anything with ``__array__`` or ``__dlpack__``, copied to the host) and
arrays of other dtypes are converted when no value changes; a lossy conversion happens only
when asked for (``Conversion``); anything else is refused, naming the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import IngestError

SUPPORTED_DTYPES = ("bool", "uint8", "uint16", "float16", "float32")
FLOAT32_EXACT_INTS = 2 ** 24   # every integer of at most this magnitude is a float32


@dataclass(frozen=True)
class Conversion:
    """Lossy conversions the user asked for. ``dtype="float32"`` stores float64 masks as
    float32 (rounded to the nearest float32). ``scale=s`` stores ``pixels / s`` as float32:
    ``scale=255`` maps 0..255 to [0, 1], each value being float32(k / 255), the float32
    nearest to k / 255 (not the decimal k / 255: write ranges with that in mind)."""

    dtype: str | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.dtype not in (None, "float32"):
            raise IngestError(f"dtype={self.dtype!r}: the only lossy conversion is "
                              "dtype='float32' (for float64 masks)")
        if self.scale is not None and not (isinstance(self.scale, (int, float))
                                           and np.isfinite(self.scale) and self.scale > 0):
            raise IngestError(f"scale={self.scale!r}: must be a positive number")

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        if self.scale is not None:
            if pixels.dtype.kind not in "biuf":
                return pixels
            return (pixels.astype(np.float64) / float(self.scale)).astype(np.float32)
        if self.dtype == "float32" and pixels.dtype == np.float64:
            with np.errstate(over="ignore"):
                return pixels.astype(np.float32)
        return pixels


def to_numpy(obj: Any, label: str) -> np.ndarray:
    """An array from a NumPy array, a tensor or another array-like, on the host."""
    if isinstance(obj, np.ndarray):
        return obj
    value = obj
    if hasattr(value, "detach") and callable(value.detach):   # PyTorch: leave autograd
        value = value.detach()
    if hasattr(value, "cpu") and callable(value.cpu):          # PyTorch (GPU or CPU)
        value = value.cpu()
    if type(value).__module__.split(".")[0] == "cupy" and hasattr(value, "get"):
        value = value.get()                                    # CuPy: to host memory
    try:
        if hasattr(value, "__array__"):
            return np.asarray(value)
        if hasattr(value, "__dlpack__"):
            return np.from_dlpack(value)
    except (TypeError, ValueError, RuntimeError, BufferError) as e:
        raise IngestError(f"{label}: cannot read the {type(obj).__name__} as an array "
                          f"({e})") from None
    raise IngestError(f"{label}: expected an array (NumPy, or a tensor with __array__ or "
                      f"__dlpack__), got {type(obj).__name__}")


def check_mask(pixels: Any, label: str, conversion: Conversion | None = None) -> np.ndarray:
    """A C-contiguous native-endian 2-D array of a supported dtype, or an ``IngestError``.

    Other integer and float dtypes are converted when no value changes (see ``_lossless``);
    ``conversion`` applies the lossy conversions asked for first."""
    pixels = to_numpy(pixels, label)
    if pixels.ndim == 3 and pixels.shape[0] == 1:
        pixels = pixels[0]      # a (1, H, W) tensor: one channel
    if pixels.ndim != 2:
        raise IngestError(f"{label}: a mask must be 2-D, got shape {pixels.shape}")
    if pixels.size == 0:
        raise IngestError(f"{label}: the mask is empty (shape {pixels.shape})")
    if conversion is not None:
        pixels = conversion.apply(pixels)
    if pixels.dtype.name not in SUPPORTED_DTYPES:
        pixels = _lossless(pixels, label)
    # The first pixel settles the usual case without a pass over the others.
    if pixels.dtype.kind == "f" and np.isnan(pixels.flat[0]) and np.isnan(pixels).all():
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
                          f"{c}) = {pixels[r, c]} would change); pass dtype='float32' to "
                          "round them (or convert with .astype(np.float32))")
    raise IngestError(f"{refuse} (convert with .astype(...))")
