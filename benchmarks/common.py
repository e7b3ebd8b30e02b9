"""Helpers shared by the benchmark scripts: logging, timing, failure reports, machine and
engine versions, and atomic JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Every call on Numba's kernels, from the first: under the default rule a process runs the
# NumPy twins of the kernels on small work until their time reaches a budget, then loads
# Numba (masksearch.kernels.dispatch), which could happen inside a timed run and charge the
# load to one side of a comparison. bench_cold_start.py measures the default rule; it
# removes this from the environment of the processes it starts.
os.environ.setdefault("MASKSEARCH_KERNELS", "numba")


def log(msg: str = "") -> None:
    print(msg, flush=True)


def timed(fn: Callable):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def fail(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!!! RESULT MISMATCH: {msg}\n{bar}", file=sys.stderr, flush=True)
    sys.exit(2)


def ms_stats(times: list[float]) -> dict:
    return {"median": statistics.median(times) * 1e3, "min": min(times) * 1e3,
            "all": [round(t * 1e3, 2) for t in times]}


def fmt_ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e3:,.1f} ms (min {min(times) * 1e3:,.1f})"


def engine_version() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "engine_dirty": bool(git("status", "--porcelain", "--", "masksearch"))}


def machine() -> dict:
    import numba
    import pyarrow

    return {"platform": platform.platform(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "pyarrow": pyarrow.__version__}


def write_json(path: Path, summary: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, path)


def shown(path: Path) -> Path:
    """``path`` relative to the project root when it is inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
