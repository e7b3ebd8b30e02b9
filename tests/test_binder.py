"""Binding: columns, aliases, positions, types and exact range ends."""

import math

import pytest

from masksearch.errors import BindError
from masksearch.lang import ast
from masksearch.lang.binder import bind
from masksearch.lang.parser import parse
from masksearch.ranges import Cut, exact_cut

COLUMNS = {"mask_id": "int64", "image_id": "int64", "model_id": "string", "mask_type": "null",
           "height": "int64", "width": "int64", "bbox": "box", "label": "string",
           "score": "float64"}


def b(text):
    return bind(parse(text), text, COLUMNS)


def test_alias_in_where_and_order_and_position():
    q = b("SELECT mask_id, CP(mask, bbox, (0.6, 1.0]) / area(bbox) AS r FROM masks "
          "WHERE r < 0.2 ORDER BY 2 DESC, r LIMIT 3")
    assert q.where.left == q.outputs[1]
    assert q.order_by[0].expr == q.outputs[1]
    assert q.order_by[1].expr == q.outputs[1]
    assert q.names == ("mask_id", "r")
    assert len(q.terms) == 1   # the same CP term is shared


def test_star_and_expression_names():
    q = b("SELECT *, CP(mask, full, [0.5, 1]) FROM masks")
    assert q.names[:len(COLUMNS)] == tuple(COLUMNS)
    assert q.names[-1] == "CP(mask, full, [0.5, 1])"


def test_between_and_in_are_desugared():
    q = b("SELECT mask_id FROM masks WHERE score NOT BETWEEN 0 AND 1 AND label IN ('a', 'b')")
    nb, inn = q.where.items
    assert isinstance(nb, ast.Not)
    assert isinstance(nb.operand, ast.And)
    assert isinstance(inn, ast.Or)
    assert all(isinstance(x, ast.Compare) for x in inn.items)


@pytest.mark.parametrize(("text", "message"), [
    ("SELECT mask_id FROM masks WHERE labl = 'a'",
     "unknown column 'labl'; did you mean label? columns are: mask_id"),
    ("SELECT mask_id FROM masks WHERE label = 1", "cannot compare string with number"),
    ("SELECT mask_id FROM masks WHERE CP(mask, label, [0, 1]) > 1", "not a box column"),
    ("SELECT mask_id FROM masks WHERE CP(mask, nobox, [0, 1]) > 1", "unknown column 'nobox'"),
    ("SELECT mask_id FROM masks WHERE CP(mask, full, [0.5, 0.5)) > 1", "empty range [0.5, 0.5)"),
    ("SELECT mask_id FROM masks WHERE CP(mask, full, [0.7, 0.5]) > 1", "empty range"),
    ("SELECT mask_id FROM masks WHERE CP(mask, box(5, 0, 2, 3), [0, 1]) > 1", "x1 < x0"),
    ("SELECT mask FROM masks", "mask can only be used inside CP"),
    ("SELECT mask_id FROM masks WHERE label + 1 > 2", "'+' needs a number, got string"),
    ("SELECT mask_id FROM masks WHERE score", "WHERE needs a predicate, got number"),
    ("SELECT mask_id FROM masks WHERE bbox > 1", "a box cannot be compared"),
    ("SELECT mask_id FROM masks ORDER BY 3", "ORDER BY 3: the select list has 1 items"),
    ("SELECT mask_id FROM images", "unknown table 'images'"),
    ("SELECT mask_id FROM masks WHERE NOT score", "NOT needs a predicate"),
])
def test_bind_errors_name_the_problem_and_place(text, message):
    with pytest.raises(BindError) as e:
        b(text)
    assert message in str(e.value)
    assert e.value.line is not None
    assert "^" in str(e.value)


@pytest.mark.parametrize(("text", "message"), [
    ("SELECT lable FROM masks", "unknown column 'lable'; did you mean label? columns are: "),
    ("SELECT MASKID FROM masks", "unknown column 'MASKID'; did you mean mask_id? columns"),
    ("SELECT widht FROM masks", "unknown column 'widht'; did you mean width? columns"),
    ("SELECT mask_id, CP(mask, full, [0, 1]) AS hot FROM masks WHERE hott > 1",
     "unknown column 'hott'; did you mean hot? columns"),
    ("SELECT mask_id FROM masks WHERE CP(mask, box1, [0, 1]) > 1",
     "unknown column 'box1'; did you mean bbox? columns"),
    ("SELECT x FROM masks", "unknown column 'x'; columns are: mask_id, image_id"),
])
def test_unknown_columns_suggest_the_closest_names(text, message):
    with pytest.raises(BindError) as e:
        b(text)
    assert e.value.message.startswith(message)


def test_alias_not_visible_in_select_list():
    with pytest.raises(BindError, match="unknown column 'c'"):
        b("SELECT CP(mask, full, [0, 1]) AS c, c + 1 FROM masks")


def test_explain_binds_the_inner_statement():
    q = b("EXPLAIN ANALYZE SELECT mask_id FROM masks WHERE CP(mask, full, [0.5, 1]) > 3")
    assert q.explain
    assert q.analyze
    assert len(q.terms) == 1


def test_grouped_query_binds():
    q = b("SELECT image_id, AVG(CP(mask, bbox, (0.6, 1.0]) / area(bbox)) AS attn FROM masks "
          "WHERE model_id IN ('a', 'b') GROUP BY image_id HAVING attn > 0.5 "
          "ORDER BY attn DESC LIMIT 10")
    assert q.grouped
    assert q.group_by == (ast.Column("image_id"),)
    assert len(q.group_terms) == 1
    assert q.group_terms[0].func == "avg"
    assert q.having.left == q.group_terms[0]
    assert q.order_by[0].expr == q.group_terms[0]
    assert len(q.terms) == 1    # the CP inside the aggregate is a per-mask term
    assert b("SELECT COUNT(*) FROM masks").grouped
    assert b("SELECT COUNT(*) FROM masks HAVING COUNT(*) > 2").having is not None


@pytest.mark.parametrize(("text", "message"), [
    ("SELECT image_id, label FROM masks GROUP BY image_id",
     "column 'label' must be in GROUP BY or inside an aggregate"),
    ("SELECT mask_id FROM masks WHERE COUNT(*) > 1", "aggregate COUNT cannot be used in WHERE"),
    ("SELECT MAX(MIN(score)) FROM masks", "aggregates cannot be nested"),
    ("SELECT SUM(label) FROM masks", "SUM needs a number, got string"),
    ("SELECT *, COUNT(*) FROM masks", "SELECT * cannot be used with GROUP BY"),
    ("SELECT image_id FROM masks GROUP BY image_id + 1", "GROUP BY takes column names"),
    ("SELECT COUNT(*) FROM masks GROUP BY bbox", "cannot group by the box column"),
    ("SELECT image_id, CP(mask, full, [0, 1]) FROM masks GROUP BY image_id",
     "CP(mask, ...) over single masks must be inside an aggregate"),
    ("SELECT image_id, area(bbox) FROM masks GROUP BY image_id", "put it inside an aggregate"),
    ("SELECT mask_id, CP(union(mask), full, [0, 1]) FROM masks",
     "column 'mask_id' must be in GROUP BY"),
    ("SELECT mask_id FROM masks WHERE CP(union(mask), full, [0, 1]) > 1",
     "union(mask) is one mask per group; it cannot be used in WHERE"),
    ("SELECT image_id, CP(union(mask), bbox, [0, 1]) FROM masks GROUP BY image_id",
     "must be full or box(...)"),
])
def test_grouping_errors(text, message):
    with pytest.raises(BindError) as e:
        b(text)
    assert message in str(e.value)
    assert "^" in str(e.value)


def test_exact_cut_is_exact_for_decimal_literals():
    # 0.1 is not a float: `v < 0.1` and `v <= 0.1` both mean `v <= largest float below 0.1`.
    below = math.nextafter(0.1, 0)
    assert exact_cut("0.1", False) == Cut(below, True)
    assert exact_cut("0.1", True) == Cut(below, True)
    assert exact_cut("0.5", False) == Cut(0.5, False)
    assert exact_cut("-inf", False) == Cut(-math.inf, False)
    assert exact_cut("1e-1", True) == Cut(below, True)
    # A decimal just above a float keeps that float inside `v < d`.
    assert exact_cut("0.5000000000000000001", False) == Cut(0.5, True)
