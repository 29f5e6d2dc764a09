"""Masks as polygons: outer contours and holes, offsets, simplification relative to the perimeter; the bulk
:func:`crops_polygons` against the per-mask function, vertex for vertex."""

import math

import cv2
import numpy as np
import pytest

from fastsam_onnx import BadArgumentError, FastSAM
from fastsam_onnx.models import example_image
from fastsam_onnx.outputs import packing
from fastsam_onnx.outputs import polygons as P
from fastsam_onnx.masks import MaskCrop
from fastsam_onnx.outputs.polygons import crops_exteriors, crops_polygons, mask_polygons


def _fill(shape, polygons):
    """Rasterise polygons (exteriors on, holes off) the way annotation tools draw them."""
    out = np.zeros(shape, np.uint8)
    for p in polygons:
        cv2.fillPoly(out, [np.round(p.exterior).astype(np.int32)], 1)
        for h in p.holes:
            cv2.fillPoly(out, [np.round(h).astype(np.int32)], 0)
            cv2.polylines(out, [np.round(h).astype(np.int32)], True, 1)  # hole contours trace mask pixels
    return out.astype(bool)


def test_square_with_a_hole_and_a_second_part():
    m = np.zeros((50, 60), bool)
    m[10:40, 10:50] = True
    m[20:30, 20:30] = False
    m[44:48, 2:6] = True
    polys = mask_polygons(m)
    assert len(polys) == 2 and len(polys[0].holes) == 1 and not polys[1].holes
    assert polys[0].exterior.min(0).tolist() == [10, 10] and polys[0].exterior.max(0).tolist() == [49, 39]
    assert (_fill(m.shape, polys) == m).all()  # the traced polygons rasterise back to the mask exactly


def test_offset_touching_the_border_and_empty():
    m = np.ones((5, 7), bool)  # touches every border of its crop
    (p,) = mask_polygons(m, offset=(100, 200))
    assert p.exterior.min(0).tolist() == [100, 200] and p.exterior.max(0).tolist() == [106, 204]
    assert mask_polygons(np.zeros((4, 4), bool)) == []
    assert mask_polygons(np.eye(6, dtype=bool)) == []  # a one-pixel diagonal line encloses nothing: dropped


def test_epsilon_is_relative_to_the_perimeter():
    yy, xx = np.mgrid[:200, :200]
    disk = (xx - 100) ** 2 + (yy - 100) ** 2 < 80**2
    n = [len(mask_polygons(disk, eps)[0].exterior) for eps in (0.0, 0.001, 0.01, 0.05)]
    assert n[0] > n[1] > n[2] > n[3] >= 3, n
    big = cv2.resize(disk.astype(np.uint8), (400, 400), interpolation=cv2.INTER_NEAREST).astype(bool)
    assert abs(len(mask_polygons(big, 0.01)[0].exterior) - n[2]) <= 0.4 * n[2]  # scale-free, as epsilon_factor
    for bad in (-0.1, 1.0, float("nan"), "x"):
        with pytest.raises((BadArgumentError, ValueError)):
            mask_polygons(disk, bad)


def test_result_polygons_cover_the_instances():
    result = FastSAM().segment(str(example_image()))
    polys = result.polygons(0.0)
    assert len(polys) == len(result)
    for i, ps in enumerate(polys):
        filled = _fill(result.orig_shape, ps)
        m = result.mask(i)
        iou = (filled & m).sum() / (filled | m).sum()
        assert iou > 0.97, (i, iou)


# ---- crops_polygons: many crops in one packed canvas, identical to mask_polygons crop by crop ----


def _assert_same(got, want):
    """Exactly the same polygons: count, order, vertex arrays (dtype, shape, values) and holes."""
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), (k, len(g), len(w))
        for pg, pw in zip(g, w):
            assert pg.exterior.dtype == pw.exterior.dtype == np.float32
            assert np.array_equal(pg.exterior, pw.exterior), k
            assert len(pg.holes) == len(pw.holes), k
            for hg, hw in zip(pg.holes, pw.holes):
                assert hg.dtype == np.float32 and np.array_equal(hg, hw), k


def _per_mask(crops, eps=0.0, min_points=3):
    return [mask_polygons(m, eps, (x0, y0), min_points) for x0, y0, m in crops]


def _smooth(rng, h, w):
    """Discs, rectangles with holes (and islands inside them), several parts, equal squares (area ties)."""
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), bool)
    kind = rng.integers(5)
    if kind == 0:  # discs, some overlapping the crop edges
        for _ in range(rng.integers(1, 4)):
            cx, cy, r = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h, rng.uniform(0.1, 0.6) * min(h, w) + 1
            m |= (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
    elif kind == 1:  # a rectangle with holes, an island in one of them
        m[h // 8 : h - h // 8, w // 8 : w - w // 8] = True
        for _ in range(rng.integers(1, 5)):
            y, x = rng.integers(0, max(h - 4, 1)), rng.integers(0, max(w - 4, 1))
            m[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = False
        m[h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3] = False
        m[h // 2 - 1 : h // 2 + 1, w // 2 - 1 : w // 2 + 1] = True
    elif kind == 2:  # touches every edge of the crop, with holes
        m[:] = True
        m[rng.random((h, w)) < 0.02] = False
    elif kind == 3:  # a grid of equal squares: many exteriors of the same area, and equal holes
        m[1::6, :] = m[:, 1::6] = False
        m[(yy % 6 >= 2) & (yy % 6 <= 4) & (xx % 6 >= 2) & (xx % 6 <= 4)] = True
        m[(yy % 12 == 3) & (xx % 12 == 3)] = False
    else:  # several blobs of thresholded smooth noise
        m = cv2.GaussianBlur(rng.random((h, w)), (0, 0), rng.uniform(1.5, 4)) > 0.5
    return m


def _ragged(rng, h, w):
    """Noise: many tiny contours, single pixels, one-pixel lines and holes."""
    if rng.random() < 0.5:
        return rng.random((h, w)) < rng.uniform(0.2, 0.8)
    return cv2.GaussianBlur(rng.random((h, w)), (0, 0), rng.uniform(0.5, 1.2)) > 0.5


def _edge_cases():
    one = np.ones((1, 1), bool)
    line = np.zeros((1, 9), bool)
    line[0, ::2] = True
    dots = np.zeros((7, 7), bool)
    dots[::2, ::2] = True
    grid = np.zeros((30, 40), bool)
    grid[3:25, 5:30] = True
    grid[8:12, 9:20] = False
    return [
        grid[::2, 1::3], np.asfortranarray(grid), grid[::-1, ::-1],  # strided, Fortran-order and reversed views
        one, np.ones((1, 13), bool), np.ones((13, 1), bool), line, line.T.copy(), dots, np.eye(5, dtype=bool),
        np.ones((2, 2), bool), np.zeros((6, 4), bool), np.zeros((0, 5), bool), np.zeros((5, 0), bool),
        np.pad(np.ones((3, 3), bool), 2), np.ones((40, 3), bool), np.ones((3, 40), bool),
    ]


def _crops(rng, masks, spread=1000):
    return [MaskCrop(int(rng.integers(0, spread)), int(rng.integers(0, spread)), m) for m in masks]


@pytest.mark.parametrize("eps", [0.0, 0.005, 0.02])
def test_bulk_matches_per_mask_on_smooth_masks_and_edge_cases(eps):
    rng = np.random.default_rng(1)
    masks = [_smooth(rng, int(rng.integers(1, 90)), int(rng.integers(1, 90))) for _ in range(150)]
    masks += [_smooth(rng, int(rng.integers(20, 200)), int(rng.integers(20, 200))) for _ in range(30)]
    masks += _edge_cases()
    masks = [masks[i] for i in rng.permutation(len(masks))]
    crops = _crops(rng, masks)
    want = _per_mask(crops, eps)
    assert sum(map(len, want)) > 300 and sum(len(p.holes) for ps in want for p in ps) > 50
    _assert_same(crops_polygons(crops, eps), want)


@pytest.mark.parametrize("eps", [0.0, 0.005, 0.02])
def test_bulk_matches_per_mask_on_ragged_noise(eps):
    rng = np.random.default_rng(2)
    masks = [_ragged(rng, int(rng.integers(1, 120)), int(rng.integers(1, 120))) for _ in range(60)]
    crops = _crops(rng, masks)
    want = _per_mask(crops, eps)
    assert sum(map(len, want)) > 1000 and sum(len(p.holes) for ps in want for p in ps) > 300
    _assert_same(crops_polygons(crops, eps), want)


@pytest.mark.parametrize("eps", [0.0, 0.005])
def test_bulk_matches_per_mask_on_very_different_sizes(eps):
    """Big crops that get a canvas of their own (wider or taller than a strip), thin ones, many small ones in
    several strips, in any order."""
    rng = np.random.default_rng(3)
    shapes = [(700, 640), (530, 20), (20, 900), (1, 1200), (1500, 1), (300, 300), (511, 200), (200, 510)]
    shapes += [(int(rng.integers(1, 60)), int(rng.integers(1, 60))) for _ in range(400)]
    masks = [(_ragged if rng.random() < 0.4 else _smooth)(rng, h, w) for h, w in shapes]
    masks = [masks[i] for i in rng.permutation(len(masks))]
    crops = _crops(rng, masks, 3000)
    strips = packing.layout([m.shape for m in masks if m.size])[3]
    assert len(strips) >= 5  # several findContours canvases
    _assert_same(crops_polygons(crops, eps), _per_mask(crops, eps))


@pytest.mark.parametrize("min_points", [1, 2, 5, 12])
def test_bulk_min_points(min_points):
    rng = np.random.default_rng(4)
    masks = [_ragged(rng, 40, 50) for _ in range(8)] + [_smooth(rng, 30, 30) for _ in range(8)] + _edge_cases()
    crops = _crops(rng, masks)
    for eps in (0.0, 0.01):
        _assert_same(crops_polygons(crops, eps, min_points), _per_mask(crops, eps, min_points))


def test_bulk_offsets_large_fractional_and_non_bool():
    """Offsets past int16 (64-bit shoelace), fractional or past float32's integers (the two-step vertex sum
    of mask_polygons), negative ones, and masks of other dtypes."""
    rng = np.random.default_rng(5)
    masks = [_smooth(rng, 50, 60) for _ in range(6)] + [_ragged(rng, 30, 30) for _ in range(3)]
    for offsets in ([(40000, 70000)] * 9, [(2.5, 7.25)] * 9, [(1 << 25, 3)] * 9, [(-20, -300)] * 9):
        crops = [MaskCrop(x, y, m) for (x, y), m in zip(offsets, masks)]
        _assert_same(crops_polygons(crops), _per_mask(crops))
        _assert_same(crops_polygons(crops, 0.01), _per_mask(crops, 0.01))
    bar = np.zeros((40, 1500), bool)  # simplified to long edges: shoelace terms past int32 at these offsets
    bar[1:20, 2:300] = True
    bar[25:30, 2:1498] = True  # the larger part, found second
    crops = [MaskCrop(3_000_000, 5_000_000, bar), MaskCrop(9_000_000, 1, bar.T.copy())]
    _assert_same(crops_polygons(crops, 0.01), _per_mask(crops, 0.01))
    others = [masks[0].astype(np.uint8), masks[1].astype(np.float32) * 0.7 + 0.5, masks[2].astype(np.int64) * 3]
    crops = _crops(rng, others)
    _assert_same(crops_polygons(crops), _per_mask(crops))


def test_bulk_crops_traced_alone_of_any_dtype_and_layout():
    """Crops too large to pack are traced where they lie (no copy for contiguous bool and uint8 masks): the
    same polygons for other dtypes, a strided view and a mask touching every edge."""
    rng = np.random.default_rng(8)
    big = _smooth(rng, 600, 700)
    big[0, :] = big[:, -1] = True
    views = [big, big.astype(np.uint8) * 255, big.astype(np.float32) * 0.7 + 0.5, np.asfortranarray(big),
             _smooth(rng, 1300, 620)[::2], _ragged(rng, 530, 40)]
    crops = [MaskCrop(int(rng.integers(0, 50)), int(rng.integers(0, 50)), m) for m in views]
    assert all(max(c.mask.shape) + 2 > math.isqrt(packing.STRIP_PX) for c in crops)  # each in a strip of its own
    for eps in (0.0, 0.01):
        _assert_same(crops_polygons(crops, eps), _per_mask(crops, eps))
        pts, lens, owner = crops_exteriors(crops, eps)
        assert len(set(owner.tolist())) == len(crops)


def test_bulk_empty_and_result_polygons():
    assert crops_polygons([]) == []
    empty = [MaskCrop(0, 0, np.zeros((0, 0), bool)), MaskCrop(5, 5, np.zeros((9, 9), bool))]
    assert crops_polygons(empty) == [[], []]
    assert crops_polygons(empty + [MaskCrop(3, 4, np.eye(4, dtype=bool))]) == [[], [], []]
    with pytest.raises(BadArgumentError):
        crops_polygons([MaskCrop(0, 0, np.ones((2, 2, 2), bool))])
    with pytest.raises(BadArgumentError):
        crops_polygons(empty, 1.5)
    result = FastSAM().segment(str(example_image()))
    crops = result.original_crops()
    assert len(crops) > 5
    for eps in (0.0, 0.005):
        _assert_same(result.polygons(eps), _per_mask(crops, eps))
    _assert_same(crops_polygons(c for c in crops), _per_mask(crops))  # any iterable of crops


def test_bulk_one_huge_crop():
    n = 4512
    yy, xx = np.ogrid[:n, :n]
    m = (xx - 2000) ** 2 + (yy - 2300) ** 2 < 2100**2
    m[1000:1100, 1000:3000] = False
    m[:, :3] = True  # also touching the crop's left edge
    crops = [MaskCrop(7, 9, m), MaskCrop(0, 0, np.ones((3, 3), bool))]
    got = crops_polygons(crops)
    _assert_same(got, _per_mask(crops))
    assert len(got[0]) == 1 and len(got[0][0].holes) == 1


def test_packing_stays_proportional_to_the_crops():
    """The canvases hold at most about twice the crops' padded area, whatever their shapes, plus one strip."""
    rng = np.random.default_rng(6)
    cases = [
        [(int(rng.integers(1, 500)), int(rng.integers(1, 500))) for _ in range(300)],
        [(1, 1)] * 1000,
        [(510, 1)] + [(1, 510)] * 50,
        [(4512, 4512)],
        [(3, 3)],
        [(int(rng.integers(1, 3000)), int(rng.integers(1, 40))) for _ in range(50)],
        [(250, 260)] * 40,
    ]
    for shapes in cases:
        tiles, tops, keys, strips = packing.layout(shapes)
        assert sorted(tiles[:, 0]) == list(range(len(shapes)))
        padded = sum((h + 1) * (w + 1) for h, w in shapes)
        canvas = sum(rows * width for _, rows, width, _ in strips)
        assert canvas <= 2 * padded + packing.STRIP_PX, (shapes[:3], canvas, padded)
        assert np.all(np.diff(keys) > 0) and np.all(np.diff(tops) > 0)
        ink = np.zeros(sum(rows for _, rows, _, _ in strips) + 1, np.int64)  # strips stack without overlap
        for y0, rows, width, placed in strips:
            assert ink[y0 : y0 + rows].sum() == 0
            ink[y0 : y0 + rows] = 1
            for i, x, y in placed:  # inside the strip, with a zero row and column around
                assert [i, x, y0 + y] in tiles.tolist()
                h, w = shapes[i]
                assert x >= 1 and y >= 1 and x + w + 1 <= width and y + h + 1 <= rows


def test_bulk_perimeter_is_cv2_arclength():
    """The bulk tolerance of the simplification: exactly cv2.arcLength of every traced contour."""
    rng = np.random.default_rng(7)
    contours = []
    for _ in range(40):
        m = np.pad(_ragged(rng, 40, 40).astype(np.uint8), 1)
        contours += cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)[0]
    pts = np.concatenate(contours).reshape(-1, 2)
    lens = np.fromiter(map(len, contours), np.int64)
    ends = np.cumsum(lens)
    got = P._perimeters(pts, ends - lens, ends)
    assert np.array_equal(got, [cv2.arcLength(c, True) for c in contours])
    # the same lengths from the CHAIN_APPROX_SIMPLE traces (runs as one step), which the exteriors' path uses
    simple = []
    for _ in range(40):
        m = np.pad(_ragged(rng, 40, 40).astype(np.uint8), 1)
        none = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)[0]
        simple += zip(none, cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[0])
    pts = np.concatenate([s for _, s in simple]).reshape(-1, 2)
    ends = np.cumsum([len(s) for _, s in simple])
    assert pts.shape[0] < sum(len(n) for n, _ in simple)
    assert np.array_equal(P._perimeters(pts, ends - [len(s) for _, s in simple], ends), [cv2.arcLength(n, True) for n, _ in simple])


def test_sibling_rank_walks_the_chains_when_they_are_not_in_order():
    # parent 0 has children 3 -> 1 -> 2 (chain order differs from the numbering); 4 is a lone exterior
    hier = np.array([[4, -1, 3, -1], [2, 3, -1, 0], [-1, 1, -1, 0], [1, -1, -1, 0], [-1, 0, -1, -1]])
    assert P._sibling_rank(hier, np.array([1, 2, 3])).tolist() == [1, 2, 0]
    ordered = np.array([[4, -1, 1, -1], [2, -1, -1, 0], [3, 1, -1, 0], [-1, 2, -1, 0], [-1, 0, -1, -1]])
    assert P._sibling_rank(ordered, np.array([1, 2, 3])).tolist() == [1, 2, 3]


def _outer_per_mask(crops, eps=0.0, min_points=3):
    """Per crop, X-AnyLabeling's masks_to_shapes (cv2.RETR_EXTERNAL, CHAIN_APPROX_NONE, approxPolyDP to eps times
    each contour's perimeter) with mask_polygons' rules: at least min_points vertices enclosing some area, largest
    first (ties in trace order), in image pixels."""
    out = []
    for x0, y0, m in crops:
        found = []
        if m.size:
            padded = cv2.copyMakeBorder(np.asarray(m).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
            for c in cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]:
                if eps > 0:
                    c = cv2.approxPolyDP(c, eps * cv2.arcLength(c, True), True)
                area = cv2.contourArea(c) if len(c) >= min_points else 0.0
                if area:
                    found.append((-area, len(found), c.reshape(-1, 2).astype(np.float32) + np.float32([x0 - 1, y0 - 1])))
        out.append([c for *_, c in sorted(found, key=lambda t: t[:2])])
    return out


@pytest.mark.parametrize("eps", [0.0, 0.001, 0.005, 0.05])
@pytest.mark.parametrize("batch_px", [1 << 21, 1 << 12])
def test_exteriors_as_arrays_are_the_outermost_contours(monkeypatch, eps, batch_px):
    """crops_exteriors (the polygon file formats' path: arrays, no object per polygon; with simplification it
    traces the straight runs as one step) gives X-AnyLabeling's outer contours of each crop vertex for vertex, in
    crop order and largest first, also when the crops span many batches: crops_polygons' exteriors less those of
    parts lying inside another part of the same crop (islands in holes)."""
    monkeypatch.setattr(P, "_BATCH_PX", batch_px)
    rng = np.random.default_rng(5)
    masks = [_ragged(rng, int(rng.integers(1, 120)), int(rng.integers(1, 120))) for _ in range(40)]
    masks += [_smooth(rng, int(rng.integers(1, 200)), int(rng.integers(1, 200))) for _ in range(40)] + _edge_cases()
    crops = _crops(rng, [masks[i] for i in rng.permutation(len(masks))])
    want = _outer_per_mask(crops, eps)
    pts, lens, owner = P.crops_exteriors(crops, eps)
    assert owner.tolist() == [i for i, ps in enumerate(want) for _ in ps]
    assert lens.tolist() == [len(p) for ps in want for p in ps]
    expected = np.concatenate([p for ps in want for p in ps])
    assert pts.dtype == expected.dtype
    np.testing.assert_array_equal(pts, expected)
    islands = 0
    traced = _outer_per_mask(crops) if eps else want  # islands lie inside the traced (not simplified) exteriors
    for outer, traced_outer, parts in zip(want, traced, crops_polygons(crops, eps)):
        keys = [p.tobytes() for p in outer]
        assert [p.exterior.tobytes() for p in parts if p.exterior.tobytes() in keys] == keys  # same order
        for p in parts:
            if p.exterior.tobytes() not in keys:  # an island: inside another part's exterior
                islands += 1
                x, y = (float(v) for v in p.exterior[0])
                assert any(cv2.pointPolygonTest(o, (x, y), False) > 0 for o in traced_outer)
    assert islands > 0  # the masks have some
    empty = P.crops_exteriors([MaskCrop(0, 0, np.zeros((0, 3), bool)), MaskCrop(2, 2, np.zeros((4, 4), bool))])
    assert [a.shape for a in empty] == [(0, 2), (0,), (0,)]
    _assert_same(crops_polygons(crops), _per_mask(crops))
