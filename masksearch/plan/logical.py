"""The logical plan: which predicates run on metadata, which on bounds, and how rows are chosen."""

from __future__ import annotations

from dataclasses import dataclass

from ..lang import ast
from ..lang.binder import BoundQuery


@dataclass(frozen=True)
class Plan:
    """Scan -> MetaFilter -> BoundFilter/Verify -> (TopK | Sort) -> Limit -> Project.

    ``strategy`` is how the rows are chosen:
      ``ordered_scan``  order keys need no pixels: walk candidates in key order, verify until
                        ``limit`` rows qualify;
      ``bounded_topk``  the first order key holds CP: verify candidates best bound first, stop
                        once no unread mask can enter the top ``limit``;
      ``full``          verify every candidate, then sort.
    """

    query: BoundQuery
    meta_filter: tuple[ast.Expr, ...]      # conjuncts of WHERE that read no pixels
    cp_filter: tuple[ast.Expr, ...]        # conjuncts of WHERE with CP terms
    order_by: tuple[ast.OrderItem, ...]
    limit: int | None
    strategy: str
    output_terms: frozenset[int]     # terms the output needs exact: CP (rows) or aggregates
    grouped: bool = False
    group_by: tuple[ast.Column, ...] = ()
    having: ast.Expr | None = None

    def describe(self) -> str:
        """The plan as an indented tree, root first."""
        q = self.query
        src = lambda e: _source(q.text, e)  # noqa: E731
        lines = [f"Project [{', '.join(q.names)}]"]
        if self.limit is not None:
            keys = ", ".join(f"{src(o.expr)} {'DESC' if o.descending else 'ASC'}"
                             for o in self.order_by) or "mask_id"
            label = {"bounded_topk": "TopK (bound order, early stop)",
                     "ordered_scan": "Limit (key order, early stop)", "full": "TopK (full)"}
            lines.append(f"{label[self.strategy]} k={self.limit} by {keys}")
        elif self.order_by:
            lines.append("Sort by " + ", ".join(src(o.expr) for o in self.order_by))
        if self.grouped:
            if self.having is not None:
                lines.append(f"GroupBoundFilter+Verify [{src(self.having)}]")
            keys = ", ".join(k.name for k in self.group_by) or "(all rows)"
            aggs = ", ".join(src(a) for a in q.group_terms)

            lines.append(f"Aggregate by {keys} [{aggs}]")
        if self.cp_filter:
            lines.append(f"BoundFilter+Verify [{' AND '.join(map(src, self.cp_filter))}]")
        if self.meta_filter:
            lines.append(f"MetaFilter [{' AND '.join(map(src, self.meta_filter))}]")
        lines.append("Scan masks")
        return "\n".join("  " * i + ("-> " if i else "") + line for i, line in enumerate(lines))


def _source(text: str, e) -> str:
    pos = getattr(e, "pos", None)
    return " ".join(text[pos[2]:pos[3]].split()) if pos else type(e).__name__
