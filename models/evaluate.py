"""Held-out quality of a "segment everything" model on the synthetic demo world.

Metric: for every ground-truth instance of a held-out synthetic set, the best mask IoU against
any predicted mask (0 when nothing overlaps it); the score is the mean over all ground-truth
instances of all images (a recall-oriented mask quality: every object should be covered by
one good proposal; extra proposals are not penalised, as in FastSAM's "everything" mode).

Held-out scenes are ``synth.make_scene(np.random.default_rng([seed, i]), size)``, i = 0..n-1: a
seed *sequence* ``[seed, i]``, a different random stream from the integer seeds that
the training data set (``tools/demo_dataset.py``, repository only) uses for training/validation scenes.

Usage::

    python -m fastsam_onnx.models.evaluate --pt models/demo/fastsam-demo.pt --imgsz 512
    python -m fastsam_onnx.models.evaluate --bundle models/demo            # the ONNX runtime
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from . import synth

#: ``segment_fn(image_bgr (H, W, 3) uint8) -> (N, H, W) bool`` predicted masks.
SegmentFn = Callable[[np.ndarray], np.ndarray]


def best_mask_ious(gt: Sequence[np.ndarray], pred: np.ndarray) -> np.ndarray:
    """Best IoU of each ground-truth mask against a set of predicted masks.

    Args:
        gt: G masks, each ``(H, W)`` bool.
        pred: ``(N, H, W)`` bool (or 0/1) predicted masks; N may be 0.

    Returns:
        ``(G,)`` float64 best IoU per ground-truth mask (0 where N == 0).
    """
    if len(gt) == 0:
        return np.zeros(0, np.float64)
    g = np.stack([np.asarray(m, bool).reshape(-1) for m in gt]).astype(np.float32)  # (G, HW)
    pred = np.asarray(pred)
    if pred.size == 0 or pred.shape[0] == 0:
        return np.zeros(len(gt), np.float64)
    if pred.shape[1:] != gt[0].shape:
        raise ValueError(f"predicted masks {pred.shape[1:]} do not match the image {gt[0].shape}")
    p = (pred.reshape(pred.shape[0], -1) > 0.5).astype(np.float32)  # (N, HW)
    inter = g @ p.T  # (G, N)
    union = g.sum(1)[:, None] + p.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1.0)
    return iou.max(axis=1).astype(np.float64)


def heldout_scenes(n_images: int = 50, seed: int = 12345, size: int = 512) -> List[synth.Scene]:
    """The held-out synthetic scenes (see the module docstring)."""
    return [synth.make_scene(np.random.default_rng([seed, i]), size) for i in range(n_images)]


def evaluate_details(segment_fn: SegmentFn, n_images: int = 50, seed: int = 12345, size: int = 512) -> dict:
    """Like :func:`evaluate_bundle`, with the per-instance data.

    Returns:
        dict with ``miou`` (float), ``ious`` (per GT instance, float64), ``areas`` (visible GT
        pixels), ``n_pred`` (predicted masks per image), ``n_gt`` (GT instances per image).
    """
    ious, areas, n_pred, n_gt = [], [], [], []
    for scene in heldout_scenes(n_images, seed, size):
        pred = segment_fn(scene.image)
        pred = np.zeros((0,) + scene.image.shape[:2], bool) if pred is None else np.asarray(pred)
        ious.append(best_mask_ious(scene.masks, pred))
        areas.append(np.array([int(m.sum()) for m in scene.masks]))
        n_pred.append(int(pred.shape[0]))
        n_gt.append(len(scene.masks))
    all_ious = np.concatenate(ious) if ious else np.zeros(0)
    return {
        "miou": float(all_ious.mean()) if all_ious.size else 0.0,
        "ious": all_ious,
        "areas": np.concatenate(areas) if areas else np.zeros(0, int),
        "n_pred": n_pred,
        "n_gt": n_gt,
    }


def evaluate_bundle(segment_fn: SegmentFn, n_images: int = 50, seed: int = 12345, size: int = 512) -> float:
    """Mean over held-out ground-truth instances of the best predicted-mask IoU.

    Args:
        segment_fn: ``image_bgr (H, W, 3) uint8 -> (N, H, W) bool`` masks at image resolution,
            e.g. ``lambda im: fastsam_onnx.FastSAM(bundle).segment(im, conf=0.4, iou=0.9).masks``.
        n_images: number of held-out scenes.
        seed: held-out set seed (training never uses ``default_rng([seed, i])`` streams).
        size: scene side, pixels.

    Returns:
        the mean best IoU in [0, 1].
    """
    return evaluate_details(segment_fn, n_images, seed, size)["miou"]


def ultralytics_segment_fn(
    weights: Union[str, Path], imgsz: int = 512, conf: float = 0.4, iou: float = 0.9
) -> SegmentFn:
    """A :data:`SegmentFn` of the reference: ``ultralytics.FastSAM(weights).predict(...)``, retina masks."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import FastSAM

    model = FastSAM(str(weights))

    def fn(image: np.ndarray) -> np.ndarray:
        r = model.predict(image, conf=conf, iou=iou, retina_masks=True, imgsz=imgsz, device="cpu", verbose=False)[0]
        if r.masks is None:
            return np.zeros((0,) + image.shape[:2], bool)
        return r.masks.data.cpu().numpy() > 0.5

    return fn


def runtime_segment_fn(bundle: Union[str, Path], conf: float = 0.4, iou: float = 0.9) -> SegmentFn:
    """A :data:`SegmentFn` of the torch-free runtime: ``fastsam_onnx.FastSAM(bundle).segment(...)``."""
    from fastsam_onnx import FastSAM  # type: ignore[attr-defined]

    model = FastSAM(str(bundle))

    def fn(image: np.ndarray) -> np.ndarray:
        return np.asarray(model.segment(image, conf=conf, iou=iou).masks, bool)

    return fn


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastsam_onnx.models.evaluate", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pt", type=Path, help="ultralytics checkpoint (reference predictor)")
    src.add_argument("--bundle", type=Path, help="ONNX bundle folder (fastsam_onnx runtime)")
    p.add_argument("--imgsz", type=int, default=512, help="inference size for --pt")
    p.add_argument("--n-images", type=int, default=50)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--conf", type=float, default=0.4)
    p.add_argument("--iou", type=float, default=0.9)
    a = p.parse_args(argv)
    fn = (
        ultralytics_segment_fn(a.pt, a.imgsz, a.conf, a.iou)
        if a.pt is not None
        else runtime_segment_fn(a.bundle, a.conf, a.iou)
    )
    d = evaluate_details(fn, a.n_images, a.seed, a.size)
    ious, areas = d["ious"], d["areas"]
    print(f"mean best-mask IoU: {d['miou']:.4f} over {ious.size} instances in {a.n_images} images")
    print(f"  instances with IoU >= 0.5: {np.mean(ious >= 0.5):.3f}, >= 0.75: {np.mean(ious >= 0.75):.3f}")
    for lo, hi in ((0, 1500), (1500, 6000), (6000, 10**9)):
        sel = (areas >= lo) & (areas < hi)
        if sel.any():
            print(f"  area [{lo}, {hi}) px: {sel.sum()} instances, mean IoU {ious[sel].mean():.4f}")
    print(f"  masks per image: predicted {np.mean(d['n_pred']):.1f}, ground truth {np.mean(d['n_gt']):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
