"""Execution providers: which onnxruntime providers to ask for, with which options, and whether they came up.

:func:`resolve_providers` is a pure function of what was requested, what this onnxruntime build offers and
the environment; :func:`check_providers` compares it with what a created session really kept. The session
wrapper (:class:`fastsam_onnx.session.OnnxSession`) calls both, so FastSAM and the CLIP towers behave alike.

Requests (``requested``):

==================  ========================================================================================
``"auto"``/None     TensorRT, then CUDA, then CPU — whichever of them this build offers (never an error)
``"cpu"``           CPU only
``"cuda"``          CUDA, with a CPU fallback entry
``"tensorrt"``      TensorRT, then CUDA, then CPU (``"trt"`` is the same)
a list / "a,b"      onnxruntime provider names (``"CUDAExecutionProvider"``) or the short names above, or
                    ``(name, options)`` pairs; in that order, nothing added. Options given in a pair are
                    laid over this module's defaults for that provider.
==================  ========================================================================================

A requested provider that the build does not offer (e.g. CUDA with the CPU ``onnxruntime`` package) is a
:class:`~fastsam_onnx.errors.ProviderError` with ``strict=True``; otherwise a warning, and it is dropped.

Environment variables (an explicit argument always wins over its variable; a variable over the default):

===============================  ===================================================================  ======================
variable                         meaning                                                              default
===============================  ===================================================================  ======================
``FASTSAM_ONNX_PROVIDERS``       the request when ``providers`` is None: auto|cpu|cuda|tensorrt or a  ``auto``
                                 comma-separated list of provider names
``FASTSAM_ONNX_DEVICE_ID``       GPU index for CUDA and TensorRT                                      ``0``
``FASTSAM_ONNX_TRT_FP16``        TensorRT builds fp16 engines (``1``/``0``)                           ``1``
``FASTSAM_ONNX_TRT_WORKSPACE``   TensorRT workspace size: bytes, or with a K/M/G suffix (``4G``)      ``4G``
``FASTSAM_ONNX_CUDNN_ALGO``      cuDNN convolution algorithm search: EXHAUSTIVE|HEURISTIC|DEFAULT    ``EXHAUSTIVE``
``FASTSAM_ONNX_THREADS``         CPU threads: ``N`` (intra-op) or ``N,M`` (intra-op, inter-op), each  onnxruntime's choice
                                 at most 4 × ``os.cpu_count()`` (:func:`max_threads`)
``FASTSAM_ONNX_CACHE``           cache directory; TensorRT engines and timing caches go under         ``~/.cache/fastsam-onnx``
                                 ``<cache>/tensorrt/<model>``
===============================  ===================================================================  ======================
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

from .errors import BadArgumentError, ProviderError
from .extras import GPU_INSTALL, GPU_SWITCH
from .gpulibs import (  # noqa: F401  # re-exported: doctor and the tests reach them here
    ORT_DISTRIBUTIONS, build_info, describe_library, missing_libraries, ort_package, ort_packages, provider_libraries,
)

log = logging.getLogger(__name__)

ProviderSpec = Union[str, tuple[str, dict]]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

#: short names accepted in requests and in comma lists
ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}
#: what each single-word request expands to, in priority order
EXPANSIONS = {"auto": (TENSORRT, CUDA, CPU), "cpu": (CPU,), "cuda": (CUDA, CPU), "tensorrt": (TENSORRT, CUDA, CPU)}
EXPANSIONS["trt"] = EXPANSIONS["tensorrt"]

#: every FASTSAM_ONNX_* setting (``doctor`` prints those set): this module's, then the default models
#: (:mod:`fastsam_onnx.zoo`) and the downloads (:mod:`fastsam_onnx.download`)
ENV_VARS = (
    "FASTSAM_ONNX_PROVIDERS", "FASTSAM_ONNX_DEVICE_ID", "FASTSAM_ONNX_TRT_FP16", "FASTSAM_ONNX_TRT_WORKSPACE",
    "FASTSAM_ONNX_CUDNN_ALGO", "FASTSAM_ONNX_THREADS", "FASTSAM_ONNX_CACHE",
    "FASTSAM_ONNX_MODEL", "FASTSAM_ONNX_CLIP", "FASTSAM_ONNX_OFFLINE", "FASTSAM_ONNX_DOWNLOAD_DEADLINE",
)
DEFAULT_TRT_WORKSPACE = 4 << 30  # bytes
MAX_TRT_WORKSPACE = 1 << 40  # bytes
CUDNN_ALGOS = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
GPU_PROVIDERS = (CUDA, TENSORRT)

def provider_name(spec: ProviderSpec) -> str:
    """The provider name of a list entry (a name or a ``(name, options)`` pair)."""
    return spec[0] if isinstance(spec, tuple) else spec


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$FASTSAM_ONNX_CACHE``, else ``~/.cache/fastsam-onnx``."""
    env = os.environ if env is None else env
    value = env.get("FASTSAM_ONNX_CACHE")
    return Path(value).expanduser() if value else Path("~/.cache/fastsam-onnx").expanduser()


def _parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise ProviderError(f"FASTSAM_ONNX_TRT_WORKSPACE must be a size such as 4294967296 or 4G, got {text!r}") from None
    if not 0 < value <= MAX_TRT_WORKSPACE:  # also refuses nan and inf
        raise ProviderError(f"FASTSAM_ONNX_TRT_WORKSPACE must be positive and at most 1T (1 TiB), got {text!r}")
    return int(value)


def _parse_bool(name: str, text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ProviderError(f"{name} must be 1 or 0, got {text!r}")


def _parse_int(name: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ProviderError(f"{name} must be an integer, got {text!r}") from None
    if value < 0:
        raise ProviderError(f"{name} must be >= 0, got {text!r}")
    return value


def _normalize(entry) -> ProviderSpec:
    """One list entry → an onnxruntime provider name or a (name, options) pair; ProviderError when malformed."""
    if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], Mapping):
        return (_normalize(entry[0]), dict(entry[1]))  # type: ignore[return-value]
    if not isinstance(entry, str) or not entry.strip():
        raise ProviderError(f"a provider is a name or a (name, options) pair, got {entry!r}")
    name = entry.strip()
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    if not name.endswith("ExecutionProvider"):
        raise ProviderError(
            f"unknown provider {name!r}: use auto, cpu, cuda, tensorrt or onnxruntime provider names "
            "such as CUDAExecutionProvider"
        )
    return name


def parse_request(requested, env: Mapping[str, str] | None = None) -> tuple[str | None, list[ProviderSpec]]:
    """A request → (the single-word mode or None for an explicit list, the entries in priority order)."""
    env = os.environ if env is None else env
    if requested is None:
        requested = env.get("FASTSAM_ONNX_PROVIDERS", "").strip() or "auto"
        try:
            return parse_request(requested, {})
        except ProviderError as e:
            raise ProviderError(f"FASTSAM_ONNX_PROVIDERS: {e}") from None
    if isinstance(requested, str):
        words = [w.strip() for w in requested.split(",") if w.strip()]
        if len(words) == 1 and words[0].lower() in EXPANSIONS:
            mode = words[0].lower()
            return mode, list(EXPANSIONS[mode])
        if not words:
            raise ProviderError(f"empty provider request {requested!r}")
        requested = words
    if isinstance(requested, tuple) and len(requested) == 2 and isinstance(requested[1], Mapping):
        requested = [requested]  # a single (name, options) pair
    if not isinstance(requested, (list, tuple)):
        raise ProviderError(f"providers must be a string or a list of providers, got {requested!r}")
    entries = [_normalize(e) for e in requested]
    if not entries:
        raise ProviderError("empty provider list")
    return None, entries


def unavailable_reason(name: str, available: Sequence[str], package: str | None = None) -> str:
    """Why ``name`` is not usable with this build, as one sentence fragment (with the command that fixes it)."""
    package = ort_package() if package is None else package
    if name in GPU_PROVIDERS and package != "onnxruntime-gpu":
        how = GPU_SWITCH if package == "onnxruntime" else GPU_INSTALL
        return (
            f"{name} is not offered by this onnxruntime build ({package} package installed; the NVIDIA GPU build is "
            f"onnxruntime-gpu: {how})"
        )
    if name in GPU_PROVIDERS:
        return (
            f"{name} is not offered by the imported onnxruntime although onnxruntime-gpu is installed (the CPU package "
            "onnxruntime is installed too and overwrote its files: pip uninstall -y onnxruntime onnxruntime-gpu && "
            f"{GPU_INSTALL})"
        )
    return f"{name} is not offered by this onnxruntime build ({package}; it offers {', '.join(available) or 'nothing'})"


def default_options(
    name: str,
    *,
    device_id: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    trt_fp16: bool = True,
    trt_workspace: int = DEFAULT_TRT_WORKSPACE,
    cudnn_conv_algo_search: str = "EXHAUSTIVE",
) -> dict:
    """This package's provider options for ``name`` (empty for providers it has no opinion on)."""
    if name == TENSORRT:
        cache = str(Path(cache_dir) if cache_dir is not None else default_cache_dir() / "tensorrt")
        return {
            "device_id": device_id,
            "trt_fp16_enable": trt_fp16,
            "trt_max_workspace_size": trt_workspace,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache,
        }
    if name == CUDA:
        return {"device_id": device_id, "cudnn_conv_algo_search": cudnn_conv_algo_search}
    return {}


def resolve_providers(
    requested=None,
    available: Sequence[str] = (CPU,),
    *,
    device_id: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    trt_fp16: bool | None = None,
    trt_workspace: int | None = None,
    cudnn_conv_algo_search: str | None = None,
    strict: bool = False,
    env: Mapping[str, str] | None = None,
    package: str | None = None,
) -> list[ProviderSpec]:
    """The provider list to give ``onnxruntime.InferenceSession``, highest priority first.

    requested: see the module docstring (None = ``$FASTSAM_ONNX_PROVIDERS`` or "auto"); available: what
    ``onnxruntime.get_available_providers()`` returns; device_id, cache_dir (TensorRT engine and timing
    caches), trt_fp16, trt_workspace (bytes), cudnn_conv_algo_search: the options, None = environment or
    default; strict: a requested provider missing from ``available`` raises :class:`ProviderError` instead of a
    warning; env: the environment to read (default ``os.environ``); package: the onnxruntime distribution
    name for messages (default: the installed one). CPU entries carry no options (threads are
    :func:`session_options`' business). Pure apart from reading ``env`` and package metadata.
    """
    env = os.environ if env is None else env
    mode, entries = parse_request(requested, env)
    if device_id is None:
        device_id = _parse_int("FASTSAM_ONNX_DEVICE_ID", env["FASTSAM_ONNX_DEVICE_ID"]) if env.get("FASTSAM_ONNX_DEVICE_ID") else 0
    if trt_fp16 is None:
        trt_fp16 = _parse_bool("FASTSAM_ONNX_TRT_FP16", env["FASTSAM_ONNX_TRT_FP16"]) if env.get("FASTSAM_ONNX_TRT_FP16") else True
    if trt_workspace is None:
        trt_workspace = _parse_size(env["FASTSAM_ONNX_TRT_WORKSPACE"]) if env.get("FASTSAM_ONNX_TRT_WORKSPACE") else DEFAULT_TRT_WORKSPACE
    if cudnn_conv_algo_search is None:
        cudnn_conv_algo_search = env.get("FASTSAM_ONNX_CUDNN_ALGO", "").strip() or "EXHAUSTIVE"
    cudnn_conv_algo_search = cudnn_conv_algo_search.upper()
    if cudnn_conv_algo_search not in CUDNN_ALGOS:
        raise ProviderError(
            f"cudnn_conv_algo_search (FASTSAM_ONNX_CUDNN_ALGO) must be one of {', '.join(CUDNN_ALGOS)}, "
            f"got {cudnn_conv_algo_search!r}"
        )
    if cache_dir is None:
        cache_dir = default_cache_dir(env) / "tensorrt"

    out: list[ProviderSpec] = []
    missing: list[str] = []
    for entry in entries:
        name = provider_name(entry)
        if name in [provider_name(e) for e in out]:
            continue
        if name not in available:
            # "auto" only lists candidates; the CPU fallback entry of "cuda"/"tensorrt" is never an error
            if mode != "auto" and not (mode is not None and name == CPU):
                missing.append(name)
            continue
        options = default_options(
            name,
            device_id=device_id,
            cache_dir=cache_dir,
            trt_fp16=trt_fp16,
            trt_workspace=trt_workspace,
            cudnn_conv_algo_search=cudnn_conv_algo_search,
        )
        if isinstance(entry, tuple):
            options.update(entry[1])
        out.append((name, options) if options else name)
    if missing:
        reasons = "; ".join(unavailable_reason(m, available, package) for m in missing)
        if strict:
            raise ProviderError(reasons)
    if not out:
        if CPU not in available:
            raise ProviderError(f"none of the requested providers is available (this build offers {', '.join(available)})")
        out.append(CPU)
    if missing:
        warn_fallback(f"{reasons}; using {', '.join(provider_name(e) for e in out)}")
    return out


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` called from here that points at the first frame outside
    this package (the caller's line), so the warning names the user's code and is shown once per line."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def warn_fallback(message: str) -> None:
    """Issue ``message`` as one RuntimeWarning (a provider was dropped or did not come up).

    The warning is the only report (it used to be logged as well, so a plain script printed it twice);
    it is logged at DEBUG level, and ``logging.captureWarnings(True)`` routes it into logging.
    """
    log.debug(message)
    warnings.warn(message, RuntimeWarning, stacklevel=user_stacklevel())


def missing_provider_libraries(name: str) -> list[str]:
    """The shared libraries that the installed build needs for provider ``name`` (read from the build:
    :func:`~fastsam_onnx.gpulibs.provider_libraries`) and that cannot be loaded here, described with their versions
    ("CUDA 13 runtime (libcudart.so.13)")."""
    cuda = build_info().get("cuda_version")
    return [describe_library(s, cuda) for s in missing_libraries(provider_libraries().get(name, ()))]


def check_providers(
    requested: Sequence[ProviderSpec], kept: Sequence[str], *, strict: bool = False, what: str = "the model"
) -> list[str]:
    """Compare the providers a session kept with the ones requested; returns the missing names.

    A requested provider that did not come up (typically CUDA or TensorRT whose shared libraries are
    missing: onnxruntime then logs an error and silently falls back) raises :class:`ProviderError` with
    ``strict=True``, else warns. The message names the libraries that cannot be loaded.
    """
    missing = [provider_name(p) for p in requested if provider_name(p) not in kept]
    if not missing:
        return []
    libs = [lib for name in missing for lib in missing_provider_libraries(name)]
    hint = f"; cannot load {', '.join(dict.fromkeys(libs))}" if libs else ""
    message = (
        f"onnxruntime did not enable {', '.join(missing)} for {what} (it kept {', '.join(kept) or 'nothing'}){hint}; "
        "see onnxruntime's log above and run `fastsam-onnx doctor`"
    )
    if strict:
        raise ProviderError(message)
    warn_fallback(message)
    return missing


def max_threads() -> int:
    """The most CPU threads a session may be given: 4 × ``os.cpu_count()`` (at least 4). More threads than
    cores only slow onnxruntime down, and a huge count makes it spawn threads for minutes, growing memory."""
    return 4 * max(os.cpu_count() or 1, 1)


def thread_counts(env: Mapping[str, str] | None = None) -> tuple[int | None, int | None]:
    """``$FASTSAM_ONNX_THREADS`` ("N" or "N,M") → (intra-op, inter-op) threads; None = onnxruntime's choice.

    Each count is 0 (onnxruntime's choice) to :func:`max_threads`; anything else raises :class:`ProviderError`.
    """
    env = os.environ if env is None else env
    text = env.get("FASTSAM_ONNX_THREADS", "").strip()
    if not text:
        return None, None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2:
        raise ProviderError(f"FASTSAM_ONNX_THREADS is N or N,M, got {text!r}")
    counts = [_parse_int("FASTSAM_ONNX_THREADS", p) for p in parts]
    if max(counts) > max_threads():
        raise ProviderError(
            f"FASTSAM_ONNX_THREADS={text!r}: at most {max_threads()} threads (4 × the {os.cpu_count()} CPUs) per count"
        )
    return counts[0] or None, (counts[1] or None) if len(counts) > 1 else None


def _check_threads(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= max_threads():
        raise BadArgumentError(f"{name} must be an int from 0 to {max_threads()} (4 × the CPU count), got {value!r}")
    return value


def session_options(
    intra_op_threads: int | None = None, inter_op_threads: int | None = None, env: Mapping[str, str] | None = None
):
    """``onnxruntime.SessionOptions`` with the CPU thread counts (arguments, else ``$FASTSAM_ONNX_THREADS``).

    Counts above :func:`max_threads` raise :class:`BadArgumentError` (arguments) or :class:`ProviderError`
    (the variable), before any session is created.
    """
    import onnxruntime as ort

    env_intra, env_inter = thread_counts(env)
    intra_op_threads = _check_threads("intra_op_threads", intra_op_threads)
    inter_op_threads = _check_threads("inter_op_threads", inter_op_threads)
    intra = intra_op_threads if intra_op_threads is not None else env_intra
    inter = inter_op_threads if inter_op_threads is not None else env_inter
    so = ort.SessionOptions()
    if intra:
        so.intra_op_num_threads = int(intra)
    if inter:
        so.inter_op_num_threads = int(inter)
    return so
