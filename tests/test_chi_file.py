"""The on-disk CHI counts (compressed per-cell histograms) decode to the exact CHI."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.index.chi import build_segment_index, default_edges, kernel_view
from masksearch.store.chi_file import CountsEncoder, decode_counts, encode_counts

from .strategies import examples, masks


@settings(max_examples=examples(60))
@given(st.sampled_from(["bool", "uint8", "uint16", "float32"]).flatmap(
    lambda dtype: st.lists(masks(dtype=dtype, max_side=40), min_size=1, max_size=6)),
       st.sampled_from([1, 3, 16]))
def test_counts_round_trip(ms_, cell):
    values = np.concatenate([kernel_view(m).astype(np.float64).ravel() for m in ms_])
    finite = values[np.isfinite(values)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    edges = default_edges(ms_[0].dtype, lo, hi)
    index = build_segment_index(ms_, edges, cell)
    data = encode_counts(index)
    back = decode_counts(data, index.counts.dtype, index.counts.size, index.offsets,
                         index.heights, index.widths, cell, len(edges))
    assert back.dtype == index.counts.dtype
    assert np.array_equal(back, index.counts)


def test_compressed_counts_are_small_for_saliency_maps():
    from masksearch.synth import saliency_maps

    maps, _ = saliency_maps(50, seed=0)
    index = build_segment_index(list(maps), default_edges(maps.dtype, 0.0, 1.0), 16)
    per_mask = len(encode_counts(index)) / len(maps)
    assert per_mask < 0.25 * index.counts.nbytes / len(maps)


@settings(max_examples=examples(60))
@given(st.sampled_from(["bool", "uint8", "uint16", "float32"]).flatmap(
    lambda dtype: st.lists(masks(dtype=dtype, max_side=40), min_size=1, max_size=8)),
       st.sampled_from([1, 3, 16]), st.data())
def test_counts_encoded_in_parts_are_the_same_bytes(ms_, cell, data):
    """Ingest encodes the counts chunk by chunk, on several threads: whatever the chunks,
    the bytes are those of ``encode_counts`` over the whole index."""
    edges = default_edges(ms_[0].dtype, 0.0, 1.0)
    index = build_segment_index(ms_, edges, cell)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(ms_)), max_size=4))) |
                  {0, len(ms_)})
    encoder = CountsEncoder(index)
    parts = list(itertools.pairwise(cuts))
    for start, stop in data.draw(st.permutations(parts)):
        encoder.add(start, stop)
    assert encoder.finish() == encode_counts(index)
