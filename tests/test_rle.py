"""COCO RLE (fastsam_onnx.outputs.rle): the crop encoder gives exactly what pycocotools encodes from the full mask.

The reference is ``pycocotools.mask.encode`` of the full Fortran-order (H, W) mask: its compressed string
must equal ours byte for byte, pycocotools compressing our run lengths must give that same string (the
string form is a lossless encoding of the run lengths, so the run lengths are equal too), and pycocotools
must decode both of our forms to the mask.
"""

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastsam_onnx.masks import MaskCrop
from fastsam_onnx.outputs.rle import decode_rle, encode_rle, encode_rles, rle_string, run_lengths, string_counts
from fastsam_onnx.result import Result

mask_utils = pytest.importorskip("pycocotools.mask")


def check(x0: int, y0: int, crop: np.ndarray, shape: tuple[int, int]) -> None:
    """Our encoding of ``crop`` at (x0, y0) of a ``shape`` canvas against pycocotools' of the full mask."""
    H, W = shape
    full = np.zeros((H, W), np.uint8)
    full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    ref = mask_utils.encode(np.asfortranarray(full))
    arr = run_lengths(x0, y0, crop, shape)
    assert arr.dtype == np.int64 and arr.ndim == 1
    counts = arr.tolist()
    assert rle_string(counts) == rle_string(arr) == ref["counts"].decode()
    string = encode_rle(x0, y0, crop, shape)  # the default: COCO's compressed string
    assert string == encode_rle(x0, y0, crop, shape, compressed=True) == {"size": [H, W], "counts": ref["counts"].decode()}
    plain = encode_rle(x0, y0, crop, shape, compressed=False)
    assert plain == {"size": [H, W], "counts": counts} and all(type(c) is int for c in plain["counts"])
    assert mask_utils.frPyObjects(plain, H, W)["counts"] == ref["counts"]  # pycocotools reads our run lengths
    assert sum(counts) == H * W and all(c > 0 for c in counts[1:])
    assert string_counts(string["counts"]).tolist() == counts
    np.testing.assert_array_equal(mask_utils.decode(dict(string)), full)  # and our string as it is
    np.testing.assert_array_equal(decode_rle(plain), full.astype(bool))
    np.testing.assert_array_equal(decode_rle(string), full.astype(bool))


def placed(rng: np.random.Generator, box: tuple[int, int, int, int], p: float) -> tuple:
    """(x0, y0, crop) for the box (x0, y0, w, h), each pixel on with probability ``p``."""
    x0, y0, w, h = box
    return x0, y0, rng.random((h, w)) < p


@pytest.mark.parametrize("seed", range(4))
def test_random_crops(seed):
    rng = np.random.default_rng(seed)
    for _ in range(250):
        H, W = (int(v) for v in rng.integers(1, 40, 2))
        h, w = int(rng.integers(0, H + 1)), int(rng.integers(0, W + 1))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        check(*placed(rng, (x0, y0, w, h), float(rng.random())), (H, W))


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right", "all"])
def test_masks_touching_the_canvas_edge(side):
    """Crops flush with each side of the canvas, the mask on along that side (and random inside)."""
    rng = np.random.default_rng(len(side))
    for _ in range(100):
        H, W = (int(v) for v in rng.integers(2, 30, 2))
        h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        if side in ("top", "all"):
            h, y0 = (H if side == "all" else h), 0
        if side == "bottom":
            y0 = H - h
        if side in ("left", "all"):
            w, x0 = (W if side == "all" else w), 0
        if side == "right":
            x0 = W - w
        m = rng.random((h, w)) < 0.5
        edge = {"top": (0, slice(None)), "bottom": (-1, slice(None)), "left": (slice(None), 0), "right": (slice(None), -1)}
        for s in edge.values() if side == "all" else [edge[side]]:
            m[s] = True
        check(x0, y0, m, (H, W))


def test_full_height_masks():
    """h == H: runs that reach a column's bottom go on at the next column's top (joined across columns)."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        H, W = int(rng.integers(1, 25)), int(rng.integers(1, 25))
        w = int(rng.integers(1, W + 1))
        x0 = int(rng.integers(0, W - w + 1))
        m = rng.random((H, w)) < rng.choice([0.2, 0.8, 0.97])
        m[-1, ::2] = True  # bottom of every other column on
        m[0, 1::2] = True  # top of the others: runs crossing the column boundary
        check(x0, 0, m, (H, W))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (5, 7), (64, 48), (300, 200)])
def test_full_empty_and_one_pixel_masks(shape):
    H, W = shape
    check(0, 0, np.ones(shape, bool), shape)  # full image: [0, H*W]
    check(0, 0, np.zeros(shape, bool), shape)
    check(0, 0, np.zeros((0, 0), bool), shape)  # an instance whose crop came out empty
    check(W // 2, H // 2, np.zeros((1, 1), bool), shape)
    for y, x in {(0, 0), (H - 1, 0), (0, W - 1), (H - 1, W - 1), (H // 2, W // 2)}:  # 1 px: corners, centre
        check(x, y, np.ones((1, 1), bool), shape)
        one = np.zeros(shape, bool)
        one[y, x] = True
        check(0, 0, one, shape)  # the same pixel inside a full-canvas crop


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (1, 37), (37, 1)])
def test_one_pixel_wide_and_tall_canvases(shape):
    rng = np.random.default_rng(sum(shape))
    H, W = shape
    for _ in range(100):
        h, w = int(rng.integers(0, H + 1)), int(rng.integers(0, W + 1))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        check(*placed(rng, (x0, y0, w, h), float(rng.random())), shape)


@st.composite
def crops(draw):
    H, W = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    h, w = draw(st.integers(0, H)), draw(st.integers(0, W))
    y0, x0 = draw(st.integers(0, H - h)), draw(st.integers(0, W - w))
    m = draw(hnp.arrays(bool, (h, w)))
    return x0, y0, m, (H, W)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crops())
def test_any_crop(c):
    check(*c)


def test_large_counts_compress_as_pycocotools():
    """Counts far past 5 bits, and deltas of both signs, on a big canvas (a few pixels on)."""
    H, W = 4000, 3000
    m = np.zeros((50, 40), bool)
    m[[0, 3, 49], [0, 39, 17]] = True
    m[10:40, 5:30] = True
    for x0, y0 in [(0, 0), (2960, 3950), (1234, 567)]:
        check(x0, y0, m, (H, W))


def test_work_scales_with_the_crop():
    """A small crop on a 40000 x 40000 canvas: no full-size array (1.6 GB as bool), and to_json likewise."""
    m = np.zeros((64, 48), bool)
    m[5:60, 3:40] = True
    shape = (40_000, 40_000)
    tracemalloc.start()
    try:
        counts = run_lengths(30_000, 20_000, m, shape)
        r = Result(np.array([[30_000, 20_000, 30_048, 20_064]], np.float32), np.ones(1, np.float32),
                   [MaskCrop(30_000, 20_000, m)], shape, shape)
        seg = r.to_json()["instances"][0]["segmentation"]
        plain = r.to_json(compressed=False)["instances"][0]["segmentation"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert seg == {"size": list(shape), "counts": rle_string(counts)}
    assert plain == {"size": list(shape), "counts": counts.tolist()}
    assert sum(counts) == shape[0] * shape[1] and len(counts) == 2 * 37 + 1


def test_string_counts_refuses_what_is_not_an_rle_string():
    for bad in ["\x00", "abc~", "0p"]:  # below '0', above 'o', a last group that says more follows
        with pytest.raises(ValueError):
            string_counts(bad)
    assert string_counts("").size == 0


def test_a_crop_view_that_is_not_contiguous():
    """A crop handed in as a strided view (a slice of a bigger array) encodes as its copy does."""
    rng = np.random.default_rng(3)
    big = rng.random((60, 80)) < 0.4
    view = big[5:50:2, 7:70:3]
    assert not view.flags.c_contiguous
    check(3, 4, view, (40, 30))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(1, 40), st.integers(1, 1 << 15), st.integers(1, 1 << 24)), min_size=1, max_size=200))
def test_any_counts_compress_as_pycocotools(counts):
    """rle_string's table of small values, its few large values (encoded apart), and its whole-array path when most are
    large: each the COCO API's string (pycocotools' frPyObjects of the run lengths, on an (n, 1) canvas)."""
    counts = [0, *counts] if len(counts) % 3 == 0 else counts  # a leading zero run of length 0 sometimes
    ref = mask_utils.frPyObjects({"size": [sum(counts), 1], "counts": counts}, sum(counts), 1)["counts"].decode()
    assert rle_string(counts) == ref
    assert string_counts(ref).tolist() == counts


@pytest.mark.parametrize("h", [1, 61, 62, 63, 64, 65, 126, 190])
def test_columns_across_word_boundaries(h):
    """The change bits are a stream of 64-bit words (each column padded to h + 2 pixels): columns that end on,
    before or after a word boundary, runs crossing it, and crops whose pixels fill the last word exactly."""
    rng = np.random.default_rng(h)
    for w in (1, 2, 3, 31, 32, 64 // (h + 2) + 1 if h < 62 else 5):
        for p in (0.03, 0.5, 0.97, 1.0):
            m = rng.random((h, w)) < p
            check(2, 3, m, (h + 7, w + 5))
            check(0, 0, m, (h, w + 1))  # full height: runs go on into the next column


def test_area_comes_from_the_runs():
    """encode_rles gives encode_rle's RLE of each crop and its pixel count; to_json's areas are Result.areas."""
    rng = np.random.default_rng(5)
    crops = []
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        m = rng.random((h, w)) < rng.random()
        x0, y0 = int(rng.integers(0, 120 - w)), int(rng.integers(0, 100 - h))
        crops.append(MaskCrop(x0, y0, m))
    for compressed in (True, False):
        got = encode_rles(crops, (100, 120), compressed)  # on the output threads
        assert [rle for rle, _ in got] == [encode_rle(*c, (100, 120), compressed) for c in crops]
        assert [area for _, area in got] == [int(c.mask.sum()) for c in crops]
    boxes = np.array([[c.x0, c.y0, c.x0 + c.mask.shape[1], c.y0 + c.mask.shape[0]] for c in crops], np.float32)
    r = Result(boxes, np.ones(len(crops), np.float32), crops, (100, 120), (100, 120))
    got = [inst["area"] for inst in r.to_json()["instances"]]
    assert got == [int(c.mask.sum()) for c in crops] == r.areas.tolist()


@pytest.mark.parametrize("threads", ["1", "2"])
def test_many_crops_at_once_are_each_pycocotools(monkeypatch, threads):
    """encode_rles takes the crops a chunk at a time and makes their strings in whole-array passes over all of a
    chunk's runs: every crop's string is still pycocotools' own, whatever its neighbours in the chunk. The mix
    has empty and full crops (one or two runs), one-pixel crops, masks whose counts are mostly large values
    (sparse pixels on a tall canvas: the whole-array path) between ordinary ones, and crops on the canvas's edges."""
    monkeypatch.setenv("FASTSAM_ONNX_OUTPUT_THREADS", threads)
    rng = np.random.default_rng(11)
    H, W = 40_000, 90
    crops = []
    for k in range(60):
        kind = k % 6
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        m = rng.random((h, w)) < rng.random()
        if kind == 1:
            m = np.zeros((h, w), bool)
        elif kind == 2:
            m = np.ones((h, w), bool)
        elif kind == 3:
            m = np.ones((1, 1), bool)
        elif kind == 4:  # a pixel per column, the columns as tall as the canvas: counts of ~40000, mostly large
            h, w = H, int(rng.integers(40, 60))
            m = np.zeros((h, w), bool)
            m[rng.integers(0, h, w), np.arange(w)] = True
        x0 = int(rng.integers(0, W - m.shape[1] + 1))
        y0 = 0 if m.shape[0] == H else int(rng.choice([0, H - m.shape[0], int(rng.integers(0, H - m.shape[0] + 1))]))
        crops.append(MaskCrop(x0, y0, m))
    got = encode_rles(crops, (H, W))
    for (rle, area), (x0, y0, m) in zip(got, crops):
        full = np.zeros((H, W), np.uint8)
        full[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        assert rle == {"size": [H, W], "counts": mask_utils.encode(np.asfortranarray(full))["counts"].decode()}
        assert area == int(m.sum())
