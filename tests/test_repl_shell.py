"""The shell's statement handling and dot-commands, driven without a terminal."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import masksearch as ms
from masksearch.repl.commands import COMMANDS
from masksearch.repl.session import ShellExit
from masksearch.repl.shell import TABLE_ROWS, Shell
from masksearch.repl.statements import Piece, is_complete, split_input
from masksearch.synth import saliency_maps

N = 60


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    maps, boxes = saliency_maps(N, size=48, coarse=6, seed=3)
    database = ms.connect(tmp_path_factory.mktemp("repl") / "r.msdb", cell_size=8)
    database.ingest(maps, image_id=np.arange(N), model_id=1, metadata={"bbox": boxes})
    return database, maps, boxes


def shell_for(db) -> tuple[Shell, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Shell(db, out=out, err=err), out, err


# --- splitting input into statements ------------------------------------------------------
# No '-' outside strings and comments: "--" would start a comment that hides the ';'.
_sql_chars = st.text(st.sampled_from("SELCT mask_id,()[]0.5*+/\n\t"), max_size=30)
_string = st.text(st.sampled_from("ab;'-\n"), max_size=8).map(lambda s: "'" + s.replace("'", "''") + "'")
_comment = st.text(st.sampled_from("ab; '"), max_size=8).map(lambda s: "-- " + s + "\n")
_statement = st.lists(st.one_of(_sql_chars, _string, _comment), min_size=1, max_size=5).map(
    "".join).filter(lambda s: s.strip() and not s.lstrip().startswith(".")
                    and any(c.isalnum() for c in s.split("--")[0]))


@given(st.lists(_statement, min_size=1, max_size=4))
def test_split_finds_each_statement_whatever_its_strings_and_comments_hold(statements):
    text = "".join(s + ";\n" for s in statements)
    pieces, rest = split_input(text)
    assert rest == ""
    assert [p.text for p in pieces] == [(s + ";").strip() for s in statements]
    assert all(not p.dot for p in pieces)
    # Without the last ';' the last statement is unfinished.
    pieces, rest = split_input(text.rstrip()[:-1])
    assert len(pieces) == len(statements) - 1
    assert rest.strip() == statements[-1].strip()
    assert not is_complete(text.rstrip()[:-1])


def test_split_dot_commands_and_blank_input():
    pieces, rest = split_input(".mode csv\nSELECT 1 FROM masks; .timer off\n-- just a comment\n")
    assert pieces == [Piece(".mode csv", True), Piece("SELECT 1 FROM masks;", False),
                      Piece(".timer off", True)]
    assert rest == ""
    assert is_complete("")
    assert is_complete("  -- note")
    assert is_complete(".help")
    assert not is_complete("SELECT 'a;")
    assert not is_complete("SELECT 1 -- ;")


# --- statements ---------------------------------------------------------------------------
def test_statement_prints_table_row_count_and_time(db):
    database, maps, _boxes = db
    shell, out, err = shell_for(database)
    shell.run("SELECT mask_id, CP(mask, full, (0.5, 1.0]) AS c\nFROM masks ORDER BY c DESC\n"
              "LIMIT 3;")
    counts = (maps > 0.5).sum(axis=(1, 2))
    best = np.argsort(-counts, kind="stable")[:3]
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["mask_id", "|", "c"]
    assert [tuple(int(v) for v in line.split("|")) for line in lines[2:]] == \
        [(int(i), int(counts[i])) for i in best]
    assert "3 rows in" in err.getvalue()
    assert " ms" in err.getvalue()


def test_long_results_are_truncated_with_a_note_but_files_get_all_rows(db, tmp_path):
    database, _, _ = db
    shell, out, err = shell_for(database)
    shell.run("SELECT mask_id FROM masks;")
    assert f"... {N - TABLE_ROWS} more rows not shown" in out.getvalue()
    assert f"{N} rows" in err.getvalue()
    target = tmp_path / "all.csv"
    shell.run(f".output {target}\n.mode csv\nSELECT mask_id FROM masks;\n.output\n")
    assert target.read_text().split() == ["mask_id"] + [str(i) for i in range(N)]


def test_modes(db):
    database, maps, _ = db
    shell, out, err = shell_for(database)
    q = "SELECT mask_id, CP(mask, box(0, 0, 10, 10), [0.2, 1.0]) AS c FROM masks LIMIT 2;"
    expect = [(i, int((maps[i, :10, :10] >= 0.2).sum())) for i in range(2)]
    shell.run(".mode json\n" + q)
    assert [(r["mask_id"], r["c"]) for r in json.loads(out.getvalue())] == expect
    out.truncate(0), out.seek(0)
    shell.run(".mode csv\n" + q)
    assert out.getvalue().split() == ["mask_id,c"] + [f"{a},{b}" for a, b in expect]
    out.truncate(0), out.seek(0)
    shell.run(".mode markdown\n" + q)
    assert out.getvalue().splitlines() == ["| mask_id | c |", "|---:|---:|"] + [
        f"| {a} | {b} |" for a, b in expect]
    shell.run(".mode xml")
    assert "error: .mode takes one of: table, csv, json, markdown" in err.getvalue()


def test_errors_print_and_the_next_statement_runs(db):
    database, _, _ = db
    shell, out, err = shell_for(database)
    shell.run("SELECT nope FROM masks;\nSELEC 1;\n.nope\nSELECT COUNT(*) AS n FROM masks;")
    text = err.getvalue()
    assert "error: unknown column 'nope'" in text
    assert "^" in text
    assert "line 2" not in text  # each statement's positions are its own
    assert "unknown command .nope" in text
    assert out.getvalue().split()[-1] == str(N)
    assert shell.failures == 3


def test_notice_for_an_open_upper_end_at_the_largest_value(db):
    database, maps, _ = db
    assert maps.max() == 1.0
    shell, _out, err = shell_for(database)
    q = "SELECT COUNT(*) FROM masks WHERE CP(mask, full, (0.6, 1.0)) > 0;"
    shell.run(q)
    column = q.index("(0.6") + 1
    assert f"notice: line 1, column {column}: (0.6, 1.0) leaves out pixels equal to 1.0" in \
        err.getvalue()
    assert "write (0.6, 1.0] to count them" in err.getvalue()
    shell2, _, err2 = shell_for(database)
    shell2.run("SELECT COUNT(*) FROM masks WHERE CP(mask, full, (0.6, 1.0]) > 0;")
    assert "notice" not in err2.getvalue()
    shell2.run("SELECT COUNT(*) FROM masks WHERE CP(mask, full, (1.5, 2]) > 0;")
    assert "no pixel lies in (1.5, 2]" in err2.getvalue()


def test_notice_for_a_unit_range_over_0_255_masks(tmp_path):
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[:, 4:12, 4:12] = 255
    database = ms.connect(tmp_path / "png.msdb")
    database.ingest(masks, image_id=[0, 1, 2])
    shell, out, err = shell_for(database)
    shell.run("SELECT COUNT(*) AS n FROM masks WHERE CP(mask, full, (0.6, 1.0]) > 10;")
    assert "notice: line 1, column 54: the uint8 masks hold values from 0 to 255, and " \
        "(0.6, 1.0] covers only the value 1; for the same share of their scale 0..255, " \
        "write (153, 255]" in err.getvalue()
    assert out.getvalue().split()[-1] == "0"    # the result itself is unchanged
    shell2, out2, err2 = shell_for(database)
    shell2.run("SELECT COUNT(*) AS n FROM masks WHERE CP(mask, full, (153, 255]) > 10;")
    assert "notice" not in err2.getvalue()
    assert out2.getvalue().split()[-1] == "3"


def test_dot_commands(db, tmp_path):
    database, _, _ = db
    shell, out, err = shell_for(database)
    shell.run(".help")
    for name in COMMANDS:
        assert name in err.getvalue()
    shell.run(".schema\n.info")
    text = out.getvalue()
    assert "bbox" in text
    assert "box" in text
    assert "mask_id" in text
    assert f"masks      {N} in 1 segment" in text, err.getvalue()
    assert "indexing   eager" in text, err.getvalue()
    shell.run(".timer off\nSELECT COUNT(*) FROM masks;")
    assert err.getvalue().splitlines()[-1] == "1 row"
    script = tmp_path / "s.sql"
    script.write_text("-- a script\n.mode csv\nSELECT mask_id FROM masks\nWHERE mask_id < 2;\n")
    out.truncate(0), out.seek(0)
    shell.run(f".read {script}")
    assert out.getvalue().split() == ["mask_id", "0", "1"]
    shell.run(".read /no/such/file.sql\n.timer maybe\n.output /no/such/dir/x.txt")
    assert ".read /no/such/file.sql: No such file or directory" in err.getvalue()
    assert ".timer takes on or off" in err.getvalue()
    assert ".output /no/such/dir/x.txt: No such file or directory" in err.getvalue()
    with pytest.raises(ShellExit):
        shell.run(".quit\nSELECT 1;")


def test_index_off_gives_the_same_rows(db):
    database, _, _ = db
    q = "SELECT mask_id FROM masks WHERE CP(mask, bbox, (0.4, 1.0]) / area(bbox) > 0.5;"
    on, out_on, _ = shell_for(database)
    on.run(q)
    off, out_off, err_off = shell_for(database)
    off.run(".index off\n" + q)
    assert out_on.getvalue() == out_off.getvalue()
    assert f"of {N} masks read" in err_off.getvalue()


# --- highlighting and completion (the editor's parts that need no terminal) ----------------
def test_lexer_classes():
    from prompt_toolkit.document import Document

    from masksearch.repl.editor import QueryLexer

    line = QueryLexer().lex_document(Document(
        "SELECT CP(mask, full, (0.5, 1]) AS c FROM masks -- note\n.mode csv"))
    tokens = [(style, text) for style, text in line(0) if text.strip()]
    assert ("class:keyword", "SELECT") in tokens
    assert ("class:function", "CP") in tokens
    assert ("class:keyword", "mask") in tokens
    assert ("class:number", "0.5") in tokens
    assert ("class:comment", "-- note") in tokens
    assert ("", "c") in tokens
    assert line(1) == [("class:command", ".mode csv")]


def test_completer_offers_columns_keywords_functions_and_commands():
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from masksearch.repl.editor import QueryCompleter

    completer = QueryCompleter(lambda: ["bbox", "label", "mask_id"])

    def complete(text):
        return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]

    assert complete("SELECT b") == ["bbox", "BETWEEN", "BY", "BOX("]
    assert complete("select ma") == ["mask_id", "mask", "max("]
    assert complete(".m") == [".mode"]
    assert complete(".mode j") == ["json"]
    assert complete("SELECT ") == []


def test_statements_that_change_data(tmp_path):
    maps, boxes = saliency_maps(12, size=32, coarse=4, seed=5)
    database = ms.connect(tmp_path / "c.msdb", cell_size=8)
    database.ingest(maps, image_id=np.arange(12), model_id=1, metadata={"bbox": boxes})
    shell, out, err = shell_for(database)
    hot = (maps > 0.5).sum(axis=(1, 2))
    shell.run("DELETE FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 100;\n"
              "ALTER TABLE masks ADD COLUMN seen BOOLEAN DEFAULT false;\n"
              "UPDATE masks SET seen = true WHERE mask_id < 6;\n"
              "SELECT count(*) AS n FROM masks WHERE seen;")
    text = out.getvalue()
    assert text.count("rows_affected") == 3, text
    assert f"{int((hot > 100).sum())}" in text.splitlines()[2]
    assert int(text.rstrip().splitlines()[-1]) == int((hot[:6] <= 100).sum())
    assert "Traceback" not in err.getvalue()
