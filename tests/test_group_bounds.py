"""Bounds of aggregates and of CP over aggregated masks contain the exact group values."""

import math
import shutil
import tempfile

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.exec.aggregate import aggregate_bounds, exact_aggregate
from masksearch.exec.context import ExecContext
from masksearch.exec.merge import group_batch
from masksearch.exec.rows import RowBatch, RowTerms
from masksearch.lang.binder import bind
from masksearch.lang.parser import parse
from masksearch.plan.planner import plan

from . import oracle
from .strategies import examples, masks, value_ranges


@st.composite
def row_intervals(draw):
    """Groups of rows: an exact value (or NULL) inside a random interval per row."""
    n_groups = draw(st.integers(1, 5))
    sizes = [draw(st.integers(0, 6)) for _ in range(n_groups)]
    lo, hi, may_null, must_null, values = [], [], [], [], []
    for _ in range(sum(sizes)):
        kind = draw(st.sampled_from(["value", "value", "null", "maybe"]))
        v = draw(st.one_of(st.integers(-50, 50), st.floats(-1e6, 1e6, allow_nan=False)))
        a = v - draw(st.floats(0, 100))
        b = v + draw(st.floats(0, 100))
        lo.append(a)
        hi.append(b)
        may_null.append(kind != "value")
        must_null.append(kind == "null")
        is_null = kind == "null" or (kind == "maybe" and draw(st.booleans()))
        values.append(None if is_null else v)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return (np.array(lo, float), np.array(hi, float), np.array(may_null, bool),
            np.array(must_null, bool), values, starts)


@settings(max_examples=examples(400))
@given(row_intervals(), st.sampled_from(["count", "sum", "avg", "min", "max"]))
def test_aggregate_bounds_contain_exact(case, func):
    lo, hi, may_null, must_null, values, starts = case
    g_lo, g_hi, g_may_null, g_must_null = aggregate_bounds(func, lo, hi, may_null, must_null,
                                                           starts)
    for g in range(len(starts) - 1):
        part = values[starts[g]:starts[g + 1]]
        exact = exact_aggregate(func, [v for v in part if v is not None], len(part))
        if exact is None:
            assert g_may_null[g]
        else:
            assert not g_must_null[g]
            assert g_lo[g] <= exact <= g_hi[g], (func, part, g_lo[g], g_hi[g])


@st.composite
def mask_groups(draw):
    """Groups of 1-3 masks sharing a shape per group, with a box and a range."""
    dtype = draw(st.sampled_from(["uint8", "float32", "bool"]))
    groups = []
    for _ in range(draw(st.integers(1, 4))):
        first = draw(masks(dtype=dtype, max_side=20, min_side=2))
        members = [first]
        for _ in range(draw(st.integers(0, 2))):
            seed = draw(st.integers(0, 2**31))
            other = draw(masks(dtype=dtype, max_side=20, min_side=2))
            # Same shape as the first: tile or crop another random mask.
            other = np.resize(other, first.shape) if seed % 2 else np.resize(first[::-1],
                                                                               first.shape)
            members.append(np.ascontiguousarray(other.astype(first.dtype)))
        groups.append(members)
    roi = draw(st.one_of(st.just(("full",)), st.tuples(
        st.just("box"), st.integers(-2, 8), st.integers(-2, 8), st.integers(8, 22),
        st.integers(8, 22))))
    return groups, roi, draw(value_ranges()), draw(st.sampled_from([2, 3, 4, 16]))


@settings(max_examples=examples(150))
@given(mask_groups(), st.sampled_from(["intersect", "union", "mean"]))
def test_mask_aggregate_bounds_contain_exact(case, kind):
    groups, roi, rng, cell = case
    tmp = tempfile.mkdtemp()
    try:
        db = ms.connect(tmp + "/db", cell_size=cell)
        flat = [m for g in groups for m in g]
        ids = [k for k, g in enumerate(groups) for _ in g]
        db.ingest(flat, image_id=ids)
        sql = (f"SELECT image_id, CP({kind}(mask), {oracle.roi_text(roi)}, "
               f"{oracle.range_text(rng)}) FROM masks GROUP BY image_id")
        snapshot = db.store.snapshot()
        q = bind(parse(sql), sql, snapshot.columns)
        ctx = ExecContext.of_snapshot(snapshot)
        rows = RowBatch(snapshot.table, RowTerms(q.terms, q.term_of), ctx)
        gb = group_batch(plan(q), rows, ctx, cache=None)
        everyone = np.arange(len(gb.groups))
        s = gb.state
        for cells in (False, True):     # coarse, then cell by cell
            gb.bound_all(everyone, cells=cells)
            for g, image in enumerate(gb.rows.column("image_id").to_pylist()):
                members = [{"pixels": m} for m in groups[image]]
                exact = oracle.group_cp(members, kind, roi, rng)
                assert s.lower[g, 0] <= exact <= s.upper[g, 0], (
                    kind, cells, exact, s.lower[g, 0], s.upper[g, 0])
                if not math.isnan(s.lower[g, 0]) and s.known[g, 0]:
                    assert s.exact[g, 0] == exact
    finally:
        shutil.rmtree(tmp)
