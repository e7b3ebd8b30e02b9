"""The scale benchmarks keep working: tiny runs of bench_dask.py (a cluster of worker
processes, the S3 server) and bench_s3_latency.py (the server behind a late proxy) finish
with every answer checked against the local database (a mismatch exits with status 2)."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("distributed")


@pytest.mark.slow
def test_bench_dask_compares_the_cluster_with_the_local_executor(tmp_path):
    from benchmarks import bench_dask

    assert bench_dask.main(["--n", "200", "--repeat", "1", "--workdir", str(tmp_path),
                            "--results", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "dask-200.json").read_text())
    assert len(out["rows"]) >= 10
    assert all(r["cluster_ms"] > 0 and r["local_ms"] > 0 for r in out["rows"])
    assert len(out["s3"]) == 3
    assert out["tasks"]["per_task_ms"] > 0
    assert {r["nodes"] for r in out["model"]} == {16, 64}


def test_bench_s3_latency_reads_through_the_late_proxy(tmp_path):
    from benchmarks import bench_s3_latency

    assert bench_s3_latency.main(["--n", "60", "--repeat", "1", "--delay-ms", "5",
                                  "--results", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "s3-latency.json").read_text())["rows"]
    assert [r["query"] for r in rows] == ["selective filter", "top-25"]
    # Every answer comes 5 ms late: one request at a time per core, verification waits at
    # least that long for each mask a core reads.
    for r in rows:
        assert r["one_at_a_time_ms"] >= 5 * r["verified"] / (os.cpu_count() or 1) * 0.9
