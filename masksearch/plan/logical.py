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
    columns: frozenset[str] = frozenset()  # metadata columns read (the rest are dropped)

    def operators(self) -> list[tuple[str, str]]:
        """(key, label) of each operator, root first; keys match the executor's trace."""
        q = self.query
        src = lambda e: _source(q.text, e)  # noqa: E731
        ops = [("project", f"Project [{', '.join(q.names)}]")]
        if self.limit is not None:
            keys = ", ".join(f"{src(o.expr)} {'DESC' if o.descending else 'ASC'}"
                             for o in self.order_by) or ("group key" if self.grouped
                                                         else "mask_id")
            label = {"bounded_topk": "TopK (bound order, early stop)",
                     "ordered_scan": "Limit (key order, early stop)", "full": "TopK (full)"}
            ops.append(("select", f"{label[self.strategy]} k={self.limit} by {keys}"))
        elif self.order_by:
            ops.append(("select", "Sort by " + ", ".join(src(o.expr) for o in self.order_by)))
        else:
            ops.append(("select", "Verify"))
        if self.grouped:
            if self.having is not None:
                ops.append(("having", f"GroupBoundFilter+Verify [{src(self.having)}]"))
            keys = ", ".join(k.name for k in self.group_by) or "(all rows)"
            aggs = ", ".join(src(a) for a in q.group_terms)
            ops.append(("aggregate", f"Aggregate by {keys} [{aggs}]"))
        if self.cp_filter:
            ops.append(("bound", f"BoundFilter [{' AND '.join(map(src, self.cp_filter))}]"))
        if self.meta_filter:
            ops.append(("meta", f"MetaFilter [{' AND '.join(map(src, self.meta_filter))}]"))
        ops.append(("scan", "Scan masks"))
        return ops

    def describe(self, stats: dict | None = None) -> str:
        """The plan as an indented tree, root first; with ``stats`` (from a run, per
        operator) each line also says what its operator saw, decided, read and took."""
        lines = []
        for depth, (key, label) in enumerate(self.operators()):
            line = "  " * depth + ("-> " if depth else "") + label
            if stats is not None and key in stats:
                line += "  (" + ", ".join(_stat(k, v) for k, v in stats[key].items()) + ")"
            lines.append(line)
        return "\n".join(lines)


def _stat(name: str, value) -> str:
    if name == "ms":
        return f"{value:.1f} ms"
    if name == "bytes_read":
        return f"{value / 1e6:.2f} MB read"
    return f"{name.replace('_', ' ')} {value}"


def _source(text: str, e) -> str:
    pos = getattr(e, "pos", None)
    return " ".join(text[pos[2]:pos[3]].split()) if pos else type(e).__name__
