"""Compare a fastsam-onnx result with an ultralytics FastSAM result, instance by instance."""

from __future__ import annotations

import numpy as np

from fastsam_onnx.fixup import box_iou


def reference_arrays(r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ultralytics Results → (boxes (N,4), scores (N,), masks (N,H,W) bool)."""
    if r.masks is None or len(r) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 1, 1), bool)
    return r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(), r.masks.data.cpu().numpy().astype(bool)


def match(ref_boxes: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Index into ``boxes`` for each reference box: same order unless near-equal scores swapped it,
    then the best box-IoU partner (one-to-one)."""
    if len(ref_boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    iou = box_iou(ref_boxes, boxes)
    same = np.arange(len(ref_boxes))
    if (iou[same, same] > 0.99).all():
        return same
    order = np.full(len(ref_boxes), -1)
    for i in np.argsort(-iou.max(1)):
        j = int(np.argmax(np.where(np.isin(np.arange(len(boxes)), order), -1, iou[i])))
        order[i] = j
    return order


def compare(ref, ours) -> dict:
    """Parity figures of an ultralytics Results ``ref`` and a fastsam-onnx Result ``ours``."""
    rb, rs, rm = reference_arrays(ref)
    assert len(ours) == len(rb), f"instance count: reference {len(rb)}, ours {len(ours)}"
    if len(rb) == 0:
        return {"n": 0}
    idx = match(rb, ours.boxes)
    assert len(set(idx.tolist())) == len(idx)
    om = ours.masks[idx]
    assert om.shape == rm.shape, (om.shape, rm.shape)
    inter = (om & rm).sum((1, 2))
    union = (om | rm).sum((1, 2))
    miou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return {
        "n": len(rb),
        "box_max_diff": float(np.abs(ours.boxes[idx] - rb).max()),
        "score_max_diff": float(np.abs(ours.scores[idx] - rs).max()),
        "mask_iou_mean": float(miou.mean()),
        "mask_iou_min": float(miou.min()),
    }


def assert_parity(ref, ours, min_instances: int = 1) -> dict:
    """The issue's bar: same count, boxes within 1 px, scores within 1e-3, mask IoU mean ≥ 0.995, min ≥ 0.95;
    on at least ``min_instances`` (≥ 1) instances: two empty results prove nothing."""
    assert min_instances >= 1, "a parity check needs instances to compare"
    f = compare(ref, ours)
    assert f["n"] >= min_instances, f
    assert f["box_max_diff"] <= 1.0, f
    assert f["score_max_diff"] <= 1e-3, f
    assert f["mask_iou_mean"] >= 0.995, f
    assert f["mask_iou_min"] >= 0.95, f
    return f
