"""The GPU install (issue 25): what the installed onnxruntime build needs is read from the build (its CUDA version,
its provider libraries' DT_NEEDED, cuDNN from its metadata) and ``doctor`` names it; no onnxruntime at all is one
typed line naming both extras; and, slow, ``pip install '.[gpu]'`` alone in a fresh venv gives an ``onnxruntime``
offering CUDA and TensorRT, a ``doctor`` that names the missing libraries, and a ``segment`` that runs."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import struct
import subprocess
import venv
from importlib import metadata
from pathlib import Path

import pytest

from fastsam_onnx import MissingExtraError
from fastsam_onnx import gpulibs
from fastsam_onnx import session as session_mod
from fastsam_onnx.cli import main
from fastsam_onnx.extras import MissingRuntimeError

ROOT = Path(__file__).resolve().parents[1]
ONE_LINE = ("fastsam-onnx needs ONNX Runtime, which the base install leaves to you: pip install 'fastsam-onnx[cpu]' "
            "(CPU) or pip install 'fastsam-onnx[gpu]' (NVIDIA CUDA and TensorRT)")


def make_elf(path: Path, needed: list[str], wide: bool = True, little: bool = True) -> Path:
    """A minimal ELF shared object whose dynamic section lists ``needed`` (section headers: null, .dynstr,
    .dynamic), as a linker writes them; 64- or 32-bit, either byte order."""
    end = "<" if little else ">"
    strtab = b"\0"
    offsets = []
    for name in needed:
        offsets.append(len(strtab))
        strtab += name.encode() + b"\0"
    dyn_fmt, sh_fmt, eh_size = (end + "qQ", end + "IIQQQQIIQQ", 64) if wide else (end + "iI", end + "IIIIIIIIII", 52)
    dynamic = b"".join(struct.pack(dyn_fmt, 1, off) for off in offsets) + struct.pack(dyn_fmt, 14, 0)  # + DT_SONAME
    dynamic += struct.pack(dyn_fmt, 0, 0)
    str_off, dyn_off = eh_size, eh_size + len(strtab)
    sh_off = dyn_off + len(dynamic)
    sections = [struct.pack(sh_fmt, *[0] * 10),
                struct.pack(sh_fmt, 1, 3, 0, 0, str_off, len(strtab), 0, 0, 1, 0),  # SHT_STRTAB
                struct.pack(sh_fmt, 2, 6, 0, 0, dyn_off, len(dynamic), 1, 0, 8, struct.calcsize(dyn_fmt))]  # SHT_DYNAMIC
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1 if little else 2, 1]) + b"\0" * 9
    if wide:
        header = ident + struct.pack(end + "HHIQQQIHHHHHH", 3, 62, 1, 0, 0, sh_off, 0, eh_size, 0, 0, 64, 3, 0)
    else:
        header = ident + struct.pack(end + "HHIIIIIHHHHHH", 3, 3, 1, 0, 0, sh_off, 0, eh_size, 0, 0, 40, 3, 0)
    path.write_bytes(header + strtab + dynamic + b"".join(sections))
    return path


@pytest.mark.parametrize("wide, little", [(True, True), (False, True), (True, False), (False, False)])
def test_elf_needed_reads_the_dynamic_section(tmp_path, wide, little):
    names = ["libcublasLt.so.13", "libcudart.so.13", "libc.so.6", "libnvinfer.so.10"]
    assert gpulibs.elf_needed(make_elf(tmp_path / "lib.so", names, wide, little)) == names
    assert gpulibs.elf_needed(make_elf(tmp_path / "none.so", [], wide, little)) == []


def test_elf_needed_of_what_is_not_elf(tmp_path):
    (tmp_path / "text.so").write_text("not ELF")
    (tmp_path / "short.so").write_bytes(b"\x7fELF\x02\x01\x01")
    good = make_elf(tmp_path / "good.so", ["libcudart.so.12"]).read_bytes()
    (tmp_path / "cut.so").write_bytes(good[:80])  # section headers cut off
    for name in ("text.so", "short.so", "cut.so", "missing.so"):
        assert gpulibs.elf_needed(tmp_path / name) == [], name


@pytest.fixture
def gpu_build(tmp_path, monkeypatch):
    """An onnxruntime-gpu tree as PyPI's 1.31 wheel lays it out (CUDA 13.0): build_and_package_info.py, the CUDA
    provider (cuDNN opened at run time, so not linked) and the TensorRT provider; cuDNN from the wheel's extra."""
    root = tmp_path / "onnxruntime"
    (root / "capi").mkdir(parents=True)
    (root / "capi" / "build_and_package_info.py").write_text(
        "package_name = 'onnxruntime-gpu'\n__version__ = '1.31.1'\ncuda_version = '13.0'\n")
    make_elf(root / "capi" / "libonnxruntime_providers_cuda.so",
             ["libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13", "libcuda.so.1",
              "libdl.so.2", "libstdc++.so.6", "libc.so.6"])
    make_elf(root / "capi" / "libonnxruntime_providers_tensorrt.so",
             ["libcublas.so.13", "libnvinfer.so.10", "libnvonnxparser.so.10", "libcudart.so.13", "libcudnn.so.9",
              "libc.so.6"])
    real = metadata.requires
    extras = ['nvidia-cuda-runtime~=13.0; extra == "cuda"', 'nvidia-cudnn-cu13~=9.0; extra == "cudnn"']
    monkeypatch.setattr(metadata, "requires", lambda d: extras if d == "onnxruntime-gpu" else real(d))
    monkeypatch.setattr(gpulibs, "ort_dir", lambda: root)
    return root


def test_provider_libraries_are_read_from_the_build(gpu_build):
    assert gpulibs.build_info() == {"package_name": "onnxruntime-gpu", "version": "1.31.1", "cuda_version": "13.0"}
    assert gpulibs.provider_libraries(package="onnxruntime-gpu") == {
        "CUDAExecutionProvider": ["libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13",
                                  "libcuda.so.1", "libcudnn.so.9"],
        "TensorrtExecutionProvider": ["libcublas.so.13", "libnvinfer.so.10", "libnvonnxparser.so.10",
                                      "libcudart.so.13", "libcudnn.so.9"],
    }
    (gpu_build / "capi" / "libonnxruntime_providers_tensorrt.so").unlink()  # a build without TensorRT
    assert list(gpulibs.provider_libraries(package="onnxruntime-gpu")) == ["CUDAExecutionProvider"]
    assert gpulibs.build_info(gpu_build.parent / "elsewhere") == {"package_name": None, "version": None,
                                                                  "cuda_version": None}
    (gpu_build / "capi" / "build_and_package_info.py").unlink()  # builds before 1.21: the CUDA provider's libcudart
    assert gpulibs.build_info() == {"package_name": None, "version": None, "cuda_version": "13"}
    make_elf(gpu_build / "capi" / "libonnxruntime_providers_cuda.so", ["libcublas.so.11", "libcudart.so.11.0"])
    assert gpulibs.build_info()["cuda_version"] == "11"  # onnxruntime-gpu 1.17 and 1.18 on PyPI


def test_libraries_are_named_with_their_versions():
    d = gpulibs.describe_library
    assert d("libcudart.so.12", "12.8") == "CUDA 12 runtime (libcudart.so.12)"
    assert d("libcublasLt.so.13") == "cuBLASLt (CUDA 13) (libcublasLt.so.13)"
    assert d("libcudnn.so.9") == "cuDNN 9 (libcudnn.so.9)" and d("libnvinfer.so.10") == "TensorRT 10 (libnvinfer.so.10)"
    assert d("libcuda.so.1") == "NVIDIA driver (libcuda.so.1)"
    assert gpulibs.missing_libraries(["libc.so.6", "libcudart.so.99", "libcudart.so.99"]) == ["libcudart.so.99"]


def test_doctor_names_what_the_installed_gpu_build_needs(gpu_build, monkeypatch, tmp_path, capsys):
    """On a machine without them, doctor names each library of the build with its version (CUDA 13 here, as the
    build says), and how to get them."""
    monkeypatch.setattr("fastsam_onnx.providers.ort_package", lambda: "onnxruntime-gpu")
    monkeypatch.setattr("fastsam_onnx.models.demo_bundle", lambda: tmp_path / "demo")
    monkeypatch.setattr(gpulibs, "missing_libraries", lambda sonames: [s for s in dict.fromkeys(sonames)
                                                                       if not s.startswith("libcublas")])
    monkeypatch.setattr(gpulibs, "driver_cuda_version", lambda: None)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "(package onnxruntime-gpu: GPU build, built for CUDA 13.0," in out
    assert "GPU libraries this build needs (read from onnxruntime-gpu 1.31.1, CUDA 13.0):" in out
    assert ("  CUDAExecutionProvider: cuBLASLt (CUDA 13) (libcublasLt.so.13) loads, cuBLAS (CUDA 13) (libcublas.so.13) "
            "loads, cuRAND 10 (libcurand.so.10) not found, CUDA 13 runtime (libcudart.so.13) not found, NVIDIA driver "
            "(libcuda.so.1) not found, cuDNN 9 (libcudnn.so.9) not found\n") in out
    assert "  TensorrtExecutionProvider: cuBLAS (CUDA 13) (libcublas.so.13) loads, TensorRT 10 (libnvinfer.so.10) not found" in out
    assert ("  missing: cuRAND 10 (libcurand.so.10), CUDA 13 runtime (libcudart.so.13), NVIDIA driver (libcuda.so.1), "
            "cuDNN 9 (libcudnn.so.9), TensorRT 10 (libnvinfer.so.10), TensorRT ONNX parser 10 (libnvonnxparser.so.10)\n") in out
    assert ("  hint: install an NVIDIA GPU with its driver (libcuda.so.1); CUDA 13.x and cuDNN 9 (system packages, or "
            "NVIDIA's wheels: pip install 'onnxruntime-gpu[cuda,cudnn]', which fastsam-onnx preloads); TensorRT 10 for "
            "CUDA 13 on the library path, for TensorrtExecutionProvider; docs/gpu.md has the commands") in out
    monkeypatch.setattr(gpulibs, "driver_cuda_version", lambda: "12.4")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA driver supports CUDA up to 12.4" in out and "needs CUDA 13.0, newer than the driver's 12.4" in out


def test_without_onnxruntime_every_session_is_one_typed_line(monkeypatch, tmp_path, capsys):
    """No [cpu] nor [gpu]: ``import fastsam_onnx`` works, a session raises MissingRuntimeError (a MissingExtraError
    and an ImportError), the CLI prints its one line with exit status 2 and doctor says what to install."""
    import pickle

    from fastsam_onnx import FastSAM
    from fastsam_onnx.models import demo_bundle

    monkeypatch.setattr(session_mod, "ort", None)
    with pytest.raises(MissingRuntimeError) as e:
        session_mod.OnnxSession(demo_bundle() / "fastsam.onnx")
    assert isinstance(e.value, MissingExtraError) and isinstance(e.value, ImportError) and str(e.value) == ONE_LINE
    assert e.value.extra == "cpu" and e.value.name == "onnxruntime" and str(pickle.loads(pickle.dumps(e.value))) == ONE_LINE
    with pytest.raises(MissingRuntimeError):
        FastSAM()
    image = ROOT / "models" / "demo" / "example.jpg"
    assert main(["segment", str(image), "--json", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err == f"fastsam-onnx segment: error: {ONE_LINE}\n"
    monkeypatch.setattr("fastsam_onnx.providers.ort_package", lambda: "none")
    assert main(["doctor"]) == 0
    assert ("onnxruntime: not installed (the base install leaves the build to you): pip install 'fastsam-onnx[cpu]' "
            "for the CPU, pip install 'fastsam-onnx[gpu]' for NVIDIA CUDA and TensorRT\n") in capsys.readouterr().out


# ------------------------------------------------------------------------------------ the recipe, in a fresh venv

PROBE = r"""
import json, onnxruntime as ort
from onnxruntime.capi import build_and_package_info as b
print(json.dumps({"providers": ort.get_available_providers(), "cuda": b.cuda_version, "package": b.package_name}))
"""


@pytest.mark.slow
def test_gpu_extra_alone_in_a_fresh_venv(tmp_path):
    """``pip install '.[gpu]'`` from a clone, alone: onnxruntime-gpu and no CPU onnxruntime; the module offers the
    CUDA and TensorRT providers; doctor runs and names the libraries of the CUDA version the build says (on this
    machine without a GPU: missing); segment runs (on the CPU, after saying that CUDA did not come up), its
    ``--json -`` standard output clean of what onnxruntime prints when a provider fails to load."""
    src = tmp_path / "fastsam-onnx"  # what the package is built from, as a clone has it
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "results", "*.pt")
    for name in ("runtime", "export", "models", "benchmarks"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py, exe = env_dir / "bin" / "python", env_dir / "bin" / "fastsam-onnx"
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"{src}[gpu]"], check=True, timeout=900, cwd=tmp_path)
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    dists = {d["name"].lower() for d in json.loads(listed.stdout)}
    assert "onnxruntime-gpu" in dists and "onnxruntime" not in dists and "torch" not in dists, sorted(dists)
    probe = json.loads(subprocess.run([str(py), "-c", PROBE], capture_output=True, text=True, check=True,
                                      cwd=tmp_path).stdout)
    assert {"CUDAExecutionProvider", "TensorrtExecutionProvider"} <= set(probe["providers"]), probe
    assert probe["package"] == "onnxruntime-gpu" and re.fullmatch(r"1[2-9]\.\d+", probe["cuda"]), probe
    major = probe["cuda"].split(".")[0]

    doctor = subprocess.run([str(exe), "doctor", "--runs", "1"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = doctor.stdout
    assert doctor.returncode == 0, out + doctor.stderr
    assert f"(package onnxruntime-gpu: GPU build, built for CUDA {probe['cuda']}," in out, out
    assert f"CUDA {probe['cuda']}):" in out and f"CUDA {major} runtime (libcudart.so.{major})" in out, out
    assert re.search(r"CUDAExecutionProvider: .*cuDNN \d+ \(libcudnn\.so\.\d+\)", out), out
    assert re.search(r"TensorrtExecutionProvider: .*TensorRT \d+ \(libnvinfer\.so\.\d+\)", out), out
    if not _loads("libcuda.so.1"):  # no NVIDIA driver here: doctor names what is missing and how to get it
        assert "NVIDIA driver (libcuda.so.1) not found" in out and "  missing: " in out, out
        assert f"CUDA {major}.x and cuDNN" in out and "docs/gpu.md" in out, out
    assert "CPUExecutionProvider: ok — session.run median" in out, out

    example = ROOT / "models" / "demo" / "example.jpg"
    run = subprocess.run([str(exe), "segment", str(example), "--json", "-"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["instances"], "no instances"  # onnxruntime's "EP Error" banner went to stderr
    if not _loads("libcuda.so.1"):
        assert "did not enable" in run.stderr or "using CPUExecutionProvider" in run.stderr, run.stderr


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return False
