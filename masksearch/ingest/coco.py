"""COCO annotation files as a source of masks: one bool mask per annotation.

Two kinds of file are read:

* an **instances** file (ground truth): a JSON object with ``images``, ``annotations`` and
  usually ``categories`` arrays, in any order;
* a **results** file (a model's output, as ``COCO.loadRes`` reads it): a JSON list of
  annotations, each with an RLE ``segmentation`` whose ``size`` gives its image's height and
  width.

The file streams: a first pass reads the images and categories (memory in proportion to the
number of images) and counts the annotations, a second pass reads the annotations a batch at
a time, so memory never grows with the number of annotations. Segmentations are checked and
turned into compressed RLE when a batch is read (polygons with ``pycocotools``' rasteriser,
uncompressed counts with ``frPyObjects``); each mask is decoded by ``pycocotools`` only when
its ``MaskItem.load`` is called, to an (H, W) bool array at its image's height and width.

Columns, one value per annotation:

=============== ========================================================================
``image_id``    int, the annotation's ``image_id``
``annotation_id`` int, its ``id`` (results files: its ``id`` if it has one, else its
                position in the list counted from 1, as ``COCO.loadRes`` numbers them)
``category_id`` int
``category``    str, the category's name (instances files; None when the file has no
                ``categories`` array)
``bbox``        (x0, y0, x1, y1) ints from COCO's float ``[x, y, w, h]``: floor(x),
                floor(y), ceil(x + w), ceil(y + h); an annotation without ``bbox`` gets
                the mask's tight box (``pycocotools.mask.toBbox``, as ``loadRes`` does)
``area``        float, the annotation's ``area``; without one, the mask's pixel count
                (``pycocotools.mask.area``, as ``loadRes`` does)
``iscrowd``     int 0 or 1 (instances files; 0 when absent, as ``COCOeval`` reads it)
``score``       float, or None where absent (results files only)
``file_name``   str, the image's ``file_name``, or None (instances files)
``image_path``  str, ``images_dir / file_name`` (instances files, when ``images_dir`` is
                given)
=============== ========================================================================

Everything wrong is an ``IngestError`` naming the file and the annotation: bad JSON (with its
byte position), a file of another shape, missing or mistyped fields, an unknown ``image_id``
or ``category_id``, a segmentation that is malformed, whose RLE size differs from its
image's, whose RLE counts do not cover the image exactly, or whose polygon lies far outside
the image (more than the image's width or height beyond its edges: ``pycocotools`` would
allocate in proportion to the distance). A polygon in a results file is refused: it needs its
image's size, which a results file does not give.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import numpy as np
from numba import njit

from ..errors import IngestError
from .items import MaskItem, SourceBatch

MISSING_DEPS = "COCO files need pycocotools and ijson: pip install masksearch[coco]"

INSTANCES_COLUMNS = ("image_id", "annotation_id", "category_id", "category", "bbox", "area",
                     "iscrowd", "file_name")
RESULTS_COLUMNS = ("image_id", "annotation_id", "category_id", "bbox", "area", "score")

_BOM = b"\xef\xbb\xbf"
_OPEN = frozenset(("start_map", "start_array"))
_CLOSE = frozenset(("end_map", "end_array"))
# Bytes ijson reads at a time. Its C backend parses a whole chunk before yielding, holding
# the events (or objects) of one chunk: about 15x the chunk's bytes.
_CHUNK = 1 << 14


def _deps() -> tuple[Any, Any, Any]:
    """ijson, pycocotools.mask and pycocotools._mask, or an IngestError naming the extra."""
    try:
        import ijson
        import pycocotools._mask as cmask
        import pycocotools.mask as mask
    except ImportError as e:
        raise IngestError(MISSING_DEPS) from e
    return ijson, mask, cmask


# --- reading the file ---------------------------------------------------------------------
class _Reader:
    """The file as ijson reads it, remembering where it is so that a JSON error can be placed
    (ijson does not say where), and without a UTF-8 byte order mark."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.offset = 0           # bytes of the file read so far
        self.chunk = b""          # the last chunk read, with up to 64 bytes before it
        self.chunk_start = 0      # its offset in the file

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if not data:
            return data
        start = self.offset
        self.offset += len(data)
        if start == 0 and data.startswith(_BOM):
            data = data[len(_BOM):]
            start += len(_BOM)
        tail = self.chunk[-64:]
        self.chunk = tail + data
        self.chunk_start = start - len(tail)
        return data


def _error_position(reader: _Reader, context: str, caret: int) -> int | None:
    """The byte offset of a JSON error, from yajl's context line (the text around the error,
    newlines shown as spaces, the offending byte under the caret) found in the last chunk."""
    before, after = context[:caret].lstrip(" "), context[caret:]
    needle = (before + after).encode("utf-8", "replace")
    if not needle.strip():
        return None
    text = reader.chunk.replace(b"\n", b" ").replace(b"\r", b" ")
    at = text.find(needle)
    if at < 0 or text.find(needle, at + 1) >= 0:
        return None
    # yajl's offset is that of the byte after the one it stopped at.
    return reader.chunk_start + at + len(before.encode("utf-8", "replace")) - 1


def _json_error(path: str, reader: _Reader, e: Exception) -> IngestError:
    message = str(e)
    if message.startswith(("b'", 'b"')):
        message = message[2:-1].replace("\\n", "\n")
    lines = message.splitlines()
    reason = lines[0].strip() if lines else type(e).__name__
    if "premature EOF" in reason:
        return IngestError(f"{path}: not valid JSON: the file ends inside an unfinished "
                           f"value (after its {reader.offset} bytes)")
    position = None
    if len(lines) >= 3 and "^" in lines[2]:
        position = _error_position(reader, lines[1], lines[2].index("^"))
    where = (f"near byte {position}" if position is not None
             else f"between bytes {reader.chunk_start} and {reader.offset}")
    near = f" (near {lines[1].strip()!r})" if len(lines) >= 2 and lines[1].strip() else ""
    return IngestError(f"{path}: not valid JSON {where}: {reason}{near}")


def _build(events: Iterator[tuple[str, Any]], event: str, value: Any, ijson: Any) -> Any:
    """The JSON value whose first event is (event, value), built from the events."""
    if event not in _OPEN:
        return value
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    while depth:
        event, value = next(events)
        builder.event(event, value)
        if event in _OPEN:
            depth += 1
        elif event in _CLOSE:
            depth -= 1
    return builder.value


def _skip(events: Iterator[tuple[str, Any]], event: str) -> None:
    """Read past the JSON value whose first event is ``event``."""
    if event not in _OPEN:
        return
    depth = 1
    for event, _ in events:
        if event in _OPEN:
            depth += 1
        elif event in _CLOSE:
            depth -= 1
            if not depth:
                return


def _elements(events: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """The first event of each element of the array just opened; the caller reads (or skips)
    each element before asking for the next."""
    for event, value in events:
        if event == "end_array":
            return
        yield event, value


# --- checking values ----------------------------------------------------------------------
_JSON_TYPES = {"start_map": "an object", "start_array": "a list", "string": "a string",
               "number": "a number", "boolean": "a boolean", "null": "null"}


def _kind(value: Any) -> str:
    """A value for an error message: itself when short, else what it is."""
    if isinstance(value, dict):
        return "an object"
    text = repr(value)
    if len(text) <= 40:
        return text
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return f"{text[:37]}..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    kind = type(value)
    return (kind is float and math.isfinite(value)) or kind is int


@dataclass(frozen=True)
class _Image:
    height: int
    width: int
    file_name: str | None


class _Problem(Exception):
    """Something wrong with one annotation; the caller adds the file and the annotation."""


def _field_int(ann: dict[str, Any], key: str) -> int:
    if key not in ann:
        raise _Problem(f"no {key!r}")
    value = ann[key]
    if not _is_int(value):
        raise _Problem(f"{key!r} is {_kind(value)}, not an integer")
    return int(value)


def _box(value: Any) -> tuple[int, int, int, int]:
    """COCO's float [x, y, w, h] as integer pixel bounds x0, y0, x1, y1 that contain it."""
    if type(value) is not list or len(value) != 4 or not all(map(_is_number, value)):
        raise _Problem(f"'bbox' is {_kind(value)}, not [x, y, width, height] (4 finite "
                       f"numbers)")
    x, y, w, h = value
    if w < 0 or h < 0:
        raise _Problem(f"'bbox' {value} has a negative width or height")
    return math.floor(x), math.floor(y), math.ceil(x + w), math.ceil(y + h)


# --- segmentations ------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def rle_string_total(counts: np.ndarray) -> int:
    """The pixels a compressed COCO RLE string (as uint8) covers: the sum of its runs, read as
    pycocotools' ``rleFrString`` reads them; -1 when the string is not a well-formed one (a
    character outside '0'..'o', a number cut short or longer than 55 bits, a run below 0 or
    from 2**32 on). pycocotools checks none of this, and runs that cover less than the image
    leave the rest of the mask it decodes uninitialised."""
    n = counts.size
    total = 0
    p = 0
    m = 0
    before = 0          # the run two before the next one
    last = 0            # the run just read
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n or k == 11:
                return -1
            c = np.int64(counts[p]) - 48
            if c < 0 or c > 63:
                return -1
            x |= (c & 0x1F) << (5 * k)
            more = (c & 0x20) != 0
            p += 1
            k += 1
            if not more and (c & 0x10) != 0:
                x -= np.int64(1) << (5 * k)
        if m > 2:       # from the fourth run on, the difference from the run two before
            x += before
        if x < 0 or x >= np.int64(1) << 32:
            return -1
        total += x
        before = last
        last = x
        m += 1
    return total


def _size(seg: dict[str, Any]) -> tuple[int, int]:
    size = seg.get("size")
    if (not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) for v in size)
            or min(size) < 1):
        raise _Problem(f"segmentation: RLE 'size' is {size!r}, not [height, width] "
                       f"(2 positive integers)")
    return int(size[0]), int(size[1])


def _check_total(total: int, height: int, width: int) -> None:
    if total != height * width:
        raise _Problem(f"segmentation: RLE counts cover {total} pixels, not the "
                       f"{height} x {width} = {height * width} of the image")


def _rle(seg: dict[str, Any], height: int, width: int, mask: Any) -> dict[str, Any]:
    counts = seg.get("counts")
    if isinstance(counts, str):
        try:
            raw = counts.encode("ascii")
        except UnicodeEncodeError:
            raise _Problem("segmentation: compressed RLE counts hold non-ASCII "
                           "characters") from None
        total = int(rle_string_total(np.frombuffer(raw, dtype=np.uint8)))
        if total < 0:
            raise _Problem("segmentation: compressed RLE counts are not a well-formed COCO "
                           "RLE string")
        _check_total(total, height, width)
        return {"size": [height, width], "counts": raw}
    if isinstance(counts, list):
        try:
            runs = np.asarray(counts) if counts else np.zeros(0, dtype=np.int64)
        except (ValueError, OverflowError):
            runs = None
        if runs is None or runs.ndim != 1 or runs.dtype.kind not in "iu":
            raise _Problem("segmentation: uncompressed RLE counts must be a list of integers")
        if runs.size and (runs.min() < 0 or runs.max() >= 1 << 32):
            raise _Problem("segmentation: RLE counts hold a negative or too large run")
        _check_total(int(runs.sum()), height, width)
        rle: dict[str, Any] = mask.frPyObjects({"size": [height, width], "counts": runs},
                                               height, width)
        return rle
    raise _Problem(f"segmentation: RLE 'counts' is {_kind(counts)}, not a string "
                   f"(compressed) or a list of integers (uncompressed)")


def _polygon_rle(seg: list[Any], height: int, width: int, mask: Any,
                 cmask: Any) -> dict[str, Any]:
    """The union of the polygon's parts as compressed RLE. Every part is rasterised as a
    polygon, also one of 2 points (``frPyObjects`` would take a first part of 4 numbers for a
    box [x, y, w, h] and fail)."""
    parts = []
    for k, part in enumerate(seg):
        coords = np.asarray(part) if type(part) is list else None
        if coords is None or coords.ndim != 1 or coords.dtype.kind not in "iuf":
            raise _Problem(f"segmentation: polygon part {k} is {_kind(part)}, not a list of "
                           f"numbers")
        if coords.size % 2:
            raise _Problem(f"segmentation: polygon part {k} has an odd number of "
                           f"coordinates ({coords.size}), not x, y pairs")
        coords = coords.astype(np.float64, copy=False)
        if coords.size:
            points = coords.reshape(-1, 2)
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
            # Also false for NaN.
            if not (x0 >= -width and y0 >= -height and x1 <= 2 * width
                    and y1 <= 2 * height):
                raise _Problem(f"segmentation: polygon part {k} holds a NaN or infinite "
                               f"coordinate or reaches outside [-{width}, {2 * width}] x "
                               f"[-{height}, {2 * height}], more than the image's width or "
                               f"height beyond its edges")
        parts.append(coords)
    if not parts:
        empty: dict[str, Any] = mask.frPyObjects(
            {"size": [height, width], "counts": [height * width]}, height, width)
        return empty
    rle: dict[str, Any] = mask.merge(cmask.frPoly(parts, height, width))
    return rle


def _decode(rle: dict[str, Any]) -> np.ndarray:
    """The (H, W) bool mask of a compressed RLE (C order)."""
    import pycocotools.mask as mask

    with warnings.catch_warnings():
        # pycocotools' decode warns under NumPy 2 on every call; the mask is right.
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy",
                                DeprecationWarning)
        decoded = mask.decode(rle)
    return np.ascontiguousarray(decoded).view(np.bool_)


# --- the source ---------------------------------------------------------------------------
class _Batch:
    """The items and column values of the batch being read."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.items: list[MaskItem] = []
        self.columns: dict[str, list[Any]] = {name: [] for name in names}

    def done(self) -> SourceBatch:
        return SourceBatch(self.items, dict(self.columns))


class CocoSource:
    """A COCO instances or results file, read a batch of annotations at a time (a
    ``masksearch.ingest.items.Source``). Made by ``from_coco``, which reads the images and
    categories and counts the annotations; ``batches`` reads the file again each time."""

    def __init__(self, path: str, kind: Literal["instances", "results"], total: int,
                 images: dict[int, _Image], categories: dict[int, str] | None,
                 images_dir: str | None) -> None:
        self.path = path
        self.kind = kind
        self._total = total
        self._images = images
        self._categories = categories
        self._images_dir = images_dir
        names = INSTANCES_COLUMNS if kind == "instances" else RESULTS_COLUMNS
        self.columns: tuple[str, ...] = names + (("image_path",) if images_dir else ())

    def __repr__(self) -> str:
        return (f"CocoSource({self.path!r}, {self.kind}, {self._total} annotations, "
                f"{len(self._images)} images)")

    @property
    def total(self) -> int:
        """The number of annotations (masks) in the file."""
        return self._total

    def batches(self, size: int) -> Iterator[SourceBatch]:
        """The annotations in file order, ``size`` at a time, with their columns."""
        if size < 1:
            raise ValueError(f"batch size must be positive, got {size}")
        ijson, mask, cmask = _deps()
        sizes: dict[int, tuple[int, int]] = {}    # results files: image id -> RLE size
        batch = _Batch(self.columns)
        prefix = "annotations.item" if self.kind == "instances" else "item"
        with open(self.path, "rb") as f:
            reader = _Reader(f)
            stream = ijson.items(reader, prefix, use_float=True, buf_size=_CHUNK)
            index = 0
            while True:
                try:
                    ann = next(stream)
                except StopIteration:
                    break
                except ijson.JSONError as e:
                    raise _json_error(self.path, reader, e) from None
                self._add(batch, ann, index, sizes, mask, cmask)
                index += 1
                if len(batch.items) == size:
                    yield batch.done()
                    batch = _Batch(self.columns)
        if batch.items:
            yield batch.done()

    def _label(self, ann: Any, index: int) -> tuple[str, str]:
        """The annotation's label, and what an error message adds to it."""
        if self.kind == "results":
            return f"{self.path}, result at index {index}", ""
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        if _is_int(ann_id):
            return f"{self.path}, annotation {ann_id}", f" (index {index})"
        return f"{self.path}, annotation at index {index}", ""

    def _add(self, batch: _Batch, ann: Any, index: int,
             sizes: dict[int, tuple[int, int]], mask: Any, cmask: Any) -> None:
        label, where = self._label(ann, index)
        try:
            if not isinstance(ann, dict):
                raise _Problem(f"is {_kind(ann)}, not an object")
            row, rle = self._row(ann, index, sizes, mask, cmask)
        except _Problem as e:
            raise IngestError(f"{label}{where}: {e}") from None
        batch.items.append(MaskItem(label, functools.partial(_decode, rle)))
        for name, values in batch.columns.items():
            values.append(row[name])

    def _row(self, ann: dict[str, Any], index: int, sizes: dict[int, tuple[int, int]],
             mask: Any, cmask: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        image_id = _field_int(ann, "image_id")
        if self.kind == "instances":
            ann_id = _field_int(ann, "id")
        else:
            ann_id = _field_int(ann, "id") if "id" in ann else index + 1
        category_id = _field_int(ann, "category_id")
        if "segmentation" not in ann:
            raise _Problem("no 'segmentation' (a box-only, keypoint-only, captions or "
                           "panoptic file has no masks to read)")
        seg = ann["segmentation"]
        row: dict[str, Any] = {"image_id": image_id, "annotation_id": ann_id,
                               "category_id": category_id}
        if self.kind == "instances":
            image = self._images.get(image_id)
            if image is None:
                raise _Problem(f"image_id {image_id} is not among the file's images")
            rle = self._segmentation(seg, image.height, image.width, mask, cmask)
            row.update(self._instance_columns(ann, image, category_id))
        else:
            rle = self._result_segmentation(seg, image_id, sizes, mask)
            score = ann.get("score")
            if score is not None and not _is_number(score):
                raise _Problem(f"'score' is {_kind(score)}, not a number")
            row["score"] = None if score is None else float(score)
        row["bbox"] = self._bbox(ann, rle, mask)
        area = ann.get("area")
        if area is None:
            row["area"] = float(mask.area(rle))
        elif not _is_number(area) or area < 0:
            raise _Problem(f"'area' is {_kind(area)}, not a number >= 0")
        else:
            row["area"] = float(area)
        return row, rle

    def _instance_columns(self, ann: dict[str, Any], image: _Image,
                          category_id: int) -> dict[str, Any]:
        category = None
        if self._categories is not None:
            category = self._categories.get(category_id)
            if category is None:
                raise _Problem(f"category_id {category_id} is not among the file's "
                               f"categories")
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1) or not isinstance(iscrowd, (int, bool)):
            raise _Problem(f"'iscrowd' is {_kind(iscrowd)}, not 0 or 1")
        row = {"category": category, "iscrowd": int(iscrowd), "file_name": image.file_name}
        if self._images_dir is not None:
            assert image.file_name is not None      # checked by from_coco
            row["image_path"] = os.path.join(self._images_dir, image.file_name)
        return row

    @staticmethod
    def _bbox(ann: dict[str, Any], rle: dict[str, Any],
              mask: Any) -> tuple[int, int, int, int]:
        value = ann.get("bbox")
        if value is None or value == []:
            value = [float(v) for v in mask.toBbox(rle)]
        return _box(value)

    @staticmethod
    def _segmentation(seg: Any, height: int, width: int, mask: Any,
                      cmask: Any) -> dict[str, Any]:
        if isinstance(seg, list):
            return _polygon_rle(seg, height, width, mask, cmask)
        if isinstance(seg, dict):
            size = _size(seg)
            if size != (height, width):
                raise _Problem(f"segmentation: RLE size {list(size)} differs from its image's "
                               f"[height, width] {[height, width]}")
            return _rle(seg, height, width, mask)
        raise _Problem(f"segmentation is {_kind(seg)}, not polygons (a list of lists of "
                       f"numbers) or RLE (an object with 'size' and 'counts')")

    @staticmethod
    def _result_segmentation(seg: Any, image_id: int, sizes: dict[int, tuple[int, int]],
                             mask: Any) -> dict[str, Any]:
        if isinstance(seg, list):
            raise _Problem("segmentation is a polygon: a results file does not give image "
                           "sizes, so only RLE segmentations (with their 'size') can be read")
        if not isinstance(seg, dict):
            raise _Problem(f"segmentation is {_kind(seg)}, not RLE (an object with 'size' "
                           f"and 'counts')")
        size = _size(seg)
        seen = sizes.setdefault(image_id, size)
        if seen != size:
            raise _Problem(f"segmentation: RLE size {list(size)} differs from the size "
                           f"{list(seen)} of an earlier result for image_id {image_id}")
        return _rle(seg, size[0], size[1], mask)


# --- the first pass -----------------------------------------------------------------------
@dataclass
class _Header:
    kind: Literal["instances", "results"]
    total: int = 0
    images: dict[int, _Image] | None = None
    categories: dict[int, str] | None = None
    keys: tuple[str, ...] = ()


def _image(value: Any, index: int, path: str) -> tuple[int, _Image]:
    where = f"{path}, image at index {index}"
    if not isinstance(value, dict):
        raise IngestError(f"{where}: is {_kind(value)}, not an object")
    for key in ("id", "height", "width"):
        if not _is_int(value.get(key)):
            got = "missing" if key not in value else f"{_kind(value[key])}, not an integer"
            raise IngestError(f"{where}: {key!r} is {got}")
    if value["height"] < 1 or value["width"] < 1:
        raise IngestError(f"{where} (id {value['id']}): height and width must be positive, "
                          f"got {value['height']} x {value['width']}")
    file_name = value.get("file_name")
    if file_name is not None and not isinstance(file_name, str):
        raise IngestError(f"{where} (id {value['id']}): 'file_name' is {_kind(file_name)}, "
                          f"not a string")
    return int(value["id"]), _Image(int(value["height"]), int(value["width"]), file_name)


def _category(value: Any, index: int, path: str) -> tuple[int, str]:
    where = f"{path}, category at index {index}"
    if not isinstance(value, dict):
        raise IngestError(f"{where}: is {_kind(value)}, not an object")
    if not _is_int(value.get("id")):
        raise IngestError(f"{where}: 'id' is missing or not an integer")
    if not isinstance(value.get("name"), str):
        raise IngestError(f"{where} (id {value['id']}): 'name' is missing or not a string")
    return int(value["id"]), str(value["name"])


def _read_table(events: Iterator[tuple[str, Any]], first: str, key: str, path: str,
                ijson: Any, parse: Callable[[Any, int, str], tuple[int, Any]]) -> dict[int, Any]:
    if first != "start_array":
        raise IngestError(f"{path}: {key!r} is {_JSON_TYPES.get(first, first)}, not a list")
    table: dict[int, Any] = {}
    for index, (event, value) in enumerate(_elements(events)):
        ident, entry = parse(_build(events, event, value, ijson), index, path)
        if ident in table:
            raise IngestError(f"{path}, {key[:-1]} at index {index}: id {ident} appears "
                              f"twice")
        table[ident] = entry
    return table


def _count(events: Iterator[tuple[str, Any]], first: str, what: str, path: str) -> int:
    """The number of elements of the array just opened (``first`` its first event), each of
    them an object (``what``, as error messages name it)."""
    if first != "start_array":
        raise IngestError(f"{path}: 'annotations' is {_JSON_TYPES.get(first, first)}, not a "
                          f"list")
    total = 0
    for event, _ in _elements(events):
        if event != "start_map":
            raise IngestError(f"{path}, {what} at index {total}: is "
                              f"{_JSON_TYPES.get(event, event)}, not an object")
        _skip(events, event)
        total += 1
    return total


def _scan_instances(events: Iterator[tuple[str, Any]], path: str, ijson: Any) -> _Header:
    header = _Header("instances")
    keys = []
    for event, key in events:
        if event == "end_map":
            break
        keys.append(key)
        first, _ = next(events)
        if key == "images":
            images = _read_table(events, first, key, path, ijson, _image)
            header.images = {**(header.images or {}), **images}
        elif key == "categories":
            categories = _read_table(events, first, key, path, ijson, _category)
            header.categories = {**(header.categories or {}), **categories}
        elif key == "annotations":
            header.total += _count(events, first, "annotation", path)
        else:
            _skip(events, first)
    header.keys = tuple(keys)
    return header


def _scan(path: str, ijson: Any) -> _Header:
    """The first pass: the file's kind, images and categories, and how many annotations."""
    with open(path, "rb") as f:
        reader = _Reader(f)
        events = iter(ijson.basic_parse(reader, use_float=True, buf_size=_CHUNK))
        try:
            first, _ = next(events)
            if first == "start_map":
                header = _scan_instances(events, path, ijson)
            elif first == "start_array":
                header = _Header("results", total=_count(events, first, "result", path))
            else:
                raise IngestError(f"{path}: holds {_JSON_TYPES.get(first, first)}, neither a "
                                  f"COCO instances file (an object with 'images' and "
                                  f"'annotations') nor a results file (a list of annotations)")
            for _ in events:            # trailing garbage is an error
                pass
        except ijson.JSONError as e:
            raise _json_error(path, reader, e) from None
        except StopIteration:
            raise IngestError(f"{path}: not valid JSON: the file ends inside an unfinished "
                              f"value (after its {reader.offset} bytes)") from None
    return header


def from_coco(path: str | os.PathLike[str],
              images_dir: str | os.PathLike[str] | None = None) -> CocoSource:
    """A COCO instances or results JSON file as a source of masks, one per annotation (see
    the module's documentation for the columns). Reads the file once to check its shape and
    read its images and categories; ``images_dir`` adds an ``image_path`` column."""
    ijson, _, _ = _deps()
    name = os.fspath(path)
    if not os.path.exists(name):
        raise IngestError(f"{name}: no such file")
    if os.path.isdir(name):
        raise IngestError(f"{name}: is a folder, not a COCO JSON file")
    folder = None if images_dir is None else os.fspath(images_dir)
    if folder is not None and not os.path.isdir(folder):
        raise IngestError(f"{folder}: images_dir is not a folder")
    header = _scan(name, ijson)
    if header.kind == "instances":
        if "annotations" not in header.keys:
            raise IngestError(f"{name}: has no 'annotations' list (keys: "
                              f"{', '.join(header.keys) or 'none'}): neither a COCO "
                              f"instances file nor a results file (a list of annotations)")
        if "images" not in header.keys:
            raise IngestError(f"{name}: has 'annotations' but no 'images' list, which gives "
                              f"each annotation's image height and width")
    elif folder is not None:
        raise IngestError(f"{name}: a results file names no image files; images_dir needs an "
                          f"instances file")
    images = header.images or {}
    if folder is not None:
        for ident, image in images.items():
            if image.file_name is None:
                raise IngestError(f"{name}, image {ident}: no 'file_name', needed with "
                                  f"images_dir")
    return CocoSource(name, header.kind, header.total, images, header.categories, folder)
