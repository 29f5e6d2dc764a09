"""Optional extras: which importable modules are missing, checked without importing anything heavy.

The CLI turns a missing extra into one line and exit status 2 before work starts
(:func:`fastsam_onnx.cli.extras.require`); the export stage and the benchmarks ask the same question here.
"""

from __future__ import annotations

import importlib.util
import os

__all__ = ["EXTRA_OF", "ENGINES", "ENGINE_VARIABLES", "extra_of", "missing_modules", "resolve_engine"]

#: top-level module → the extra that installs it (names an ImportError that slipped past a check)
EXTRA_OF = {m: "export" for m in ("torch", "torchvision", "ultralytics", "onnx", "onnxsim", "clip", "onnxconverter_common")}
EXTRA_OF["matplotlib"] = "dev"
EXTRA_OF["pycocotools"] = "eval"
EXTRA_OF.update(ray="ray", pyarrow="ray", fastapi="server", uvicorn="server", starlette="server", multipart="server", pydantic="server")


def extra_of(module: str | None) -> str | None:
    """The extra that provides ``module`` (a dotted name; its top-level package decides), or None."""
    return EXTRA_OF.get(str(module).split(".")[0]) if module else None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package; a module set to None in sys.modules
        return False


def missing_modules(*modules: str) -> list[str]:
    """The names among ``modules`` (dotted names allowed) that cannot be imported here (find_spec only)."""
    return [m for m in modules if not _importable(m)]


#: engine settings of the stages with a compiled variant in the ``[fast]`` extra: the base install's engine, or
#: "numba" (compiled loops, the same output), or "auto" (numba when it is installed, else the base one)
ENGINES = {"edge": ("auto", "numpy", "numba"), "polygon": ("auto", "opencv", "numba")}
#: the environment variable that sets each stage's engine
ENGINE_VARIABLES = {"edge": "FASTSAM_ONNX_EDGES", "polygon": "FASTSAM_ONNX_POLYGONS"}


def resolve_engine(stage: str, engine: str | None = None) -> str:
    """The engine ``stage`` ("edge" or "polygon") uses: ``engine``, else its environment variable
    (``$FASTSAM_ONNX_EDGES``, ``$FASTSAM_ONNX_POLYGONS``), else "auto", which is numba when importable, else the
    base engine. Raises :class:`~fastsam_onnx.errors.BadArgumentError` for an unknown name or for "numba"
    without numba."""
    from .errors import BadArgumentError

    names, variable = ENGINES[stage], ENGINE_VARIABLES[stage]
    name = os.environ.get(variable, "auto") if engine is None else engine
    if name not in names:
        where = f"${variable}" if engine is None else f"{stage} engine"
        raise BadArgumentError(f"{where} must be one of {', '.join(names)} ({stage} engine), got {name!r}")
    if name == names[1]:
        return name
    if missing_modules("numba"):
        if name == "numba":
            raise BadArgumentError(f"the numba {stage} engine needs numba: pip install 'fastsam-onnx[fast]'")
        return names[1]
    return "numba"
