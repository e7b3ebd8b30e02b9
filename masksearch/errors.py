"""One error hierarchy: every error says what is wrong and where."""

from __future__ import annotations


class MaskSearchError(Exception):
    """Base class of every error masksearch raises on purpose."""


class QueryError(MaskSearchError):
    """An error in a query, located in the query text when the position is known."""

    def __init__(self, message: str, text: str | None = None, line: int | None = None,
                 column: int | None = None):
        self.message = message
        self.text = text
        self.line = line
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        if self.text is None or self.line is None or self.column is None:
            return self.message
        lines = self.text.splitlines() or [""]
        src = lines[self.line - 1] if 0 < self.line <= len(lines) else ""
        caret = " " * (self.column - 1) + "^"
        return (f"{self.message}\n  at line {self.line}, column {self.column}:\n"
                f"    {src}\n    {caret}")


class QuerySyntaxError(QueryError):
    """The query text does not follow the grammar."""


class BindError(QueryError):
    """The query is well-formed but names unknown columns or mixes types."""


class StoreError(MaskSearchError):
    """The database directory or one of its files is unusable."""


class IngestError(MaskSearchError):
    """Input given to ``ingest`` was refused; the database is unchanged."""


class QueryCancelled(MaskSearchError):
    """A running query was cancelled; nothing was changed."""


class QueryTimeout(QueryCancelled):
    """A running query ran past its timeout and was stopped; nothing was changed."""
