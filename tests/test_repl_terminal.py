"""The REPL end to end, as a person uses it: the real program in a pseudo-terminal, keys
typed, the rendered screen read back (see ``terminal.py``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import masksearch as ms
from masksearch.synth import saliency_maps

from .terminal import Terminal

ROOT = Path(__file__).resolve().parents[1]
N = 400

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")


@pytest.fixture(scope="module")
def dbpath(tmp_path_factory):
    maps, boxes = saliency_maps(N, size=40, coarse=5, seed=11)
    path = tmp_path_factory.mktemp("term") / "t.msdb"
    db = ms.connect(path, cell_size=8)
    db.ingest(maps, image_id=np.arange(N), model_id=1, metadata={"bbox": boxes})
    return path, maps


def start(dbpath: Path, home: Path, script: str | None = None) -> Terminal:
    env = {"HOME": str(home), "PYTHONPATH": str(ROOT),
           # Cursor position requests race with a test's replies; a real terminal answers
           # at once. Everything else prompt_toolkit does runs as in a real terminal.
           "PROMPT_TOOLKIT_NO_CPR": "1"}
    argv = [sys.executable, script or "-m"] + ([] if script else ["masksearch"])
    term = Terminal([*argv, str(dbpath)], env)
    term.wait_for("masksearch>")
    return term


def test_multiline_statement_result_table_and_timing(dbpath, tmp_path):
    path, maps = dbpath
    term = start(path, tmp_path)
    try:
        term.type("SELECT mask_id,\r")
        term.wait_for("...>")
        term.type("  CP(mask, full, (0.5, 1.0]) AS c FROM masks\r")
        term.type("ORDER BY c DESC LIMIT 3;\r")
        screen = term.wait_for("3 rows in")
        counts = (maps > 0.5).sum(axis=(1, 2))
        best = np.argsort(-counts, kind="stable")[:3]
        for i in best:
            assert any(line.split() == [str(i), "|", str(counts[i])]
                       for line in screen.splitlines()), screen
        assert "mask_id |" in screen
        assert " ms" in screen
        # An error prints and the shell goes on.
        term.type("SELECT nope FROM masks;\r")
        screen = term.wait_for("unknown column 'nope'")
        assert "^" in screen
        term.type("SELECT COUNT(*) AS n FROM masks;\r")
        assert str(N) in term.wait_for("1 row in")
        term.ctrl("d")
        assert term.exit_status() == 0
    finally:
        term.close()


def test_completion_of_keywords_functions_and_columns(dbpath, tmp_path):
    path, _ = dbpath
    term = start(path, tmp_path)
    try:
        term.type("sel\t")
        term.wait_for("masksearch> select")
        term.type(" mask_id, CP(mask, bb\t")
        term.wait_for("CP(mask, bbox")
        term.type(", (0.5, 1.0]) AS c FROM masks WHERE mask_id < 2 ORD\t")
        term.wait_for("ORDER")
        term.type(" BY mask_id;\r")
        screen = term.wait_for("2 rows in")
        assert "mask_id | c" in screen.replace("  ", " ")
        term.type(".mo\t")
        term.wait_for(".mode")
        term.type(" js\t")
        term.wait_for(".mode json")
        term.type("\rSELECT mask_id FROM masks WHERE mask_id = 5;\r")
        assert '"mask_id": 5' in term.wait_for("1 row in")
    finally:
        term.close()


def test_history_is_kept_across_sessions(dbpath, tmp_path):
    path, _ = dbpath
    term = start(path, tmp_path)
    try:
        term.type("SELECT COUNT(*) AS remembered FROM masks;\r")
        term.wait_for("1 row in")
        term.type(".quit\r")
        assert term.exit_status() == 0
    finally:
        term.close()
    assert "remembered" in (tmp_path / ".masksearch_history").read_text()
    term = start(path, tmp_path)
    try:
        term.type("\x1b[A")            # Up: the previous session's last line, .quit
        term.wait_for("masksearch> .quit")
        term.type("\x1b[A")            # and the statement before it
        term.wait_for("masksearch> SELECT COUNT(*) AS remembered FROM masks;")
        term.type("\r")
        screen = term.wait_for("1 row in")
        assert "remembered" in screen
        assert str(N) in screen
    finally:
        term.close()


def test_ctrl_c_cancels_a_running_query_and_keeps_the_shell(dbpath, tmp_path):
    path, _ = dbpath
    term = start(path, tmp_path, script=str(ROOT / "tests" / "slow_verify.py"))
    try:
        # Without the index every mask is read: 400 masks at 5 ms each, about 1 s per core.
        term.type(".index off\r")
        term.type("SELECT COUNT(*) FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 10;\r")
        term.wait_for("verifying")
        pressed = time.monotonic()
        term.ctrl("c")
        term.wait_for("query cancelled", timeout=10)
        assert time.monotonic() - pressed < 5
        term.type(".index on\rSELECT COUNT(*) AS n FROM masks;\r")
        assert str(N) in term.wait_for("1 row in")
        # Ctrl-C while typing drops the line, not the shell.
        term.type("SELECT half a statement")
        term.ctrl("c")
        term.type(".quit\r")
        assert term.exit_status() == 0
    finally:
        term.close()
    assert not any(name.endswith(".tmp") for name in os.listdir(path))


def test_statements_piped_to_the_shell_run_as_a_script(dbpath):
    import subprocess

    path, maps = dbpath
    script = (".mode csv\nSELECT mask_id FROM masks\nWHERE CP(mask, full, (0.5, 1.0]) > 800\n"
              "ORDER BY mask_id;\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "masksearch", str(path)], input=script,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    want = np.flatnonzero((maps > 0.5).sum(axis=(1, 2)) > 800)
    assert proc.stdout.split() == ["mask_id"] + [str(i) for i in want]
    proc = subprocess.run([sys.executable, "-m", "masksearch", "repl", str(path)],
                          input="SELECT nope FROM masks;\nSELECT 1 FROM", capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "unknown column 'nope'" in proc.stderr
    assert "input ends inside a statement with no ';'" in proc.stderr
    assert "Traceback" not in proc.stderr
