"""Numbers to text in whole arrays: the polygon file formats write millions of coordinates, which Python's
per-number formatting (``f"{v:.6f}"``, ``json.dumps`` of floats) turns into seconds for a ragged 12-MP result.

:func:`join_fixed` writes integers scaled by ``10**decimals`` (the caller rounds as its format says) as fixed-point
decimals, each followed by a separator chosen per number from a small table, as one string: the digits are
built column by column in numpy, then the used characters are taken in row order. The text equals Python's
``f"{q / 10**decimals:.{decimals}f}"`` for every ``|q| < 10**18`` (and, with ``decimals`` 1, ``json.dumps`` of
``round(x, 1)`` when ``q`` is ``np.rint(x * 10)``). Where a few values recur (pixel coordinates), their texts are
made once (:func:`fixed_texts`) and :func:`join_table` writes each number with one lookup.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..parallel import chunks, parallel_map

__all__ = ["join_fixed", "fixed_texts", "join_table"]

_POW10 = 10 ** np.arange(19, dtype=np.int64)
_CHUNK = 1 << 18  # numbers per chunk: its (chunk, ~12) character table stays a few MB


def join_fixed(q: np.ndarray, decimals: int, seps: np.ndarray | None = None, table: Sequence[str] = ("",),
               with_ends: bool = False) -> str | tuple[str, np.ndarray]:
    """The (n,) int64 ``q`` as ``q / 10**decimals`` in fixed point with ``decimals`` digits after the point,
    number i followed by ``table[seps[i]]`` (default: nothing), joined into one ASCII string. With ``with_ends``
    also the (n,) int64 offsets in the string just past each number's separator (to cut it per polygon).
    Long arrays are formatted in chunks on the output threads (:mod:`fastsam_onnx.parallel`)."""
    q = np.asarray(q, dtype=np.int64).reshape(-1)
    sep_bytes = [s.encode("ascii") for s in table]
    return _join(q.size, seps, sep_bytes, with_ends, lambda a, b, codes: _chunk(q[a:b], codes, decimals, sep_bytes))


def fixed_texts(values: np.ndarray, decimals: int) -> np.ndarray:
    """A table for :func:`join_table`: (m,) uint64, value i's text as :func:`join_fixed` writes it (``values``
    int64, as its ``q``), zero bytes after it. ValueError when a text is longer than 8 characters."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    text, lengths = _chunk(v, np.zeros(v.size, np.int64), decimals, [b""])
    if v.size and int(lengths.max()) > 8:
        raise ValueError(f"a number's text is longer than 8 characters (decimals={decimals}, max |q|={int(np.abs(v).max())})")
    cells = np.zeros((v.size, 8), np.uint8)
    starts = np.cumsum(lengths) - lengths
    row = np.repeat(np.arange(v.size), lengths)
    cells[row, np.arange(row.size) - starts[row]] = np.frombuffer(text.encode("ascii"), np.uint8)
    return cells.view(np.uint64).reshape(-1)


def join_table(index: np.ndarray, texts: np.ndarray, seps: np.ndarray | None = None, table: Sequence[str] = ("",),
               with_ends: bool = False) -> str | tuple[str, np.ndarray]:
    """:func:`join_fixed` of ``values[index]`` where ``texts`` is :func:`fixed_texts` of ``values``: one lookup
    per number instead of its digits, for the many numbers of a few values (pixel coordinates).
    index: (n,) ints in [0, m)."""
    index = np.asarray(index, dtype=np.intp).reshape(-1)
    texts = np.ascontiguousarray(texts, np.uint64)
    sep_bytes = [s.encode("ascii") for s in table]
    lengths = np.count_nonzero(texts.view(np.uint8).reshape(-1, 8), axis=1)
    widths = {len(b) for b in sep_bytes}
    full = bool(texts.size) and int(lengths.min()) == 8 and len(widths) == 1  # then no record holds a zero byte
    width = max(widths, default=0)
    record = np.dtype([("text", "<u8")] + ([("sep", f"S{width}")] if width else []))  # S pads with zero bytes
    sep_table = np.array(sep_bytes, f"S{max(width, 1)}")

    def chunk(a: int, b: int, codes: np.ndarray) -> tuple[str, np.ndarray]:
        rows = np.empty(b - a, record)  # each number's text, then its separator
        rows["text"] = texts.take(index[a:b])
        if width:
            rows["sep"] = sep_table.take(codes)
        raw = rows.tobytes()
        text = (raw if full else raw.translate(None, b"\0")).decode("ascii")
        return text, (lengths.take(index[a:b]) if with_ends else None)  # the lengths only when asked

    return _join(index.size, seps, sep_bytes, with_ends, chunk)


def _join(n: int, seps: np.ndarray | None, sep_bytes: list[bytes], with_ends: bool, chunk) -> str | tuple[str, np.ndarray]:
    """What :func:`join_fixed` and :func:`join_table` share: the chunks (``chunk(start, stop, codes)`` gives the
    text of numbers [start, stop) and, when ``with_ends``, their lengths without separators) on the output threads,
    joined."""
    codes = np.zeros(n, np.int64) if seps is None else np.asarray(seps, dtype=np.int64).reshape(-1)
    sep_len = np.array([len(b) for b in sep_bytes], np.int64)
    parts = parallel_map(lambda r: chunk(r[0], r[1], codes[r[0] : r[1]]), chunks(n, -(-n // _CHUNK)))
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
