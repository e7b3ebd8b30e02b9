"""Verification slowed down inside the test process, so that a query runs long enough to be
cancelled, timed out or overlapped. Test-only: the product has no such switch."""

from __future__ import annotations

import time

import pytest

import masksearch.exec.verify as verify


def slow_down_verification(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every mask counted during verification takes ``seconds`` more (masks read whole,
    one call each, and masks stored in tiles, a segment's at a time)."""
    count, tiled = verify.count_in_range, verify.count_tiled

    def slow(*args):
        time.sleep(seconds)
        return count(*args)

    def slow_tiled(*args):
        time.sleep(seconds * len(args[1]) * len(args[3]))   # masks x terms
        return tiled(*args)

    monkeypatch.setattr(verify, "count_in_range", slow)
    monkeypatch.setattr(verify, "count_tiled", slow_tiled)
