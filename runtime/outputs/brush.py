"""Label Studio's brush RLE (``brushlabels`` regions, ``"format": "rle"``), encoded from an instance's crop.

The format is thi.ng's ``rle-pack`` as Label Studio's editor and ``label_studio_sdk.converter.brush.decode_rle``
read it: a bit stream (most significant bit first) holding the value count (32 bits), the word size minus one
(5 bits) and four run-length field sizes minus one (4 bits each), then blocks of: 1 bit (1 = a run of one repeated
word, 0 = literal words), 2 bits choosing a field size, ``size`` bits of the block length minus one, then one word
(a run) or ``length`` words (literals). The decoded array is the (H, W, 4) RGBA image of the mask, row-major, every
channel 255 on the mask and 0 off it (what ``label_studio_sdk``'s ``mask2rle`` encodes).

:func:`brush_rle` writes runs only (word size 8, field sizes 3, 4, 8, 16 bits as the SDK's encoder uses), from
the row-major run lengths of the crop placed on its canvas, so the work scales with the crop's rows, never with
H × W. :func:`decode_brush` reads any such stream (runs and literals) back, for tests and readers. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from .rle import run_lengths

__all__ = ["brush_rle", "decode_brush", "brush_mask", "MAX_BRUSH_PIXELS"]

_SIZES = (3, 4, 8, 16)  # run-length field sizes in bits: blocks of up to 8, 16, 256 and 65536 words
_WORD = 8
_CHANNELS = 4  # RGBA
MAX_BRUSH_PIXELS = (2**32 - 1) // _CHANNELS  # the 32-bit value count holds H * W * 4


def _header() -> list[int]:
    return [_WORD - 1] + [s - 1 for s in _SIZES]


def brush_rle(x0: int, y0: int, mask: np.ndarray, shape: tuple[int, int]) -> list[int]:
    """Label Studio brush RLE (a list of byte values) of the (h, w) bool crop ``mask`` placed at column ``x0``,
    row ``y0`` of an (H, W) image; ``shape`` = (H, W) in pixels. ValueError when H * W * 4 overflows 32 bits."""
    H, W = int(shape[0]), int(shape[1])
    if H * W > MAX_BRUSH_PIXELS:
        raise ValueError(f"a {W}x{H} mask is too large for Label Studio's brush RLE (at most {MAX_BRUSH_PIXELS} pixels)")
    m = np.asarray(mask, dtype=bool)
    # row-major runs of the canvas = column-major runs of its transpose (the COCO encoder, crop-sized work)
    counts = np.asarray(run_lengths(y0, x0, m.T, (W, H)), dtype=np.int64) * _CHANNELS
    values = np.where(np.arange(counts.size) % 2 == 1, 255, 0).astype(np.int64)
    keep = counts > 0  # a leading zero count when the first pixel is on
    counts, values = counts[keep], values[keep]
    # blocks of at most 2**16 words: a long run is several blocks
    nblocks = -(-counts // 2**16)
    block_len = np.full(int(nblocks.sum()), 2**16, dtype=np.int64)
    last = np.cumsum(nblocks) - 1
    block_len[last] = counts - (nblocks - 1) * 2**16
    block_val = np.repeat(values, nblocks)
    idx = np.searchsorted(np.array([2**s for s in _SIZES]), block_len)  # smallest field that holds length - 1
    size = np.array(_SIZES, dtype=np.int64)[idx]
    width = 1 + 2 + size + _WORD
    code = (1 << (width - 1)) | (idx << (size + _WORD)) | ((block_len - 1) << _WORD) | block_val
    # the header as one more pair of (code, width) fields, then every field's bits, most significant first
    head_codes = np.array([H * W * _CHANNELS, *_header()], dtype=np.int64)
    head_widths = np.array([32, 5, 4, 4, 4, 4], dtype=np.int64)
    codes = np.concatenate([head_codes, code])
    widths = np.concatenate([head_widths, width])
    starts = np.cumsum(widths) - widths
    total = int(widths.sum())
    owner = np.repeat(np.arange(codes.size), widths)
    shift = widths[owner] - 1 - (np.arange(total) - starts[owner])
    bits = ((codes[owner] >> shift) & 1).astype(np.uint8)
    return np.packbits(bits).tolist()


def decode_brush(rle: list[int] | bytes | np.ndarray) -> np.ndarray:
    """A brush RLE stream → its (num,) decoded words (uint8 for word sizes up to 8, else uint32)."""
    bits = np.unpackbits(np.asarray(rle, dtype=np.uint8))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > bits.size:
            raise ValueError("the brush RLE stream ends inside a block")
        v = 0
        for b in bits[pos:pos + n].tolist():
            v = (v << 1) | b
        pos += n
        return v

    num = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8 if word <= 8 else np.uint32)
    i = 0
    while i < num:
        run = read(1)
        j = i + 1 + read(sizes[read(2)])
        if j > num:
            raise ValueError(f"a brush RLE block ends at word {j}, past the {num} words announced")
        if run:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out


def brush_mask(rle: list[int] | bytes | np.ndarray, height: int, width: int) -> np.ndarray:
    """A brush RLE of an (height, width) image → (height, width) bool mask (its alpha channel > 0)."""
    words = decode_brush(rle)
    if words.size != height * width * _CHANNELS:
        raise ValueError(f"the brush RLE holds {words.size} values, not {height}x{width}x{_CHANNELS}")
    return words.reshape(height, width, _CHANNELS)[:, :, 3] > 0
