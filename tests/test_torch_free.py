"""The runtime never imports torch, torchvision, ultralytics or clip, directly or through a dependency."""

import json
import subprocess
import sys
from pathlib import Path

BLOCKED = ("torch", "torchvision", "ultralytics", "clip")

SCRIPT = r"""
import importlib.abc, json, sys
BLOCKED = {blocked!r}
attempts = []

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ImportError("blocked by test: " + name)
        return None

sys.meta_path.insert(0, Block())
from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
model = FastSAM({bundle!r})
result = model.segment({image!r})
masks = result.masks
status = main(["segment", {image!r}, "--model", {bundle!r}, "--json", {json_out!r}, "--out", {png_out!r}])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({{"n": len(result), "status": status, "loaded": loaded, "attempts": attempts}}))
"""


def test_segmentation_runs_without_torch(demo, tmp_path):
    image = str(Path(demo) / "example.jpg")
    code = SCRIPT.format(
        blocked=BLOCKED, bundle=str(demo), image=image,
        json_out=str(tmp_path / "r.json"), png_out=str(tmp_path / "r.png"),
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == 0
    assert report["n"] > 0
    assert report["loaded"] == []
    assert report["attempts"] == [], f"something tried to import {report['attempts']}"
    assert (tmp_path / "r.json").stat().st_size > 0 and (tmp_path / "r.png").stat().st_size > 0


def test_runtime_sources_do_not_import_torch():
    root = Path(__file__).resolve().parents[1] / "runtime"
    offenders = []
    for path in root.rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from") and words[1].split(".")[0] in BLOCKED:
                offenders.append(f"{path.name}: {line.strip()}")
    assert offenders == []
