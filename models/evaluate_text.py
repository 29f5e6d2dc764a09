"""Held-out quality of a CLIP bundle for text prompts on the synthetic demo world (torch-free).

Metric (:func:`text_accuracy`): on held-out scenes, for every instance whose ``"<colour> <shape>"``
caption is unique in its scene, the crops of all ground-truth instances of the scene (made exactly
as a text prompt makes them: :func:`fastsam_onnx.clip.crops.text_crops`, the instance's box, black
outside its mask, RGB) are scored against that caption with :class:`fastsam_onnx.clip.CLIP`
(ONNX Runtime); a hit is when the best-scoring crop is the named instance.  Top-1 = hits / prompts.

:func:`prompt_accuracy` is the same question end to end: a FastSAM model segments the scene,
``FastSAM.prompt(result, texts=[...])`` picks one instance per caption, and a hit is when the
picked mask overlaps the named ground-truth instance with IoU >= 0.5.

Held-out scenes are ``synth.make_scene(numpy.random.default_rng([seed, i]), 512)``, i = 0..n-1
(:func:`fastsam_onnx.models.evaluate.heldout_scenes`), default seed :data:`HELDOUT_SEED`: a random
stream used by neither training recipe (the FastSAM demo trains on integer seeds, the demo CLIP on
``[DATA_TAG, seed, i]`` triples).

Usage::

    python -m fastsam_onnx.models.evaluate_text                       # the shipped demo CLIP
    python -m fastsam_onnx.models.evaluate_text --clip DIR --n-images 200
    python -m fastsam_onnx.models.evaluate_text --fastsam models/demo # end to end with FastSAM
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from . import synth

#: Seed of the held-out scenes (never used for training).
HELDOUT_SEED = 31337

PathLike = Union[str, "os.PathLike[str]"]


def heldout_scenes(n_images: int, seed: int = HELDOUT_SEED, size: int = 512) -> List[synth.Scene]:
    """The held-out scenes: ``make_scene(default_rng([seed, i]), size)`` for i < n_images."""
    from .evaluate import heldout_scenes as _heldout

    return _heldout(n_images, seed, size)


def unique_captions(scene: synth.Scene) -> List[Tuple[str, int]]:
    """``(caption, instance index)`` for every instance whose ``"<colour> <shape>"`` is unique in the scene."""
    caps = scene.captions()
    count = Counter(caps)
    return [(c, i) for i, c in enumerate(caps) if count[c] == 1]


def gt_text_crops(scene: synth.Scene) -> Tuple[List[np.ndarray], List[int]]:
    """The text-prompt crops of a scene's ground-truth instances (RGB uint8) and their instance indices."""
    from fastsam_onnx.masks import MaskCrop
    from fastsam_onnx.clip.crops import text_crops

    boxes, crops = [], []
    for m in scene.masks:
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        boxes.append([x0, y0, x1, y1])
        crops.append(MaskCrop(x0, y0, np.ascontiguousarray(m[y0:y1, x0:x1])))
    return text_crops(scene.image, np.asarray(boxes, np.float32).reshape(-1, 4), crops)


def _clip(clip_bundle) -> "object":
    from fastsam_onnx.clip import CLIP

    return clip_bundle if isinstance(clip_bundle, CLIP) else CLIP(clip_bundle, providers="cpu")


def text_accuracy_details(clip_bundle, n_images: int = 200, seed: int = HELDOUT_SEED, size: int = 512) -> dict:
    """Like :func:`text_accuracy`, with the details: ``top1``, ``n`` (prompts), ``n_images``, ``seed``,
    ``errors`` (list of (scene index, caption, picked caption)), ``margins`` (similarity of the named
    crop minus the best other crop, per prompt)."""
    model = _clip(clip_bundle)
    hits, n, errors, margins = 0, 0, [], []
    for j, scene in enumerate(heldout_scenes(n_images, seed, size)):
        cases = unique_captions(scene)
        if not cases:
            continue
        images, keep = gt_text_crops(scene)
        sim = model.similarity(images, [c for c, _ in cases])  # (M, K)
        caps = scene.captions()
        for (text, target), row in zip(cases, sim):
            k = keep.index(target)
            best = int(np.argmax(row))
            others = np.delete(row, k)
            margins.append(float(row[k] - others.max()) if others.size else float("inf"))
            n += 1
            if best == k:
                hits += 1
            else:
                errors.append((j, text, caps[keep[best]]))
    return {"top1": hits / max(n, 1), "n": n, "n_images": n_images, "seed": seed, "errors": errors, "margins": margins}


def text_accuracy(clip_bundle, n_images: int = 200, seed: int = HELDOUT_SEED, size: int = 512) -> float:
    """Held-out top-1 of a CLIP bundle (a directory or a :class:`fastsam_onnx.clip.CLIP`) on the demo
    world: the share of ``"<colour> <shape>"`` prompts whose best-scoring ground-truth crop is the named
    instance (see the module docstring)."""
    return float(text_accuracy_details(clip_bundle, n_images, seed, size)["top1"])


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = int((a & b).sum())
    return inter / max(int((a | b).sum()), 1)


def prompt_accuracy_details(
    fastsam, clip_bundle=None, n_images: int = 50, seed: int = HELDOUT_SEED, size: int = 512, min_iou: float = 0.5,
    **segment_kwargs,
) -> dict:
    """End to end: ``fastsam`` (a :class:`fastsam_onnx.FastSAM` or a bundle path) segments each held-out
    scene, then one ``prompt(result, texts=[...])`` call with all the scene's unique captions picks an
    instance per caption; a hit is a picked mask with IoU >= ``min_iou`` against the named instance.

    Returns ``top1`` (hits / prompts), ``n``, ``covered`` (share of prompts whose instance has some
    predicted mask with IoU >= min_iou: the best a text prompt can do with this segmenter), ``n_images``.
    """
    from fastsam_onnx import FastSAM

    if isinstance(fastsam, FastSAM):
        if clip_bundle is not None:
            raise ValueError("pass clip_bundle only with a FastSAM bundle path; a FastSAM object brings its own CLIP")
        model = fastsam
    else:
        model = FastSAM(fastsam, providers="cpu", clip=clip_bundle)
    hits, covered, n = 0, 0, 0
    for scene in heldout_scenes(n_images, seed, size):
        cases = unique_captions(scene)
        if not cases:
            continue
        everything = model.segment(scene.image, **segment_kwargs)
        masks = everything.masks if len(everything) else np.zeros((0,) + scene.image.shape[:2], bool)
        texts = [c for c, _ in cases]
        picked = model.prompt(everything, texts=texts) if len(everything) else None
        chosen = {}
        if picked is not None:
            for mask, tags in zip(picked.masks, picked.selected_by):
                for t in tags:
                    chosen[t[len("text:"):]] = mask
        for text, target in cases:
            n += 1
            gt = scene.masks[target]
            if len(masks) and max(_mask_iou(m, gt) for m in masks) >= min_iou:
                covered += 1
            if text in chosen and _mask_iou(chosen[text], gt) >= min_iou:
                hits += 1
    return {"top1": hits / max(n, 1), "covered": covered / max(n, 1), "n": n, "n_images": n_images, "seed": seed}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastsam_onnx.models.evaluate_text", description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, help="CLIP bundle (default: the shipped demo CLIP)")
    p.add_argument("--fastsam", type=Path, help="also evaluate end to end with this FastSAM bundle")
    p.add_argument("--n-images", type=int, default=200)
    p.add_argument("--seed", type=int, default=HELDOUT_SEED)
    args = p.parse_args(argv)
    from . import demo_clip_bundle

    bundle = args.clip or demo_clip_bundle()
    d = text_accuracy_details(bundle, args.n_images, args.seed)
    m = np.asarray(d["margins"])
    out = {k: d[k] for k in ("top1", "n", "n_images", "seed")}
    out["margin_p05"] = float(np.percentile(m, 5)) if m.size else None
    out["errors"] = [f"{e[1]} -> {e[2]}" for e in d["errors"][:30]]
    if args.fastsam is not None:
        out["end_to_end"] = prompt_accuracy_details(args.fastsam, bundle, min(args.n_images, 50), args.seed)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
