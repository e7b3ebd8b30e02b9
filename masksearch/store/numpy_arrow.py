"""NumPy <-> Arrow conversions that do not import pandas.

In pyarrow 26 every converting call between NumPy and Arrow imports pandas on its first use
(a quarter of a second): ``pa.array`` of a NumPy array (its pandas shim asks ``is_series``),
``Array.to_numpy`` and ``ChunkedArray.to_numpy`` (the C++ conversion goes through pandas'
machinery), ``pa.table`` of a dict. ``pa.Array.from_buffers`` and ``np.frombuffer`` over
``Array.buffers()`` do not. The query path converts through these helpers, so that a
command on a small database loads no pandas (``tests/test_cold_start.py`` checks it); types
they do not handle (strings, nested, nulls) go through pyarrow's own conversion.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Arrow type id -> NumPy dtype for the fixed-width types held as plain little-endian values.
_NUMERIC = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32,
            pa.int64(): np.int64, pa.uint8(): np.uint8, pa.uint16(): np.uint16,
            pa.uint32(): np.uint32, pa.uint64(): np.uint64, pa.float16(): np.float16,
            pa.float32(): np.float32, pa.float64(): np.float64}
_ARROW = {np.dtype(v): k for k, v in _NUMERIC.items()}


def array_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``array.to_numpy(zero_copy_only=False)`` without pandas for numeric and boolean
    arrays without nulls (read-only views where possible); others through pyarrow."""
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 1:
            return array_numpy(array.chunk(0))
        if array.num_chunks == 0:
            dtype = _NUMERIC.get(array.type)
            if dtype is not None or pa.types.is_boolean(array.type):
                return np.empty(0, dtype if dtype is not None else np.bool_)
            return array.to_numpy()
        if array.null_count == 0 and (array.type in _NUMERIC
                                      or pa.types.is_boolean(array.type)):
            return np.concatenate([array_numpy(c) for c in array.chunks])
        return array.to_numpy()
    if array.null_count:
        return array.to_numpy(zero_copy_only=False)
    dtype = _NUMERIC.get(array.type)
    n, offset = len(array), array.offset
    if dtype is not None:
        data = array.buffers()[1]
        if data is None:
            return np.empty(0, dtype)
        return np.frombuffer(data, dtype, count=n, offset=offset * np.dtype(dtype).itemsize)
    if pa.types.is_boolean(array.type):
        data = array.buffers()[1]
        if data is None or n == 0:
            return np.zeros(n, np.bool_)
        bits = np.frombuffer(data, np.uint8, count=(offset + n + 7) // 8)
        return np.unpackbits(bits, bitorder="little")[offset:offset + n].astype(np.bool_)
    return array.to_numpy(zero_copy_only=False)


def numeric_values_and_nulls(array: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """A numeric array's values (0 where NULL) and its NULL mask, without pandas; None for
    other types."""
    dtype = _NUMERIC.get(array.type)
    if dtype is None:
        return None
    if not array.null_count:
        return array_numpy(array), np.zeros(len(array), np.bool_)
    n, offset = len(array), array.offset
    validity, data = array.buffers()[:2]
    values = np.frombuffer(data, dtype, count=n, offset=offset * np.dtype(dtype).itemsize).copy()
    bits = np.frombuffer(validity, np.uint8, count=(offset + n + 7) // 8)
    null = ~np.unpackbits(bits, bitorder="little")[offset:offset + n].astype(np.bool_)
    values[null] = 0
    return values, null


def numpy_array(values: np.ndarray, arrow_type: pa.DataType | None = None,
                mask: np.ndarray | None = None) -> pa.Array:
    """``pa.array(values, arrow_type, mask=mask)`` without pandas for a 1-D numeric or
    boolean NumPy array (``mask`` True marks a null; float NaN stays a value, as
    ``pa.array`` of an ndarray keeps it); other types through pyarrow."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"a 1-D array is needed, not {values.ndim}-D")
    if arrow_type is None:
        arrow_type = pa.bool_() if values.dtype == np.bool_ else _ARROW.get(
            values.dtype.newbyteorder("=") if values.dtype.byteorder == ">" else values.dtype)
    if arrow_type is None or not (arrow_type in _NUMERIC or pa.types.is_boolean(arrow_type)):
        return pa.array(values, arrow_type, mask=mask)
    n = len(values)
    validity, nulls = None, 0
    if mask is not None:
        mask = np.asarray(mask, np.bool_)
        if mask.shape != values.shape:
            raise ValueError(f"mask of shape {mask.shape} for values of shape {values.shape}")
        nulls = int(np.count_nonzero(mask))
        if nulls:
            validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
    if pa.types.is_boolean(arrow_type):
        data = np.packbits(values.astype(np.bool_, copy=False), bitorder="little")
    else:
        dtype = np.dtype(_NUMERIC[arrow_type]).newbyteorder("<")
        if not np.can_cast(values.dtype, dtype, "safe"):
            return pa.array(values, arrow_type, mask=mask)   # pyarrow's checked conversion
        data = np.ascontiguousarray(values.astype(dtype, copy=False))
    return pa.Array.from_buffers(arrow_type, n, [validity, pa.py_buffer(data)],
                                 null_count=nulls)


def scalar(value: object, arrow_type: pa.DataType | None = None) -> pa.Scalar:
    """``pa.scalar(value)`` without pandas for a bool, an int64, a float or a str (the types
    ``pa.scalar`` gives them), and a NULL of ``arrow_type``; other values through
    pyarrow."""
    if value is None and arrow_type is not None:
        return pa.nulls(1, arrow_type)[0]
    if arrow_type is not None:
        return pa.scalar(value, arrow_type)
    if isinstance(value, bool):
        return numpy_array(np.array([value], np.bool_))[0]
    if isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
        return numpy_array(np.array([value], np.int64))[0]
    if isinstance(value, float):
        return numpy_array(np.array([value], np.float64))[0]
    if isinstance(value, str):
        data = value.encode()
        offsets = np.array([0, len(data)], np.int32)
        return pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(offsets),
                                                      pa.py_buffer(data)])[0]
    return pa.scalar(value)
