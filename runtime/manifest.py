"""The bundle manifest (``manifest.json`` beside ``fastsam.onnx``): what the export wrote, read back and
validated as data (types and ranges of the fields the runtime uses; file names that stay inside the bundle)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from .errors import BadModelError
from .providers import user_stacklevel

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FASTSAM_ONNX = "fastsam.onnx"
#: a manifest larger than this (bytes) or nested deeper than MAX_MANIFEST_DEPTH is refused
MAX_MANIFEST_BYTES = 1 << 20
MAX_MANIFEST_DEPTH = 32
#: the largest side a manifest's ``imgsz`` may state (the pixel bound is ``model.MAX_INPUT_PIXELS``)
MAX_IMGSZ_SIDE = 65536
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class UnverifiedModelWarning(UserWarning):
    """A bundle's manifest records no SHA-256 for its model file: it is loaded without an integrity check."""


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping once it exceeds ``limit``."""
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_manifest(data: Any, where: str | os.PathLike[str] = MANIFEST_NAME) -> dict[str, Any]:
    """Validate a manifest's fields as data; returns ``data``. Each bad field raises :class:`BadModelError`
    naming it: ``format_version`` (int 1..FORMAT_VERSION), ``kind`` (str), ``stride`` (a power of two,
    1..256), ``imgsz`` (a positive int or [h, w], each at most :data:`MAX_IMGSZ_SIDE`), ``sha256`` (a dict of
    64-hex-digit strings). File-name fields are checked where they are used (:func:`bundle_file`)."""
    if not isinstance(data, dict) or "format_version" not in data or "kind" not in data:
        raise BadModelError(f"{where} is not a fastsam-onnx manifest (a JSON object with format_version and kind)")
    version = data["format_version"]
    if not _is_int(version) or version < 1:
        raise BadModelError(f"{where}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise BadModelError(f"{where} has format version {version}; this fastsam-onnx reads up to {FORMAT_VERSION}: upgrade it")
    if not isinstance(data["kind"], str):
        raise BadModelError(f"{where}: kind must be a string, got {data['kind']!r}")
    if "stride" in data:
        s = data["stride"]
        if not _is_int(s) or not 1 <= s <= 256 or s & (s - 1):
            raise BadModelError(f"{where}: stride must be a power of two from 1 to 256, got {s!r}")
    if "imgsz" in data:
        v = data["imgsz"]
        hw = [v, v] if _is_int(v) else v
        if not isinstance(hw, list) or len(hw) != 2 or not all(_is_int(x) and 1 <= x <= MAX_IMGSZ_SIDE for x in hw):
            raise BadModelError(f"{where}: imgsz must be a positive int or [h, w] of ints <= {MAX_IMGSZ_SIDE}, got {v!r}")
    if "sha256" in data:
        digests = data["sha256"]
        if not isinstance(digests, dict):
            raise BadModelError(f"{where}: sha256 must be an object of file digests, got {type(digests).__name__}")
        for key, d in digests.items():
            if d is not None and (not isinstance(d, str) or not _HEX64.fullmatch(d)):
                raise BadModelError(f"{where}: sha256[{key!r}] must be 64 hexadecimal digits, got {str(d)[:80]!r}")
    return data


def read_manifest(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate ``bundle/manifest.json`` (:func:`check_manifest`; at most
    :data:`MAX_MANIFEST_BYTES` bytes and :data:`MAX_MANIFEST_DEPTH` levels of nesting)."""
    path = Path(bundle) / MANIFEST_NAME
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BadModelError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes: not a fastsam-onnx manifest")
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BadModelError(f"no {MANIFEST_NAME} in bundle {bundle}") from None
    except RecursionError:
        raise BadModelError(f"{path} is nested too deeply: not a fastsam-onnx manifest") from None
    except (OSError, ValueError) as e:
        raise BadModelError(f"unreadable manifest {path}: {e}") from None
    if _depth(data, MAX_MANIFEST_DEPTH) > MAX_MANIFEST_DEPTH:
        raise BadModelError(f"{path} is nested more than {MAX_MANIFEST_DEPTH} levels deep: not a fastsam-onnx manifest")
    return check_manifest(data, path)


def bundle_file(bundle: Path, manifest: dict[str, Any], field: str, default: str) -> Path:
    """The file the manifest names under ``field`` (``default`` when absent), inside ``bundle``.

    A non-string, empty, absolute name or one that leaves the bundle (``..``, a symlink pointing out)
    raises :class:`BadModelError` naming the field.
    """
    name = manifest.get(field, default)
    if not isinstance(name, str) or not name or "\x00" in name:
        raise BadModelError(f"{bundle / MANIFEST_NAME}: {field} must be a file name, got {name!r}")
    rel = Path(name)
    parts = name.replace("\\", "/").split("/")
    if rel.is_absolute() or name.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", name):
        raise BadModelError(f"{bundle / MANIFEST_NAME}: {field} {name!r} must be a file inside the bundle")
    path = bundle / rel
    root = bundle.resolve()
    if not path.resolve().is_relative_to(root):
        raise BadModelError(f"{bundle / MANIFEST_NAME}: {field} {name!r} resolves outside the bundle {root}")
    return path


def verify_bundle_file(path: Path, manifest: dict[str, Any], key: str = "onnx") -> bool:
    """Compare ``path`` with the SHA-256 the manifest records under ``sha256[key]`` (case-insensitive); a
    mismatch raises :class:`BadModelError` (the bundle is corrupt or was edited). Returns False when no
    digest is recorded (nothing checked), True when it matched.

    Cost: one read of the file (about 17 ms for the 4 MB demo graph, about 0.5 s per 100 MB), once per load.
    """
    digests = manifest.get("sha256")
    expected = digests.get(key) if isinstance(digests, dict) else None
    if not expected or not path.is_file():
        return False
    actual = sha256_file(path)
    if actual.lower() != str(expected).lower():
        raise BadModelError(
            f"bundle {path.parent} is corrupt: {path.name} has SHA-256 {actual[:12]}…, its manifest says "
            f"{str(expected)[:12]}…; re-export the bundle (fastsam-onnx export ...) or download it again"
        )
    return True


def verify_or_warn(path: Path, manifest: dict[str, Any]) -> None:
    """:func:`verify_bundle_file`, with an :class:`UnverifiedModelWarning` when no digest is recorded."""
    if not verify_bundle_file(path, manifest):
        warnings.warn(
            f"{path}: the bundle's manifest records no SHA-256 for {path.name}; it is loaded unverified "
            "(re-export the bundle to record one, or pass verify=False to skip this check)",
            UnverifiedModelWarning,
            stacklevel=user_stacklevel(),
        )


def fastsam_bundle(p: Path, verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """A bundle directory or an .onnx file → (onnx path, manifest dict, empty when none).

    verify: check the .onnx file against the manifest's SHA-256 (see :func:`verify_bundle_file`); a
    bundle whose manifest records none loads with an :class:`UnverifiedModelWarning`.
    Model-zoo names are resolved before, by :func:`fastsam_onnx.zoo.resolve_fastsam`.
    """
    if p.is_dir():
        manifest = read_manifest(p)
        if manifest["kind"] != "fastsam":
            raise BadModelError(f"bundle {p} holds a {manifest['kind']!r} model, not a FastSAM model")
        onnx_path = bundle_file(p, manifest, "model_file", FASTSAM_ONNX)
        if verify:
            verify_or_warn(onnx_path, manifest)
        return onnx_path, manifest
    if p.is_file():
        manifest = read_manifest(p.parent) if (p.parent / MANIFEST_NAME).is_file() else {}
        if verify and manifest.get("model_file", FASTSAM_ONNX) == p.name:
            verify_or_warn(p, manifest)
        return p, manifest
    raise BadModelError(f"model not found: {p} (give a bundle directory or an .onnx file)")
