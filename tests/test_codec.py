"""Pixel compression round-trips every dtype bit for bit; shuffling matches a slow reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.kernels.codec_kernels import shuffle_bytes, shuffle_bytes_part, unshuffle_bytes
from masksearch.store.codec import decode_mask, encode_mask

from .strategies import examples, masks


def reference_shuffle(raw: np.ndarray, itemsize: int) -> np.ndarray:
    return raw.reshape(-1, itemsize).T.reshape(-1).copy()


@pytest.mark.parametrize("itemsize", [1, 2, 4, 8])
def test_shuffle_matches_reference(itemsize):
    raw = np.random.default_rng(itemsize).integers(0, 256, 64 * itemsize).astype(np.uint8)
    out = np.empty_like(raw)
    shuffle_bytes(raw, itemsize, out)
    np.testing.assert_array_equal(out, reference_shuffle(raw, itemsize))
    back = np.empty_like(raw)
    unshuffle_bytes(out, itemsize, back)
    np.testing.assert_array_equal(back, raw)


@settings(max_examples=examples(200))
@given(masks(max_side=40), st.sampled_from(["lz4", "zstd"]))
def test_round_trip(m, codec):
    blob = encode_mask(m, codec)
    got = decode_mask(blob, m.dtype, *m.shape, codec)
    assert got.dtype == m.dtype
    assert got.shape == m.shape
    assert got.tobytes() == m.tobytes()   # bit for bit, NaN payloads included


@pytest.mark.parametrize("itemsize", [1, 2, 4, 8])
def test_shuffle_in_parts_matches_whole(itemsize):
    """Values shuffled part by part, in any order, land where ``shuffle_bytes`` puts them."""
    n = 97
    raw = np.random.default_rng(itemsize).integers(0, 256, n * itemsize).astype(np.uint8)
    out = np.zeros_like(raw)
    for start, stop in [(40, 97), (0, 1), (1, 40), (40, 40)]:
        shuffle_bytes_part(raw[start * itemsize:stop * itemsize], itemsize, start, n, out)
    np.testing.assert_array_equal(out, reference_shuffle(raw, itemsize))
