"""The demo's scenes: source images with an object in each box, saliency maps attending to
it, written next to the database with image_path and the image root set, so that pictures
show the masks over their images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import masksearch as ms
from masksearch import demo
from masksearch.synth import attending_maps, object_boxes, source_images


def test_scenes_are_seeded_and_objects_sit_in_their_boxes():
    boxes = object_boxes(30, size=96, seed=4)
    assert np.array_equal(boxes, object_boxes(30, size=96, seed=4))
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2:] <= 96).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    labels = np.arange(30) % 6
    images = source_images(boxes, labels, size=96, seed=5)
    assert images.shape == (30, 96, 96, 3)
    assert images.dtype == np.uint8
    assert np.array_equal(images, source_images(boxes, labels, size=96, seed=5))
    # The object: the box's centre has the class colour's hue, unlike the background's.
    for img, (x0, y0, x1, y1), label in zip(images, boxes, labels, strict=True):
        centre = img[(y0 + y1) // 2, (x0 + x1) // 2].astype(float)
        colour = demo_colour(label)
        assert np.abs(centre - colour).max() < 0.45 * 255


def demo_colour(label: int) -> np.ndarray:
    from masksearch.synth import _OBJECT_COLOURS

    return _OBJECT_COLOURS[label % len(_OBJECT_COLOURS)]


def test_attending_maps_attend_to_the_box_as_often_as_asked():
    boxes = object_boxes(400, size=64, seed=1)
    share = {}
    for on in (0.9, 0.2):
        maps = attending_maps(boxes, size=64, seed=2, on_object=on)
        assert maps.dtype == np.float32
        assert np.allclose(maps.max(axis=(1, 2)), 1.0)
        peaks = [np.unravel_index(np.argmax(m), m.shape) for m in maps]
        share[on] = np.mean([x0 - 5 <= px < x1 + 5 and y0 - 5 <= py < y1 + 5
                             for (py, px), (x0, y0, x1, y1) in zip(peaks, boxes,
                                                                   strict=True)])
    assert share[0.9] > 0.8
    assert share[0.2] < 0.6


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "demo.msdb"
    return demo.build(root, n=24, seed=3), root


def test_demo_writes_images_next_to_the_database(small_demo):
    db, root = small_demo
    folder = root.with_name("demo_images")
    assert db.image_root == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:05d}.jpg" for i in range(12)]
    rows = db.query("SELECT mask_id, image_id, image_path, bbox FROM masks").rows()
    assert all(path == f"{image_id:05d}.jpg" for _, image_id, path, _ in rows)
    # Both models' masks of an image share its object's box.
    by_image: dict = {}
    for _, image_id, _, box in rows:
        by_image.setdefault(image_id, set()).add(tuple(box.values()))
    assert all(len(boxes) == 1 for boxes in by_image.values())
    # Reopened, the database is reused with its images.
    assert demo.build(root, n=24, seed=3).info()["masks"] == 24


def test_demo_pictures_show_the_source_image(small_demo):
    """A render with the image root blends the scene in; without it, the mask is alone."""
    db, root = small_demo
    over = np.asarray(db.render(0, legend=False)).astype(int)
    scene = np.asarray(Image.open(root.with_name("demo_images") / "00000.jpg")).astype(int)
    alone = ms.connect(root, read_only=True)
    db.image_root = None
    try:
        bare = np.asarray(alone.render(0, legend=False)).astype(int)
    finally:
        db.image_root = root.with_name("demo_images")
    # Where the mask is cold (weight 0.25), the picture is mostly the scene.
    cold = np.asarray(db.mask(0)) < 0.05
    assert cold.any()
    assert np.abs(over[cold] - scene[cold]).mean() < np.abs(bare[cold] - scene[cold]).mean()


def test_show_pictures_writes_the_page_and_sheet(small_demo, tmp_path, capsys):
    db, _ = small_demo
    demo.show_pictures(db, html=str(tmp_path / "d.html"), sheet=str(tmp_path / "d.png"))
    out = capsys.readouterr().out
    assert "first picture after" in out
    text = (tmp_path / "d.html").read_text(encoding="utf-8")
    assert text.count('class="ms-card"') == 24
    assert Image.open(tmp_path / "d.png").size[0] > 160
