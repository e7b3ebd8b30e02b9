"""Checksums of stored data: XXH64 digests of buffers and files, JSON files that carry the
digest of their own content ("sealed"), and NPZ files named by the digest of their bytes.

Every check failure is a ``StoreError`` that names the file (and what is wrong with it).
"""

from __future__ import annotations

import io
import json
import mmap
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

import masksearch.kernels as kernels
from masksearch.kernels import dispatch

from ..errors import StoreError
from .durable import write_atomic, write_bytes

DIGEST_KEY = "xxh64"
_NO_WORDS = np.zeros(0, np.uint64)
_NPZ_NAME = re.compile(r"xxh64-([0-9a-f]{16})\.npz$")
# Buffers up to this size are digested in Python (at most ~2 ms): opening a database reads
# only small files, and needs no Numba then (see masksearch.kernels).
SMALL_DIGEST = 16 * 1024
_M = (1 << 64) - 1
_P1, _P2, _P3 = 11400714785074694791, 14029467366897019727, 1609587929392839161
_P4, _P5 = 9650029242287828579, 2870177450012600261


def digest(data: bytes | bytearray | memoryview | np.ndarray, *,
           in_python: int = SMALL_DIGEST) -> str:
    """XXH64 (seed 0) of a bytes-like object, as 16 hex digits. Buffers up to ``in_python``
    bytes are digested in Python (no Numba needed); a caller that runs kernels anyway (mask
    blobs: they are decoded next) passes 0."""
    raw = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else \
        data.reshape(-1).view(np.uint8)
    if len(raw) <= in_python or dispatch.xxh64_in_python(len(raw)):
        return f"{xxh64_small(raw.tobytes()):016x}"
    n8 = len(raw) // 8
    words = np.frombuffer(raw.data, np.uint64, count=n8) if n8 else _NO_WORDS
    value = kernels.checksum_kernels.xxh64_words(words, raw[n8 * 8:], len(raw))
    return f"{int(value):016x}"


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def _stripes(words: tuple[int, ...], n: int) -> list[int]:
    """The four lanes after the first ``n`` words (a multiple of 4): ``_round`` inlined,
    the hot loop of a digest in Python."""
    m, p1, p2 = _M, _P1, _P2
    v1, v2, v3, v4 = (_P1 + _P2) & _M, _P2, 0, (-_P1) & _M
    for a, b, c, d in zip(words[0:n:4], words[1:n:4], words[2:n:4], words[3:n:4],
                          strict=True):
        x = (v1 + a * p2) & m
        v1 = (((x << 31) | (x >> 33)) & m) * p1 & m
        x = (v2 + b * p2) & m
        v2 = (((x << 31) | (x >> 33)) & m) * p1 & m
        x = (v3 + c * p2) & m
        v3 = (((x << 31) | (x >> 33)) & m) * p1 & m
        x = (v4 + d * p2) & m
        v4 = (((x << 31) | (x >> 33)) & m) * p1 & m
    return [v1, v2, v3, v4]


def xxh64_small(data: bytes) -> int:
    """XXH64 (seed 0) in plain Python: the same steps as ``kernels.checksum_kernels``."""
    n = len(data) // 8
    words = struct.unpack_from(f"<{n}Q", data)
    i = 0
    if len(data) >= 32:
        v = _stripes(words, n - n % 4)
        i = n - n % 4
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for lane in v:
            h = ((h ^ _round(0, lane)) * _P1 + _P4) & _M
    else:
        h = _P5
    h = (h + len(data)) & _M
    for word in words[i:]:
        h = (_rotl(h ^ _round(0, word), 27) * _P1 + _P4) & _M
    tail = data[n * 8:]
    j = 0
    if len(tail) >= 4:
        h = (_rotl(h ^ ((int.from_bytes(tail[:4], "little") * _P1) & _M), 23) * _P2
             + _P3) & _M
        j = 4
    for byte in tail[j:]:
        h = (_rotl(h ^ ((byte * _P5) & _M), 11) * _P1) & _M
    h = ((h ^ (h >> 33)) * _P2) & _M
    h = ((h ^ (h >> 29)) * _P3) & _M
    return h ^ (h >> 32)


def file_digest(path: Path) -> tuple[int, str]:
    """(size, digest) of a file's bytes, read through a memory map."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            return 0, digest(b"")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                return size, digest(view)
            finally:
                view.release()


def describe_file(path: Path) -> dict:
    """What ``verify_file`` checks a file against later: its size and digest."""
    size, d = file_digest(path)
    return {"size": size, DIGEST_KEY: d}


def verify_file(path: Path, expected: dict, what: str) -> None:
    """Raise ``StoreError`` unless ``path`` has the size and digest recorded in ``expected``."""
    try:
        size, d = file_digest(path)
    except FileNotFoundError:
        raise StoreError(f"{path}: the {what} file is missing") from None
    except OSError as e:
        raise StoreError(f"{path}: cannot read the {what} ({e})") from None
    if size != expected["size"]:
        raise StoreError(f"{path}: the {what} file is damaged: {size} bytes, "
                         f"{expected['size']} expected (truncated or overwritten)")
    if d != expected[DIGEST_KEY]:
        raise StoreError(f"{path}: the {what} file is damaged (checksum mismatch)")


def verify_size(path: Path, expected: dict, what: str) -> None:
    """The cheap part of ``verify_file``: the size only (catches truncation on open)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise StoreError(f"{path}: cannot read the {what} ({e})") from None
    if size != expected["size"]:
        raise StoreError(f"{path}: the {what} file is damaged: {size} bytes, "
                         f"{expected['size']} expected (truncated or overwritten)")


# --- sealed JSON ---------------------------------------------------------------------------
def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sealed_json(body: dict) -> bytes:
    """``body`` as JSON text with the digest of its canonical form under ``"xxh64"``."""
    return json.dumps({**body, DIGEST_KEY: digest(_canonical(body))}, indent=1).encode()


def write_sealed_json(path: Path, body: dict, *, atomic: bool = True) -> None:
    data = sealed_json(body)
    if atomic:
        write_atomic(path, data)
    else:
        write_bytes(path, data)


def read_sealed_json(path: Path, what: str, *, legacy_ok: bool = False) -> dict:
    """The body of a sealed JSON file, verified (see ``parse_sealed_json``)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path}: the {what} file is missing") from None
    except OSError as e:
        raise StoreError(f"{path}: cannot read the {what} ({e})") from None
    return parse_sealed_json(text, str(path), what, legacy_ok=legacy_ok)


def parse_sealed_json(text: bytes, where: str, what: str, *, legacy_ok: bool = False) -> dict:
    """The body of the sealed JSON ``text`` (read from ``where``), verified. With
    ``legacy_ok``, an unsealed file whose ``"format"`` is below 2 (written before checksums
    existed) is accepted unverified."""
    try:
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{where}: the {what} file is damaged (not valid JSON: {e})") from None
    sealed = body.pop(DIGEST_KEY, None)
    if sealed is None:
        fmt = body.get("format", 1)
        if legacy_ok and isinstance(fmt, int) and fmt < 2:
            return body
        raise StoreError(f"{where}: the {what} file is damaged (its checksum is missing)")
    if sealed != digest(_canonical(body)):
        raise StoreError(f"{where}: the {what} file is damaged (checksum mismatch)")
    return body


# --- NPZ files named by their digest --------------------------------------------------------
def save_checked_npz(directory: Path, prefix: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write an NPZ file named ``<prefix>xxh64-<digest of its bytes>.npz`` (written whole,
    fsynced, renamed in) and return its path: the name is the checksum of the whole file."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=True, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buf.getbuffer()
    path = directory / f"{prefix}{DIGEST_KEY}-{digest(data)}.npz"
    write_atomic(path, data)
    return path


def load_checked_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """The arrays of a file written by ``save_checked_npz``, verified against its name. Files
    named otherwise (written before checksums) are read with only the zip CRCs to check them.
    ``FileNotFoundError`` passes through: callers decide whether a vanished file is damage."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StoreError(f"{path}: cannot read the {what} ({e})") from None
    return parse_checked_npz(data, path.name, str(path), what)


def parse_checked_npz(data: bytes | memoryview | Any, name: str, where: str,
                      what: str) -> dict[str, np.ndarray]:
    """The arrays of the NPZ bytes ``data`` of the file ``name`` (at ``where``), verified
    against the digest in its name (see ``load_checked_npz``)."""
    named = _NPZ_NAME.search(name)
    if named is not None and digest(data) != named.group(1):
        raise StoreError(f"{where}: the {what} file is damaged (checksum mismatch)")
    try:
        with np.load(io.BytesIO(memoryview(data)), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # zipfile, zlib and numpy raise many types for damaged files
        raise StoreError(f"{where}: the {what} file is damaged ({type(e).__name__}: {e})") \
            from None
