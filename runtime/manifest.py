"""The bundle manifest (``manifest.json`` beside ``fastsam.onnx``): what the export wrote, read back."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import BadModelError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FASTSAM_ONNX = "fastsam.onnx"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check ``bundle/manifest.json``: a dict with at least ``format_version`` and ``kind``."""
    path = Path(bundle) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadModelError(f"no {MANIFEST_NAME} in bundle {bundle}") from None
    except (OSError, ValueError) as e:
        raise BadModelError(f"unreadable manifest {path}: {e}") from None
    if not isinstance(data, dict) or "format_version" not in data or "kind" not in data:
        raise BadModelError(f"{path} is not a fastsam-onnx manifest")
    if int(data["format_version"]) > FORMAT_VERSION:
        raise BadModelError(
            f"{path} has format version {data['format_version']}; this fastsam-onnx reads up to {FORMAT_VERSION}: upgrade it"
        )
    return data


def resolve_fastsam(model: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """A bundle directory or an .onnx file → (onnx path, manifest dict, empty when there is none)."""
    p = Path(model)
    if p.is_dir():
        manifest = read_manifest(p)
        if manifest["kind"] != "fastsam":
            raise BadModelError(f"bundle {p} holds a {manifest['kind']!r} model, not a FastSAM model")
        return p / manifest.get("model_file", FASTSAM_ONNX), manifest
    if p.is_file():
        return p, read_manifest(p.parent) if (p.parent / MANIFEST_NAME).is_file() else {}
    raise BadModelError(f"model not found: {p} (give a bundle directory or an .onnx file)")
