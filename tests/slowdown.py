"""Verification slowed down inside the test process, so that a query runs long enough to be
cancelled, timed out or overlapped. Test-only: the product has no such switch."""

from __future__ import annotations

import time

import pytest

import masksearch.exec.verify as verify


def slow_down_verification(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every mask counted during verification takes ``seconds`` more."""
    count = verify.count_in_range

    def slow(*args):
        time.sleep(seconds)
        return count(*args)

    monkeypatch.setattr(verify, "count_in_range", slow)
