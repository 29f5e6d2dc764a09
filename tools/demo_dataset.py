"""The demo FastSAM's training data: the synthetic demo world as an ultralytics YOLO-seg data set.

Used by ``tools/train_demo.py`` (repository only, not installed). The scenes themselves come from
:mod:`fastsam_onnx.models.synth`, which the installed package keeps for its held-out evaluations.

    * :func:`mask_to_polygon` -- a mask as one YOLO-style polygon (outer contours, holes joined).
    * :func:`write_yolo_dataset` -- an ultralytics YOLO-seg data set (images, labels, data.yaml).
    * :func:`render_example` -- a single demo image (``models/demo/example.jpg``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fastsam_onnx.models.synth import Scene, make_scene, scene_for_seed

__all__ = ["mask_to_polygon", "polygon_to_mask", "write_yolo_dataset", "render_example"]




def _join_contours(contours: Sequence[np.ndarray]) -> np.ndarray:
    """Join closed contours into one polygon with zero-width "keyhole" bridges.

    Each further contour is spliced in at the vertex pair nearest to the polygon built so far:
    the path walks to that vertex, jumps to the contour, goes once around it, and jumps back.
    The bridge is traversed in both directions so it encloses no area; holes (which
    ``cv2.findContours`` orients opposite to outer contours) stay holes under both the even-odd
    and the non-zero fill rule, and separate parts stay filled.

    Args:
        contours: closed contours, each ``(K_i, 2)`` pixel coordinates.

    Returns:
        ``(K, 2)`` polygon vertices.
    """
    poly = np.asarray(contours[0], np.float64).reshape(-1, 2)
    for c in contours[1:]:
        c = np.asarray(c, np.float64).reshape(-1, 2)
        d = ((poly[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        loop = np.concatenate([c[j:], c[: j + 1]], axis=0)  # around c, back to its start
        poly = np.concatenate([poly[: i + 1], loop, poly[i:]], axis=0)
    return poly


def mask_to_polygon(mask: np.ndarray, epsilon: float = 0.7) -> np.ndarray:
    """One polygon describing a (possibly multi-part, holed) binary mask.

    The contours come from ``cv2.findContours(..., RETR_CCOMP, CHAIN_APPROX_NONE)``, are simplified
    with ``cv2.approxPolyDP(epsilon)`` and, when there are several (parts or holes), joined with
    zero-width bridges (:func:`_join_contours`), largest outer contour first.  This is the single
    polygon per instance that the ultralytics YOLO-seg label format expects.

    Vertices are the pixel centres of boundary pixels (OpenCV's convention), so rasterising the
    polygon with ``cv2.fillPoly`` (what ultralytics does, :func:`polygon_to_mask`) gives back the
    mask up to the ``epsilon`` simplification.

    Args:
        mask: ``(H, W)`` bool mask with at least one pixel set.
        epsilon: ``approxPolyDP`` tolerance, pixels.

    Returns:
        ``(K, 2)`` float64 ``(x, y)`` vertices in pixels; empty ``(0, 2)`` for an empty mask.
    """
    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2), np.float64)
    parts = []
    for c in contours:
        a = cv2.approxPolyDP(c, epsilon, True) if len(c) > 4 else c
        parts.append((abs(cv2.contourArea(c)), a.reshape(-1, 2).astype(np.float64)))
    # Outer contours (no parent) first, largest first; holes after their outers.
    top = hierarchy[0][:, 3] < 0
    order = sorted(range(len(parts)), key=lambda k: (not top[k], -parts[k][0]))
    return _join_contours([parts[k][1] for k in order])


def polygon_to_mask(polygon: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """Rasterise a pixel polygon the way ultralytics does (``cv2.fillPoly`` of int32 vertices).

    Args:
        polygon: ``(K, 2)`` ``(x, y)`` vertices, pixels.
        hw: ``(H, W)`` of the output.

    Returns:
        ``(H, W)`` bool mask.
    """
    out = np.zeros(hw, np.uint8)
    if len(polygon):
        cv2.fillPoly(out, [np.asarray(polygon, np.int32).reshape(-1, 1, 2)], 1)
    return out.astype(bool)


def _yolo_label_lines(scene: Scene) -> List[str]:
    """YOLO-seg label lines (class 0, normalised polygon) for every instance of a scene."""
    h, w = scene.image.shape[:2]
    lines = []
    for m in scene.masks:
        poly = mask_to_polygon(m)
        if len(poly) < 3:
            continue
        xy = poly / np.array([w, h], np.float64)
        xy = np.clip(xy, 0.0, 1.0)
        lines.append("0 " + " ".join(f"{v:.5f}" for v in xy.reshape(-1)))
    return lines


def write_yolo_dataset(
    root: Path,
    n_train: int,
    n_val: int,
    seed: int,
    size: int = 512,
    *,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Path:
    """Write an ultralytics YOLO-seg data set of synthetic scenes.

    Layout::

        root/images/{train,val}/NNNNNN.png   (size x size BGR, lossless)
        root/labels/{train,val}/NNNNNN.txt   ("0 x1 y1 x2 y2 ..." per instance, normalised 0..1)
        root/data.yaml                       (path, train, val, nc: 1, names: {0: object})

    Scene ``i`` of the training split uses seed ``seed * 1_000_003 + i`` and the validation
    split ``seed * 1_000_003 + 500_000 + i``, so the set is a pure function of
    ``(n_train, n_val, seed, size)`` and held-out sets only need a different ``seed``.

    Args:
        root: output folder (created; existing files of the same names are overwritten).
        n_train: number of training images.
        n_val: number of validation images.
        seed: data set seed.
        size: image side, pixels.
        progress: optional ``callback(done, total)``.

    Returns:
        path of ``root/data.yaml``.
    """
    root = Path(root)
    total = n_train + n_val
    done = 0
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 500_000)):
        img_dir = root / "images" / split
        lbl_dir = root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            scene = scene_for_seed(seed * 1_000_003 + offset + i, size)
            name = f"{i:06d}"
            cv2.imwrite(str(img_dir / f"{name}.png"), scene.image)
            (lbl_dir / f"{name}.txt").write_text("\n".join(_yolo_label_lines(scene)) + "\n")
            done += 1
            if progress is not None:
                progress(done, total)
    yaml_path = root / "data.yaml"
    yaml_path.write_text(
        f"# Synthetic FastSAM demo world: seed={seed} size={size} n_train={n_train} n_val={n_val}\n"
        f"path: {root.resolve()}\n"
        "train: images/train\n"
        "val: images/val\n"
        "nc: 1\n"
        "names:\n"
        "  0: object\n"
    )
    return yaml_path


def render_example(seed: int = 7, size: int = 512) -> np.ndarray:
    """A single demo image: a busy scene (8-12 objects) of the demo world.

    Args:
        seed: scene seed.
        size: image side, pixels.

    Returns:
        ``(size, size, 3)`` BGR uint8 image.
    """
    return make_scene(np.random.default_rng(seed), size, n_objects=(8, 12)).image
