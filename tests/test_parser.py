"""Parsing: the paper's query shapes, case-insensitivity, comments, located syntax errors."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.errors import MaskSearchError, QuerySyntaxError
from masksearch.lang import ast
from masksearch.lang.parser import parse

from .strategies import examples


def test_paper_filter_query():
    q = parse("""SELECT mask_id, image_id FROM masks
WHERE mask_type = 'saliency' AND CP(mask, bbox, (0.6, 1.0]) / area(bbox) < 0.2;""")
    assert isinstance(q, ast.Select)
    assert q.table == "masks"
    cond = q.where.items[1]
    assert isinstance(cond, ast.Compare)
    assert cond.op == "<"
    cp = cond.left.left
    assert cp == ast.CP(ast.MaskRef(None), ast.ColumnRoi("bbox"), ast.Range("0.6", False, "1.0", True))


def test_topk_with_alias_and_box():
    q = parse("select mask_id, cp(MASK, BOX(0, 0, 112, 112), [0.8, 1.0]) as c "
              "from MasksDatabaseView order by c desc limit 25")
    assert q.limit == 25
    assert q.order_by[0].descending
    assert q.items[1].alias == "c"
    assert q.items[1].expr.roi == ast.BoxRoi(0, 0, 112, 112)


def test_ranges_infinities_and_negative_numbers():
    q = parse("SELECT mask_id FROM masks WHERE CP(mask, full_image, (-inf, -0.5]) > -3 "
              "AND CP(mask, box(-4, 0, 3, 3), [1e-3, inf)) >= 1")
    a, b = q.where.items
    assert a.left.range == ast.Range("-inf", False, "-0.5", True)
    assert a.right == ast.Literal(-3, "-3")
    assert b.left.roi == ast.BoxRoi(-4, 0, 3, 3)
    assert b.left.range.hi == "inf"


def test_predicates_and_comments():
    q = parse("""SELECT mask_id FROM masks -- a comment
    WHERE label NOT IN ('a', 'b''c') AND score BETWEEN 0.1 AND 0.9
      AND bbox IS NOT NULL OR NOT model_id <> 3""")
    assert isinstance(q.where, ast.Or)
    left = q.where.items[0]
    assert left.items[0] == ast.InList(ast.Column("label"), (ast.Literal("a"), ast.Literal("b'c")),
                                       True)
    assert isinstance(left.items[1], ast.Between)
    assert isinstance(left.items[2], ast.IsNull)
    assert q.where.items[1] == ast.Not(ast.Compare("!=", ast.Column("model_id"), ast.Literal(3)))


def test_arithmetic_precedence():
    q = parse("SELECT 1 + 2 * 3 - 4 / 2 FROM masks")
    e = q.items[0].expr
    assert e.op == "-"
    assert e.left.op == "+"
    assert e.left.right.op == "*"
    assert e.right.op == "/"


def test_positions_are_kept():
    text = "SELECT mask_id\nFROM masks\nWHERE   foo > 1"
    q = parse(text)
    assert q.where.left.pos[:2] == (3, 9)


@pytest.mark.parametrize(("text", "line", "column", "expected"), [
    ("SELECT mask_id FROM masks WHERE", 1, 32, "expected"),
    ("SELECT mask_id FROM masks WHERE\n  CP(mask, full, (0.5, 1.0) > 3", 2, 29, "expected ')'"),
    ("SELECT mask_id masks", 1, 21, "unexpected end of query; expected"),
    ("SELECT mask_id FROM masks WHERE x = $", 1, 37, "unexpected character '$'"),
    ("SELECT mask_id FROM masks LIMIT 1.5", 1, 33, "LIMIT needs a whole number, got 1.5"),
    ("SELECT CP(mask, full, 0.5) FROM masks", 1, 23, "'[' or '('"),
])
def test_syntax_errors_are_located(text, line, column, expected):
    with pytest.raises(QuerySyntaxError) as e:
        parse(text)
    err = e.value
    assert (err.line, err.column) == (line, column)
    assert expected in str(err)
    caret_line = str(err).splitlines()[-1]
    assert caret_line.index("^") - 4 == column - 1


@pytest.mark.parametrize(("text", "line", "column", "message"), [
    ("SELECT CPP(mask, full, [0, 1]) FROM masks", 1, 8,
     "unknown function 'CPP'; did you mean CP?"),
    ("SELECT mask_id FROM masks\nWHERE  summ (mask_id) > 1", 2, 8,
     "unknown function 'summ'; did you mean SUM?"),
    ("SELECT aera(bbox) FROM masks", 1, 8, "unknown function 'aera'; did you mean AREA?"),
    ("SELECT frobnicate(mask_id) FROM masks", 1, 8,
     "unknown function 'frobnicate'; the functions are AREA, AVG, BOX, COUNT, CP, INTERSECT, "
     "MAX, MEAN, MIN, SUM, UNION"),
])
def test_an_unknown_function_is_named_with_the_closest_ones(text, line, column, message):
    with pytest.raises(QuerySyntaxError) as e:
        parse(text)
    err = e.value
    assert err.message == message
    assert (err.line, err.column) == (line, column)
    assert str(err).splitlines()[-1].index("^") - 4 == column - 1


@pytest.mark.parametrize("text", [
    "SELECT mask_id FROM masks(",          # a table name
    "SELECT mask_id AS m(1) FROM masks",   # an alias
    "SELECT mask_id -- x\n(1) FROM masks",  # a comment between the name and '('
])
def test_a_name_before_parenthesis_that_is_no_call_is_a_plain_syntax_error(text):
    with pytest.raises(QuerySyntaxError, match="unexpected '\\('"):
        parse(text)


@pytest.mark.parametrize(("text", "message"), [
    ('SELECT mask_id FROM masks WHERE label = "coins"',
     "unexpected character '\"'; strings take single quotes: 'coins'"),
    ('SELECT mask_id FROM masks WHERE label = "o\'k" OR label = \'x\'',
     "unexpected character '\"'; strings take single quotes: 'o''k'"),
    ('SELECT mask_id FROM masks WHERE label = "coins',
     "unexpected character '\"'; strings take single quotes, as in 'text'"),
    ('SELECT mask_id FROM masks WHERE label = "a\nb"',
     "unexpected character '\"'; strings take single quotes, as in 'text'"),
])
def test_double_quotes_get_the_single_quoted_string(text, message):
    with pytest.raises(QuerySyntaxError) as e:
        parse(text)
    assert e.value.message == message
    assert (e.value.line, e.value.column) == (1, 41)


@settings(max_examples=examples(300))
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_our_errors(text):
    with contextlib.suppress(MaskSearchError):
        parse(text)


TOKENS = ["SELECT", "mask_id", "FROM", "masks", "WHERE", "CP", "(", ")", "mask", ",", "full",
          "box", "[", "]", "0.5", "1", "-", "inf", "AND", "OR", "NOT", "<", "=", "ORDER", "BY",
          "LIMIT", "area", "bbox", "'x'", "IS", "NULL", "IN", "BETWEEN", ";", "*", "/"]


@settings(max_examples=examples(300))
@given(st.lists(st.sampled_from(TOKENS), max_size=25))
def test_random_token_streams_raise_only_our_errors(tokens):
    with contextlib.suppress(MaskSearchError):
        parse(" ".join(tokens))
