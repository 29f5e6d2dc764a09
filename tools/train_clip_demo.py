"""Reproducible recipe for the offline demo CLIP ``models/clip-demo/`` (text prompts of the demo world).

The real CLIP weights cannot be shipped or downloaded here, so the demo CLIP is a TINY model of
CLIP's exact architecture (``clip.model.CLIP``: a ViT image tower, a causal text transformer over
the real CLIP BPE vocabulary of 49408 tokens with 77-token contexts, both projected into a shared
embedding space), trained from scratch, offline, on the synthetic demo world of
:mod:`fastsam_onnx.models.synth`.  It is saved as a state dict that ``clip.load(path)`` rebuilds
(the architecture is inferred from the tensor shapes), and exported with the project's own
:func:`fastsam_onnx.export.clip.export_clip`, so it exercises exactly the code path of a real
CLIP checkpoint.

Usage::

    python tools/train_clip_demo.py --out runs/clip-demo          # the shipped model
    python tools/train_clip_demo.py --out /tmp/cd --quick         # CI smoke test (seconds)

A repository tool (``tools/`` is not installed), with its data in ``tools/clip_demo_data.py``; needs the
``[export]`` extra.

Recipe:
    1. Data: ``--scenes`` scenes ``synth.make_scene(numpy.random.default_rng([DATA_TAG, seed, i]))``
       (512 px), a random stream of its own (the FastSAM demo data uses integer seeds, the held-out
       evaluations ``[seed, i]`` seed pairs).  Every ground-truth instance is cropped exactly as a
       text prompt crops it (:func:`fastsam_onnx.clip.crops.text_crops`: the instance's box, black
       outside its mask, RGB), once from the exact ground truth and once perturbed the way a
       predicted mask differs from it (box grown by 0-6 px per side, mask dilated or eroded by
       1-2 px, or both), so that it also copes with FastSAM's masks.  Crops go through the clip
       module's own preprocess ``clip.clip._transform(n_px)`` (bicubic resize of the short side,
       centre crop; the ToTensor/Normalize tail is applied per batch, bit-identical).
    2. Captions from the colour and shape words, with templates: full (``"red circle"`` half of
       the time, else ``"a red circle"``, ``"a photo of a red circle"``, ...), colour only
       (``"red"``, ``"red object"``, ...) and shape only (``"circle"``, ``"a circle"``, ...).
    3. Loss per step, on a batch of whole scenes (so the negatives are the other objects of the
       same scenes, as at prompt time): the 100 full captions, 10 colour and 10 shape captions
       (one random template each) are encoded; image→text cross-entropy over each caption set
       plus text→image cross-entropy over the batch's crops (soft targets: all crops a caption
       describes), averaged — a symmetric, label-aware CLIP contrastive loss with CLIP's own
       learnable temperature (clamped at 100).  AdamW, warm-up + cosine schedule, one CPU
       thread, ``torch.manual_seed(seed)``, data order from ``numpy.random.default_rng``.
    4. Save the state dict in fp16 like the released checkpoints (``OUT/clip-demo.pt``), export it
       with ``export_clip`` (to ``models/clip-demo/`` by default, ``OUT/clip-demo/`` with
       ``--quick``), store the text graph's token embedding as fp16 (``tools/fp16_storage.py``: exact,
       the checkpoint is fp16; the outputs are bit-identical), then measure the held-out top-1 on the
       exported bundle with the torch-free runtime (:func:`fastsam_onnx.models.evaluate_text.text_accuracy`).

Model (:data:`DIMS`, 1.0 M image + 3.4 M text parameters): ViT image tower at 96 px, patch 16
(6 x 6 tokens + class token), width 64, 4 layers, 1 head; text transformer width 64, 1 head, 2
layers; 64-d embeddings.  The 49408 x 64 token embedding dominates the size (12.6 MB of the 13.1 MB
text graph in fp32, 6.3 MB of 6.8 MB stored as fp16); a width below 64 is impossible (``clip.model.build_model`` derives the number
of heads as width // 64).  96 px / patch 16 beat 64 px / patch 8 (0.936 vs 0.918 top-1 after 600
steps) at half the cost.

RESULTS (the shipped model: defaults, seed 0; 2-core x86 CPU shared with other jobs at load
average 5-6, torch 2.14.1 CPU, one thread):
    wall clock 506 s (8.4 min): data 175 s (1500 scenes → 11370 instances, 2 crops each),
    training 306 s (1500 steps of 12 scenes ≈ 90 crops), export 1 s, evaluation 21 s.
    Reproducible: two runs gave a bit-identical ``clip-demo.pt`` (sha256 8f6b879e...).
    Held-out top-1 (:func:`~fastsam_onnx.models.evaluate_text.text_accuracy`, 200 scenes, seed
    31337, exported fp16 weights on ONNX Runtime): 0.9632 (1333 / 1384 prompts).  39 of the 51
    misses name a black object (black on the black of the masked crop: shape confusions); the
    other colours are at 0.99.  End to end with the shipped demo FastSAM (``FastSAM.prompt(texts=)``,
    picked mask IoU >= 0.5 with the named object, 50 scenes): 0.927, where 0.987 of the named
    objects have a matching FastSAM mask at all.
    Bundle: clip_text.onnx 6.81 MB (13.14 MB before its token embedding was stored as fp16) +
    clip_image.onnx 1.08 MB + BPE vocabulary 1.36 MB + manifest = 9.25 MB; ``clip-demo.pt`` (7.1 MB,
    fp16) is kept beside it for the parity tests.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

# tools/, beside this script
from clip_demo_data import (  # noqa: F401  (training_scene, caption: the recipe's data, used by the tests)
    COLOR_TEMPLATES, COLORS, DATA_TAG, FULL_TEMPLATES, SHAPE_TEMPLATES, SHAPES, Preprocess, _import_clip,
    build_dataset, caption, training_scene,
)

CHECKPOINT_NAME = "clip-demo.pt"

#: The demo CLIP's architecture (``clip.model.CLIP`` arguments).  Heads must be width // 64, which is
#: what ``clip.model.build_model`` infers when ``clip.load`` rebuilds the model from the state dict.
DIMS = dict(
    embed_dim=64,
    image_resolution=96,
    vision_layers=4,
    vision_width=64,
    vision_patch_size=16,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=2,
)

#: Defaults of the shipped model (the measured run).
DEFAULTS = dict(seed=0, scenes=1500, steps=1500, scenes_per_batch=12, lr=2e-3, weight_decay=0.05, warmup=100)
#: ``--quick``: a smoke test of the whole recipe (seconds).
QUICK = dict(scenes=6, steps=4, scenes_per_batch=3, warmup=1)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def make_model(seed: int):
    import torch

    clip = _import_clip()
    torch.manual_seed(seed)
    model = clip.model.CLIP(**DIMS)
    model.initialize_parameters()
    return model.float()


def _tokens(texts: Sequence[str]):
    """CLIP tokens of ``texts`` cut after the longest end token: with the causal mask the pooled
    (end-token) features are exactly those of the full 77-token input, at a fraction of the cost."""
    clip = _import_clip()
    tok = clip.tokenize(list(texts), context_length=DIMS["context_length"], truncate=True)
    n = int(tok.argmax(-1).max()) + 1
    return tok[:, :n]


def train(
    out: Path,
    *,
    seed: int = 0,
    scenes: int = DEFAULTS["scenes"],
    steps: int = DEFAULTS["steps"],
    scenes_per_batch: int = DEFAULTS["scenes_per_batch"],
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    warmup: int = DEFAULTS["warmup"],
    log: Callable[[str], None] = print,
) -> Tuple[Path, dict]:
    """Train the demo CLIP; save its fp16 state dict to ``out/clip-demo.pt``. Returns (path, stats)."""
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine: one thread is faster than two contending
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pre = Preprocess(DIMS["image_resolution"])

    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            log(f"data: {done}/{total} scenes ({time.perf_counter() - t0:.0f} s)")

    data = build_dataset(scenes, seed, pre, progress)
    n = len(data["color"])
    t_data = time.perf_counter() - t0
    log(f"data: {n} instances from {scenes} scenes in {t_data:.0f} s")

    model = make_model(seed)
    model.train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-6,
    )

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    rng = np.random.default_rng([DATA_TAG, seed, 1 << 31])
    # Every caption tokenized once: rows of all_tokens; full_ids[class, template], col_ids, shp_ids.
    captions: List[str] = []
    full_ids = np.zeros((len(COLORS) * len(SHAPES), len(FULL_TEMPLATES)), np.int64)
    col_ids = np.zeros((len(COLORS), len(COLOR_TEMPLATES)), np.int64)
    shp_ids = np.zeros((len(SHAPES), len(SHAPE_TEMPLATES)), np.int64)
    for ci, cw in enumerate(COLORS):
        for si, sw in enumerate(SHAPES):
            for ti, t in enumerate(FULL_TEMPLATES):
                full_ids[ci * len(SHAPES) + si, ti] = len(captions)
                captions.append(caption(t, cw, sw))
    for ids, words, templates, key in ((col_ids, COLORS, COLOR_TEMPLATES, "c"), (shp_ids, SHAPES, SHAPE_TEMPLATES, "s")):
        for wi, word in enumerate(words):
            for ti, t in enumerate(templates):
                ids[wi, ti] = len(captions)
                captions.append(caption(t, **{"color" if key == "c" else "shape": word}))
    all_tokens = _tokens(captions)
    by_scene = [np.flatnonzero(data["scene"] == i) for i in range(scenes)]
    order: List[int] = []
    ep_losses: List[float] = []
    t1 = time.perf_counter()
    for step in range(steps):
        if len(order) < scenes_per_batch:
            order += rng.permutation(scenes).tolist()
        group, order = order[:scenes_per_batch], order[scenes_per_batch:]
        idx = np.concatenate([by_scene[g] for g in group])
        use_pert = rng.random(len(idx)) < 0.5
        u8 = np.where(use_pert[:, None, None, None], data["perturbed"][idx], data["exact"][idx])
        c = torch.from_numpy(data["color"][idx])
        s = torch.from_numpy(data["shape"][idx])

        # One random template per caption; the bare "<colour> <shape>" (what users type) half the time.
        nf_t = len(FULL_TEMPLATES)
        ft = np.where(rng.random(len(full_ids)) < 0.5, 0, rng.integers(1, nf_t, len(full_ids)))
        ct = rng.integers(len(COLOR_TEMPLATES), size=len(COLORS))
        st = rng.integers(len(SHAPE_TEMPLATES), size=len(SHAPES))
        rows = np.concatenate([full_ids[np.arange(len(full_ids)), ft], col_ids[np.arange(len(COLORS)), ct],
                               shp_ids[np.arange(len(SHAPES)), st]])
        tok = all_tokens[torch.from_numpy(rows)]
        tok = tok[:, : int(tok.argmax(-1).max()) + 1]

        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        img = model.encode_image(pre.batch(u8))
        txt = model.encode_text(tok)
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        scale = model.logit_scale.exp().clamp(max=100.0)
        logits = scale * img @ txt.t()  # (B, 120)
        nf, nc = len(full_ids), len(COLORS)
        y_full = c * len(SHAPES) + s
        # (B, 120) which captions describe each crop
        n_txt = len(rows)
        pos = torch.zeros(len(idx), n_txt)
        pos[torch.arange(len(idx)), y_full] = 1
        pos[torch.arange(len(idx)), nf + c] = 1
        pos[torch.arange(len(idx)), nf + nc + s] = 1
        ce = torch.nn.functional.cross_entropy
        i2t = ce(logits[:, :nf], y_full) + 0.5 * (ce(logits[:, nf : nf + nc], c) + ce(logits[:, nf + nc :], s))
        present = pos.sum(0) > 0
        lt, pt = logits.t()[present], pos.t()[present]
        w = torch.where(torch.arange(n_txt)[present] < nf, 1.0, 0.5)
        t2i = (w * -(pt / pt.sum(1, keepdim=True) * torch.log_softmax(lt, 1)).sum(1)).sum() / w.sum()
        loss = 0.5 * (i2t + 2.0 * t2i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ep_losses.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            with torch.no_grad():
                acc = float((logits[:, :nf].argmax(1) == y_full).float().mean())
            log(
                f"step {step + 1}/{steps}  loss {np.mean(ep_losses[-50:]):.3f}  batch top-1 {acc:.3f}  "
                f"scale {float(scale.detach()):.1f}  lr {lr_at(step):.2e}  ({time.perf_counter() - t1:.0f} s)"
            )
    t_train = time.perf_counter() - t1

    path = out / CHECKPOINT_NAME
    part = path.with_name(path.name + ".part")
    model.eval()
    torch.save(model.half().state_dict(), part)
    part.rename(path)
    stats = {
        "dims": DIMS, "seed": seed, "scenes": scenes, "instances": int(n), "steps": steps,
        "scenes_per_batch": scenes_per_batch, "lr": lr, "weight_decay": weight_decay, "warmup": warmup,
        "data_s": round(t_data, 1), "train_s": round(t_train, 1), "final_loss": float(np.mean(ep_losses[-50:])),
        "torch": torch.__version__,
    }
    return path, stats


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python tools/train_clip_demo.py", description="Train and export the offline demo CLIP."
    )
    p.add_argument("--out", type=Path, required=True, help="working folder: clip-demo.pt and train_log.json")
    p.add_argument("--bundle", type=Path, help="export target (default: the package's models/clip-demo; OUT/clip-demo with --quick)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--steps", type=int, help=f"optimiser steps (default {DEFAULTS['steps']})")
    p.add_argument("--scenes", type=int, help=f"training scenes (default {DEFAULTS['scenes']})")
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds) for a smoke test")
    p.add_argument("--no-export", action="store_true", help="only train and save the checkpoint")
    p.add_argument("--eval-images", type=int, default=200, help="held-out scenes for the top-1 (0: skip)")
    args = p.parse_args(argv)

    cfg = dict(DEFAULTS)
    if args.quick:
        cfg.update(QUICK)
    cfg["seed"] = args.seed
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.scenes is not None:
        cfg["scenes"] = args.scenes
    t0 = time.perf_counter()
    ckpt, stats = train(args.out, **cfg)
    print(f"saved {ckpt} ({ckpt.stat().st_size / 1e6:.1f} MB)")
    if not args.no_export:
        from fastsam_onnx.export.clip import export_clip

        from fastsam_onnx.models import demo_clip_bundle

        bundle = args.bundle or (args.out / "clip-demo" if args.quick else demo_clip_bundle())
        t1 = time.perf_counter()
        export_clip(ckpt, bundle, progress=lambda i, msg: print(f"export [{i}/6] {msg}"))
        from fp16_storage import store_bundle  # tools/, beside this script

        stats["fp16_storage"] = store_bundle(bundle)  # exact: the fp16 checkpoint's values, bit-identical outputs
        stats["export_s"] = round(time.perf_counter() - t1, 1)
        stats["bundle"] = str(bundle)
        stats["bundle_mb"] = round(sum(f.stat().st_size for f in bundle.iterdir()) / 1e6, 2)
        # Ship the checkpoint beside the graphs (manifest sha256.weights identifies it): the parity tests
        # run ultralytics' PyTorch CLIP on exactly these weights.
        shutil.copyfile(ckpt, bundle / CHECKPOINT_NAME)
        print(f"exported {bundle} ({stats['bundle_mb']} MB)")
        if args.eval_images > 0:
            from fastsam_onnx.models.evaluate_text import text_accuracy_details

            t2 = time.perf_counter()
            d = text_accuracy_details(bundle, n_images=(4 if args.quick else args.eval_images))
            stats["heldout"] = {k: d[k] for k in ("top1", "n", "n_images", "seed")}
            stats["eval_s"] = round(time.perf_counter() - t2, 1)
            print(f"held-out top-1 {d['top1']:.4f} over {d['n']} prompts ({d['n_images']} scenes, seed {d['seed']})")
    stats["total_s"] = round(time.perf_counter() - t0, 1)
    (args.out / "train_log.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
