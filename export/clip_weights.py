"""CLIP weights for the export: a clip-module model name (downloaded, or read from its cache when offline) or a
local checkpoint, loaded on the CPU in fp32 with ``clip.load(..., jit=False)``."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import warnings
from pathlib import Path
from typing import Iterator

from fastsam_onnx.manifest import sha256_file

from . import ExportError

__all__ = ["DOWNLOAD_TIMEOUT_S", "load_clip"]

#: Socket timeout (seconds) while the clip module downloads named weights, so a dead network fails.
DOWNLOAD_TIMEOUT_S = 30.0


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Give new sockets a default timeout (unless one is set already) for the duration of the block."""
    old = socket.getdefaulttimeout()
    if old is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _import_clip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources deprecation inside clip
        try:
            import clip
        except ImportError as e:
            raise ExportError(f"the CLIP export needs the clip module: pip install clip-anytorch ({e})") from None
    return clip


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def load_clip(weights: str | os.PathLike[str], download_root: str | os.PathLike[str] | None = None):
    """Load CLIP on the CPU in fp32 with ``clip.load(..., jit=False)``.

    weights: a model name of the clip module (``clip.available_models()``, downloaded into
    ``download_root``, default ``~/.cache/clip``) or a checkpoint file (state dict or JIT archive).
    Returns (model, the clip module's preprocess transform, the weights file).
    """
    clip = _import_clip()
    name = str(weights)
    if name in clip.available_models():
        url = clip.clip._MODELS[name]
        root = Path(download_root) if download_root is not None else Path("~/.cache/clip").expanduser()
        from fastsam_onnx.download import offline

        if offline():
            return _load_offline(clip, name, url, root)
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                model, preprocess = clip.load(name, device="cpu", jit=False, download_root=str(root))
        except Exception as e:
            if isinstance(e, (OSError, http.client.HTTPException)) or "SHA256" in str(e):
                raise ExportError(
                    f"the CLIP weights {name!r} could not be downloaded from {url} ({_first_line(e)}); "
                    f"without network access, fetch that file elsewhere and pass the local checkpoint path instead"
                ) from None
            raise ExportError(f"cannot load the CLIP weights {name!r}: {_first_line(e)}") from None
        return model, preprocess, root / os.path.basename(url)
    path = Path(name)
    if not path.is_file():
        raise ExportError(
            f"CLIP weights not found: {name!r} is neither a local checkpoint file nor one of {clip.available_models()}"
        )
    if path.stat().st_size == 0:
        raise ExportError(f"CLIP checkpoint is empty: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, preprocess = clip.load(str(path), device="cpu", jit=False)
    except Exception as e:  # torch.load / unpickling / build_model (missing keys) errors of every kind
        raise ExportError(f"cannot load CLIP checkpoint {path}: {_first_line(e)}") from None
    return model, preprocess, path


def _load_offline(clip, name: str, url: str, root: Path):
    """``FASTSAM_ONNX_OFFLINE=1``: load the named weights only from the clip module's cache file
    ``root/<file>`` (checked against the SHA-256 in its URL); ExportError naming the file to copy when absent."""
    target = root / os.path.basename(url)
    hint = f"copy {target.name} (from {url}) to {target}, or pass a local checkpoint with --weights PATH"
    if not target.is_file():
        raise ExportError(f"FASTSAM_ONNX_OFFLINE=1: not downloading the CLIP weights {name!r}; {hint}")
    expected = url.split("/")[-2]
    if re.fullmatch(r"[0-9a-f]{64}", expected) and sha256_file(target) != expected:
        raise ExportError(f"FASTSAM_ONNX_OFFLINE=1: {target} does not match the SHA-256 in its URL; {hint}")
    try:
        model, preprocess = clip.load(str(target), device="cpu", jit=False)
    except Exception as e:
        raise ExportError(f"cannot load the CLIP weights {target}: {_first_line(e)}") from None
    return model, preprocess, target
