"""parallel.Background: one task at a time on its own thread, its error handed to the caller."""

from __future__ import annotations

import threading

import pytest

from masksearch.parallel import Background


def test_background_runs_one_task_at_a_time_and_hands_errors_over():
    order: list[str] = []
    gate = threading.Event()
    bg = Background("test-background")

    def first() -> None:
        gate.wait(5)
        order.append("first")

    def failing() -> None:
        order.append("second")
        raise ValueError("disk full")

    bg.start(first)
    gate.set()
    bg.start(failing)       # waits for the first task before starting
    bg.settle()             # waits, keeps the error
    assert order == ["first", "second"]
    with pytest.raises(ValueError, match="disk full"):
        bg.start(lambda: order.append("third"))    # the error comes before a new task
    bg.wait()
    assert order == ["first", "second"]
