"""``db.writer()``: masks added batch by batch (an inference loop), committed at the end.

The writer holds the writer lock for its block and feeds every ``add`` into one segment
writer, so batches fill whole segments (memory: about one segment per pixel type) instead of
making one small segment each. It commits when the block ends (and every ``commit_every``
masks, if set); an exception or Ctrl-C inside the block commits nothing of what was added
since the last commit.
"""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial
from types import TracebackType

import numpy as np

from ..errors import IngestError
from ..store.changes import Change
from ..store.snapshot import Snapshot
from ..store.store import Store
from ..store.writer import ColumnTypes, IngestBatch, SegmentWriter
from .pipeline import IngestOptions, Prepared, prepare


class MaskWriter:
    """Adds masks in one or more commits; use as a context manager (``with db.writer(...)
    as w: w.add(masks, image_id=...)``)."""

    def __init__(self, store: Store, options: IngestOptions, commit_every: int | None = None,
                 index: bool | None = None):
        if commit_every is not None and commit_every < 1:
            raise IngestError(f"commit_every must be a positive number of masks, got "
                              f"{commit_every}")
        self.store, self.options = store, options
        self.commit_every, self.index = commit_every, index
        self.committed = 0            # masks committed so far
        self._stack: ExitStack | None = None
        self._snapshot: Snapshot | None = None
        self._writer: SegmentWriter | None = None
        self._types: ColumnTypes | None = None
        self._broken: str | None = None    # why an add failed midway: nothing more commits

    def __enter__(self) -> MaskWriter:
        stack = ExitStack()
        self._snapshot = stack.enter_context(self.store.writing())
        self._stack = stack
        self._types = ColumnTypes(self._snapshot.manifest.columns)
        self._writer = self.store.segment_writer(self._snapshot.manifest, self._types,
                                                 self.index)
        return self

    def add(self, masks: object, *, image_id: object = None, model_id: object = None,
            mask_type: object = None, metadata: object = None, key: str | None = None
            ) -> list[int]:
        """Add masks as ``Database.ingest`` takes them (the writer's values are the
        defaults); returns their mask ids, which are theirs once committed."""
        writer, types = self._writer, self._types
        if writer is None or types is None:
            raise IngestError("the writer is not open: use it in a with block")
        if self._broken is not None:
            raise IngestError(f"the writer failed earlier ({self._broken}); nothing more is "
                              "committed")
        o = self.options
        options = IngestOptions(image_id if image_id is not None else o.image_id,
                                model_id if model_id is not None else o.model_id,
                                mask_type if mask_type is not None else o.mask_type,
                                metadata, key, o.allow_missing, o.box_format, o.dtype, o.scale)
        batches = _checked(prepare(masks, options, types.ordered(),
                                   self.store.write.segment_masks), types)
        first = writer.manifest.next_mask_id + writer.count
        try:
            for batch in batches:
                writer.add(batch)
        except BaseException as e:   # e.g. a full disk: what this add wrote cannot be told
            self._broken = f"{type(e).__name__}: {e}"
            raise
        ids = list(range(first, writer.manifest.next_mask_id + writer.count))
        if self.commit_every is not None and writer.count >= self.commit_every:
            self.commit()
        return ids

    def commit(self) -> None:
        """Commit what was added since the last commit."""
        writer, types, snapshot = self._writer, self._types, self._snapshot
        if writer is None or types is None or snapshot is None:
            raise IngestError("the writer is not open: use it in a with block")
        if self._broken is not None:
            raise IngestError(f"the writer failed earlier ({self._broken}); nothing more is "
                              "committed")
        if not writer.count:
            return
        try:
            change = Change(added=writer.finish(), columns=types.ordered(),
                            next_mask_id=snapshot.manifest.next_mask_id + writer.count)
            self.store.commit(snapshot, change)
        except BaseException:
            self.store.roll_back(writer.written)
            raise
        self.committed += writer.count
        self._snapshot = None
        del snapshot      # no longer read: let the reader pin move on
        self.store.finish_write()
        self._snapshot = snapshot = self.store.snapshot()
        self._writer = self.store.segment_writer(snapshot.manifest, types, self.index)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        stack, self._stack = self._stack, None
        assert stack is not None
        with stack:
            if kind is None and self._broken is None:
                self.commit()
            elif self._writer is not None:
                self.store.roll_back(self._writer.written)
            if kind is None and self._broken is not None:
                raise IngestError(f"the writer failed ({self._broken}); nothing since the "
                                  "last commit was committed")
            self._writer = self._types = self._snapshot = None


def _checked(prepared: Prepared, types: ColumnTypes) -> list[IngestBatch]:
    """The batches of one ``add``, every mask read and checked and every column's type
    checked before any is handed to the writer: a refused add adds nothing."""
    probe = ColumnTypes(types.types)
    batches = []
    for batch in prepared.batches:
        probe.add(batch.columns)
        pixels = [load() for load in batch.loads]
        batches.append(IngestBatch(batch.labels, [partial(_same, p) for p in pixels],
                                   batch.columns))
    return batches


def _same(pixels: np.ndarray) -> np.ndarray:
    return pixels
