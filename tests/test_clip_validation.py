"""CLIP bundles and arguments are validated like FastSAM's (see test_validation.py): a bad manifest field or
argument is a typed error naming it; the text-embedding cache is bounded (entries and key size) and an LRU."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_validation import edit

import fastsam_onnx.clip.model as clip_mod
from fastsam_onnx.errors import BadArgumentError, BadModelError
from fastsam_onnx.models import demo_clip_bundle


@pytest.fixture
def clip_bundle(tmp_path):
    src = demo_clip_bundle()
    if not (src / "manifest.json").is_file():
        pytest.skip("demo CLIP bundle not built")
    out = tmp_path / "clip"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.pt"))
    return out


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_model_file", "../clip_image.onnx"), ("text_model_file", 5), ("bpe_file", "/etc/passwd"),
        ("image_model_file", ""), ("bpe_file", ["x"]), ("format_version", "1"), ("embed_dim", "64"),
        ("context_length", True), ("image_resolution", 0),
    ],
)
def test_bad_clip_manifest_fields(clip_bundle, field, value):
    edit(clip_bundle, **{field: value})
    with pytest.raises(BadModelError, match=field):
        clip_mod.CLIP(clip_bundle)


def test_clip_bundle_argument_type():
    with pytest.raises(BadArgumentError):
        clip_mod.CLIP(5)


class _Session:
    def __init__(self, dim):
        self.calls, self.dim = 0, dim

    def run(self, tokens):
        self.calls += len(tokens)
        return [np.random.default_rng(int(tokens[:, 1].sum())).normal(size=(len(tokens), self.dim)).astype(np.float32)]


def _stub_text(clip):
    """Replace the text tower and tokenizer by cheap stand-ins (one embedding per text, from its length)."""
    clip.text_session = _Session(clip.embed_dim)
    clip.tokenizer = lambda texts: np.array([[0, len(t) % 1000, 0] for t in texts], dtype=np.int64)
    return clip


def test_text_cache_is_bounded_by_entries_and_key_size():
    if not (demo_clip_bundle() / "manifest.json").is_file():
        pytest.skip("demo CLIP bundle not built")
    clip = _stub_text(clip_mod.CLIP(demo_clip_bundle()))
    for i in range(300):  # 300 distinct 1 MB texts: the keys are digests, not the texts
        clip.encode_texts([f"{i} " + "x" * (1 << 20)])
    assert len(clip._text_cache) == 300
    key_chars = sum(len(k) if isinstance(k, str) else len(k[1]) for k in clip._text_cache)
    assert key_chars <= 300 * 64
    short = "a" * clip_mod.TEXT_KEY_CHARS
    clip.encode_texts([short])
    assert short in clip._text_cache and ("a" * (clip_mod.TEXT_KEY_CHARS + 1)) not in clip._text_cache


def test_text_cache_is_an_lru(monkeypatch):
    if not (demo_clip_bundle() / "manifest.json").is_file():
        pytest.skip("demo CLIP bundle not built")
    monkeypatch.setattr(clip_mod, "TEXT_CACHE_SIZE", 8)
    clip = clip_mod.CLIP(demo_clip_bundle())
    texts = [f"a photo of thing {i}" for i in range(20)]
    fresh = clip_mod.CLIP(demo_clip_bundle()).encode_texts(texts)
    assert np.array_equal(clip.encode_texts(texts), fresh)  # more texts than the bound in one call
    assert len(clip._text_cache) == 8 and list(clip._text_cache) == texts[-8:]
    clip.encode_texts([texts[12]])  # a hit moves to the most recent end
    clip.encode_texts(["new text"])
    assert texts[12] in clip._text_cache and texts[13] not in clip._text_cache and len(clip._text_cache) == 8
    assert np.array_equal(clip.encode_texts(texts[:3] + texts[-3:]), fresh[[0, 1, 2, 17, 18, 19]])
    with pytest.raises(BadArgumentError, match="batch_size"):
        clip.encode_texts(["a"], batch_size=1.5)
