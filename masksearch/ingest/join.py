"""Joining a metadata table to mask files by key, never by position.

The table's key column names each file by its path as given, its name or its stem. Every
file needs exactly one row and every row exactly one file; duplicate keys, rows without a
file, files without a row (unless allowed: their columns are then NULL) and keys that name
several files are errors that list them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import IngestError
from .items import MaskItem

SHOWN = 5    # items a message lists before "and N more"


def _count(n: int, one: str, many: str) -> str:
    return f"1 {one}" if n == 1 else f"{n} {many}"


def _listed(names: Sequence[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def key_rows(items: Sequence[MaskItem], keys: Sequence[object], key: str, origin: str,
             allow_missing: bool) -> list[int | None]:
    """For each item, the row of the table whose key names it (None: no row, allowed)."""
    row_of: dict[str, int] = {}
    for r, value in enumerate(keys):
        if value is None or value == "":
            raise IngestError(f"{origin}: row {r} has no {key!r} (the key that names its file)")
        text = str(value)
        if text in row_of:
            raise IngestError(f"{origin}: key {text!r} appears twice, in rows {row_of[text]} "
                              f"and {r}; each file needs one row")
        row_of[text] = r
    rows: list[int | None] = []
    users: dict[int, list[str]] = {}
    for item in items:
        matched = sorted({row_of[k] for k in item.keys if k in row_of})
        if len(matched) > 1:
            raise IngestError(f"{item.label}: rows {matched} of {origin} all name it (by "
                              f"{key!r}); keep one")
        rows.append(matched[0] if matched else None)
        if matched:
            users.setdefault(matched[0], []).append(item.label)
    _check_matches(items, rows, users, row_of, key, origin, allow_missing)
    return rows


def _check_matches(items: Sequence[MaskItem], rows: list[int | None],
                   users: dict[int, list[str]], row_of: dict[str, int], key: str, origin: str,
                   allow_missing: bool) -> None:
    shared = {r: labels for r, labels in users.items() if len(labels) > 1}
    if shared:
        r, labels = next(iter(shared.items()))
        name = next(k for k, v in row_of.items() if v == r)
        raise IngestError(f"{origin}: key {name!r} (row {r}) names {len(labels)} files: "
                          f"{_listed(labels)}; use a longer key (the file's name or path)")
    unused = [f"{k!r} (row {r})" for k, r in row_of.items() if r not in users]
    if unused:
        raise IngestError(f"{origin}: {_count(len(unused), 'row names', 'rows name')} no "
                          f"file being ingested: {_listed(unused)}")
    missing = [item.label for item, r in zip(items, rows, strict=True) if r is None]
    if missing and not allow_missing:
        raise IngestError(f"{_count(len(missing), 'file has', 'files have')} no row in "
                          f"{origin} (by {key!r}): "
                          f"{_listed(missing)}; add rows, or pass allow_missing=True "
                          "(--allow-missing) to give them NULL metadata")
