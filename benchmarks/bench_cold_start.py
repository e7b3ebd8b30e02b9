"""Cold start: how long a fresh process takes to import masksearch, answer a CLI query on a
small database, open the shell, and answer its first query after a fresh install.

Every measurement runs in new subprocesses, ``--repeat`` times after one untimed run (so that
the files are in the page cache and Python's bytecode is cached: a warm machine), and reports
the median wall time against the targets of the cold-start issue. Bytecode goes to a
temporary ``PYTHONPYCACHEPREFIX``, as an installed package has it (an environment that sets
``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module from source in each run).

The first query after a fresh install: a wheel of the checkout, built and installed into a
new virtual environment (its dependencies from this one's), on a database of
``--big-masks`` masks, more than the NumPy twins of the kernels take on (so that the query
loads Numba). Each run starts with the installed kernels' cache deleted (Numba caches
compiled kernels next to their source, as on a fresh install), once with ``masksearch
warmup`` first (as the README's install steps say) and once without. The same query with
an empty ``NUMBA_CACHE_DIR`` from the checkout is kept for comparison with older runs.

    .venv/bin/python benchmarks/bench_cold_start.py [--repeat 5] [--cold-repeat 3]
        [--big-masks 4000] [--no-install] [--source DIR] [--label NAME] [--results DIR]

Every process starts from a two-line launcher that puts the measured checkout's ``masksearch``
first on ``sys.path`` (``--source DIR``, default this one; for instance the commit before a
change, from ``git archive``), ahead of an editable install's finder (which still supplies
``masksearch.grammar``).
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from common import ROOT, engine_version, log, machine, shown, write_json

TARGETS = {"import": 0.2, "cli_query": 0.4, "shell_open": 0.5, "first_query": 3.0}
QUERY = ("SELECT mask_id, CP(mask, full, (0.5, 1.0]) AS c FROM masks "
         "WHERE CP(mask, full, (0.5, 1.0]) > 2000 LIMIT 3")
# On the big database: a box off the index's cells and a threshold a few percent of the
# masks pass, so that the bounds of every mask are worked out and many masks verified.
BIG_QUERY = ("SELECT mask_id FROM masks WHERE CP(mask, box(3, 5, 50, 47), (0.5, 1.0]) > 1030")
PROMPT = b"masksearch> "


LAUNCH = ("import sys\n"
          "sys.meta_path.sort(key=lambda f: "
          "getattr(f, '__module__', '').startswith('__editable__'))\n"
          "sys.path.insert(0, {source!r})\n")


def _python(source: Path, code: str) -> list[str]:
    """A command running ``code`` against the masksearch package of ``source``."""
    return [sys.executable, "-c", LAUNCH.format(source=str(source)) + code]


def _cli(source: Path) -> list[str]:
    """The ``masksearch`` command of ``source``; its arguments follow."""
    return _python(source, "from masksearch.cli import main\nsys.exit(main(sys.argv[1:]))")


_PYCACHE: Path | None = None     # set by measure(): bytecode of every process run


def _env(numba_cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache)
    else:
        env.pop("NUMBA_CACHE_DIR", None)
    # The default kernel rule (benchmarks/common.py pins Numba for the other benchmarks).
    env.pop("MASKSEARCH_KERNELS", None)
    env.pop("PYTHONSTARTUP", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if _PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
    return env


def _run(args: list[str], env: dict[str, str], stdin: int | None = subprocess.DEVNULL) -> float:
    t = time.perf_counter()
    done = subprocess.run(args, env=env, stdin=stdin, capture_output=True, check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed: {done.stderr.decode()[-400:]}")
    return seconds


def _shell_open(args: list[str], env: dict[str, str]) -> float:
    """Seconds from starting the shell on a terminal (a pty) to its first prompt."""
    master, slave = pty.openpty()
    t = time.perf_counter()
    proc = subprocess.Popen(args, env=env | {"TERM": "dumb"}, stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    seconds = None
    try:
        while seconds is None:
            seen += _read(master, 30)
            if PROMPT in seen:
                seconds = time.perf_counter() - t
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if b"\x1b[6n" in seen:                    # a cursor position request: answer
                os.write(master, b"\x1b[1;1R")
            os.write(master, b"\x04")                 # Ctrl-D leaves the shell
            seen = _read(master, 0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return seconds


def _read(fd: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        if timeout >= 1:
            raise RuntimeError(f"no output from the shell for {timeout} s")
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:                                  # the shell exited: the pty is closed
        return b""


def _median(fn, repeat: int, warm: bool = True) -> dict:
    if warm:
        fn()
    times = [fn() for _ in range(repeat)]
    return {"median_s": statistics.median(times), "all_s": [round(t, 3) for t in times]}


def _make_database(source: Path, path: Path, env: dict[str, str], n: int = 50) -> None:
    code = ("import numpy as np, masksearch as ms\n"
            f"db = ms.connect({str(path)!r})\n"
            "rng = np.random.default_rng(0)\n"
            f"for s in range(0, {n}, 1000):\n"
            f"    k = min(1000, {n} - s)\n"
            "    db.ingest(rng.random((k, 64, 64)).astype('float32'),\n"
            "              image_id=list(range(s, s + k)))\n")
    _run(_python(source, code), env)


def _install(source: Path, tmp: Path) -> Path:
    """A new virtual environment with a wheel of ``source`` installed (no dependencies
    fetched: this environment's site-packages are on its path); its ``bin`` folder."""
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True)
    venv = tmp / "fresh-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("masksearch-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True)
    return venv / "bin"


def _installed_kernel_cache(bin_dir: Path) -> Path:
    site = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print("
                           "sysconfig.get_paths()['purelib'])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    return Path(site) / "masksearch" / "kernels" / "__pycache__"


def measure(source: Path, repeat: int, cold_repeat: int, tmp: Path, big_masks: int = 4000,
            install: bool = True) -> dict:
    global _PYCACHE
    _PYCACHE = tmp / "pycache"
    env = _env()
    cli = _cli(source)
    db = tmp / "small.msdb"
    _make_database(source, db, env)
    out: dict = {}
    log("import masksearch ...")
    out["import"] = _median(lambda: _run(_python(source, "import masksearch"), env), repeat)
    log("CLI query on 50 masks ...")
    out["cli_query"] = _median(lambda: _run([*cli, "query", str(db), QUERY], env), repeat)
    log("shell open (stdin not a terminal: reads statements, here none) ...")
    out["shell_open_stdin"] = _median(lambda: _run([*cli, "repl", str(db)], env), repeat)
    log("shell open on a terminal, to the first prompt ...")
    out["shell_open"] = _median(lambda: _shell_open([*cli, str(db)], env), repeat)

    def first_query(warmup: bool) -> float:
        with tempfile.TemporaryDirectory(dir=tmp) as cache:
            cold = _env(Path(cache))
            if warmup:
                _run([*cli, "warmup", "--quiet"], cold)
            return _run([*cli, "query", str(db), QUERY], cold)

    log("first query with an empty Numba cache ...")
    out["first_query_no_warmup"] = _median(lambda: first_query(False), cold_repeat, warm=False)
    log("first query after `masksearch warmup` into an empty Numba cache ...")
    try:
        out["first_query"] = _median(lambda: first_query(True), cold_repeat, warm=False)
        with tempfile.TemporaryDirectory(dir=tmp) as cache:
            out["warmup_s"] = _run([*cli, "warmup", "--quiet"], _env(Path(cache)))
    except RuntimeError as e:                      # a checkout without `masksearch warmup`
        log(f"  not measured: {str(e)[:120]}")
        out["first_query"] = out["first_query_no_warmup"]
    if install:
        out.update(measure_install(source, cold_repeat, tmp, big_masks))
    return out


def measure_install(source: Path, cold_repeat: int, tmp: Path, big_masks: int) -> dict:
    """The first query after installing the wheel, on a database beyond the twins."""
    env = _env()
    log(f"a database of {big_masks} masks of 64x64 ...")
    big = tmp / "big.msdb"
    _make_database(source, big, env, big_masks)
    log("building and installing a wheel into a new virtual environment ...")
    bin_dir = _install(source, tmp)
    cache = _installed_kernel_cache(bin_dir)
    command = [str(bin_dir / "masksearch")]
    out: dict = {"big_masks": big_masks}
    log("CLI query on the big database, kernels cached (warm) ...")
    _run([*command, "warmup", "--quiet"], env)
    out["big_query_warm"] = _median(lambda: _run([*command, "query", str(big), BIG_QUERY],
                                                 env), cold_repeat)

    def fresh(warmup: bool) -> float:
        shutil.rmtree(cache, ignore_errors=True)
        if warmup:
            out.setdefault("install_warmup_all_s", []).append(
                round(_run([*command, "warmup", "--quiet"], env), 2))
        return _run([*command, "query", str(big), BIG_QUERY], env)

    log("first query after install, `masksearch warmup` run first ...")
    out["install_first_query"] = _median(lambda: fresh(True), cold_repeat, warm=False)
    out["install_warmup_s"] = statistics.median(out["install_warmup_all_s"])
    log("first query after install, no warm-up (compiles what it needs) ...")
    out["install_first_query_no_warmup"] = _median(lambda: fresh(False), cold_repeat,
                                                   warm=False)
    return out


def report(label: str, out: dict) -> list[str]:
    lines = [f"{label}:", f"  {'measurement':<44} {'median':>8}  {'target':>7}"]
    names = {"import": "import masksearch", "cli_query": "CLI query, 50 masks",
             "shell_open_stdin": "shell open, stdin not a terminal",
             "shell_open": "shell open on a terminal, to the prompt",
             "first_query_no_warmup": "first query, empty Numba cache",
             "first_query": "first query, warmup into an empty cache",
             "big_query_warm": "CLI query, big database, kernels cached",
             "install_first_query": "first query after install (warmup first)",
             "install_first_query_no_warmup": "first query after install, no warmup"}
    for key, name in names.items():
        if key not in out:
            continue
        target = TARGETS.get("first_query" if key == "install_first_query" else key)
        verdict = "" if target is None else (
            "met" if out[key]["median_s"] <= target else "MISSED")
        shown_target = "" if target is None else f"{target:.1f} s"
        lines.append(f"  {name:<44} {out[key]['median_s']:>6.2f} s  {shown_target:>7}  "
                     f"{verdict}")
    if "warmup_s" in out:
        lines.append(f"  {'masksearch warmup into an empty cache':<44} {out['warmup_s']:>6.1f} s")
    if "install_warmup_s" in out:
        lines.append(f"  {'masksearch warmup after install':<44} "
                     f"{out['install_warmup_s']:>6.1f} s")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="runs per warm measurement")
    p.add_argument("--cold-repeat", type=int, default=3,
                   help="runs of each first query with an empty Numba cache")
    p.add_argument("--source", type=Path, default=ROOT,
                   help="the checkout whose masksearch package is measured (default: this one)")
    p.add_argument("--label", default=None, help="name of this run in the results file")
    p.add_argument("--big-masks", type=int, default=4000,
                   help="masks of the database of the first query after install")
    p.add_argument("--no-install", action="store_true",
                   help="skip the wheel install and the first query after it")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    source = args.source.resolve()
    label = args.label or ("this checkout" if source == ROOT else source.name)
    with tempfile.TemporaryDirectory(prefix="masksearch-cold-") as tmp:
        out = measure(source, args.repeat, args.cold_repeat, Path(tmp), args.big_masks,
                      not args.no_install)
    lines = report(label, out)
    log("\n" + "\n".join(lines))
    path = args.results / f"cold-start-{label.replace(' ', '-').replace('/', '_')}.json"
    write_json(path, {"label": label, "source": str(source), "machine": machine(),
                      "engine": engine_version() if source == ROOT else None,
                      "targets_s": TARGETS, "repeat": args.repeat,
                      "cold_repeat": args.cold_repeat,
                      "load_average": os.getloadavg(), "results": out})
    log(f"wrote {shown(path)}")


if __name__ == "__main__":
    main()
