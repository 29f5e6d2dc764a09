"""Deterministic, download-free FastSAM-shaped checkpoints that actually detect things.

``make_checkpoint("yolov8s-seg.yaml", tmp_path / "fastsam-s.pt")`` builds a one-class ultralytics
``SegmentationModel`` (the FastSAM architecture) from its yaml config and gives it weights that find a
realistic number of instances (dozens at ``conf=0.4``) on real photographs, then saves it the way
ultralytics saves checkpoints so that ``ultralytics.FastSAM(path)`` / ``YOLO(path)`` load it (task
"segment", names ``{0: "object"}``) and the ultralytics ONNX exporter works on it.

How the weights are made (seeded, CPU only, no downloads; same seed gives identical weights):

1. Random init under ``torch.manual_seed(seed)`` (the global RNG state is restored afterwards).
2. BatchNorm statistics re-estimated (train mode, cumulative average) on the two photographs shipped
   with ultralytics (bus.jpg, zidane.jpg) letterboxed to 640, rect and square, plus mirror images.
   Box, mask-coefficient and prototype branches then give non-degenerate outputs (non-empty masks).
3. All weights rounded to fp16 (the checkpoint is stored in half precision; ultralytics runs it in fp32).
4. The last class conv of each head level (``model.model[-1].cv3[i][-1]``) is refitted on the
   calibration cases (both photographs at 640 and 1024, rect letterbox as the PyTorch predictor and
   dynamic graphs use it, square as static graphs do): its direction is nudged from the random init so
   that both photographs get a similar number of anchors above the threshold (a random deep net
   otherwise responds far more strongly to the high-contrast bus.jpg), its scale gives the passing
   anchors a mean score of about 0.83, and its bias is picked among fp16-representable values so that
   no anchor's score lies within GAP of THRESHOLD in any calibration case (nor for bus.jpg at 704 and
   800). Float noise between runtimes then cannot change which anchors pass ``score > 0.4``.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics: skip online checks

import cv2
import numpy as np
import torch
import torch.nn.functional as F

THRESHOLD = 0.4  # class-score threshold the parity tests use (conf=0.4)
GAP = 2e-3  # no anchor score may lie within +-GAP of THRESHOLD
IMAGES = ("bus.jpg", "zidane.jpg")
SIZES = (640, 1024)
TARGETS = {640: 25, 1024: 60}  # wanted anchors above THRESHOLD per image and imgsz (before NMS)
GAP_ONLY = (("bus.jpg", 704), ("bus.jpg", 800))  # also kept clear of THRESHOLD (rect letterbox), no count target
LEVEL_SHARE = (0.5, 0.3, 0.2)  # how the targets split over strides 8, 16, 32
TAIL_LOGIT = 2.0  # mean logit excess of the passing anchors over the threshold (mean score ~ 0.83)
MAX_LOGIT = 8.0  # cap on the best anchor's logit excess (score ~ 0.9997): keeps scores distinct in fp32
MIN_OVERLAP = 8.0  # passing boxes overlap the image content (not the padding) by this many input pixels each way


class Case(NamedTuple):
    """One calibration input."""

    image: str
    imgsz: int
    rect: bool  # minimal-rectangle letterbox (PyTorch predictor, dynamic graphs) or full square (static graphs)
    x: torch.Tensor  # 1x3xHxW RGB float in [0, 1]
    content: tuple[int, int, int, int]  # x1, y1, x2, y2 of the image inside the letterboxed input
    target: float | None  # wanted anchors above THRESHOLD; None: only the score gap is enforced


def assets_dir() -> Path:
    """Folder of the sample photographs shipped inside the ultralytics package."""
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets"


def letterbox_tensor(img: np.ndarray, imgsz: int, rect: bool) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Letterbox a BGR image exactly like the ultralytics predictor.

    Returns the 1x3xHxW RGB float input in [0, 1] and the x1, y1, x2, y2 of the image content inside it.
    """
    from ultralytics.data.augment import LetterBox

    im = LetterBox((imgsz, imgsz), auto=rect, stride=32)(image=img)
    h0, w0 = img.shape[:2]
    r = min(imgsz / h0, imgsz / w0)
    nw, nh = round(w0 * r), round(h0 * r)
    left, top = round((im.shape[1] - nw) / 2 - 0.1), round((im.shape[0] - nh) / 2 - 0.1)
    x = torch.from_numpy(np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1))).float().div_(255)[None]
    return x, (left, top, left + nw, top + nh)


def calibration_cases() -> list[Case]:
    """IMAGES at SIZES in rect and square letterbox (with count targets), then the GAP_ONLY rect inputs."""
    imgs = {name: cv2.imread(str(assets_dir() / name)) for name in IMAGES}
    todo = [(name, size, rect, TARGETS[size]) for name in IMAGES for size in SIZES for rect in (True, False)]
    todo += [(name, size, True, None) for name, size in GAP_ONLY]
    return [Case(name, size, rect, *letterbox_tensor(imgs[name], size, rect), t) for name, size, rect, t in todo]


@torch.no_grad()
def _recalibrate_bn(model: torch.nn.Module, inputs: list[torch.Tensor]) -> None:
    """Replace BatchNorm running stats by cumulative averages over the inputs and their mirror images."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momentum = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for x in inputs:
        model(x)
        model(x.flip(3))
    model.eval()
    for m, mom in zip(bns, momentum):
        m.momentum = mom


@torch.no_grad()
def _class_features(
    model: torch.nn.Module, cases: list[Case]
) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Inputs of each head level's last class conv, ``feats[level][case]`` a (C, H, W) tensor, and ``outside[level]
    [case]``, a (H*W,) bool tensor: the anchor's box overlaps the image content by less than MIN_OVERLAP pixels."""
    head = model.model[-1]
    feats: list[list[torch.Tensor]] = [[] for _ in head.cv3]
    outside: list[list[torch.Tensor]] = [[] for _ in head.cv3]
    hooks = [
        conv[-1].register_forward_pre_hook(lambda mod, inp, i=i: feats[i].append(inp[0][0].clone()))
        for i, conv in enumerate(head.cv3)
    ]
    try:
        for case in cases:
            (pred, _), _ = model(case.x)
            cx, cy, w, h = pred[0, :4]
            x1, y1, x2, y2 = case.content
            ow = (cx + w / 2).clamp(max=x2) - (cx - w / 2).clamp(min=x1)
            oh = (cy + h / 2).clamp(max=y2) - (cy - h / 2).clamp(min=y1)
            out = (ow < MIN_OVERLAP) | (oh < MIN_OVERLAP)
            for i, part in enumerate(out.split([f[-1][0].numel() for f in feats])):
                outside[i].append(part)
    finally:
        for h in hooks:
            h.remove()
    return feats, outside


def _fit_direction(feats: list[torch.Tensor], targets: list[float], u0: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """Nudge the class-weight direction ``u0`` so that one threshold passes about ``targets[c]`` anchors in each case.

    With ``q_c`` the ``targets[c]``-th largest projection of case ``c`` and ``e_c`` the mean excess of those top ones
    over ``q_c`` (the tail width), minimises ``var(q) / mean(e)**2 + 0.2 var(log e)`` plus a penalty for leaving the
    random direction. Plain gradient descent on the case tails; no randomness.
    """
    x = torch.cat([f.flatten(1).T for f in feats])  # (sum of anchors, C)
    sizes = [f[0].numel() for f in feats]
    ks = [max(1, round(t)) for t in targets]
    u = u0.clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=0.05 * float(u0.norm()) / math.sqrt(len(u0)))
    with torch.enable_grad():
        for _ in range(steps):
            tops = [p.topk(k).values for p, k in zip((x @ u).split(sizes), ks)]
            q = torch.stack([v[-1] for v in tops])
            e = torch.stack([v.mean() for v in tops]) - q
            loss = q.var() / e.mean() ** 2 + 0.2 * e.log().var() + 0.05 * (1 - F.cosine_similarity(u, u0, dim=0))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return u.detach()


def _log_count_error(counts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((torch.log(counts + 1) - torch.log(targets + 1)) ** 2).sum(-1)


def _choose_weights(
    feats: list[torch.Tensor], outside: list[torch.Tensor], targets: list[float | None], u: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """fp16-representable (weight, bias) of a level's 1x1 class conv along direction ``u``.

    The scale makes the passing anchors' mean logit excess TAIL_LOGIT (at most MAX_LOGIT for the best one); the bias
    is the fp16 value near the count-matching one that keeps every case's scores at least 1.25 GAP from THRESHOLD
    (the 0.25 covers conv rounding differences), lets no ``outside`` anchor pass (a box in the letterbox padding
    clips to zero area) and best matches the targets (cases with target None: gap only).
    """
    zthr = math.log(THRESHOLD / (1 - THRESHOLD))
    counted = [i for i, t in enumerate(targets) if t is not None]
    tg = torch.tensor([targets[i] for i in counted], dtype=torch.float64)
    p = [(f.flatten(1).T @ u).double() for f in feats]
    sd = torch.cat(p).std()
    p = [p[i] / sd for i in counted]
    # shared threshold t (in units of sd) that best matches the targets
    grid = torch.cat(p).sort().values[-int(4 * tg.sum()) :]
    above = torch.stack([len(x) - torch.searchsorted(x.sort().values, grid, right=True) for x in p], 1)
    t = float(grid[_log_count_error(above.double(), tg).argmin()])
    excess = [float(x[x > t].mean()) - t for x in p if (x > t).any()]
    scale = min(TAIL_LOGIT / (sum(excess) / len(excess)), MAX_LOGIT / max(float(x.max()) - t for x in p))
    w = (u / sd * scale).half().float()
    b0 = zthr - scale * t
    z = [F.conv2d(f[None], w.view(1, -1, 1, 1))[0, 0].flatten().double().sort().values for f in feats]
    for reach in (0.7, 1.5, 3.0):
        cand = torch.unique(torch.linspace(b0 - reach, b0 + reach, 20001).half().float()).double()  # fp16 values
        gap_ok = torch.ones(len(cand), dtype=torch.bool)
        for zc, f, out in zip(z, feats, outside):
            if out.any():
                zout = F.conv2d(f[None], w.view(1, -1, 1, 1))[0, 0].flatten()[out].max().double()
                gap_ok &= torch.sigmoid(zout + cand) <= THRESHOLD - 1.25 * GAP
        counts = torch.zeros(len(cand), len(z), dtype=torch.float64)
        for c, zc in enumerate(z):
            k = torch.searchsorted(zc, zthr - cand, right=True)  # anchors from k on pass
            counts[:, c] = float(len(zc)) - k.double()
            lo = torch.sigmoid(zc[(k - 1).clamp(min=0)] + cand)  # highest score not passing
            hi = torch.sigmoid(zc[k.clamp(max=len(zc) - 1)] + cand)  # lowest score passing
            gap_ok &= torch.minimum((lo - THRESHOLD).abs(), (hi - THRESHOLD).abs()) >= 1.25 * GAP
        err = _log_count_error(counts[:, counted], tg)
        err[~gap_ok] = math.inf
        i = int(err.argmin())
        if math.isfinite(float(err[i])):
            return w, float(cand[i])
    raise RuntimeError("no class bias keeps all scores away from the threshold")


@torch.no_grad()
def diagnose(model: torch.nn.Module, cases: list[Case]) -> list[dict]:
    """Per case, from the raw fp32 outputs: anchors above THRESHOLD, how many of them have a non-empty mask inside
    their box (at input resolution), the smallest such mask in pixels, how many boxes lie (almost) entirely in the
    letterbox padding, and the smallest |score - THRESHOLD| over all anchors."""
    out = []
    for case in cases:
        x = case.x
        (pred, proto), _ = model(x)
        pred, proto = pred[0].double(), proto[0].double()
        keep = pred[4] > THRESHOLD
        xywh, coef = pred[:4, keep].T, pred[5:, keep].T
        logits = (coef @ proto.flatten(1)).view(1, -1, *proto.shape[1:])
        masks = F.interpolate(logits, size=x.shape[2:], mode="bilinear")[0] > 0
        ys, xs = torch.arange(x.shape[2])[:, None], torch.arange(x.shape[3])[None]
        x1, y1, x2, y2 = case.content
        ow = (xywh[:, 0] + xywh[:, 2] / 2).clamp(max=x2) - (xywh[:, 0] - xywh[:, 2] / 2).clamp(min=x1)
        oh = (xywh[:, 1] + xywh[:, 3] / 2).clamp(max=y2) - (xywh[:, 1] - xywh[:, 3] / 2).clamp(min=y1)
        areas = [
            int((m & (xs >= cx - w / 2) & (xs < cx + w / 2) & (ys >= cy - h / 2) & (ys < cy + h / 2)).sum())
            for m, (cx, cy, w, h) in zip(masks, xywh.tolist())
        ]
        out.append(
            dict(
                case=f"{case.image} {case.imgsz} {'rect' if case.rect else 'square'} {tuple(x.shape[2:])}",
                above=int(keep.sum()),
                nonempty=sum(a > 0 for a in areas),
                min_area=min(areas, default=0),
                in_padding=int(((ow < MIN_OVERLAP) | (oh < MIN_OVERLAP)).sum()),
                gap=float((pred[4] - THRESHOLD).abs().min()),
            )
        )
    return out


def make_checkpoint(cfg: str, path: Path, seed: int = 0) -> Path:
    """Build ``SegmentationModel(cfg, nc=1)`` with weights that detect dozens of instances, save it, return ``path``.

    Args:
        cfg: ultralytics model yaml, e.g. "yolov8s-seg.yaml" (FastSAM-s) or "yolov8x-seg.yaml" (FastSAM-x).
        path: where to write the checkpoint; must end in ".pt" (ultralytics checks the suffix).
        seed: seed of the random initialisation.

    The checkpoint loads with ``ultralytics.FastSAM(str(path))`` and ``YOLO(str(path))`` (task "segment",
    names ``{0: "object"}``) and exports with ``YOLO(path).export(format="onnx")``. No anchor's class score lies
    within GAP of THRESHOLD on the calibration_cases() inputs. The global RNG state and thread count are restored.
    """
    from ultralytics import __version__
    from ultralytics.nn.tasks import SegmentationModel
    from ultralytics.utils import DEFAULT_CFG_DICT

    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"checkpoint path must end in .pt: {path}")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SegmentationModel(cfg, nc=1, verbose=False)
        cases = calibration_cases()
        # BN statistics from the 640 inputs (1024 costs 2.5x as much and changes little)
        _recalibrate_bn(model, [c.x for c in cases if c.imgsz == min(SIZES) and c.target is not None])
        model.half().float()  # the checkpoint is fp16: fit to exactly the weights ultralytics will run
        feats, outside = _class_features(model, cases)
        for i, conv in enumerate(model.model[-1].cv3):
            final = conv[-1]
            targets = [None if c.target is None else c.target * LEVEL_SHARE[i] for c in cases]
            fit = [j for j, t in enumerate(targets) if t is not None]
            u = _fit_direction([feats[i][j] for j in fit], [targets[j] for j in fit], final.weight.flatten().detach())
            w, b = _choose_weights(feats[i], outside[i], targets, u)
            final.weight.data.copy_(w.view_as(final.weight))
            final.bias.data.fill_(b)
    finally:
        torch.set_num_threads(threads)

    model.names = {0: "object"}
    model.eval()
    train_args = {
        **DEFAULT_CFG_DICT,
        "task": "segment",
        "mode": "train",
        "model": cfg,
        "data": None,
        "imgsz": 1024,
        "single_cls": False,
        "seed": seed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "date": "2024-01-01T00:00:00+00:00",  # fixed, so the file depends on the seed only
            "version": __version__,
            "license": "AGPL-3.0 (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "epoch": -1,
            "best_fitness": None,
            "model": copy.deepcopy(model).half(),  # load_checkpoint() takes ckpt["ema"] or ckpt["model"], .float()s it
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": train_args,  # merged over DEFAULT_CFG_DICT by load_checkpoint(); task/imgsz survive
            "train_metrics": None,
            "train_results": None,
        },
        path,
    )
    return path


def _main(argv: list[str]) -> None:
    """``python tests/modelmaker.py CFG OUT.pt [SEED]``: build a checkpoint and report what it detects."""
    cfg, out = argv[0], Path(argv[1])
    seed = int(argv[2]) if len(argv) > 2 else 0
    t0 = time.time()
    make_checkpoint(cfg, out, seed)
    print(f"built {out} from {cfg} (seed {seed}) in {time.time() - t0:.1f}s")

    from ultralytics import FastSAM
    from ultralytics.nn.tasks import load_checkpoint

    torch.set_num_threads(2)
    model, _ = load_checkpoint(out)
    print("raw anchors (fp32, as loaded; min_area: smallest in-box mask, pixels at input size):")
    for d in diagnose(model, calibration_cases()):
        print(
            f"  {d['case']:<34} above {d['above']:>4}  nonempty masks {d['nonempty']:>4}  "
            f"min_area {d['min_area']:>6}  in padding {d['in_padding']}  gap {d['gap']:.2e}"
        )
    fs = FastSAM(str(out))
    print(f"FastSAM(path): task={fs.task} names={fs.names}")
    for name in IMAGES:
        for size in SIZES:
            r = fs.predict(
                str(assets_dir() / name), imgsz=size, conf=THRESHOLD, iou=0.9, retina_masks=True, verbose=False
            )[0]
            print(f"  FastSAM {name:<10} imgsz {size:>4}: {len(r):>4} instances")


if __name__ == "__main__":
    _main(sys.argv[1:])
