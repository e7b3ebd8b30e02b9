"""End-to-end tests of the ``masksearch`` command line, run as a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
N_EACH = 20  # float32 NPY masks (model 1) and uint8 PNG masks (model 2)
SIZE = 32
LABELS = ("cat", "dog", "fox")


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]]
                                                       if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "masksearch", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def failed(proc: subprocess.CompletedProcess) -> str:
    """The error message of a run that must fail cleanly."""
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    assert proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def parse_table(text: str) -> list[dict[str, str]]:
    lines = text.rstrip("\n").splitlines()
    header = [h.strip() for h in lines[0].split("|")]
    assert set(lines[1]) <= {"-", "+"}
    rows = []
    for line in lines[2:]:
        if (line.startswith("(") and line.endswith(")")) or line.startswith("... "):
            break
        cells = [c.strip() for c in line.split("|")]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Mask files, metadata CSVs, and a database built from them through the CLI."""
    work = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(11)
    floats = rng.random((N_EACH, SIZE, SIZE)).astype(np.float32)
    floats[3] = 0.0  # one empty map
    ints = (rng.random((N_EACH, SIZE, SIZE)) * 256).astype(np.uint8)
    (work / "npy").mkdir()
    for i, m in enumerate(floats):
        np.save(work / "npy" / f"n{i:02d}.npy", m)
    for i, m in enumerate(ints):
        Image.fromarray(m).save(work / f"p{i:02d}.png")
    boxes = np.stack([rng.integers(0, 12, 2 * N_EACH), rng.integers(0, 12, 2 * N_EACH),
                      rng.integers(14, 40, 2 * N_EACH), rng.integers(14, 40, 2 * N_EACH)], 1)
    labels = [LABELS[i % 3] for i in range(2 * N_EACH)]
    for name, prefix, part in (("npy_meta.csv", "n", slice(0, N_EACH)),
                               ("png_meta.csv", "p", slice(N_EACH, None))):
        rows = [[f"{prefix}{k:02d}", lab, ",".join(str(int(v)) for v in b), k / 4]
                for b, lab, k in zip(boxes[part], labels[part], range(N_EACH), strict=True)]
        rng.shuffle(rows)   # matched to the files by their 'file' key, not by position
        with open(work / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "label", "bbox", "score"])
            w.writerows(rows)

    db = work / "db.msdb"
    created = ok(run("create", str(db), "--cell-size", "8", cwd=work))
    ingest_npy = ok(run("ingest", str(db), "npy/*.npy", "--metadata", "npy_meta.csv",
                        "--model-id", "1", "--mask-type", "saliency", cwd=work))
    png_files = sorted(str(p.name) for p in work.glob("p*.png"))
    ingest_png = ok(run("ingest", str(db), *png_files, "--metadata", "png_meta.csv",
                        "--model-id", "2", "--mask-type", "saliency", "--quiet", cwd=work))
    masks = list(floats) + list(ints)
    image_ids = [f"n{i:02d}" for i in range(N_EACH)] + [f"p{i:02d}" for i in range(N_EACH)]
    return {"work": work, "db": str(db), "masks": masks, "boxes": boxes, "labels": labels,
            "image_ids": image_ids, "outputs": (created, ingest_npy, ingest_png)}


def cp(mask: np.ndarray, box, lo: float) -> int:
    """CP(mask, box, (lo, inf)) in NumPy."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return int((mask[y0:y1, x0:x1] > lo).sum())


def test_create_and_ingest_report(data):
    created, ingest_npy, ingest_png = data["outputs"]
    assert "created" in created.stdout
    assert "cell size 8" in created.stdout
    assert f"ingested {N_EACH} masks" in ingest_npy.stdout
    assert "mask_id 0..19" in ingest_npy.stdout
    assert "mask_id 20..39" in ingest_png.stdout
    # Not a TTY: no progress bar on stderr.
    assert ingest_npy.stderr == ""
    assert ingest_png.stderr == ""


def test_info_json_and_text(data):
    info = json.loads(ok(run("info", data["db"], "--json", cwd=data["work"])).stdout)
    assert info["masks"] == 2 * N_EACH
    assert info["dtypes"] == {"float32": N_EACH, "uint8": N_EACH}
    assert info["shapes"] == {f"{SIZE}x{SIZE}": 2 * N_EACH}
    assert info["cell_size"] == 8
    assert info["codec"] == "lz4"
    assert info["columns"]["bbox"] == "box"
    assert info["columns"]["label"] == "string"
    assert info["columns"]["score"] == "float64"
    assert info["columns"]["image_id"] == "string"
    text = ok(run("info", data["db"], cwd=data["work"])).stdout
    assert f"masks      {2 * N_EACH} in 2 segments" in text
    assert "bbox" in text
    assert "index" in text
    assert "%" in text


def test_query_table_values(data):
    sql = ("SELECT mask_id, image_id, label, CP(mask, bbox, (0.5, inf)) AS c FROM masks "
           "WHERE model_id = 1 ORDER BY mask_id")
    proc = ok(run("query", data["db"], sql, "--stats", cwd=data["work"]))
    rows = parse_table(proc.stdout)
    assert len(rows) == N_EACH
    assert proc.stdout.rstrip().endswith(f"({N_EACH} rows)")
    for i, row in enumerate(rows):
        assert int(row["mask_id"]) == i
        assert row["image_id"] == data["image_ids"][i]
        assert row["label"] == data["labels"][i]
        assert int(row["c"]) == cp(data["masks"][i], data["boxes"][i], 0.5)
    assert "masks:" in proc.stderr
    assert "verified" in proc.stderr


def test_query_csv_all_masks_with_and_without_index(data):
    sql = "SELECT mask_id, model_id, CP(mask, bbox, (0.5, inf)) AS c FROM masks ORDER BY mask_id"
    out = ok(run("query", data["db"], sql, "--format", "csv", cwd=data["work"])).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2 * N_EACH
    for i, row in enumerate(rows):
        assert int(row["mask_id"]) == i
        assert int(row["model_id"]) == (1 if i < N_EACH else 2)
        assert int(row["c"]) == cp(data["masks"][i], data["boxes"][i], 0.5)
    brute = ok(run("query", data["db"], sql, "--format", "csv", "--no-index",
                   cwd=data["work"])).stdout
    assert brute == out


def test_query_json_filter(data):
    threshold = 600
    sql = (f"SELECT mask_id, label, CP(mask, full, (100, inf)) AS hot FROM masks "
           f"WHERE model_id = 2 AND CP(mask, full, (100, inf)) > {threshold} "
           f"ORDER BY hot DESC")
    out = ok(run("query", data["db"], sql, "--format", "json", cwd=data["work"])).stdout
    rows = json.loads(out)
    full = (0, 0, SIZE, SIZE)
    expected = sorted(((cp(data["masks"][i], full, 100), i) for i in range(N_EACH, 2 * N_EACH)
                       if cp(data["masks"][i], full, 100) > threshold),
                      key=lambda t: (-t[0], t[1]))
    assert expected, "the test data should give some rows"
    assert [(r["hot"], r["mask_id"]) for r in rows] == expected
    assert all(r["label"] == data["labels"][r["mask_id"]] for r in rows)


def test_query_from_stdin_and_max_rows(data):
    proc = ok(run("query", data["db"], "-", "--max-rows", "3", cwd=data["work"],
                  stdin="SELECT mask_id FROM masks ORDER BY mask_id"))
    assert [r["mask_id"] for r in parse_table(proc.stdout)] == ["0", "1", "2"]
    assert f"{2 * N_EACH - 3} more rows not shown" in proc.stdout


def test_explain(data):
    out = ok(run("explain", data["db"], "SELECT mask_id FROM masks WHERE label = 'cat' "
                 "AND CP(mask, full, (0.5, inf)) > 10", cwd=data["work"])).stdout
    assert "Scan" in out
    assert "CP(" in out


def test_syntax_error_has_position_and_caret(data):
    sql = "SELECT mask_id,\n  CP(mask, full, (0.5 1]) AS c\nFROM masks"
    err = failed(run("query", data["db"], sql, cwd=data["work"]))
    assert "line 2, column" in err
    lines = err.splitlines()
    caret = next(i for i, line in enumerate(lines) if line.strip() == "^")
    source = lines[caret - 1]
    assert "CP(mask, full, (0.5 1])" in source
    assert lines[caret].index("^") == source.index("1]")


def test_unknown_column_lists_columns(data):
    err = failed(run("query", data["db"], "SELECT nope FROM masks", cwd=data["work"]))
    assert "unknown column 'nope'" in err
    for name in ("mask_id", "image_id", "label", "bbox", "score"):
        assert name in err
    assert "^" in err


def test_missing_database_is_an_error_not_a_create(data, tmp_path):
    missing = tmp_path / "nowhere.msdb"
    for args in (("query", str(missing), "SELECT mask_id FROM masks"),
                 ("info", str(missing))):
        err = failed(run(*args, cwd=tmp_path))
        assert f"no masksearch database at {missing}" in err
        assert not missing.exists()


def test_ingest_creates_a_missing_database_with_the_defaults(data, tmp_path):
    new = tmp_path / "new.msdb"
    out = ok(run("ingest", str(new), str(data["work"] / "p00.png"), cwd=tmp_path))
    assert "ingested 1 masks" in out.stdout
    info = json.loads(ok(run("info", str(new), "--json", cwd=tmp_path)).stdout)
    assert (info["masks"], info["cell_size"], info["index_mode"]) == (1, 16, "eager")


def test_create_twice_and_bad_ingest_leave_database_unchanged(data):
    err = failed(run("create", data["db"], cwd=data["work"]))
    assert "exists" in err
    err = failed(run("ingest", data["db"], "nothing-*.png", cwd=data["work"]))
    assert "matches no file" in err
    # Metadata rows that name no file being ingested are refused before anything is written.
    err = failed(run("ingest", data["db"], "p00.png", "p01.png", "--metadata", "png_meta.csv",
                     cwd=data["work"]))
    assert f"png_meta.csv: {N_EACH - 2} rows name no file being ingested" in err
    info = json.loads(ok(run("info", data["db"], "--json", cwd=data["work"])).stdout)
    assert info["masks"] == 2 * N_EACH


def test_lazy_database_and_index_command(data, tmp_path):
    """create --index lazy, a query builds some CHIs, `index` builds the rest."""
    work = data["work"]
    db = str(tmp_path / "lazy.msdb")
    assert "lazy indexing" in ok(run("create", db, "--index", "lazy", cwd=work)).stdout
    ok(run("ingest", db, "npy/*.npy", "--quiet", cwd=work))
    info = json.loads(ok(run("info", db, "--json", cwd=work)).stdout)
    assert info["index_mode"] == "lazy"
    assert info["indexed_masks"] == 0
    sql = "SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1]) > 500"
    want = ok(run("query", db, sql, "--format", "csv", cwd=work)).stdout
    info = json.loads(ok(run("info", db, "--json", cwd=work)).stdout)
    assert info["indexed_masks"] == info["masks"]      # the query read every mask once
    out = ok(run("index", db, "--quiet", cwd=work)).stdout
    assert f"{info['masks']} of {info['masks']} masks indexed" in out
    assert ok(run("query", db, sql, "--format", "csv", cwd=work)).stdout == want


def test_query_prints_the_notice_for_a_unit_range_over_0_255_masks(data):
    """The PNG masks hold 0..255: (0.6, 1.0] counts only their value 1."""
    sql = "SELECT COUNT(*) AS n FROM masks WHERE CP(mask, full, (0.6, 1.0]) > 0"
    proc = ok(run("query", data["db"], sql, cwd=data["work"]))
    column = sql.index("(0.6") + 1
    assert proc.stderr.startswith(f"notice: line 1, column {column}: the uint8 masks hold "
                                  "values from 0 to 255, and (0.6, 1.0] covers only the "
                                  "value 1; for the same share of their scale 0..255, write "
                                  "(153, 255]\n")
    want = sum(int(((m > 0.6) & (m <= 1.0)).any()) for m in data["masks"])
    assert parse_table(proc.stdout) == [{"n": str(want)}]     # the result is unchanged


def test_changes_through_the_command_line(data, tmp_path):
    """query runs DELETE/UPDATE/ALTER (one rows_affected row), annotate joins a CSV by key,
    ingest --replace-on upserts, compact rewrites segments; a refused annotation names the
    row and changes nothing."""
    work, db = data["work"], str(tmp_path / "c.msdb")
    ok(run("ingest", db, "npy/*.npy", "--model-id", "1", "--quiet", cwd=work))
    out = ok(run("query", db, "DELETE FROM masks WHERE CP(mask, full, (0.5, 1.0]) < 500",
                 cwd=work)).stdout
    gone = sum(cp(m, (0, 0, SIZE, SIZE), 0.5) < 500 for m in data["masks"][:N_EACH])
    assert parse_table(out) == [{"rows_affected": str(gone)}]
    ok(run("query", db, "ALTER TABLE masks ADD COLUMN reviewed BOOLEAN DEFAULT false",
           cwd=work))
    out = ok(run("query", db, "UPDATE masks SET reviewed = true WHERE image_id = 'n05'",
                 cwd=work)).stdout
    assert parse_table(out) == [{"rows_affected": str(int(
        cp(data["masks"][5], (0, 0, SIZE, SIZE), 0.5) >= 500))}]
    (tmp_path / "notes.csv").write_text("image_id,note\nn01,first\nn02,second\n")
    keep = [f"n{i:02d}" for i in (1, 2)
            if cp(data["masks"][i], (0, 0, SIZE, SIZE), 0.5) >= 500]
    if len(keep) == 2:
        out = ok(run("annotate", db, str(tmp_path / "notes.csv"), cwd=work)).stdout
        assert out.startswith("annotated 2 masks")
    (tmp_path / "bad.csv").write_text("image_id,note\nn01,a\nn01,b\n")
    before = {p: p.read_bytes() for p in Path(db).rglob("*")
              if p.is_file() and p.parent.name != "readers"}
    err = failed(run("annotate", db, str(tmp_path / "bad.csv"), cwd=work))
    assert "bad.csv, line 3: key 'n01' appears twice" in err
    assert {p: p.read_bytes() for p in Path(db).rglob("*")
            if p.is_file() and p.parent.name != "readers"} == before
    out = ok(run("ingest", db, "npy/n07.npy", "npy/n08.npy", "--model-id", "1",
                 "--replace-on", "image_id,model_id", "--quiet", cwd=work)).stdout
    replaced = sum(cp(data["masks"][i], (0, 0, SIZE, SIZE), 0.5) >= 500 for i in (7, 8))
    assert f"replacing {replaced})" in out
    err = failed(run("ingest", db, "npy/n07.npy", "--replace-on", " , ", cwd=work))
    assert "--replace-on needs column names" in err
    out = ok(run("compact", db, cwd=work)).stdout
    assert out.startswith(f"compacted {db}: ")
    n = ok(run("query", db, "SELECT count(*) AS n FROM masks", cwd=work)).stdout
    assert parse_table(n) == [{"n": str(N_EACH - gone + 2 - replaced)}]
    ok(run("check", db, cwd=work))
