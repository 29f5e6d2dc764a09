"""What both converters share when they write a bundle: the torch exporters (:mod:`.fastsam`, :mod:`.clip`) and the
native converter (:mod:`.native_bundle`, :mod:`.native_clip_bundle`). The temporary directory renamed into place
(:func:`staging`), the fp32/fp16/int8 option checks, the graphs' I/O specs, the tools' versions and the manifest:
its model description (:func:`fastsam_description`, :func:`clip_description`) and its closing fields
(:func:`manifest`), to which each path adds its own (the torch exporter: ``parity``; the native converter:
``self_check``). Torch-free: numpy and ``onnx`` at most (the zoo's first-use conversion imports it)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from fastsam_onnx.manifest import FASTSAM_ONNX, FORMAT_VERSION, MANIFEST_NAME

from . import ExportError

CLIP_IMAGE_ONNX, CLIP_TEXT_ONNX = "clip_image.onnx", "clip_text.onnx"
#: an int8 CLIP bundle's towers: cosine similarity to the fp32 reference (the torch exporter: PyTorch; the native
#: converter: the fp32 towers it built) at least this
MIN_COSINE_INT8 = 0.99


def check_out(out: Path) -> None:
    """ExportError when ``out``, the bundle's directory, is a file."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"output path exists and is not a directory: {out}")


def new_tmp(out: Path) -> Path:
    """A fresh temporary directory beside ``out`` (``out`` must not be a file)."""
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)
    return tmp


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` bundle to ``out``, replacing an existing bundle there."""
    if out.exists():
        old = out.with_name(out.name + ".old-" + tmp.name)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh temporary directory beside ``out`` to write the bundle in: renamed to ``out`` (replacing a bundle
    there) when the block ends, removed when it raises, so that a failure leaves no half-written bundle."""
    tmp = new_tmp(out)
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def variant_of(half: bool, int8: bool, calib: Any) -> str:
    """``"fp32"``, ``"fp16"`` or ``"int8"`` from a FastSAM export's options; ExportError for a bad combination."""
    if half and int8:
        raise ExportError("choose one of half (fp16) and int8")
    if int8 and calib is None:
        raise ExportError("int8 needs calibration images: --calib DIR")
    variant = "int8" if int8 else "fp16" if half else "fp32"
    if calib is not None and variant == "fp32":
        raise ExportError("--calib only applies to --half or --int8")
    return variant


def io_spec(values) -> list[dict]:
    """Inputs or outputs of a graph as the manifest lists them: name, shape (ints, names of free axes), dtype."""
    from onnx import helper

    out = []
    for v in values:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        out.append({"name": v.name, "shape": shape, "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name})
    return out


def opset_of(proto) -> int:
    return int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


def graph_io(proto) -> dict[str, list[dict]]:
    """``{"inputs": ..., "outputs": ...}`` of a graph (:func:`io_spec`)."""
    return {"inputs": io_spec(proto.graph.input), "outputs": io_spec(proto.graph.output)}


def graph_facts(proto) -> dict[str, Any]:
    """What the manifest says of a graph: ``opset``, ``inputs``, ``outputs``."""
    return {"opset": opset_of(proto), **graph_io(proto)}


def versions(*packages: str) -> dict[str, str]:
    """The installed versions of ``packages`` (the manifest's ``tools``; those not installed are left out)."""
    import importlib.metadata as md

    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def now() -> str:
    """The time, UTC, to the second (the manifest's ``created``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def fastsam_description(*, imgsz: int, dynamic: bool, batch: int, stride: int, facts: dict[str, Any],
                        rewrites: dict[str, int], num_masks: int, variant: str) -> dict[str, Any]:
    """The opening fields of a FastSAM bundle's manifest, the model's description; ``facts``: :func:`graph_facts`."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": "fastsam",
        "model_file": FASTSAM_ONNX,
        "imgsz": [imgsz, imgsz],
        "dynamic": bool(dynamic),
        "batch": None if dynamic else batch,
        "stride": stride,
        "opset": facts["opset"],
        "rewrites": rewrites,
        "inputs": facts["inputs"],
        "outputs": facts["outputs"],
        "num_masks": num_masks,
        "variant": variant,
    }


def clip_description(*, int8: bool, quantization: Optional[dict], embed_dim: int, context_length: int,
                     image_resolution: int, vocab_size: int, opset: int, image_io: dict, text_io: dict,
                     mean: list[float], std: list[float], sot: int, eot: int) -> dict[str, Any]:
    """The opening fields of a CLIP bundle's manifest, the towers' description; ``image_io``, ``text_io``:
    :func:`graph_io` of each tower; mean, std: the image normalisation; sot, eot: the start/end-of-text ids."""
    from fastsam_onnx.clip.tokenizer import BPE_NAME

    return {
        "format_version": FORMAT_VERSION,
        "kind": "clip",
        "precision": "int8" if int8 else "fp32",
        "quantization": quantization,
        "image_model_file": CLIP_IMAGE_ONNX,
        "text_model_file": CLIP_TEXT_ONNX,
        "bpe_file": BPE_NAME,
        "embed_dim": embed_dim,
        "context_length": context_length,
        "image_resolution": image_resolution,
        "vocab_size": vocab_size,
        "opset": opset,
        "image_encoder": image_io,
        "text_encoder": {**text_io, "pooling": "argmax of token ids (the end-of-text token)"},
        "preprocess": {
            "resize": "bicubic", "resize_side": "short", "size": image_resolution, "crop": "center",
            "mean": list(mean), "std": list(std), "scale": 1 / 255, "channels": "RGB",
        },
        "tokenizer": {"sot": sot, "eot": eot, "truncate": True, "lower_case": True},
    }


def manifest(description: dict[str, Any], *, sha256: dict[str, Any], source: dict[str, Any], converter: str,
             tools: dict[str, str], parity: Optional[dict] = None, self_check: Optional[dict] = None) -> dict[str, Any]:
    """A bundle's manifest: its ``description``, then the digests, the source checkpoint, how the graphs were checked
    (the torch exporter: ``parity``, PyTorch against onnxruntime; the native converter: ``parity`` null and
    ``self_check``), which ``converter`` made it, the tools' versions and the time."""
    out = {**description, "sha256": sha256, "source": source, "parity": parity}
    if self_check is not None:
        out["self_check"] = self_check
    out.update(converter=converter, tools=tools, created=now())
    return out


def write_manifest(bundle: Path, manifest: dict[str, Any], ensure_ascii: bool = True) -> None:
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=ensure_ascii) + "\n")
