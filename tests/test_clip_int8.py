"""``export_clip(int8=True)``: int8 CLIP towers (the CPU speed option of text prompts).

Checked against PyTorch CLIP (cosine of the embeddings) on a ViT-B/32-shaped model and against the fp32
bundle on the decision a text prompt makes (which crop wins) with the trained demo CLIP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from clip_fixtures import clip_cache, clip_checkpoint, load_torch_clip, tiny_clip_checkpoint  # noqa: F401
from fastsam_onnx.cli import main
from fastsam_onnx.clip import CLIP
from fastsam_onnx.manifest import sha256_file
from fastsam_onnx.models import evaluate_text

torch = pytest.importorskip("torch")
pytest.importorskip("clip")
from fastsam_onnx.export.clip import MIN_COSINE_INT8, export_clip  # noqa: E402

DEMO_CLIP = Path(evaluate_text.__file__).parent / "clip-demo"


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clip-int8") / "demo-int8"
    return export_clip(DEMO_CLIP / "clip-demo.pt", out, int8=True, progress=lambda *a: None)


def test_int8_manifest_and_graphs(demo_int8):
    m = json.loads((demo_int8 / "manifest.json").read_text())
    assert m["precision"] == "int8" and m["quantization"]["format"] == "dynamic"
    assert m["parity"]["min_cosine_required"] == MIN_COSINE_INT8
    for tower in ("image", "text"):
        assert m["parity"][tower]["min_cosine"] >= MIN_COSINE_INT8
    assert m["sha256"]["image_onnx"] == sha256_file(demo_int8 / "clip_image.onnx")
    for name in ("clip_image.onnx", "clip_text.onnx"):
        ops = _ops(demo_int8 / name)
        assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops or "DynamicQuantizeMatMul" in ops, ops
    fp32 = json.loads((DEMO_CLIP / "manifest.json").read_text())
    assert fp32.get("precision", "fp32") == "fp32"
    assert (demo_int8 / "clip_image.onnx").stat().st_size < 0.6 * (DEMO_CLIP / "clip_image.onnx").stat().st_size


def test_int8_picks_the_same_crops_as_fp32(demo_int8):
    """The text-prompt decision on 80 held-out demo scenes: the int8 bundle's best crop per caption is
    the fp32 bundle's in ≥ 97 % of prompts, and its top-1 is within 0.02 of fp32's."""
    fp32, int8 = CLIP(DEMO_CLIP), CLIP(demo_int8)
    same = n = 0
    cos = []
    for scene in evaluate_text.heldout_scenes(80):
        cases = evaluate_text.unique_captions(scene)
        if not cases:
            continue
        crops, _ = evaluate_text.gt_text_crops(scene)
        texts = [c for c, _ in cases]
        a, b = fp32.similarity(crops, texts), int8.similarity(crops, texts)
        same += int((a.argmax(1) == b.argmax(1)).sum())
        n += len(texts)
        cos.append((fp32.encode_images(crops) * int8.encode_images(crops)).sum(1).min())
    print(f"int8 vs fp32 demo CLIP: same pick {same}/{n}, min image-embedding cosine {min(cos):.5f}")
    assert n > 100 and same / n >= 0.97
    top1 = {k: evaluate_text.text_accuracy(m, n_images=80) for k, m in (("fp32", fp32), ("int8", int8))}
    assert top1["int8"] >= top1["fp32"] - 0.02, top1


@pytest.mark.slow
def test_int8_vit_b_32_against_pytorch(clip_cache, clip_checkpoint, assets):
    """ViT-B/32 shape: int8 embeddings of photo crops stay within cosine 0.99 of PyTorch fp32, and the image
    tower shrinks to about a quarter."""
    out = export_clip(clip_checkpoint, clip_cache / "vit-b-32-int8", int8=True, progress=lambda *a: None)
    import cv2

    bus = cv2.imread(str(assets / "bus.jpg"))[:, :, ::-1]
    crops = [bus, bus[230:740, 0:810], bus[390:910, 40:250], bus[60:285, 50:273]]
    model, preprocess = load_torch_clip(clip_checkpoint)
    from PIL import Image

    with torch.no_grad():
        ref = model.encode_image(torch.stack([preprocess(Image.fromarray(np.ascontiguousarray(c))) for c in crops])).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    got = CLIP(out).encode_images(crops)
    cos = (got.astype(np.float64) * ref).sum(1)
    print(f"int8 ViT-B/32-shaped vs PyTorch: min cosine {cos.min():.5f}")
    assert cos.min() >= MIN_COSINE_INT8
    assert (out / "clip_image.onnx").stat().st_size < 0.3 * 351_000_000


def test_cli_export_clip_int8(tiny_clip_checkpoint, tmp_path, capsys):
    out = tmp_path / "clip8"
    assert main(["export", "clip", "--weights", str(tiny_clip_checkpoint), "--out", str(out), "--int8"]) == 0
    err = capsys.readouterr().err
    assert "[5/7] quantizing" in err and "[7/7] writing manifest" in err
    assert json.loads((out / "manifest.json").read_text())["precision"] == "int8"
    assert CLIP(out).similarity([np.full((40, 30, 3), 200, np.uint8)], ["a grey square"]).shape == (1, 1)
