"""The web app's JSON API over HTTP (Starlette's test client, the app as served): answers
equal to db.query's, paging, background queries with progress and cancel, timeouts, refused
writes, every malformed request a 4xx with a JSON message, pictures, the image root."""

from __future__ import annotations

import base64
import json
import re
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():   # Starlette 1.x suggests httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

import masksearch as ms
from masksearch.web.app import create_app, make_state
from masksearch.web.config import ServeConfig
from masksearch.web.server import opener
from masksearch.web.values import json_value

from .slowdown import slow_down_verification
from .web_fixture import HOSTILE, IMAGE_PATHS, INSIDE, N, build

QUERIES = [
    "SELECT mask_id, label, CP(mask, bbox, (0.6, 1.0]) / area(bbox) AS inside FROM masks "
    "WHERE inside < 0.2",
    "SELECT mask_id, image_id, CP(mask, full, (0.5, 1.0]) AS hot FROM masks "
    "ORDER BY hot DESC LIMIT 25",
    "SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / CP(union(mask), full, (0.5, 1.0])"
    " AS iou FROM masks GROUP BY image_id ORDER BY iou ASC LIMIT 10",
    "SELECT label, COUNT(*) AS n, AVG(CP(mask, full, (0.3, 1.0])) AS a FROM masks GROUP BY label",
    "SELECT * FROM masks WHERE mask_id < 12",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path, root, maps = build(tmp_path_factory.mktemp("webapi"))
    return path, root, maps


def client_for(path: Path, **settings) -> TestClient:
    config = ServeConfig(str(path), **settings)
    app = create_app(make_state(config, opener(config)))
    return TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(served):
    with client_for(served[0], page_limit=500) as c:
        yield c


@pytest.fixture(scope="module")
def db(served):
    database = ms.connect(served[0], read_only=True)
    yield database
    database.close()


def expected(db, sql: str, use_index: bool = True) -> tuple[list[str], list[list]]:
    result = db.query(sql, use_index=use_index)
    return result.columns, [[json_value(v) for v in row] for row in result.rows()]


def problem(response, status: int) -> dict:
    """A refused request: the status, a JSON body with a message, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    body = response.json()
    assert isinstance(body["error"], str)
    assert body["error"]
    return body


@pytest.mark.parametrize("sql", QUERIES)
@pytest.mark.parametrize("use_index", [True, False])
def test_query_answers_what_db_query_answers(client, db, sql, use_index):
    r = client.post("/api/query", json={"sql": sql, "use_index": use_index, "limit": 500})
    assert r.status_code == 200, r.text
    body = r.json()
    columns, rows = expected(db, sql, use_index)
    assert body["columns"] == columns
    assert body["rows"] == rows
    assert body["total_rows"] == len(rows)
    assert body["stats"]["used_index"] is use_index
    assert body["stats"]["masks_total"] == N
    stats = db.query(sql, use_index=use_index).stats
    assert body["stats"]["verified"] == stats.verified
    assert body["stats"]["pruned"] == stats.pruned


def test_pages_of_a_result(client, db):
    sql = QUERIES[0]
    _, rows = expected(db, sql)
    assert len(rows) > 10
    got = []
    for offset in range(0, len(rows) + 7, 7):
        body = client.post("/api/query", json={"sql": sql, "offset": offset, "limit": 7}).json()
        assert body["offset"] == offset
        got += body["rows"]
    assert got == rows


def test_background_query_and_its_pages(client, db):
    sql = "SELECT mask_id, image_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 50"
    r = client.post("/api/queries", json={"sql": sql, "use_index": False})
    assert r.status_code == 202
    job = r.json()["id"]
    for _ in range(500):
        body = client.get(f"/api/queries/{job}?offset=5&limit=10").json()
        if body["state"] == "done":
            break
        time.sleep(0.01)
    assert body["state"] == "done"
    assert body["rows"] == expected(db, sql)[1][5:15]
    assert body["picture"] == {"roi": None, "range": "(0.5, 1.0]", "aggregate": None}
    assert body["progress"]["total"] == N     # the brute force read every mask
    assert body["progress"]["done"] == N


@pytest.fixture
def slow_counts(monkeypatch):
    """Verification at 20 ms per mask: a brute-force query over the fixture takes seconds."""
    slow_down_verification(monkeypatch, 0.02)


def test_cancel_stops_a_running_query(client, slow_counts):
    sql = "SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 10"
    job = client.post("/api/queries", json={"sql": sql, "use_index": False}).json()["id"]
    for _ in range(500):
        body = client.get(f"/api/queries/{job}").json()
        if body["progress"]["done"] > 0:
            break
        time.sleep(0.01)
    assert body["state"] == "running"
    assert 0 < body["progress"]["done"] < N
    assert client.delete(f"/api/queries/{job}").json()["cancel_requested"] is True
    start = time.monotonic()
    while client.get(f"/api/queries/{job}").json()["state"] == "running":
        assert time.monotonic() - start < 5
        time.sleep(0.01)
    body = client.get(f"/api/queries/{job}").json()
    assert body["state"] == "cancelled"
    assert body["kind"] == "cancelled"
    assert "cancelled" in body["error"]


def test_a_query_over_its_timeout_is_stopped(served, slow_counts):
    sql = "SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 10"
    with client_for(served[0], timeout=0.2) as c:
        start = time.monotonic()
        body = problem(c.post("/api/query", json={"sql": sql, "use_index": False}), 408)
        assert time.monotonic() - start < 3
        assert body["kind"] == "timeout"
        assert "timeout of 0.2 s" in body["error"]


def test_results_over_the_row_limit_are_cut(served, db):
    with client_for(served[0], max_rows=30) as c:
        body = c.post("/api/query", json={"sql": "SELECT mask_id FROM masks", "limit": 100}).json()
    assert body["truncated"] is True
    assert body["total_rows"] == 30
    assert body["rows"] == [[i] for i in range(30)]


@pytest.mark.parametrize(("sql", "line", "column"), [
    ("SELECT mask_id FROM masks WHERE", None, None),
    ("SELECT mask_id,\n  CP(mask, full, (0.5 1.0]) FROM masks", None, None),
    ("SELECT nope FROM masks", None, None),
])
def test_errors_in_the_query_are_located(client, db, sql, line, column):
    with pytest.raises(ms.QueryError) as raised:
        db.query(sql)
    body = problem(client.post("/api/query", json={"sql": sql}), 400)
    assert body["kind"] in ("syntax", "bind")
    assert body["error"] == raised.value.message
    assert (body["line"], body["column"]) == (raised.value.line, raised.value.column)


@pytest.mark.parametrize("sql", [
    "DELETE FROM masks WHERE mask_id = 1",
    "  update masks SET label = 'x'",
    "-- a comment\nALTER TABLE masks ADD COLUMN x INT",
    "/* hidden */ delete from masks",
    "(DELETE FROM masks)",
    "INSERT INTO masks VALUES (1)",
    "DROP TABLE masks",
    "EXPLAIN ANALYZE DELETE FROM masks WHERE mask_id = 1",
    "explain analyze UPDATE masks SET label = 'x'",
])
def test_statements_that_change_data_are_refused(client, db, sql):
    before = db.query("SELECT COUNT(*) AS n FROM masks").rows()
    for path in ("/api/query", "/api/queries"):
        body = problem(client.post(path, json={"sql": sql}), 403)
        assert body["kind"] == "read_only"
        assert "--allow-writes" in body["error"]
    assert db.query("SELECT COUNT(*) AS n FROM masks").rows() == before


def test_explain_of_a_change_shows_its_plan_and_changes_nothing(client, db):
    before = db.query("SELECT COUNT(*) AS n FROM masks").rows()
    r = client.post("/api/query", json={"sql": "EXPLAIN DELETE FROM masks WHERE mask_id = 1"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"][0] == ["Delete"]
    assert db.query("SELECT COUNT(*) AS n FROM masks").rows() == before


def test_the_database_is_opened_read_only(client):
    assert client.get("/api/info").json()["read_only"] is True


@pytest.mark.parametrize(("send", "status"), [
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 400),
    (dict(content=b"[1, 2]", headers={"content-type": "application/json"}), 400),
    (dict(content=b'"SELECT 1"', headers={"content-type": "application/json"}), 400),
    (dict(content=b'{"sql": "SELECT mask_id FROM masks"}'), 415),
    (dict(content=b"sql=SELECT", headers={"content-type": "application/x-www-form-urlencoded"}),
     415),
    (dict(json={"sql": 5}), 400),
    (dict(json={"sql": ""}), 400),
    (dict(json={"sql": None}), 400),
    (dict(json={}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "use_index": "yes"}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "use_index": 1}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "limit": -1}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "limit": 10**12}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "limit": 1e3}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "limit": True}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "offset": -5}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "offset": "0; DROP"}), 400),
    (dict(json={"sql": "SELECT mask_id FROM masks", "extra": 1}), 400),
    (dict(json={"sql": "SELECT " + "x" * 200_000}), 400),
    (dict(content=b'{"sql": "' + b"a" * (2 << 20) + b'"}',
          headers={"content-type": "application/json"}), 413),
    (dict(content=b"[" * 100_000, headers={"content-type": "application/json"}), 400),
    (dict(content=b"\xff\xfe\x00", headers={"content-type": "application/json"}), 400),
])
def test_malformed_requests_get_a_4xx_with_a_message(client, send, status):
    for path in ("/api/query", "/api/queries"):
        problem(client.post(path, **send), status)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/query", 405),
    ("PUT", "/api/queries", 405),
    ("GET", "/api/nothing", 404),
    ("GET", "/api/queries/no-such-query", 404),
    ("DELETE", "/api/queries/no-such-query", 404),
    ("GET", "/api/queries/x?limit=100000000", 400),
    ("GET", "/api/masks/99999", 404),
    ("GET", "/api/masks/99999.png", 404),
    ("GET", "/api/masks/-1", 404),
    ("GET", "/api/masks/abc.png", 404),
    ("GET", f"/api/masks/{10**30}.png", 404),
    ("GET", f"/api/masks/{2**63}", 404),
    ("GET", "/api/masks/1.png?size=0", 400),
    ("GET", "/api/masks/1.png?size=100000", 400),
    ("GET", "/api/masks/1.png?size=abc", 400),
    ("GET", "/api/masks/1.png?roi=%3Cscript%3E", 400),
    ("GET", "/api/masks/1.png?roi=nope", 400),
    ("GET", "/api/masks/1.png?roi=1,2,3", 400),
    ("GET", "/api/masks/1.png?range=(0.5,%201.0", 400),
    ("GET", "/api/masks/1.png?range=%3Cscript%3E", 400),
    ("GET", "/api/masks/1.png?legend=2", 400),
    ("GET", "/api/masks/1.png?evil=1", 400),
    ("GET", "/static/nothing.js", 404),
])
def test_bad_paths_and_parameters(client, method, path, status):
    problem(client.request(method, path), status)


@pytest.mark.parametrize("path", [
    "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2fetc%2fpasswd", "/static/%252e%252e/etc/passwd",
    "/static//etc/passwd", "/api/masks/..%2f..%2fetc%2fpasswd.png",
    "/api/masks/0/..%2f..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd",
])
def test_paths_out_of_the_served_folders_are_refused(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404)
    assert "root:" not in r.text
    problem(r, r.status_code)


def test_mask_metadata(client, db):
    for mask_id in (0, 5, N - 1):
        body = client.get(f"/api/masks/{mask_id}").json()
        columns, rows = expected(db, f"SELECT * FROM masks WHERE mask_id = {mask_id}")
        assert body["columns"] == columns
        assert body["values"] == rows[0]


def test_pictures_are_the_renderers_and_cached(client, db):
    state = client.app.state.masksearch
    url = "/api/masks/7.png?size=64&roi=bbox&range=(0.6,%201.0]"
    r = client.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content == db.render_png(7, roi="bbox", range="(0.6, 1.0]", size=64,
                                      confined=True)
    hits = state.pngs.hits
    assert client.get(url).content == r.content
    assert state.pngs.hits == hits + 1
    box = client.get("/api/masks/7.png?roi=2,3,20,25&range=[0.5,1]&legend=0")
    assert box.content == db.render_png(7, roi=(2, 3, 20, 25), range="[0.5,1]", legend=False,
                                        confined=True)


def test_source_images_only_from_under_the_image_root(client, served):
    _, root, _ = served
    for k, value in enumerate(IMAGE_PATHS):
        r = client.get(f"/api/masks/{k}/image")
        if k in INSIDE:
            assert r.status_code == 200, value
            assert r.content == (root / INSIDE[k]).read_bytes()
            assert r.headers["content-type"] == "image/png"
        else:
            problem(r, 404)
            assert "root:" not in r.text
        # The picture of every mask renders: over the image, or alone when it is refused.
        assert client.get(f"/api/masks/{k}.png?size=32").status_code == 200


def test_hostile_values_come_back_exactly_as_json(client, db):
    sql = "SELECT mask_id, label, image_path FROM masks WHERE mask_id < 24"
    r = client.post("/api/query", json={"sql": sql})
    assert r.headers["content-type"] == "application/json"
    rows = json.loads(r.content)["rows"]
    labels = {row[1] for row in rows}
    assert set(HOSTILE) <= labels
    assert rows == expected(db, sql)[1]


def test_every_answer_carries_the_security_headers(client):
    for path in ("/", "/static/app.js", "/api/info", "/api/nothing", "/api/masks/1.png"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "default-src 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"


def test_a_foreign_host_name_is_refused(client):
    """DNS rebinding: a page of another site resolving its name to 127.0.0.1 cannot read."""
    problem(client.get("/api/info", headers={"host": "evil.example:8765"}), 400)
    assert client.get("/api/info", headers={"host": "localhost:8765"}).status_code == 200


def test_info_lists_columns_and_counts(client, db):
    body = client.get("/api/info").json()
    assert [c["name"] for c in body["columns"]] == list(db.columns())
    assert body["masks"] == N
    label = next(c for c in body["columns"] if c["name"] == "label")
    counts = dict(db.query("SELECT label, COUNT(*) AS n FROM masks GROUP BY label").rows())
    assert {v: n for v, n in label["top"]} == counts
    assert label["distinct"] == len(counts)
    assert next(c for c in body["columns"] if c["name"] == "bbox")["non_null"] == N


STATIC = Path(ms.__file__).parent / "web" / "static"


def test_the_page_has_no_inline_code_and_loads_nothing_from_elsewhere():
    """The CSP forbids inline scripts; the page must not need any. Offline: no CDN."""
    page = (STATIC / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", page) == \
        ['<script type="module" src="/static/app.js">']
    assert not re.search(r"\son[a-z]+\s*=", page)           # no inline event handlers
    assert "style=" not in page
    for asset in STATIC.iterdir():
        text = asset.read_text()
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert urls == set(), (asset.name, urls)
        if asset.suffix == ".js":
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                         "eval(", "new Function"):
                assert sink not in text, (asset.name, sink)


def test_every_module_the_page_imports_is_served(client):
    for asset in STATIC.glob("*.js"):
        for name in re.findall(r'from "\./([a-z]+\.js)"', asset.read_text()):
            assert (STATIC / name).is_file()
        r = client.get(f"/static/{asset.name}")
        assert r.status_code == 200
        assert "javascript" in r.headers["content-type"]


GROUPED = ("SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) / "
           "CP(union(mask), full, (0.5, 1.0]) AS iou FROM masks WHERE model_id IN (0, 1) "
           "GROUP BY image_id ORDER BY iou DESC LIMIT 9")


def test_pictures_of_grouped_rows_show_members_and_aggregated_masks(client, db):
    job = client.post("/api/queries", json={"sql": GROUPED}).json()["id"]
    for _ in range(500):
        if client.get(f"/api/queries/{job}").json()["state"] == "done":
            break
        time.sleep(0.01)
    body = client.get(f"/api/queries/{job}/cards?offset=3&limit=4").json()
    rows = db.query(GROUPED).to_pylist()[3:7]
    assert len(body["cards"]) == len(rows)
    for card, row in zip(body["cards"], rows, strict=True):
        members = [r["mask_id"] for r in db.query(
            f"SELECT mask_id FROM masks WHERE image_id = {row['image_id']}").to_pylist()]
        assert [t["mask_id"] for t in card["thumbs"]] == [*members, None, None]
        assert [t["title"] for t in card["thumbs"][-2:]] == \
            [f"intersect of {len(members)} masks", f"union of {len(members)} masks"]
        for t in card["thumbs"]:
            assert t["src"].startswith("data:image/png;base64,")
        assert card["thumbs"][0]["src"] == "data:image/png;base64," + base64.b64encode(
            db.render_png(members[0], "full", "(0.5, 1.0]", 160)).decode()
    problem(client.get("/api/queries/nope/cards"), 404)
    problem(client.get(f"/api/queries/{job}/cards?limit=5000"), 400)
