"""Names for the NumPy arrays the executor passes around."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]            # any dtype
Ints = NDArray[np.int64]        # row positions, counts, boxes
Floats = NDArray[np.float64]    # bounds of expressions
Bools = NDArray[np.bool_]       # masks over rows
