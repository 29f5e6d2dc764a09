"""Masks as polygons: outer contours and holes, offsets, simplification relative to the perimeter."""

import cv2
import numpy as np
import pytest

from fastsam_onnx import BadArgumentError, FastSAM
from fastsam_onnx.models import example_image
from fastsam_onnx.polygons import mask_polygons


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
