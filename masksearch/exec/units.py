"""What the filters and selections need of the units they choose among: rows, or groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .exact import Env


class Units(Env, Protocol):
    """Rows (``RowBatch``) or groups (``GroupBatch``) under evaluation: the environment of
    exact and interval evaluation, with ways to narrow bounds and to make values exact."""

    tie_columns: tuple[str, ...]     # break ties in ORDER BY, ascending
    coarse_pending: bool             # groups: only trivial bounds so far

    @property
    def known(self) -> np.ndarray:
        """(units, terms): whether each term's value is exact."""
        ...

    def take(self, idx: np.ndarray) -> Units: ...

    def refine(self, idx: np.ndarray) -> None:
        """Narrower bounds for units ``idx`` (cell by cell)."""
        ...

    def resolve(self, idx: np.ndarray, terms: Sequence[int]) -> None:
        """Make ``terms`` exact for units ``idx``."""
        ...

    def bound_coarse(self) -> None:
        """Replace trivial bounds by the index's (groups)."""
        ...
