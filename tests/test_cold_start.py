"""Cold start: what a fresh process imports for each thing it does (checked in
``sys.modules``, never timed: the timings are in benchmarks/bench_cold_start.py), the public
API behind the lazy names, the Python digest of small buffers, and ``masksearch warmup``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import masksearch as ms
from masksearch.kernels.checksum_kernels import xxh64_words
from masksearch.store.checksum import SMALL_DIGEST, digest, xxh64_small
from masksearch.warmup import warmup

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "pyarrow", "numba", "llvmlite", "lark", "duckdb", "pandas", "PIL",
         "starlette", "uvicorn", "prompt_toolkit", "tqdm", "pyarrow.compute")


def fresh(code: str, cwd: Path) -> dict:
    """Run ``code`` in a new interpreter; it sets ``out`` (a dict), returned with the heavy
    packages that ended up imported as ``out['loaded']``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]]
                                                       if env.get("PYTHONPATH") else []))
    script = (f"import sys, json\nout = {{}}\n{code}\n"
              f"out['loaded'] = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
              "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_import_masksearch_loads_no_heavy_package(tmp_path):
    out = fresh("import masksearch as ms\nout['version'] = ms.__version__", tmp_path)
    assert out == {"version": ms.__version__, "loaded": []}


def test_the_command_line_parser_loads_no_heavy_package(tmp_path):
    code = ("from masksearch.cli import build_parser\n"
            "parser, commands = build_parser()\n"
            "out['commands'] = sorted(commands)")
    out = fresh(code, tmp_path)
    assert out["loaded"] == []
    assert {"query", "repl", "warmup", "serve"} <= set(out["commands"])


def test_opening_the_shell_needs_no_numba_pandas_lark_or_query_engine(tmp_path):
    """What the shell does before its first prompt: open, count, list the columns, load the
    line editor."""
    db = ms.connect(tmp_path / "db.msdb")
    db.ingest(np.random.default_rng(0).random((6, 16, 16)).astype("float32"),
              image_id=list(range(6)), metadata={"label": list("aabbcc")})
    db.close()
    code = ("import masksearch as ms\n"
            "db = ms.connect('db.msdb', create=False)\n"
            "out['count'] = db.mask_count()\n"
            "out['columns'] = db.columns()\n"
            "import masksearch.repl, masksearch.repl.editor\n"
            "out['engine'] = sorted(m for m in ('masksearch.exec.executor', "
            "'masksearch.lang.parser', 'masksearch.kernels.bound_kernels', "
            "'pyarrow.compute') if m in sys.modules)")
    out = fresh(code, tmp_path)
    assert out["count"] == 6
    assert out["columns"]["label"] == "string"
    assert out["engine"] == []
    assert not {"numba", "pandas", "lark", "duckdb", "PIL"} & set(out["loaded"])


def test_the_public_api_works_behind_the_lazy_names(tmp_path):
    code = ("import numpy as np\n"
            "import masksearch as ms\n"
            "from masksearch import Result, connect\n"
            "db = connect('api.msdb')\n"
            "db.ingest(np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8), "
            "image_id=[1, 2, 3, 4])\n"
            "r = db.query('SELECT mask_id, CP(mask, full, [0, 100]) AS c FROM masks "
            "ORDER BY mask_id')\n"
            "out['rows'] = r.to_pylist()\n"
            "out['types'] = [isinstance(db, ms.Database), isinstance(r, Result), "
            "isinstance(r.stats, ms.QueryStats)]\n"
            "out['callables'] = [callable(ms.attach_duckdb), callable(ms.from_coco)]\n"
            "out['dir'] = [n for n in ms.__all__ if n not in dir(ms)]\n"
            "try:\n    ms.no_such_name\nexcept AttributeError as e:\n    out['error'] = str(e)\n"
            "try:\n    db.query('SELEC 1')\nexcept ms.QuerySyntaxError:\n    out['syntax'] = True")
    out = fresh(code, tmp_path)
    assert out["rows"] == [{"mask_id": 0, "c": 64}, {"mask_id": 1, "c": 37},
                           {"mask_id": 2, "c": 0}, {"mask_id": 3, "c": 0}]
    assert out["types"] == [True, True, True]
    assert out["callables"] == [True, True]
    assert out["dir"] == []
    assert "no_such_name" in out["error"]
    assert out["syntax"] is True


def test_mask_count_follows_ingests_and_deletes(tmp_path):
    db = ms.connect(tmp_path / "n.msdb")
    assert db.mask_count() == 0
    db.ingest(np.zeros((5, 8, 8), np.uint8), image_id=list(range(5)))
    db.ingest(np.ones((3, 8, 8), np.uint8), image_id=list(range(3)))
    db.query("DELETE FROM masks WHERE image_id = 1")
    assert db.mask_count() == 6 == db.info()["masks"]


@pytest.mark.parametrize("length", [*range(0, 80), 255, 256, 1000, SMALL_DIGEST - 1,
                                    SMALL_DIGEST])
def test_python_digest_of_small_buffers_equals_the_kernel(length):
    raw = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8)
    n8 = length // 8
    words = np.frombuffer(raw.data, np.uint64, count=n8) if n8 else np.zeros(0, np.uint64)
    assert xxh64_small(raw.tobytes()) == int(xxh64_words(words, raw[n8 * 8:], length))


def test_digest_is_xxh64_below_and_above_the_python_size():
    assert digest(b"") == "ef46db3751d8e999"         # the XXH64 test vector, seed 0
    big = np.random.default_rng(1).integers(0, 256, SMALL_DIGEST + 9, dtype=np.uint8)
    assert digest(big) == f"{xxh64_small(big.tobytes()):016x}"   # through the kernel


def test_warmup_runs_every_query_shape_on_each_pixel_type():
    steps: list[str] = []
    seconds = warmup(dtypes=("bool", "uint8"), progress=steps.append)
    assert steps == ["bool masks, eager index", "bool masks, lazy index",
                     "uint8 masks, eager index", "uint8 masks, lazy index"]
    assert seconds > 0


SMALL_QUERIES = (
    "SELECT mask_id, CP(mask, box(1, 2, 13, 11), (0.5, 1.0]) AS c FROM masks "
    "WHERE CP(mask, box(1, 2, 13, 11), (0.5, 1.0]) > 40 ORDER BY mask_id",
    "SELECT mask_id, CP(mask, full, [0.2, 0.7)) AS c FROM masks ORDER BY c DESC, mask_id "
    "LIMIT 5",
    "SELECT mask_id, CP(mask, bbox, (0.5, 1.0]) / area(bbox) AS r FROM masks "
    "WHERE CP(mask, bbox, (0.5, 1.0]) / area(bbox) < 0.5 ORDER BY mask_id",
    "SELECT mask_id, label FROM masks WHERE label = 'b' AND CP(mask, full, (0.9, 1.0]) >= 30 "
    "ORDER BY mask_id",
)


def test_a_query_on_a_small_database_loads_neither_numba_nor_pandas(tmp_path):
    """A query's kernels run on their NumPy twins while the work is small
    (``masksearch.kernels.dispatch``), and its Arrow conversions go through buffers
    (``store.numpy_arrow``): the answers are those of the Numba kernels."""
    rng = np.random.default_rng(5)
    masks = rng.random((12, 16, 18)).astype("float32")
    masks[3, 2:5, 4:9] = np.nan
    db = ms.connect(tmp_path / "db.msdb")
    db.ingest(masks, image_id=list(range(12)),
              metadata={"label": list("abcabcabcabc"),
                        "bbox": [(i % 4, i % 3, 10 + i % 5, 9 + i % 6) for i in range(12)]})
    from masksearch.kernels import dispatch
    with dispatch.force("numba"):
        want = [db.query(sql).to_pylist() for sql in SMALL_QUERIES]
    db.close()
    code = ("import masksearch as ms\n"
            "from masksearch.kernels import dispatch\n"
            "db = ms.connect('db.msdb', create=False)\n"
            f"out['rows'] = [db.query(sql).to_pylist() for sql in {SMALL_QUERIES!r}]\n"
            "out['twins'] = dispatch.twin_time_ns() > 0\n"
            "from masksearch.cli import main\n"
            f"out['cli'] = main(['query', 'db.msdb', {SMALL_QUERIES[0]!r}])\n")
    env_mode = os.environ.pop("MASKSEARCH_KERNELS", None)
    try:
        out = fresh(code, tmp_path)
    finally:
        if env_mode is not None:
            os.environ["MASKSEARCH_KERNELS"] = env_mode
    assert out["rows"] == want
    assert any(want)
    assert out["twins"] is True
    assert out["cli"] == 0
    # pyarrow.compute too: its import builds ~290 wrappers (40 ms); the executor calls
    # Arrow's functions by name (store/arrow_compute.py).
    assert not {"numba", "llvmlite", "pandas", "pyarrow.compute"} & set(out["loaded"])
