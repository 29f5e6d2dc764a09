"""The native converter's CLIP bundles (issue 24): OpenAI's TorchScript archive or a saved ViT CLIP state dict →
``clip_image.onnx``, ``clip_text.onnx``, the BPE vocabulary and the manifest of the torch exporter's bundles
(:mod:`.clip`), plus ``"converter": "native"``, with numpy, ``onnx`` and onnxruntime alone. The self-check runs both
towers on crops of a real photograph and on texts through the runtime's own preprocessing and tokenizer (see
:mod:`.native_bundle` for the FastSAM half and what is shared).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from fastsam_onnx.errors import BadModelError
from fastsam_onnx.manifest import sha256_file

from . import ExportError
from .bundle import (
    CLIP_IMAGE_ONNX, CLIP_TEXT_ONNX, MIN_COSINE_INT8, clip_description, graph_io, manifest, opset_of, staging,
    write_manifest,
)
from .native_common import CONVERTER, Steps, agree, check_simplified, cpu_session, read_weights, step_lines, tools
from .onnx_graph import save

__all__ = ["CLIP_STEPS", "write_clip", "clip_state", "clip_check"]

CLIP_STEPS = 6
#: OpenAI CLIP's normalisation (clip.clip._transform) and its tokenizer's start/end-of-text ids
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SOT, EOT = 49406, 49407
#: the self-check's texts (short, punctuated, non-Latin, and one beyond 77 tokens) and crops of the photo
CHECK_TEXTS = ("a photo of a bus", "A RED double-decker bus, parked on the street!", "自転車に乗る人",
               " ".join(["a very long description of a crowded street"] * 12))
CHECK_CROPS = (None, (0, 230, 810, 740), (40, 390, 250, 910))


def clip_state(ckpt: Any, weights: Path) -> dict[str, np.ndarray]:
    """The state dict of a CLIP checkpoint: a TorchScript archive (OpenAI's ``ViT-B-32.pt``) or a saved state dict
    (optionally under ``"state_dict"``)."""
    from .checkpoint import state_dict

    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    state = state_dict(ckpt)
    if not state:
        raise BadModelError(f"{weights} holds no CLIP weights (neither a TorchScript CLIP nor a state dict of arrays)")
    return state


def _photo_crops() -> tuple[list[Any], list[str]]:
    from PIL import Image

    from fastsam_onnx.models import check_photo

    photo = check_photo()
    with Image.open(photo) as im:
        img = im.convert("RGB")
    crops = [img if box is None else img.crop(box) for box in CHECK_CROPS]
    names = [photo.name if box is None else f"{photo.name}[{','.join(map(str, box))}]" for box in CHECK_CROPS]
    return crops, names


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def clip_check(image_path: Path, text_path: Path, bpe: Path, resolution: int, context_length: int,
               reference: Optional[tuple[Path, Path]] = None) -> dict[str, Any]:
    """Run both towers on crops of the photograph and on texts (the runtime's own preprocessing and tokenizer):
    (N, D) finite embeddings, the first the same alone as in the batch; with ``reference`` (the fp32 towers of an
    int8 bundle), each row at cosine >= :data:`MIN_COSINE_INT8` of the reference's, and the first alone at that
    cosine of itself in the batch (int8 activations are quantized per run: the batch changes their scale)."""
    from fastsam_onnx.clip.preprocess import preprocess_batch
    from fastsam_onnx.clip.tokenizer import ClipTokenizer

    crops, names = _photo_crops()
    images = preprocess_batch(crops, resolution, CLIP_MEAN, CLIP_STD)
    tokens = ClipTokenizer(bpe, context_length)(list(CHECK_TEXTS))
    out: dict[str, Any] = {"images": names, "texts": list(CHECK_TEXTS), "runtime": "onnxruntime CPU"}
    for key, path, x, ref_path in (("image", image_path, images, reference and reference[0]),
                                   ("text", text_path, tokens, reference and reference[1])):
        sess = cpu_session(path)
        feed = sess.get_inputs()[0].name
        got = sess.run(None, {feed: x})[0]
        if got.ndim != 2 or got.shape[0] != len(x):
            raise ExportError(f"self-check: the {key} tower gives {got.shape} for {len(x)} inputs")
        alone = sess.run(None, {feed: x[:1]})[0]
        if not ref_path:
            out[key] = {"batch_max_abs_diff": agree(f"the {key} tower's first embedding", alone, got[:1])}
            continue
        agree(f"the {key} tower's first embedding", alone, alone)  # finite
        stats = {"batch_min_cosine": _min_cosine(alone, got[:1]),
                 "min_cosine_to_fp32": _min_cosine(cpu_session(ref_path).run(None, {feed: x})[0], got)}
        for what, cos in stats.items():
            if not cos >= MIN_COSINE_INT8:
                raise ExportError(f"self-check: the int8 {key} tower's {what} is {cos:.4f} (< {MIN_COSINE_INT8})")
        out[key] = stats
    return out


def write_clip(weights: str | os.PathLike[str], out: str | os.PathLike[str], *, int8: bool = False,
               progress: Optional[Steps] = None, report: Optional[Callable[[str], None]] = None) -> Path:
    """``weights`` (OpenAI's ``ViT-B-32.pt`` TorchScript archive, or a saved ViT CLIP state dict) → ``out/``
    (``clip_image.onnx``, ``clip_text.onnx``, the BPE vocabulary, ``manifest.json``). int8: int8 matrix products
    (dynamic quantization, as :func:`fastsam_onnx.export.clip.export_clip`'s). Raises BadModelError / ExportError."""
    from fastsam_onnx.clip.tokenizer import BPE_NAME
    from fastsam_onnx.models import demo_clip_bundle

    from .native_clip import build_clip, clip_config

    int8 = bool(int8)
    progress = progress or step_lines(CLIP_STEPS + int8)
    weights, out = Path(weights), Path(out)
    progress(1, f"reading checkpoint {weights} (nothing in it runs)")
    state = clip_state(read_weights(weights), weights)
    config = clip_config(state)
    with staging(out) as tmp:
        progress(2, "building the image and text towers from the weights (dynamic batch)")
        image_proto, text_proto = build_clip(state)
        del state
        progress(3, "checking the graphs are simplified as built (nothing onnxsim would fold or remove)")
        check_simplified(image_proto, "the image tower")
        check_simplified(text_proto, "the text tower")
        progress(4, "writing the graphs (checked by onnx.checker as they were built)")
        work = tmp / "fp32"
        work.mkdir()
        fp32 = (work / CLIP_IMAGE_ONNX, work / CLIP_TEXT_ONNX)
        specs = {}
        for key, proto, path in (("image", image_proto, fp32[0]), ("text", text_proto, fp32[1])):
            specs[key] = graph_io(proto)
            save(proto, path)  # one tensor's serialization in memory at a time
        opset = opset_of(image_proto)
        del image_proto, text_proto
        paths = (tmp / CLIP_IMAGE_ONNX, tmp / CLIP_TEXT_ONNX)
        quantization = None
        step = 5
        if int8:
            progress(step, "quantizing both towers to int8 (dynamic: int8 weights, uint8 activations at run time)")
            from .quantize import to_int8_dynamic

            for src, dst in zip(fp32, paths):
                quantization = to_int8_dynamic(src, dst)
            step += 1
        else:
            for src, dst in zip(fp32, paths):
                src.rename(dst)
        shutil.copyfile(demo_clip_bundle() / BPE_NAME, tmp / BPE_NAME)  # OpenAI's vocabulary (the clip module's file)

        progress(step, "self-check: onnxruntime on crops of a real photograph (bus.jpg) and on texts")
        check = clip_check(*paths, tmp / BPE_NAME, config.image_resolution, config.context_length, fp32 if int8 else None)
        shutil.rmtree(work)

        progress(step + 1, "writing manifest")
        description = clip_description(
            int8=int8, quantization=quantization, embed_dim=config.embed_dim, context_length=config.context_length,
            image_resolution=config.image_resolution, vocab_size=config.vocab_size, opset=opset,
            image_io=specs["image"], text_io=specs["text"], mean=CLIP_MEAN, std=CLIP_STD, sot=SOT, eot=EOT)
        sha256 = {"image_onnx": sha256_file(paths[0]), "text_onnx": sha256_file(paths[1]),
                  "bpe": sha256_file(tmp / BPE_NAME), "weights": sha256_file(weights)}
        source = {"weights": weights.name, "parameters": config.parameters}
        m = manifest(description, sha256=sha256, source=source, self_check=check, converter=CONVERTER, tools=tools())
        write_manifest(tmp, m, ensure_ascii=False)
    return out
