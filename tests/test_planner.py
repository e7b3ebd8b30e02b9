"""The planner: which operators a statement gets, how rows are chosen, what the fragment
reads, and that plans and fragments survive pickling (they are shipped to other processes)."""

from __future__ import annotations

import pickle

import pytest

from masksearch.lang import ast
from masksearch.lang.binder import bind
from masksearch.lang.parser import parse
from masksearch.plan.operators import (
    BoundFilter,
    BoundOrderTopK,
    GroupAggregate,
    GroupBounds,
    GroupFilter,
    KeyOrderTopK,
    MaskAggregation,
    MergeRows,
    MetaFilter,
    PartialGroupBounds,
    Project,
    Scan,
    Verify,
    VerifyAll,
)
from masksearch.plan.physical import GroupMerge, PhysicalPlan, RowMerge
from masksearch.plan.planner import ROW_COLUMNS, plan

COLUMNS = {"mask_id": "int64", "image_id": "int64", "model_id": "int64",
           "mask_type": "string", "height": "int64", "width": "int64", "label": "string",
           "score": "float64", "bbox": "box"}


def p(sql: str) -> PhysicalPlan:
    return plan(bind(parse(sql), sql, COLUMNS))


@pytest.mark.parametrize(("sql", "kind", "k"), [
    ("SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1]) > 3", VerifyAll, None),
    ("SELECT mask_id FROM masks ORDER BY score", VerifyAll, None),
    ("SELECT mask_id FROM masks ORDER BY score DESC LIMIT 4", KeyOrderTopK, 4),
    ("SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1]) > 3 LIMIT 2", KeyOrderTopK, 2),
    ("SELECT mask_id, CP(mask, bbox, (0.5, 1]) AS c FROM masks ORDER BY c DESC LIMIT 25",
     BoundOrderTopK, 25),
    ("SELECT mask_id FROM masks ORDER BY label, CP(mask, full, (0.5, 1]) LIMIT 3", VerifyAll,
     3),
    ("SELECT mask_id FROM masks ORDER BY CP(mask, full, (0.5, 1]) LIMIT 0", BoundOrderTopK, 0),
])
def test_how_rows_are_chosen(sql, kind, k):
    plan_ = p(sql)
    select = plan_.fragment.select
    assert type(select) is kind
    assert (select.limit if isinstance(select, VerifyAll) else select.k) == k
    assert plan_.merge == RowMerge(MergeRows(plan_.query.order_by, plan_.query.limit))


def test_where_splits_into_metadata_and_bounds():
    plan_ = p("SELECT mask_id FROM masks WHERE label = 'a' AND CP(mask, bbox, (0.6, 1]) > 5 "
              "AND score > 1 AND (CP(mask, full, [0, 0.5]) < 3 OR model_id = 2)")
    f = plan_.fragment
    assert isinstance(f.meta_filter, MetaFilter)
    assert isinstance(f.bound_filter, BoundFilter)
    meta = f.meta_filter.predicate
    assert isinstance(meta, ast.And)
    assert [type(x) for x in meta.items] == [ast.Compare] * 2
    bound = f.bound_filter.predicate
    assert isinstance(bound, ast.And)
    assert isinstance(bound.items[1], ast.Or)
    assert isinstance(f.verify, Verify)
    assert len(f.verify.terms) == 2
    assert f.operators() == (f.project, f.select, f.verify, f.bound_filter, f.meta_filter,
                             f.scan)


def test_a_query_without_cp_has_no_bound_filter_or_verify():
    f = p("SELECT mask_id, label FROM masks WHERE score > 1 LIMIT 3").fragment
    assert f.bound_filter is None
    assert f.verify is None
    assert f.scan == Scan(tuple(sorted({*ROW_COLUMNS, "label", "score"})))


def test_the_scan_reads_only_the_columns_used():
    f = p("SELECT image_id, CP(mask, bbox, (0.5, 1]) FROM masks WHERE model_id = 1 "
          "ORDER BY score").fragment
    assert set(f.scan.columns) == {*ROW_COLUMNS, "image_id", "bbox", "model_id", "score"}


def test_output_terms_are_those_the_output_and_the_order_need():
    plan_ = p("SELECT mask_id, CP(mask, box(0, 0, 4, 4), [0, 1]) FROM masks "
              "WHERE CP(mask, full, (0.5, 1]) > 3 ORDER BY CP(mask, bbox, (0.1, 1]) LIMIT 2")
    q = plan_.query
    needed = {q.terms[t].roi for t in plan_.output_terms}
    assert needed == {ast.BoxRoi(0, 0, 4, 4), ast.ColumnRoi("bbox")}


def test_a_grouped_plan_merges_members_from_every_shard():
    plan_ = p("SELECT image_id, CP(intersect(mask), full, (0.5, 1]) / CP(union(mask), full, "
              "(0.5, 1]) AS iou, COUNT(*) FROM masks WHERE model_id IN (1, 2) "
              "GROUP BY image_id HAVING iou > 0.1 ORDER BY iou LIMIT 5")
    f, m = plan_.fragment, plan_.merge
    assert f.members == PartialGroupBounds((ast.Column("image_id"),))
    assert f.select is None
    assert f.project is None
    assert f.verify is None
    assert isinstance(m, GroupMerge)
    assert m.aggregate == GroupAggregate((ast.Column("image_id"),))
    assert isinstance(m.bounds, GroupBounds)
    assert len(m.bounds.aggregates) == 3
    assert isinstance(m.filter, GroupFilter)
    assert isinstance(m.mask_aggregation, MaskAggregation)
    assert [t.mask.aggregate for t in m.mask_aggregation.terms] == ["intersect", "union"]
    assert isinstance(m.select, BoundOrderTopK)
    assert m.select.k == 5
    assert isinstance(m.project, Project)
    assert m.project.names == ("image_id", "iou",
                                                                  "COUNT(*)")
    assert sorted(plan_.output_terms) == [0, 1, 2]


def test_aggregates_without_group_by_are_one_group():
    m = p("SELECT COUNT(*), AVG(score) FROM masks WHERE CP(mask, full, (0.5, 1]) > 1").merge
    assert isinstance(m, GroupMerge)
    assert m.aggregate.keys == ()
    assert m.filter is None
    assert m.mask_aggregation is None
    assert isinstance(m.select, VerifyAll)


@pytest.mark.parametrize("sql", [
    "SELECT mask_id, CP(mask, bbox, (0.6, 1.0]) / area(bbox) AS r FROM masks "
    "WHERE label = 'x' AND r < 0.2 ORDER BY r DESC LIMIT 3",
    "SELECT image_id, AVG(CP(mask, full, [0.5, 1])) AS a FROM masks GROUP BY image_id "
    "HAVING a > 3 ORDER BY a",
])
def test_plans_and_fragments_pickle(sql):
    plan_ = p(sql)
    again = pickle.loads(pickle.dumps(plan_))
    assert again == plan_
    assert pickle.loads(pickle.dumps(plan_.fragment)) == plan_.fragment
    assert again.describe() == plan_.describe()


def test_describe_lists_the_merge_then_the_per_segment_operators():
    lines = p("SELECT mask_id, CP(mask, full, (0.5, 1]) AS c FROM masks WHERE label = 'a' "
              "ORDER BY c DESC LIMIT 7").describe().splitlines()
    assert [line.strip().removeprefix("-> ") for line in lines] == [
        "MergeRows k=7 by CP(mask, full, (0.5, 1]) DESC",
        "Per segment (each shard of segments on its own):",
        "Project [mask_id, c]",
        "TopK (bound order, early stop) k=7 by CP(mask, full, (0.5, 1]) DESC",
        "Verify [CP(mask, full, (0.5, 1])]",
        "MetaFilter [label = 'a']",
        "Scan masks"]
    assert [len(line) - len(line.lstrip()) for line in lines] == list(range(0, 14, 2))
