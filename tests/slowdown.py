"""Verification slowed down, so that a query runs long enough to be cancelled, timed out or
overlapped (in the test process, on Dask workers, or in a CLI run by ``slow_verify.py``).
Test-only: the product has no such switch."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import masksearch.exec.verify as verify


def slowed_counts(seconds: float) -> dict[str, Callable]:
    """Replacements for ``verify``'s counting functions under which every mask counted
    takes ``seconds`` more (masks read whole, one call each, and masks stored in tiles, a
    segment's at a time), wrapping the functions in place now."""
    count, tiled = verify.count_in_range, verify.count_tiled

    def slow(*args):
        time.sleep(seconds)
        return count(*args)

    def slow_tiled(*args):
        time.sleep(seconds * len(args[1]) * len(args[3]))   # masks x terms
        return tiled(*args)

    return {"count_in_range": slow, "count_tiled": slow_tiled}


def slow_down_verification(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """``slowed_counts`` for one test."""
    for name, fn in slowed_counts(seconds).items():
        monkeypatch.setattr(verify, name, fn)
