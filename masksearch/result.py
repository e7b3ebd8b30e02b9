"""Query results and their statistics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from .errors import MaskSearchError
from .exec.stats import QueryStats

__all__ = ["QueryStats", "Result"]

PANDAS_MISSING = "to_pandas needs pandas: pip install masksearch[pandas]"


class Result:
    """Rows of a query. Iterating gives the rows as tuples (as ``rows()``); convert with
    ``to_arrow()``, ``to_pylist()`` or ``to_pandas()``."""

    def __init__(self, table: pa.Table, stats: QueryStats):
        self._table = table
        self.stats = stats

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_pylist(self) -> list[dict[str, Any]]:
        return self._table.to_pylist()

    def rows(self) -> list[tuple[Any, ...]]:
        cols = [c.to_pylist() for c in self._table.columns]
        return list(zip(*cols, strict=True))

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (pandas is an extra: ``pip install masksearch[pandas]``)."""
        try:
            import pandas  # noqa: F401  (pyarrow's conversion needs it)
        except ImportError:
            raise MaskSearchError(PANDAS_MISSING) from None
        return self._table.to_pandas()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows())

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        from .format import format_table

        return format_table(self._table) + f"\n({len(self)} rows; {self.stats.summary()})"
