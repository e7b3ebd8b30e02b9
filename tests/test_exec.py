"""Execution semantics on small hand-made databases, and the index doing its job."""

import numpy as np
import pyarrow as pa
import pytest

import masksearch as ms
from masksearch.exec.settings import ExecSettings
from masksearch.plan.operators import (
    BoundFilter,
    BoundOrderTopK,
    GroupAggregate,
    GroupFilter,
    MergeRows,
    MetaFilter,
    PartialGroupBounds,
    Scan,
    Verify,
    VerifyAll,
)
from masksearch.synth import saliency_maps


@pytest.fixture
def small(tmp_path):
    """Four 4x4 float32 masks; mask 3 has a NULL box, mask 2 a box outside the mask."""
    m = np.zeros((4, 4, 4), np.float32)
    m[0, :2, :2] = 1.0
    m[1, :, :] = 0.7
    m[2, 0, 0] = np.float32(0.1)
    m[3, :, :] = np.nan
    m[3, 0, :] = 0.9
    db = ms.connect(tmp_path / "db", cell_size=2)
    db.ingest(m, image_id=[1, 1, 2, 2], model_id=["a", "b", "a", "b"],
              metadata={"bbox": [(0, 0, 2, 2), (1, 1, 4, 4), (10, 10, 12, 12), None],
                        "label": ["x", "y", "x", None]})
    return db


def rows(db, sql, **kw):
    out = db.query(sql, **kw).rows()
    assert out == db.query(sql, use_index=not kw.get("use_index", True)).rows()
    return out


def test_null_box_and_division_by_zero(small):
    assert rows(small, "SELECT mask_id, CP(mask, bbox, [0, 1]), area(bbox), "
                "CP(mask, bbox, [0, 1]) / area(bbox) FROM masks") == [
        (0, 4, 4, 1.0), (1, 9, 9, 1.0), (2, 0, 0, None), (3, None, None, None)]
    assert rows(small, "SELECT mask_id FROM masks WHERE CP(mask, bbox, [0, 1]) IS NULL") == [(3,)]
    assert rows(small, "SELECT mask_id FROM masks WHERE CP(mask, bbox, [0, 1]) / area(bbox) "
                "IS NULL") == [(2,), (3,)]
    # NULL fails every comparison, also under NOT.
    assert rows(small, "SELECT mask_id FROM masks WHERE NOT CP(mask, bbox, [0, 1]) > 100") == [
        (0,), (1,), (2,)]


def test_nan_pixels_are_in_no_range(small):
    assert rows(small, "SELECT CP(mask, full, [-inf, inf]) FROM masks WHERE mask_id = 3") == [(4,)]
    assert rows(small, "SELECT CP(mask, full, (-inf, inf)) FROM masks WHERE mask_id = 3") == [(4,)]


def test_range_ends_compare_exactly(small):
    # The pixel float32(0.1) = 0.100000001490116... lies above the decimal 0.1.
    q = "SELECT CP(mask, box(0, 0, 1, 1), {}) FROM masks WHERE mask_id = 2"
    assert rows(small, q.format("[0.1, 1]")) == [(1,)]
    assert rows(small, q.format("(-inf, 0.1]")) == [(0,)]
    assert rows(small, q.format("(0.100000001490116119384765625, 1]")) == [(0,)]
    assert rows(small, q.format("[0.100000001490116119384765625, 1]")) == [(1,)]
    # An open upper end at 1.0 leaves out pixels equal to 1.0.
    q0 = "SELECT CP(mask, full, {}) FROM masks WHERE mask_id = 0"
    assert rows(small, q0.format("(0.6, 1.0)")) == [(0,)]
    assert rows(small, q0.format("(0.6, 1.0]")) == [(4,)]


def test_order_nulls_last_and_ties_by_mask_id(small):
    q = "SELECT mask_id, CP(mask, bbox, (0.5, 1]) AS c FROM masks ORDER BY c {} LIMIT {}"
    assert rows(small, q.format("DESC", 4)) == [(1, 9), (0, 4), (2, 0), (3, None)]
    assert rows(small, q.format("ASC", 4)) == [(2, 0), (0, 4), (1, 9), (3, None)]
    assert rows(small, q.format("ASC", 2)) == [(2, 0), (0, 4)]
    ties = "SELECT mask_id, CP(mask, full, [0.85, 1]) AS c FROM masks ORDER BY c {} LIMIT {}"
    assert rows(small, ties.format("DESC", 4)) == [(0, 4), (3, 4), (1, 0), (2, 0)]
    assert rows(small, ties.format("ASC", 3)) == [(1, 0), (2, 0), (0, 4)]
    assert rows(small, "SELECT mask_id, label FROM masks ORDER BY 2 DESC") == [
        (1, "y"), (0, "x"), (2, "x"), (3, None)]


def test_limit_without_order_is_by_mask_id(small):
    assert rows(small, "SELECT mask_id FROM masks WHERE CP(mask, full, (0, 1]) > 0 LIMIT 2") == [
        (0,), (1,)]


def test_metadata_predicates_alias_and_view_name(small):
    assert rows(small, "SELECT mask_id, CP(mask, full, (0.5, 1]) AS hi FROM MasksDatabaseView "
                "WHERE model_id = 'a' AND hi > 0") == [(0, 4)]
    assert rows(small, "SELECT mask_id FROM masks WHERE label IN ('y') OR label IS NULL") == [
        (1,), (3,)]
    assert rows(small, "SELECT mask_id FROM masks WHERE image_id BETWEEN 2 AND 3 "
                "AND CP(mask, full, [0.89999997615814208984375, 0.89999997615814208984375]) = 4") == [(3,)]


def test_result_api(small):
    r = small.query("SELECT mask_id, image_id AS img FROM masks WHERE mask_id < 2")
    table = r.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names == ["mask_id", "img"]
    assert r.to_pylist() == [{"mask_id": 0, "img": 1}, {"mask_id": 1, "img": 1}]
    assert len(r) == 2
    assert r.stats.masks_total == 4
    assert "mask_id" in repr(r)


@pytest.fixture(scope="module")
def saliency(tmp_path_factory):
    maps, boxes = saliency_maps(600, size=96, coarse=7, seed=3)
    db = ms.connect(tmp_path_factory.mktemp("sal") / "db")
    db.ingest(maps, image_id=np.arange(600) // 2, model_id=np.arange(600) % 2,
              mask_type="saliency", metadata={"bbox": boxes})
    return db, maps, boxes


def test_index_prunes_a_selective_filter(saliency):
    db, maps, _ = saliency
    region = maps[:, 17:83, 13:71]
    counts = ((region > 0.8) & (region <= 1.0)).sum((1, 2))
    threshold = int(np.quantile(counts, 0.99))
    q = f"SELECT mask_id FROM masks WHERE CP(mask, box(13, 17, 71, 83), (0.8, 1.0]) > {threshold}"
    fast, slow = db.query(q), db.query(q, use_index=False)
    want = [(int(i),) for i in np.flatnonzero(counts > threshold)]
    assert fast.rows() == slow.rows() == want
    s = fast.stats
    assert s.accepted_by_index + s.rejected_by_index + s.verified >= 600
    assert s.verified < 0.3 * 600, s
    assert slow.stats.verified == 600


def test_topk_stops_early(saliency):
    db, maps, _boxes = saliency
    region = maps[:, 17:83, 13:71]
    counts = ((region >= 0.6) & (region <= 1.0)).sum((1, 2))
    want = sorted(range(600), key=lambda i: (-counts[i], i))[:10]
    q = ("SELECT mask_id, CP(mask, box(13, 17, 71, 83), [0.6, 1.0]) AS c FROM masks "
         "ORDER BY c DESC LIMIT 10")
    fast = db.query(q)
    assert fast.rows() == [(i, int(counts[i])) for i in want]
    assert fast.rows() == db.query(q, use_index=False).rows()
    assert fast.stats.verified < 0.5 * 600, fast.stats


def test_per_mask_box_ratio(saliency):
    db, maps, boxes = saliency
    share = []
    for m, (x0, y0, x1, y1) in zip(maps, boxes, strict=True):
        inside = m[y0:y1, x0:x1]
        share.append(((inside > 0.6) & (inside <= 1.0)).sum() / inside.size)
    share = np.array(share)
    q = "SELECT mask_id FROM masks WHERE CP(mask, bbox, (0.6, 1.0]) / area(bbox) < 0.05"
    fast = db.query(q)
    assert fast.rows() == [(int(i),) for i in np.flatnonzero(share < 0.05)]
    assert fast.stats.verified < 600


def test_aggregates_without_group_by(small):
    assert rows(small, "SELECT COUNT(*), SUM(CP(mask, full, (0.5, 1])), "
                "MIN(area(bbox)), MAX(CP(mask, bbox, [0, 1])) FROM masks") == [(4, 24, 0, 9)]
    # Over no rows: COUNT is 0, the others NULL; there is still one row.
    assert rows(small, "SELECT COUNT(*), SUM(height), AVG(height) FROM masks "
                "WHERE label = 'none'") == [(0, None, None)]
    # AVG skips NULLs (the NULL box of mask 3 and the empty box of mask 2 give NULL).
    assert rows(small, "SELECT AVG(CP(mask, bbox, [0, 1]) / area(bbox)) FROM masks") == [(1.0,)]
    assert rows(small, "SELECT COUNT(*) FROM masks HAVING COUNT(*) > 4") == []


def test_group_by_having_order_and_null_keys(small):
    assert rows(small, "SELECT image_id, COUNT(*), SUM(CP(mask, full, (0.5, 1])) AS hot "
                "FROM masks GROUP BY image_id ORDER BY hot DESC") == [(1, 2, 20), (2, 2, 4)]
    assert rows(small, "SELECT label, COUNT(*) AS n FROM masks GROUP BY label "
                "ORDER BY n DESC") == [("x", 2), ("y", 1), (None, 1)]
    assert rows(small, "SELECT image_id FROM masks GROUP BY image_id "
                "HAVING MAX(CP(mask, full, [0.85, 1])) >= 4 AND COUNT(*) = 2") == [(1,), (2,)]
    assert rows(small, "SELECT model_id, AVG(CP(mask, full, (0.5, 1])) AS a FROM masks "
                "GROUP BY model_id ORDER BY a DESC LIMIT 1") == [("b", 10.0)]


def test_topk_over_groups_stops_early(saliency):
    db, maps, _ = saliency
    region = maps[:, 17:83, 13:71]
    counts = ((region >= 0.6) & (region <= 1.0)).sum((1, 2))
    per_image = counts.reshape(300, 2).mean(axis=1)
    want = sorted(range(300), key=lambda i: (-per_image[i], i))[:5]
    q = ("SELECT image_id, AVG(CP(mask, box(13, 17, 71, 83), [0.6, 1.0])) AS a FROM masks "
         "GROUP BY image_id ORDER BY a DESC LIMIT 5")
    fast = db.query(q)
    assert fast.rows() == [(i, float(per_image[i])) for i in want]
    assert fast.rows() == db.query(q, use_index=False).rows()
    assert fast.stats.verified < 0.5 * 600, fast.stats


@pytest.mark.parametrize("probe", [0, 2, 48])
@pytest.mark.parametrize("order", ["ASC", "DESC"])
def test_topk_over_groups_with_and_without_a_first_look(saliency, probe, order):
    """A top-k over groups reads ``probe_groups`` groups with trivial bounds before it asks
    the index: the answer is the NumPy one whether that look settles it, is cut short, or is
    skipped; IoU of the two models per image, and an IoU that is often 0 (ties)."""
    settings = ExecSettings(probe_groups=probe)
    db, maps, _ = saliency
    pairs = maps.reshape(300, 2, *maps.shape[1:])
    for lo in (0.5, 0.9):
        inter = (np.minimum(pairs[:, 0], pairs[:, 1]) > lo).sum((1, 2))
        union = (np.maximum(pairs[:, 0], pairs[:, 1]) > lo).sum((1, 2))
        iou = [inter[i] / union[i] if union[i] else None for i in range(300)]
        valued = [i for i in range(300) if iou[i] is not None]
        sign = -1 if order == "DESC" else 1
        ranked = sorted(valued, key=lambda i: (sign * iou[i], i))
        ranked += [i for i in range(300) if iou[i] is None]
        q = (f"SELECT image_id, CP(intersect(mask), full, ({lo}, 1.0]) / CP(union(mask), full, "
             f"({lo}, 1.0]) AS iou FROM masks GROUP BY image_id ORDER BY iou {order} LIMIT 7")
        fast = db.query(q, settings=settings)
        assert fast.rows() == [(i, iou[i]) for i in ranked[:7]], (lo, probe)
        assert fast.rows() == db.query(q, use_index=False).rows()


@pytest.fixture
def tiny(tmp_path):
    m = np.array([[0.1, 0.5, 1.0, 0.0]], np.float32)
    db = ms.connect(tmp_path / "db", cell_size=2)
    db.ingest([m, m * 0.5], image_id=[1, 2], metadata={"flag": [True, False]})
    return db


@pytest.mark.parametrize(("sql", "want"), [
    # Predicates holding CP compared as truth values, and ordered by.
    ("SELECT mask_id FROM masks WHERE (CP(mask, full, [0.5, 1]) > 1) = TRUE", [(0,)]),
    ("SELECT mask_id FROM masks WHERE (CP(mask, full, [0.5, 1]) > 1) = flag", [(0,), (1,)]),
    ("SELECT mask_id FROM masks ORDER BY CP(mask, full, [0.5, 1]) > 1 LIMIT 1", [(1,)]),
    # Range ends beyond the float range.
    ("SELECT CP(mask, full, [0, 1e400]) FROM masks", [(4,), (4,)]),
    ("SELECT CP(mask, full, [-1e400, 0.25]) FROM masks", [(2,), (3,)]),
    # Integer arithmetic beyond 2**53 is exact; the bounds must allow for it.
    ("SELECT mask_id FROM masks WHERE CP(mask, full, [0.5, 1]) * 4503599627370496 * 2 + 1 "
     "> CP(mask, full, [0.5, 1]) * 4503599627370496 * 2", [(0,), (1,)]),
    ("SELECT mask_id FROM masks WHERE CP(mask, full, [0.5, 1]) < 9007199254740993",
     [(0,), (1,)]),
])
def test_reviewed_edge_cases(tiny, sql, want):
    assert rows(tiny, sql) == want


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT CP(mask, full, [0.5, 1]) * 1000000000000 * 10000000 FROM masks", "overflow"),
    ("SELECT 1e400 FROM masks", "out of range"),
    ("SELECT 99999999999999999999 FROM masks", "out of range"),
])
def test_out_of_range_numbers_are_errors(tiny, sql, message):
    for use_index in (True, False):
        with pytest.raises(ms.QueryError, match=message) as info:
            tiny.query(sql, use_index=use_index)
        # Located, whether the parser or the evaluator found it.
        assert (info.value.line, info.value.column) == (1, 8), str(info.value)
        assert "^" in str(info.value)


def test_mask_aggregation(saliency):
    db, maps, _ = saliency
    a, b = maps[0::2].astype(np.float64), maps[1::2].astype(np.float64)
    inter = ((np.minimum(a, b) > 0.5) & (np.minimum(a, b) <= 1)).sum((1, 2))
    union = ((np.maximum(a, b) > 0.5) & (np.maximum(a, b) <= 1)).sum((1, 2))
    q = ("SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) AS i, "
         "CP(union(mask), full, (0.5, 1.0]) AS u FROM masks GROUP BY image_id")
    assert rows(db, q) == [(i, int(inter[i]), int(union[i])) for i in range(300)]
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    want = sorted((i for i in range(300) if union[i] > 0), key=lambda i: (-iou[i], i))[:10]
    q = ("SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / "
         "CP(union(mask), full, (0.5, 1.0]) AS iou FROM masks GROUP BY image_id "
         "ORDER BY iou DESC LIMIT 10")
    assert [r[0] for r in rows(db, q)] == want


def test_mask_aggregation_needs_one_shape_per_group(tmp_path):
    db = ms.connect(tmp_path / "db")
    db.ingest([np.zeros((4, 4), np.float32), np.zeros((4, 5), np.float32)], image_id=[7, 7])
    with pytest.raises(ms.QueryError, match="image_id 7: its masks differ in shape"):
        db.query("SELECT image_id, CP(union(mask), full, [0, 1]) FROM masks GROUP BY image_id")


def test_explain_and_explain_analyze(saliency):
    db, _, _ = saliency
    sql = ("SELECT mask_id FROM masks WHERE model_id = 1 AND "
           "CP(mask, box(13, 17, 71, 83), (0.8, 1.0]) > 500")
    plan = [r[0] for r in db.query("EXPLAIN " + sql).rows()]
    assert plan[0].startswith("MergeRows")
    assert plan[-1].strip().endswith("Scan masks")
    assert plan[1].strip() == "-> Per segment (each shard of segments on its own):"
    labels = [line.strip().removeprefix("-> ") for line in plan]
    assert labels[2:] == ["Project [mask_id]", "Select all",
                          "Verify [CP(mask, box(13, 17, 71, 83), (0.8, 1.0])]",
                          "BoundFilter [CP(mask, box(13, 17, 71, 83), (0.8, 1.0]) > 500]",
                          "MetaFilter [model_id = 1]", "Scan masks"]
    analyzed = db.query("EXPLAIN ANALYZE " + sql)
    text = "\n".join(r[0] for r in analyzed.rows())
    real = db.query(sql)
    assert f"{len(real)} rows" in text
    assert f"rejected by metadata: {real.stats.rejected_by_metadata}" in text
    assert f"verified (pixels read): {real.stats.verified} masks" in text
    # Per operator: what each saw and decided.
    ops = real.stats.operators
    assert ops[Scan].masks == 600
    assert ops[MetaFilter].seen == 600
    assert ops[MetaFilter].passed == 300
    bound = ops[BoundFilter]
    assert bound.seen == 300
    assert bound.accepted + bound.rejected + bound.undecided == 300
    assert bound.rejected == real.stats.rejected_by_index > 0
    assert ops[VerifyAll].chosen == len(real)
    assert ops[VerifyAll].candidates == 300 - bound.rejected
    assert ops[Verify].verified == real.stats.verified == bound.undecided
    assert ops[MergeRows].rows == len(real)
    assert ops[MergeRows].shards == 1
    assert f"(seen 300, accepted {bound.accepted}, rejected {bound.rejected}" in text


def test_explain_analyze_of_a_grouped_query(saliency):
    db, _, _ = saliency
    sql = ("SELECT image_id, AVG(CP(mask, bbox, (0.6, 1.0]) / area(bbox)) AS a FROM masks "
           "GROUP BY image_id HAVING a > 0.4 ORDER BY a DESC LIMIT 3")
    text = "\n".join(r[0] for r in db.query("EXPLAIN ANALYZE " + sql).rows())
    ops = db.query(sql).stats.operators
    assert ops[GroupAggregate].rows == 600
    assert ops[GroupAggregate].groups == 300
    assert ops[PartialGroupBounds].rows == 600
    h = ops[GroupFilter]
    assert h.seen == 300
    assert h.accepted + h.rejected + h.undecided == 300
    assert "GroupFilter [a > 0.4]  (seen 300" in text
    assert "GroupAggregate by image_id  (rows 600, groups 300" in text
    assert ops[BoundOrderTopK].chosen == 3


def test_topk_with_a_nan_kth_value(tmp_path):
    """score*score overflows to inf for one row, so its value is NaN; NaN sorts last and
    must not stop the top-k from finding the better rows."""
    m = np.zeros((17, 4, 4), np.float32)
    for i in range(17):
        m[i] = 0.9
        m[i].flat[:i] = 0.1                      # CP(mask, full, [0, 0.5]) == i
    score = [1.0] * 17
    score[0] = 1e200
    db = ms.connect(tmp_path / "db")
    db.ingest(m, image_id=np.arange(17), metadata={"score": score})
    expr = "score * score - score * score + CP(mask, full, [0, 0.5])"
    want = [(i, float(i)) for i in range(16, 0, -1)]
    for use_index in (True, False):
        full = db.query(f"SELECT mask_id, {expr} AS s FROM masks ORDER BY s DESC",
                        use_index=use_index).rows()
        assert full[:16] == want
        assert full[16][0] == 0
        assert np.isnan(full[16][1])
        top = db.query(f"SELECT mask_id, {expr} AS s FROM masks ORDER BY s DESC LIMIT 16",
                       use_index=use_index).rows()
        assert top == want
        grouped = db.query(f"SELECT image_id, SUM({expr}) AS s FROM masks GROUP BY image_id "
                           "ORDER BY s DESC LIMIT 16", use_index=use_index).rows()
        assert grouped == want


def test_integer_sum_overflow_is_an_error(tmp_path):
    db = ms.connect(tmp_path / "db")
    db.ingest([np.zeros((8, 8), np.float32)] * 3, image_id=[1, 1, 2],
              metadata={"big": [2**62, 2**62, 1]})
    for use_index in (True, False):
        with pytest.raises(ms.QueryError, match="overflow in SUM") as info:
            db.query("SELECT image_id, SUM(big) FROM masks GROUP BY image_id",
                     use_index=use_index)
        assert (info.value.line, info.value.column) == (1, 18)   # at SUM(big)


def test_a_repeated_group_key_counts_once(small):
    assert rows(small, "SELECT image_id, COUNT(*) FROM masks GROUP BY image_id, image_id") == [
        (1, 2), (2, 2)]


def test_lazy_index_survives_deltas_removed_by_a_concurrent_build(tmp_path):
    """A reader that listed delta files which build_index() then removed loads the full
    index instead of failing."""
    db = ms.connect(tmp_path / "db", index="lazy")
    db.ingest(np.random.default_rng(1).random((6, 16, 16)).astype(np.float32),
              image_id=list(range(6)))
    db.query("SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1]) > 100")
    seg_dir = next((tmp_path / "db" / "segments").iterdir())
    deltas = sorted(seg_dir.glob("chi-delta-*.npz"))
    assert deltas
    ms.connect(tmp_path / "db").build_index()
    from masksearch.store.segments import Segment

    reader = Segment(seg_dir)
    listed = deltas  # as listed before the build removed them
    original = type(seg_dir).glob
    try:
        type(seg_dir).glob = lambda self, pattern: iter(listed) if "delta" in pattern \
            else original(self, pattern)
        index = reader.index
    finally:
        type(seg_dir).glob = original
    assert index.built.all()


@pytest.fixture(scope="module")
def binary255(tmp_path_factory):
    """Binary object masks stored as uint8 0/255 (as PNG masks are), and the same masks as
    bool."""
    from masksearch.synth import binary_masks

    objects = binary_masks(300, size=96, seed=1)
    as255 = ms.connect(tmp_path_factory.mktemp("b255") / "db")
    as255.ingest(objects.astype(np.uint8) * 255, image_id=np.arange(300))
    as_bool = ms.connect(tmp_path_factory.mktemp("bbool") / "db")
    as_bool.ingest(objects, image_id=np.arange(300))
    return as255, as_bool, objects


@pytest.mark.parametrize("box", [(16, 16, 80, 80), (0, 32, 96, 96), (10, 13, 77, 90)])
@pytest.mark.parametrize("rng", ["(0, 255]", "[1, 255]"])
def test_foreground_of_0_255_masks_is_decided_by_the_index(binary255, box, rng):
    """The default edges of wide integer spans include vmin + 1 and vmax: on 0/255 masks
    a (0, 255] filter reads no mask for a box on the cell grid, and no more than for the
    same masks stored as bool otherwise; the rows are exact."""
    as255, as_bool, objects = binary255
    x0, y0, x1, y1 = box
    counts = objects[:, y0:y1, x0:x1].sum((1, 2))
    for t in np.percentile(counts, [25, 50, 90]).astype(int).tolist():
        sql = f"SELECT mask_id FROM masks WHERE CP(mask, box({x0}, {y0}, {x1}, {y1}), {rng}) > {t}"
        r = as255.query(sql)
        assert [m for (m,) in r] == np.flatnonzero(counts > t).tolist()
        assert r.rows() == as255.query(sql, use_index=False).rows()
        assert r.stats.verified <= as_bool.query(sql).stats.verified
        if x0 % 16 == y0 % 16 == 0:
            assert r.stats.verified == 0
    for sql, want in [("SELECT COUNT(*) FROM masks WHERE CP(mask, full, [255, 255]) = "
                       "CP(mask, full, (0, inf))", 300),
                      ("SELECT COUNT(*) FROM masks WHERE CP(mask, full, [0, 0]) > 4000",
                       int(((~objects).sum((1, 2)) > 4000).sum()))]:
        r = as255.query(sql)
        assert r.rows() == [(want,)]
        assert r.stats.verified == 0


def test_notice_for_a_unit_range_over_0_255_masks(binary255, small):
    as255, _, _ = binary255
    sql = "SELECT mask_id FROM masks WHERE CP(mask, full, (0.6, 1.0]) > 100"
    assert as255.notices(sql) == [
        "line 1, column 48: the uint8 masks hold values from 0 to 255, and (0.6, 1.0] covers "
        "only the value 1; for the same share of their scale 0..255, write (153, 255]"]
    assert "covers only the value 0; for the same share of their scale 0..255, write " \
        "[0, 127.5)" in as255.notices(sql.replace("(0.6, 1.0]", "[0, 0.5)"))[0]
    # Ranges on the masks' own scale, and integer ranges (label maps' classes): no notice.
    for ok in ("(153, 255]", "(0, 255]", "[1, 1]", "(0, 1]", "[0, inf)"):
        assert as255.notices(sql.replace("(0.6, 1.0]", ok)) == [], ok
    # Float masks in [0, 1]: no notice about scales.
    assert small.notices(sql) == []


def test_notice_for_a_unit_range_names_what_label_maps_hold(tmp_path):
    from masksearch.lang.notices import SCALE_GAP

    labels = np.zeros((2, 8, 8), np.uint16)
    labels[0, 0, :3] = [1, 2, SCALE_GAP + 5]
    db = ms.connect(tmp_path / "db")
    db.ingest(labels, image_id=[0, 1])
    sql = "SELECT mask_id FROM masks WHERE CP(mask, full, [0, 0.5]) > 1"
    # 15 is far below the uint16 scale: no rescaled range is suggested.
    assert db.notices(sql) == ["line 1, column 48: the uint16 masks hold values from 0 to "
                               f"{SCALE_GAP + 5}, and [0, 0.5] covers only the value 0"]
    few = ms.connect(tmp_path / "few")
    few.ingest(np.minimum(labels, SCALE_GAP - 1), image_id=[0, 1])
    assert few.notices(sql) == []
