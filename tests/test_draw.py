"""Overlays (fastsam_onnx.outputs.draw): drawn from the crops in bands, the same as drawing full-size masks.

The reference here is the plain way: every instance as a full (h0, w0) mask, written in drawing order (largest
first) into an int64 label map; covered pixels blended with their label's colour, and pixels whose 3 x 3
neighbourhood holds another label painted in the colour of the neighbourhood's latest label (scipy's
maximum/minimum filters). The overlay draws from the crops of :meth:`Result.original_crops` (the masks the JSON
outputs use), in bands of rows spread over threads, and must give the same bytes.
"""

import tracemalloc

import cv2
import numpy as np
import pytest
from scipy import ndimage

from fastsam_onnx import FastSAM
from fastsam_onnx.masks import MaskCrop
from fastsam_onnx.models import demo_bundle
from fastsam_onnx.outputs.draw import draw_overlay, palette
from fastsam_onnx.result import Result


def full_mask_overlay(result: Result, masks: list[np.ndarray], alpha: float = 0.5) -> np.ndarray:
    """The masks drawn from full (h0, w0) arrays, largest (by ``result.areas``) first; no boxes."""
    img = result.orig_img.copy()
    n = len(result)
    if not n:
        return img
    order = np.argsort(-np.array([m.sum() for m in masks]), kind="stable")
    top = np.zeros(img.shape[:2], np.int64)
    for rank, i in enumerate(order, 1):
        top[masks[i]] = rank
    colour_of = np.zeros((n + 1, 3), np.uint8)
    colour_of[1:] = palette(n)[order]
    blend = cv2.addWeighted(img, 1 - alpha, colour_of[top], alpha, 0)
    img[top > 0] = blend[top > 0]
    hi = ndimage.maximum_filter(top, size=3, mode="nearest")
    border = hi != ndimage.minimum_filter(top, size=3, mode="nearest")
    img[border] = colour_of[hi[border]]
    return img


def placed(crops: list[MaskCrop], shape: tuple[int, int]) -> list[np.ndarray]:
    out = []
    for x0, y0, m in crops:
        full = np.zeros(shape, bool)
        full[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        out.append(full)
    return out


@pytest.fixture(scope="module")
def model():
    return FastSAM()


def photos(assets):
    return [assets / "bus.jpg", assets / "zidane.jpg", demo_bundle() / "example.jpg"]


@pytest.mark.parametrize("conf", [0.4, 0.1])
def test_retina_overlays_equal_full_mask_drawing(model, assets, conf):
    for path in photos(assets):
        r = model.segment(str(path), conf=conf)
        assert len(r) > 3 and r.mask_shape == r.orig_shape
        expected = full_mask_overlay(r, [r.mask(i) for i in range(len(r))])
        np.testing.assert_array_equal(draw_overlay(r, boxes=False), expected, err_msg=path.name)


def test_letterboxed_overlays_draw_the_json_masks(model, assets):
    """Without retina masks the overlay shows the masks the JSON-side outputs use (bilinear un-letterbox)."""
    for path in photos(assets)[:2]:
        r = model.segment(str(path), retina_masks=False)
        assert r.mask_shape != r.orig_shape and len(r) > 3
        expected = full_mask_overlay(r, placed(r.original_crops(), r.orig_shape))
        np.testing.assert_array_equal(draw_overlay(r, boxes=False), expected, err_msg=path.name)


def synthetic() -> Result:
    """Masks touching their crop's edges and the canvas's four sides, in parts, with holes, 1 px, empty."""
    H, W = 60, 80
    rng = np.random.default_rng(3)
    crops = []
    ring = np.ones((12, 14), bool)
    ring[4:8, 5:9] = False
    crops.append(MaskCrop(0, 0, ring))  # the canvas's top-left corner, tight box, a hole
    crops.append(MaskCrop(W - 9, 20, rng.random((15, 9)) < 0.7))  # the right side, ragged
    crops.append(MaskCrop(30, H - 6, np.ones((6, 20), bool)))  # the bottom
    crops.append(MaskCrop(0, 25, np.eye(10, dtype=bool)))  # the left side, a diagonal (8-connected)
    parts = np.zeros((20, 25), bool)
    parts[0:6, 0:6] = parts[12:20, 15:25] = True  # two parts, each touching two of the crop's edges
    crops.append(MaskCrop(20, 10, parts))
    margin = np.zeros((16, 16), bool)
    margin[5:11, 4:12] = True  # a crop larger than its mask
    crops.append(MaskCrop(45, 5, margin))
    crops.append(MaskCrop(50, 40, np.ones((1, 1), bool)))  # one pixel
    crops.append(MaskCrop(10, 45, np.ones((1, 30), bool)))  # one pixel tall
    crops.append(MaskCrop(0, 0, np.zeros((0, 0), bool)))  # empty
    crops.append(MaskCrop(0, 0, np.ones((H, W), bool)))  # the whole image
    n = len(crops)
    boxes = np.array([[x0, y0, x0 + m.shape[1], y0 + m.shape[0]] for x0, y0, m in crops], np.float32)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return Result(boxes, np.linspace(0.9, 0.5, n, dtype=np.float32), crops, (H, W), (H, W), orig_img=img)


def test_letterboxed_masks_are_resized_once_per_overlay_and_prompt(model, assets, monkeypatch):
    """Letterboxed results: the overlay and a box prompt resize the crops once each (the areas that order the
    drawing and rank the boxes' masks are counted as they are resized), and the areas are those of the
    resized crops."""
    import fastsam_onnx.result as result_module

    r = model.segment(str(assets / "bus.jpg"), retina_masks=False)
    calls = []
    real = result_module.rescale_crops
    monkeypatch.setattr(result_module, "rescale_crops", lambda *a, **k: calls.append(1) or real(*a, **k))
    draw_overlay(r)
    assert len(calls) == 1
    model.prompt(r, bboxes=[[10, 10, 400, 600]])
    assert len(calls) == 2
    assert r.original_areas().tolist() == [int(np.count_nonzero(c.mask)) for c in r.original_crops()]


def test_crops_at_box_and_canvas_edges_draw_as_full_masks():
    r = synthetic()
    expected = full_mask_overlay(r, placed(r.crops, r.mask_shape))
    np.testing.assert_array_equal(draw_overlay(r, boxes=False), expected)
    assert draw_overlay(r).shape == expected.shape  # and with boxes and scores


def test_crop_contours_are_the_full_mask_contours():
    """findContours on a crop (with its offset) finds the full mask's contours, point for point and in order,
    also where the mask runs along the crop's edge or the canvas's (OpenCV traces a zero-padded copy)."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        H, W = (int(v) for v in rng.integers(1, 30, 2))
        h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        full = np.zeros((H, W), np.uint8)
        full[y0 : y0 + h, x0 : x0 + w] = m
        ours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
        ref, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", ["1", "2", "8"])
def test_memory_scales_with_the_boxes(monkeypatch, threads):
    """30 small masks on a 3000 x 3000 image: the only full-size array is the output image (bands of rows are
    drawn apart, smaller the more threads draw them at once), whatever the number of threads."""
    monkeypatch.setenv("FASTSAM_ONNX_OUTPUT_THREADS", threads)
    rng = np.random.default_rng(0)
    H = W = 3000
    crops = [MaskCrop(int(x), int(y), rng.random((40, 50)) < 0.8) for x, y in rng.integers(0, 2900, (30, 2))]
    boxes = np.array([[c.x0, c.y0, c.x0 + 50, c.y0 + 40] for c in crops], np.float32)
    img = np.zeros((H, W, 3), np.uint8)
    r = Result(boxes, np.full(30, 0.5, np.float32), crops, (H, W), (H, W), orig_img=img)
    tracemalloc.start()
    try:
        out = draw_overlay(r)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.any()
    assert peak < img.nbytes + (24 << 20)  # the bands' temporaries (~20 MB); a full bool mask per instance adds 9 MB each


@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("u16", [True, False])
def test_bands_and_threads_do_not_change_the_picture(monkeypatch, threads, u16):
    """Band borders (a band's 3 x 3 borders need its neighbours' rows) and any thread count: the same bytes."""
    monkeypatch.setattr("fastsam_onnx.outputs.draw._BAND_PX", 80 * 7)  # 7-row bands on the 80-px-wide image
    monkeypatch.setenv("FASTSAM_ONNX_OUTPUT_THREADS", threads)
    if not u16:  # the labels of more instances than uint16 tells apart (float32), tried on a few
        monkeypatch.setattr("fastsam_onnx.outputs.draw._U16_LABELS", 3)
    r = synthetic()
    np.testing.assert_array_equal(draw_overlay(r, boxes=False), full_mask_overlay(r, placed(r.crops, r.mask_shape)))


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (2, 2), (1, 5), (7, 1), (3, 3)])
def test_tiny_images(shape):
    """Images of one pixel, one row or one column (OpenCV's bindings read a one-element array as a scalar)."""
    H, W = shape
    rng = np.random.default_rng(H * 10 + W)
    for _ in range(20):
        crops = []
        for _ in range(int(rng.integers(1, 4))):
            y0, x0 = int(rng.integers(0, H)), int(rng.integers(0, W))
            h, w = int(rng.integers(1, H - y0 + 1)), int(rng.integers(1, W - x0 + 1))
            crops.append(MaskCrop(x0, y0, rng.random((h, w)) < 0.7))
        boxes = np.array([[c.x0, c.y0, c.x0 + c.mask.shape[1], c.y0 + c.mask.shape[0]] for c in crops], np.float32)
        img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        r = Result(boxes, np.linspace(0.9, 0.5, len(crops), dtype=np.float32), crops, (H, W), (H, W), orig_img=img)
        np.testing.assert_array_equal(draw_overlay(r, boxes=False), full_mask_overlay(r, placed(r.crops, (H, W))))


def test_refuses_an_image_of_another_size():
    from fastsam_onnx.errors import BadArgumentError

    r = synthetic()
    with pytest.raises(BadArgumentError, match="80x60"):
        draw_overlay(r, image=np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(BadArgumentError, match="uint8"):
        draw_overlay(r, image=np.zeros((60, 80), np.float32))
