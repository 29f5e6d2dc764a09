"""CLIP on ONNX Runtime: image and text embeddings from an exported CLIP bundle, without PyTorch.

A bundle (written by ``fastsam-onnx export clip``) holds ``manifest.json`` (kind ``"clip"``), the image
tower (``images`` (B, 3, R, R) float32 → ``image_embeds`` (B, D)), the text tower (``tokens`` (B, 77)
int64 → ``text_embeds`` (B, D)) and the BPE vocabulary of the tokenizer.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .preprocess import preprocess_batch
from .tokenizer import BPE_NAME, ClipTokenizer
from ..errors import BadArgumentError, BadModelError
from ..manifest import bundle_file, read_manifest
from ..zoo import resolve_name
from ..session import OnnxSession, ProviderSpec

CLIP_IMAGE_ONNX = "clip_image.onnx"
CLIP_TEXT_ONNX = "clip_text.onnx"
#: the text-embedding cache of a CLIP object keeps at most this many texts (least recently used dropped)
TEXT_CACHE_SIZE = 4096
#: texts up to this many characters are cache keys themselves; longer ones are keyed by their SHA-256
TEXT_KEY_CHARS = 1024


def text_key(text: str) -> str | tuple[str, str]:
    """The text cache's key of ``text``: the text itself when short, else ``("sha256", hex digest)``."""
    if len(text) <= TEXT_KEY_CHARS:
        return text
    return ("sha256", hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())


def _int_field(m: dict, key: str, default: int | None) -> int:
    """A positive int field of a CLIP manifest (at most 1 << 16); KeyError when missing without a default."""
    v = m[key] if default is None else m.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 16:
        raise ValueError(f"{key} must be an int from 1 to 65536, got {v!r}")
    return v


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of (N, D) scaled to unit Euclidean length (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1).astype(np.float32)


class CLIP:
    """A CLIP bundle on ONNX Runtime.

    Args:
        bundle: directory with manifest.json, the two towers and the BPE vocabulary, or a model-zoo name
            ("clip-vit-b-32", "clip-vit-b-32-int8", "clip-demo") fetched with ``fastsam-onnx fetch NAME``.
        providers: as for :class:`~fastsam_onnx.session.OnnxSession` ("auto" when None, "cpu", "cuda", ...).
        strict: a requested provider that does not come up raises ProviderError instead of a warning.

    Attributes:
        embed_dim: D, the embedding size; image_resolution: R, the square input side in pixels;
        context_length: token ids per text (77); precision: "fp32", or "int8" for a bundle exported with
        ``--int8`` (int8 matrix products: faster on CPUs, embeddings within cosine 0.99 of fp32).
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        providers: str | Sequence[ProviderSpec] | None = None,
        strict: bool = False,
    ):
        if not isinstance(bundle, (str, os.PathLike)):
            raise BadArgumentError(f"a CLIP bundle is a path or a model-zoo name, got {type(bundle).__name__}")
        self.bundle = resolve_name(bundle, "CLIP bundle")  # a path, or a model-zoo name ("clip-vit-b-32")
        if not self.bundle.is_dir():
            raise BadModelError(f"CLIP bundle not found: {self.bundle} (create one with: fastsam-onnx export clip)")
        m = read_manifest(self.bundle)
        if m["kind"] != "clip":
            raise BadModelError(f"bundle {self.bundle} holds a {m['kind']!r} model, not a CLIP model")
        self.manifest = m
        self.precision = str(m.get("precision", "fp32"))
        try:
            self.embed_dim, self.context_length, self.image_resolution = (
                _int_field(m, key, default) for key, default in (("embed_dim", None), ("context_length", 77), ("image_resolution", 224))
            )
            pre = m.get("preprocess", {})
            self.mean = tuple(float(v) for v in pre["mean"])
            self.std = tuple(float(v) for v in pre["std"])
        except (KeyError, TypeError, ValueError) as e:
            raise BadModelError(f"{self.bundle / 'manifest.json'} is not a valid CLIP manifest ({e!r})") from None
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise BadModelError(f"{self.bundle}: the manifest's mean/std must be 3 values each (std > 0)")
        if pre.get("resize", "bicubic") != "bicubic" or pre.get("crop", "center") != "center":
            raise BadModelError(f"{self.bundle}: unsupported preprocessing {pre.get('resize')}/{pre.get('crop')}")

        image_file = bundle_file(self.bundle, m, "image_model_file", CLIP_IMAGE_ONNX)
        text_file = bundle_file(self.bundle, m, "text_model_file", CLIP_TEXT_ONNX)
        bpe = bundle_file(self.bundle, m, "bpe_file", BPE_NAME)
        self.image_session = OnnxSession(image_file, providers, strict)
        self.text_session = OnnxSession(text_file, providers, strict)
        r = self.image_resolution
        if self.image_session.input_shape[1:] != (3, r, r):
            raise BadModelError(
                f"{self.image_session.path}: input shape {self.image_session.input_shape}, expected (B, 3, {r}, {r})"
            )
        if self.text_session.input_shape[1:] != (self.context_length,) or self.text_session.input_dtype != np.int64:
            raise BadModelError(
                f"{self.text_session.path}: input {self.text_session.input_shape} {self.text_session.input_dtype}, "
                f"expected (B, {self.context_length}) int64"
            )
        if not bpe.is_file():
            raise BadModelError(f"CLIP bundle {self.bundle} lacks its BPE vocabulary {bpe.name}")
        self.tokenizer = ClipTokenizer(bpe, self.context_length)
        # text → embedding, least recently used first; see encode_texts for the bound
        self._text_cache: OrderedDict[str | tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()  # threads share one CLIP: the cache is read and filled under it

    def _check_output(self, out: np.ndarray, n: int, what: str) -> np.ndarray:
        if out.shape != (n, self.embed_dim):
            raise BadModelError(f"the {what} encoder returned shape {out.shape}, expected ({n}, {self.embed_dim})")
        return out

    def encode_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Images (PIL, or (H, W, 3) RGB uint8 arrays) → (N, D) float32, L2-normalised.

        Images are preprocessed and run ``batch_size`` at a time (one encoder call per batch).
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise BadArgumentError("encode_images takes a list of images; wrap a single image in a list")
        if int(batch_size) < 1:
            raise BadArgumentError(f"batch_size must be >= 1, got {batch_size}")
        images = list(images)
        feats = np.empty((len(images), self.embed_dim), dtype=np.float32)
        for start in range(0, len(images), int(batch_size)):
            chunk = images[start : start + int(batch_size)]
            x = preprocess_batch(chunk, self.image_resolution, self.mean, self.std)
            feats[start : start + len(chunk)] = self._check_output(self.image_session.run(x)[0], len(chunk), "image")
        return l2_normalize(feats)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Texts → (M, D) float32, L2-normalised.

        Embeddings are cached per CLIP object in an LRU of at most :data:`TEXT_CACHE_SIZE` (4096) texts; a
        text longer than :data:`TEXT_KEY_CHARS` (1024) characters is keyed by its SHA-256, so the cache
        holds at most 4096 × (4 KiB key + 4·D bytes), about 25 MB for D = 512. Thread-safe.
        """
        if isinstance(texts, str):
            raise BadArgumentError("encode_texts takes a list of strings; wrap a single text in a list")
        texts = list(texts)
        if not texts:
            raise BadArgumentError("encode_texts needs at least one text")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BadArgumentError(f"texts must be strings, got {type(t).__name__} at index {i}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise BadArgumentError(f"batch_size must be an int >= 1, got {batch_size!r}")
        keys = [text_key(t) for t in texts]
        found: dict = {}
        with self._cache_lock:
            for k in keys:
                if k in self._text_cache and k not in found:
                    self._text_cache.move_to_end(k)
                    found[k] = self._text_cache[k]
        todo = list(dict.fromkeys((k, t) for k, t in zip(keys, texts) if k not in found))
        new: dict = {}
        for start in range(0, len(todo), int(batch_size)):
            chunk = todo[start : start + int(batch_size)]
            out = self._check_output(self.text_session.run(self.tokenizer([t for _, t in chunk]))[0], len(chunk), "text")
            new.update(zip((k for k, _ in chunk), l2_normalize(out)))
        with self._cache_lock:
            for k, v in new.items():
                self._text_cache[k] = v
                self._text_cache.move_to_end(k)
            while len(self._text_cache) > TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        found.update(new)
        return np.stack([found[k] for k in keys])

    def similarity(self, images: Sequence[Any], texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Cosine similarities, (M texts, N images) float32: ``encode_texts(texts) @ encode_images(images).T``."""
        text_feats = self.encode_texts(texts)
        return text_feats @ self.encode_images(images, batch_size).T
