"""The suite's queries on a Dask cluster against the local executor (from local disk, and
from an S3-compatible server started here), and the per-segment costs that docs/scale.md's
cost model is built from: the scheduler's cost per task, the bound pass and verification
per mask on a worker, what travels per task, and the client's merge.

Both sides are warmed first (kernels compiled, segments opened on every worker) and timed
alternately, ``--repeat`` times each; medians. Every answer is checked against the local
executor's.

    python benchmarks/bench_dask.py [--n 10000] [--repeat 5] [--no-s3]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

import distributed
import numpy as np

import masksearch as ms
from masksearch.exec.dask_runner import task_count
from masksearch.exec.dask_tasks import run_shard
from masksearch.exec.settings import ExecSettings
from masksearch.lang.binder import bind
from masksearch.lang.parser import parse
from masksearch.plan.operators import MergeRows
from masksearch.plan.planner import plan

from . import datasets
from .common import ROOT, engine_version, fail, log, machine, write_json
from .workloads import workloads

NODES = (16, 64)
CORES_PER_NODE = 8
MASKS = 10**8


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def compare(sql: str, local: ms.Database, remote: ms.Database, repeat: int) -> dict:
    """Median ms of ``sql`` on both connections (timed alternately), answers checked."""
    want = local.query(sql).rows()
    if remote.query(sql).rows() != want:
        fail(f"the cluster's answer differs from the local one: {sql}")
    t_local, t_remote = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        local.query(sql)
        t_local.append(time.perf_counter() - start)
        start = time.perf_counter()
        remote.query(sql)
        t_remote.append(time.perf_counter() - start)
    return {"local_ms": _median_ms(t_local), "cluster_ms": _median_ms(t_remote),
            "added_ms": _median_ms(t_remote) - _median_ms(t_local), "rows": len(want)}


def task_costs(client: distributed.Client, count: int = 400) -> dict:
    """What the scheduler costs: a round trip of one tiny task, and the throughput of many."""
    trips = []
    for i in range(30):
        start = time.perf_counter()
        client.submit(int, i, pure=False).result()
        trips.append(time.perf_counter() - start)
    start = time.perf_counter()
    client.gather([client.submit(int, i, pure=False) for i in range(count)])
    per_task = (time.perf_counter() - start) / count
    return {"round_trip_ms": _median_ms(trips), "per_task_ms": per_task * 1e3}


def worker_rates(db: ms.Database, settled: str, scan: str) -> dict:
    """Per mask on the workers (EXPLAIN ANALYZE's per-worker figures): the bound pass of
    a filter the index settles, and verification (a scan without the index)."""
    def per_mask(sql: str, use_index: bool) -> float:
        db.query(sql, use_index=use_index)
        stats = db.query(sql, use_index=use_index).stats
        seconds = sum(w.seconds for w in stats.workers.values())
        return seconds / max(1, sum(w.masks for w in stats.workers.values()))

    bounds = statistics.median(per_mask(settled, True) for _ in range(3))
    verify = statistics.median(per_mask(scan, False) for _ in range(3))
    return {"bound_us_per_mask": bounds * 1e6, "verify_us_per_mask": verify * 1e6}


def transfer(db: ms.Database, sqls: dict[str, str]) -> dict:
    """Bytes that travel: the manifest and plan sent with each task, and each query shape's
    output of one shard (run here, pickled as Dask would)."""
    store = db.store
    snapshot = store.snapshot()
    out: dict[str, float] = {
        "manifest_bytes_per_segment": len(pickle.dumps(snapshot.manifest))
        / max(1, len(snapshot.manifest.segments)),
        "masks_per_segment": snapshot.table.num_rows / max(1, len(snapshot.segments))}
    for name, sql in sqls.items():
        physical = plan(bind(parse(sql), sql, snapshot.columns))
        shard = run_shard(store.address, snapshot.manifest, physical, [0], True, ExecSettings())
        out[f"{name}_plan_bytes"] = len(pickle.dumps(physical))
        out[f"{name}_output_bytes"] = len(pickle.dumps(shard))
        out[f"{name}_output_rows"] = (shard.members.rows.num_rows if shard.members is not None
                                      else shard.table.num_rows if shard.table is not None
                                      else 0)
    return out


def merge_ms(db: ms.Database, sql: str) -> float:
    record = db.query(sql).stats.operators.get(MergeRows)
    return float(record.ms) if record is not None else 0.0


def cost_model(tasks: dict, rates: dict, sizes: dict) -> list[dict]:
    """Seconds per query shape for ``MASKS`` masks in full segments (4,096 masks) on each of
    ``NODES`` nodes of ``CORES_PER_NODE`` cores, from the measured costs (docs/scale.md):
    the scheduler handles the tasks one after another, the workers share the masks."""
    segments = MASKS / 4096
    rows = []
    for nodes in NODES:
        cores = nodes * CORES_PER_NODE
        n_tasks = task_count(int(segments), cores)     # the runner's default grouping
        scheduler = n_tasks * tasks["per_task_ms"] / 1e3
        trip = tasks["round_trip_ms"] / 1e3
        bounds = MASKS * rates["bound_us_per_mask"] / 1e6 / cores
        verify = rates["verify_us_per_mask"] / 1e6
        members = MASKS * sizes["group_bytes_per_member"]
        shapes = {
            "filter settled by the index": (trip + scheduler + bounds, 0.0),
            "selective filter (0.5% verified)": (
                trip + scheduler + bounds + 0.005 * MASKS * verify / cores, 0.005 * MASKS * 8),
            # round 1: bounds of every task; round 2: the tasks that can contribute (a wave
            # of 2 per thread), each verifying about 3k candidates of its 4 segments' worth.
            "top-25": (2 * trip + scheduler + 2 * bounds + 3 * 25 * verify, 0.0),
            "full scan (no index)": (trip + scheduler + MASKS * verify / cores, 0.0),
            "GROUP BY over every mask (members to the client)": (
                trip + scheduler + bounds + members / 1e9, members),
        }
        for shape, (seconds, travel) in shapes.items():
            rows.append({"nodes": nodes, "cores": cores, "shape": shape, "seconds": seconds,
                         "tasks": n_tasks, "scheduler_s": scheduler,
                         "to_client_mb": travel / 1e6})
    return rows


def s3_rows(d: datasets.Dataset, client: distributed.Client, repeat: int,
            sqls: list[str]) -> list[dict]:
    """The same queries on a copy of the database on an S3 server started here."""
    import os
    import tempfile

    sys.path.insert(0, str(ROOT))
    from tests import s3_server

    os.environ.update(s3_server.CHECKSUM_ENV)
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    server, proc = s3_server.start(folder / "data", folder / "rclone.log")
    try:
        url = server.new_url(d.name)
        d.db.copy_to(url, storage_options=server.options)
        local = ms.connect(url, storage_options=server.options)
        remote = ms.connect(url, storage_options=server.options, executor=client)
        disk = d.db
        for sql in sqls:
            local.query(sql)
            remote.query(sql)
            row = compare(sql, local, remote, repeat)
            want = disk.query(sql).rows()
            if local.query(sql).rows() != want:
                fail(f"S3 answer differs from local disk: {sql}")
            rows.append({"sql": sql, **row})
            log(f"  s3 {row['local_ms']:8.1f} ms local executor | {row['cluster_ms']:8.1f} ms "
                f"cluster | {sql[:70]}")
    finally:
        s3_server.stop(proc)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="saliency maps (224x224 float32)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 server runs")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    d = datasets.load(args.workdir, "saliency", args.n, log=log)
    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                       processes=True, dashboard_address=":0")
    rows: list[dict] = []
    with distributed.Client(cluster) as client:
        remote = ms.connect(d.db.path, executor=client)
        local = d.db
        chosen = workloads(d)
        log(f"{d.name}: {len(local.store.snapshot().segments)} segments; "
            f"{args.workers} worker processes")
        for w in chosen:
            local.query(w.sql)
            remote.query(w.sql)        # warm: kernels compiled, segments opened everywhere
            row = {"family": w.family, "sql": w.sql, "selectivity": w.selectivity,
                   **compare(w.sql, local, remote, args.repeat),
                   "merge_ms": merge_ms(remote, w.sql) if not w.grouped else None}
            rows.append(row)
            log(f"  {w.family:34s} local {row['local_ms']:8.1f} | cluster "
                f"{row['cluster_ms']:8.1f} | added {row['added_ms']:+7.1f} ms")
        filters = [w for w in chosen if w.family.startswith("filter CP(box)")]
        settled = filters[-1].sql.rsplit(">", 1)[0] + "> 1000000"
        tasks = task_costs(client)
        rates = worker_rates(remote, settled, filters[0].sql)
        top = next(w.sql for w in chosen if w.family.startswith("top-"))
        grouped = next(w.sql for w in chosen if w.family.startswith("mean across"))
        sizes = transfer(local, {"filter": filters[1].sql, "topk": top, "group": grouped})
        sizes["group_bytes_per_member"] = sizes["group_output_bytes"] / max(
            1, sizes["group_output_rows"])
        model = cost_model(tasks, rates, sizes)
        s3 = [] if args.no_s3 else s3_rows(d, client, args.repeat,
                                           [filters[0].sql, filters[1].sql, top])
    cluster.close()
    selective = [r for r in rows if r["selectivity"] is not None and r["selectivity"] <= 0.01]
    summary = {"benchmark": "dask", "n": args.n, "workers": args.workers,
               "repeat": args.repeat, "machine": machine(), "engine": engine_version(),
               "rows": rows, "tasks": tasks, "worker_rates": rates, "sizes": sizes,
               "model": model, "s3": s3,
               "max_added_ms_selective": max(r["added_ms"] for r in selective)}
    _report(summary)
    write_json(args.results / f"dask-{args.n}.json", summary)
    return 0


def _report(s: dict) -> None:
    log(f"\nscheduler: {s['tasks']['round_trip_ms']:.2f} ms a round trip, "
        f"{s['tasks']['per_task_ms']:.2f} ms a task in a batch")
    log(f"workers: bound pass {s['worker_rates']['bound_us_per_mask']:.2f} us/mask, "
        f"verification {s['worker_rates']['verify_us_per_mask']:.1f} us/mask")
    z = s["sizes"]
    log(f"travel: manifest {z['manifest_bytes_per_segment']:.0f} B per segment, filter output "
        f"{z['filter_output_bytes']:,} B, top-k output {z['topk_output_bytes']:,} B per shard")
    log(f"largest added time of a selective query: {s['max_added_ms_selective']:.1f} ms")
    log(f"group members: {z['group_bytes_per_member']:.0f} B each to the client")
    log(f"\ncost model, {MASKS:.0e} masks, {CORES_PER_NODE} cores per node:")
    for r in s["model"]:
        log(f"  {r['nodes']:3d} nodes  {r['shape']:50s} {r['seconds']:8.2f} s "
            f"(scheduler {r['scheduler_s']:.2f} s for {r['tasks']:,.0f} tasks; "
            f"{r['to_client_mb']:,.0f} MB to the client)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
