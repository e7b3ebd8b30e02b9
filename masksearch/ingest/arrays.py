"""Masks given in memory: an (N, H, W) or (N, 1, H, W) array or tensor, one 2-D mask, or a
sequence of 2-D (or (1, H, W)) arrays and tensors."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np

from ..errors import IngestError
from .items import MaskItem
from .pixels import to_numpy


def layer(stack: np.ndarray, i: int) -> np.ndarray:
    """Mask ``i`` of a stack (loaded when called)."""
    return stack[i]


def _same(mask: Any) -> Any:
    return mask


def is_array_like(obj: Any) -> bool:
    """A NumPy array or a tensor (anything NumPy can take through __array__ or DLPack)."""
    return isinstance(obj, np.ndarray) or hasattr(obj, "__array__") or hasattr(
        obj, "__dlpack__")


def array_items(masks: Any) -> list[MaskItem]:
    """One item per mask of an array or tensor holding one mask or a stack of them."""
    array = to_numpy(masks, "masks")
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]        # (N, 1, H, W): a batch of one-channel masks
    if array.ndim == 3:
        if array.shape[0] == 0:
            raise IngestError("masks: nothing to ingest (the array holds 0 masks)")
        return [MaskItem(f"mask {i}", partial(layer, array, i)) for i in range(array.shape[0])]
    if array.ndim == 2:
        return [MaskItem("mask 0", partial(_same, array))]
    raise IngestError(f"masks: expected an (N, H, W) or (N, 1, H, W) array, or 2-D masks, "
                      f"got shape {array.shape}")


def sequence_items(masks: Iterable[Any]) -> list[MaskItem]:
    """One item per element of a sequence of masks (arrays or tensors, each 2-D)."""
    items = []
    for i, mask in enumerate(masks):
        items.append(MaskItem(f"mask {i}", partial(_same, mask)))
    if not items:
        raise IngestError("masks: nothing to ingest")
    return items
