"""COCO run-length encoding of instance masks, from each instance's crop (the package's one RLE encoder).

A mask is given as its box-sized crop placed at column ``x0``, row ``y0`` of an (H, W) canvas (a
:class:`~fastsam_onnx.masks.MaskCrop`); the work scales with the crop, never with H × W: the zeros above and
below it in each column, and the empty columns, are run lengths, never pixels. The output is what
``pycocotools.mask.encode`` gives for the full (Fortran-order) mask: run lengths in column-major order, zeros
first (:func:`run_lengths`; as a list, the uncompressed form ``frPyObjects`` reads) or COCO's compressed
string (:func:`rle_string`, ``rleToString``; what ``pycocotools.mask.decode`` reads directly).

Both steps are whole-array numpy. The crop's columns, each with an off pixel above and below, are laid end to end
(one ``cv2.transpose``) and packed into a bit stream; a shift and an XOR of its 64-bit words leave one bit on at
every run's start and end, found byte-wise first (most bytes are zero) and then bit by bit. On the 12-MP case's
175 M crop pixels and 4.9 M runs: 109 ms on one core here (a byte per pixel compared and scanned: 143 ms).
:func:`encode_rles` gives the output threads a chunk of crops at a time: run lengths crop by crop, then the
strings' numpy half in whole-array passes over all of the chunk's runs (one call per crop was a dozen short numpy
calls, each waiting on the GIL: no faster on two threads than on one). The calling thread makes the strings
(``bytes.translate`` holds the GIL) as the chunks come. Nothing here imports pycocotools.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from ..parallel import chunks, parallel_imap, workers

__all__ = ["run_lengths", "rle_string", "string_counts", "encode_rle", "encode_rles", "decode_rle"]


def run_lengths(x0: int, y0: int, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(K,) int64 run lengths of the (h, w) bool crop ``mask`` at column ``x0``, row ``y0`` of an (H, W)
    canvas: column-major, zeros first (a leading 0 when the canvas's first pixel is on), no trailing zero run;
    they add up to H × W."""
    H, W = int(shape[0]), int(shape[1])
    m = np.ascontiguousarray(mask, dtype=bool)
    h, w = m.shape
    if h == 0 or w == 0:
        return np.array([H * W], np.int64)
    k = _set_bits(_change_bits(m))  # where a run starts or ends, in the padded columns end to end
    if k.size == 0:
        return np.array([H * W], np.int64)
    pos = k // (h + 2)  # the column; then the canvas position (column-major) of each change
    pos *= H - h - 2
    pos += k
    pos += x0 * H + y0 - 1
    if h == H:  # a run reaching a column's bottom goes on at the next column's top: join them
        dup = np.flatnonzero(pos[1:] == pos[:-1])
        if dup.size:
            pos = np.delete(pos, np.concatenate([dup, dup + 1]))
    tail = int(pos[-1] != H * W)  # a zero run after the last change, unless the mask reaches the last pixel
    counts = np.empty(pos.size + tail, np.int64)
    counts[0] = pos[0]
    np.subtract(pos[1:], pos[:-1], out=counts[1 : pos.size])
    if tail:
        counts[-1] = H * W - pos[-1]
    return counts


def _change_bits(m: np.ndarray) -> np.ndarray:
    """The (h, w) bool crop's columns end to end, each with an off pixel above and below it, as a bit stream
    (uint64 words, little-endian bit order) in which bit k is on where pixel k differs from pixel k - 1 (the
    pixel before the first: off). No two columns' runs meet across the padding."""
    h, w = m.shape
    n = w * (h + 2)
    buf = np.zeros(-(-n // 64) * 64, np.uint8)  # whole words of bits; the padding and what follows: off
    cv2.transpose(m.view(np.uint8), dst=buf[:n].reshape(w, h + 2)[:, 1 : h + 1])
    bits = np.packbits(buf.view(bool), bitorder="little").view(np.uint64)
    change = bits << np.uint64(1)  # each pixel's predecessor, carried across words
    change[1:] |= bits[:-1] >> np.uint64(63)
    change ^= bits
    return change


def _set_bits(words: np.ndarray) -> np.ndarray:
    """(K,) int64 indices, increasing, of the bits that are on in a little-endian stream of uint64 ``words``:
    the non-zero bytes are found first (a change is rare: one bit in 20-40 here), then their bits."""
    b = words.view(np.uint8)
    nz = np.flatnonzero(b != 0)
    j = np.flatnonzero(np.unpackbits(b[nz], bitorder="little").view(bool))
    return (nz[j >> 3] << 3) + (j & 7)


def rle_string(counts: Sequence[int] | np.ndarray) -> str:
    """Run lengths → COCO's compressed RLE string (``rleToString`` of the COCO API: each count from the
    fourth on as its difference to the count two back, in little-endian 5-bit groups with a continuation bit,
    the last group's top bit the sign, offset by 48 into printable ASCII).

    Values within ±2**14 (3 groups at most: nearly all of them) are looked up in a table of their characters
    (zero bytes where a value has fewer, deleted at the end); the few larger ones (long runs of zeros between
    far-apart columns) are encoded in one whole-array call and spliced in."""
    return _text(_characters([counts])[0])


_Characters = tuple[np.ndarray, list[int], bytes, list[int]] | bytes


def _characters(counts: Sequence[Sequence[int] | np.ndarray]) -> list[_Characters]:
    """The numpy half of :func:`rle_string` for many run-length arrays at once (whole-array passes over all their
    values, no Python object per value): per array, its values' characters as 3-byte items, zero bytes after a
    value's last one; the places of its large values, their characters end to end and where each one's end; or,
    when most of its values are large, its whole string's bytes."""
    arrays = [np.asarray(c, dtype=np.int64).reshape(-1) for c in counts]
    sizes = np.array([c.size for c in arrays], np.int64)
    starts = np.cumsum(sizes) - sizes
    c = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    if c.size and int(c.max()) < 1 << 30:  # the differences fit 32 bits: half the memory traffic
        c = c.astype(np.int32)
    x = np.empty_like(c)
    np.subtract(c[2:], c[:-2], out=x[2:])  # each count from the fourth on less the count two back ...
    head = (starts[:, None] + np.arange(3)).ravel()
    head = head[head < np.repeat(starts + sizes, 3)]
    x[head] = c[head]  # ... each array's first three as they are
    x += _TABLE_LIMIT  # the table's row; outside [0, 2**15) a large value
    large = np.flatnonzero(x.view(np.uint32 if x.dtype == np.int32 else np.uint64) >= 2 * _TABLE_LIMIT)
    cut = np.searchsorted(large, np.append(starts, c.size)).tolist()
    values = x[large].astype(np.int64) - _TABLE_LIMIT
    whole = {i: _encode(x[a : a + n].astype(np.int64) - _TABLE_LIMIT).tobytes()  # mostly large: whole-array encoding
             for i, (a, n) in enumerate(zip(starts.tolist(), sizes.tolist())) if cut[i + 1] - cut[i] > max(16, n >> 6)}
    x[large] = _TABLE_LIMIT  # looked up as zeros, written as themselves by _text
    items = _table().take(x)
    text = _encode(values).tobytes()
    ends = np.cumsum(_groups(values)).tolist()
    out: list[_Characters] = []
    for i, (a, n) in enumerate(zip(starts.tolist(), sizes.tolist())):
        if n == 0 or i in whole:
            out.append(whole.get(i, b""))
            continue
        lo, hi = cut[i], cut[i + 1]  # its large values: large[lo:hi], their characters text[e0:e1]
        e0 = ends[lo - 1] if lo else 0
        e1 = ends[hi - 1] if hi > lo else e0
        out.append((items[a : a + n], (large[lo:hi] - a).tolist(), text[e0:e1], [v - e0 for v in ends[lo:hi]]))
    return out


def _text(chars: _Characters) -> str:
    """The string half of :func:`rle_string` (bytes.translate holds the GIL: one thread does it)."""
    if isinstance(chars, bytes):
        return chars.decode("ascii")
    items, large, text, ends = chars
    if not large:
        return items.tobytes().translate(None, b"\0").decode("ascii")
    parts, a, e = [], 0, 0
    for b, end in zip(large, ends):
        parts += [items[a:b].tobytes().translate(None, b"\0"), text[e:end]]
        a, e = b + 1, end
    parts.append(items[a:].tobytes().translate(None, b"\0"))
    return b"".join(parts).decode("ascii")


_TABLE_LIMIT = 1 << 14  # |value| < 2**14: at most 3 groups (the table: 96 KiB)
_TABLES: np.ndarray | None = None


def _table() -> np.ndarray:
    """Per value in [-2**14, 2**14): its characters (up to 3, from :func:`_encode`) as one 3-byte item, zero bytes
    after them; made once."""
    global _TABLES
    if _TABLES is None:
        chars, present = _group_chars(np.arange(-_TABLE_LIMIT, _TABLE_LIMIT, dtype=np.int64))  # (2**15, 3)
        _TABLES = np.where(present, chars, 0).astype(np.uint8).view("V3").ravel()
    return _TABLES


def _groups(x: np.ndarray) -> np.ndarray:
    """5-bit groups each (K,) int64 value takes: its bit length (of ~x when negative) plus the sign bit, in 5s."""
    _, bits = np.frexp((x ^ (x >> 63)).astype(np.float64))
    return bits // 5 + 1  # the last group's bit 4 holds the sign


def _encode(x: np.ndarray) -> np.ndarray:
    """(K,) int64 values (the deltas of :func:`rle_string`) → their groups' characters, uint8, end to end."""
    if x.size == 0:
        return np.zeros(0, np.uint8)
    chars, present = _group_chars(x)
    return chars[present].astype(np.uint8)


def _group_chars(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K,) int64 values → (K, G) int64 characters of each one's j-th 5-bit group (G: the most groups of any)
    and (K, G) bool: whether the value has that group."""
    groups = _groups(x)[:, None]
    j = np.arange(int(groups.max()))
    chars = (x[:, None] >> 5 * j) & 0x1F
    chars += np.where(j < groups - 1, 48 + 0x20, 48)  # a continuation bit on all groups but the last
    return chars, j < groups


def string_counts(s: str | bytes) -> np.ndarray:
    """Inverse of :func:`rle_string`: COCO's compressed RLE string → (K,) int64 run lengths."""
    b = np.frombuffer(s.encode("ascii") if isinstance(s, str) else bytes(s), np.uint8).astype(np.int64) - 48
    if b.size == 0:
        return np.zeros(0, np.int64)
    if (b < 0).any() or (b > 63).any() or b[-1] & 0x20:
        raise ValueError("not a COCO compressed RLE string")
    last = (b & 0x20) == 0
    value = np.cumsum(last) - last  # which value each group belongs to
    start = np.flatnonzero(np.concatenate([[True], last[:-1]]))  # each value's first group
    shift = 5 * (np.arange(b.size) - start[value])
    x = np.zeros(int(last.sum()), np.int64)
    np.add.at(x, value, (b & 0x1F) << shift)
    top = b[last] & 0x10  # the sign bit of each value's last group
    x -= np.where(top > 0, np.int64(1) << (shift[last] + 5), 0)
    for i in range(3, x.size):  # undo the deltas against the count two back (readers and tests only)
        x[i] += x[i - 2]
    return x


def encode_rle(x0: int, y0: int, mask: np.ndarray, shape: tuple[int, int], compressed: bool = True) -> dict[str, Any]:
    """COCO RLE ``{"size": [H, W], "counts": ...}`` of the crop ``mask`` at (``x0``, ``y0``) of an (H, W)
    canvas: ``counts`` COCO's compressed string (default), or with ``compressed=False`` the run lengths as a list
    of ints (pycocotools reads both: ``frPyObjects`` turns the list into the string form)."""
    return encode_rles([(x0, y0, mask)], shape, compressed)[0][0]


def encode_rles(crops: Sequence[tuple[int, int, np.ndarray]], shape: tuple[int, int],
                compressed: bool = True) -> list[tuple[dict[str, Any], int]]:
    """:func:`encode_rle` of each (x0, y0, mask) crop (:class:`~fastsam_onnx.masks.MaskCrop`) and its area in
    pixels, read off its runs (every second run is on). The numpy work runs on the output threads, a chunk of
    crops at a time (the strings' numpy half in a few whole-array passes over the chunk's runs); the calling thread
    makes the strings as the chunks come (bytes.translate holds the GIL: one thread does it, beside the pool's
    long numpy calls)."""
    size = [int(shape[0]), int(shape[1])]

    def encode(span: tuple[int, int]) -> tuple[list[Any], list[int]]:
        counts = [run_lengths(x0, y0, m, shape) for x0, y0, m in crops[span[0] : span[1]]]
        areas = [int(c[1::2].sum()) for c in counts]
        return (_characters(counts) if compressed else [c.tolist() for c in counts]), areas

    out = []
    for done, areas in parallel_imap(encode, chunks(len(crops), 4 * workers())):  # strings made as chunks come
        out += [({"size": list(size), "counts": _text(c) if compressed else c}, area) for c, area in zip(done, areas)]
    return out


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle` (either ``counts`` form) → the full (H, W) bool mask (for tests and readers)."""
    h, w = rle["size"]
    raw = rle["counts"]
    counts = string_counts(raw) if isinstance(raw, (str, bytes)) else np.asarray(raw, dtype=np.int64)
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")
