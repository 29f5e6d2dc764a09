"""Export OpenAI CLIP (the ``clip`` module) to a bundle of two ONNX towers for the torch-free runtime.

Steps: load the weights (a model name, downloaded by the clip module, or a local checkpoint) → ONNX
export of the image tower (``images`` → ``image_embeds``) and the text tower (``tokens`` →
``text_embeds``), dynamic batch → onnxsim → onnx.checker → PyTorch vs onnxruntime on crops of real
photographs and on texts → manifest, with a copy of the BPE vocabulary beside the graphs.
Everything is written to a temporary directory beside the target and renamed into place at the end.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fastsam_onnx.clip.tokenizer import BPE_NAME
from fastsam_onnx.manifest import sha256_file

from . import ExportError, require
from .bundle import (  # CLIP_IMAGE_ONNX, CLIP_TEXT_ONNX, MIN_COSINE_INT8: public here too
    CLIP_IMAGE_ONNX, CLIP_TEXT_ONNX, MIN_COSINE_INT8, check_out, clip_description, graph_io, manifest, opset_of,
    staging, versions, write_manifest,
)
from .clip_weights import _import_clip, load_clip  # noqa: F401  # load_clip: public here too
from .fastsam import CONVERTER, STEPS, TOOLS, _progress, quiet_tools

DEFAULT_OPSET = 17
#: Parity: every PyTorch/onnxruntime pair of embeddings must have at least this cosine similarity (an int8 bundle,
#: ``int8=True``, with int8 weights and run-time activation quantization: MIN_COSINE_INT8).
MIN_COSINE = 0.9999

#: Texts of the parity check: short, punctuated, non-Latin, and one beyond 77 tokens (truncated).
PARITY_TEXTS = (
    "a photo of a bus",
    "a man wearing a tie",
    "the dog",
    "A RED double-decker bus, parked on the street!",
    "un chat noir 🐈 sur le toit",
    "自転車に乗る人",
    " ".join(["a very long description of a crowded street"] * 12),
)


def _crops() -> list[tuple[str, tuple[int, int, int, int] | None]]:
    """(asset file, crop box x1, y1, x2, y2 in pixels or None for the whole photo) of the parity check."""
    return [
        ("bus.jpg", None),
        ("bus.jpg", (0, 230, 810, 740)),
        ("bus.jpg", (40, 390, 250, 910)),
        ("zidane.jpg", None),
        ("zidane.jpg", (740, 40, 1150, 715)),
        ("zidane.jpg", (120, 190, 560, 715)),
        ("zidane.jpg", (430, 420, 530, 720)),
    ]


def _towers(model):
    """The two towers as modules with one tensor input each (fp32, eval mode)."""
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self, clip_model):
            super().__init__()
            self.clip_model = clip_model

        def forward(self, images):  # (B, 3, R, R) float32 → (B, D)
            return self.clip_model.encode_image(images)

    class TextTower(torch.nn.Module):
        def __init__(self, clip_model):
            super().__init__()
            self.clip_model = clip_model

        def forward(self, tokens):  # (B, 77) int64 → (B, D), pooled at argmax(tokens) (the end token)
            return self.clip_model.encode_text(tokens)

    return ImageTower(model).eval(), TextTower(model).eval()


def _onnx_export(module, example, path: Path, input_name: str, output_name: str, opset: int) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, do_constant_folding=True,
        )


def _simplify(path: Path):
    import onnx
    import onnxsim

    simplified, ok = onnxsim.simplify(onnx.load(str(path)))
    if not ok:
        raise ExportError(f"onnxsim could not validate the simplified graph {path.name}")
    return simplified


def parity_inputs(preprocess) -> tuple[np.ndarray, list[str]]:
    """Crops of ultralytics' bus.jpg and zidane.jpg through the clip module's own preprocess:
    ((N, 3, R, R) float32, names such as ``bus.jpg[0,230,810,740]``)."""
    from PIL import Image
    from ultralytics.utils import ASSETS

    xs, names = [], []
    for file, box in _crops():
        img = Image.open(ASSETS / file).convert("RGB")
        if box is not None:
            img = img.crop(box)
        xs.append(preprocess(img).numpy())
        names.append(file if box is None else f"{file}[{','.join(map(str, box))}]")
    return np.stack(xs).astype(np.float32), names


def _compare(name: str, ref: np.ndarray, got: np.ndarray, min_cosine: float = MIN_COSINE) -> dict[str, float]:
    """max |onnx - torch| and the smallest row-wise cosine similarity; ExportError below ``min_cosine``."""
    if ref.shape != got.shape:
        raise ExportError(f"{name}: PyTorch shape {ref.shape} != ONNX shape {got.shape}")
    if not np.isfinite(got).all():
        raise ExportError(f"{name}: onnxruntime produced non-finite values")
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    cos = (ref64 * got64).sum(1) / (np.linalg.norm(ref64, axis=1) * np.linalg.norm(got64, axis=1))
    stats = {"max_abs_diff": float(np.abs(ref64 - got64).max()), "min_cosine": float(cos.min())}
    if not stats["min_cosine"] >= min_cosine:
        raise ExportError(
            f"PyTorch and onnxruntime disagree on {name}: min cosine {stats['min_cosine']:.6f} < {min_cosine} "
            f"(max |diff| {stats['max_abs_diff']:.3g})"
        )
    return stats


def parity(
    model, image_path: Path, text_path: Path, images: np.ndarray, tokens: np.ndarray, min_cosine: float = MIN_COSINE
) -> dict[str, Any]:
    """PyTorch vs onnxruntime (CPU) for both towers, on the whole batch and on its first item alone."""
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        ref_img = model.encode_image(torch.from_numpy(images)).float().numpy()
        ref_txt = model.encode_text(torch.from_numpy(tokens)).float().numpy()
    out = {}
    for key, path, x, ref in (("image", image_path, images, ref_img), ("text", text_path, tokens, ref_txt)):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = sess.get_inputs()[0].name
        got = sess.run(None, {feed: x})[0]
        one = sess.run(None, {feed: x[:1]})[0]  # another batch size through the dynamic axis
        full = _compare(f"the {key} encoder", ref, got, min_cosine)
        single = _compare(f"the {key} encoder (batch 1)", ref[:1], one, min_cosine)
        out[key] = {
            "max_abs_diff": max(full["max_abs_diff"], single["max_abs_diff"]),
            "min_cosine": min(full["min_cosine"], single["min_cosine"]),
        }
    return out


def export_clip(
    weights: str | os.PathLike[str] = "ViT-B/32",
    out: str | os.PathLike[str] | None = None,
    *,
    opset: int | None = None,
    int8: bool = False,
    download_root: str | os.PathLike[str] | None = None,
    progress: Callable[[int, str], None] = _progress,
) -> Path:
    """Export CLIP to ``out/`` (clip_image.onnx, clip_text.onnx, the BPE vocabulary, manifest.json); returns ``out``.

    weights: a clip model name (downloaded by the clip module into ``download_root``) or a local
    checkpoint file; out: the bundle directory (default ``clip-<weights name>`` in the working
    directory, e.g. ``clip-ViT-B-32``); opset: ONNX opset (default 17); int8: quantize the matrix
    products of both towers to int8 (dynamic quantization, no calibration; about 4× faster image
    embeddings on CPUs with VNNI/AMX, cosine to PyTorch ≥ 0.99 instead of ≥ 0.9999: a CPU option, the
    fp32 bundle is the reference's numbers).
    With ``FASTSAM_ONNX_OFFLINE=1`` a model name is only read from the clip module's cache file
    (``download_root/ViT-B-32.pt``), never downloaded. Third-party warnings and log lines are silenced.
    Raises :class:`ExportError` when the weights cannot be downloaded or loaded, for a bad option, or
    when PyTorch and onnxruntime disagree (cosine below MIN_COSINE, or MIN_COSINE_INT8 for int8);
    :class:`~fastsam_onnx.errors.MissingExtraError` without the ``[export]`` extra.
    """
    require("clip")
    with quiet_tools():
        return _export_clip(weights, out, opset, int8, download_root, progress)


def _export_clip(weights, out, opset, int8, download_root, progress) -> Path:
    import onnx
    import torch

    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not 14 <= opset <= 21:
        raise ExportError(f"opset must be between 14 and 21, got {opset}")
    if out is None:
        stem = Path(str(weights)).stem if Path(str(weights)).is_file() else str(weights)
        out = Path("clip-" + re.sub(r"[^A-Za-z0-9_.@-]+", "-", stem))
    out = Path(out)
    check_out(out)
    int8 = bool(int8)
    if int8 and progress is _progress:
        progress = functools.partial(_progress, total=STEPS + 1)
    min_cosine = MIN_COSINE_INT8 if int8 else MIN_COSINE

    progress(1, f"loading CLIP weights {weights}")
    model, preprocess, weights_file = load_clip(weights, download_root)
    model = model.float().eval()
    clip = _import_clip()
    bpe_src = Path(clip.__file__).parent / BPE_NAME
    resolution = int(model.visual.input_resolution)
    context_length = int(model.context_length)
    normalize = preprocess.transforms[-1]
    mean, std = [float(v) for v in normalize.mean], [float(v) for v in normalize.std]

    with staging(out) as tmp:
        progress(2, f"exporting the image and text towers to ONNX (opset {opset}, dynamic batch)")
        images, image_names = parity_inputs(preprocess)
        tokens = clip.tokenize(list(PARITY_TEXTS), context_length=context_length, truncate=True).numpy()
        image_tower, text_tower = _towers(model)
        work = tmp / "work"
        work.mkdir()
        raw_image, raw_text = work / CLIP_IMAGE_ONNX, work / CLIP_TEXT_ONNX
        _onnx_export(image_tower, torch.from_numpy(images[:2]), raw_image, "images", "image_embeds", opset)
        _onnx_export(text_tower, torch.from_numpy(tokens[:2]), raw_text, "tokens", "text_embeds", opset)

        progress(3, "simplifying with onnxsim")
        image_proto, text_proto = _simplify(raw_image), _simplify(raw_text)

        progress(4, "checking the graphs with onnx.checker")
        image_path, text_path = tmp / CLIP_IMAGE_ONNX, tmp / CLIP_TEXT_ONNX
        fp32_dir = work if int8 else tmp
        onnx.save(image_proto, str(fp32_dir / CLIP_IMAGE_ONNX))
        onnx.save(text_proto, str(fp32_dir / CLIP_TEXT_ONNX))
        for p in (image_path, text_path):
            onnx.checker.check_model(str(fp32_dir / p.name))
        quantization = None
        step = 5
        if int8:
            progress(step, "quantizing both towers to int8 (dynamic: int8 weights, uint8 activations at run time)")
            from .precision import to_int8_dynamic

            for p in (image_path, text_path):
                quantization = to_int8_dynamic(work / p.name, p)
            step += 1
        shutil.rmtree(work)
        shutil.copyfile(bpe_src, tmp / BPE_NAME)

        progress(step, "comparing PyTorch and onnxruntime on photo crops and texts")
        stats = parity(model, image_path, text_path, images, tokens, min_cosine)
        embed_dim = int(model.text_projection.shape[1])

        progress(step + 1, "writing manifest")
        tokenizer = clip.clip._tokenizer.encoder
        description = clip_description(
            int8=int8, quantization=quantization, embed_dim=embed_dim, context_length=context_length,
            image_resolution=resolution, vocab_size=int(model.vocab_size), opset=opset_of(image_proto),
            image_io=graph_io(image_proto), text_io=graph_io(text_proto), mean=mean, std=std,
            sot=int(tokenizer["<|startoftext|>"]), eot=int(tokenizer["<|endoftext|>"]),
        )
        m = manifest(
            description,
            sha256={
                "image_onnx": sha256_file(image_path),
                "text_onnx": sha256_file(text_path),
                "bpe": sha256_file(tmp / BPE_NAME),
                "weights": sha256_file(weights_file) if weights_file.is_file() else None,
            },
            source={
                "weights": str(weights) if str(weights) in clip.available_models() else weights_file.name,
                "parameters": int(sum(p.numel() for p in model.parameters())),
            },
            parity={
                "images": image_names,
                "texts": list(PARITY_TEXTS),
                "image": stats["image"],
                "text": stats["text"],
                "min_cosine_required": min_cosine,
            },
            converter=CONVERTER,
            tools=versions(*TOOLS, "clip-anytorch"),
        )
        write_manifest(tmp, m, ensure_ascii=False)
    return out
