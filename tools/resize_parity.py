"""Parity with the reference of both letterbox resizes on x86 (issue 28 item 3), the measurement behind the default.

    python tools/resize_parity.py --checkpoint S.pt [--out figures.json]

For the shipped demo model (static 512: the reference is ultralytics FastSAM on the same ONNX file) and a
FastSAM-s-shaped test checkpoint (dynamic graphs at 640 and 1024 made by the native converter: the reference is
ultralytics FastSAM on the checkpoint), on the tests' real photographs (bus.jpg, zidane.jpg), prints
tests/parity.py's figures (count, largest box and score difference, mean and lowest mask IoU) for three letterbox
resizes: ``opencv`` (cv2.INTER_LINEAR, what the reference calls), ``replica`` (the default "linear" computed by
fastsam_onnx.resize's numpy replica, as on arm64) and ``exact`` (cv2.INTER_LINEAR_EXACT, bit-exact on every CPU but
not the reference's resize). Needs the [export] extra (torch, ultralytics).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SETTINGS = dict(conf=0.4, iou=0.9, max_det=300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="a FastSAM-s-shaped checkpoint (tests/modelmaker.py)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    args = ap.parse_args()
    import cv2
    import ultralytics
    import fastsam_onnx.letterbox as lbmod
    import fastsam_onnx.resize as rsmod
    from fastsam_onnx import FastSAM
    from fastsam_onnx.export.native import convert_fastsam
    from fastsam_onnx.models import demo_bundle
    from parity import compare

    assets = Path(ultralytics.__file__).parent / "assets"
    images = [assets / "bus.jpg", assets / "zidane.jpg"]
    cases = [("demo static 512", demo_bundle(), demo_bundle() / "fastsam.onnx", 512)]
    tmp = Path(tempfile.mkdtemp(prefix="resize-parity-"))
    for imgsz in (640, 1024):
        out = tmp / f"s-{imgsz}"
        convert_fastsam(args.checkpoint, out, imgsz=imgsz, dynamic=True, report=lambda *a: None)
        cases.append((f"s-shaped dynamic {imgsz}", out, args.checkpoint, imgsz))
    rows = []
    for name, bundle, ref_model, imgsz in cases:
        ref = ultralytics.FastSAM(str(ref_model))
        model = FastSAM(bundle)
        variants = {"opencv": lambda im, w, h: cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR),
                    "replica": rsmod._replica,
                    "exact": lambda im, w, h: cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR_EXACT)}
        for image in images:
            reference = ref.predict(str(image), imgsz=imgsz, retina_masks=True, verbose=False, device="cpu", **SETTINGS)[0]
            for resize, fn in variants.items():
                lbmod.resize_linear = fn  # the letterbox's "linear" resize, swapped for this measurement
                ours = model.segment(image, imgsz=imgsz, **SETTINGS)
                try:
                    f = compare(reference, ours)
                except AssertionError as e:  # a count mismatch
                    f = {"n": len(ours), "error": str(e)}
                rows.append({"model": name, "image": image.name, "resize": resize, **f})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'model':<22} {'image':<11} {'resize':<7} {'n':>3} {'box Δ px':>9} {'score Δ':>9} {'IoU mean':>9} {'IoU min':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<22} {r['image']:<11} {r['resize']:<7} {r['error']}")
            continue
        print(f"{r['model']:<22} {r['image']:<11} {r['resize']:<7} {r['n']:>3} {r['box_max_diff']:>9.4f} "
              f"{r['score_max_diff']:>9.2e} {r['mask_iou_mean']:>9.5f} {r['mask_iou_min']:>8.5f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
