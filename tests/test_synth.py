"""The synthetic mask generators: seeded, in range, and shaped like the masks they mimic."""

from __future__ import annotations

import numpy as np

from masksearch.synth import attention_maps, binary_masks, label_maps, saliency_maps


def test_generators_are_seeded_and_in_range():
    for make in (lambda s: saliency_maps(5, size=32, coarse=4, seed=s)[0],
                 lambda s: attention_maps(5, size=32, seed=s),
                 lambda s: label_maps(5, size=32, seed=s),
                 lambda s: binary_masks(5, size=32, seed=s)):
        a, b, c = make(1), make(1), make(2)
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)
        assert a.shape == (5, 32, 32)
    att = attention_maps(20, size=64, seed=0)
    assert att.dtype == np.float32
    assert att.min() >= 0
    assert np.allclose(att.max(axis=(1, 2)), 1.0)
    # Fixations: most of the map is cold, a small part hot.
    assert 0.01 < (att > 0.5).mean() < 0.5


def test_label_maps_hold_background_and_few_classes():
    labels = label_maps(30, size=64, classes=20, seed=0)
    assert labels.dtype == np.uint8
    assert labels.max() <= 20
    for m in labels:
        present = np.unique(m)
        assert 0 in present
        assert 2 <= len(present) <= 7
    binary = binary_masks(30, size=64, seed=0)
    assert binary.dtype == np.bool_
    assert 0 < binary.mean() < 0.9
