"""The machine the figures were taken on: CPU, cores, memory, GPU, load, library versions, installed sizes."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the OS has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _req_name(req: str) -> str | None:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1) if m else None


def _marker_ok(req: str, extras: tuple[str, ...] = ()) -> bool:
    """Whether a requirement string applies here: base requirements, and those of ``extras``."""
    if ";" not in req:
        return True
    marker = req.split(";", 1)[1]
    if "extra" in marker and not extras:
        return False
    try:
        from packaging.markers import Marker
    except ImportError:
        return "extra" not in marker
    try:
        if "extra" in marker:
            return any(Marker(marker.strip()).evaluate({"extra": e}) for e in extras)
        return bool(Marker(marker.strip()).evaluate())
    except Exception:
        return "extra" not in marker


def requirement_closure(root: str, extras: tuple[str, ...] = ()) -> tuple[list[md.Distribution], list[str]]:
    """The installed distributions ``root`` needs (base requirements and those of ``root``'s ``extras``,
    transitively, ``root`` included), and the requirement names not installed."""
    seen: dict[str, md.Distribution] = {}
    missing: list[str] = []
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen or key in missing:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.append(key)
            continue
        seen[key] = dist
        for req in dist.requires or []:
            n = _req_name(req)
            if n and _marker_ok(req, extras if dist is seen.get(re.sub(r"[-_.]+", "-", root).lower()) else ()):
                todo.append(n)
    return list(seen.values()), sorted(missing)


def _is_editable(dist: md.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def _tree_size(path: Path, seen: set[Path], skip: tuple[str, ...] = ()) -> int:
    """Bytes of the files under ``path`` not yet in ``seen`` (caches and folders named in ``skip`` left out)."""
    total = 0
    for p in path.rglob("*"):
        if "__pycache__" in p.parts or set(p.relative_to(path).parts[:-1]) & set(skip) or not p.is_file():
            continue
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            total += r.stat().st_size
    return total


def runtime_extra() -> str:
    """The ONNX Runtime extra this environment has: "gpu" where onnxruntime-gpu alone is installed, else "cpu"."""
    def has(name: str) -> bool:
        try:
            md.distribution(name)
            return True
        except md.PackageNotFoundError:
            return False

    return "gpu" if has("onnxruntime-gpu") and not has("onnxruntime") else "cpu"


def installed_size(root: str = "fastsam-onnx", extras: tuple[str, ...] = ()) -> dict[str, Any]:
    """Bytes on disk of ``root``'s requirement closure (base requirements and those of ``extras``): each
    distribution's installed files (importlib.metadata ``files``); an editable install counts its package folders
    instead."""
    dists, missing = requirement_closure(root, tuple(extras))
    seen: set[Path] = set()
    sizes: dict[str, int] = {}
    notes = []
    for dist in dists:
        name = dist.metadata["Name"]
        total = 0
        for f in dist.files or []:
            try:
                p = Path(f.locate()).resolve()
            except OSError:
                continue
            if p in seen or not p.is_file():
                continue
            seen.add(p)
            total += p.stat().st_size
        if _is_editable(dist) and re.sub(r"[-_.]+", "-", name).lower() == "fastsam-onnx":
            for pkg in ("fastsam_onnx", "fastsam_onnx.models", "fastsam_onnx.export", "fastsam_onnx.benchmarks"):
                spec = importlib.util.find_spec(pkg)
                for loc in (spec.submodule_search_locations or []) if spec else []:
                    # benchmarks/results/ is the repository's data, not part of a wheel
                    total += _tree_size(Path(loc), seen, skip=("results",) if pkg.endswith("benchmarks") else ())
            notes.append(f"{name} is installed editable: its package folders are counted")
        sizes[name] = total
    gpu = sum(v for k, v in sizes.items() if k.lower().startswith(("nvidia-", "triton")))
    return {
        "root": root,
        "extras": list(extras),
        "total_bytes": sum(sizes.values()),
        "cuda_bytes": gpu,
        "packages": dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
        "missing": missing,
        "notes": notes,
    }


def _cpuinfo() -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    cores = set()
    phys = core = None
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k == "model name" and "model" not in out:
            out["model"] = v
        elif k == "physical id":
            phys = v
        elif k == "core id":
            core = v
        elif not line.strip():
            if core is not None:
                cores.add((phys, core))
            phys = core = None
    if core is not None:
        cores.add((phys, core))
    if cores:
        out["physical_cores"] = len(cores)
    return out


def _cgroup_cpus() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _gpu() -> str:
    if shutil.which("nvidia-smi"):
        try:
            p = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
            if p.returncode == 0 and p.stdout.strip():
                return "; ".join(ln.strip() for ln in p.stdout.strip().splitlines())
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "none"


def machine_info() -> dict[str, Any]:
    """The machine the figures were taken on: CPU, cores, memory, GPU, onnxruntime, Python, OS, load."""
    import cv2
    import onnxruntime as ort

    from fastsam_onnx.providers import thread_counts

    cpu = _cpuinfo()
    usable = usable_cores()
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    intra, inter = thread_counts()
    return {
        "cpu": cpu.get("model") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "physical_cores": cpu.get("physical_cores"),
        "cgroup_cpus": _cgroup_cpus(),
        "memory_bytes": mem,
        "gpu": _gpu(),
        "onnxruntime": ort.__version__,
        "onnxruntime_device": ort.get_device(),
        "onnxruntime_providers": ort.get_available_providers(),
        "onnxruntime_threads": {"intra_op": intra or "onnxruntime default", "inter_op": inter or "onnxruntime default"},
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "load_average": load_average(),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line naming the machine."""
    cores = m.get("usable_cores")
    cg = m.get("cgroup_cpus")
    gpu = m.get("gpu") or "none"
    phys = m.get("physical_cores")
    return (f"{m.get('cpu')}, {cores} usable cores" + (f" ({phys} physical)" if phys else "")
            + (f" (cgroup quota {cg:g})" if cg else "")
            + f", {(m.get('memory_bytes') or 0) / 2**30:.0f} GiB RAM, GPU: {gpu}; onnxruntime {m.get('onnxruntime')} "
            f"({', '.join(m.get('providers_used') or ['CPUExecutionProvider'])}); Python {m.get('python', '').split()[-1]}; "
            f"{m.get('os')}")


def busy_notes(report: dict[str, Any]) -> list[str]:
    """A note when other work shared the machine: a 1-min load average above half the cores before the run,
    or above the cores + 0.5 at its end (the run itself keeps up to one thread per core busy)."""
    cores = report["machine"].get("usable_cores") or 1
    start, end = report["machine"].get("load_average"), report.get("load_average_end")
    if not (start and start[0] > 0.5 * cores) and not (end and end[0] > cores + 0.5):
        return []
    worst = max(la[0] for la in (start, end) if la)
    return [f"the machine was busy during the run (1-min load average up to {worst:.1f} on {cores} cores): these "
            "figures are not final. (PyTorch's OpenMP threads busy-wait, so the reference slows down far more than "
            "onnxruntime when other processes hold the cores.)"]
