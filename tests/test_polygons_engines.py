"""The polygon engines: the compiled tracer (``[fast]``) against OpenCV's ``findContours`` on what stresses a
border follower (nesting, hundreds of contours per crop, one-pixel structures, 8-connected diagonals), its
output buffers' second run, and how the engine is chosen. ``tests/test_polygons.py`` runs its bulk tests with
both engines too."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from fastsam_onnx import BadArgumentError
from fastsam_onnx.masks import MaskCrop
from fastsam_onnx.polygons import crops_polygons, mask_polygons

from test_polygons import _assert_same, _per_mask

pytest.importorskip("numba", reason="the numba engine is the [fast] extra (installed by the dev extra and CI)")


def _opencv_contours(m):
    """Every contour OpenCV finds in an (h, w) mask with its hole flag, as {(x, y of its start, is_hole):
    (K, 2) vertices}."""
    padded = cv2.copyMakeBorder(m.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cs, hier = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE, offset=(-1, -1))
    if hier is None:
        return {}
    return {(*c[0, 0].tolist(), bool(h[3] >= 0)): c.reshape(-1, 2) for c, h in zip(cs, hier[0])}


def _traced(masks):
    from fastsam_onnx import polygons_numba as N

    flat = np.concatenate([m.view(np.uint8).reshape(-1) for m in masks])
    dims = np.zeros((len(masks), 5), np.int64)
    dims[:, :2] = [m.shape for m in masks]
    dims[:, 2] = np.cumsum(dims[:, 0] * dims[:, 1]) - dims[:, 0] * dims[:, 1]
    tile, comp = N.scratch(dims)
    n_pts, n_contours = N.trace_crops(flat, dims, tile, comp, np.empty((0, 2), np.int32), np.empty((0, 5), np.int64))
    pts, info = np.empty((n_pts, 2), np.int32), np.empty((n_contours, 5), np.int64)
    assert N.trace_crops(flat, dims, tile, comp, pts, info) == (n_pts, n_contours)  # counted, then written
    return pts, info


def _rings(n):
    """Concentric square rings: outer, hole, island in the hole, its hole, ... ``n`` levels."""
    m = np.zeros((4 * n + 3, 4 * n + 3), bool)
    for k in range(n):
        m[2 * k + 1 : 4 * n + 2 - 2 * k, 2 * k + 1 : 4 * n + 2 - 2 * k] = k % 2 == 0
    return m


def test_every_contour_is_opencvs_with_its_parent():
    """Every contour (not only the kept ones), its vertices from OpenCV's start pixel in OpenCV's order, and
    a hole's outer contour: on noise, rings nested 9 deep, diagonal chains and one-pixel lines."""
    rng = np.random.default_rng(11)
    masks = [rng.random((int(rng.integers(1, 70)), int(rng.integers(1, 70)))) < rng.uniform(0.2, 0.8) for _ in range(40)]
    masks += [_rings(9), np.eye(9, dtype=bool) | np.eye(9, dtype=bool)[::-1], np.ones((1, 1), bool)]
    checker = (np.indices((40, 40)).sum(0) % 2).astype(bool)  # 8-connected: one component, 400 holes
    masks += [checker, ~checker]
    pts, info = _traced(masks)
    for c, m in enumerate(masks):
        want = _opencv_contours(m)
        mine = np.flatnonzero(info[:, 0] == c)
        assert len(mine) == len(want), c
        for k in mine:
            start, n = info[k, 2], info[k, 3]
            got = pts[start : start + n]
            key = (*got[0].tolist(), bool(info[k, 1] >= 0))
            assert np.array_equal(got, want[key]), (c, k)
            assert info[k, 4] == abs(round(2 * cv2.contourArea(got)))
            if info[k, 1] >= 0:  # its parent: the outer contour of its component
                parent = info[k, 1]
                assert info[parent, 1] == -1 and info[parent, 0] == c
    rings = np.flatnonzero(info[:, 0] == len(masks) - 5)
    assert len(rings) == 9 and (info[rings, 1] >= 0).sum() == 4  # CCOMP: islands in holes are outer contours


def test_hundreds_of_contours_in_one_crop_match_per_mask():
    """Past OpenCV's 126 border labels per image (it then re-traces to find a hole's parent)."""
    rng = np.random.default_rng(12)
    blobs = cv2.GaussianBlur(rng.random((300, 400)), (0, 0), 1.0) > 0.5
    holes = np.ones((200, 300), bool)
    holes[rng.random((200, 300)) < 0.03] = False
    crops = [MaskCrop(5, 7, blobs), MaskCrop(0, 0, holes), MaskCrop(3, 3, _rings(30)), MaskCrop(1, 1, ~_rings(7))]
    want = _per_mask(crops)
    assert len(want[0]) > 300 and len(want[1][0].holes) > 300
    for eps in (0.0, 0.01):
        _assert_same(crops_polygons(crops, eps, engine="numba"), _per_mask(crops, eps))


def test_output_buffers_grow_for_ragged_masks():
    """More vertices and contours than the first buffers hold: counted, then traced again into room for all."""
    from fastsam_onnx import polygons_numba as N

    rng = np.random.default_rng(13)
    noise = rng.random((200, 200)) < 0.5
    masks, offsets = [noise], np.array([[10, 20]], np.int64)
    pts, info = _traced(masks)
    assert len(pts) > 4 * 400 + 4096 and len(info) > 256  # past the first buffers of numba_polygons
    got = N.numba_polygons(masks, offsets, 0.0, 3)
    _assert_same(got, [mask_polygons(noise, 0.0, (10, 20))])


def test_engine_choice(monkeypatch):
    from fastsam_onnx.extras import resolve_engine

    crops = [MaskCrop(0, 0, np.ones((3, 3), bool))]
    monkeypatch.delenv("FASTSAM_ONNX_POLYGONS", raising=False)
    assert resolve_engine("polygon") == "numba"  # the default: auto, numba when installed
    for name in ("opencv", "numba"):
        monkeypatch.setenv("FASTSAM_ONNX_POLYGONS", name)
        assert resolve_engine("polygon") == name
        assert len(crops_polygons(crops)[0]) == 1
    for bad in ("numpy", "", "OpenCV"):
        with pytest.raises(BadArgumentError, match="polygon engine"):
            crops_polygons([], engine=bad)
    monkeypatch.setenv("FASTSAM_ONNX_POLYGONS", "fast")
    with pytest.raises(BadArgumentError, match=r"\$FASTSAM_ONNX_POLYGONS must be one of auto, opencv, numba"):
        crops_polygons(crops)
    monkeypatch.setattr("fastsam_onnx.extras.missing_modules", lambda *m: list(m))  # as without the [fast] extra
    monkeypatch.delenv("FASTSAM_ONNX_POLYGONS")
    assert resolve_engine("polygon") == "opencv" and len(crops_polygons(crops)[0]) == 1
    with pytest.raises(BadArgumentError, match=r"numba polygon engine needs numba: pip install 'fastsam-onnx\[fast\]'"):
        crops_polygons(crops, engine="numba")


def test_numba_is_imported_only_when_polygons_use_it(monkeypatch):
    monkeypatch.delenv("FASTSAM_ONNX_POLYGONS", raising=False)
    code = (
        "import sys\nimport numpy as np\nimport fastsam_onnx\nfrom fastsam_onnx.polygons import crops_polygons\n"
        "c = [(0, 0, np.ones((4, 4), bool))]\n"
        "a = crops_polygons(c, engine='opencv')\nprint('numba' in sys.modules)\n"
        "b = crops_polygons(c)\nprint('numba' in sys.modules, (a[0][0].exterior == b[0][0].exterior).all())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]
