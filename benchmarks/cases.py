"""What is measured: the :class:`Case` spec a child process runs, the suite's case table, prompts and images.

A case is one model, one image and one setting; :func:`plan` lists the suite's cases (``tools/run_benchmarks.py``) and
:func:`default_prompts` derives the prompts from the image size alone, so both sides get the same ones.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("preprocess", "inference", "postprocess", "end_to_end")
PROMPTS = ("box", "point", "text", "clip_image", "clip_text")
DEFAULT_TEXT = "a photo of a bus"
MB = 1e6

# ------------------------------------------------------------------------------------------- the suite's table

#: FastSAM shapes of the test-made checkpoints (ultralytics model yamls).
SHAPES = {"s": "yolov8s-seg.yaml", "x": "yolov8x-seg.yaml"}
IMAGES = ("bus.jpg", "zidane.jpg")
TEXTS = {"bus.jpg": "a photo of a bus", "zidane.jpg": "a man wearing a tie"}
#: Graph variants. Without ``-dyn`` the bundle is exported with ``dynamic=False`` (square imgsz × imgsz input);
#: ``-dyn``: ``dynamic=True`` (the reference's own minimal rectangle). Both are passed to the export explicitly.
PRECISIONS = ("fp32", "fp16", "int8", "fp32-dyn", "int8-dyn")
LARGE = (4512, 4512)
#: The goal setting (see ``figures.GOALS``): FastSAM-s shape, 1024, retina, bus.jpg.
HEADLINE = "s-1024-bus-retina-fp32-dyn"  # dynamic graph: the same 1024×768 input as the reference
HEADLINE_INT8 = "s-1024-bus-retina-int8-dyn"
LARGE_CASE = "s-1024-bus4512-retina-fp32"


@dataclass
class Case:
    """One benchmark case; serialised to JSON for the child process that runs it.

    model: bundle directory / .onnx file (ours) or checkpoint .pt (reference); image: image file; resize: (w, h)
    to resize the image to with cv2 (INTER_LINEAR) before anything is timed, or None; imgsz: network input side
    (None: the bundle's); retina: retina masks; prompts: ``{"bboxes", "points", "labels", "texts"}`` or None;
    clip: CLIP bundle directory (ours) or CLIP checkpoint file (reference) for the text prompt, or None;
    clip_int8: ours only: an int8 CLIP bundle, timed on the same result too (``prompts["int8_clip"]``);
    profile: also a cProfile of ``segment`` (and of one text prompt); threads: CPU threads of the inference engine
    (ours: ``$FASTSAM_ONNX_THREADS``; reference: ``torch.set_num_threads`` after ultralytics has chosen its own),
    None = the library's own choice; labels: free-form tags for the report (shape, precision, ...).
    """

    name: str
    model: str
    image: str
    imgsz: int | None = None
    retina: bool = True
    reps: int = 10
    warmup: int = 2
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    resize: tuple[int, int] | None = None
    prompts: dict[str, Any] | None = None
    clip: str | None = None
    clip_int8: str | None = None
    bare: bool = True
    profile: bool = False
    providers: str | None = None
    threads: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Case":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if d.get("resize") is not None:
            d["resize"] = tuple(int(v) for v in d["resize"])
        return cls(**d)


def default_prompts(shape: tuple[int, int], text: str = DEFAULT_TEXT) -> dict[str, Any]:
    """Prompts derived from the image size (h, w) alone, so ours and the reference get the same ones:
    the central box (a quarter in from each side), the centre point (label 1) and one text."""
    h, w = shape
    return {
        "bboxes": [[w // 4, h // 4, 3 * w // 4, 3 * h // 4]],
        "points": [[w // 2, h // 2]],
        "labels": [1],
        "texts": [text],
    }


def load_case_image(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """(original image, image to benchmark): the file as OpenCV reads it (BGR uint8), and its resized copy."""
    import cv2

    from fastsam_onnx.image import read_image

    img = read_image(case.image)
    if case.resize is None:
        return img, img
    return img, cv2.resize(img, tuple(case.resize), interpolation=cv2.INTER_LINEAR)


def ultralytics_asset(name: str) -> Path | None:
    """A photograph shipped inside the ultralytics package (bus.jpg, zidane.jpg), found without importing it;
    None where ultralytics is not installed (or cannot be imported)."""
    try:
        spec = importlib.util.find_spec("ultralytics")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "assets" / name
    return p if p.is_file() else None


def plan(args: Any) -> list[dict[str, Any]]:
    """The suite's cases in order, from ``tools/run_benchmarks.py``'s options (models, sizes, images, retina,
    no_prompts, no_large): per (shape, size, image, masks) one group (the reference, then our precision variants), then the
    4512 × 4512 photograph."""
    items = []
    for shape in args.models:
        for imgsz in args.sizes:
            for image in args.images:
                for retina in args.retina:
                    group = f"{shape}-{imgsz}-{Path(image).stem}-{'retina' if retina else 'letterbox'}"
                    items.append({"group": group, "shape": shape, "imgsz": imgsz, "image": image, "retina": retina,
                                  "resize": None, "prompts": retina and not args.no_prompts})
    if not args.no_large:
        items.append({"group": "s-1024-bus4512-retina", "shape": "s", "imgsz": 1024, "image": "bus.jpg", "retina": True,
                      "resize": LARGE, "prompts": False})
    return items


def fixed_notes(report: dict[str, Any] | None = None) -> list[str]:
    """The notes every suite report carries (how to read its figures). Every figure in them comes from
    ``report`` (the run's own cases: the goal setting's fp32 and int8 dynamic-graph cases and their
    reference); none is typed in, and a figure the run lacks is left out."""
    report = report or {}
    cases = {c.get("name"): c for c in report.get("cases", [])}
    fp32, int8 = cases.get(HEADLINE) or {}, cases.get(HEADLINE_INT8) or {}
    labels = fp32.get("labels") or {}
    where = f"{labels.get('image')} at {labels.get('imgsz')}"
    ref = (report.get("references") or {}).get(fp32.get("reference") or "") or {}
    shape = ref.get("input_shape")
    rectangle = f" (e.g. {shape[-2]} × {shape[-1]}, H × W, for {where})" if shape and labels else ""
    n32, n8 = (fp32.get("ours") or {}).get("instances"), (int8.get("ours") or {}).get("instances")
    nref = ref.get("instances")
    counts = f": {n8} instances instead of {n32} on {where}" if isinstance(n32, int) and isinstance(n8, int) and labels else ""
    handles = "a different number of masks than the reference's"
    if isinstance(n8, int) and isinstance(nref, int):
        word = "more" if n8 > nref else "fewer" if n8 < nref else "as many"
        handles = f"{word} masks than the reference's ({nref})"
    return [
        "weights: test-made (tests/modelmaker.py, FastSAM-s/-x architectures, dozens of instances), not the "
        "released FastSAM weights; CLIP: ViT-B/32-shaped with test-made weights. Speed depends on the "
        "architecture, not on the weights' values, except through the instance count.",
        "rows without -dyn run static graphs (square letterbox to imgsz × imgsz) while the reference's PyTorch "
        f"predictor letterboxes to the minimal rectangle{rectangle} and computes fewer pixels; "
        "-dyn rows run dynamic graphs on the reference's own rectangle (the like-for-like comparison): see the input column.",
        "int8 graphs of these test-made (untrained) weights keep fewer of the fp32 decisions than trained weights "
        f"do (quantization error compounds through random layers{counts}), so their post-processing handles {handles}; "
        "compare their session.run columns. How close int8 stays to fp32 on trained "
        "weights is measured on the demo model by tests/test_precision.py.",
        "the reference runs the fp32 checkpoint for every variant: ratios of the fp16/int8 rows compare with it.",
        "every case runs in a fresh child process; peak RSS is that process's high-water mark (VmHWM: model, runtime and image "
        "included). The int8 graphs are calibrated on bus.jpg and zidane.jpg themselves.",
    ]
