"""``export_clip`` → bundle → the torch-free ``CLIP`` runtime gives PyTorch CLIP's features.

A ViT-B/32-shaped CLIP with test-made weights is exported once per session; a tiny CLIP serves the
CLI and error-path tests.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from clip_fixtures import (  # noqa: F401  (fixtures)
    clip_bundle, clip_cache, clip_checkpoint, load_torch_clip, tiny_clip_bundle, tiny_clip_checkpoint,
)
from fastsam_onnx.cli import main
from fastsam_onnx.clip import CLIP
from fastsam_onnx.clip.preprocess import MEAN, STD
from fastsam_onnx.errors import BadArgumentError, BadImageError, BadModelError
from fastsam_onnx.manifest import FORMAT_VERSION, sha256_file

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clip = pytest.importorskip("clip")

from fastsam_onnx.export import ExportError  # noqa: E402
from fastsam_onnx.export.clip import export_clip  # noqa: E402

MIN_COSINE = 0.9999
TEXTS = [
    "a photo of a bus",
    "a man in a suit and tie",
    "a photo of a bus",  # a repeat: served from the cache
    "ÜBER-fancy café &amp; bar 🚌",
    "自転車に乗る人",
    "",
    " ".join(["a very long description of a crowded street"] * 12),  # > 77 tokens: truncated
]


def _crops(assets: Path) -> list[np.ndarray]:
    """RGB uint8 crops of the ultralytics photos, of many sizes, one with a black (masked) outside."""
    bus = cv2.imread(str(assets / "bus.jpg"))[:, :, ::-1]
    zidane = cv2.imread(str(assets / "zidane.jpg"))[:, :, ::-1]
    masked = zidane[40:715, 740:1150].copy()
    masked[:, :150] = 0
    return [
        bus, zidane, bus[230:740, 0:810], bus[390:910, 40:250], zidane[190:715, 120:560], masked,
        zidane[420:720, 430:530], bus[100:101, 100:101], bus[200:700, 300:301], bus[600:601, 100:600], bus[60:285, 50:273],
    ]


def _torch_features(model, preprocess, crops, texts) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with torch.no_grad():
        x = torch.stack([preprocess(Image.fromarray(np.ascontiguousarray(c))) for c in crops])
        img = model.encode_image(x).numpy()
        txt = model.encode_text(clip.tokenize(texts, truncate=True)).numpy()
    return img / np.linalg.norm(img, axis=1, keepdims=True), txt / np.linalg.norm(txt, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vit(clip_bundle) -> CLIP:
    return CLIP(clip_bundle)


def test_runtime_matches_pytorch(vit, clip_checkpoint, assets):
    crops = _crops(assets)
    model, preprocess = load_torch_clip(clip_checkpoint)
    ref_img, ref_txt = _torch_features(model, preprocess, crops, TEXTS)

    img = vit.encode_images(crops, batch_size=4)
    txt = vit.encode_texts(TEXTS)
    assert img.shape == (len(crops), 512) and img.dtype == np.float32
    assert txt.shape == (len(TEXTS), 512) and txt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    cos_img = (img.astype(np.float64) * ref_img).sum(1)
    cos_txt = (txt.astype(np.float64) * ref_txt).sum(1)
    print(f"CLIP ViT-B/32-shaped: min cosine image {cos_img.min():.7f}, text {cos_txt.min():.7f}")
    assert cos_img.min() >= MIN_COSINE and cos_txt.min() >= MIN_COSINE

    sim = vit.similarity(crops, TEXTS)
    assert sim.shape == (len(TEXTS), len(crops))
    np.testing.assert_allclose(sim, ref_txt @ ref_img.T, atol=1e-4)
    # another batch size through the dynamic axis gives the same features
    np.testing.assert_allclose(vit.encode_images(crops[:3], batch_size=1), img[:3], atol=1e-5)


def test_batches_and_text_cache(vit, assets):
    crops = _crops(assets)
    calls = {"image": [], "text": []}
    image_run, text_run = vit.image_session.run, vit.text_session.run
    vit.image_session.run = lambda x: calls["image"].append(len(x)) or image_run(x)
    vit.text_session.run = lambda x: calls["text"].append(len(x)) or text_run(x)
    try:
        vit.encode_images(crops, batch_size=4)
        assert calls["image"] == [4, 4, 3]  # batched, never one call per crop
        texts = [f"text number {i}" for i in range(5)] + ["text number 0"]
        first = vit.encode_texts(texts)
        assert calls["text"] == [5]  # the repeat is encoded once
        again = vit.encode_texts(list(reversed(texts)))
        assert calls["text"] == [5]  # all cached
        np.testing.assert_array_equal(again, first[::-1])
    finally:
        vit.image_session.run, vit.text_session.run = image_run, text_run


def test_manifest(clip_bundle, clip_checkpoint):
    m = json.loads((clip_bundle / "manifest.json").read_text())
    assert m["format_version"] == FORMAT_VERSION and m["kind"] == "clip"
    assert (m["image_model_file"], m["text_model_file"], m["bpe_file"]) == (
        "clip_image.onnx", "clip_text.onnx", "bpe_simple_vocab_16e6.txt.gz",
    )
    assert sorted(p.name for p in clip_bundle.iterdir()) == sorted(
        ["clip_image.onnx", "clip_text.onnx", "bpe_simple_vocab_16e6.txt.gz", "manifest.json"]
    )
    assert (m["embed_dim"], m["context_length"], m["image_resolution"], m["vocab_size"]) == (512, 77, 224, 49408)
    assert m["image_encoder"]["inputs"] == [{"name": "images", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]
    assert m["image_encoder"]["outputs"] == [{"name": "image_embeds", "shape": ["batch", 512], "dtype": "float32"}]
    assert m["text_encoder"]["inputs"] == [{"name": "tokens", "shape": ["batch", 77], "dtype": "int64"}]
    assert m["text_encoder"]["outputs"] == [{"name": "text_embeds", "shape": ["batch", 512], "dtype": "float32"}]
    pre = m["preprocess"]
    assert (pre["resize"], pre["crop"], pre["size"]) == ("bicubic", "center", 224)
    assert tuple(pre["mean"]) == MEAN and tuple(pre["std"]) == STD
    assert (m["tokenizer"]["sot"], m["tokenizer"]["eot"]) == (49406, 49407)
    assert m["opset"] == 17
    sha = m["sha256"]
    assert sha["image_onnx"] == sha256_file(clip_bundle / "clip_image.onnx")
    assert sha["text_onnx"] == sha256_file(clip_bundle / "clip_text.onnx")
    assert sha["bpe"] == sha256_file(clip_bundle / "bpe_simple_vocab_16e6.txt.gz")
    assert sha["bpe"] == sha256_file(Path(clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz")
    assert sha["weights"] == sha256_file(clip_checkpoint)
    assert m["source"]["weights"] == clip_checkpoint.name
    assert 151_000_000 < m["source"]["parameters"] < 152_000_000
    for tower in ("image", "text"):
        assert m["parity"][tower]["min_cosine"] >= MIN_COSINE
        assert 0 <= m["parity"][tower]["max_abs_diff"] < 1e-3
    assert any(name.startswith("bus.jpg") for name in m["parity"]["images"])
    assert any(name.startswith("zidane.jpg") for name in m["parity"]["images"])
    assert {"torch", "onnx", "onnxsim", "onnxruntime", "clip-anytorch"} <= set(m["tools"])
    assert m["converter"] == "torch"  # the native converter writes "native" (test_native_bundle.py)


def _offline() -> bool:
    try:
        socket.create_connection(("openaipublic.azureedge.net", 443), timeout=3).close()
    except OSError:
        return True
    return False


def test_named_weights_offline_give_export_error(tmp_path, monkeypatch):
    if not _offline():
        pytest.skip("the CLIP download host is reachable: this test is about the offline error")
    monkeypatch.delenv("FASTSAM_ONNX_OFFLINE", raising=False)  # the download is tried (and fails); see test_export_defaults
    out = tmp_path / "bundle"
    start = time.monotonic()
    with pytest.raises(ExportError, match="could not be downloaded") as info:
        export_clip("ViT-B/32", out, download_root=tmp_path / "downloads", progress=lambda *a: None)
    assert time.monotonic() - start < 60
    assert "local checkpoint" in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]  # no temp bundle left behind
    assert list((tmp_path / "downloads").iterdir()) == []


@pytest.mark.parametrize("kind", ["garbage", "empty", "not_clip", "missing", "unknown_name"])
def test_bad_checkpoints_give_export_error(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        path.write_bytes(b"\x80\x02not a checkpoint" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_clip":
        torch.save({"weight": torch.zeros(3)}, path)
    elif kind == "unknown_name":
        path = Path("ViT-Q/99")
    out = tmp_path / "bundle"
    with pytest.raises(ExportError) as info:
        export_clip(path, out, progress=lambda *a: None)
    assert "\n" not in str(info.value)
    assert not out.exists()
    assert not list(tmp_path.glob(".bundle.tmp-*"))


#: these CLI tests are the torch exporter's (the native converter, the default: test_native_cli.py)
TORCH = ["--converter", "torch"]


def test_cli_export_clip(tiny_clip_checkpoint, tmp_path, capsys):
    out = tmp_path / "clip"
    assert main(["export", "clip", "--weights", str(tiny_clip_checkpoint), "--out", str(out), *TORCH]) == 0
    assert "wrote the CLIP bundle" in capsys.readouterr().out
    first = sha256_file(out / "clip_text.onnx")
    assert json.loads((out / "manifest.json").read_text())["opset"] == 17
    # exporting again replaces the bundle in place
    assert main(["export", "clip", "--weights", str(tiny_clip_checkpoint), "--out", str(out), "--opset", "18", *TORCH]) == 0
    assert json.loads((out / "manifest.json").read_text())["opset"] == 18
    assert [p.name for p in tmp_path.iterdir()] == ["clip"]
    model = CLIP(out)
    assert model.embed_dim == 32 and len(first) == 64
    assert model.similarity([np.full((40, 30, 3), 200, np.uint8)], ["a grey square"]).shape == (1, 1)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--weights", "{garbage}"], "cannot load CLIP checkpoint"),
        (["--weights", "{tmp}/missing.pt"], "CLIP weights not found"),
        (["--weights", "{tiny}", "--opset", "99"], "opset"),
        ([], "could not be downloaded"),
    ],
)
def test_cli_errors_exit_2_one_line(tiny_clip_checkpoint, tmp_path, capsys, monkeypatch, args, message):
    if message == "could not be downloaded":
        if not _offline():
            pytest.skip("the CLIP download host is reachable")
        monkeypatch.setenv("HOME", str(tmp_path))  # clip's default download folder is ~/.cache/clip
        monkeypatch.delenv("FASTSAM_ONNX_OFFLINE", raising=False)
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 50)
    fill = {"garbage": str(tmp_path / "garbage.pt"), "tmp": str(tmp_path), "tiny": str(tiny_clip_checkpoint)}
    status = main(["export", "clip", *[a.format(**fill) for a in args], "--out", str(tmp_path / "out"), *TORCH])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[")]  # not progress
    assert status == 2
    assert len(err) == 1 and err[0].startswith("fastsam-onnx export: error:") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_cli_requires_out(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "clip", "--weights", "x.pt"])
    assert info.value.code == 2


def test_runtime_errors(tiny_clip_bundle, tmp_path):
    with pytest.raises(BadModelError, match="not found"):
        CLIP(tmp_path / "nowhere")
    fastsam = tmp_path / "fastsam"
    fastsam.mkdir()
    (fastsam / "manifest.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "kind": "fastsam"}))
    with pytest.raises(BadModelError, match="not a CLIP model"):
        CLIP(fastsam)
    (fastsam / "manifest.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "kind": "clip"}))
    with pytest.raises(BadModelError, match="not a valid CLIP manifest"):
        CLIP(fastsam)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_clip_bundle, broken)
    (broken / "bpe_simple_vocab_16e6.txt.gz").unlink()
    with pytest.raises(BadModelError, match="BPE"):
        CLIP(broken)
    (broken / "clip_text.onnx").write_bytes(b"not onnx")
    with pytest.raises(BadModelError):
        CLIP(broken)

    model = CLIP(tiny_clip_bundle)
    with pytest.raises(BadArgumentError, match="at least one"):
        model.encode_texts([])
    with pytest.raises(BadArgumentError, match="list of strings"):
        model.encode_texts("a dog")
    with pytest.raises(BadArgumentError, match="strings"):
        model.encode_texts(["a dog", None])  # type: ignore[list-item]
    with pytest.raises(BadArgumentError, match="batch_size"):
        model.encode_images([np.zeros((4, 4, 3), np.uint8)], batch_size=0)
    with pytest.raises(BadImageError):
        model.encode_images([np.zeros((4, 4), np.uint8)])
    with pytest.raises(BadImageError):
        model.encode_images([np.zeros((0, 4, 3), np.uint8)])
    assert model.encode_images([]).shape == (0, 32)


TORCH_FREE = r"""
import numpy as np
from fastsam_onnx.clip import CLIP
model = CLIP(sys.argv[1])
sim = model.similarity([np.zeros((30, 40, 3), np.uint8), np.full((9, 9, 3), 255, np.uint8)], ["black", "white"])
report(shape=list(sim.shape))
"""


def test_runtime_is_torch_free(tiny_clip_bundle):
    from torchfree import run_blocked

    assert run_blocked(TORCH_FREE, str(tiny_clip_bundle)) == {"shape": [2, 2], "loaded": [], "attempts": []}
