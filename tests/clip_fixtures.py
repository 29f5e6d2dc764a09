"""CLIP test fixtures: test-made CLIP checkpoints and their exported bundles, made once per session.

Import the fixtures you use into the test module (``from clip_fixtures import clip_bundle``). Each file
is cached under pytest's session base temp and reused when it exists, so importing the fixtures into
several modules still exports each model once per session.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

#: ViT-B/32's architecture (clip.model.CLIP arguments).
VIT_B_32 = dict(
    embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
    context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12,
)
#: A tiny CLIP with the real tokenizer interface (77 ids, 49408 vocabulary), for fast CLI/error tests.
TINY = dict(
    embed_dim=32, image_resolution=224, vision_layers=1, vision_width=64, vision_patch_size=32,
    context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1,
)


def make_clip_checkpoint(path: Path, dims: dict, seed: int = 0) -> Path:
    """Save the state dict of ``clip.model.CLIP(**dims)`` with seeded initial weights (fp16, like the
    released checkpoints; ``clip.load(path)`` rebuilds the model from it)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**dims)
    model.initialize_parameters()
    part = path.with_name(path.name + ".part")
    torch.save(model.half().state_dict(), part)
    part.rename(path)
    return path


def make_clip_archive(path: Path, checkpoint: Path) -> Path:
    """A TorchScript archive of the CLIP in ``checkpoint`` (a saved state dict), made the way OpenAI's ``ViT-B-32.pt``
    was made: ``clip.model.build_model`` (fp16 convolution, linear, attention and projection weights; fp32 layer
    norms and embeddings, holding fp16 values), the int entries ``input_resolution``, ``context_length`` and
    ``vocab_size`` as buffers, then ``torch.jit.trace_module`` of forward, encode_image and encode_text (in fp16 on
    the CPU) and ``torch.jit.save``. ``clip.load(path, jit=False)`` rebuilds the same model as from ``checkpoint``."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from clip.model import build_model

        model = build_model(torch.load(checkpoint, map_location="cpu")).eval()
        r, n = int(model.visual.input_resolution), int(model.context_length)
        for key, value in (("input_resolution", r), ("context_length", n), ("vocab_size", model.vocab_size)):
            if hasattr(model, key):
                delattr(model, key)
            model.register_buffer(key, torch.tensor(value))
        image = torch.zeros(1, 3, r, r, dtype=model.dtype)
        text = torch.zeros(1, n, dtype=torch.long)
        text[0, :3] = torch.tensor([49406, 320, 49407])
        with torch.no_grad():
            traced = torch.jit.trace_module(
                model, {"forward": (image, text), "encode_image": (image,), "encode_text": (text,)}, check_trace=False
            )
    part = path.with_name(path.name + ".part")
    torch.jit.save(traced, str(part))
    part.rename(path)
    return path


def load_torch_clip(path: Path):
    """(model, preprocess) of the clip module for a checkpoint file, fp32 on the CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import clip

        return clip.load(str(path), device="cpu", jit=False)


def _cached_checkpoint(root: Path, name: str, dims: dict) -> Path:
    path = root / f"{name}.pt"
    if not path.exists():
        make_clip_checkpoint(path, dims, seed=0)
    return path


def _cached_archive(root: Path, checkpoint: Path) -> Path:
    path = root / f"{checkpoint.stem}-jit.pt"
    if not path.exists():
        make_clip_archive(path, checkpoint)
    return path


def _cached_bundle(root: Path, checkpoint: Path) -> Path:
    from fastsam_onnx.export.clip import export_clip

    out = root / f"{checkpoint.stem}-bundle"
    if not out.exists():
        export_clip(checkpoint, out, progress=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "clip-models"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def clip_checkpoint(clip_cache) -> Path:
    """A ViT-B/32-shaped CLIP state dict (151 M parameters) with seeded test-made weights."""
    pytest.importorskip("clip")
    return _cached_checkpoint(clip_cache, "vit-b-32-test", VIT_B_32)


@pytest.fixture(scope="session")
def clip_bundle(clip_cache, clip_checkpoint) -> Path:
    """``clip_checkpoint`` exported with ``export_clip`` (once per session: about a minute on 2 cores)."""
    return _cached_bundle(clip_cache, clip_checkpoint)


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(clip_cache) -> Path:
    """A tiny CLIP state dict (one layer per tower, 32-d embeddings), exported in seconds."""
    pytest.importorskip("clip")
    return _cached_checkpoint(clip_cache, "tiny-clip-test", TINY)


@pytest.fixture(scope="session")
def tiny_clip_bundle(clip_cache, tiny_clip_checkpoint) -> Path:
    return _cached_bundle(clip_cache, tiny_clip_checkpoint)


@pytest.fixture(scope="session")
def clip_archive(clip_cache, clip_checkpoint) -> Path:
    """``clip_checkpoint`` as a TorchScript archive made like OpenAI's ``ViT-B-32.pt`` (same weights)."""
    return _cached_archive(clip_cache, clip_checkpoint)


@pytest.fixture(scope="session")
def tiny_clip_archive(clip_cache, tiny_clip_checkpoint) -> Path:
    """``tiny_clip_checkpoint`` as a TorchScript archive (same weights)."""
    return _cached_archive(clip_cache, tiny_clip_checkpoint)
