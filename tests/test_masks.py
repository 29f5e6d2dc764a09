"""Mask assembly against ultralytics' process_mask_native / process_mask on random prototypes."""

import numpy as np
import pytest

from fastsam_onnx.fixup import scale_boxes
from fastsam_onnx.letterbox import letterbox_geometry
from fastsam_onnx.masks import crop_masks, input_axes, resize_matrix, retina_axes

torch = pytest.importorskip("torch")
ops = pytest.importorskip("ultralytics.utils.ops")
F = torch.nn.functional


def _mask_iou(a, b):
    inter = (a & b).sum((1, 2))
    union = (a | b).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def _dense(crops, shape):
    out = np.zeros((len(crops), *shape), dtype=bool)
    for i, c in enumerate(crops):
        if c is not None:
            out[i, c.y0 : c.y0 + c.mask.shape[0], c.x0 : c.x0 + c.mask.shape[1]] = c.mask
    return out


def _case(seed, orig_shape, imgsz, n=20):
    rng = np.random.default_rng(seed)
    lb = letterbox_geometry(orig_shape, (imgsz, imgsz))
    mh = mw = imgsz // 4
    # smooth prototypes like a real network's (upsampled noise), so masks have real extents
    small = rng.normal(0, 1, (32, mh // 8 + 1, mw // 8 + 1)).astype(np.float32)
    protos = F.interpolate(torch.from_numpy(small)[None], (mh, mw), mode="bilinear")[0].numpy()
    coeffs = rng.normal(0, 1, (n, 32)).astype(np.float32)
    x1 = rng.uniform(lb.left - 10, lb.left + lb.new_w * 0.8, n)
    y1 = rng.uniform(lb.top - 10, lb.top + lb.new_h * 0.8, n)
    boxes_in = np.stack([x1, y1, x1 + rng.uniform(1, lb.new_w / 2, n), y1 + rng.uniform(1, lb.new_h / 2, n)], 1)
    return lb, protos, coeffs, boxes_in.astype(np.float32)


@pytest.mark.parametrize("in_size,out_size", [(5, 17), (160, 1080), (256, 4512), (160, 640), (300, 120), (7, 7)])
def test_resize_matrix_is_torch_bilinear(in_size, out_size):
    x = np.random.default_rng(0).normal(size=(in_size, 3)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x.T)[None], size=out_size, mode="linear")[0].numpy().T
    np.testing.assert_allclose(resize_matrix(in_size, out_size) @ x, ref, atol=1e-5)


SHAPES = [(1080, 810), (720, 1280), (333, 517), (640, 640), (100, 3000), (61, 47)]


@pytest.mark.parametrize("orig_shape", SHAPES)
@pytest.mark.parametrize("imgsz", [640, 1024])
def test_retina_masks_match_process_mask_native(orig_shape, imgsz):
    lb, protos, coeffs, boxes_in = _case(hash(orig_shape) % 1000 + imgsz, orig_shape, imgsz)
    boxes = scale_boxes(boxes_in, (lb.new_w / orig_shape[1], lb.new_h / orig_shape[0]), (lb.left, lb.top), orig_shape)
    ref_boxes = ops.scale_boxes((imgsz, imgsz), torch.from_numpy(boxes_in.copy()), orig_shape)
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), rtol=1e-6, atol=1e-4)
    ref = ops.process_mask_native(torch.from_numpy(protos), torch.from_numpy(coeffs), ref_boxes, orig_shape)
    ref = ref.numpy().astype(bool)
    ours = _dense(crop_masks(protos, coeffs, boxes, *retina_axes(protos.shape[1:], orig_shape)), orig_shape)
    assert ours.shape == ref.shape
    iou = _mask_iou(ours, ref)
    assert iou.min() >= 0.999, iou
    assert (ours != ref).sum() <= 1e-4 * ref.size + 10  # only pixels whose logit is ~0 may differ


@pytest.mark.parametrize("orig_shape", SHAPES[:3])
def test_letterboxed_masks_match_process_mask(orig_shape):
    lb, protos, coeffs, boxes_in = _case(7, orig_shape, 640)
    ref = ops.process_mask(torch.from_numpy(protos), torch.from_numpy(coeffs), torch.from_numpy(boxes_in), (640, 640), upsample=True)
    ref = ref.numpy().astype(bool)
    ours = _dense(crop_masks(protos, coeffs, boxes_in, *input_axes(protos.shape[1:], (640, 640))), (640, 640))
    assert _mask_iou(ours, ref).min() >= 0.999
    assert (ours != ref).sum() <= 1e-4 * ref.size + 10


def test_empty_masks_are_none():
    protos = np.ones((32, 16, 16), dtype=np.float32)
    coeffs = -np.ones((2, 32), dtype=np.float32)  # logits all negative
    coeffs[1] *= -1
    boxes = np.array([[0, 0, 30, 30], [5, 5, 6, 6]], dtype=np.float32)
    crops = crop_masks(protos, coeffs, boxes, *input_axes((16, 16), (64, 64)))
    assert crops[0] is None and crops[1] is not None and crops[1].mask.shape == (1, 1)


def test_degenerate_boxes_give_no_mask():
    protos = np.ones((32, 16, 16), dtype=np.float32)
    coeffs = np.ones((3, 32), dtype=np.float32)
    boxes = np.array([[10, 10, 10, 20], [70, 70, 90, 90], [-9, -9, -1, -1]], dtype=np.float32)
    assert crop_masks(protos, coeffs, boxes, *input_axes((16, 16), (64, 64))) == [None, None, None]
