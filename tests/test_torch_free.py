"""The runtime never imports torch, torchvision, ultralytics or clip, directly or through a dependency."""

from pathlib import Path

from torchfree import BLOCKED, run_blocked

SCRIPT = r"""
import sys
from fastsam_onnx import FastSAM
from fastsam_onnx.cli import main
bundle, image, json_out, png_out = sys.argv[1:5]
model = FastSAM(bundle)
result = model.segment(image)
masks = result.masks
status = main(["segment", image, "--model", bundle, "--json", json_out, "--out", png_out])
report(n=len(result), status=status)
"""


def test_segmentation_runs_without_torch(demo, tmp_path):
    image = str(Path(demo) / "example.jpg")
    report = run_blocked(SCRIPT, str(demo), image, str(tmp_path / "r.json"), str(tmp_path / "r.png"))
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


def test_import_does_not_load_ray():
    """``import fastsam_onnx`` (and the distributed modules, and the CLI parser) never import Ray or pyarrow."""
    import subprocess
    import sys

    code = (
        "import sys, fastsam_onnx, fastsam_onnx.distributed, fastsam_onnx.cli.distributed\n"
        "from fastsam_onnx.cli import build_parser\nbuild_parser()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'pyarrow'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_import_does_not_load_the_server_stack():
    """``import fastsam_onnx`` and the CLI parser (with its ``serve`` command) never import FastAPI, uvicorn,
    Starlette or pydantic; ``fastsam_onnx.server`` is imported only by ``serve`` itself (the check can fail: the
    last line imports it and must see FastAPI)."""
    import subprocess
    import sys

    code = (
        "import sys, fastsam_onnx\nfrom fastsam_onnx.cli import build_parser\nbuild_parser()\n"
        "heavy = {'fastapi', 'uvicorn', 'starlette', 'pydantic', 'multipart'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
        "import fastsam_onnx.server.app\nprint('fastapi' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["[]", "True"], out.stdout
