"""Row level and group level: where aggregates and per-group masks may appear.

In a query without GROUP BY (and without aggregates) every expression is per row; in a
grouped one, outside aggregates only group keys, literals and CP over intersect, union or
mean of a group's masks may appear.
"""

from __future__ import annotations

from . import ast
from .types import located_error

GroupTerms = list[ast.Expr]     # distinct aggregates and per-group CP terms, in order seen


def has_aggregate(expr: ast.Expr) -> bool:
    """An aggregate or a mask aggregation (both make one row per group)."""
    return any(isinstance(n, ast.Aggregate) or (isinstance(n, ast.CP) and n.mask.aggregate)
               for n in ast.walk(expr))


def check_row_level(text: str, e: ast.Expr, where: str) -> None:
    """No aggregates and no mask aggregation outside grouped queries."""
    for n in ast.walk(e):
        if isinstance(n, ast.Aggregate):
            raise located_error(text, f"aggregate {n.func.upper()} cannot be used in {where}",
                                n)
        if isinstance(n, ast.CP) and n.mask.aggregate is not None:
            raise located_error(text, f"{n.mask.aggregate}(mask) is one mask per group; it "
                                f"cannot be used in {where}", n.mask)


def check_group_level(text: str, e: ast.Expr, keys: set[ast.Column],
                      group_terms: GroupTerms) -> None:
    """Outside aggregates only group keys, literals and per-group CP terms may appear;
    the aggregates and per-group CP terms found are added to ``group_terms``."""
    if isinstance(e, ast.Aggregate):
        _check_aggregate(text, e)
    elif isinstance(e, ast.CP):
        _check_group_cp(text, e)
    elif isinstance(e, ast.Column) and e not in keys:
        raise located_error(text, f"column {e.name!r} must be in GROUP BY or inside an "
                            "aggregate", e)
    elif isinstance(e, ast.Area):
        raise located_error(text, "area(...) is per mask: in a grouped query put it inside "
                            "an aggregate", e)
    else:
        for child in ast.children(e):
            check_group_level(text, child, keys, group_terms)
        return
    if e not in group_terms:
        group_terms.append(e)


def _check_aggregate(text: str, e: ast.Aggregate) -> None:
    for n in ast.walk(e.arg) if e.arg is not None else ():
        if isinstance(n, ast.Aggregate):
            raise located_error(text, "aggregates cannot be nested", n)
        if isinstance(n, ast.CP) and n.mask.aggregate is not None:
            raise located_error(text, f"{n.mask.aggregate}(mask) is a per-group mask; it "
                                "cannot be used inside an aggregate", n.mask)


def _check_group_cp(text: str, e: ast.CP) -> None:
    if e.mask.aggregate is None:
        raise located_error(text, "CP(mask, ...) over single masks must be inside an "
                            "aggregate in a grouped query (or use intersect/union/mean(mask))",
                            e)
    if isinstance(e.roi, ast.ColumnRoi):
        raise located_error(text, f"{e.mask.aggregate}(mask) is one mask per group: its "
                            "region must be full or box(...), not a per-mask box column",
                            e.roi)
