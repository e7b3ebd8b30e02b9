"""Corruption: flipped bytes and truncations in every kind of file are reported, never
answered around. Every read either raises ``StoreError`` naming the damaged file (and the mask,
for pixels) or returns exactly the undamaged answer; ``check`` finds every damaged file; a
damaged index is rebuilt from the pixels."""

from __future__ import annotations

import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

import masksearch as ms
from masksearch.errors import StoreError
from masksearch.synth import saliency_maps

from .test_cli import ok, run

N_FLOAT, N_UINT8 = 20, 6
QUERIES = [
    ("SELECT mask_id, CP(mask, box(2, 3, 20, 17), (0.5, 1.0]) AS c FROM masks "
     "WHERE CP(mask, box(2, 3, 20, 17), (0.5, 1.0]) > 40", True),
    ("SELECT mask_id, CP(mask, box(2, 3, 20, 17), (0.5, 1.0]) AS c FROM masks "
     "WHERE CP(mask, box(2, 3, 20, 17), (0.5, 1.0]) > 40", False),
    ("SELECT mask_id, CP(mask, full, (0.3, 1.0]) AS c FROM masks ORDER BY c DESC LIMIT 5",
     True),
    ("SELECT mask_id, image_id, label FROM masks WHERE label = 'b'", True),
    ("SELECT image_id, CP(intersect(mask), full, (0.5, 1.0]) AS i FROM masks "
     "WHERE image_id < 100 GROUP BY image_id ORDER BY i DESC LIMIT 4", True),
]


def build(path: Path, lazy: bool) -> ms.Database:
    """Two float32 segments, one uint8 segment; a lazy database also gets index deltas, and
    both get stored CHIs of aggregated masks (prepared, for the group query)."""
    maps, _ = saliency_maps(N_FLOAT, size=24, coarse=5, seed=3)
    db = ms.connect(path, index="lazy" if lazy else None, segment_size=12)
    db.ingest(maps, image_id=np.arange(N_FLOAT) // 2,
              metadata={"label": ["a", "b"] * (N_FLOAT // 2)})
    labels = np.random.default_rng(4).integers(0, 3, (N_UINT8, 24, 24)).astype(np.uint8)
    db.ingest(labels, image_id=np.arange(N_UINT8) + 100, metadata={"label": ["c"] * N_UINT8})
    # A top-k's first look reads groups without caching their aggregated masks' CHIs: they
    # are prepared here, so that the group query reads stored ones (damage must be reported).
    db.prepare_aggregates("image_id", "intersect", where="image_id < 100")
    for sql, use_index in QUERIES:
        db.query(sql, use_index=use_index)
    return db


def answers(db: ms.Database) -> list:
    out = [db.query(sql, use_index=use).rows() for sql, use in QUERIES]
    out.append([db.mask(i).tobytes() for i in range(N_FLOAT + N_UINT8)])
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("corruption")
    dbs = {kind: build(root / kind, lazy=(kind == "lazy")) for kind in ("eager", "lazy")}
    expected = {kind: answers(db) for kind, db in dbs.items()}
    # The reference itself: the index and brute force agree, and CP counts match NumPy.
    maps, _ = saliency_maps(N_FLOAT, size=24, coarse=5, seed=3)
    counts = ((maps[:, 3:17, 2:20] > 0.5) & (maps[:, 3:17, 2:20] <= 1.0)).sum((1, 2))
    want = [(i, int(c)) for i, c in enumerate(counts) if c > 40]
    for kind in dbs:
        assert expected[kind][0] == expected[kind][1]
        assert [r for r in expected[kind][0] if r[0] < N_FLOAT] == want
    assert expected["eager"] == expected["lazy"]
    return root, expected


def files_of(root: Path) -> dict[str, Path]:
    """One file of every kind in the database."""
    seg = sorted((root / "segments").iterdir())[0]
    out = {"manifest": root / "manifest.json", "segment.json": seg / "segment.json",
           "pixels": seg / "pixels.arrow", "meta": seg / "meta.parquet"}
    if (seg / "chi.json").exists():
        out |= {"chi.json": seg / "chi.json", "chi": seg / "chi_hist.lz4",
                "chi_eq": seg / "chi_eq.npy", "chi_stats": seg / "chi_stats.npy"}
    deltas = sorted(root.glob("segments/*/chi-delta-*.npz"))
    if deltas:
        out["delta"] = deltas[0]
    cached = sorted((root / "aggcache").glob("*.npz"))
    assert cached, "the group query should have cached aggregated CHIs"
    out["aggcache"] = cached[0]
    return out


def damages(size: int, seed: int, flips: int) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    spots = {0, size // 3, size // 2, size - 1} | set(rng.integers(0, size, flips).tolist())
    return [("flip", int(p)) for p in sorted(spots)] + \
        [("truncate", n) for n in (0, size // 2, size - 1)]


def damage(path: Path, how: str, at: int, seed: int) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[at] ^= int(np.random.default_rng(seed).integers(1, 256))
    else:
        del data[at:]
    path.write_bytes(bytes(data))


def cases(flips: int):
    out = []
    for kind in ("eager", "lazy"):
        for name in ("manifest", "segment.json", "pixels", "meta", "chi.json", "chi",
                     "chi_eq", "chi_stats", "delta", "aggcache"):
            # Deltas exist in the lazy database, the full index in the eager one.
            if (kind == "eager" and name == "delta") or (kind == "lazy"
                                                          and name.startswith("chi")):
                continue
            out.append((kind, name, flips))
    return out


def run_case(tmp_path: Path, pristine, kind: str, name: str, flips: int) -> int:
    root, expected = pristine
    n = 0
    size = files_of(root / kind)[name].stat().st_size
    for k, (how, at) in enumerate(damages(size, seed=zlib.crc32(f"{kind} {name}".encode()), flips=flips)):
        copy = tmp_path / f"{kind}-{name}-{k}"
        shutil.copytree(root / kind, copy)
        target = files_of(copy)[name] if name != "aggcache" else sorted(
            (copy / "aggcache").glob("*.npz"))[0]
        damage(target, how, at, seed=k)
        check_damaged(copy, target, expected[kind], f"{how} at {at} of {target.name}")
        n += 1
    return n


def check_damaged(root: Path, target: Path, expected: list, case: str) -> None:
    relative = target.relative_to(root)
    errors = []
    try:
        db = ms.connect(root)
    except StoreError as e:
        errors.append(e)
        db = None
    if db is not None:
        for (sql, use_index), want in zip(QUERIES, expected, strict=False):
            try:
                got = db.query(sql, use_index=use_index).rows()
            except StoreError as e:
                errors.append(e)
                continue
            assert got == want, f"{case}: wrong answer without an error for {sql}"
        for i in range(N_FLOAT + N_UINT8):
            try:
                got = db.mask(i).tobytes()
            except StoreError as e:
                errors.append(e)
                named = re.search(r"mask (\d+) is damaged", str(e))
                if named:
                    assert named.group(1) == str(i), f"{case}: {e}"
                continue
            assert got == expected[-1][i], f"{case}: mask {i} read wrong without an error"
    for e in errors:
        # Errors name the damaged file (a damaged manifest or segment.json also stops the
        # reads of the files it describes, which are named through it).
        assert str(relative) in str(e) or target.name in str(e), f"{case}: {e}"
    if db is None:
        return
    report = db.check()
    assert not report.ok, f"{case}: check found nothing"
    assert any(target.name in str(p) for p in report.problems), f"{case}: {report.summary()}"
    if target.name.startswith("chi") or target.parent.name == "aggcache":
        # The pixels are intact: rebuilding the index repairs the database.
        db.rebuild_index()
        assert db.check().ok, f"{case}: {db.check().summary()}"
        assert answers(db) == expected, f"{case}: wrong answers after the rebuild"
    elif target.name == "pixels.arrow" and report.damaged_mask_ids:
        with pytest.raises(StoreError, match=r"pixels\.arrow: (mask \d+|the pixels file) is "
                           "damaged"):
            db.rebuild_index()


@pytest.mark.parametrize(("kind", "name", "flips"), cases(flips=3))
def test_damaged_file_is_reported_never_answered_around(tmp_path, pristine, kind, name, flips):
    n = run_case(tmp_path, pristine, kind, name, flips)
    print(f"{kind} {name}: {n} damaged copies")
    assert n >= 7


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "name", "flips"), cases(flips=24))
def test_many_random_flips(tmp_path, pristine, kind, name, flips):
    n = run_case(tmp_path, pristine, kind, name, flips)
    print(f"{kind} {name}: {n} damaged copies")
    assert n >= 20


def test_blob_damage_names_the_mask_and_spares_the_others(tmp_path, pristine):
    root, expected = pristine
    copy = tmp_path / "db"
    shutil.copytree(root / "eager", copy)
    db = ms.connect(copy)
    seg, row = db.store.locate(5)
    data, offsets = seg._blobs.data, seg._blobs.offsets
    start = int(offsets[row]) + (int(offsets[row + 1]) - int(offsets[row])) // 2
    # The blob's bytes sit at this offset of the file: find them by content.
    raw = bytearray((seg.directory / "pixels.arrow").read_bytes())
    blob = data.slice(int(offsets[row]), int(offsets[row + 1]) - int(offsets[row])).to_pybytes()
    pos = raw.index(blob) + (start - int(offsets[row]))
    raw[pos] ^= 0x55
    (seg.directory / "pixels.arrow").write_bytes(bytes(raw))
    db = ms.connect(copy)
    with pytest.raises(StoreError, match=r"pixels\.arrow: mask 5 is damaged \(checksum"):
        db.mask(5)
    for i in (4, 6, 21):
        assert db.mask(i).tobytes() == expected["eager"][-1][i]
    with pytest.raises(StoreError, match="mask 5 is damaged"):
        db.query("SELECT mask_id FROM masks WHERE CP(mask, full, (0.5, 1.0]) > 0",
                 use_index=False)
    report = db.check()
    assert report.damaged_mask_ids == [5]
    assert "mask ids: 5" in report.summary()


def test_cli_check_and_rebuild(tmp_path, pristine):
    root, expected = pristine
    copy = tmp_path / "db"
    shutil.copytree(root / "eager", copy)
    proc = ok(run("check", str(copy), cwd=tmp_path))
    assert "ok: no damage found" in proc.stdout
    chi = sorted(copy.glob("segments/*/chi_hist.lz4"))[0]
    damage(chi, "flip", chi.stat().st_size // 2, seed=1)
    proc = run("check", str(copy), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"{chi}: the index file is damaged (checksum mismatch)" in proc.stdout
    assert "--rebuild" in proc.stdout
    proc = run("query", str(copy), QUERIES[0][0], cwd=tmp_path)
    assert proc.returncode == 1
    assert "chi_hist.lz4: the index file is damaged" in proc.stderr
    ok(run("index", str(copy), "--rebuild", "-q", cwd=tmp_path))
    assert "ok: no damage found" in ok(run("check", str(copy), cwd=tmp_path)).stdout
    assert answers(ms.connect(copy)) == expected["eager"]


def test_databases_written_before_checksums_still_open(tmp_path, pristine):
    """Format 1 (no checksums): read unverified, reported as such, upgraded by a rebuild."""
    import json

    from .test_tiles import whole_mask_layout

    _, expected = pristine
    copy = tmp_path / "db"
    with whole_mask_layout():       # format 1 held whole-mask blobs (tiles: format 3)
        build(copy, lazy=False).close()
    body = json.loads((copy / "manifest.json").read_text())
    body.pop("xxh64")
    body["format"] = 1
    (copy / "manifest.json").write_text(json.dumps(body))
    for seg in (copy / "segments").iterdir():
        info = json.loads((seg / "segment.json").read_text())
        for key in ("xxh64", "format", "files", "blobs_xxh64"):
            info.pop(key)
        (seg / "segment.json").write_text(json.dumps(info))
        (seg / "chi.json").unlink()
    db = ms.connect(copy)
    assert answers(db) == expected["eager"]
    report = db.check()
    assert report.ok
    assert len(report.unverifiable) == 3
    assert "not verifiable (written before checksums)" in report.summary()
    db.rebuild_index()
    assert all((s / "chi.json").exists() for s in (copy / "segments").iterdir())
    assert answers(ms.connect(copy)) == expected["eager"]
    # A new ingest writes checksummed files; the database stays readable.
    db.ingest(np.zeros((1, 24, 24), np.float32), image_id=[999])
    assert ms.connect(copy).check().ok
