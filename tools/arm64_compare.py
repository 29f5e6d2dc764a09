"""``tools/arm64-check``'s comparison of two ``segment --json`` results (x86 and aarch64) and its table.

Agreement (issue 28 item 3): the same instance count and prompt picks (``selected_by``), boxes within 0.1 px,
scores within 5e-3, every mask IoU >= 0.995. Identical input (the default "linear" resize gives the same input
tensor on every CPU): what is left is onnxruntime's float rounding between its x86 and arm64 kernels, so the bar is
the same counts and picks, boxes within 0.02 px, scores within 2e-4, every mask IoU >= 0.999 (measured: the demo
model 0.001 px = the JSON's rounding, 1e-6, IoU 1; the FastSAM-s-shaped test model 0.004 px, 2.8e-5, 0.99996;
OpenCV's own arm64 resize instead: 1.7 px, 2e-2, 0.985).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AGREE = {"box": 0.1, "score": 5e-3, "iou": 0.995}
IDENTICAL = {"box": 0.02, "score": 2e-4, "iou": 0.999}


@dataclass
class Row:
    """One compared check: figures and verdict."""

    check: str
    image: str
    n_x86: int
    n_arm: int
    picks: str = "-"
    box: float = 0.0
    score: float = 0.0
    iou_min: float = 1.0
    ok: bool = True
    info: bool = False  # reported, never a failure
    notes: list[str] = field(default_factory=list)


def _counts(s: str) -> list[int]:
    """COCO's compressed RLE string → run lengths (pycocotools' rleFrString)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _mask(rle: dict) -> np.ndarray:
    from fastsam_onnx.outputs.rle import decode_rle

    if isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": _counts(rle["counts"])}
    return decode_rle(rle)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def _match(bx: np.ndarray, ba: np.ndarray) -> np.ndarray:
    """Index into ``ba`` for each of ``bx``: the same order unless near-equal scores swapped two, then by box IoU."""
    same = np.arange(len(bx))
    iou = _box_iou(bx, ba)
    if (iou[same, same] > 0.99).all():
        return same
    order = np.full(len(bx), -1)
    for i in np.argsort(-iou.max(1)):
        free = np.where(np.isin(np.arange(len(ba)), order), -1.0, iou[i])
        order[i] = int(np.argmax(free))
    return order


def compare(check: str, image: str, x86: dict, arm: dict, exact: bool) -> Row:
    """Compare the ``instances`` of two segment JSON documents; ``exact``: the identical bar instead of agreement."""
    ix, ia = x86["instances"], arm["instances"]
    row = Row(check, image, len(ix), len(ia))
    bar = IDENTICAL if exact else AGREE
    if len(ix) != len(ia):
        row.ok = False
        row.notes.append("instance counts differ")
        return row
    if not ix:
        row.notes.append("no instances on either side")
        return row
    bx = np.array([i["box"] for i in ix], float)
    ba = np.array([i["box"] for i in ia], float)
    idx = _match(bx, ba)
    row.box = float(np.abs(bx - ba[idx]).max())
    row.score = float(max(abs(ix[k]["score"] - ia[j]["score"]) for k, j in enumerate(idx)))
    ious = []
    for k, j in enumerate(idx):
        mx, ma = _mask(ix[k]["segmentation"]), _mask(ia[j]["segmentation"])
        union = np.logical_or(mx, ma).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(mx, ma).sum() / union))
    row.iou_min = min(ious)
    picks_x = [sorted(ix[k].get("selected_by", [])) for k in range(len(ix))]
    picks_a = [sorted(ia[j].get("selected_by", [])) for j in idx]
    if any(picks_x):
        tags = sorted({t for p in picks_x for t in p})
        row.picks = ",".join(f"{t}:{sum(t in p for p in picks_x)}" for t in tags)
        if picks_x != picks_a:
            row.ok = False
            row.notes.append("prompt picks differ")
    for name, value, limit in (("box", row.box, bar["box"]), ("score", row.score, bar["score"])):
        if value > limit:
            row.ok = False
            row.notes.append(f"{name} difference {value:.3g} > {limit:g}")
    if row.iou_min < bar["iou"]:
        row.ok = False
        row.notes.append(f"mask IoU {row.iou_min:.5f} < {bar['iou']:g}")
    return row


def table(rows: list[Row], exact: bool, what: str = "") -> str:
    """The comparison as a fixed-width text table."""
    bar = IDENTICAL if exact else AGREE
    head = (f"aarch64 (qemu-user emulation) vs x86_64{what}, bar: {'identical input' if exact else 'agreement'} "
            f"(boxes <= {bar['box']:g} px, scores <= {bar['score']:g}, mask IoU >= {bar['iou']:g}, same counts and picks)")
    lines = [head, f"{'check':<24} {'image':<14} {'n x86':>5} {'n arm':>5} {'box Δ px':>9} {'score Δ':>9} "
                   f"{'IoU min':>8}  {'picks (tag:count)':<28} verdict"]
    for r in rows:
        verdict = "ok" if r.ok else ("info only: " if r.info else "MISMATCH: ") + "; ".join(r.notes)
        lines.append(f"{r.check:<24} {r.image[:14]:<14} {r.n_x86:>5} {r.n_arm:>5} {r.box:>9.4f} {r.score:>9.2e} "
                     f"{r.iou_min:>8.5f}  {r.picks[:28]:<28} {verdict}")
    return "\n".join(lines)
