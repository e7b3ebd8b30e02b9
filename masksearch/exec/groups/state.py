"""What is known of each group's aggregates."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class GroupState:
    """(groups, aggregates) arrays: bounds, whether NULL is possible or certain, whether
    NaN is possible, the exact value (a Python number or None) where ``known``; and per
    group whether its cell-by-cell bounds were worked out (``refined``)."""

    lower: np.ndarray
    upper: np.ndarray
    may_null: np.ndarray
    must_null: np.ndarray
    may_nan: np.ndarray
    exact: np.ndarray
    known: np.ndarray
    refined: np.ndarray

    @classmethod
    def empty(cls, n: int, a: int) -> GroupState:
        return cls(np.zeros((n, a)), np.zeros((n, a)), np.zeros((n, a), bool),
                   np.zeros((n, a), bool), np.zeros((n, a), bool),
                   np.empty((n, a), dtype=object), np.zeros((n, a), bool), np.zeros(n, bool))

    def take(self, idx: np.ndarray) -> GroupState:
        return GroupState(*(getattr(self, f.name)[idx] for f in fields(self)))
