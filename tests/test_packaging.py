"""The package installs: a wheel built from the sources, installed into a fresh virtualenv,
ingests and answers queries from a directory outside the checkout (Python and the CLI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("masksearch", "grammar", "pyproject.toml", "README.md")


def _build_wheel(tmp: Path) -> Path:
    """Build from a copy of the sources, so the checkout gets no build/ or egg-info."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
           str(src)]
    subprocess.run(cmd, check=True, cwd=tmp, capture_output=True, text=True)
    wheels = list((tmp / "dist").glob("masksearch-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_venv(tmp: Path) -> tuple[Path, Path]:
    """A new virtualenv whose own site-packages comes first; the dependencies (numpy, numba,
    pyarrow...) are borrowed from this interpreter's site-packages by a path entry (not a
    site dir, so this environment's editable install of masksearch is not visible)."""
    env = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env)   # this pip installs into it (faster)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True,
                          text=True).stdout.strip()
    (Path(site) / "zz_borrowed_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    return env, python


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    env, python = _fresh_venv(tmp)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                   text=True)
    outside = tmp / "elsewhere"
    outside.mkdir()
    return wheel, env, python, outside


def test_pyproject_lists_every_subpackage():
    """The package list is explicit (the grammar is mapped in from grammar/, and the web
    app's page is a folder of data files): a new subpackage must be added to it, or the
    wheel lacks it."""
    tomllib = pytest.importorskip("tomllib")     # Python 3.11+
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "masksearch").rglob("__init__.py")}
    assert listed == found | {"masksearch.grammar", "masksearch.web.static"}


def test_the_wheel_holds_the_grammar_and_the_type_marker(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "masksearch/grammar/masksearch.lark" in names
    assert "masksearch/py.typed" in names
    page = {f"masksearch/web/static/{f.name}" for f in (ROOT / "masksearch" / "web" / "static")
            .iterdir()}
    assert page <= names, "the web app's page ships whole"
    assert (ROOT / "grammar" / "masksearch.lark").read_bytes() == zipfile.ZipFile(wheel).read(
        "masksearch/grammar/masksearch.lark")
    assert not any(n.startswith(("tests/", "benchmarks/", "grammar/")) for n in names)


def test_the_wheel_holds_the_web_apps_page_and_assets(installed):
    names = set(zipfile.ZipFile(installed[0]).namelist())
    static = ROOT / "masksearch" / "web" / "static"
    assets = {f"masksearch/web/static/{p.name}" for p in static.iterdir() if p.is_file()}
    assert "masksearch/web/static/index.html" in assets
    assert assets <= names


def test_an_installed_wheel_ingests_and_answers_outside_the_checkout(installed):
    _, env, python, outside = installed
    script = textwrap.dedent("""
        import numpy as np
        import masksearch as ms
        db = ms.connect("w.msdb")
        masks = np.zeros((3, 20, 20), np.float32)
        masks[1, :10, :10] = 0.9
        masks[2] = 0.7
        db.ingest(masks, image_id=[1, 2, 3])
        rows = db.query("SELECT mask_id, CP(mask, box(0, 0, 10, 10), (0.6, 1.0]) AS c "
                        "FROM masks ORDER BY c DESC, mask_id LIMIT 2").rows()
        print(ms.__file__)
        print(rows)
    """)
    out = subprocess.run([str(python), "-c", script], cwd=outside, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert Path(out[0]).is_relative_to(env), f"masksearch imported from {out[0]}"
    assert out[1] == "[(1, 100), (2, 100)]"
    cli = subprocess.run([str(env / "bin" / "masksearch"), "query", "w.msdb",
                          "SELECT COUNT(*) AS n FROM masks WHERE CP(mask, full, (0.5, 1]) > 0",
                          "--format", "csv"], cwd=outside, check=True, capture_output=True,
                         text=True)
    assert cli.stdout.split() == ["n", "2"]
