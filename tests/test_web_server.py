"""The web server as a process and under load: eight clients with different queries at once
get db.query's answers while the page stays responsive; Ctrl-C stops it cleanly, also in
the middle of a long query; the command line's defaults and refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import masksearch as ms
from masksearch.cli import build_parser
from masksearch.web.config import ServeConfig
from masksearch.web.server import BackgroundServer
from masksearch.web.values import json_value

from .slowdown import slow_down_verification
from .web_fixture import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return build(tmp_path_factory.mktemp("webserver"))[0]


def post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    request = urllib.request.Request(url + "api/query", json.dumps(body).encode(),
                                     {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


@pytest.fixture
def slow_counts(monkeypatch):
    """Verification at 2 ms a mask (the server runs in this process): every query busy."""
    slow_down_verification(monkeypatch, 0.002)


def test_eight_clients_at_once_get_correct_answers_and_the_page_stays_responsive(
        path, slow_counts):
    queries = [(f"SELECT mask_id, CP(mask, full, ({lo}, 1.0]) AS c FROM masks "
                f"WHERE c > {t} ORDER BY c DESC", k % 2 == 0)
               for k, (lo, t) in enumerate([(0.1, 300), (0.2, 200), (0.3, 150), (0.4, 100),
                                            (0.5, 80), (0.6, 50), (0.7, 20), (0.8, 5)])]
    with ms.connect(path, read_only=True) as db:
        want = [[[json_value(v) for v in row] for row in db.query(sql, use_index=i).rows()]
                for sql, i in queries]
    answers: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(queries))

    with BackgroundServer(ServeConfig(str(path), port=0, page_limit=1000)) as url:
        def client(k: int) -> None:
            try:
                barrier.wait()
                for _ in range(3):
                    sql, use_index = queries[k]
                    status, body = post(url, {"sql": sql, "use_index": use_index,
                                              "limit": 1000})
                    assert status == 200, body
                    assert answers.setdefault(k, body["rows"]) == body["rows"]
            except BaseException as e:   # reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(len(queries))]
        for t in threads:
            t.start()
        slowest, rounds = 0.0, 0
        while any(t.is_alive() for t in threads):
            rounds += 1
            start = time.monotonic()
            assert get(url)[0] == 200
            assert get(url + "static/app.js")[0] == 200
            assert get(url + "api/info")[0] == 200
            assert get(url + "api/masks/5")[0] == 200
            slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.02)
        for t in threads:
            t.join()
    assert not errors, errors
    assert [answers[k] for k in range(len(queries))] == want
    assert slowest < 1.0, f"the page took {slowest:.2f} s to load under load"
    assert rounds > 3           # the page was loaded while the queries ran


def start_server(args: list[str], script: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """``masksearch serve`` in a child process; its URL, read from the line it prints."""
    cmd = [sys.executable, *(script or ["-m", "masksearch"]), "serve", *args, "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
    if not found:
        proc.kill()
        raise AssertionError(f"no URL in {line!r}: {proc.stderr.read()}")
    return proc, found.group(1)


def stop_with_ctrl_c(proc: subprocess.Popen, within: float) -> tuple[str, str]:
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=within + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert time.monotonic() - start < within
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out, err


def test_ctrl_c_stops_the_server_cleanly(path):
    proc, url = start_server([str(path)])
    status, body = post(url, {"sql": "SELECT COUNT(*) AS n FROM masks"})
    assert (status, body["rows"]) == (200, [[120]])
    out, _ = stop_with_ctrl_c(proc, within=5)
    assert "masksearch: stopped" in out
    with pytest.raises(urllib.error.URLError):
        get(url, timeout=2)


@pytest.mark.slow
def test_ctrl_c_during_a_long_query_cancels_it_and_stops(path):
    """tests/slow_verify.py makes verification take 5 ms a mask; a client waits on a
    brute-force query over many rounds of the fixture when Ctrl-C comes."""
    proc, url = start_server([str(path)], script=[str(ROOT / "tests" / "slow_verify.py")])
    sql = " OR ".join(f"CP(mask, full, ({k / 100}, 1.0]) > {k}" for k in range(1, 60))
    outcome: list = []
    waiting = threading.Thread(target=lambda: outcome.append(
        post(url, {"sql": f"SELECT mask_id FROM masks WHERE {sql}", "use_index": False})))
    waiting.start()
    time.sleep(1.0)
    stop_with_ctrl_c(proc, within=8)
    waiting.join(timeout=10)
    assert outcome, "the waiting client got no answer"
    status, body = outcome[0]
    assert status == 409
    assert body["kind"] == "cancelled"


def test_serve_defaults_to_this_machine_only():
    args = build_parser()[0].parse_args(["serve", "x.msdb"])
    assert (args.host, args.port, args.images, args.allow_writes) == \
        ("127.0.0.1", 8765, None, False)


def test_serve_refuses_a_path_without_a_database(tmp_path):
    r = subprocess.run([sys.executable, "-m", "masksearch", "serve", str(tmp_path / "none"),
                        "--port", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "no masksearch database" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_without_the_web_extra_names_it(tmp_path):
    code = ("import sys; sys.modules['starlette'] = None; from masksearch.cli import main; "
            f"sys.exit(main(['serve', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert "pip install 'masksearch[web]'" in r.stderr
    assert "Traceback" not in r.stderr


def test_images_option_sets_the_image_root_kept_in_the_database(tmp_path):
    path, root, _ = build(tmp_path)
    with ms.connect(path) as db:
        db.image_root = None
    other = tmp_path / "elsewhere"
    other.mkdir()
    with BackgroundServer(ServeConfig(str(path), port=0, images=str(root))) as url:
        info = json.loads(get(url + "api/info")[1])
        assert info["image_root"] == str(root.resolve())
        assert get(url + "api/masks/0/image")[1] == (root / "img0.png").read_bytes()
    with ms.connect(path, read_only=True) as db:
        assert db.image_root == str(root.resolve())


def test_writes_only_with_allow_writes(tmp_path):
    path, _, _ = build(tmp_path)
    sql = "DELETE FROM masks WHERE mask_id < 3"
    with BackgroundServer(ServeConfig(str(path), port=0)) as url:
        assert post(url, {"sql": sql})[0] == 403
        assert post(url, {"sql": "SELECT COUNT(*) AS n FROM masks"})[1]["rows"] == [[120]]
    with BackgroundServer(ServeConfig(str(path), port=0, allow_writes=True)) as url:
        assert get(url + "api/masks/1.png?size=32")[0] == 200
        status, body = post(url, {"sql": sql})
        assert status == 200, body
        assert post(url, {"sql": "SELECT COUNT(*) AS n FROM masks"})[1]["rows"] == [[117]]
        with pytest.raises(urllib.error.HTTPError) as gone:
            get(url + "api/masks/1.png?size=32")     # the cached picture was dropped
        assert gone.value.code == 404
