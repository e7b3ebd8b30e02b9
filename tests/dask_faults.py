"""Faults for the Dask tests: slow a function down on every worker (so that work is still
running when a worker dies), and kill one worker process."""

from __future__ import annotations

import os

import pytest


def slow_down(module: str, name: str, seconds: float) -> None:
    """On a worker: ``module.name`` sleeps ``seconds`` before each call."""
    import importlib
    import time

    owner = importlib.import_module(module)
    original = getattr(owner, name)

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    setattr(owner, name, slow)


def slow_down_masks(seconds: float) -> None:
    """On a worker: every mask verification counts takes ``seconds`` more."""
    import masksearch.exec.verify as verify

    from .slowdown import slowed_counts

    for name, fn in slowed_counts(seconds).items():
        setattr(verify, name, fn)


def kill_a_worker(client) -> None:
    """End one of the cluster's worker processes at once (its nanny starts another)."""
    victim = sorted(client.scheduler_info()["workers"])[0]
    with pytest.raises(Exception):  # noqa: B017, PT011 - the worker dies answering
        client.run(os._exit, 1, workers=[victim])
