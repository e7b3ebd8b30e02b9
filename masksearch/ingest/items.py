"""The unit of ingest: one mask to load, where it came from, and the names it goes by."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class MaskItem:
    """One mask to ingest. ``load()`` returns its raw pixels (any array-like; the pipeline
    checks and converts them), ``label`` says where it came from in error messages
    ("mask 3", "seg/cat.png", "instances.json, annotation 17"), ``keys`` are the names a
    metadata table may join it by (a file's path as given, its name, its stem), and
    ``image_id`` the id it gets when the caller gives none."""

    label: str
    load: Callable[[], Any]
    keys: tuple[str, ...] = ()
    image_id: str | None = None     # the image_id it gets when none is given (a file's stem)


@dataclass
class SourceBatch:
    """Some masks of a source, with the metadata the source itself gives for each of them
    (a COCO file gives image_id, category, bbox...): column name -> one value per item."""

    items: list[MaskItem]
    columns: dict[str, list[Any] | np.ndarray] = field(default_factory=dict)


class Source(Protocol):
    """A source that streams its masks in batches (a file of any size: its memory is that
    of one batch)."""

    @property
    def total(self) -> int | None:
        """How many masks it holds, if known before reading them all."""
        ...

    def batches(self, size: int) -> Iterator[SourceBatch]:
        """The masks, ``size`` at a time at most, in order."""
        ...
