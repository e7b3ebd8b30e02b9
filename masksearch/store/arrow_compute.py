"""Arrow compute functions, called by name through ``pyarrow._compute``.

Importing ``pyarrow.compute`` builds about 290 Python wrappers with their docstrings: 40 ms
of the first query in every process (a CLI query on a small database has 0.4 s in all). The
executor needs a dozen of those functions; these call the same C++ functions with the same
options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow._compute as _compute


def call(name: str, *args: Any, options: Any = None) -> Any:
    """Arrow compute function ``name`` on ``args`` (arrays, scalars, tables)."""
    return _compute.call_function(name, list(args), options)


def function(name: str) -> Any:
    """A callable for Arrow compute function ``name``, like ``pyarrow.compute.<name>``
    called without options."""

    def run(*args: Any) -> Any:
        return _compute.call_function(name, list(args))

    run.__name__ = name
    return run


def cast_unsafe(values: Any, target: pa.DataType) -> Any:
    """``pyarrow.compute.cast(values, target, safe=False)``."""
    return call("cast", values, options=_compute.CastOptions.unsafe(target))


def cast(values: Any, target: pa.DataType) -> Any:
    """``pyarrow.compute.cast(values, target)`` (safe: a lossy cast is an error)."""
    return call("cast", values, options=_compute.CastOptions.safe(target))


def sort_indices(values: Any, sort_keys: Sequence[tuple[str, ...]]) -> Any:
    """``pyarrow.compute.sort_indices(values, sort_keys=sort_keys)`` (NULLs at the end
    unless a key says otherwise)."""
    return call("sort_indices", values, options=_compute.SortOptions(sort_keys=list(sort_keys)))


def take(values: Any, indices: Any) -> Any:
    """``values.take(indices)`` of a table or an array (indices checked)."""
    return call("take", values, indices)


def filter_rows(values: Any, mask: Any) -> Any:
    """``values.filter(mask)`` of a table or an array (NULL in ``mask``: dropped)."""
    return call("filter", values, mask)


def fill_null(values: Any, fill: Any) -> Any:
    """``values.fill_null(fill)``: NULLs replaced by the scalar ``fill`` (cast to the values'
    type first, as pyarrow does)."""
    if fill.type != values.type:
        fill = cast(fill, values.type)
    return call("coalesce", values, fill)
