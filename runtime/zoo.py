"""Model-zoo names → bundle paths: a ``model`` argument that is no path but a registry name
(:mod:`fastsam_onnx.models.registry`, e.g. ``"fastsam-s"``) resolves to its bundle in the download cache
(:func:`fastsam_onnx.download.cache_dir`), or to the bundle shipped with the package (``"demo"``).
Reading and checking the bundle found is :mod:`fastsam_onnx.manifest`'s part.

A zoo model that is not in the cache yet is fetched and converted on first use (:func:`fetch_bundle`: the
checkpoint is downloaded and checked against the zoo's SHA-256, then converted by the torch-free converter
:mod:`fastsam_onnx.export.native_bundle`), with progress on stderr, as ``fastsam-onnx fetch NAME`` does;
``FASTSAM_ONNX_OFFLINE=1`` refuses instead, naming the command to run. Defaults when no model is given:
``$FASTSAM_ONNX_MODEL`` and ``$FASTSAM_ONNX_CLIP`` (a bundle path or a zoo name), else the shipped demos
(:func:`default_fastsam`, :func:`default_clip`), for the API, the CLI, the server and Ray alike."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

from .errors import BadModelError, DownloadError
from .manifest import MANIFEST_NAME, fastsam_bundle
from .providers import user_stacklevel

__all__ = [
    "resolve_name", "resolve_fastsam", "cached_bundle", "fetch_bundle", "cache_lock", "default_fastsam", "default_clip", "is_demo",
    "env_setting", "MODEL_ENV", "CLIP_ENV", "FetchError",
]

#: the default FastSAM model (a bundle path or a zoo name) when none is given; the demo bundle when unset
MODEL_ENV = "FASTSAM_ONNX_MODEL"
#: the default CLIP model for text prompts, likewise; the demo CLIP when unset
CLIP_ENV = "FASTSAM_ONNX_CLIP"


class FetchError(BadModelError, DownloadError):
    """A zoo model is not in the cache and could not be fetched on first use (offline, no network, a checkpoint
    that fails its check or its conversion); the message names the ``fastsam-onnx fetch`` command to run.
    Both a :class:`BadModelError` (no model) and a :class:`DownloadError` (no download)."""

_shadow_warned: set[str] = set()


def resolve_name(model: str | os.PathLike[str], what: str = "bundle", progress: bool = True) -> Path:
    """A path, or a model-zoo name (``"fastsam-s"``, see :mod:`fastsam_onnx.models.registry`) → its path.

    An existing path wins over a zoo name of the same spelling: a valid bundle directory is used with a
    warning (once per name and process) that it shadows the zoo model; anything else there raises
    :class:`BadModelError` naming both. ``"./fastsam-s"`` picks the local path without a warning. A zoo model
    not in the cache is fetched and converted first (:func:`fetch_bundle`; ``progress``: a download bar and the
    conversion's steps on stderr).
    """
    p = Path(model)
    if not isinstance(model, str) or "/" in model or "\\" in model or model.endswith(".onnx"):
        return p
    if not p.exists():
        return cached_bundle(model, progress=progress) or p
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


def cached_bundle(name: str, fetch: bool = True, progress: bool = True) -> Path | None:
    """The cached bundle directory of registry model ``name``; None when ``name`` is not a registry name.

    A model not fetched yet is fetched and converted now (:func:`fetch_bundle`) unless ``fetch`` is False:
    then, and when ``$FASTSAM_ONNX_OFFLINE`` is set, :class:`FetchError` names the command to run.
    """
    desc = _find_model(name)
    if desc is None:
        return None
    if desc.local is not None:
        return desc.local
    bundle = _cache_path(desc.name)
    if (bundle / MANIFEST_NAME).is_file():
        return bundle
    if not fetch:
        raise FetchError(f"model {desc.name!r} is not in the cache ({bundle}): run `fastsam-onnx fetch {desc.name}` first")
    return fetch_bundle(desc.name, progress=progress)


def env_setting(var: str) -> str | None:
    """``$var`` (:data:`MODEL_ENV`, :data:`CLIP_ENV`) stripped; None when unset or blank."""
    value = os.environ.get(var, "").strip()
    return value or None


def default_fastsam() -> str | Path:
    """The FastSAM model used when none is given: ``$FASTSAM_ONNX_MODEL`` (a bundle path or a zoo name such as
    ``fastsam-s``), else the demo bundle shipped with the package."""
    from .models import demo_bundle

    return env_setting(MODEL_ENV) or demo_bundle()


def default_clip() -> str | Path:
    """The CLIP model used when none is given: ``$FASTSAM_ONNX_CLIP``, else the demo CLIP shipped with the package."""
    from .models import demo_clip_bundle

    return env_setting(CLIP_ENV) or demo_clip_bundle()


def is_demo(onnx_path: str | os.PathLike[str]) -> bool:
    """True when ``onnx_path`` is the graph of the demo bundle shipped with the package (a toy of synthetic shapes)."""
    from .models import demo_bundle

    try:
        return Path(onnx_path).resolve() == (demo_bundle() / "fastsam.onnx").resolve()
    except OSError:
        return False


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """An exclusive lock on ``<cache>/.<name>.lock`` (POSIX ``flock``): processes that fetch the same model at the
    same time (server workers, Ray actors on one machine) take turns; where flock is missing, no lock."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    from .download import _prepare_dir, cache_dir

    _prepare_dir(cache_dir())
    with open(cache_dir() / f".{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fetch_bundle(name: str, *, progress: bool = True, verify: bool = True) -> Path:
    """Fetch zoo model ``name`` into the cache on first use: download its checkpoint (checked against the zoo's
    SHA-256) and convert it with the torch-free converter, with the zoo's recipe; returns the bundle directory
    (the cached one, untouched, when it is there already). progress: a download bar and the conversion's steps
    on stderr. Raises :class:`FetchError` (offline, download or conversion failed) naming the command to run.
    """
    from .download import cache_dir, fetch_checkpoint, offline

    desc = _find_model(name)
    if desc is None or desc.local is not None:
        raise BadModelError(f"{name!r} is not a model of the zoo that can be fetched")
    bundle = _cache_path(desc.name)
    command = f"`fastsam-onnx fetch {desc.name}`"
    if offline() and not (cache_dir() / "checkpoints" / desc.source.filename).is_file():  # a cached one converts
        raise FetchError(
            f"model {desc.name!r} is not in the cache ({bundle}) and FASTSAM_ONNX_OFFLINE is set: run {command} "
            "where the network is reachable (or unset FASTSAM_ONNX_OFFLINE)"
        )
    with cache_lock(desc.name):
        if (bundle / MANIFEST_NAME).is_file():  # fetched by another process while this one waited
            return bundle
        if progress:
            size = f" ({desc.source.approx_mb:g} MB)" if desc.source.approx_mb else ""
            print(f"{desc.name} is not in the cache: downloading {desc.source.filename}{size} and converting it to "
                  f"{bundle} (once; {command} does the same ahead of time)", file=sys.stderr, flush=True)
        try:
            checkpoint = fetch_checkpoint(desc.name, verify=verify, progress=progress)
        except DownloadError as e:
            raise FetchError(f"{e}; or run {command} later") from None
        from .export.native_bundle import ExportError, convert_recipe

        try:
            convert_recipe(desc.kind, checkpoint, bundle, desc.recipe, progress=progress)
        except ExportError as e:
            raise FetchError(f"{desc.name}: the conversion of {checkpoint} failed: {e}") from None
    return bundle
