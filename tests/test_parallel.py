"""The shared thread pool's sized tasks: each runs once, and small work stays on the caller."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.parallel import Background, run_sized


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), max_size=40), st.integers(0, 120))
def test_run_sized_runs_every_task_once(sizes, min_size):
    ran = [0] * len(sizes)
    lock = threading.Lock()

    def task(i: int) -> None:
        with lock:
            ran[i] += 1

    run_sized([(lambda i=i: task(i), n) for i, n in enumerate(sizes)], min_size)
    assert ran == [1] * len(sizes)


def test_work_under_two_units_runs_on_the_calling_thread():
    threads: list[threading.Thread] = []
    tasks = [(lambda: threads.append(threading.current_thread()), 100) for _ in range(15)]
    run_sized(tasks, 800)       # 1,500 < 2 x 800: one unit
    assert threads == [threading.current_thread()] * 15


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
