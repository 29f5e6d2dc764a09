"""Mask assembly memory scales with the kept boxes, not with N × H × W (ultralytics issue 4105)."""

import tracemalloc

import numpy as np

from fastsam_onnx.letterbox import letterbox_geometry
from fastsam_onnx.model import postprocess


def _outputs(n=100, imgsz=1024, seed=0):
    rng = np.random.default_rng(seed)
    a = (imgsz // 8) ** 2 + (imgsz // 16) ** 2 + (imgsz // 32) ** 2
    out = np.zeros((37, a), dtype=np.float32)
    out[0] = rng.uniform(0, imgsz, a)
    out[1] = rng.uniform(0, imgsz, a)
    out[2:4] = rng.uniform(40, 400, (2, a))
    out[4, rng.choice(a, n, replace=False)] = rng.uniform(0.5, 1.0, n)  # n candidates
    out[5:] = rng.normal(0, 1, (32, a))
    m = imgsz // 4
    yy, xx = np.mgrid[0:m, 0:m] / m
    protos = np.stack([np.sin((i + 1) * 3 * xx + i) * np.cos((i % 5 + 1) * 3 * yy) for i in range(32)]).astype(np.float32)
    return out, protos


def test_4512_square_with_100_instances_stays_small():
    out, protos = _outputs()
    lb = letterbox_geometry((4512, 4512), (1024, 1024))
    tracemalloc.start()
    result = postprocess(out, protos, lb, conf=0.4, iou=0.9, max_det=300, retina_masks=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = len(result)
    assert n >= 90, n  # (random masks: a few may be empty and dropped)
    dense_floats = n * 4512 * 4512 * 4
    kept = sum(c.mask.nbytes for c in result.crops)
    assert peak < 1.0e9, f"peak {peak / 1e6:.0f} MB"
    assert peak < dense_floats / 8, (peak, dense_floats)
    assert peak < 3 * kept + 200e6  # what is kept, plus the working set of one box
    # a single full-size mask can still be had on demand
    m0 = result.mask(0)
    assert m0.shape == (4512, 4512) and m0.sum() == result.crops[0].mask.sum()
