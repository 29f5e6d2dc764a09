"""The demo CLIP's training data (``tools/train_clip_demo.py``): captions and crops of the demo world.

Repository only (``tools/`` is not installed); needs the ``[export]`` extra (torch, torchvision, clip) for the
clip module's own preprocess. See ``tools/train_clip_demo.py`` for the recipe.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fastsam_onnx.models import synth

#: Entropy tag of the training scenes: ``default_rng([DATA_TAG, seed, i])``.
DATA_TAG = 0xC11D

COLORS: Tuple[str, ...] = tuple(synth.COLORS)
SHAPES: Tuple[str, ...] = tuple(synth.SHAPES)

FULL_TEMPLATES = ("{c} {s}", "a {c} {s}", "the {c} {s}", "a photo of a {c} {s}", "a {c} {s} shape", "{c} {s} object")
COLOR_TEMPLATES = ("{c}", "{c} object", "a {c} object", "the {c} one", "something {c}", "{c} thing")
SHAPE_TEMPLATES = ("{s}", "a {s}", "the {s}", "a {s} shape", "{s} object", "a photo of a {s}")


def _article(text: str) -> str:
    """``"a orange"`` → ``"an orange"`` (the one English rule the templates need)."""
    words = text.split(" ")
    for i, w in enumerate(words[:-1]):
        if w == "a" and words[i + 1][:1] in "aeiou":
            words[i] = "an"
    return " ".join(words)


def caption(template: str, color: str = "", shape: str = "") -> str:
    """A template filled with a colour and/or shape word, with the right article."""
    return _article(template.format(c=color, s=shape))


def _import_clip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources deprecation inside clip
        import clip
        import clip.model

    return clip


# --------------------------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------------------------


def gt_boxes_and_crops(masks: Sequence[np.ndarray]):
    """Ground-truth instance masks → ((N, 4) float32 xyxy boxes, MaskCrops), as a result holds them.

    The box is the mask's pixel extent ``[x0, y0, x1 + 1, y1 + 1]``.
    """
    from fastsam_onnx.masks import MaskCrop

    boxes, crops = [], []
    for m in masks:
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        boxes.append([x0, y0, x1, y1])
        crops.append(MaskCrop(x0, y0, np.ascontiguousarray(m[y0:y1, x0:x1])))
    return np.asarray(boxes, np.float32).reshape(-1, 4), crops


def scene_crops(image: np.ndarray, masks: Sequence[np.ndarray]) -> Tuple[List[np.ndarray], List[int]]:
    """RGB crops of the ground-truth instances, made exactly as a text prompt makes them
    (:func:`fastsam_onnx.clip.crops.text_crops`), and their instance indices."""
    from fastsam_onnx.clip.crops import text_crops

    boxes, crops = gt_boxes_and_crops(masks)
    return text_crops(image, boxes, crops)


def perturb_mask(mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """A predicted-looking version of a ground-truth mask and its box: the mask dilated or eroded
    by 1-2 px (or left alone), the box its extent grown by 0-6 px per side (clipped to the image)."""
    h, w = mask.shape
    m = mask.astype(np.uint8)
    op = int(rng.integers(3))
    k = int(rng.integers(1, 3)) * 2 + 1
    if op == 1:
        m = cv2.dilate(m, np.ones((k, k), np.uint8))
    elif op == 2:
        eroded = cv2.erode(m, np.ones((k, k), np.uint8))
        if eroded.sum() > 150:
            m = eroded
    ys, xs = np.nonzero(m)
    g = rng.integers(0, 7, 4)
    box = (max(0, int(xs.min()) - int(g[0])), max(0, int(ys.min()) - int(g[1])),
           min(w, int(xs.max()) + 1 + int(g[2])), min(h, int(ys.max()) + 1 + int(g[3])))
    return m.astype(bool), box


def perturbed_crops(image: np.ndarray, masks: Sequence[np.ndarray], rng: np.random.Generator) -> List[np.ndarray]:
    """One perturbed text-prompt crop (:func:`perturb_mask`) per instance, RGB uint8."""
    from fastsam_onnx.masks import MaskCrop
    from fastsam_onnx.clip.crops import text_crops

    out = []
    for mask in masks:
        m, (x1, y1, x2, y2) = perturb_mask(mask, rng)
        crop = MaskCrop(x1, y1, m[y1:y2, x1:x2])
        imgs, keep = text_crops(image, np.array([[x1, y1, x2, y2]], np.float32), [crop])
        out.append(imgs[0])
    return out


class Preprocess:
    """``clip.clip._transform(n_px)`` split in two: the PIL part (resize, centre crop, RGB) per crop,
    stored as uint8, and its ToTensor + Normalize tail applied to whole batches (same arithmetic)."""

    def __init__(self, n_px: int):
        import torch
        from torchvision.transforms import Compose

        clip = _import_clip()
        self.full = clip.clip._transform(n_px)
        self.pil = Compose(self.full.transforms[:3])
        norm = self.full.transforms[-1]
        self.mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(norm.std, dtype=torch.float32).view(1, 3, 1, 1)

    def crop_uint8(self, rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        return np.asarray(self.pil(Image.fromarray(rgb)), dtype=np.uint8)

    def batch(self, u8: np.ndarray):
        """(B, R, R, 3) uint8 → (B, 3, R, R) float32, normalised like the clip preprocess."""
        import torch

        x = torch.from_numpy(u8).permute(0, 3, 1, 2).contiguous().float().div(255)
        return (x - self.mean) / self.std


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def training_scene(seed: int, i: int, size: int = 512) -> synth.Scene:
    """Training scene ``i`` of the data seed ``seed``."""
    return synth.make_scene(np.random.default_rng([DATA_TAG, seed, i]), size)


def build_dataset(
    n_scenes: int, seed: int, pre: Preprocess, progress: Optional[Callable[[int, int], None]] = None
) -> Dict[str, np.ndarray]:
    """Crops of ``n_scenes`` training scenes: ``exact`` and ``perturbed`` (N, R, R, 3) uint8, ``color``,
    ``shape`` (N,) int64 word indices, ``scene`` (N,) int64 scene index of each crop."""
    aug_rng = np.random.default_rng([DATA_TAG, seed, 1 << 30])
    exact, pert, col, shp, scn = [], [], [], [], []
    for i in range(n_scenes):
        sc = training_scene(seed, i)
        crops, keep = scene_crops(sc.image, sc.masks)
        pcrops = perturbed_crops(sc.image, [sc.masks[k] for k in keep], aug_rng)
        for c, p, k in zip(crops, pcrops, keep):
            exact.append(pre.crop_uint8(c))
            pert.append(pre.crop_uint8(p))
            col.append(COLORS.index(sc.colors[k]))
            shp.append(SHAPES.index(sc.shapes[k]))
            scn.append(i)
        if progress is not None:
            progress(i + 1, n_scenes)
    return {
        "exact": np.stack(exact), "perturbed": np.stack(pert), "color": np.array(col, np.int64),
        "shape": np.array(shp, np.int64), "scene": np.array(scn, np.int64),
    }
