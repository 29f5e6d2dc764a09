"""Reproducible recipe for the offline demo model ``models/demo/`` (FastSAM-style, one class).

FastSAM is a one-class YOLOv8-seg model that proposes a mask for every object in an image.  The
real FastSAM weights cannot be shipped or downloaded here, so the demo bundle is a tiny model of
the same architecture (``tools/demo.yaml``, ~1.0 M parameters) trained from scratch, fully
offline, on the synthetic "demo world" of :mod:`fastsam_onnx.models.synth` (coloured geometric
shapes on textured backgrounds).  The ONNX it exports has exactly the graph interface of a real
FastSAM export, so the whole runtime can be exercised and tested without any download.

Usage::

    python tools/train_demo.py --out models/demo            # the shipped model
    python tools/train_demo.py --out /tmp/demo --quick      # CI smoke test (~20 s)

A repository tool (``tools/`` is not installed): it needs the ``[export]`` extra (torch, ultralytics).

Steps:
    1. write the synthetic data set (``--n-train`` + ``--n-val`` images, ``--size`` px) under
       ``--work`` (default ``runs/fastsam-demo``; reused when it already exists);
    2. train ``ultralytics.YOLO(tools/demo.yaml)`` on CPU with fixed seeds
       (``seed``, ``deterministic=True``), ``plots=False``, ``amp=False``, no network access;
    3. copy the best checkpoint to ``OUT/fastsam-demo.pt``;
    4. export it with the project's own export stage
       (``fastsam_onnx.export.fastsam.export_fastsam``) to ``OUT/fastsam.onnx`` + ``OUT/manifest.json``;
    5. write ``OUT/example.jpg`` (:func:`demo_dataset.render_example`, seed 7) and, unless
       ``--eval-images 0``, report the held-out mean best-mask IoU (:mod:`fastsam_onnx.models.evaluate`).

Measured run of the shipped ``models/demo/`` (the defaults: ``--seed 0``; 800 train + 60 val
scenes of 512 px; 12 epochs at imgsz 512, batch 16, ``nbs=16``, AdamW lr 0.002 chosen by
ultralytics' ``optimizer=auto``, 1 warm-up epoch, mosaic off for the last 3 epochs,
``cache="disk"``, 2 dataloader workers; torch 2.14.1 CPU, ultralytics 8.4.190, 2-core x86 CPU):

* data set generation: 63 s;
* training: 2371 s (39.5 min) wall clock, while other jobs kept the load average at 5-7 on the
  2 cores; alone, the first epochs ran at ~2.6 s per batch of 16, i.e. ~27 min for the run;
* model: 1,032,219 parameters (``tools/demo.yaml``), checkpoint 2.3 MB (fp16),
  ``fastsam.onnx`` 4.3 MB (fp32, 512x512 static, outputs (1, 37, 5376) and (1, 32, 128, 128));
* validation split (60 scenes) after the last epoch: box mAP50-95 0.859, mask mAP50 0.992,
  mask mAP50-95 0.844;
* held-out quality (:mod:`fastsam_onnx.models.evaluate`, 50 scenes never used in training, 407 instances;
  conf 0.4, iou 0.9, retina masks at imgsz 512): mean best-mask IoU per ground-truth instance
  **0.912** (98.0 % of instances >= 0.5, 96.3 % >= 0.75; 0.873 for instances under 1500 px,
  0.931 above 6000 px), the same with ``ultralytics.FastSAM(fastsam-demo.pt)`` and with the
  ONNX bundle through ``fastsam_onnx.FastSAM(models/demo)``;
* ``--quick`` (8 scenes of 160 px, 1 epoch, export at 160): ~20 s; its model is
  untrained (IoU ~0), it only exercises the recipe.

Seeds are fixed everywhere (data set scenes, ``seed``/``deterministic=True`` in ultralytics), so
the run is repeatable up to floating-point non-associativity of multi-threaded CPU kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

# ultralytics must never try the network (weights, fonts, hub events) in this recipe.
os.environ.setdefault("YOLO_OFFLINE", "1")

import demo_dataset  # noqa: E402  (tools/, beside this script)

MODEL_YAML = Path(__file__).resolve().with_name("demo.yaml")
CHECKPOINT_NAME = "fastsam-demo.pt"

#: Defaults of the shipped model (the measured run).
DEFAULTS = dict(seed=0, size=512, n_train=800, n_val=60, epochs=12, imgsz=512, batch=16, workers=2, close_mosaic=3)
#: ``--quick``: a CI smoke test of the whole recipe.
QUICK = dict(size=160, n_train=8, n_val=4, epochs=1, imgsz=160, batch=4, workers=0, close_mosaic=0)


def build_dataset(work: Path, *, n_train: int, n_val: int, seed: int, size: int) -> Path:
    """Write (or reuse) the synthetic YOLO-seg data set under ``work/data``; return data.yaml.

    The data set is a pure function of its parameters, so an existing one whose stamp matches is
    reused as is.
    """
    root = work / "data"
    stamp = {"n_train": n_train, "n_val": n_val, "seed": seed, "size": size, "version": 1}
    stamp_file = root / "stamp.json"
    yaml_path = root / "data.yaml"
    if stamp_file.exists() and yaml_path.exists() and json.loads(stamp_file.read_text()) == stamp:
        print(f"[train_demo] reusing data set {root}", flush=True)
        return yaml_path
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            print(f"[train_demo] data set {done}/{total} images", flush=True)

    yaml_path = demo_dataset.write_yolo_dataset(root, n_train, n_val, seed, size, progress=progress)
    stamp_file.write_text(json.dumps(stamp))
    print(f"[train_demo] data set written in {time.perf_counter() - t0:.0f} s", flush=True)
    return yaml_path


def train(
    data_yaml: Path,
    work: Path,
    *,
    epochs: int,
    imgsz: int,
    batch: int,
    seed: int,
    workers: int,
    close_mosaic: int,
    val: bool = True,
) -> Path:
    """Train ``models/demo.yaml`` from scratch on CPU; return the path of the best checkpoint.

    Short-schedule settings: ``nbs=batch`` (one optimizer step per batch instead of ultralytics'
    gradient accumulation to a nominal batch of 64: 4x more steps for the same compute) and a
    one-epoch warm-up.  ``best.pt`` is chosen by ultralytics' fitness on the validation split
    (with ``val=False`` it validates only after the last epoch and best is the final EMA model).
    """
    from ultralytics import YOLO

    model = YOLO(str(MODEL_YAML), task="segment")
    model.train(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device="cpu",
        workers=workers,
        seed=seed,
        deterministic=True,
        plots=False,
        amp=False,
        val=val,
        cache="disk",  # deterministic, unlike cache="ram"
        close_mosaic=close_mosaic,
        nbs=batch,
        warmup_epochs=1.0,
        project=str(work.resolve() / "train"),
        name="demo",
        exist_ok=True,
        verbose=False,
        pretrained=False,
    )
    save_dir = Path(model.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    return best if best.exists() else save_dir / "weights" / "last.pt"


def export(weights: Path, out: Path, imgsz: int) -> Path:
    """Export with the project's export stage: ``out/fastsam.onnx`` + ``out/manifest.json``.

    ``export_fastsam`` replaces its whole output folder, and ``out`` also holds the checkpoint
    and example image, so the bundle is exported to a scratch folder beside ``out`` and its files
    are moved into ``out``.
    """
    import tempfile

    from fastsam_onnx.export.fastsam import export_fastsam

    out = Path(out)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        bundle = Path(export_fastsam(weights, scratch / "bundle", imgsz=imgsz, dynamic=False))
        for f in sorted(bundle.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out / "fastsam.onnx"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/train_demo.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, ONNX bundle, example.jpg)")
    p.add_argument("--work", type=Path, default=Path("runs/fastsam-demo"), help="data set + training run folder")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-val", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="synthetic image side, pixels")
    p.add_argument("--imgsz", type=int, default=None, help="training (and export) input size")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--close-mosaic", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny smoke-test run: few images, 1 epoch")
    p.add_argument("--no-export", action="store_true", help="stop after writing the checkpoint")
    p.add_argument("--eval-images", type=int, default=None, help="held-out images to evaluate (0: skip)")
    a = p.parse_args(argv)

    cfg = dict(DEFAULTS)
    if a.quick:
        cfg.update(QUICK)
    for k in ("seed", "epochs", "n_train", "n_val", "size", "imgsz", "batch", "workers", "close_mosaic"):
        v = getattr(a, k)
        if v is not None:
            cfg[k] = v
    eval_images = a.eval_images if a.eval_images is not None else (2 if a.quick else 50)

    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    work: Path = a.work / ("quick" if a.quick else f"s{cfg['seed']}")
    print(f"[train_demo] config {json.dumps(cfg)}", flush=True)

    t0 = time.perf_counter()
    data_yaml = build_dataset(work, n_train=cfg["n_train"], n_val=cfg["n_val"], seed=cfg["seed"], size=cfg["size"])
    t1 = time.perf_counter()
    best = train(
        data_yaml,
        work,
        epochs=cfg["epochs"],
        imgsz=cfg["imgsz"],
        batch=cfg["batch"],
        seed=cfg["seed"],
        workers=cfg["workers"],
        close_mosaic=cfg["close_mosaic"],
    )
    t2 = time.perf_counter()
    ckpt = out / CHECKPOINT_NAME
    shutil.copyfile(best, ckpt)
    print(f"[train_demo] data {t1 - t0:.0f} s, training {t2 - t1:.0f} s; checkpoint {ckpt}", flush=True)

    if not a.no_export:
        onnx_path = export(ckpt, out, cfg["imgsz"])
        print(f"[train_demo] exported {onnx_path}", flush=True)

    import cv2

    cv2.imwrite(str(out / "example.jpg"), demo_dataset.render_example(7, cfg["size"]), [cv2.IMWRITE_JPEG_QUALITY, 95])

    if eval_images > 0:
        from fastsam_onnx.models.evaluate import evaluate_bundle, ultralytics_segment_fn

        miou = evaluate_bundle(ultralytics_segment_fn(ckpt, imgsz=cfg["imgsz"]), n_images=eval_images, size=cfg["size"])
        print(f"[train_demo] held-out mean best-mask IoU ({eval_images} images, checkpoint): {miou:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
