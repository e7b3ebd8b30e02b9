"""Tiled pixels: each mask stored as tiles aligned with the CHI's cells, each decodable alone,
so that verification decodes only the tiles of the cells the index cannot settle.

Layout of one mask's blob (H x W pixels of ``itemsize`` bytes, tile side c = the cell size,
``gh = ceil(H/c)`` x ``gw = ceil(W/c)`` tiles, row-major):

    ends    uint32 little-endian [gh * gw]: end of tile t's payload, counted from the end of
            this table (tile t is ``payload[ends[t - 1]:ends[t]]``, ``ends[-1]`` = 0)
    payload the tiles' bytes, one after another

Tile (r, s) holds the ``th x tw`` pixels of rows ``[r c, min((r + 1) c, H))`` and columns
``[s c, min((s + 1) c, W))`` in row order (``th * tw * itemsize`` bytes, byte-shuffled within
the tile when the segment says so). A payload of exactly that size is those bytes as they
are; a shorter one is an LZ4 block of them (written only where it saves bytes).

The LZ4 block format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md) is coded
here, in Numba, so that a kernel decodes a tile with no call out: a call per tile through
pyarrow cost more than decoding it.
"""

import numpy as np
from numba import njit
from numpy.typing import NDArray

from .bound_kernels import box_grid, cell_rect, cut_spec, grid_rect, query_cut, range_count_bounds

HASH_LOG = 12
MIN_MATCH = 4
LAST_LITERALS = 5       # the last 5 bytes of a block are literals
MATCH_LIMIT = 12        # the last match starts at least 12 bytes before the block's end

# What ``tile_counts`` reports per mask: tiles decoded, cells taken from the index.
KINDS = {"float32": 0, "float64": 1, "uint8": 2, "bool": 2, "uint16": 3, "float16": 4}


@njit(cache=True, nogil=True)
def lz4_bound(n: int) -> int:
    """Largest LZ4 block of n bytes."""
    return n + n // 255 + 16


@njit(inline="always")
def _copy(dst: NDArray[np.uint8], d0: int, src: NDArray[np.uint8], s0: int, n: int) -> None:
    """``dst[d0:d0 + n] = src[s0:s0 + n]``, the arrays distinct (Numba's slice assignment
    checks for overlap and may copy through a temporary)."""
    d = dst[d0:d0 + n]
    s = src[s0:s0 + n]
    for q in range(n):      # an index from 0: no negative-index check, the loop vectorizes
        d[q] = s[q]


@njit(inline="always")
def _read32(src: NDArray[np.uint8], i: int) -> np.uint32:
    return (np.uint32(src[i]) | (np.uint32(src[i + 1]) << 8) | (np.uint32(src[i + 2]) << 16)
            | (np.uint32(src[i + 3]) << 24))


@njit(cache=True, nogil=True)
def _put_length(dst: NDArray[np.uint8], op: int, n: int) -> int:
    """The 255-byte continuation of a length of 15 or more (n = length - 15)."""
    while n >= 255:
        dst[op] = 255
        op += 1
        n -= 255
    dst[op] = n
    return op + 1


@njit(cache=True, nogil=True)
def _emit(src: NDArray[np.uint8], anchor: int, n_lit: int, dst: NDArray[np.uint8], op: int,
          cap: int, offset: int, match: int) -> int:
    """One sequence (``match`` 0: the last, literals only); -1 when it would pass ``cap``."""
    if op + 1 + n_lit + n_lit // 255 + 1 + 2 + (match // 255 + 1) > cap:
        return -1
    ml = match - MIN_MATCH
    token = (min(n_lit, 15) << 4) | (min(ml, 15) if match else 0)
    dst[op] = token
    op += 1
    if n_lit >= 15:
        op = _put_length(dst, op, n_lit - 15)
    _copy(dst, op, src, anchor, n_lit)
    op += n_lit
    if match:
        dst[op] = offset & 0xFF
        dst[op + 1] = offset >> 8
        op += 2
        if ml >= 15:
            op = _put_length(dst, op, ml - 15)
    return op


@njit(cache=True, nogil=True)
def lz4_compress(src: NDArray[np.uint8], dst: NDArray[np.uint8], cap: int,
                 table: NDArray[np.int32], keep: int = MIN_MATCH, origin: int = -1) -> int:
    """LZ4 block of ``src`` into ``dst[:cap]``; its size, or -1 if it does not fit.
    ``table``: 1 << HASH_LOG ints of scratch; matches shorter than ``keep`` bytes are not
    taken. Greedy matching; after 32 misses in a row the step grows (as LZ4's own), so
    incompressible bytes pass fast. ``origin`` >= 0: the table is not cleared but holds
    positions counted from ``origin`` for this block, so that entries left by earlier blocks
    (smaller positions) are never matched: many small blocks without clearing it each time."""
    n = src.shape[0]
    if origin < 0:
        table[:] = -1
        origin = 0
    ip = 0
    anchor = 0
    op = 0
    if n > MATCH_LIMIT:
        limit = n - MATCH_LIMIT
        misses = 0
        while ip < limit:
            seq = _read32(src, ip)
            h = ((seq * np.uint32(2654435761)) & np.uint32(0xFFFFFFFF)) >> np.uint32(
                32 - HASH_LOG)
            ref = np.int64(table[h]) - origin
            table[h] = origin + ip
            m = 0
            if ref >= 0 and ip - ref <= 65535 and _read32(src, ref) == seq:
                end = n - LAST_LITERALS
                m = MIN_MATCH
                while ip + m < end and src[ref + m] == src[ip + m]:
                    m += 1
            if ref >= 0 and ip - ref <= 65535 and m >= keep:
                op = _emit(src, anchor, ip - anchor, dst, op, cap, ip - ref, m)
                if op < 0:
                    return -1
                ip += m
                anchor = ip
                misses = 0
            else:
                misses += 1
                ip += 1 + (misses >> 5)
    return _emit(src, anchor, n - anchor, dst, op, cap, 0, 0)


@njit(inline="always")
def _length(src: NDArray[np.uint8], ip: int, stop: int, n: int) -> tuple[int, int]:
    """A token's length ``n`` with its 255-byte continuation when it is 15; (-1, ip) when
    the block ends first."""
    if n == 15:
        while True:
            if ip >= stop:
                return -1, ip
            b = src[ip]
            ip += 1
            n += b
            if b != 255:
                break
    return n, ip


@njit(cache=True, nogil=True)
def lz4_decompress(src: NDArray[np.uint8], start: int, stop: int, dst: NDArray[np.uint8],
                   n: int) -> bool:
    """Decode the LZ4 block ``src[start:stop]`` into ``dst[:n]``; False if it is not a
    valid block of exactly n bytes (every read and write is checked: damaged bytes cannot
    reach outside either array)."""
    ip = start
    op = 0
    while ip < stop:
        token = src[ip]
        lit, ip = _length(src, ip + 1, stop, np.int64(token >> 4))
        if lit < 0 or op + lit > n or ip + lit > stop:
            return False
        _copy(dst, op, src, ip, lit)
        ip += lit
        op += lit
        if ip == stop:
            break
        if ip + 2 > stop:
            return False
        offset = np.int64(src[ip]) | (np.int64(src[ip + 1]) << 8)
        ml, ip = _length(src, ip + 2, stop, np.int64(token & 15))
        if offset == 0 or offset > op or ml < 0 or op + ml + MIN_MATCH > n:
            return False
        ml += MIN_MATCH
        ref = op - offset
        # A match closer than its length repeats its first ``offset`` bytes: copied from
        # ``ref`` in pieces that double (each ends where it starts writing, and a whole
        # number of periods is done before each), not byte by byte.
        done = 0
        while done < ml:
            piece = min(ml - done, offset + done)
            _copy(dst, op + done, dst, ref, piece)
            done += piece
        op += ml
    return op == n


@njit(cache=True, nogil=True)
def _shuffle(src: NDArray[np.uint8], n: int, itemsize: int, out: NDArray[np.uint8]) -> None:
    for b in range(itemsize):
        for i in range(n):
            out[b * n + i] = src[i * itemsize + b]


@njit(cache=True, nogil=True)
def _unshuffle(src: NDArray[np.uint8], n: int, itemsize: int, out: NDArray[np.uint8]) -> None:
    for b in range(itemsize):
        for i in range(n):
            out[i * itemsize + b] = src[b * n + i]


@njit(cache=True, nogil=True)
def tiled_size(h: int, w: int, itemsize: int, cell: int) -> int:
    """Largest blob ``encode_tiles`` may write for an h x w mask."""
    gh = (h + cell - 1) // cell
    gw = (w + cell - 1) // cell
    return 4 * gh * gw + h * w * itemsize


@njit(cache=True, nogil=True)
def encode_tiles(pixels: NDArray[np.uint8], itemsize: int, cell: int, shuffle: bool,
                 compress: bool, out: NDArray[np.uint8], table: NDArray[np.int32],
                 scratch: NDArray[np.uint8], keep: int = MIN_MATCH) -> int:
    """The tiled blob of one mask into ``out`` (``tiled_size`` bytes); returns its size.
    ``pixels``: the mask's bytes as (H, W * itemsize); ``compress``: LZ4 each tile where
    it comes out smaller; ``table``: 1 << HASH_LOG int32; ``scratch``: 2 * cell * cell *
    itemsize bytes."""
    h = pixels.shape[0]
    w = pixels.shape[1] // itemsize
    gh = (h + cell - 1) // cell
    gw = (w + cell - 1) // cell
    head = 4 * gh * gw
    pos = 0
    flat = pixels.reshape(-1)
    line = w * itemsize
    table[:] = -1       # once: each tile's positions start past the last tile's
    done = 0            # raw bytes of the tiles so far: the next tile's ``origin``
    half = cell * cell * itemsize
    tile = scratch[:half]
    shuffled = scratch[half:2 * half]
    for r in range(gh):
        y0 = r * cell
        th = min(cell, h - y0)
        for s in range(gw):
            x0 = s * cell
            tw = min(cell, w - x0)
            row_bytes = tw * itemsize
            raw = th * row_bytes
            for y in range(th):
                _copy(tile, y * row_bytes, flat, (y0 + y) * line + x0 * itemsize, row_bytes)
            data = tile[:raw]
            if shuffle and itemsize > 1:
                _shuffle(tile, th * tw, itemsize, shuffled)
                data = shuffled[:raw]
            at = head + pos
            size = -1
            if compress:
                # Stored compressed only when strictly smaller than the raw bytes.
                if done + raw >= 2 ** 31 - 1:   # positions must fit the int32 table
                    table[:] = -1
                    done = 0
                size = lz4_compress(data, out[at:], raw - 1, table, keep, done)
                done += raw
            if size < 0:
                _copy(out, at, data, 0, raw)
                size = raw
            pos += size
            t = r * gw + s
            out[4 * t] = pos & 0xFF
            out[4 * t + 1] = (pos >> 8) & 0xFF
            out[4 * t + 2] = (pos >> 16) & 0xFF
            out[4 * t + 3] = (pos >> 24) & 0xFF
    return head + pos


@njit(inline="always")
def _tile_end(blob: NDArray[np.uint8], base: int, t: int) -> int:
    if t < 0:
        return 0
    return np.int64(_read32(blob, base + 4 * t))


@njit(cache=True, nogil=True)
def _tile_bytes(blob: NDArray[np.uint8], base: int, size: int, grid: tuple[int, int],
                t: int, raw: int, shuffle: tuple[bool, int, int],
                out: NDArray[np.uint8], scratch: NDArray[np.uint8]) -> bool:
    """Tile t of the blob ``blob[base:base + size]`` (``grid`` = (tiles, unused)) as its
    unshuffled row-order bytes in ``out[:raw]``; False if its bytes are damaged.
    ``shuffle`` = (shuffled, itemsize, pixels in the tile)."""
    n_tiles = grid[0]
    head = 4 * n_tiles
    if head > size:
        return False
    start = _tile_end(blob, base, t - 1)
    stop = _tile_end(blob, base, t)
    if stop < start or head + stop > size:
        return False
    shuffled, itemsize, count = shuffle
    target = scratch if (shuffled and itemsize > 1) else out
    a = base + head + start
    b = base + head + stop
    if b - a == raw:
        _copy(target, 0, blob, a, raw)
    elif b - a > raw or not lz4_decompress(blob, a, b, target, raw):
        return False
    if shuffled and itemsize > 1:
        _unshuffle(scratch, count, itemsize, out)
    return True


@njit(cache=True, nogil=True)
def decode_tiles(blob: NDArray[np.uint8], itemsize: int, cell: int, shuffle: bool,
                 out: NDArray[np.uint8], scratch: NDArray[np.uint8]) -> bool:
    """Every tile of a blob into ``out`` (the mask's bytes as (H, W * itemsize));
    ``scratch``: 2 * cell * cell * itemsize bytes. False if the blob is damaged."""
    h = out.shape[0]
    w = out.shape[1] // itemsize
    gh = (h + cell - 1) // cell
    gw = (w + cell - 1) // cell
    half = cell * cell * itemsize
    tile = scratch[:half]
    spare = scratch[half:2 * half]
    size = blob.shape[0]
    head = 4 * gh * gw
    flat = out.reshape(-1)
    line = w * itemsize
    if size < head or size != head + _tile_end(blob, 0, gh * gw - 1):
        return False
    for r in range(gh):
        y0 = r * cell
        th = min(cell, h - y0)
        for s in range(gw):
            x0 = s * cell
            tw = min(cell, w - x0)
            row_bytes = tw * itemsize
            if not _tile_bytes(blob, 0, size, (gh * gw, 0), r * gw + s, th * row_bytes,
                               (shuffle, itemsize, th * tw), tile, spare):
                return False
            for y in range(th):
                _copy(flat, (y0 + y) * line + x0 * itemsize, tile, y * row_bytes, row_bytes)
    return True


@njit(inline="always")
def _half(bits: np.uint16) -> float:
    """The float16 of these bits, exactly, as a float64."""
    e = (np.int64(bits) >> 10) & 0x1F
    m = np.int64(bits) & 0x3FF
    if e == 0:
        v = m * 2.0 ** -24
    elif e == 31:
        v = np.inf if m == 0 else np.nan
    else:
        v = (1024 + m) * 2.0 ** (e - 25)
    return -v if np.int64(bits) & 0x8000 else v


@njit(cache=True, nogil=True)
def _count(vals: np.ndarray, tw: int, part: tuple[int, int, int, int],
           cut: tuple[float, bool, float, bool]) -> int:
    """Pixels of rows [y0, y1) x columns [x0, x1) of a tile (row length ``tw``) that fail
    the lo cut and pass the hi cut (as ``count_kernels.count_in_range``; NaN never)."""
    x0, y0, x1, y1 = part
    lo_t, lo_incl, hi_t, hi_incl = cut
    n = 0
    for y in range(y0, y1):
        row = vals[y * tw + x0:y * tw + x1]
        c = np.int32(0)
        for x in range(row.shape[0]):
            v = np.float64(row[x])
            above = (v > lo_t) if lo_incl else (v >= lo_t)
            below = (v <= hi_t) if hi_incl else (v < hi_t)
            c += np.int32(above & below)
        n += c
    return n


# float16 pixels are compared by an integer key of their bits, increasing with the value
# (negative values: 0xFFFF - bits; others: bits + 0x8000): NaNs fall outside the keys of
# [-inf, inf], and a range of values is a range of keys, found once per tile by binary search.
KEY_NEG_INF = 0x03FF
KEY_POS_INF = 0xFC00


@njit(inline="always")
def _key_value(key: int) -> float:
    """The float16 value of a key."""
    return _half(np.uint16(key - 0x8000 if key >= 0x8000 else 0xFFFF - key))


@njit(cache=True, nogil=True)
def _key_range(cut: tuple[float, bool, float, bool]) -> tuple[int, int]:
    """The keys of the float16 values that fail the lo cut and pass the hi cut: [k0, k1]
    (k0 > k1: none)."""
    lo_t, lo_incl, hi_t, hi_incl = cut
    a = KEY_NEG_INF             # smallest key above the lo cut
    b = KEY_POS_INF + 1
    while a < b:
        mid = (a + b) >> 1
        v = _key_value(mid)
        if (v > lo_t) if lo_incl else (v >= lo_t):
            b = mid
        else:
            a = mid + 1
    c = KEY_NEG_INF - 1         # largest key below the hi cut
    d = KEY_POS_INF
    while c < d:
        mid = (c + d + 1) >> 1
        v = _key_value(mid)
        if (v <= hi_t) if hi_incl else (v < hi_t):
            c = mid
        else:
            d = mid - 1
    return a, c


@njit(cache=True, nogil=True)
def _count_half(bits: NDArray[np.uint16], tw: int, part: tuple[int, int, int, int],
                cut: tuple[float, bool, float, bool]) -> int:
    """``_count`` of float16 pixels given as their bits, by their keys."""
    x0, y0, x1, y1 = part
    k0, k1 = _key_range(cut)
    if k0 > k1:
        return 0
    n = 0
    for y in range(y0, y1):
        row = bits[y * tw + x0:y * tw + x1]
        c = np.int32(0)
        for x in range(row.shape[0]):
            b = np.int32(row[x])
            key = b ^ (((b >> 15) * 0x7FFF) | 0x8000)
            c += np.int32((key >= k0) & (key <= k1))
        n += c
    return n


@njit(cache=True, nogil=True)
def _count_tile(tile: NDArray[np.uint8], kind: int, tw: int, part: tuple[int, int, int, int],
                cut: tuple[float, bool, float, bool]) -> int:
    if kind == 0:
        return _count(tile.view(np.float32), tw, part, cut)
    if kind == 1:
        return _count(tile.view(np.float64), tw, part, cut)
    if kind == 2:
        return _count(tile, tw, part, cut)
    if kind == 3:
        return _count(tile.view(np.uint16), tw, part, cut)
    return _count_half(tile.view(np.uint16), tw, part, cut)


@njit(inline="always")
def _settled(bounds: tuple[int, int], covered: int, area: int) -> int:
    """The in-range pixels of the ``covered`` pixels of a cell of ``area`` pixels whose
    in-range count the CHI bounds to ``bounds``, when they tell: none in the cell, all of
    it, or an exact count of a cell the box covers whole; else -1."""
    cl, cu = bounds
    if cu == 0:
        return 0
    if cl == area:
        return covered
    if cl == cu and covered == area:
        return cl
    return -1


@njit(cache=True, nogil=True)
def tile_counts(data: NDArray[np.uint8], starts: NDArray[np.int64], stops: NDArray[np.int64],
                chi: tuple[np.ndarray, NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
                           NDArray[np.float64], np.ndarray, NDArray[np.float64]],
                layout: tuple[int, int, int, bool], rows: NDArray[np.int64],
                use_index: NDArray[np.bool_], boxes: NDArray[np.int64],
                cuts: NDArray[np.float64], out: NDArray[np.int64],
                decoded: NDArray[np.int64], scratch: NDArray[np.uint8]) -> int:
    """Exact CP counts of masks from their tiled blobs, decoding only the tiles the index
    cannot settle. Returns -1, or the position j of the first mask whose blob is damaged.

    Mask j is ``rows[j]`` of the segment; its blob is ``data[starts[j]:stops[j]]``; its
    shape comes from ``chi`` (the ``SegmentIndex`` arrays, ``kernel_arrays``), and where
    ``use_index[j]`` its CHI settles cells: a cell the term's box misses is skipped; one
    whose in-range pixels the CHI bounds to none adds 0, to all its pixels adds its covered
    pixels, and a covered cell with tight bounds adds them; every other cell the box touches
    is decoded and counted. ``layout`` = (kind (``KINDS``), itemsize, cell, shuffled).
    ``boxes`` (M, T, 4) clipped (x0, y0, x1, y1) per term; ``cuts`` (T, 4) = (lo_t, lo_incl,
    hi_t, hi_incl) as floats. ``out`` (M, T) counts; ``decoded`` (M,) tiles decoded;
    ``scratch``: 2 * cell * cell * itemsize bytes."""
    counts, offsets, heights, widths, edges, eq, stats = chi
    kind, itemsize, cell, shuffled = layout
    n_edges = edges.shape[0]
    n_cuts = n_edges + 1
    half = cell * cell * itemsize
    tile = scratch[:half]
    spare = scratch[half:2 * half]
    for j in range(rows.shape[0]):
        i = rows[j]
        h = heights[i]
        w = widths[i]
        gh = (h + cell - 1) // cell
        gw = (w + cell - 1) // cell
        base = starts[j]
        size = stops[j] - base
        base_c = offsets[i]
        vmin = stats[i, 0]
        vmax = stats[i, 1]
        n_dec = 0
        for t in range(cuts.shape[0]):
            lo_t = cuts[t, 0]
            lo_incl = cuts[t, 1] != 0.0
            hi_t = cuts[t, 2]
            hi_incl = cuts[t, 3] != 0.0
            x0 = boxes[j, t, 0]
            y0 = boxes[j, t, 1]
            x1 = boxes[j, t, 2]
            y1 = boxes[j, t, 3]
            total = 0
            if x1 <= x0 or y1 <= y0:
                out[j, t] = 0
                continue
            lo_k, lo_on = query_cut(lo_t, edges)
            hi_k, hi_on = query_cut(hi_t, edges)
            lo = cut_spec(lo_k, lo_on, eq, i, n_edges, vmin, vmax, lo_t, lo_incl)
            hi = cut_spec(hi_k, hi_on, eq, i, n_edges, vmin, vmax, hi_t, hi_incl)
            # The cells inside the box at once when the CHI gives their count exactly
            # (the usual case): then only the cells along the box's edge are visited.
            r0i, s0i, r1i, s1i = 0, 0, 0, 0
            if use_index[j]:
                inner = box_grid(h, w, cell, x0, y0, x1, y1)[1]
                il, iu = range_count_bounds(counts, base_c, grid_rect(
                    inner[0], inner[1], inner[2], inner[3], gw, n_cuts), lo, hi)
                if il == iu:
                    total += il
                    r0i, s0i, r1i, s1i = inner
            for r in range(y0 // cell, (y1 + cell - 1) // cell):
                cy0 = r * cell
                th = min(cell, h - cy0)
                ly0 = max(y0, cy0) - cy0
                ly1 = min(y1, cy0 + th) - cy0
                for s in range(x0 // cell, (x1 + cell - 1) // cell):
                    if r0i <= r < r1i and s0i <= s < s1i:
                        continue            # counted with the inner cells
                    cx0 = s * cell
                    tw = min(cell, w - cx0)
                    lx0 = max(x0, cx0) - cx0
                    lx1 = min(x1, cx0 + tw) - cx0
                    covered = (ly1 - ly0) * (lx1 - lx0)
                    if use_index[j]:
                        settled = _settled(range_count_bounds(
                            counts, base_c, cell_rect(r, s, gw, n_cuts), lo, hi), covered,
                            th * tw)
                        if settled >= 0:
                            total += settled
                            continue
                    if not _tile_bytes(data, base, size, (gh * gw, 0), r * gw + s,
                                       th * tw * itemsize, (shuffled, itemsize, th * tw),
                                       tile, spare):
                        return j
                    n_dec += 1
                    total += _count_tile(tile, kind, tw, (lx0, ly0, lx1, ly1),
                                         (lo_t, lo_incl, hi_t, hi_incl))
            out[j, t] = total
        decoded[j] = n_dec
    return -1
