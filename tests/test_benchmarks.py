"""The benchmark scripts that compare masksearch with other designs keep working: the
prototype-style baseline is exact (property tests against a NumPy brute force), and tiny runs
of bench_prototype.py, bench_costs.py and the --generator option of suite.py and
bench_engine.py finish with every answer checked (a mismatch exits with status 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import prototype_baseline as pb
from benchmarks.workloads import Range

from .strategies import FLOAT_VALUES, examples

EDGES = tuple(np.arange(17) / 16)


@st.composite
def unit_masks(draw):
    """(n, h, w) float32 masks in [0, 1], many values on the baseline's bin edges."""
    n, h, w = draw(st.integers(1, 6)), draw(st.integers(1, 70)), draw(st.integers(1, 70))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    on_edge = rng.choice(np.array(EDGES + FLOAT_VALUES), (n, h, w))
    return np.where(rng.random((n, h, w)) < 0.4, on_edge, rng.random((n, h, w))
                    ).astype(np.float32)


ends = st.sampled_from((-0.5, *EDGES, *FLOAT_VALUES, 0.3, 0.61, 1.5))


@st.composite
def ranges(draw):
    lo, hi = sorted((draw(ends), draw(ends)))
    lo_closed, hi_closed = draw(st.booleans()), draw(st.booleans())
    if lo == hi:
        lo_closed = hi_closed = True
    return Range(lo, lo_closed, hi, hi_closed)


def boxes(h: int, w: int):
    return st.tuples(st.integers(-5, w + 5), st.integers(-5, h + 5), st.integers(-5, w + 5),
                     st.integers(-5, h + 5))


@settings(max_examples=examples(150))
@given(unit_masks(), ranges(), st.data(), st.sampled_from((4, 16, 28)))
def test_baseline_bounds_hold_the_exact_count(masks, rng, data, cell):
    n, h, w = masks.shape
    chi = pb.build_chi(masks, cell=cell)
    rows = np.arange(n)
    raw = np.array([data.draw(boxes(h, w)) for _ in range(n)])
    per_mask = pb.clip_boxes(np.sort(raw.reshape(n, 2, 2), axis=1).reshape(n, 4), h, w)
    exact = np.array([pb.count_one(masks, i, tuple(per_mask[i]), rng) for i in rows])
    lower, upper = pb.bounds(chi, rows, per_mask, rng)
    assert np.all(lower <= exact)
    assert np.all(exact <= upper)
    full = np.array((0, 0, w, h))
    lower, upper = pb.bounds(chi, rows, full, rng)
    exact = pb.counts_in_box(masks, rows, (0, 0, w, h), rng)
    assert np.all(lower <= exact)
    assert np.all(exact <= upper)
    on_edges = rng.lo in EDGES[1:] and rng.hi in EDGES and not rng.lo_closed and rng.hi_closed
    if on_edges:      # the whole mask and a range (e, e'] of edges (bin 0 holds 0): exact
        assert np.array_equal(lower, upper)


@settings(max_examples=examples(100))
@given(unit_masks(), ranges(), st.integers(0, 40), st.integers(1, 5), st.booleans())
def test_baseline_filter_and_top_k_equal_the_brute_force(masks, rng, t, k, descending):
    n, h, w = masks.shape
    box = (w // 5, h // 7, w - w // 4, h)
    chi = pb.build_chi(masks)
    rows = np.arange(n)
    exact = pb.counts_in_box(masks, rows, box, rng)
    lower, upper = pb.bounds(chi, rows, np.array(box), rng)
    for op in (">", "<"):
        got, _ = pb.filter_rows(lower, upper, lambda r: pb.counts_in_box(masks, r, box, rng),
                                op, t)
        assert got.tolist() == np.flatnonzero(exact > t if op == ">" else exact < t).tolist()
    keys, values, _ = pb.top_k(lower.astype(float), upper.astype(float),
                               lambda r: pb.count_one(masks, r, box, rng), k, descending)
    order = np.lexsort((rows, -exact if descending else exact))[:k]
    assert keys == order.tolist()
    assert values == exact[order].tolist()


def test_baseline_refuses_values_outside_its_bins():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pb.build_chi(np.full((1, 4, 4), 1.5, np.float32))


@pytest.mark.parametrize("generator", ["gradcam", "saliency"])
def test_bench_prototype_answers_equal_the_baseline(tmp_path, generator):
    from benchmarks import bench_prototype

    assert bench_prototype.main(["--images", "40", "--repeat", "1", "--generator", generator,
                                 "--workdir", str(tmp_path), "--results", str(tmp_path),
                                 "--no-warmup"]) == 0
    out = json.loads((tmp_path / f"prototype-{generator}-40.json").read_text())
    names = [r["workload"] for r in out["rows"]]
    assert len(names) == 12
    assert any(n.startswith("IoU top-25") for n in names)
    assert all(r["baseline_ms"] > 0 and r["masksearch_ms"] > 0 for r in out["rows"])
    assert out["geomean_speedup"] > 0
    assert not list(tmp_path.glob("*.msdb"))            # the database is removed


def test_bench_costs_measures_every_part(tmp_path):
    from benchmarks import bench_costs

    assert bench_costs.main(["--n", "200", "--repeat", "1", "--probe-runs", "1",
                             "--ingest-n", "60", "--generators", "gradcam",
                             "--workdir", str(tmp_path), "--results", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "costs-200.json").read_text())
    assert [r["generator"] for r in out["results"]] == ["gradcam"]
    for r in out["results"]:
        assert r["bounds"]["verified"] == 0       # the settled query reads no pixels
        assert r["verify"]["verified"] > 0
        # Held compressed in memory, decoded (by default) into the cache: several times more.
        assert r["probe"]["index_decoded_bytes_per_mask"] > 2 * r["probe"]["index_held_bytes_per_mask"]
        assert r["probe"]["index_held_bytes_per_mask"] < 2 * r["probe"]["index_disk_bytes_per_mask"]
        assert r["ingest"]["masks_per_s"] > 0


def test_suite_and_engine_run_on_the_gradcam_generator(tmp_path):
    from benchmarks import bench_engine, suite

    assert bench_engine.main(["--n", "120", "--repeat", "1", "--generator", "gradcam",
                              "--workdir", str(tmp_path), "--results", str(tmp_path)]) == 0
    engine = json.loads((tmp_path / "engine-120-gradcam.json").read_text())
    assert engine["generator"] == "gradcam"
    assert suite.main(["--n", "120", "--kinds", "gradcam", "--generator", "gradcam",
                       "--repeat", "1", "--duck-masks", "10", "--sweep-masks", "0",
                       "--workdir", str(tmp_path), "--results", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "suite-120-gradcam.json").read_text())["rows"]
    assert {r["dataset"] for r in rows} == {"gradcam-120"}
