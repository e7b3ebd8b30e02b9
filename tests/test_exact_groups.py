"""The exact path of grouped queries (exec/groups/exact_path.py): when the stored CHIs of
every group's aggregated masks settle all of a query's CP aggregates, HAVING, ORDER BY,
LIMIT and the projection run over every group in NumPy, and the groups' counts are
remembered for the same member rows. Its answers equal the oracle's and, column types
included, the general path's and the brute force's: prepared or not, after random
ingests, deletes and updates of the group key; it answers IoU queries (zero unions giving
NULL, counts the CHIs leave open) and falls back for what it does not cover."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masksearch as ms
from masksearch.exec.groups import exact_path
from masksearch.exec.settings import ExecSettings

from .oracle import GroupSpec
from .strategies import examples
from .test_engine_oracle import check_answers, expected, group_numeric, group_predicates
from .test_prepared_aggregates import _ingest, _iou_oracle, _mutate, mask_rows, mutations

GENERAL = ExecSettings(exact_groups=False)
HOW = [ExecSettings(), GENERAL, ExecSettings(probe_groups=0, cached_groups=0)]
IOU = "CP(intersect(mask), full, (0.5, 1]) / CP(union(mask), full, (0.5, 1])"


def image_queries():
    """Grouped by image: what the exact path is for (and, through COUNT, SUM, ..., what it
    leaves to the general path)."""
    order_item = st.tuples(group_numeric().filter(
        lambda e: not (e[0] == "num" and isinstance(e[1], int))), st.booleans())
    return st.builds(
        GroupSpec, keys=st.just(("image_id",)),
        select=st.lists(group_numeric(), min_size=1, max_size=2).map(tuple),
        where=st.none(), having=st.one_of(st.none(), group_predicates()),
        order=st.lists(order_item, max_size=2).map(tuple),
        limit=st.one_of(st.none(), st.integers(0, 4)))


def same_tables(db: ms.Database, sql: str) -> None:
    """The exact path's table equals the general path's and the brute force's, types too."""
    fast = db.query(sql)._table
    for got in (db.query(sql, settings=GENERAL)._table, db.query(sql, use_index=False)._table):
        assert fast.schema == got.schema, (sql, fast.schema, got.schema)
        assert fast.to_pylist() == got.to_pylist() or _nan_equal(fast, got), (sql, fast, got)


def _nan_equal(a, b) -> bool:
    x, y = a.to_pylist(), b.to_pylist()
    return len(x) == len(y) and all(
        all(u == v or (u != u and v != v) for u, v in zip(r.values(), s.values(), strict=True))
        for r, s in zip(x, y, strict=True))


@settings(max_examples=examples(30), deadline=None)
@given(st.data(), st.sampled_from([4, 6, 9]), st.integers(2, 12), st.booleans(),
       st.lists(image_queries(), min_size=1, max_size=3), st.sampled_from([2, 3, 4]))
def test_exact_path_equals_oracle_and_general_path(tmp_path_factory, data, side, n, prepare,
                                                   specs, cell):
    """Each check: every query equals the oracle (index on and off, exact path on and off)
    and the general path's table; asked twice (the second answer from the remembered
    counts). Checked prepared (or not), after random changes, and prepared again."""
    tmp = tmp_path_factory.mktemp("exact")
    draw_rows = lambda k: data.draw(mask_rows(side, k))   # noqa: E731
    pixels, meta = draw_rows(n)
    db = ms.connect(tmp / "db", cell_size=cell)
    rows: list[dict] = []
    _ingest(db, rows, pixels, meta, [i // 2 for i in range(n)])
    kinds = ("intersect", "union", "mean")

    def check() -> None:
        check_answers(db, rows, specs, HOW)
        for spec in specs:
            if expected(spec, rows) is not None:
                same_tables(db, spec.sql())

    if prepare:
        db.prepare_aggregates("image_id", kinds)
    check()
    for change in data.draw(mutations(n // 2)):
        _mutate(db, rows, change, draw_rows)
    check()
    db.prepare_aggregates("image_id", kinds)
    check()
    db.close()


class Taken:
    """How often the exact path answered, from group formation or from remembered counts."""

    def __init__(self, monkeypatch):
        self.formed = self.remembered = 0
        exact, remembered = exact_path.exact_groups, exact_path.remembered
        import masksearch.exec.merge as merge

        def count_exact(*args):
            table = exact(*args)
            self.formed += table is not None
            return table

        def count_remembered(*args):
            table = remembered(*args)
            self.remembered += table is not None
            return table

        monkeypatch.setattr(merge, "exact_groups", count_exact)
        monkeypatch.setattr(merge, "remembered", count_remembered)


def _images(tmp_path, images: int = 10, side: int = 16) -> tuple[ms.Database, list[dict]]:
    """Pairs of random maps, a pair hot nowhere (its union empty: IoU NULL) and a pair with
    pixels exactly on the cut 0.5 and at 1.0."""
    rng = np.random.default_rng(11)
    pixels = [rng.random((side, side)).astype(np.float32) for _ in range(2 * images)]
    pixels[2] = pixels[3] = np.full((side, side), 0.25, np.float32)
    pixels[4] = np.where(rng.random((side, side)) < 0.5, 0.5, 1.0).astype(np.float32)
    db = ms.connect(tmp_path / "db", cell_size=4)
    rows: list[dict] = []
    _ingest(db, rows, pixels, {"label": ["a"] * len(pixels)}, [i // 2 for i in range(2 * images)])
    return db, rows


def _ranked(iou: dict[int, float | None], desc: bool) -> list[tuple[int, float | None]]:
    known = sorted(((g, v) for g, v in iou.items() if v is not None),
                   key=lambda gv: ((-gv[1] if desc else gv[1]), gv[0]))
    return known + sorted((g, v) for g, v in iou.items() if v is None)


@pytest.mark.parametrize("desc", [True, False])
def test_iou_top_k_and_filters_take_the_exact_path(tmp_path, monkeypatch, desc):
    """With prepared intersect and union CHIs, the IoU top-k and filters are answered by the
    exact path, first from the groups and then from the remembered counts; the NULL IoU of
    the empty union sorts last in both directions and fails every filter."""
    db, rows = _images(tmp_path)
    db.prepare_aggregates("image_id", ("intersect", "union"))
    taken = Taken(monkeypatch)
    iou = _iou_oracle(rows)
    word = "DESC" if desc else "ASC"
    for k in (3, 10):
        sql = f"SELECT image_id, {IOU} AS iou FROM masks GROUP BY image_id ORDER BY iou {word} LIMIT {k}"
        for _ in range(2):
            assert db.query(sql).rows() == _ranked(iou, desc)[:k]
        same_tables(db, sql)
    t = float(np.median([v for v in iou.values() if v is not None]))
    for op in ("<", ">", ">="):
        sql = f"SELECT image_id FROM masks GROUP BY image_id HAVING {IOU} {op} {t!r}"
        want = [(g,) for g, v in sorted(iou.items())
                if v is not None and {"<": v < t, ">": v > t, ">=": v >= t}[op]]
        assert db.query(sql).rows() == want
        same_tables(db, sql)
    assert taken.formed >= 1
    assert taken.remembered >= 1
    db.close()


def test_changes_after_remembering_are_answered_fresh(tmp_path, monkeypatch):
    """Remembered counts belong to the member rows they came from: after a delete and a
    change of an image id, the answers are the new data's."""
    db, rows = _images(tmp_path)
    db.prepare_aggregates("image_id", ("intersect", "union"))
    sql = f"SELECT image_id, {IOU} AS iou FROM masks GROUP BY image_id ORDER BY iou DESC LIMIT 20"
    assert db.query(sql).rows() == _ranked(_iou_oracle(rows), True)
    _mutate(db, rows, ("delete", 0), None)
    assert db.query(sql).rows() == _ranked(_iou_oracle(rows), True)
    _mutate(db, rows, ("update", 5, 1), None)
    assert db.query(sql).rows() == _ranked(_iou_oracle(rows), True)
    same_tables(db, sql)
    db.close()


@pytest.mark.parametrize("sql", [
    # COUNT(*) is not a CP over an aggregated mask
    f"SELECT image_id, COUNT(*) AS n FROM masks GROUP BY image_id HAVING {IOU} > 0.2",
    # mean was not prepared: no stored entry
    "SELECT image_id FROM masks GROUP BY image_id "
    "HAVING CP(mean(mask), full, (0.5, 1]) > 3",
    # IS NULL is left to the general evaluation
    f"SELECT image_id FROM masks GROUP BY image_id HAVING ({IOU}) IS NULL",
])
def test_what_the_exact_path_does_not_cover_falls_back(tmp_path, monkeypatch, sql):
    db, _ = _images(tmp_path)
    db.prepare_aggregates("image_id", ("intersect", "union"))
    taken = Taken(monkeypatch)
    same_tables(db, sql)
    assert taken.formed == taken.remembered == 0
    db.close()


def test_not_prepared_uses_the_general_path_until_every_group_is_stored(tmp_path, monkeypatch):
    db, rows = _images(tmp_path)
    taken = Taken(monkeypatch)
    sql = f"SELECT image_id FROM masks GROUP BY image_id HAVING {IOU} > 0.3"
    want = [(g,) for g, v in sorted(_iou_oracle(rows).items()) if v is not None and v > 0.3]
    assert db.query(sql, settings=ExecSettings(cached_groups=0)).rows() == want
    assert taken.formed == taken.remembered == 0
    db.prepare_aggregates("image_id", ("intersect", "union"))
    assert db.query(sql).rows() == want
    assert taken.formed == 1
    db.close()
