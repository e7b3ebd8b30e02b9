"""Choosing the output units (rows, or groups), one function per selection of the plan:
verify every candidate, walk in key order, or read best bound first and stop early."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..lang import ast
from ..plan.operators import BoundOrderTopK, KeyOrderTopK, Selection, VerifyAll
from ..store.arrow_compute import sort_indices, take
from ..store.numpy_arrow import array_numpy, numeric_values_and_nulls, numpy_array
from .arrays import Ints
from .exact import evaluate, numbers
from .filtering import truth
from .intervals import Interval, interval
from .settings import ExecSettings
from .stats import StatsRecords
from .units import Units


@dataclass
class Chooser:
    """What choosing needs: the units, the part of WHERE (rows) or HAVING (groups) that
    bounds left ``undecided``, the terms that make it exact (``all_terms``) and those the
    output needs exact."""

    units: Units
    condition: ast.Expr | None
    undecided: np.ndarray
    all_terms: list[int]
    output_terms: list[int]
    settings: ExecSettings
    # A top-k split over shards: a value the k-th result is known to reach (other shards
    # hold k units that reach it), so units that cannot reach it are out.
    floor: float | None = None

    def qualify(self, idx: np.ndarray) -> np.ndarray:
        """The units of ``idx`` that satisfy the condition, with every output value exact."""
        if not len(idx):
            return idx
        unsure = self.undecided[idx]
        self.units.resolve(idx[unsure], self.all_terms if unsure.any() else [])
        self.units.resolve(idx, self.output_terms)
        check = idx[unsure]
        if len(check):
            assert self.condition is not None
            ok = truth(evaluate(self.condition, self.units.take(check)))
            idx = idx[~np.isin(idx, check[~ok])]
        return idx

    def sort(self, idx: np.ndarray, order_by: tuple[ast.OrderItem, ...]) -> np.ndarray:
        """``idx`` in ORDER BY order, NULLs last, ties by the tie columns ascending."""
        if len(idx) <= 1:
            return idx
        if not order_by:
            return self._tie_order(idx)
        table, keys = sort_keys(self.units.take(idx), order_by)
        order = numeric_sort_order(table, keys)
        if order is None:
            order = array_numpy(sort_indices(table, keys))
        ordered: Ints = idx[order]
        return ordered

    def _tie_order(self, idx: np.ndarray) -> np.ndarray:
        """``idx`` by the tie columns alone, without taking the units: one integer column
        without NULLs (mask_id) in NumPy, where it is often in order already."""
        tie = list(self.units.tie_columns)
        col = self.units.column(tie[0])
        if len(tie) == 1 and pa.types.is_integer(col.type) and not col.null_count:
            values = array_numpy(col)[idx]
            if (values[1:] >= values[:-1]).all():
                return idx
            ordered: Ints = idx[np.argsort(values, kind="stable")]
            return ordered
        keys = sort_spec((), self.units.tie_columns)
        table = take(self.units.rows.select(tie), numpy_array(idx, pa.int64())).rename_columns(
            [k[0] for k in keys])
        ordered = idx[array_numpy(sort_indices(table, keys))]
        return ordered


SortSpec = list[tuple[str, str, str]]


def sort_spec(order_by: tuple[ast.OrderItem, ...], tie_columns: tuple[str, ...]) -> SortSpec:
    """Arrow sort keys over the table of ``sort_keys``: NULLs last in both directions,
    ties by the tie columns ascending."""
    return [(f"k{i}", "descending" if item.descending else "ascending", "at_end")
            for i, item in enumerate(order_by)] + \
        [(f"t_{name}", "ascending", "at_end") for name in tie_columns]


def numeric_sort_order(table: pa.Table, spec: SortSpec) -> np.ndarray | None:
    """``sort_indices(table, spec)`` in NumPy when every key is a numeric column without
    NULLs (the usual ORDER BY a CP value): Arrow's order, NaNs after every value whatever
    the direction, ties kept in row order (a stable sort); None otherwise."""
    columns: list[np.ndarray] = []       # np.lexsort's keys, least significant first
    for (_, direction, _), column in zip(reversed(spec), reversed(table.columns),
                                            strict=True):
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            return None
        if column.null_count:
            return None          # Arrow places them (without its compute module loaded)
        keys = _lexsort_keys(array_numpy(column), direction == "descending")
        if keys is None:
            return None
        columns += keys
    return np.lexsort(columns) if columns else None


def _lexsort_keys(values: np.ndarray, descending: bool) -> list[np.ndarray] | None:
    """``np.lexsort`` keys (least significant first) that order numeric ``values`` as Arrow
    does, NaNs after every value in either direction; None where negating for a descending
    key would wrap around (unsigned integers, the smallest int64)."""
    if values.dtype.kind == "u" or (values.dtype.kind == "i" and len(values) and
                                    values.min() == np.iinfo(values.dtype).min):
        return None
    nan = np.isnan(values) if values.dtype.kind == "f" else None
    if nan is None or not nan.any():
        return [-values if descending else values]
    values = np.where(nan, 0, values)
    return [-values if descending else values, nan]


def sort_keys(units: Units, order_by: tuple[ast.OrderItem, ...]) -> tuple[pa.Table, SortSpec]:
    """The order keys and tie columns of ``units`` as a table, and how to sort it."""
    spec = sort_spec(order_by, units.tie_columns)
    arrays = [evaluate(item.expr, units) for item in order_by]
    arrays += [units.column(name) for name in units.tie_columns]
    return pa.Table.from_arrays(arrays, names=[k[0] for k in spec]), spec


def select_units(selection: Selection, chooser: Chooser, candidates: Ints,
                 records: StatsRecords, probe: int = 0) -> Ints:
    """``choose``, timed and recorded as the plan's selection."""
    with records.timed(selection) as rec:
        chosen = choose(selection, chooser, candidates, probe)
        rec.candidates += len(candidates)
        rec.chosen += len(chosen)
    return chosen


def choose(selection: Selection, chooser: Chooser, candidates: np.ndarray,
           probe: int = 0) -> np.ndarray:
    """The chosen units (indices, in output order); ``probe``: for a top-k over groups, how
    many to read with trivial bounds before asking the index (see ``bound_order``)."""
    if isinstance(selection, BoundOrderTopK):
        return bound_order(selection, chooser, candidates, probe)
    if isinstance(selection, KeyOrderTopK):
        return key_order(selection, chooser, candidates)
    if isinstance(selection, VerifyAll):
        return verify_all(selection, chooser, candidates)
    raise TypeError(f"unknown selection {type(selection).__name__}")


def verify_all(sel: VerifyAll, c: Chooser, candidates: np.ndarray) -> np.ndarray:
    if sel.limit == 0:
        return candidates[:0]
    rows = c.sort(c.qualify(candidates), sel.order_by)   # no ORDER BY: by the tie columns
    return rows if sel.limit is None else rows[:sel.limit]


def key_order(sel: KeyOrderTopK, c: Chooser, candidates: np.ndarray) -> np.ndarray:
    """Keys need no pixels: walk in key order and verify until ``k`` units qualify."""
    k = sel.k
    if k == 0:
        return candidates[:0]
    ordered = c.sort(candidates, sel.order_by)
    chosen: list[np.ndarray] = []
    have, pos, size = 0, 0, max(k, c.settings.first_part)
    while have < k and pos < len(ordered):
        part = c.qualify(ordered[pos:pos + size])
        chosen.append(part)
        have += len(part)
        pos += size
        size = min(size * 2, c.settings.largest_part)
    rows = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    return rows[:k]


def bound_order(sel: BoundOrderTopK, c: Chooser, candidates: np.ndarray,
                probe: int = 0) -> np.ndarray:
    """Verify in order of the best value each candidate could reach; stop when the k-th
    exact value beats every unread candidate's bound.

    Groups come with trivial bounds first (``coarse_pending``): ``probe`` groups are read
    with them, unrefined (what the brute force does), and only if that cannot settle the
    result are the index's bounds of every group worked out. When the first groups already
    hold the best value any group could have (an IoU of 0, say), the index is never asked."""
    if sel.k == 0:
        return candidates[:0]
    if c.units.coarse_pending:
        top, finished = _TopK(sel, c, candidates).run(budget=probe, refine=False)
        if finished:
            return top
        c.units.bound_coarse()
    return _TopK(sel, c, candidates).run()[0]


def top_k_reach(sel: BoundOrderTopK, c: Chooser, candidates: np.ndarray
                ) -> tuple[float | None, np.ndarray]:
    """For a top-k split over shards, from bounds alone: the best value a candidate can
    reach (None: none can have a value; NaN sorts after every value), and the worst-case
    values of up to k candidates sure to qualify with a value, best first (their k-th best
    over all shards is a floor the result reaches)."""
    desc = sel.order_by[0].descending
    bounds = interval(sel.order_by[0].expr, c.units.take(candidates))
    best = (bounds.hi if desc else bounds.lo)[~bounds.must_null]
    best = best[~np.isnan(best)]
    reach = None if not len(best) else float(best.max() if desc else best.min())
    worst = np.sort(_sure_values(c, candidates, bounds, desc))
    return reach, (worst[::-1] if desc else worst)[:sel.k].copy()


def _sure_values(c: Chooser, candidates: np.ndarray, bounds: Interval,
                 desc: bool) -> np.ndarray:
    """The worst-case values of the candidates sure to satisfy the condition and never NULL
    or NaN."""
    sure = ~c.undecided[candidates] & ~bounds.may_null & ~bounds.nan()
    values: np.ndarray = (bounds.lo if desc else bounds.hi)[sure]
    return values


# From this many values on, kth_best keeps only those that can be the k-th best before it
# partitions them (3x faster on 10,000 bounds; below, the pass costs more than it saves).
PREFILTER_VALUES = 1024


def kth_best(values: np.ndarray, k: int, desc: bool) -> float | None:
    """The k-th best of ``values`` (largest for DESC), ignoring NaN; None if fewer."""
    values = values[~np.isnan(values)]
    if k < 1 or len(values) < k:
        return None
    # np.partition slows down tenfold on many equal values (bounds of masks with no pixel
    # in range are all 0); when the best value is held k times, it is the answer at once.
    best = values.max() if desc else values.min()
    if np.count_nonzero(values == best) >= k:
        return float(best)
    if len(values) >= max(4 * k, PREFILTER_VALUES):
        # The worst of the bests of k disjoint sets of values is k values' worst: the k-th
        # best is at least as good. Only values as good go to np.partition (~10 ns a
        # value). Each set takes every k-th value, so that sorted values split well too.
        sets = values[:len(values) // k * k].reshape(-1, k)
        floor = sets.max(axis=0).min() if desc else sets.min(axis=0).max()
        values = values[values >= floor] if desc else values[values <= floor]
    at = len(values) - k if desc else k - 1
    return float(np.partition(values, at)[at])


_SMALL_UNSIGNED = (pa.uint8(), pa.uint16(), pa.uint32())   # whose values fit int64


class _TopK:
    """One pass of ``bound_order``: candidates ordered by the best value they can reach."""

    def __init__(self, sel: BoundOrderTopK, c: Chooser, candidates: np.ndarray):
        self.sel, self.c, self.k = sel, c, sel.k
        self.first = sel.order_by[0]
        self.desc = self.first.descending
        units = c.units
        every = len(candidates) == units.num_rows    # then candidates == arange
        bounds = interval(self.first.expr, units if every else units.take(candidates))
        candidates, bounds = self._drop_hopeless(candidates, bounds)
        best = bounds.hi if self.desc else bounds.lo
        ties = self._tie_ranks(candidates)
        self.with_ties = ties is not None
        tie_rank = ties if ties is not None else np.arange(len(candidates))
        # Candidates that can only be NULL sort after all others; then by best reachable
        # value, then by tie key.
        order = np.lexsort((tie_rank, -best if self.desc else best, bounds.must_null))
        self.ordered = candidates[order]
        self.best, self.never_value = best[order], bounds.must_null[order]
        self.tie_rank = tie_rank[order]
        self.rank_of = np.zeros(units.num_rows, np.int64)    # tie rank by unit
        self.rank_of[self.ordered] = self.tie_rank

    def _drop_hopeless(self, candidates: np.ndarray,
                       bounds: Interval) -> tuple[np.ndarray, Interval]:
        """At least k candidates are sure to reach the k-th floor (``_kth_floor``): one that
        cannot reach it cannot be in the result. Usually this leaves a few hundred of many
        thousands."""
        floor = self._kth_floor(candidates, bounds)
        if floor is None:
            return candidates, bounds
        best = bounds.hi if self.desc else bounds.lo
        keep = ~bounds.must_null & ((best >= floor) if self.desc else (best <= floor))
        return candidates[keep], Interval(bounds.lo[keep], bounds.hi[keep],
                                          bounds.may_null[keep], bounds.must_null[keep])

    def _kth_floor(self, candidates: np.ndarray, bounds: Interval) -> float | None:
        """A value the k-th result is sure to reach (at least, for DESC; at most, for
        ASC): the k-th best worst-case value of the candidates that surely satisfy the
        condition and are never NULL or NaN (None if fewer than k such candidates), or the
        floor other shards set, whichever is tighter."""
        mine = kth_best(_sure_values(self.c, candidates, bounds, self.desc), self.k,
                        self.desc)
        floors = [f for f in (mine, self.c.floor) if f is not None]
        if not floors:
            return None
        return max(floors) if self.desc else min(floors)

    def _tie_ranks(self, idx: np.ndarray) -> np.ndarray | None:
        """Keys that order ``idx`` as the tie-break column does (its integer values, or
        ranks) when one key orders and one column breaks ties without NULLs; then a
        candidate that can at best tie the k-th value but has a larger tie key cannot enter
        the result."""
        units = self.c.units
        cols = units.tie_columns
        if len(self.sel.order_by) != 1 or len(cols) != 1:
            return None
        whole = units.column(cols[0])
        if whole.null_count:
            return None
        if pa.types.is_signed_integer(whole.type) or whole.type in _SMALL_UNSIGNED:
            # Integer keys (mask_id, the usual group key) order as their own ranks.
            ranks: np.ndarray = array_numpy(whole)[idx].astype(np.int64)
            return ranks
        col = take(whole, numpy_array(idx, pa.int64()))
        return np.unique(array_numpy(col), return_inverse=True)[1].reshape(-1)

    def _can_enter(self, part: np.ndarray, kth: float, kth_tie: int | None) -> np.ndarray:
        """The units of ``part`` whose (refined) bounds can still beat or tie the k-th."""
        fine = interval(self.first.expr, self.c.units.take(part))
        reach = fine.hi if self.desc else fine.lo
        beats = (reach > kth) if self.desc else (reach < kth)
        can_tie = reach == kth
        if kth_tie is not None:
            can_tie &= self.rank_of[part] < kth_tie
        enter: Ints = part[~fine.must_null & (beats | can_tie)]
        return enter

    def _refine_pays(self, sample: np.ndarray, kth: float, kth_tie: int | None) -> bool:
        """Refine ``sample``: whether that decided at least the share of it that pays."""
        self.c.units.refine(sample)
        left = self._can_enter(sample, kth, kth_tie)
        exact = self.c.units.known[np.ix_(left, np.asarray(self.c.output_terms, np.int64))
                                   ].all(axis=1).sum()
        return bool(len(sample) - len(left) + exact >= self.c.settings.refine_pays * len(sample))

    def _kth(self, top: np.ndarray) -> tuple[float | None, int | None]:
        """The k-th exact value and its tie rank; None while a NULL or NaN k-th value can
        still be displaced by any unit."""
        kth = evaluate(self.first.expr, self.c.units.take(top[-1:]))[0].as_py()
        if kth is None or kth != kth:
            return None, None
        return kth, int(self.rank_of[top[-1]]) if self.with_ties else None

    def _done(self, pos: int, kth: float, kth_tie: int | None) -> bool:
        """No candidate from ``pos`` on can enter the top k."""
        nxt = self.best[pos]
        if self.never_value[pos] or (nxt < kth if self.desc else nxt > kth):
            return True
        return kth_tie is not None and nxt == kth and self.tie_rank[pos] > kth_tie

    def run(self, budget: int | None = None, refine: bool = True) -> tuple[np.ndarray, bool]:
        """The top k, and whether it is final: with a ``budget``, no part starts once that
        many candidates have been looked at; ``refine=False`` reads the parts without
        refining their bounds first."""
        c, k, settings = self.c, self.k, self.c.settings
        top = np.zeros(0, np.int64)
        kth: float | None = None
        kth_tie: int | None = None
        pos, size = 0, max(k, settings.first_part)
        refining = refine
        # One ORDER BY key whose ties the tie rank breaks: the best units so far kept with
        # their values in NumPy (not sorted again by Arrow and evaluated again each part).
        running = _RunningTop(self.first, c.units, self.rank_of, k) \
            if self.with_ties else None
        while pos < len(self.ordered):
            if budget is not None and (pos >= budget or not np.isfinite(self.best[pos])):
                return top, False   # spent, or nothing to stop at: an unbounded best case
            part = self.ordered[pos:pos + size]
            pos += size
            size = min(size * 2, settings.largest_part)
            if refining:
                # Cell-by-cell bounds may make values exact, or show that some of these
                # cannot beat the k-th value; they stop once they decide too few.
                c.units.refine(part)
            elif refine and kth is not None and getattr(c.units, "retest_refine", False):
                # Groups: later parts (worse best cases) are decided more often than the
                # first; a sample of each part says whether refining pays again.
                refining = self._refine_pays(part[:max(1, len(part) // 8)], kth, kth_tie)
                if refining:
                    c.units.refine(part)
            if kth is not None:
                before = len(part)
                part = self._can_enter(part, kth, kth_tie)
                exact = c.units.known[np.ix_(part, np.asarray(c.output_terms, np.int64))].all(
                    axis=1).sum()
                refining = refining and before - len(part) + exact >= \
                    settings.refine_pays * before
            chosen = c.qualify(part)
            if running is not None and not running.add(chosen):
                running = None              # values NumPy cannot order as Arrow does
            if running is not None:
                top = running.idx
            else:
                top = c.sort(np.concatenate([top, chosen]), self.sel.order_by)[:k]
            if len(top) < k or pos >= len(self.ordered):
                continue
            kth, kth_tie = running.kth() if running is not None else self._kth(top)
            if kth is not None and self._done(pos, kth, kth_tie):
                break
        return top, True


class _RunningTop:
    """The k best units read so far by their exact value of one ORDER BY key, ties by tie
    rank: ``Chooser.sort``'s order (NULLs after NaNs after every value, in either
    direction), in NumPy, with each unit's value evaluated once."""

    def __init__(self, item: ast.OrderItem, units: Units, rank_of: np.ndarray, k: int):
        self.item, self.units, self.rank_of, self.k = item, units, rank_of, k
        self.idx = np.zeros(0, np.int64)
        self.values: np.ndarray | None = None
        self.null = np.zeros(0, np.bool_)

    def add(self, idx: np.ndarray) -> bool:
        """Take units ``idx`` (qualified, exact) in; False (nothing taken) when their values
        are not numbers NumPy orders as Arrow does."""
        if not len(idx):
            return True
        taken = self.units.take(idx)
        plain = numbers(self.item.expr, taken)
        if plain is None:       # evaluate's own (its errors, other types)
            plain = numeric_values_and_nulls(evaluate(self.item.expr, taken))
        if plain is None:
            return False
        values, null = plain
        if self.values is not None and values.dtype != self.values.dtype:
            return False
        idx = np.concatenate([self.idx, idx])
        values = values if self.values is None else np.concatenate([self.values, values])
        null = np.concatenate([self.null, null])
        keys = _lexsort_keys(np.where(null, 0, values), self.item.descending)
        if keys is None:
            return False
        order = np.lexsort([self.rank_of[idx], *keys, null])[:self.k]
        self.idx, self.values, self.null = idx[order], values[order], null[order]
        return True

    def kth(self) -> tuple[float | None, int | None]:
        """``_TopK._kth`` of the k best (there are k)."""
        assert self.values is not None
        value = self.values[self.k - 1].item()
        if self.null[self.k - 1] or value != value:
            return None, None
        return value, int(self.rank_of[self.idx[self.k - 1]])
