"""Decode + NMS against ultralytics' non_max_suppression (torchvision NMS) on random outputs."""

import numpy as np
import pytest

from fastsam_onnx.nms import decode, nms

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
ref_nms = pytest.importorskip("ultralytics.utils.nms").non_max_suppression


def _random_output(rng, a=3000, size=640):
    cxcy = rng.uniform(0, size, (2, a))
    wh = rng.uniform(2, size / 2, (2, a)) * rng.choice([0.2, 1.0], (1, a))
    # clusters of near-duplicates so NMS has work to do
    dup = rng.integers(0, a, a // 2)
    cxcy[:, a // 2 :] = cxcy[:, dup] + rng.normal(0, 3, (2, a // 2))
    wh[:, a // 2 :] = wh[:, dup] * rng.uniform(0.9, 1.1, (1, a // 2))
    score = rng.uniform(0, 1, (1, a))
    coef = rng.normal(0, 1, (32, a))
    return np.concatenate([cxcy, wh, score, coef]).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("conf,iou,max_det", [(0.4, 0.9, 300), (0.25, 0.7, 300), (0.4, 0.5, 50), (0.9, 0.9, 300), (0.0, 0.45, 1000)])
def test_decode_matches_reference(seed, conf, iou, max_det):
    out = _random_output(np.random.default_rng(seed))
    ref = ref_nms(torch.from_numpy(out)[None], conf, iou, max_det=max_det, nc=1)[0].numpy()
    det = decode(out, conf=conf, iou=iou, max_det=max_det)
    assert len(det.boxes) == len(ref)
    np.testing.assert_array_equal(det.boxes, ref[:, :4])
    np.testing.assert_array_equal(det.scores, ref[:, 4])
    np.testing.assert_array_equal(det.coeffs, ref[:, 6:])


def test_decode_no_candidates():
    out = _random_output(np.random.default_rng(0))
    out[4] = 0.1
    det = decode(out, conf=0.4, iou=0.9, max_det=300)
    assert det.boxes.shape == (0, 4) and det.scores.shape == (0,) and det.coeffs.shape == (0, 32)


def test_max_nms_keeps_best():
    out = _random_output(np.random.default_rng(3))
    det = decode(out, conf=0.0, iou=0.9, max_det=300, max_nms=10)
    assert len(det.scores) <= 10
    assert det.scores.min() >= np.sort(out[4])[-10]


def test_nms_strictly_greater_suppresses():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    assert nms(boxes, scores, 0.9).tolist() == [0, 1, 2]  # IoU exactly 0.9 is kept
    assert nms(boxes, scores, 0.89).tolist() == [0, 2]
    assert nms(boxes, scores, 0.91).tolist() == [0, 1, 2]
