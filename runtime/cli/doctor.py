"""``fastsam-onnx doctor [--model DIR]``: what this machine's onnxruntime can run, and how fast.

Prints the onnxruntime version and build (CPU or GPU package, the CUDA version it was built for), the providers it
offers, the CUDA / cuDNN / TensorRT libraries the installed GPU build needs (read from the build, with their
versions) and whether each loads (the CPU build: how to get the GPU one; no onnxruntime: how to install one), the
FASTSAM_ONNX_* settings, and for each provider whether it really creates a session for the model (default: the
shipped demo bundle) with the median time of a few ``session.run`` calls on a zero input; a note when a static
graph would run on the CPU provider (slower than a dynamic graph on photos that are not square). Exits 0 whatever
it finds.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

#: providers doctor never times (not compute devices)
_SKIP = ("AzureExecutionProvider",)


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check onnxruntime, execution providers and GPU libraries", description=__doc__)
    p.add_argument("--model", help="bundle directory or .onnx file to try (default: the shipped demo model)")
    p.add_argument("--runs", type=int, default=5, help="timed session.run calls per provider (default 5)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..gpulibs import build_info, ort_dir
    from ..providers import CPU, CUDA, ENV_VARS, TENSORRT, default_cache_dir, ort_package, ort_packages, unavailable_reason
    from .usage import UsageError

    if args.runs < 1:
        raise UsageError(f"--runs must be >= 1, got {args.runs}")
    print(f"fastsam-onnx {__version__} (Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()})")
    package, info = ort_package(), build_info()
    ort = _import_onnxruntime(package)
    if ort is None:
        _settings(ENV_VARS, default_cache_dir)
        return 0
    available = ort.get_available_providers()
    cuda = f", built for CUDA {info['cuda_version']}" if info["cuda_version"] else ""
    build = "GPU build" if package == "onnxruntime-gpu" else "CPU build" if package == "onnxruntime" else "build"
    print(f"onnxruntime {ort.__version__} (package {package}: {build}{cuda}, device {ort.get_device()})")
    print(f"available providers: {', '.join(available)}")
    if len(ort_packages()) > 1:
        print(f"  warning: several onnxruntime packages installed ({', '.join(ort_packages())}); they overwrite each "
              "other's files: keep one (pip uninstall them all, then install the one you want)")
    _gpu_libraries(package, info, ort_dir())
    _settings(ENV_VARS, default_cache_dir)

    path, shape = _model(args.model)
    if path is None:
        return 0
    candidates = [TENSORRT, CUDA] + [p for p in available if p not in (TENSORRT, CUDA, CPU) and p not in _SKIP] + [CPU]
    working, graph_shape = [], None
    for name in candidates:
        if name not in available:
            print(f"  {name}: unavailable — {unavailable_reason(name, available, package)}")
            continue
        line, input_shape = _try(path, name, shape, args.runs)
        print(f"  {name}: {line}")
        if input_shape is not None:
            working.append(name)
            graph_shape = graph_shape or input_shape
    if graph_shape and None not in graph_shape[2:] and not any(p in working for p in (TENSORRT, CUDA)):
        print(f"  note: {static_cpu_note(graph_shape)}")
    return 0


def _import_onnxruntime(package: str):
    """The onnxruntime module, or None after saying why not and how to install it."""
    from ..errors import one_line
    from ..extras import CPU_INSTALL, GPU_INSTALL

    if package == "none":
        print(f"onnxruntime: not installed (the base install leaves the build to you): {CPU_INSTALL} for the CPU, "
              f"{GPU_INSTALL} for NVIDIA CUDA and TensorRT")
        return None
    try:
        import onnxruntime as ort

        return ort
    except Exception as e:  # noqa: BLE001 - a broken install is what doctor is for
        print(f"onnxruntime: package {package} is installed but does not import — {one_line(e)}")
        print("  reinstall one build: pip uninstall -y onnxruntime onnxruntime-gpu && "
              f"{GPU_INSTALL if package == 'onnxruntime-gpu' else CPU_INSTALL}")
        return None


def _gpu_libraries(package: str, info: dict, root) -> None:
    """What the installed build needs for its GPU providers (read from the build) and what loads here."""
    from ..extras import GPU_INSTALL, GPU_SWITCH
    from ..gpulibs import describe_library, driver_cuda_version, missing_libraries, preload_gpu_libraries, provider_libraries

    if package == "onnxruntime":
        print(f"GPU providers: none in this CPU build; for an NVIDIA GPU install the GPU build instead: {GPU_SWITCH}")
        return
    needs = provider_libraries(root, package)
    if not needs:
        print(f"GPU libraries: this build ({package}) ships no CUDA or TensorRT provider; for NVIDIA GPUs: {GPU_INSTALL}")
        return
    preload_gpu_libraries()  # as every session does: CUDA and cuDNN from NVIDIA's pip wheels count
    cuda = info.get("cuda_version")
    print(f"GPU libraries this build needs (read from {package} {info.get('version') or ''}, CUDA {cuda or '?'}):")
    missing: list[str] = []
    for provider, sonames in needs.items():
        absent = set(missing_libraries(sonames))
        missing += [s for s in sonames if s in absent and s not in missing]
        print(f"  {provider}: " + ", ".join(
            f"{describe_library(s, cuda)} {'not found' if s in absent else 'loads'}" for s in sonames))
    driver = driver_cuda_version()
    if driver:
        print(f"  NVIDIA driver supports CUDA up to {driver}")
        if cuda and int(driver.split('.')[0]) < int(cuda.split('.')[0]):
            print(f"  warning: this build needs CUDA {cuda}, newer than the driver's {driver}: update the NVIDIA "
                  "driver, or install an onnxruntime-gpu built for your CUDA (docs/gpu.md)")
    if missing:
        print(f"  missing: {', '.join(describe_library(s, cuda) for s in missing)}")
        print(_missing_hint(missing, cuda))


def _missing_hint(missing: list[str], cuda: str | None) -> str:
    """One line: how to get the missing libraries for this build's CUDA major version."""
    major = (cuda or "").split(".")[0] or "?"
    stems = {s.split(".so")[0] for s in missing}
    parts = []
    if "libcuda" in stems:
        parts.append("an NVIDIA GPU with its driver (libcuda.so.1)")
    if stems & {"libcudart", "libcublas", "libcublasLt", "libcurand", "libcufft", "libnvrtc", "libcudnn"}:
        cudnn = next((s.split(".so.")[-1] for s in missing if s.startswith("libcudnn")), "9")
        parts.append(f"CUDA {major}.x and cuDNN {cudnn} (system packages, or NVIDIA's wheels: "
                     f"pip install 'onnxruntime-gpu[cuda,cudnn]', which fastsam-onnx preloads)")
    if stems & {"libnvinfer", "libnvonnxparser", "libnvinfer_plugin"}:
        trt = next((s.split(".so.")[-1] for s in missing if s.startswith("libnvinfer")), "10")
        parts.append(f"TensorRT {trt} for CUDA {major} on the library path, for TensorrtExecutionProvider")
    return f"  hint: install {'; '.join(parts)}; docs/gpu.md has the commands"


def _settings(env_vars, default_cache_dir) -> None:
    settings = {k: os.environ[k] for k in env_vars if os.environ.get(k)}
    print(f"settings: {', '.join(f'{k}={v}' for k, v in settings.items()) if settings else 'no FASTSAM_ONNX_* variables set'}")
    print(f"cache: {default_cache_dir()} (TensorRT engines under tensorrt/)")


def static_cpu_note(shape: tuple) -> str:
    """The advice for a static graph that runs on the CPU provider (``shape``: its (N, 3, H, W) input)."""
    hw = "x".join(map(str, shape[2:]))
    return (
        f"static {hw} graph on CPU: every photo is letterboxed to the full square; re-export without --static "
        "(a dynamic graph, the default) for ~1.6-1.9x faster CPU runs on photos that are not square "
        "(FastSAM-s at 1024 on bus.jpg and zidane.jpg, benchmarks/results)"
    )


def _model(spec: str | None):
    """The model to try → (onnx path, input shape) after printing what it is; (None, None) when absent."""
    from ..zoo import resolve_fastsam
    from ..models import demo_bundle

    if spec is None:
        bundle = demo_bundle()
        if not (bundle / "fastsam.onnx").is_file():
            print(f"model: the demo bundle is not built yet ({bundle}); give --model DIR to time a model")
            return None, None
        spec = str(bundle)
    path, manifest = resolve_fastsam(spec)  # a --model that is not a model: BadModelError, exit status 2
    return path, _input_shape(path, manifest)


def _input_shape(path, manifest: dict) -> tuple[int, ...] | None:
    imgsz = manifest.get("imgsz", [640, 640])
    hw = list(imgsz) if isinstance(imgsz, list) else [int(imgsz), int(imgsz)]
    variant = manifest.get("variant", "fp32" if manifest else "unknown")
    print(f"model: {path} (variant {variant})")
    return (1, 3, *hw)


def _try(path, name: str, default_shape, runs: int) -> tuple[str, tuple | None]:
    """Create a strict session on ``name`` alone and time it → (one line of result, the graph's input shape
    with None for dynamic axes, or None when the provider failed)."""
    from ..errors import FastSAMError
    from ..session import OnnxSession

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = OnnxSession(path, [name], strict=True)
    except FastSAMError as e:
        return f"FAILED — {e}", None
    created = time.perf_counter() - t0
    shape = tuple(d if d is not None else default_shape[i] for i, d in enumerate(session.input_shape))
    x = np.zeros(shape, session.input_dtype)
    try:
        t0 = time.perf_counter()
        session.run(x)  # warm-up (TensorRT builds its engine here the first time)
        first = time.perf_counter() - t0
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            session.run(x)
            times.append(time.perf_counter() - t0)
    except Exception as e:  # a provider that creates a session but cannot run it
        return f"session created but run failed — {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", None
    shape_text = "x".join(map(str, shape))
    return (
        f"ok — session.run median {np.median(times) * 1e3:.1f} ms over {runs} runs on a {shape_text} "
        f"{session.input_dtype} zero input (session {created * 1e3:.0f} ms, first run {first * 1e3:.0f} ms; "
        f"kept {', '.join(session.providers)})"
    ), tuple(session.input_shape)
