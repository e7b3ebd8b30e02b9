"""Carry out DELETE, UPDATE and ALTER TABLE: find the rows with the query engine (the index
decides the predicate where it can), then commit the change in one manifest rename.

Everything happens under the writer lock, over the latest committed state: the rows a
statement finds are the rows it changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import QueryError
from ..exec.control import QueryControl
from ..exec.executor import FragmentRunner, execute
from ..exec.settings import ExecSettings
from ..exec.stats import QueryStats
from ..lang import ast
from ..lang.mutations import (
    BoundAddColumn,
    BoundChange,
    BoundDelete,
    BoundUpdate,
    bind_change,
)
from ..plan.physical import PhysicalPlan
from ..plan.planner import plan
from ..store.changes import Change
from ..store.snapshot import Snapshot
from ..store.store import Store
from .columns import ColumnValueError, added_column, dropped_column, updated_segments


@dataclass(frozen=True)
class Outcome:
    """What a statement did: rows it changed, and how its rows were found."""

    rows_affected: int
    stats: QueryStats
    bound: BoundChange
    plan: PhysicalPlan | None = None


def run_change(store: Store, stmt: ast.Change | ast.Explain, text: str, *,
               use_index: bool = True, control: QueryControl | None = None,
               settings: ExecSettings | None = None,
               runner: FragmentRunner | None = None) -> Outcome:
    """Carry out ``stmt`` (``text``) on ``store`` in one atomic commit; it is bound against
    the columns as they are once this writer holds the lock. ``runner``: where the query
    that finds the rows runs its fragments (a cluster), as for a SELECT."""
    with store.writing() as snapshot:
        bound = bind_change(stmt, text, snapshot.columns)
        if isinstance(bound, (BoundDelete, BoundUpdate)):
            physical = plan(bound.query)
            # read_only: the CHIs lazy indexing builds are not saved, so that a statement
            # refused after its query (a value of the wrong type) leaves every file as it was.
            found, stats = execute(physical, snapshot, store.aggregate_cache,
                                   use_index=use_index, control=control, settings=settings,
                                   read_only=True, runner=runner)
            change = (_deletion(snapshot, found) if isinstance(bound, BoundDelete)
                      else _update(snapshot, found, bound))
            affected = found.num_rows
        else:
            physical, stats, affected = None, QueryStats(used_index=use_index), 0
            change = (added_column(snapshot, bound) if isinstance(bound, BoundAddColumn)
                      else dropped_column(snapshot, bound))
        if affected or not isinstance(bound, (BoundDelete, BoundUpdate)):
            store.commit(snapshot, change)
        del snapshot
        store.finish_write()
    return Outcome(affected, stats, bound, physical)


def _update(snapshot: Snapshot, found: pa.Table, bound: BoundUpdate) -> Change:
    """The change of an UPDATE; a value that does not fit its column is an error located
    at the value's expression."""
    try:
        return updated_segments(snapshot, found, bound.columns, bound.boxes)
    except ColumnValueError as e:
        pos = bound.positions[bound.columns.index(e.target)] if e.target in bound.columns \
            else None
        if pos is None:
            raise
        raise QueryError(e.message, bound.text, pos[0], pos[1]) from None


def _deletion(snapshot: Snapshot, found: pa.Table) -> Change:
    """The change deleting the rows of ``found`` (its mask_id column)."""
    where = snapshot.locate_many(found.column(0).to_numpy())
    change = Change()
    for k in np.unique(where.segment).tolist():
        name = snapshot.segments[k].directory.name
        change.deleted[name] = where.row[where.segment == k]
    return change



def describe_change(bound: BoundChange, outcome: Outcome | None = None) -> list[str]:
    """EXPLAIN of a statement that changes data: what it does, over the plan of the query
    finding its rows (with ANALYZE, ``outcome``: what each operator did)."""
    if isinstance(bound, (BoundAddColumn,)):
        return [f"AddColumn {bound.name} {bound.kind}"
                + ("" if bound.default is None else f" default {bound.default!r}")]
    if not isinstance(bound, (BoundDelete, BoundUpdate)):
        return [f"DropColumn {bound.name}"]
    head = "Delete" if isinstance(bound, BoundDelete) else \
        f"Update set {', '.join((*bound.columns, *(n for n, _ in bound.boxes)))}"
    physical = outcome.plan if outcome is not None and outcome.plan is not None \
        else plan(bound.query)
    ops = outcome.stats.operators if outcome is not None else None
    lines = [head, *("  " + line for line in physical.describe(ops).splitlines())]
    if outcome is not None:
        lines += ["", f"{outcome.rows_affected} rows affected", *outcome.stats.lines()]
    return lines
