"""The native converter's bundle writer (FastSAM here, CLIP in :mod:`.native_clip_bundle`, what both share in
:mod:`.native_common`, and with the torch exporters in :mod:`.bundle`): checkpoint → bundle with numpy, ``onnx`` and
onnxruntime alone (issue 24).

A checkpoint is read without running any of it (:func:`.checkpoint.read_checkpoint`), its graph built from its own
weights (:func:`.native_fastsam.build_fastsam`, :func:`.native_clip.build_clip`), checked by ``onnx.checker`` and run
by onnxruntime on a real photograph (:func:`fastsam_onnx.models.check_photo`, ``bus.jpg``): outputs of the declared
shapes, finite, the same for one image alone and in a batch (the self-check: there is no PyTorch here to compare
with; equality with the torch export is what the test suite proves). The bundle has the layout and manifest of the
torch exporter's (:mod:`.fastsam`, :mod:`.clip`) plus ``"converter": "native"``; ``parity`` (the torch export's
PyTorch comparison) is null and ``self_check`` says what was checked. Everything is written to a temporary directory
beside the target and renamed into place at the end.

This module is what the zoo's first-use conversion imports (``FastSAM("fastsam-s")``, see
``tests/test_architecture.py``): it must never reach back into the runtime model. The fp16/int8 FastSAM variants,
whose accuracy is measured with the runtime, are added by :mod:`.native` through the ``variant`` hook.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from fastsam_onnx.errors import BadModelError
from fastsam_onnx.manifest import FASTSAM_ONNX, sha256_file

from . import ExportError
from .bundle import fastsam_description, graph_facts, manifest, staging, write_manifest
from .native_common import CONVERTER, Steps, agree, check_simplified, cpu_session, read_weights, step_lines, tools
from .onnx_graph import save

__all__ = ["ExportError", "CONVERTER", "FASTSAM_STEPS", "convert_recipe", "write_fastsam"]

FASTSAM_STEPS = 6
#: the long side of a dynamic graph's self-check input: the same graph at every size, and FastSAM-x's activations
#: for a batch of two at 1024 × 768 would double the conversion's peak memory (0.6 GB instead of 1.4 GB)
CHECK_SIZE = 512
#: ``variant(fp32_path, out_path) -> manifest fields`` (``variant``, ``accuracy``, ``quantization``): see :mod:`.native`
Variant = Callable[[Path, Path], Mapping[str, Any]]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def convert_recipe(kind: str, weights: str | os.PathLike[str], out: str | os.PathLike[str], recipe: Mapping[str, Any],
                   *, progress: bool = True, report: Optional[Callable[[str], None]] = None) -> Path:
    """Convert a zoo model's checkpoint with its registry recipe (FastSAM: ``imgsz``, ``dynamic``; CLIP: ``int8``);
    ``progress``: the steps as lines on stderr. Used by the zoo's first-use fetch."""
    recipe = dict(recipe)
    if kind == "fastsam":
        unknown = set(recipe) - {"imgsz", "dynamic", "batch"}
        total, write = FASTSAM_STEPS, write_fastsam
    elif kind == "clip":
        from .native_clip_bundle import CLIP_STEPS, write_clip

        unknown = set(recipe) - {"int8"}
        total, write = CLIP_STEPS + bool(recipe.get("int8")), write_clip
    else:
        raise ExportError(f"unknown model kind {kind!r}")
    if unknown:
        raise ExportError(f"the native converter does not take {', '.join(sorted(unknown))} for a {kind} model")
    return write(weights, out, progress=step_lines(total, progress), report=report or (_say if progress else None),
                 **recipe)


def _model_record(ckpt: Any, weights: Path):
    if not isinstance(ckpt, dict) or not ({"model", "ema"} & set(ckpt)):
        what = "a state dict" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise BadModelError(f"{weights} is not an ultralytics checkpoint (a dict with 'model' or 'ema'): it holds {what}")
    record = ckpt.get("ema")
    return record if record is not None else ckpt.get("model")


def _parameters(record: Any) -> int:
    """Elements of every ``_parameters`` tensor of a module record tree (``sum(p.numel() for p in model.parameters())``)."""
    from .checkpoint import Record

    total, stack, seen = 0, [record], set()
    while stack:
        r = stack.pop()
        if not isinstance(r, Record) or id(r) in seen:
            continue
        seen.add(id(r))
        state = r.state if isinstance(r.state, dict) else {}
        total += sum(int(v.size) for v in (state.get("_parameters") or {}).values() if isinstance(v, np.ndarray))
        stack.extend(r.children().values())
    return total


def fastsam_check(path: Path, imgsz: int, dynamic: bool, batch: int, stride: int) -> dict[str, Any]:
    """Run the graph at ``path`` on the photograph letterboxed as the runtime does (a dynamic graph: at the photo's
    own aspect ratio, :data:`CHECK_SIZE` on the long side at most, alone and as a batch of two; a static one: its
    fixed size and batch): shapes, finite values, batch agreement. Returns the ``self_check`` record."""
    from fastsam_onnx.image import load_image
    from fastsam_onnx.letterbox import letterbox, letterbox_geometry, to_tensor
    from fastsam_onnx.models import check_photo

    photo = check_photo()
    img = load_image(photo)
    side = min(imgsz, CHECK_SIZE) if dynamic else imgsz
    x = to_tensor(letterbox(img, letterbox_geometry(img.shape[:2], (side, side), auto=dynamic, stride=stride)))
    sess = cpu_session(path)
    name = sess.get_inputs()[0].name
    n = 2 if dynamic else batch
    outs = sess.run(None, {name: np.repeat(x, n, axis=0)})
    h, w = x.shape[2:]
    if len(outs) != 2 or outs[0].ndim != 3 or outs[1].ndim != 4 or outs[0].shape[0] != n or outs[1].shape[0] != n:
        raise ExportError(f"self-check: outputs of shapes {[o.shape for o in outs]} for an input of {(n, 3, h, w)}")
    nm = outs[1].shape[1]
    if outs[0].shape[1] != 4 + 1 + nm or outs[1].shape[2:] != (h // 4, w // 4):
        raise ExportError(f"self-check: outputs {[o.shape for o in outs]} do not fit an input of {(n, 3, h, w)}")
    diffs = {}
    if n > 1:
        alone = sess.run(None, {name: x}) if dynamic else [o[:1] for o in outs]
        for k, (ref, got) in enumerate(zip(alone, outs)):
            diffs[f"output{k}"] = max(agree(f"output{k} of batch item {i}", ref[0], got[i]) for i in range(n))
    else:
        for k, o in enumerate(outs):
            agree(f"output{k}", o, o)
    return {"image": photo.name, "input": [n, 3, int(h), int(w)], "outputs": [list(o.shape) for o in outs],
            "finite": True, "batch_max_abs_diff": diffs, "runtime": "onnxruntime CPU"}


def write_fastsam(weights: str | os.PathLike[str], out: str | os.PathLike[str], *, imgsz: int = 1024,
                  dynamic: bool = True, batch: int = 1, variant: Optional[Variant] = None,
                  progress: Optional[Steps] = None, report: Optional[Callable[[str], None]] = None) -> Path:
    """``weights`` (an ultralytics FastSAM / one-class YOLOv8-seg checkpoint) → ``out/fastsam.onnx`` + manifest.

    Options as :func:`fastsam_onnx.export.fastsam.export_fastsam`'s; ``variant``: the fp16/int8 step of
    :mod:`.native` (called with the checked fp32 graph and the path to write; its fields go to the manifest).
    Raises :class:`~fastsam_onnx.errors.BadModelError` for a checkpoint it cannot read or convert,
    :class:`ExportError` for a bad option or a failed self-check.
    """
    import onnx

    from .native_fastsam import build_fastsam

    progress = progress or step_lines(FASTSAM_STEPS + (variant is not None))
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz <= 0 or imgsz % 32:
        raise ExportError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    weights, out = Path(weights), Path(out)
    progress(1, f"reading checkpoint {weights} (nothing in it runs)")
    model = _model_record(read_weights(weights), weights)
    parameters = _parameters(model)
    with staging(out) as tmp:
        progress(2, f"building the ONNX graph from the weights (imgsz {imgsz}, {'dynamic' if dynamic else f'static, batch {batch}'})")
        proto = build_fastsam(model, imgsz=imgsz, dynamic=dynamic, batch=batch)
        meta = {p.key: p.value for p in proto.metadata_props}
        stride = int(meta.get("stride", 32))
        ops = [n.op_type for n in proto.graph.node]
        rewrites = {"dfl_last_axis": ops.count("Softmax"), "upsample_as_conv": ops.count("DepthToSpace")}

        progress(3, "checking the graph is simplified as built (nothing onnxsim would fold or remove)")
        check_simplified(proto, "the FastSAM graph")

        progress(4, "writing the graph (checked by onnx.checker as it was built)")
        onnx_path = tmp / FASTSAM_ONNX
        facts = graph_facts(proto)
        save(proto, onnx_path)  # one tensor's serialization in memory at a time (onnx.save: the whole model, twice)
        del proto, model  # the weights are in the file now: the self-check's session needs the memory

        progress(5, "self-check: onnxruntime on a real photograph (bus.jpg)")
        check = fastsam_check(onnx_path, imgsz, dynamic, batch, stride)
        fields: dict[str, Any] = {"variant": "fp32"}
        if variant is not None:
            progress(6, "making the precision variant and comparing it with fp32")
            fp32_path = tmp / "fp32.onnx"
            onnx_path.rename(fp32_path)
            fields.update(variant(fp32_path, onnx_path))
            fp32_path.unlink()

        progress(6 + (variant is not None), "writing manifest")
        if variant is not None:  # the variant's graph: its own opset and I/O (fp32 in and out either way)
            facts = graph_facts(onnx.load(str(onnx_path), load_external_data=False))
        description = fastsam_description(imgsz=imgsz, dynamic=dynamic, batch=batch, stride=stride, facts=facts,
                                          rewrites=rewrites, num_masks=int(check["outputs"][1][1]),
                                          variant=fields["variant"])
        m = manifest(description, sha256={"onnx": sha256_file(onnx_path), "weights": sha256_file(weights)},
                     source={"weights": weights.name, "parameters": parameters}, self_check=check,
                     converter=CONVERTER,
                     tools=tools(*(("onnxconverter-common",) if fields.get("variant") == "fp16" else ())))
        m.update(fields)  # accuracy, quantization of a variant
        write_manifest(tmp, m)
    return out
