"""Filters: WHERE on metadata alone, and WHERE or HAVING decided from bounds where they can
be, the rest left to verification."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..lang import ast
from ..plan.operators import BoundFilter, GroupFilter
from ..store.arrow_compute import fill_null
from ..store.numpy_arrow import array_numpy, scalar
from .arrays import Bools, Ints
from .intervals import outcomes
from .settings import ExecSettings
from .stats import StatsRecords
from .units import Units


def truth(value: pa.Array) -> np.ndarray:
    """A predicate's values as booleans, NULL as FALSE."""
    if pa.types.is_null(value.type):
        return np.zeros(len(value), bool)
    return np.asarray(array_numpy(fill_null(value, scalar(False))), dtype=bool)


def filter_units(op: BoundFilter | GroupFilter, units: Units, records: StatsRecords,
                 settings: ExecSettings, refine: bool = True) -> tuple[Ints, Bools]:
    """Run ``op`` over every unit, recording what it decided: the candidates (units that
    may satisfy its predicate) and, over all units, which the bounds left undecided."""
    n = units.num_rows
    with records.timed(op) as rec:
        keep, undecided = bound_filter(units, op.predicate, settings, refine)
        kept, unsure = np.count_nonzero(keep), np.count_nonzero(undecided)
        rec.seen += n
        rec.accepted += kept - unsure       # undecided units are kept ones
        rec.rejected += len(keep) - kept
        rec.undecided += unsure
    return np.flatnonzero(keep), undecided


def bound_filter(units: Units, predicate: ast.Expr, settings: ExecSettings,
                 refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The units that may satisfy ``predicate``, and which of those bounds cannot decide.

    Undecided units get a second look with cell-by-cell bounds before they count as such,
    a sample first when they are many: if it decides too few, the others are not refined.
    """
    o = outcomes(predicate, units)
    keep = o.may_true
    undecided = keep & ~o.must_true
    todo = np.flatnonzero(undecided) if refine else np.zeros(0, np.int64)
    for idx in (todo[:settings.refine_sample], todo[settings.refine_sample:]):
        if not len(idx):
            break
        units.refine(idx)
        o2 = outcomes(predicate, units.take(idx))
        keep[idx] = o2.may_true
        undecided[idx] = o2.may_true & ~o2.must_true
        if undecided[idx].sum() > (1 - settings.refine_pays) * len(idx):
            break
    return keep, undecided
