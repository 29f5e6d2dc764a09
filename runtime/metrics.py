"""Evaluation metrics: boundary precision/recall/F (ODS, OIS) for edge maps, and class-agnostic average recall
(AR@10/100/1000, small/medium/large) for object proposals via pycocotools (imported inside the functions).

**Boundary matching** (BSDS-style, written here: BSDS's own C++ benchmark is under GPL/MSR licences). For a
threshold t the predicted boundary is ``edge >= t``, thinned to one pixel (:func:`thin_binary`, Zhang-Suen,
as BSDS thins with ``bwmorph(..., 'thin', inf)``). A predicted pixel is matched when a ground-truth boundary
pixel of *any* annotator lies within the tolerance, ``TOLERANCE`` × the image diagonal (0.0075, BSDS's
``maxDist``); a ground-truth pixel is recalled when a predicted pixel lies within it. Distances are exact
Euclidean (``cv2.distanceTransform``, ``DIST_MASK_PRECISE``).

How it differs from BSDS's ``correspondPixels``: BSDS matches pixels **one-to-one** (a minimum-cost bipartite
assignment), so two parallel predicted edges within the tolerance of one true edge count once (the second
is a false positive), and one predicted pixel recalls at most one ground-truth pixel per annotator. Here the
matching is **by distance, not one-to-one**: every predicted pixel near a true edge counts, and one
predicted edge recalls every true pixel near it. With thinned maps of single edges both give the same
figures; double responses score higher here than in BSDS. BSDS also interpolates F between thresholds for
ODS; here ODS is the best of the ``thresholds`` (99 by default, as BSDS's ``nthresh``), no interpolation.

- counts per image and threshold: ``cntR`` (recalled GT pixels, summed over annotators), ``sumR`` (GT pixels,
  summed over annotators), ``cntP`` (matched predicted pixels), ``sumP`` (predicted pixels);
- **ODS**: the counts summed over all images at each threshold, P = cntP/sumP, R = cntR/sumR, F = 2PR/(P+R);
  the best F over thresholds (one threshold for the whole set);
- **OIS**: per image its best-F threshold; the counts at those thresholds summed over images, then P, R, F.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import cv2
import numpy as np

__all__ = [
    "TOLERANCE", "THRESHOLDS", "thin_binary", "boundary_counts", "ods_ois", "f_score", "proposal_recall",
    "labels_to_boundaries",
]

#: boundary matching tolerance, a fraction of the image diagonal (BSDS's maxDist); thresholds per map (BSDS's nthresh)
TOLERANCE = 0.0075
THRESHOLDS = 99


def _zs_tables() -> tuple[np.ndarray, np.ndarray]:
    """Zhang-Suen deletion look-up tables (256,) bool for both sub-iterations, by 8-neighbour code
    (bits: N=1, NE=2, E=4, SE=8, S=16, SW=32, W=64, NW=128)."""
    t1, t2 = np.zeros(256, bool), np.zeros(256, bool)
    for code in range(256):
        p = [(code >> i) & 1 for i in range(8)]  # P2..P9: N, NE, E, SE, S, SW, W, NW
        b = sum(p)
        a = sum(1 for i in range(8) if p[i] == 0 and p[(i + 1) % 8] == 1)
        n, e, s, w = p[0], p[2], p[4], p[6]
        ok = 2 <= b <= 6 and a == 1
        t1[code] = ok and n * e * s == 0 and e * s * w == 0
        t2[code] = ok and n * e * w == 0 and n * s * w == 0
    return t1, t2


_ZS = _zs_tables()
_ZS_KERNEL = np.array([[128, 1, 2], [64, 0, 4], [32, 16, 8]], dtype=np.float32)


def thin_binary(mask: np.ndarray, max_iter: int = 1000) -> np.ndarray:
    """Zhang-Suen thinning of an (H, W) bool map to 8-connected lines of one pixel: (H, W) bool.

    A 1-px line (8-connected, no 4-connected staircases) is left as it is; outside the image counts as 0."""
    m = np.asarray(mask, dtype=bool).astype(np.uint8)
    for _ in range(max_iter):
        changed = False
        for table in _ZS:
            code = cv2.filter2D(m, cv2.CV_32F, _ZS_KERNEL, borderType=cv2.BORDER_CONSTANT).astype(np.uint8)
            drop = table[code] & (m != 0)
            if drop.any():
                m[drop] = 0
                changed = True
        if not changed:
            break
    return m.astype(bool)


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32 Euclidean distance of every pixel to the nearest True pixel of ``mask`` (inf if none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def labels_to_boundaries(labels: np.ndarray) -> np.ndarray:
    """(H, W) int label map → (H, W) bool boundary: pixels whose label differs from the pixel to their
    right or below (one pixel wide, on the upper/left side; the image frame is not a boundary)."""
    lab = np.asarray(labels)
    out = np.zeros(lab.shape, dtype=bool)
    out[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    out[:-1, :] |= lab[:-1, :] != lab[1:, :]
    return out


def boundary_counts(
    edge: np.ndarray, gts: Sequence[np.ndarray], thresholds: int | Sequence[float] = THRESHOLDS,
    tolerance: float = TOLERANCE, thin: bool = False,
) -> np.ndarray:
    """Counts of one image: (K, 4) int64 rows [cntR, sumR, cntP, sumP] per threshold (see the module doc).

    edge: (H, W) float map in [0, 1]; gts: one (H, W) bool boundary map per annotator; thresholds: a
    number K (``linspace(1/(K+1), 1 - 1/(K+1), K)``, BSDS's) or the thresholds themselves. thin: thin
    each thresholded map (:func:`thin_binary`) as BSDS does — K distance transforms; without it (the
    default, for maps that are one pixel wide already, as :func:`fastsam_onnx.outputs.edges` makes them) the counts
    of all thresholds come from one grey dilation and sorting, the same figures for such maps.
    """
    edge = np.asarray(edge, dtype=np.float32)
    gts = [np.asarray(g, dtype=bool) for g in gts]
    if any(g.shape != edge.shape for g in gts):
        raise ValueError(f"ground truth {[g.shape for g in gts]} does not match the edge map {edge.shape}")
    ts = threshold_values(thresholds)
    max_d = tolerance * float(np.hypot(*edge.shape))
    near_gt = np.zeros(edge.shape, bool)
    for g in gts:
        near_gt |= _distance_to(g) <= max_d
    sum_r = sum(int(g.sum()) for g in gts)
    out = np.zeros((len(ts), 4), dtype=np.int64)
    if not thin:  # one pass: a true pixel is recalled at t when the map's maximum within max_d is >= t
        r = int(np.floor(max_d))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        best = cv2.dilate(edge, (yy * yy + xx * xx <= max_d * max_d).astype(np.uint8))
        out[:, 0] = _count_at_least(np.concatenate([best[g] for g in gts]) if gts else np.zeros(0), ts)
        out[:, 1] = sum_r
        out[:, 2] = _count_at_least(edge[near_gt], ts)
        out[:, 3] = _count_at_least(edge.ravel(), ts)
        return out
    for k, t in enumerate(ts):
        pred = edge >= t
        if thin:
            pred = thin_binary(pred)
        near_pred = _distance_to(pred) <= max_d
        out[k] = (sum(int((g & near_pred).sum()) for g in gts), sum_r, int((pred & near_gt).sum()), int(pred.sum()))
    return out


def _count_at_least(values: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """(K,) number of ``values`` >= each threshold."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    return v.size - np.searchsorted(v, ts, side="left")


def threshold_values(thresholds: int | Sequence[float]) -> np.ndarray:
    """A count K → BSDS's K thresholds ``linspace(1/(K+1), 1 - 1/(K+1), K)``; a sequence → float64 array."""
    if isinstance(thresholds, (int, np.integer)):
        k = int(thresholds)
        return np.linspace(1 / (k + 1), 1 - 1 / (k + 1), k)
    return np.asarray(thresholds, dtype=np.float64)


def f_score(cnt_r, sum_r, cnt_p, sum_p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F) from counts (arrays or numbers); 0 where undefined (P = 1 with no prediction,
    as BSDS, so an empty map has F = 0 unless there is no ground truth either)."""
    cnt_r, sum_r, cnt_p, sum_p = (np.asarray(v, dtype=np.float64) for v in (cnt_r, sum_r, cnt_p, sum_p))
    p = np.where(sum_p > 0, cnt_p / np.maximum(sum_p, 1), 1.0)
    r = np.where(sum_r > 0, cnt_r / np.maximum(sum_r, 1), 1.0)
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    return p, r, f


def ods_ois(counts: Sequence[np.ndarray], thresholds: int | Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """ODS and OIS from per-image :func:`boundary_counts` (each (K, 4)): ``{"ods": {"f", "precision",
    "recall", "threshold"}, "ois": {"f", "precision", "recall"}, "images": n}``."""
    ts = threshold_values(thresholds)
    c = np.stack([np.asarray(x, dtype=np.int64) for x in counts])  # (n, K, 4)
    tot = c.sum(0)
    p, r, f = f_score(*tot.T)
    k = int(np.argmax(f))
    best = np.argmax(f_score(*np.moveaxis(c, 2, 0))[2], axis=1)  # (n,) each image's best threshold
    at = c[np.arange(len(c)), best].sum(0)
    pi, ri, fi = f_score(*at)
    return {
        "ods": {"f": float(f[k]), "precision": float(p[k]), "recall": float(r[k]), "threshold": float(ts[k])},
        "ois": {"f": float(fi), "precision": float(pi), "recall": float(ri)},
        "images": int(len(c)),
    }


def proposal_recall(gt: Any, results: list[dict[str, Any]], iou_type: str = "bbox",
                    max_dets: Sequence[int] = (10, 100, 1000), image_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """Class-agnostic average recall of proposals with pycocotools' ``COCOeval`` (``useCats = 0``).

    gt: a ``pycocotools.coco.COCO`` or the path of a COCO annotations JSON; results: COCO result records
    (:func:`fastsam_onnx.outputs.proposals.proposal_records`); iou_type: "bbox" or "segm". Returns ``{"AR@10": ...,
    "AR@100": ..., "AR@1000": ..., "AR_small", "AR_medium", "AR_large"}`` (sizes at the largest max_dets),
    each the recall averaged over IoU 0.50:0.05:0.95, from ``eval['recall']`` (COCOeval's ``summarize``
    prints fixed indices that assume maxDets (1, 10, 100)). None where no ground truth falls in a range.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco = gt if isinstance(gt, COCO) else COCO(str(gt))
        ids = sorted(coco.getImgIds()) if image_ids is None else list(image_ids)
        keys = [f"AR@{m}" for m in max_dets] + ["AR_small", "AR_medium", "AR_large"]
        if not results:
            return {k: (None if not coco.getAnnIds(imgIds=ids) else 0.0) for k in keys}
        dt = coco.loadRes(list(results))
        ev = COCOeval(coco, dt, iou_type)
        ev.params.useCats = 0
        ev.params.maxDets = [int(m) for m in max_dets]
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
    rec = ev.eval["recall"]  # (T, K, A, M): IoU thresholds, categories (1), areas all/small/medium/large, maxDets

    def mean(a: np.ndarray) -> float | None:
        a = a[a > -1]
        return float(a.mean()) if a.size else None

    out = {f"AR@{m}": mean(rec[:, 0, 0, i]) for i, m in enumerate(max_dets)}
    for a, name in ((1, "AR_small"), (2, "AR_medium"), (3, "AR_large")):
        out[name] = mean(rec[:, 0, a, -1])
    return out
