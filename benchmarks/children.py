"""Child processes: every case and every cold start runs in a fresh interpreter, so its peak memory is its own.

The parent side (:func:`run_case`, :func:`run_child`, :func:`cold_start`) starts ``python -m
fastsam_onnx.benchmarks.timing`` (ours) or ``python -m fastsam_onnx.benchmarks.reference`` (ultralytics in
PyTorch), polls the child's resident memory (and kills it past a limit), and reads back the JSON it wrote. Also
here: the child side's :func:`peak_rss`, and what the parent checks before it starts anything (which optional
sides can run here, the available memory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fastsam_onnx.extras import missing_modules

from .cases import MB, Case

OURS_MODULE = "fastsam_onnx.benchmarks.timing"
REFERENCE_MODULE = "fastsam_onnx.benchmarks.reference"
#: What the optional parts need (the CLI's one-line messages).
REFERENCE_NEEDS = "the reference side needs the [export] extra{missing}: pip install 'fastsam-onnx[export]'"
PLOTS_NEED = "the plots need matplotlib (the [dev] extra, or pip install matplotlib)"


def peak_rss() -> int | None:
    """Peak resident set size of this process so far, in bytes.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory map. (``ru_maxrss`` is
    not used there: across fork + exec it keeps the parent's peak, so a child of a big parent reports the parent's
    figure.) Elsewhere ``ru_maxrss``; None where neither exists.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(v) if sys.platform == "darwin" else int(v) * 1024


def _proc_rss(pid: int) -> int | None:
    """Current resident set of process ``pid`` in bytes, from /proc (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("YOLO_OFFLINE", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_child(
    argv: Sequence[str], out_json: Path, *, mem_limit: float | None = None, timeout: float | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """Run ``python ARGV`` (a child that writes its figures to ``out_json``) and return them.

    mem_limit: bytes; the child is killed once its resident set exceeds it (polled every 50 ms), and the result
    says so. Failures come back as ``{"error": ...}`` with the tail of the child's output.
    """
    out_json = Path(out_json)
    log = log or out_json.with_suffix(".log")
    peak_seen = 0
    killed = None
    t0 = time.perf_counter()
    with open(log, "wb") as logf:
        proc = subprocess.Popen([sys.executable, *argv], stdout=logf, stderr=subprocess.STDOUT, env=_child_env())
        while proc.poll() is None:
            rss = _proc_rss(proc.pid)
            if rss:
                peak_seen = max(peak_seen, rss)
            if mem_limit and rss and rss > mem_limit:
                killed = f"killed: resident memory {rss / MB:.0f} MB exceeded the limit of {mem_limit / MB:.0f} MB"
            elif timeout and time.perf_counter() - t0 > timeout:
                killed = f"killed: ran longer than {timeout:.0f} s"
            if killed:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    if killed:
        return {"error": killed, "peak_rss_seen_bytes": peak_seen, "wall_s": wall, "log_tail": tail}
    if proc.returncode != 0 or not out_json.exists():
        data = json.loads(out_json.read_text()) if out_json.exists() else {}
        return {"error": data.get("error") or f"child exited with status {proc.returncode}", "wall_s": wall, "log_tail": tail}
    data = json.loads(out_json.read_text())
    data["wall_s"] = wall
    data.setdefault("memory", {})["peak_rss_seen_bytes"] = peak_seen
    return data


def run_case(
    case: Case, *, reference: bool = False, workdir: Path | None = None, mem_limit: float | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``case`` in a child process: ours (:mod:`.timing`) or the reference
    (:mod:`.reference`, which needs the [export] extra)."""
    with tempfile.TemporaryDirectory(prefix="fastsam-bench-", dir=workdir) as tmp:
        spec = Path(tmp) / "case.json"
        spec.write_text(json.dumps(case.to_dict()))
        module = REFERENCE_MODULE if reference else OURS_MODULE
        return run_child(["-m", module, "case", str(spec), str(Path(tmp) / "out.json")], Path(tmp) / "out.json",
                         mem_limit=mem_limit, timeout=timeout)


def reference_available() -> str | None:
    """None when the reference side can run here, else one line saying what is missing."""
    missing = missing_modules("torch", "ultralytics")
    return REFERENCE_NEEDS.format(missing=f" (missing {', '.join(missing)})") if missing else None


def plots_available() -> str | None:
    """None when the PNG plots can be drawn here, else one line saying what is missing."""
    return PLOTS_NEED if missing_modules("matplotlib") else None


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


# ------------------------------------------------------------------------------------------------------ cold start

_COLD = """
import json, sys, time
t0 = time.perf_counter()
import fastsam_onnx
from fastsam_onnx import FastSAM
t1 = time.perf_counter()
model = FastSAM(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "create_s": t2 - t1}))
"""


def cold_start(bundle: str | os.PathLike[str], reps: int = 3, code: str = _COLD, extra_argv: Sequence[str] = ()) -> dict[str, Any]:
    """Fresh-interpreter timings: ``import fastsam_onnx`` and ``FastSAM(bundle)``, and the whole process
    (interpreter start included), as medians over ``reps`` processes; plus the child's peak resident set."""
    rows = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code + _RSS_TAIL, str(bundle), *extra_argv], capture_output=True,
                              text=True, env=_child_env())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        row = json.loads(lines[-2])
        row.update(json.loads(lines[-1]))
        row["process_s"] = wall
        rows.append(row)
    out: dict[str, Any] = {k: float(np.median([r[k] for r in rows])) for k in ("import_s", "create_s", "process_s")}
    out["peak_rss_bytes"] = int(np.median([r["peak_rss_bytes"] for r in rows]))
    out["n"] = reps
    out["model"] = str(bundle)
    return out


_RSS_TAIL = """
from fastsam_onnx.benchmarks.children import peak_rss as _peak_rss
print(json.dumps({"peak_rss_bytes": _peak_rss()}))
"""


def reference_cold_start(checkpoint: str | os.PathLike[str], reps: int = 3) -> dict[str, Any]:
    """The reference's cold start (``import torch``, ``from ultralytics import FastSAM``, ``FastSAM(checkpoint)``),
    measured by :mod:`.reference` in a child process of its own; ``{"error": ...}`` when it fails."""
    with tempfile.TemporaryDirectory(prefix="fastsam-bench-") as tmp:
        out = Path(tmp) / "cold.json"
        return run_child(["-m", REFERENCE_MODULE, "cold", str(checkpoint), str(out), str(reps)], out)
