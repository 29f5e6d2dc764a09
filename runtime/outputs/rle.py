"""COCO run-length encoding of instance masks, from each instance's crop (the package's one RLE encoder).

A mask is given as its box-sized crop placed at column ``x0``, row ``y0`` of an (H, W) canvas (a
:class:`~fastsam_onnx.masks.MaskCrop`); the work scales with the crop, never with H × W: the zeros above and
below it in each column, and the empty columns, are run lengths, never pixels. The output is what
``pycocotools.mask.encode`` gives for the full (Fortran-order) mask: run lengths in column-major order, zeros
first (:func:`run_lengths`; as a list, the uncompressed form ``frPyObjects`` reads) or COCO's compressed
string (:func:`rle_string`, ``rleToString``; what ``pycocotools.mask.decode`` reads directly). Both steps are
whole-array numpy: about 1 ns per crop pixel and 25 ns per run here. Nothing here imports pycocotools.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

__all__ = ["run_lengths", "rle_string", "string_counts", "encode_rle", "decode_rle"]


def run_lengths(x0: int, y0: int, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(K,) int64 run lengths of the (h, w) bool crop ``mask`` at column ``x0``, row ``y0`` of an (H, W)
    canvas: column-major, zeros first (a leading 0 when the canvas's first pixel is on), no trailing zero run;
    they add up to H × W."""
    H, W = int(shape[0]), int(shape[1])
    m = np.ascontiguousarray(mask, dtype=bool)
    h, w = m.shape
    if h == 0 or w == 0:
        return np.array([H * W], np.int64)
    # the crop with an off row above and below, transposed: each column is a row of t, and the change flags of
    # its flattened copy are exactly the run starts and ends (no two columns' pixels meet across the padding)
    t = cv2.transpose(cv2.copyMakeBorder(m.view(np.uint8), 1, 1, 0, 0, cv2.BORDER_CONSTANT, value=0))
    f = t.reshape(-1)
    k = np.flatnonzero(f[1:] != f[:-1]) + 1  # index in f of the first pixel after each change
    if k.size == 0:
        return np.array([H * W], np.int64)
    pos = k + (k // (h + 2)) * (H - h - 2) + (x0 * H + y0 - 1)  # canvas position (column-major) of each change
    if h == H:  # a run reaching a column's bottom goes on at the next column's top: join them
        dup = np.flatnonzero(pos[1:] == pos[:-1])
        if dup.size:
            pos = np.delete(pos, np.concatenate([dup, dup + 1]))
    counts = np.diff(pos, prepend=0, append=H * W)
    if counts.size > 1 and counts[-1] == 0:  # the mask reaches the last pixel: no trailing zero run
        counts = counts[:-1]
    return counts


def rle_string(counts: Sequence[int] | np.ndarray) -> str:
    """Run lengths → COCO's compressed RLE string (``rleToString`` of the COCO API: each count from the
    fourth on as its difference to the count two back, in little-endian 5-bit groups with a continuation bit,
    the last group's top bit the sign, offset by 48 into printable ASCII).

    Values within ±2**14 (3 groups at most: nearly all of them) are looked up in a table of their characters
    (zero bytes where a value has fewer, deleted at the end); the few larger ones (long runs of zeros between
    far-apart columns) are encoded one by one."""
    c = np.asarray(counts, dtype=np.int64).reshape(-1)
    if c.size == 0:
        return ""
    if int(c.max()) < 1 << 30:  # the differences fit 32 bits: half the memory traffic
        c = c.astype(np.int32)
    x = np.empty_like(c)
    x[:3] = c[:3]
    np.subtract(c[3:], c[1:-2], out=x[3:])
    x += _TABLE_LIMIT  # the table's row; outside [0, 2**15) a large value
    unsigned = x.view(np.uint32 if x.dtype == np.int32 else np.uint64)
    large = np.flatnonzero(unsigned >= 2 * _TABLE_LIMIT)
    if large.size > max(16, x.size >> 6):  # mostly large values: whole-array encoding
        return _encode(x.astype(np.int64) - _TABLE_LIMIT).tobytes().decode("ascii")
    values = x[large].astype(np.int64) - _TABLE_LIMIT
    x[large] = _TABLE_LIMIT  # looked up as zeros, written as themselves below
    groups = _table().take(x)  # (K,) uint32: a value's characters, then zero bytes
    if not large.size:
        return groups.tobytes().translate(None, b"\0").decode("ascii")
    parts, a = [], 0
    for b, value in zip(large.tolist(), values.tolist()):
        parts += [groups[a:b].tobytes().translate(None, b"\0"), _encode(np.array([value], np.int64)).tobytes()]
        a = b + 1
    parts.append(groups[a:].tobytes().translate(None, b"\0"))
    return b"".join(parts).decode("ascii")


_TABLE_LIMIT = 1 << 14  # |value| < 2**14: at most 3 groups (the table: 128 KiB)
_TABLES: np.ndarray | None = None


def _table() -> np.ndarray:
    """Per value in [-2**14, 2**14): its characters (up to 3, from :func:`_encode`) in a uint32, zero bytes after
    them; made once."""
    global _TABLES
    if _TABLES is None:
        v = np.arange(-_TABLE_LIMIT, _TABLE_LIMIT, dtype=np.int64)
        groups = _groups(v)
        ends = np.cumsum(groups)
        rank = np.arange(int(ends[-1])) - np.repeat(ends - groups, groups)  # each character's place in its value
        chars = np.zeros((v.size, 4), np.uint8)
        chars[np.repeat(np.arange(v.size), groups), rank] = _encode(v)
        _TABLES = chars.view(np.uint32).ravel()
    return _TABLES


def _groups(x: np.ndarray) -> np.ndarray:
    """5-bit groups each (K,) int64 value takes: its bit length (of ~x when negative) plus the sign bit, in 5s."""
    _, bits = np.frexp((x ^ (x >> 63)).astype(np.float64))
    return bits // 5 + 1  # the last group's bit 4 holds the sign


def _encode(x: np.ndarray) -> np.ndarray:
    """(K,) int64 values (the deltas of :func:`rle_string`) → their groups' characters, uint8, end to end."""
    groups = _groups(x)
    ends = np.cumsum(groups)
    out = np.empty(int(ends[-1]), np.uint8)
    at = ends - groups
    idx = np.arange(x.size)
    j = 0
    while idx.size:  # the j-th group of every value that has one
        last = groups[idx] == j + 1
        out[at[idx] + j] = ((x[idx] >> (5 * j)) & 0x1F) + np.where(last, 48, 48 + 0x20)
        idx = idx[~last]
        j += 1
    return out


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
    counts = run_lengths(x0, y0, mask, shape)
    return {"size": [int(shape[0]), int(shape[1])], "counts": rle_string(counts) if compressed else counts.tolist()}


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle` (either ``counts`` form) → the full (H, W) bool mask (for tests and readers)."""
    h, w = rle["size"]
    raw = rle["counts"]
    counts = string_counts(raw) if isinstance(raw, (str, bytes)) else np.asarray(raw, dtype=np.int64)
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")
