"""The synthetic mask generators: seeded, in range, and shaped like the masks they mimic."""

from __future__ import annotations

import numpy as np
import pytest

from masksearch.synth import (
    attention_maps,
    binary_masks,
    gradcam_maps,
    label_maps,
    random_boxes,
    saliency_maps,
)


def test_generators_are_seeded_and_in_range():
    for make in (lambda s: saliency_maps(5, size=32, coarse=4, seed=s)[0],
                 lambda s: gradcam_maps(5, size=32, coarse=4, seed=s)[0],
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


def test_gradcam_maps_are_seeded_in_range_with_boxes():
    maps, boxes = gradcam_maps(300, size=56, seed=4, chunk=64)
    again, again_boxes = gradcam_maps(300, size=56, seed=4, chunk=64)
    assert np.array_equal(maps, again)
    assert np.array_equal(boxes, again_boxes)
    assert maps.shape == (300, 56, 56)
    assert maps.dtype == np.float32
    assert maps.min() >= 0
    assert np.all(maps.max(axis=(1, 2)) == 1.0)
    assert boxes.shape == (300, 4)
    assert np.all((boxes[:, :2] >= 0) & (boxes[:, 2:] <= 56) & (boxes[:, 2:] > boxes[:, :2]))
    # Several hot spots: most of the map cold, a real part of it warm.
    assert 0.005 < (maps > 0.6).mean() < 0.2
    assert 0.3 < (maps > 0).mean() < 0.95
    # The maps that attend to their box make the share inside it spread widely.
    inside = np.array([(m[y0:y1, x0:x1] > 0.6).mean() for m, (x0, y0, x1, y1) in
                       zip(maps, boxes.tolist(), strict=True)])
    assert np.quantile(inside, 0.25) < 0.05 < 0.3 < np.quantile(inside, 0.9)


def test_gradcam_maps_take_given_boxes():
    boxes = random_boxes(40, size=64, seed=1)
    a, got = gradcam_maps(40, size=64, seed=1, boxes=boxes)
    b, _ = gradcam_maps(40, size=64, seed=2, boxes=boxes)
    assert got is boxes or np.array_equal(got, boxes)
    assert not np.array_equal(a, b)     # two models' maps of the same images differ
    with pytest.raises(ValueError, match=r"boxes must have shape \(40, 4\)"):
        gradcam_maps(40, size=64, boxes=boxes[:3])
