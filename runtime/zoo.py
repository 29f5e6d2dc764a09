"""Model-zoo names → bundle paths: a ``model`` argument that is no path but a registry name
(:mod:`fastsam_onnx.models.registry`, e.g. ``"fastsam-s"``) resolves to its bundle in the download cache
(:func:`fastsam_onnx.download.cache_dir`), or to the bundle shipped with the package (``"demo"``).
Reading and checking the bundle found is :mod:`fastsam_onnx.manifest`'s part."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .errors import BadModelError
from .manifest import MANIFEST_NAME, fastsam_bundle
from .providers import user_stacklevel

__all__ = ["resolve_name", "resolve_fastsam", "cached_bundle"]

_shadow_warned: set[str] = set()


def resolve_name(model: str | os.PathLike[str], what: str = "bundle") -> Path:
    """A path, or a model-zoo name (``"fastsam-s"``, see :mod:`fastsam_onnx.models.registry`) → its path.

    An existing path wins over a zoo name of the same spelling: a valid bundle directory is used with a
    warning (once per name and process) that it shadows the zoo model; anything else there raises
    :class:`BadModelError` naming both. ``"./fastsam-s"`` picks the local path without a warning.
    """
    p = Path(model)
    if not isinstance(model, str) or "/" in model or "\\" in model or model.endswith(".onnx"):
        return p
    if not p.exists():
        return cached_bundle(model) or p
    desc = _find_model(model)
    if desc is None:
        return p
    zoo = desc.local if desc.local is not None else _cache_path(desc.name)
    if not (p.is_dir() and (p / MANIFEST_NAME).is_file()):
        raise BadModelError(
            f"{model!r} names both a local path ({p.resolve()}, not a {what}: no {MANIFEST_NAME}) and the zoo "
            f"model {desc.name!r}; rename the local path or pass the zoo bundle's path ({zoo})"
        )
    if p.resolve() != Path(zoo).resolve() and model not in _shadow_warned:
        _shadow_warned.add(model)
        warnings.warn(
            f"./{model} is a local path; the zoo model of that name is used only when no such path exists — "
            f"pass './{model}' to pick the local one without this warning, or {zoo} for the zoo model",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return p


def resolve_fastsam(model: str | os.PathLike[str], verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """A bundle directory, an .onnx file or a model-zoo name → (onnx path, manifest dict, empty when none).

    A string that is no existing path but a registry name resolves to its bundle in the download cache
    (see :func:`resolve_name` for a local path that shadows a zoo name).
    verify: check the .onnx file against the manifest's SHA-256 (see
    :func:`fastsam_onnx.manifest.verify_bundle_file`); a bundle whose manifest records none loads with an
    :class:`~fastsam_onnx.manifest.UnverifiedModelWarning`.
    """
    return fastsam_bundle(resolve_name(model), verify)


def _find_model(name: str):
    try:
        from .models.registry import find_model
    except ImportError:  # the models package is optional in stripped installs
        return None
    return find_model(name)


def _cache_path(name: str) -> Path:
    from .download import cache_dir

    return cache_dir() / name


def cached_bundle(name: str) -> Path | None:
    """The cached bundle directory of registry model ``name``; None when ``name`` is not a registry name.

    Raises :class:`BadModelError` when ``name`` is known but not fetched yet.
    """
    desc = _find_model(name)
    if desc is None:
        return None
    if desc.local is not None:
        return desc.local
    bundle = _cache_path(desc.name)
    if not (bundle / MANIFEST_NAME).is_file():
        raise BadModelError(f"model {desc.name!r} is not in the cache ({bundle}): run `fastsam-onnx fetch {desc.name}` first")
    return bundle
