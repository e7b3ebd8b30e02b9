"""Reading masks from object storage that answers late: the tests' S3 server behind a proxy
that holds every piece of every answer for a while before passing it on (a network round
trip of ``--delay-ms``; cloud storage takes 10 to 50 ms a request). A selective filter and a
top-k verify their masks with requests in flight together (``Segment.prefetch``) and one at
a time; answers are checked against the local database.

    python benchmarks/bench_s3_latency.py [--delay-ms 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

import numpy as np

import masksearch as ms
from masksearch.store import segments
from masksearch.synth import saliency_maps
from tests import s3_server

from .common import ROOT, fail, log, machine, write_json


class LateProxy:
    """A TCP proxy on 127.0.0.1 that passes requests on at once and answers ``delay``
    seconds late (each connection in order, connections independently)."""

    def __init__(self, target_port: int, delay: float):
        self.target_port, self.delay = target_port, delay
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer, 0.0),
                             self._pipe(up_reader, writer, self.delay),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    delay: float) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        while True:
            data = await reader.read(1 << 16)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
        await sender


def timed(db: ms.Database, sql: str, repeat: int) -> tuple[float, int]:
    db.query(sql)
    times, verified = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = db.query(sql)
        times.append(time.perf_counter() - start)
        verified = result.stats.verified
    return statistics.median(times) * 1e3, verified


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, default=10.0, help="round trip added (ms)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000, help="64x64 saliency maps")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    os.environ.update(s3_server.CHECKSUM_ENV)
    work = Path(tempfile.mkdtemp(prefix="bench-s3-latency-"))
    server, proc = s3_server.start(work / "data", work / "rclone.log")
    proxy = LateProxy(int(server.endpoint.rsplit(":", 1)[1]), args.delay_ms / 1e3)
    rows = []
    try:
        options = {**server.options, "endpoint_override": f"http://127.0.0.1:{proxy.port}"}
        maps, boxes = saliency_maps(args.n, size=64, seed=0)
        local = ms.connect(work / "local.msdb")
        local.ingest(maps, image_id=np.arange(args.n) // 2, metadata={"bbox": boxes})
        url = server.new_url("latency.msdb")
        local.copy_to(url, storage_options=options)
        remote = ms.connect(url, storage_options=options)
        sqls = {"selective filter": "SELECT mask_id FROM masks WHERE "
                "CP(mask, box(5, 7, 50, 51), (0.8, 1]) > 300",
                "top-25": "SELECT mask_id, CP(mask, bbox, (0.9, 1]) / area(bbox) AS r "
                "FROM masks ORDER BY r DESC LIMIT 25"}
        prefetch = segments.Segment.prefetch
        for name, sql in sqls.items():
            if remote.query(sql).rows() != local.query(sql).rows():
                fail(f"object storage answers differently: {sql}")
            together, verified = timed(remote, sql, args.repeat)
            segments.Segment.prefetch = lambda self, rows: None     # one request at a time
            alone, _ = timed(remote, sql, args.repeat)
            segments.Segment.prefetch = prefetch
            here, _ = timed(local, sql, args.repeat)
            rows.append({"query": name, "sql": sql, "verified": verified,
                         "requests_together_ms": together, "one_at_a_time_ms": alone,
                         "local_ms": here})
            log(f"{name:18s} verified {verified:4d}: requests together {together:8.1f} ms, "
                f"one at a time {alone:8.1f} ms, local disk {here:6.1f} ms")
    finally:
        s3_server.stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    write_json(args.results / "s3-latency.json", {
        "benchmark": "s3-latency", "n": args.n, "delay_ms": args.delay_ms,
        "repeat": args.repeat,
        "machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
