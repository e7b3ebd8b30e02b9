"""COCO files: every mask, area and box read by masksearch.ingest.coco matches pycocotools' own
reading of the file (``COCO(path).annToMask``, ``maskUtils.area``, ``loadRes``), the file
streams, and every malformed file is refused with the file and the annotation named."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.errors import IngestError
from masksearch.ingest.coco import from_coco, rle_string_total

from .strategies import examples

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# pycocotools' decode calls np.array on an object whose __array__ takes no copy keyword:
# NumPy 2 warns on every call, and pytest would keep every one of those warnings.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


# --- generated files ----------------------------------------------------------------------
def blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random bool mask: a few rectangles and scattered pixels."""
    m = rng.random((h, w)) < 0.05
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        m[y0:y0 + int(rng.integers(1, h + 1)), x0:x0 + int(rng.integers(1, w + 1))] = True
    return m


def compressed(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def uncompressed(m: np.ndarray) -> dict:
    flat = m.T.ravel()          # COCO runs go down the columns
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate(([0], edges, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]       # the first run counts zeros
    return {"size": list(m.shape), "counts": runs}


def polygon(rng: np.random.Generator, h: int, w: int, points: int, spill: float = 0.0
            ) -> list[float]:
    """A star-shaped polygon, ``spill`` of its size allowed outside the image."""
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    r = rng.uniform(1, max(h, w) * (0.4 + spill))
    t = np.sort(rng.uniform(0, 2 * np.pi, points))
    rr = r * rng.uniform(0.3, 1.0, points)
    xs = np.clip(cx + rr * np.cos(t), -w * spill, w * (1 + spill))
    ys = np.clip(cy + rr * np.sin(t), -h * spill, h * (1 + spill))
    return np.stack([xs, ys], 1).ravel().round(2).tolist()


IMAGES = [(1, 37, 53), (7, 64, 48), (12, 100, 80), (30, 1, 9)]     # id, height, width
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
              {"id": 18, "name": "dog"}]


def instances(seed: int = 0) -> dict:
    """A COCO instances file with every kind of segmentation, in an unusual key order."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "height": h, "width": w, "file_name": f"img/{i:04d}.jpg"}
              for i, h, w in IMAGES]
    annotations: list[dict] = []
    for image_id, h, w in IMAGES:
        segs = [
            [polygon(rng, h, w, 8)],                                        # one part
            [polygon(rng, h, w, 5, 0.5), polygon(rng, h, w, 12), polygon(rng, h, w, 2)],
            compressed(blob(rng, h, w)),
            uncompressed(blob(rng, h, w)),
            uncompressed(np.zeros((h, w), bool)),                           # empty
            compressed(np.ones((h, w), bool)),                              # full
        ]
        for k, seg in enumerate(segs):
            ann_id = 1000 * image_id + k
            rle = (mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if isinstance(seg, list)
                   else mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list)
                   else seg)
            x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
            ann = {"id": ann_id, "image_id": image_id, "category_id": [1, 3, 18][k % 3],
                   "segmentation": seg, "area": float(mask_utils.area(rle)) + 0.25,
                   "bbox": [x + 0.3, y + 0.7, bw + 0.1, bh], "iscrowd": int(k == 3)}
            annotations.append(ann)
    del annotations[1]["bbox"]          # computed from the mask
    del annotations[2]["area"]          # computed from the mask
    del annotations[5]["iscrowd"]       # 0
    return {"annotations": annotations, "info": {"year": 2024}, "images": images,
            "licenses": [], "categories": CATEGORIES}


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def read_all(source, size: int = 5) -> tuple[list, dict]:
    items, columns = [], {}
    for batch in source.batches(size):
        assert 0 < len(batch.items) <= size
        items += batch.items
        for name, values in batch.columns.items():
            assert len(values) == len(batch.items)
            columns.setdefault(name, []).extend(values)
    return items, columns


def expected_box(ann: dict, rle: dict) -> tuple[int, int, int, int]:
    x, y, w, h = ann["bbox"] if "bbox" in ann else mask_utils.toBbox(rle).tolist()
    return math.floor(x), math.floor(y), math.ceil(x + w), math.ceil(y + h)


def check_against_pycocotools(path: Path, images_dir: str | None = None) -> dict:
    """Every annotation of the instances file at ``path``, as read by from_coco, against
    pycocotools' COCO reading of the same file."""
    coco = COCO(str(path))
    source = from_coco(path, images_dir=images_dir)
    items, columns = read_all(source)
    anns = json.loads(path.read_text())["annotations"]
    assert source.total == len(items) == len(anns)
    for i, ann in enumerate(anns):
        image = coco.imgs[ann["image_id"]]
        mask = items[i].load()
        assert mask.dtype == np.bool_
        assert mask.shape == (image["height"], image["width"])
        assert mask.flags.c_contiguous
        np.testing.assert_array_equal(mask, coco.annToMask(ann).astype(bool),
                                      err_msg=items[i].label)
        rle = coco.annToRLE(ann)
        assert int(mask.sum()) == int(mask_utils.area(rle))
        assert items[i].label == f"{path}, annotation {ann['id']}"
        assert items[i].keys == ()
        assert columns["annotation_id"][i] == ann["id"]
        assert columns["image_id"][i] == ann["image_id"]
        assert columns["category_id"][i] == ann["category_id"]
        assert columns["category"][i] == coco.cats[ann["category_id"]]["name"]
        assert columns["area"][i] == ann.get("area", float(mask_utils.area(rle)))
        assert columns["bbox"][i] == expected_box(ann, rle)
        assert columns["iscrowd"][i] == ann.get("iscrowd", 0)
        assert columns["file_name"][i] == image["file_name"]
        if images_dir is not None:
            assert columns["image_path"][i] == os.path.join(images_dir, image["file_name"])
    return columns


# --- instances files ----------------------------------------------------------------------
def test_instances_match_pycocotools(tmp_path):
    path = write(tmp_path / "instances.json", instances())
    columns = check_against_pycocotools(path)
    assert set(columns) == {"image_id", "annotation_id", "category_id", "category", "bbox",
                            "area", "iscrowd", "file_name"}
    assert all(type(v) is int for v in columns["iscrowd"])
    assert all(type(v) is float for v in columns["area"])
    assert all(type(v) is tuple and all(type(c) is int for c in v) for v in columns["bbox"])
    assert sorted(set(columns["iscrowd"])) == [0, 1]


def test_images_dir_adds_image_path(tmp_path):
    path = write(tmp_path / "instances.json", instances(1))
    (tmp_path / "images").mkdir()
    columns = check_against_pycocotools(path, images_dir=str(tmp_path / "images"))
    assert columns["image_path"][0] == str(tmp_path / "images" / "img" / "0001.jpg")


def test_batches_are_in_order_and_sized(tmp_path):
    path = write(tmp_path / "instances.json", instances())
    source = from_coco(path)
    sizes = [len(b.items) for b in source.batches(7)]
    assert sizes == [7, 7, 7, 3]
    assert source.total == 24
    assert "24 annotations" in repr(source)
    with pytest.raises(ValueError, match="positive"):
        next(source.batches(0))


def test_bom_and_no_categories(tmp_path):
    data = instances()
    del data["categories"]
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data).encode())
    _, columns = read_all(from_coco(path))
    assert columns["category"] == [None] * 24


def test_a_first_part_of_two_points_is_a_polygon(tmp_path):
    """pycocotools' frPyObjects takes a first part of 4 numbers for a box and fails; every
    part is read as a polygon here (a 2-point polygon covers no pixel)."""
    data = instances()
    seg = [[2.0, 2.0, 30.0, 20.0], [1.0, 1.0, 20.0, 1.0, 20.0, 30.0, 1.0, 30.0]]
    data["annotations"][0]["segmentation"] = seg
    items, _ = read_all(from_coco(write(tmp_path / "i.json", data)))
    h, w = 37, 53
    alone = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg[1:], h, w)))
    np.testing.assert_array_equal(items[0].load(), alone.astype(bool))


def test_empty_polygon_list_is_an_empty_mask(tmp_path):
    data = instances()
    data["annotations"][0]["segmentation"] = []
    items, columns = read_all(from_coco(write(tmp_path / "i.json", data)))
    assert not items[0].load().any()
    assert items[0].load().shape == (37, 53)
    assert columns["area"][0] == data["annotations"][0]["area"]


@st.composite
def segmentations(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["polygon", "compressed", "uncompressed"]))
    if kind == "polygon":
        def coords(top):
            return st.floats(-top, 2 * top, allow_nan=False, width=32)

        points = st.lists(st.tuples(coords(w), coords(h)), min_size=3, max_size=10)
        parts = draw(st.lists(points, min_size=1, max_size=3))
        return h, w, [[float(c) for p in part for c in p] for part in parts]
    m = rng.random((h, w)) < draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    return h, w, compressed(m) if kind == "compressed" else uncompressed(m)


@settings(max_examples=examples(80))
@given(st.lists(segmentations(), min_size=1, max_size=4))
def test_random_segmentations_match_pycocotools(segs):
    data: dict = {"images": [], "annotations": [], "categories": CATEGORIES}
    for i, (h, w, seg) in enumerate(segs):
        data["images"].append({"id": i, "height": h, "width": w, "file_name": f"{i}.png"})
        data["annotations"].append({"id": 10 + i, "image_id": i, "category_id": 3,
                                    "segmentation": seg, "iscrowd": 0})
    with tempfile.TemporaryDirectory() as tmp:
        check_against_pycocotools(write(Path(tmp) / "random.json", data))


# --- the RLE string reader ----------------------------------------------------------------
def reference_string_runs(s: bytes) -> list[int] | None:
    """pycocotools' rleFrString in Python, with the same refusals as rle_string_total."""
    runs: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s) or k == 11 or not 48 <= s[p] <= 111:
                return None
            c = s[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x -= 1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if not 0 <= x < 1 << 32:
            return None
        runs.append(x)
    return runs


@settings(max_examples=examples(300))
@given(st.binary(max_size=40) | st.text("0123456789:;<=>?@ABOPQR_`aino", max_size=40).map(
    str.encode))
def test_rle_string_total_matches_reference(s):
    runs = reference_string_runs(s)
    total = rle_string_total(np.frombuffer(s, dtype=np.uint8))
    assert total == (-1 if runs is None else sum(runs))


@settings(max_examples=examples(100))
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_rle_strings_of_pycocotools_read_back(h, w, seed):
    m = np.random.default_rng(seed).random((h, w)) < 0.3
    s = compressed(m)["counts"].encode()
    runs = reference_string_runs(s)
    assert runs is not None
    assert rle_string_total(np.frombuffer(s, dtype=np.uint8)) == sum(runs) == h * w
    again = mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    assert again["counts"] == s


# --- results files ------------------------------------------------------------------------
def results(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for k, (image_id, h, w) in enumerate(IMAGES * 2):
        out.append({"image_id": image_id, "category_id": [1, 3, 18][k % 3],
                    "segmentation": compressed(blob(rng, h, w)),
                    "score": round(float(rng.random()), 3)})
    del out[3]["score"]
    return out


def test_results_match_pycocotools_loadres(tmp_path):
    gt = COCO(str(write(tmp_path / "instances.json", instances())))
    path = write(tmp_path / "results.json", results())
    res = gt.loadRes(str(path))
    source = from_coco(path)
    items, columns = read_all(source, size=3)
    assert set(columns) == {"image_id", "annotation_id", "category_id", "bbox", "area",
                            "score"}
    entries = json.loads(path.read_text())
    assert source.total == len(items) == len(entries)
    for i, entry in enumerate(entries):
        ann = res.anns[i + 1]
        np.testing.assert_array_equal(items[i].load(), res.annToMask(ann).astype(bool))
        assert items[i].label == f"{path}, result at index {i}"
        assert columns["annotation_id"][i] == ann["id"] == i + 1
        assert columns["area"][i] == float(ann["area"])
        assert columns["bbox"][i] == expected_box(ann, ann["segmentation"])
        assert columns["score"][i] == entry.get("score")
        assert columns["image_id"][i] == entry["image_id"]
        assert columns["category_id"][i] == entry["category_id"]


def test_results_keep_their_own_ids(tmp_path):
    entries = results()[:2]
    entries[0]["id"], entries[1]["id"] = 77, 78
    _, columns = read_all(from_coco(write(tmp_path / "r.json", entries)))
    assert columns["annotation_id"] == [77, 78]


# --- streaming ----------------------------------------------------------------------------
def test_memory_is_bounded_by_a_batch_not_the_file(tmp_path):
    rng = np.random.default_rng(5)
    images = [{"id": i, "height": 24, "width": 24, "file_name": f"{i}.jpg"}
              for i in range(100)]
    anns = [{"id": k, "image_id": k % 100, "category_id": 1, "iscrowd": 0, "area": 10.0,
             "bbox": [1.5, 2.5, 10.0, 10.0], "segmentation": [polygon(rng, 24, 24, 16)]}
            for k in range(8_000)]
    path = write(tmp_path / "big.json", {"images": images, "categories": CATEGORIES,
                                         "annotations": anns})
    del anns
    size = path.stat().st_size
    assert size > 2_500_000
    tracemalloc.start()
    try:
        source = from_coco(path)
        sizes = []
        for batch in source.batches(64):
            for item in batch.items:
                item.load()
            sizes.append(len(batch.items))
            if len(sizes) == 8:
                early = tracemalloc.get_traced_memory()[1]     # the first pass and 8 batches
                tracemalloc.reset_peak()
        late = tracemalloc.get_traced_memory()[1]              # the other 117 batches
    finally:
        tracemalloc.stop()
    assert sum(sizes) == 8_000
    assert len(sizes) == 125
    assert late < 1.2 * early, (early, late)                   # no growth with the file read
    # About 0.2x the file's size (json.load peaks at about 6x it: 16 MB).
    assert max(early, late) < size / 3, (early, late, size)


def test_batches_come_before_a_later_bad_annotation(tmp_path):
    data = instances()
    data["annotations"][20]["image_id"] = 999
    batches = from_coco(write(tmp_path / "i.json", data)).batches(4)
    first = next(batches)
    assert len(first.items) == 4
    with pytest.raises(IngestError, match="image_id 999"):
        list(batches)


# --- refusals -----------------------------------------------------------------------------
def load_all(path: Path, **kwargs: object) -> None:
    for batch in from_coco(path, **kwargs).batches(10):     # type: ignore[arg-type]
        for item in batch.items:
            item.load()


def refused(tmp_path: Path, data: object, match: str, **kwargs: object) -> str:
    """The message of the IngestError reading ``data`` (as a COCO file) raises."""
    path = tmp_path / "bad.json"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        write(path, data)
    with pytest.raises(IngestError, match=match) as info:
        load_all(path, **kwargs)
    assert str(path) in str(info.value)
    return str(info.value)


def edited(change) -> dict:
    data = instances()
    change(data)
    return data


def set_ann(i: int, **fields):
    def change(data):
        data["annotations"][i].update(fields)
    return change


def drop_ann(i: int, key: str):
    def change(data):
        del data["annotations"][i][key]
    return change


ANNOTATION_REFUSALS = [
    (set_ann(4, image_id=55), r"annotation 1004 \(index 4\): image_id 55 is not among"),
    (set_ann(4, category_id=2), r"annotation 1004 \(index 4\): category_id 2 is not among"),
    (drop_ann(4, "segmentation"), r"annotation 1004 \(index 4\): no 'segmentation'"),
    (drop_ann(4, "id"), r"annotation at index 4: no 'id'"),
    (set_ann(4, id="7004"), r"'id' is '7004', not an integer"),
    (drop_ann(4, "image_id"), r"annotation 1004 \(index 4\): no 'image_id'"),
    (drop_ann(4, "category_id"), r"no 'category_id'"),
    (set_ann(0, segmentation=5), r"annotation 1000 \(index 0\): segmentation is 5, not"),
    (set_ann(0, segmentation=[[1, 2, 3]]), r"polygon part 0 has an odd number"),
    (set_ann(0, segmentation=[[1, 2, 3, 4, 5, 6], ["1", "2", "3", "4", "5", "6"]]),
     r"polygon part 1 is \['1', '2', '3', '4', '5', '6'\], not a list of numbers"),
    (set_ann(0, segmentation=[[0, 0, 1e9, 0, 0, 5]]), r"polygon part 0 .* reaches outside"),
    (set_ann(0, segmentation=[5]), r"polygon part 0 is 5"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": [3, 4]}),
     r"RLE counts cover 7 pixels, not the 37 x 53 = 1961"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": [1961, -1, 1]}),
     r"negative or too large run"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": [1960, 2**32, 1]}),
     r"negative or too large run"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": [1960, 2**70, 1]}),
     r"not valid JSON near byte 114: parse error: integer overflow"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": [1960.0, 1]}),
     r"uncompressed RLE counts must be a list of integers"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": [[1960], [1]]}),
     r"uncompressed RLE counts must be a list of integers"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": []}),
     r"RLE counts cover 0 pixels"),
    (set_ann(0, segmentation={"size": [37, 53],
                              "counts": compressed(np.zeros((5, 5), bool))["counts"]}),
     r"RLE counts cover 25 pixels, not the 37 x 53"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": "0g~~"}),
     r"not a well-formed COCO RLE string"),
    (set_ann(0, segmentation={"size": [53, 37], "counts": "0"}),
     r"RLE size \[53, 37\] differs from its image's \[height, width\] \[37, 53\]"),
    (set_ann(0, segmentation={"size": [37], "counts": "0"}), r"RLE 'size' is \[37\]"),
    (set_ann(0, segmentation={"size": [37, 53], "counts": 12}), r"RLE 'counts' is 12"),
    (set_ann(0, bbox=[1, 2, 3]), r"'bbox' is \[1, 2, 3\], not \[x, y, width, height\]"),
    (set_ann(0, bbox=[1, 2, -3, 4]), r"negative width or height"),
    (set_ann(0, area="big"), r"'area' is 'big', not a number"),
    (set_ann(0, iscrowd=2), r"'iscrowd' is 2, not 0 or 1"),
]


@pytest.mark.parametrize(("change", "match"), ANNOTATION_REFUSALS)
def test_bad_annotations_are_refused(tmp_path, change, match):
    refused(tmp_path, edited(change), match)


def without(key: str):
    def change(data):
        del data[key]
    return change


def set_image(**fields):
    def change(data):
        data["images"][1].update(fields)
    return change


FILE_REFUSALS = [
    (b'{"images": [], "annotations": [{"id": 1},, {"id": 2}]}',
     r"not valid JSON near byte 41: parse error: unallowed token"),
    (b'{"images": [], "annotations": [{"id": 1}, {"id": 2',
     r"not valid JSON: the file ends inside an unfinished value \(after its 50 bytes\)"),
    (b'{"images": []} trailing', r"not valid JSON near byte 16: parse error: trailing"),
    (b"", r"not valid JSON: the file ends inside an unfinished value \(after its 0 bytes\)"),
    (b"42", r"holds a number, neither a COCO instances file .* nor a results file"),
    (b'"instances"', r"holds a string, neither"),
    (b'{"images": [], "categories": []}', r"has no 'annotations' list \(keys: images, "
                                          r"categories\)"),
    (edited(without("images")), r"has 'annotations' but no 'images'"),
    (b'{"images": [], "annotations": {}}', r"'annotations' is an object, not a list"),
    (b'{"images": [], "annotations": [1]}', r"annotation at index 0: is a number, not an "
                                            r"object"),
    (edited(set_image(height=0)), r"image at index 1 \(id 7\): height and width must be "
                                  r"positive"),
    (edited(set_image(width="48")), r"image at index 1: 'width' is '48', not an integer"),
    (edited(set_image(id=1)), r"image at index 1: id 1 appears twice"),
    (edited(set_image(file_name=3)), r"'file_name' is 3, not a string"),
    (b'{"images": [], "annotations": [], "categories": [{"id": 1}]}',
     r"category at index 0 \(id 1\): 'name' is missing"),
    (b"[1]", r"result at index 0: is a number, not an object"),
]


@pytest.mark.parametrize(("data", "match"), FILE_REFUSALS)
def test_bad_files_are_refused(tmp_path, data, match):
    refused(tmp_path, data, match)


@pytest.mark.parametrize("share", [0.1, 0.7])
def test_json_error_position_is_exact(tmp_path, share):
    """The byte of a syntax error is found also far into a file read in chunks."""
    data = instances()
    data["annotations"] = [dict(ann, id=k) for k in range(20) for ann in data["annotations"]]
    text = json.dumps(data, indent=1)
    assert len(text) > 300_000
    at = text.index('"segmentation"', int(len(text) * share))
    broken = (text[:at] + "," + text[at:]).encode()
    message = refused(tmp_path, broken, "not valid JSON")
    assert f"near byte {at}:" in message, message


RESULT_REFUSALS = [
    (lambda r: r[2].update(segmentation=[[1, 2, 3, 4, 5, 6]]),
     r"result at index 2: segmentation is a polygon: a results file does not give image "
     r"sizes"),
    (lambda r: r[4].update(segmentation=compressed(np.zeros((5, 5), bool))),
     r"result at index 4: segmentation: RLE size \[5, 5\] differs from the size \[37, 53\] "
     r"of an earlier result for image_id 1"),
    (lambda r: r[1].update(score="high"), r"result at index 1: 'score' is 'high'"),
    (lambda r: r[1].pop("segmentation"), r"result at index 1: no 'segmentation'"),
]


@pytest.mark.parametrize(("change", "match"), RESULT_REFUSALS)
def test_bad_results_are_refused(tmp_path, change, match):
    entries = results()
    change(entries)
    refused(tmp_path, entries, match)


def test_images_dir_refusals(tmp_path):
    refused(tmp_path, results(), "images_dir needs an instances file", images_dir=tmp_path)
    data = instances()
    del data["images"][2]["file_name"]
    refused(tmp_path, data, r"image 12: no 'file_name', needed with images_dir",
            images_dir=tmp_path)
    with pytest.raises(IngestError, match="images_dir is not a folder"):
        from_coco(write(tmp_path / "ok.json", instances()), images_dir=tmp_path / "nope")


def test_missing_files_are_refused(tmp_path):
    with pytest.raises(IngestError, match=r"nope\.json: no such file"):
        from_coco(tmp_path / "nope.json")
    with pytest.raises(IngestError, match="is a folder"):
        from_coco(tmp_path)


def test_missing_extra_is_named(tmp_path):
    """Without pycocotools, or without ijson, the error names the extra to install."""
    path = write(tmp_path / "i.json", instances())
    code = f"""
import sys
from masksearch.ingest.coco import from_coco
from masksearch.errors import IngestError
for name in ("pycocotools", "ijson"):
    sys.modules[name] = None
    try:
        from_coco({str(path)!r})
        print("no error")
    except IngestError as e:
        print(e)
    del sys.modules[name]
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True).stdout.splitlines()
    assert out == ["COCO files need pycocotools and ijson: pip install masksearch[coco]"] * 2


# --- end to end: db.ingest and the CLI ----------------------------------------------------
def test_ingest_stores_every_mask_and_column(tmp_path):
    import masksearch as ms

    path = write(tmp_path / "instances.json", instances())
    (tmp_path / "images").mkdir()
    coco = COCO(str(path))
    anns = json.loads(path.read_text())["annotations"]
    with ms.connect(tmp_path / "coco.msdb") as db:
        ids = db.ingest(ms.from_coco(path, images_dir=tmp_path / "images"))
        assert len(ids) == len(anns)
        types = db.columns()
        assert {name: types[name] for name in ("image_id", "annotation_id", "category_id",
                                               "category", "bbox", "area", "iscrowd",
                                               "file_name", "image_path")} == {
            "image_id": "int64", "annotation_id": "int64", "category_id": "int64",
            "category": "string", "bbox": "box", "area": "float64", "iscrowd": "int64",
            "file_name": "string", "image_path": "string"}
        rows = db.query("SELECT mask_id, image_id, annotation_id, category, bbox, area, "
                        "iscrowd, image_path, height, width, CP(mask, full, (0, 1]) AS px "
                        "FROM masks ORDER BY mask_id").to_pylist()
        for row, ann in zip(rows, anns, strict=True):
            image = coco.imgs[ann["image_id"]]
            want = coco.annToMask(ann).astype(bool)
            stored = db.mask(row["mask_id"])
            assert stored.dtype == np.bool_
            np.testing.assert_array_equal(stored, want)
            rle = coco.annToRLE(ann)
            x0, y0, x1, y1 = expected_box(ann, rle)
            assert row == {
                "mask_id": row["mask_id"], "image_id": ann["image_id"],
                "annotation_id": ann["id"], "category": coco.cats[ann["category_id"]]["name"],
                "bbox": {"x0": x0, "y0": y0, "x1": x1, "y1": y1},
                "area": ann.get("area", float(mask_utils.area(rle))),
                "iscrowd": ann.get("iscrowd", 0),
                "image_path": os.path.join(str(tmp_path / "images"), image["file_name"]),
                "height": image["height"], "width": image["width"],
                "px": int(mask_utils.area(rle))}

        more = db.ingest(ms.from_coco(write(tmp_path / "results.json", results())))
        scores = db.query(f"SELECT score FROM masks WHERE mask_id >= {more[0]} "
                          f"ORDER BY mask_id").rows()
        assert [s for (s,) in scores] == [r.get("score") for r in results()]


def test_cli_ingests_a_coco_file(tmp_path):
    from .test_cli import ok, run

    path = write(tmp_path / "instances.json", instances())
    (tmp_path / "images").mkdir()
    ok(run("ingest", "coco.msdb", str(path), "--format", "coco", "--images", "images",
           cwd=tmp_path))
    out = ok(run("query", "coco.msdb", "SELECT annotation_id, category, image_path FROM "
                 "masks WHERE iscrowd = 1 ORDER BY mask_id", "--format", "csv",
                 cwd=tmp_path)).stdout
    crowd = [a for a in instances()["annotations"] if a.get("iscrowd")]
    names = {c["id"]: c["name"] for c in CATEGORIES}
    files = {i["id"]: i["file_name"] for i in instances()["images"]}
    assert out.splitlines() == ["annotation_id,category,image_path"] + [
        f"{a['id']},{names[a['category_id']]},{os.path.join('images', files[a['image_id']])}"
        for a in crowd]


def test_a_refused_coco_file_leaves_the_database_as_it_was(tmp_path):
    import masksearch as ms

    good = write(tmp_path / "good.json", instances())
    data = instances()
    data["annotations"][-1]["segmentation"] = {"size": [1, 9], "counts": [3]}
    bad = write(tmp_path / "bad.json", data)
    with ms.connect(tmp_path / "coco.msdb") as db:
        db.ingest(ms.from_coco(good))
        before = {p: p.read_bytes() for p in sorted((tmp_path / "coco.msdb").rglob("*"))
                  if p.is_file()}
        with pytest.raises(IngestError, match=r"annotation 30005 \(index 23\): segmentation: "
                                              r"RLE counts cover 3 pixels, not the 1 x 9"):
            db.ingest(ms.from_coco(bad))
        after = {p: p.read_bytes() for p in sorted((tmp_path / "coco.msdb").rglob("*"))
                 if p.is_file()}
        assert after == before
        assert db.info()["masks"] == 24
