"""Numba kernels: plain arrays in, caller-allocated arrays out, no Python orchestration.

The modules load on first use (``from .. import kernels``, then
``kernels.count_kernels.count_in_range(...)``): importing Numba takes a fifth of a second
and preparing its compiler another third on the first kernel call, which commands that run
no kernel (``import masksearch``, ``masksearch info``, opening the shell) do without.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import (
        bound_kernels,
        checksum_kernels,
        chi_kernels,
        codec_kernels,
        count_kernels,
        plane_kernels,
        tile_kernels,
    )

__all__ = ["bound_kernels", "checksum_kernels", "chi_kernels", "codec_kernels", "count_kernels",
           "plane_kernels", "tile_kernels"]
_MODULES = frozenset(__all__)


def __getattr__(name: str) -> Any:
    """A kernel module, imported (and set as this package's attribute) on first access."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return import_module(f"{__name__}.{name}")
