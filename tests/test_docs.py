"""Every code example of README.md and docs/*.md runs, exactly as written.

Each document runs in a fresh temporary directory (the working directory, so relative paths
such as ``masks.msdb`` land there and nothing is left in the checkout). Its fenced blocks
run in order:

- ```python: all blocks of one document share one namespace. A document therefore starts
  with a visible block that builds its own small database, as a reader would paste it.
- ```sql: each statement (ending at ``;``) runs with ``db.query(...)`` against the variable
  ``db`` of the document's namespace, and must give the same rows with ``use_index=False``
  (EXPLAIN statements excepted: their plans say whether the index was used). A document
  without Python blocks that runs SQL or ``masksearch`` commands gets a fixture database,
  ``masks.msdb`` in its directory, as ``db`` (``build_fixture`` below: the columns
  image_id, model_id, mask_type, bbox, label).
- ```sh (also ```shell, ```bash): each line that starts with ``masksearch `` (or
  ``$ masksearch ``) runs through the real CLI, ``[sys.executable, "-m", "masksearch",
  ...]``, its words split with ``shlex``, and must exit with 0, or with N when the line ends
  with a comment saying ``# ... exit code N``. ``< FILE`` and ``<<'EOF'`` here-documents
  feed stdin. Other lines (``make demo``, ``pip install ...``, ``cd``) are not run.
- ```console: lines starting with ``$ `` are commands, run as in sh blocks; the lines after
  a ``masksearch`` command, up to the next ``$ ``, are its output (stdout and stderr in the
  order written) and must match it. In shown output, ``...`` stands for any text within a
  line, and a line of just ``...`` for any number of lines. After a command that opens the
  shell, lines starting with ``masksearch> `` or ``...> `` are what the user typed: they are
  piped to the command, and the rest (minus the interactive banner ``masksearch: ...``) is
  compared; the exit code of such a session is not checked (a piped shell exits with 1
  when a statement failed, an interactive one with 0).
- ```text (and blocks of any other language) are not run. A ```text block right after an
  HTML comment ``<!-- doctest: output -->`` must match the output of the block before it:
  what a Python block printed, or each SQL statement's rows as the CLI's table format
  (``error: ...`` for a failed statement), separated by blank lines.

A document with ``s3://`` URLs runs against the tests' S3 server (``tests/s3_server.py``),
reached through the AWS environment variables (also by its ``masksearch`` commands), with an
empty bucket ``examples``.

Markers (an HTML comment on the line before a fence, invisible on GitHub):
``<!-- doctest: error -->`` before an SQL block: every statement must fail with a
``MaskSearchError``; ``<!-- doctest: output -->`` as above; ``<!-- doctest: skip -->``: the
block is not run (use sparingly, for examples that take minutes).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from .doc_examples import ROOT, DocRunner, needs_database, read_blocks

DOCS = ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                             for p in (ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
# Pages linked before they are written (by another change).
PENDING: set[str] = set()


def build_fixture(path: Path):
    """The database documents without Python blocks query: 200 saliency maps of 64x64
    (two models per image, a box and a label each) and 20 label maps of 48x48 without a box."""
    import masksearch as ms
    from masksearch.synth import label_maps, saliency_maps

    maps, boxes = saliency_maps(200, size=64, seed=0)
    db = ms.connect(path)
    db.ingest(maps, image_id=np.arange(200) // 2, model_id=np.arange(200) % 2,
              mask_type="saliency",
              metadata={"bbox": boxes,
                        "label": np.array(["cat", "dog", "fox", "owl"])[np.arange(200) // 2 % 4]})
    db.ingest(label_maps(20, size=48, classes=3, seed=1), image_id=np.arange(20), model_id=2,
              mask_type="segmentation")
    return db


@pytest.fixture(scope="module")
def fixture_source(tmp_path_factory):
    """A function building the fixture database once, when a document first needs it."""
    made: list[Path] = []

    def source() -> Path:
        if not made:
            path = tmp_path_factory.mktemp("docs-fixture") / "masks.msdb"
            build_fixture(path)
            made.append(path)
        return made[0]

    return source


def use_s3_server(request, monkeypatch) -> None:
    """For a document with ``s3://`` URLs: the tests' S3 server (``tests/s3_server.py``),
    reached through the AWS environment variables, with an empty bucket ``examples``."""
    server = request.getfixturevalue("s3_server")
    server.bucket("examples")
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("doc", DOCS)
def test_examples_run_as_written(doc, tmp_path, monkeypatch, fixture_source, request):
    import masksearch as ms

    blocks = read_blocks(ROOT / doc)
    if "s3://" in (ROOT / doc).read_text(encoding="utf-8"):
        use_s3_server(request, monkeypatch)
    monkeypatch.chdir(tmp_path)
    runner = DocRunner(tmp_path)
    if not any(b.lang in ("python", "py") for b in blocks) and needs_database(blocks):
        shutil.copytree(fixture_source(), tmp_path / "masks.msdb")
        runner.namespace["db"] = ms.connect(tmp_path / "masks.msdb")
    runner.run(blocks)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path = ((ROOT / doc).parent / target).resolve()
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        assert path.exists() or rel in PENDING, f"{doc}: the link {target} leads nowhere"
