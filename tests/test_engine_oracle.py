"""The engine equals the brute-force oracle on random databases and random queries,
with the index on and off."""

import shutil
import tempfile
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.exec.settings import ExecSettings

from . import oracle
from .oracle import GroupSpec, QuerySpec
from .strategies import examples, masks, value_ranges

LABELS = ["cat", "dog", "o'kapi"]


@st.composite
def databases(draw):
    """Masks of mixed shapes and dtypes with label, score and a nullable bbox column."""
    n = draw(st.integers(1, 14))
    ms_ = [draw(masks(max_side=18)) for _ in range(n)]
    label = [draw(st.sampled_from(LABELS)) for _ in range(n)]
    score = [draw(st.one_of(st.none(), st.floats(0, 1, width=32).map(float))) for _ in range(n)]
    bbox = []
    for m in ms_:
        h, w = m.shape
        if draw(st.integers(0, 4)) == 0:
            bbox.append(None)
            continue
        x0, y0 = draw(st.integers(-2, w)), draw(st.integers(-2, h))
        bbox.append((x0, y0, draw(st.integers(x0, w + 3)), draw(st.integers(y0, h + 3))))
    if all(b is None for b in bbox):
        bbox[0] = (0, 0, 1, 1)
    cell = draw(st.sampled_from([2, 3, 4, 16]))
    split = draw(st.integers(0, n))   # two ingests: several segments, schema merged
    # Lazy indexing: CHIs appear as queries read masks, so later queries see a partial index.
    cell = (cell, draw(st.sampled_from(["eager", "lazy"])))
    return ms_, {"label": label, "score": score, "bbox": bbox}, cell, split


def rois():
    return st.one_of(st.just(("full",)), st.just(("col", "bbox")),
                     st.tuples(st.just("box"), st.integers(-2, 10), st.integers(-2, 10),
                               st.integers(10, 22), st.integers(10, 22)))


def cps():
    return st.builds(lambda roi, rng: ("cp", roi, rng), rois(), value_ranges())


def numeric():
    leaf = st.one_of(
        cps(),
        cps().flatmap(lambda c: st.just(("bin", "/", c, ("area", c[1])))),
        st.builds(lambda v: ("num", v), st.integers(-3, 60)),
        st.builds(lambda v: ("num", v), st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.5])),
        st.just(("col", "score")),
    )
    return st.recursive(leaf, lambda inner: st.one_of(
        st.builds(lambda op, a, b: ("bin", op, a, b), st.sampled_from("+-*/"), inner, inner),
        st.builds(lambda a: ("neg", a), inner)), max_leaves=4)


def thresholds():
    return st.one_of(st.integers(0, 80).map(lambda v: ("num", v)),
                     st.floats(0, 1.25, width=32).map(lambda v: ("num", float(v))))


def predicates():
    cmp = st.builds(lambda op, a, b: ("cmp", op, a, b),
                    st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), numeric(),
                    st.one_of(thresholds(), numeric()))
    leaf = st.one_of(
        cmp, cmp,
        st.builds(lambda a, lo, hi: ("between", a, lo, hi), numeric(), thresholds(),
                  thresholds()),
        st.builds(lambda c, neg: ("isnull", c, neg), numeric(), st.booleans()),
        st.builds(lambda xs: ("in", ("col", "label"), tuple(("str", x) for x in xs)),
                  st.lists(st.sampled_from(LABELS), min_size=1, max_size=2)),
        st.builds(lambda x: ("cmp", "=", ("col", "label"), ("str", x)), st.sampled_from(LABELS)),
    )
    return st.recursive(leaf, lambda inner: st.one_of(
        st.builds(lambda a, b: ("and", a, b), inner, inner),
        st.builds(lambda a, b: ("or", a, b), inner, inner),
        st.builds(lambda a: ("not", a), inner)), max_leaves=3)


def queries():
    return st.builds(
        QuerySpec,
        select=st.lists(numeric(), max_size=2).map(tuple),
        where=st.one_of(st.none(), predicates()),
        # A bare integer in ORDER BY is a select-list position, not a value.
        order=st.lists(st.tuples(numeric().filter(lambda e: not (e[0] == "num" and isinstance(
            e[1], int))), st.booleans()), max_size=2).map(tuple),
        limit=st.one_of(st.none(), st.integers(0, 6)),
    )


def fixed_rois():
    return st.one_of(st.just(("full",)),
                     st.tuples(st.just("box"), st.integers(-2, 10), st.integers(-2, 10),
                               st.integers(10, 22), st.integers(10, 22)))


def group_cps():
    """CP over intersect/union/mean(mask), and IoU-style ratios of them."""
    single = st.builds(lambda k, roi, rng: ("gcp", k, roi, rng),
                       st.sampled_from(["intersect", "union", "mean"]), fixed_rois(),
                       value_ranges())
    iou = st.builds(lambda roi, rng: ("bin", "/", ("gcp", "intersect", roi, rng),
                                      ("gcp", "union", roi, rng)), fixed_rois(), value_ranges())
    return st.one_of(single, iou)


def group_numeric():
    leaf = st.one_of(
        group_cps(),
        st.just(("agg", "count", None)),
        st.builds(lambda f, a: ("agg", f, a), st.sampled_from(["sum", "avg", "min", "max"]),
                  numeric()),
        st.builds(lambda v: ("num", v), st.sampled_from([0, 2, 0.5, 1.5])),
    )
    return st.recursive(leaf, lambda inner: st.builds(
        lambda op, a, b: ("bin", op, a, b), st.sampled_from("+-*/"), inner, inner),
        max_leaves=3)


def group_predicates():
    cmp = st.builds(lambda op, a, b: ("cmp", op, a, b),
                    st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), group_numeric(),
                    st.one_of(thresholds(), group_numeric()))
    leaf = st.one_of(cmp, cmp, st.builds(lambda c, neg: ("isnull", c, neg), group_numeric(),
                                         st.booleans()))
    return st.recursive(leaf, lambda inner: st.one_of(
        st.builds(lambda a, b: ("and", a, b), inner, inner),
        st.builds(lambda a, b: ("or", a, b), inner, inner),
        st.builds(lambda a: ("not", a), inner)), max_leaves=3)


def _is_grouped(spec: GroupSpec) -> bool:
    exprs = list(spec.select) + [e for e, _ in spec.order]
    return bool(spec.keys) or spec.having is not None or any(
        "'agg'" in repr(e) or "'gcp'" in repr(e) for e in exprs)


def group_queries():
    return st.builds(
        GroupSpec,
        keys=st.sampled_from([(), ("image_id",), ("label",)]),
        select=st.lists(group_numeric(), min_size=1, max_size=2).map(tuple),
        where=st.one_of(st.none(), predicates()),
        having=st.one_of(st.none(), group_predicates()),
        order=st.lists(st.tuples(group_numeric().filter(
            lambda e: not (e[0] == "num" and isinstance(e[1], int))), st.booleans()),
            max_size=2).map(tuple),
        limit=st.one_of(st.none(), st.integers(0, 4)),
    ).filter(_is_grouped)


def _build(tmp: str, ms_, meta, cell, split) -> ms.Database:
    cell, mode = cell if isinstance(cell, tuple) else (cell, "eager")
    db = ms.connect(tmp + "/db", cell_size=cell, index=mode)
    for lo, hi in ((0, split), (split, len(ms_))):
        if hi > lo:
            db.ingest(ms_[lo:hi], image_id=[i // 2 for i in range(lo, hi)],
                      metadata={k: v[lo:hi] for k, v in meta.items()})
    return db


def _same(got: list[tuple], want: list[tuple]) -> bool:
    return len(got) == len(want) and all(
        len(g) == len(w) and all(a == b or (isinstance(a, float) and isinstance(b, float)
                                            and np.isnan(a) and np.isnan(b))
                                 for a, b in zip(g, w, strict=True))
        for g, w in zip(got, want, strict=True))


def expected(spec, rows) -> list[tuple] | None:
    """The oracle's rows for ``spec`` (None: its aggregated masks differ in shape, and the
    engine must refuse the query)."""
    try:
        return (oracle.run_groups if isinstance(spec, GroupSpec) else oracle.run)(spec, rows)
    except oracle.ShapeMismatch:
        return None


def _check(ms_, meta, cell, split, specs, settings: ExecSettings | None = None) -> None:
    """Every spec gives the oracle's rows, with the index and without, on one shard and on
    a shard per segment (the default runs the fragment on one shard of all segments; a
    shard per segment runs it on each alone and merges)."""
    one_shard = settings or ExecSettings()
    per_segment = replace(one_shard, shard_segments=1)
    tmp = tempfile.mkdtemp()
    try:
        db = _build(tmp, ms_, meta, cell, split)
        check_answers(db, oracle.as_rows(ms_, 0, meta), specs, [one_shard, per_segment])
    finally:
        shutil.rmtree(tmp)


def check_answers(db: ms.Database, rows, specs, settings: list[ExecSettings]) -> None:
    """Every spec gives the oracle's rows (from ``rows``) with the index and without, under
    each of ``settings``; a spec whose aggregated masks differ in shape is refused."""
    for spec in specs:
        want = expected(spec, rows)
        if want is None:
            for use_index in (True, False):
                with pytest.raises(ms.QueryError, match="differ in shape"):
                    db.query(spec.sql(), use_index=use_index)
            continue
        for use_index in (True, False):
            for how in settings:
                got = db.query(spec.sql(), use_index=use_index, settings=how).rows()
                assert _same(got, want), (spec.sql(), use_index, how, got, want)


@settings(max_examples=examples(80))
@given(databases(), st.lists(group_queries(), min_size=1, max_size=3))
def test_grouped_queries_equal_oracle(database, specs):
    ms_, meta, cell, split = database
    _check(ms_, meta, cell, split, specs)


@settings(max_examples=examples(30))
@given(databases(), st.lists(group_queries(), min_size=1, max_size=3))
def test_grouped_queries_in_small_chunks_equal_oracle(database, specs):
    """The memory bounds of grouped queries (cell bounds a chunk of groups at a time,
    CHIs of aggregated masks saved in batches) taken down to a group or two, and top-k over
    groups asking the index at once (no first look with trivial bounds, which on these few
    groups reads them all)."""
    ms_, meta, cell, split = database
    _check(ms_, meta, cell, split, specs,
           ExecSettings(member_cells=8, chis_held=1, probe_groups=0, cached_groups=1))


@settings(max_examples=examples(120))
@given(databases(), st.lists(queries(), min_size=1, max_size=4))
def test_engine_equals_oracle(database, specs):
    ms_, meta, cell, split = database
    _check(ms_, meta, cell, split, specs)


@st.composite
def saliency_db(draw):
    """Smooth maps with real structure, where the index decides most masks."""
    from masksearch.synth import saliency_maps

    n = draw(st.integers(5, 40))
    seed = draw(st.integers(0, 10_000))
    maps, boxes = saliency_maps(n, size=48, coarse=6, seed=seed)
    bbox = [tuple(int(v) for v in b) for b in boxes]
    return list(maps), {"label": [LABELS[i % 3] for i in range(n)],
                        "score": [float(i % 5) / 4 for i in range(n)], "bbox": bbox}


@settings(max_examples=examples(40))
@given(saliency_db(), st.lists(st.one_of(queries(), group_queries()), min_size=1, max_size=4),
       st.sampled_from([4, 8, 16]))
def test_engine_equals_oracle_on_saliency(database, specs, cell):
    ms_, meta = database
    _check(ms_, meta, cell, len(ms_), specs)
