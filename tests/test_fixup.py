"""FastSAM's border snap and full-image swap against ultralytics."""

import numpy as np
import pytest

from fastsam_onnx.fixup import box_iou, fastsam_fixup

torch = pytest.importorskip("torch")
adjust = pytest.importorskip("ultralytics.models.fastsam.utils").adjust_bboxes_to_image_border
ref_box_iou = pytest.importorskip("ultralytics.utils.metrics").box_iou


def _reference(boxes, shape):
    b = adjust(torch.from_numpy(boxes.copy()), shape)
    full = torch.tensor([0, 0, shape[1], shape[0]], dtype=torch.float32)
    idx = torch.nonzero(ref_box_iou(full[None], b)[0] > 0.9).flatten()
    b[idx] = full
    return b.numpy()


@pytest.mark.parametrize("seed", range(5))
def test_fixup_matches_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    x1, y1 = rng.uniform(0, 60, 200), rng.uniform(0, 60, 200)
    boxes = np.stack([x1, y1, rng.uniform(w - 80, w, 200), rng.uniform(h - 80, h, 200)], 1).astype(np.float32)
    np.testing.assert_array_equal(fastsam_fixup(boxes, (h, w)), _reference(boxes, (h, w)))


def test_every_full_image_box_is_swapped_not_box_zero():
    # ultralytics PR 25175: the swap once overwrote box 0 instead of the matching boxes
    boxes = np.array([[100, 100, 200, 200], [1, 1, 639, 479], [25, 25, 630, 470]], dtype=np.float32)
    out = fastsam_fixup(boxes, (480, 640))
    np.testing.assert_array_equal(out[0], boxes[0])
    np.testing.assert_array_equal(out[1], [0, 0, 640, 480])
    np.testing.assert_array_equal(out[2], [0, 0, 640, 480])
    assert not np.shares_memory(out, boxes)


def test_box_iou_matches_reference():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 100, (7, 2, 2)), axis=1).transpose(0, 2, 1).reshape(7, 4)[:, [0, 2, 1, 3]].astype(np.float32)
    b = a[::-1].copy()
    np.testing.assert_allclose(box_iou(a, b), ref_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(), rtol=1e-6)
