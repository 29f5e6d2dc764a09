"""The native CLIP converter (export/native_clip.py, issue 24 items 3 and 4): towers built from the weights of a
TorchScript archive made the way OpenAI's ViT-B-32.pt was made agree with the clip module (fp32) and with the torch
exporter's bundle to cosine >= 0.99999 per row, with the same text picks, the same inputs and outputs, and nothing
left for onnxsim. A small multi-head CLIP with perturbed weights covers the logic in seconds; one ViT-B/32-shaped
test (slow) covers the real sizes and the conversion time."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
clip = pytest.importorskip("clip")
ort = pytest.importorskip("onnxruntime")
import onnx  # noqa: E402

from clip_fixtures import clip_archive, clip_bundle, clip_cache, clip_checkpoint, load_torch_clip, make_clip_archive  # noqa: E402,F401
from fastsam_onnx.clip.preprocess import preprocess_batch  # noqa: E402
from fastsam_onnx.clip.tokenizer import BPE_NAME, ClipTokenizer  # noqa: E402
from fastsam_onnx.errors import BadModelError  # noqa: E402
from fastsam_onnx.export import checkpoint  # noqa: E402
from fastsam_onnx.export.native_clip import build_clip, clip_config  # noqa: E402

MIN_COSINE = 0.99999
#: two layers and two heads per tower, 16 px patches on 96 px images, the real vocabulary and context
SMALL = dict(
    embed_dim=48, image_resolution=96, vision_layers=2, vision_width=128, vision_patch_size=16,
    context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=2,
)
TEXTS = [
    "a photo of a bus", "a man wearing a tie", "the dog", "A RED double-decker bus, parked on the street!",
    "un chat noir 🐈 sur le toit", "自転車に乗る人", "", " ".join(["a very long description of a crowded street"] * 12),
]
#: (photo, crop box x1, y1, x2, y2 or None), as export_clip's parity check crops them, plus thin and tiny ones
BOXES = [
    ("bus.jpg", None), ("bus.jpg", (0, 230, 810, 740)), ("bus.jpg", (40, 390, 250, 910)), ("zidane.jpg", None),
    ("zidane.jpg", (740, 40, 1150, 715)), ("zidane.jpg", (120, 190, 560, 715)), ("zidane.jpg", (430, 420, 530, 720)),
    ("bus.jpg", (300, 200, 301, 700)), ("bus.jpg", (100, 100, 101, 101)),
]


def read_state(path: Path, archive: bool = True) -> dict[str, np.ndarray]:
    """The state dict of an archive (or of a saved state dict) through the torch-free reader once it exists, else
    through torch."""
    reader = getattr(checkpoint, "read_checkpoint", None)
    if reader is not None:
        return checkpoint.state_dict(reader(path))
    if not archive:
        return {k: v.numpy() for k, v in torch.load(str(path), map_location="cpu").items()}
    return {k: v.numpy() for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}


def _photos(assets: Path, resolution: int) -> np.ndarray:
    from PIL import Image

    crops = []
    for name, box in BOXES:
        img = Image.open(assets / name).convert("RGB")
        crops.append(img if box is None else img.crop(box))
    return preprocess_batch(crops, resolution)


def _tokens(n: int = 77) -> np.ndarray:
    return ClipTokenizer(Path(clip.__file__).parent / BPE_NAME, n)(TEXTS)


def _run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    assert ref.shape == got.shape and np.isfinite(got).all()
    a, b = ref.astype(np.float64), got.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _picks(img: np.ndarray, txt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the best crop for each text, the best text for each crop) by cosine similarity."""
    sim = (txt / np.linalg.norm(txt, axis=1, keepdims=True)) @ (img / np.linalg.norm(img, axis=1, keepdims=True)).T
    return sim.argmax(1), sim.argmax(0)


def _agree(what: str, ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Row-wise cosines >= MIN_COSINE for image and text embeddings and identical picks; the minima."""
    out = {}
    for key, r, g in (("image", ref[0], got[0]), ("text", ref[1], got[1])):
        out[key] = float(_cosines(r, g).min())
        assert out[key] >= MIN_COSINE, f"{what}: {key} embeddings min cosine {out[key]:.8f}"
    for r, g in zip(_picks(*ref), _picks(*got)):
        np.testing.assert_array_equal(g, r, err_msg=f"{what}: different picks")
    spread = {k: float(_cosines(np.repeat(r, len(r), 0), np.tile(r, (len(r), 1))).min()) for k, r in (("image", ref[0]), ("text", ref[1]))}
    print(f"{what}: min cosine image 1 - {1 - out['image']:.1e}, text 1 - {1 - out['text']:.1e} "
          f"(between different inputs down to image {spread['image']:.3f}, text {spread['text']:.3f})")
    return {**out, "spread_image": spread["image"], "spread_text": spread["text"]}


def _reference(archive: Path, images: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """encode_image / encode_text of the clip module (clip.load(jit=False), fp32)."""
    model, _ = load_torch_clip(archive)
    with torch.no_grad():
        return model.encode_image(torch.from_numpy(images)).numpy(), model.encode_text(torch.from_numpy(tokens)).numpy()


@pytest.fixture(scope="module")
def small_archive(clip_cache) -> Path:
    """A SMALL CLIP archive whose every weight is random and non-trivial (biases, layer-norm gains and shifts,
    embeddings), so that a wrong scale, bias or layout anywhere shows."""
    path = clip_cache / "small-native-clip-jit.pt"
    if path.exists():
        return path
    from clip.model import CLIP

    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CLIP(**SMALL)
    model.initialize_parameters()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
            elif ".ln_" in "." + name:  # layer-norm gains
                p.mul_(torch.empty_like(p).uniform_(0.7, 1.3))
            elif name.endswith(("class_embedding", "positional_embedding")):
                p.normal_(0, 0.5 if name.startswith("visual") else 0.05)
    state = clip_cache / "small-native-clip.pt"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, state)
    return make_clip_archive(path, state)


@pytest.fixture(scope="module")
def small(small_archive):
    """(archive, its state dict as read, (image graph, text graph), conversion seconds)."""
    state = read_state(small_archive)
    t0 = time.perf_counter()
    towers = build_clip(state)
    return small_archive, state, towers, time.perf_counter() - t0


def test_small_matches_clip_module(small, assets):
    archive, state, (image, text), _ = small
    images, tokens = _photos(assets, SMALL["image_resolution"]), _tokens()
    got = _run(image, images), _run(text, tokens)
    assert got[0].shape == (len(BOXES), SMALL["embed_dim"]) and got[0].dtype == np.float32
    assert got[1].shape == (len(TEXTS), SMALL["embed_dim"]) and got[1].dtype == np.float32
    stats = _agree("small archive, native vs clip module", _reference(archive, images, tokens), got)
    assert stats["spread_image"] < 0.99 and stats["spread_text"] < 0.99  # inputs far apart: the cosine bound means something
    # the batch axis is dynamic: one at a time gives the same rows
    np.testing.assert_allclose(_run(image, images[2:3]), got[0][2:3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_run(text, tokens[5:6]), got[1][5:6], rtol=1e-5, atol=1e-5)


def _io(model: onnx.ModelProto) -> list[tuple]:
    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return [(kind, v.name, v.type.tensor_type.elem_type, dims(v)) for kind, vs in (("in", model.graph.input), ("out", model.graph.output)) for v in vs]


def test_small_matches_torch_bundle(small, assets, tmp_path):
    """Same inputs, outputs, dynamic axis and opset as export_clip's bundle of the same archive; same numbers."""
    from fastsam_onnx.export.clip import CLIP_IMAGE_ONNX, CLIP_TEXT_ONNX, export_clip

    archive, _, (image, text), _ = small
    bundle = export_clip(archive, tmp_path / "torch", progress=lambda *a: None)
    ref = [onnx.load(str(bundle / f)) for f in (CLIP_IMAGE_ONNX, CLIP_TEXT_ONNX)]
    for native, torch_made in zip((image, text), ref):
        assert _io(native) == _io(torch_made)
        assert [(o.domain, o.version) for o in native.opset_import] == [(o.domain, o.version) for o in torch_made.opset_import]
        print(f"{native.graph.name}: {len(native.graph.node)} nodes, torch bundle {len(torch_made.graph.node)}")
        assert len(native.graph.node) < len(torch_made.graph.node)
    assert _io(image)[0][1:] == ("images", onnx.TensorProto.FLOAT, ["batch", 3, 96, 96])
    assert _io(text) == [("in", "tokens", onnx.TensorProto.INT64, ["batch", 77]), ("out", "text_embeds", onnx.TensorProto.FLOAT, ["batch", 48])]
    images, tokens = _photos(assets, SMALL["image_resolution"]), _tokens()
    _agree("small archive, native vs torch bundle", (_run(ref[0], images), _run(ref[1], tokens)), (_run(image, images), _run(text, tokens)))


def test_simplified_as_built(small):
    """No Constant or Identity node, no dead node, no unused initializer, fp32 weights; onnxsim changes nothing."""
    onnxsim = pytest.importorskip("onnxsim")
    _, _, towers, _ = small
    for model in towers:
        g = model.graph
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        assert not [n.op_type for n in g.node if n.op_type in ("Constant", "Identity", "Cast", "Shape")]
        assert all(o in used for n in g.node for o in n.output), "dead node"
        assert all(t.name in used for t in g.initializer), "unused initializer"
        assert {t.data_type for t in g.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
        simplified, ok = onnxsim.simplify(model)
        assert ok
        assert [n.op_type for n in simplified.graph.node] == [n.op_type for n in g.node]
        assert len(simplified.graph.initializer) == len(g.initializer)


def test_config_inferred_from_shapes(small):
    _, state, _, _ = small
    c = clip_config(state)
    assert {k: getattr(c, k) for k in SMALL} == SMALL
    assert c.vision_heads == 2 and c.grid == 6
    model, _ = load_torch_clip(small[0])
    assert c.parameters == sum(p.numel() for p in model.parameters())


def _mutations():
    def drop(key):
        return lambda s: {k: v for k, v in s.items() if k != key}

    def reshape(key, shape):
        return lambda s: {**s, key: np.zeros(shape, np.float16)}

    return [
        (lambda s: {**s, "visual.layer1.0.conv1.weight": np.zeros((64, 64, 1, 1), np.float16)}, "ResNet"),
        (lambda s: {k: v for k, v in s.items() if not k.startswith("visual.")}, "not a ViT CLIP"),
        (drop("visual.transformer.resblocks.0.ln_1.weight"), "resblocks.0.ln_1.weight"),
        (drop("ln_final.bias"), "ln_final.bias"),
        (lambda s: {k: v for k, v in s.items() if not k.startswith("transformer.resblocks.0.")}, "transformer.resblocks.0"),
        (reshape("visual.proj", (128, 47)), "visual.proj"),
        (reshape("text_projection", (128, 47)), "visual.proj"),
        (reshape("transformer.resblocks.1.mlp.c_fc.weight", (500, 128)), "mlp.c_fc.weight"),
        (reshape("visual.positional_embedding", (40, 128)), "visual.positional_embedding"),
        (reshape("visual.conv1.weight", (128, 3, 16, 8)), "visual.conv1.weight"),
        (lambda s: {**s, "visual.head.weight": np.zeros((3, 4), np.float16)}, "visual.head.weight"),
        (lambda s: {**s, "visual.transformer.resblocks.5.ln_1.weight": np.zeros(128, np.float16)}, "resblocks.2"),
        (lambda s: {**s, "token_embedding.weight": np.zeros((49408, 128), np.int64)}, "floating point"),
        (lambda s: [1, 2], "mapping"),
    ]


@pytest.mark.parametrize("mutate,message", _mutations())
def test_refusals_are_one_line(small, mutate, message):
    _, state, _, _ = small
    with pytest.raises(BadModelError) as e:
        build_clip(mutate(state))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_width_not_multiple_of_64_is_refused():
    state = {"visual.proj": np.zeros((96, 8)), "visual.conv1.weight": np.zeros((96, 3, 4, 4)),
             "visual.positional_embedding": np.zeros((5, 96)), "text_projection": np.zeros((64, 8)),
             "ln_final.weight": np.zeros(64), "positional_embedding": np.zeros((7, 64)),
             "token_embedding.weight": np.zeros((10, 64)), "visual.transformer.resblocks.0.ln_1.weight": np.zeros(96),
             "transformer.resblocks.0.ln_1.weight": np.zeros(64)}
    with pytest.raises(BadModelError, match="vision width 96 is not a positive multiple of 64"):
        build_clip(state)


def test_what_is_not_a_weight_is_ignored(small):
    """OpenAI's int entries, the temperature, a TorchScript attention-mask attribute, and any float precision."""
    archive, state, towers, _ = small
    assert {"input_resolution", "context_length", "vocab_size", "logit_scale"} <= set(state)
    extra = {**state, "transformer.resblocks.0.attn_mask": np.zeros((77, 77), np.float32)}
    as32 = {k: np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else v for k, v in extra.items()}
    tokens = _tokens()
    np.testing.assert_array_equal(_run(build_clip(as32)[1], tokens), _run(towers[1], tokens))


def test_state_dict_file_gives_the_same_graphs(small):
    """The archive's source, a plain ``torch.save``d fp16 state dict (fp16 layer norms too), gives the same weights."""
    archive, _, towers, _ = small
    state = read_state(archive.with_name("small-native-clip.pt"), archive=False)
    assert {str(v.dtype) for k, v in state.items() if k.endswith("ln_final.weight")} == {"float16"}
    for a, b in zip(build_clip(state), towers):
        assert a.graph.node == b.graph.node
        assert [(t.name, t.raw_data) for t in a.graph.initializer] == [(t.name, t.raw_data) for t in b.graph.initializer]


def test_reader_gives_torchs_state_dict(small):
    """The torch-free reader's state dict of the archive holds torch's, tensor for tensor (dtype and values)."""
    if not hasattr(checkpoint, "read_checkpoint"):
        pytest.skip("export/checkpoint.py has no read_checkpoint yet")
    archive, state, _, _ = small
    ref = torch.jit.load(str(archive), map_location="cpu").state_dict()
    for k, v in ref.items():
        assert k in state, k
        assert state[k].dtype == v.numpy().dtype and np.array_equal(state[k], v.numpy()), k


@pytest.mark.slow
def test_vit_b_32_archive(clip_archive, clip_bundle, assets):
    """ViT-B/32-shaped archive (fp16 TorchScript, 151 M parameters): native vs the clip module and vs export_clip's
    bundle of the same weights on photo crops and texts; conversion time."""
    from fastsam_onnx.export.clip import CLIP_IMAGE_ONNX, CLIP_TEXT_ONNX

    t0 = time.perf_counter()
    state = read_state(clip_archive)
    t1 = time.perf_counter()
    image, text = build_clip(state)
    t2 = time.perf_counter()
    print(f"ViT-B/32: read {t1 - t0:.1f} s, built {t2 - t1:.1f} s")
    assert t2 - t0 < 60  # the goal is 30 s on 2 cores (benchmarks/ measures it); this only catches a blow-up
    c = clip_config(state)
    assert (c.embed_dim, c.image_resolution, c.vision_width, c.vision_layers, c.vision_patch_size) == (512, 224, 768, 12, 32)
    assert (c.context_length, c.vocab_size, c.transformer_width, c.transformer_heads, c.transformer_layers) == (77, 49408, 512, 8, 12)
    images, tokens = _photos(assets, 224), _tokens()
    got = _run(image, images), _run(text, tokens)
    _agree("ViT-B/32 archive, native vs clip module", _reference(clip_archive, images, tokens), got)
    ref = [onnx.load(str(clip_bundle / f)) for f in (CLIP_IMAGE_ONNX, CLIP_TEXT_ONNX)]
    for native, torch_made in zip((image, text), ref):
        assert _io(native) == _io(torch_made)
        print(f"ViT-B/32 {native.graph.name}: {len(native.graph.node)} nodes, torch bundle {len(torch_made.graph.node)}")
    _agree("ViT-B/32 archive, native vs torch bundle", (_run(ref[0], images), _run(ref[1], tokens)), got)
