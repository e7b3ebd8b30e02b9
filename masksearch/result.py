"""Query results and their statistics."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from .errors import MaskSearchError
from .exec.stats import QueryStats

__all__ = ["QueryStats", "Result"]

PANDAS_MISSING = "to_pandas needs pandas: pip install masksearch[pandas]"


class Result:
    """Rows of a query. Iterating gives the rows as tuples (as ``rows()``); convert with
    ``to_arrow()``, ``to_pylist()`` or ``to_pandas()``; see them as pictures in a notebook
    (``_repr_html_``), with ``save_html`` or ``contact_sheet``."""

    def __init__(self, table: pa.Table, stats: QueryStats, *, database: Any = None,
                 query: Any = None):
        self._table = table
        self.stats = stats
        self._database = database      # the Database and bound query the pictures need
        self._query = query

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

    def _repr_html_(self) -> str:
        """Jupyter's and VS Code's view: up to 50 cards (pictures of the masks with the
        query's CP term outlined, the values, the metadata) and how many rows are not
        shown; no JavaScript."""
        from .render.gallery import notebook_html

        return notebook_html(self._database, self._query, self._table)

    def save_html(self, path: str | os.PathLike[str], *, per_page: int = 50,
                  max_rows: int = 1000, size: int = 160) -> int:
        """Write the first ``max_rows`` rows as cards to one self-contained HTML file, in
        pages of ``per_page`` (pictures embedded, no JavaScript, no external files);
        ``size`` is the thumbnails' longest side. Returns the number of cards."""
        from .render.gallery import save_html

        return save_html(self._database, self._query, self._table, path, per_page=per_page,
                         max_rows=max_rows, size=size)

    def contact_sheet(self, path: str | os.PathLike[str], *, columns: int = 6,
                      max_rows: int = 60, size: int = 160) -> int:
        """Write the pictures of the first ``max_rows`` rows to one PNG, ``columns``
        tiles a row, each captioned with its first values. Returns the number of tiles."""
        from .render.gallery import contact_sheet

        return contact_sheet(self._database, self._query, self._table, path,
                             columns=columns, max_rows=max_rows, size=size)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows())

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        from .format import format_table

        return format_table(self._table) + f"\n({len(self)} rows; {self.stats.summary()})"
