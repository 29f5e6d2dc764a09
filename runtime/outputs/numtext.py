"""Numbers to text in whole arrays: the polygon file formats write millions of coordinates, which Python's
per-number formatting (``f"{v:.6f}"``, ``json.dumps`` of floats) turns into seconds for a ragged 12-MP result.

:func:`join_fixed` writes integers scaled by ``10**decimals`` (the caller rounds as its format says) as fixed-point
decimals, each followed by a separator chosen per number from a small table, as one string: the digits are
built column by column in numpy, then the used characters are taken in row order. The text equals Python's
``f"{q / 10**decimals:.{decimals}f}"`` for every ``|q| < 10**18`` (and, with ``decimals`` 1, ``json.dumps`` of
``round(x, 1)`` when ``q`` is ``np.rint(x * 10)``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..parallel import chunks, parallel_map

__all__ = ["join_fixed"]

_POW10 = 10 ** np.arange(19, dtype=np.int64)
_CHUNK = 1 << 18  # numbers per chunk: its (chunk, ~12) character table stays a few MB


def join_fixed(q: np.ndarray, decimals: int, seps: np.ndarray | None = None, table: Sequence[str] = ("",),
               with_ends: bool = False) -> str | tuple[str, np.ndarray]:
    """The (n,) int64 ``q`` as ``q / 10**decimals`` in fixed point with ``decimals`` digits after the point,
    number i followed by ``table[seps[i]]`` (default: nothing), joined into one ASCII string. With ``with_ends``
    also the (n,) int64 offsets in the string just past each number's separator (to cut it per polygon).
    Long arrays are formatted in chunks on the output threads (:mod:`fastsam_onnx.parallel`)."""
    q = np.asarray(q, dtype=np.int64).reshape(-1)
    n = q.size
    codes = np.zeros(n, np.int64) if seps is None else np.asarray(seps, dtype=np.int64).reshape(-1)
    sep_bytes = [s.encode("ascii") for s in table]
    sep_len = np.array([len(b) for b in sep_bytes], np.int64)
    parts = parallel_map(lambda r: _chunk(q[r[0] : r[1]], codes[r[0] : r[1]], decimals, sep_bytes), chunks(n, -(-n // _CHUNK)))
    text = "".join(t for t, _ in parts)
    if not with_ends:
        return text
    lengths = np.concatenate([ln for _, ln in parts]) if parts else np.zeros(0, np.int64)
    return text, np.cumsum(lengths + sep_len[codes])


def _chunk(q: np.ndarray, codes: np.ndarray, decimals: int, sep_bytes: list[bytes]) -> tuple[str, np.ndarray]:
    """One chunk of :func:`join_fixed`: (its text, each number's length without its separator)."""
    n = q.size
    neg = q < 0
    a = np.abs(q)
    if n and int(a.max()) < 2**32:
        a = a.astype(np.uint32)  # unsigned 32-bit: numpy divides by a constant fastest there
    ndig = np.ones(n, np.int8)  # digits of |q| (comparisons: far faster than searchsorted here)
    for k in range(1, 20):
        more = a >= _POW10[k] if k < 19 else np.zeros(n, bool)
        if not more.any():
            break
        ndig += more
    ndig = np.maximum(ndig, decimals + 1).astype(np.int64)  # "0.x" at least
    width = int(ndig.max()) if n else 1
    sep_w = max((len(b) for b in sep_bytes), default=0)
    point = 1 if decimals else 0
    cols = 1 + width + point + sep_w  # sign, digits with the point among them, separator
    # each row: the number right-aligned in its field; cells it does not use hold 0, dropped at the end
    chars = np.zeros((n, cols), np.uint8)
    for j in range(width):  # the digit of 10**j; the point sits before the last `decimals` digits
        col = 1 + (width - 1 - j) + (0 if j >= decimals else point)
        h = a // a.dtype.type(10)
        digit = a - h * a.dtype.type(10)
        a = h
        chars[:, col] = np.where(j < ndig, digit + 48, 0) if j >= decimals + 1 else digit + 48
    if point:
        chars[:, 1 + width - decimals] = ord(".")
    if neg.any():  # the sign just before the leading digit (after the digits, whose unused cells were zeroed)
        chars[np.flatnonzero(neg), (1 + width - ndig)[neg] - 1] = ord("-")
    if sep_w:
        sep_table = np.zeros((len(sep_bytes), sep_w), np.uint8)
        for k, b in enumerate(sep_bytes):
            sep_table[k, : len(b)] = np.frombuffer(b, np.uint8)
        chars[:, cols - sep_w :] = np.take(sep_table, codes, axis=0)
    return chars.tobytes().translate(None, b"\0").decode("ascii"), neg + ndig + point
