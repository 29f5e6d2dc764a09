"""The suite's models: test-made checkpoints and the bundles exported from them, made once and kept.

The checkpoints come from ``tests/modelmaker.py`` and ``tests/clip_fixtures.py``, so the suite runs from a
checkout of the repository (with the ``[export]`` extra): a repository tool, ``tools/`` is not installed. Every FastSAM export says ``dynamic=`` explicitly.
"""

from __future__ import annotations

import inspect
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from fastsam_onnx.benchmarks.cases import IMAGES, SHAPES, ultralytics_asset

ROOT = Path(__file__).resolve().parents[1]


def _tests_on_path() -> None:
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


class Models:
    """Test-made checkpoints and their exported bundles, made on first use and kept under ``work``."""

    def __init__(self, work: Path, reexport: bool = False, log: Callable[[str], Any] = print):
        self.work = work
        self.reexport = reexport
        self.log = log
        self.exported: set[str] = set()
        self.notes: list[str] = []
        from fastsam_onnx.export.fastsam import export_fastsam

        self.export_fastsam = export_fastsam
        self.params = set(inspect.signature(export_fastsam).parameters)

    def checkpoint(self, shape: str) -> Path:
        path = self.work / f"fastsam-{shape}-test.pt"
        if not path.exists():
            _tests_on_path()
            from modelmaker import make_checkpoint

            self.log(f"making the FastSAM-{shape}-shaped checkpoint ({SHAPES[shape]})")
            make_checkpoint(SHAPES[shape], path, seed=0)
        return path

    def calib_dir(self) -> Path:
        d = self.work / "calib"
        if not d.is_dir():
            d.mkdir(parents=True)
            for name in IMAGES:
                shutil.copyfile(ultralytics_asset(name), d / name)
        return d

    def bundle(self, shape: str, imgsz: int, precision: str) -> Path | None:
        """The bundle (static; dynamic for a ``-dyn`` precision), or None (with a note) when ``export_fastsam``
        cannot make this precision yet."""
        out = self.work / f"fastsam-{shape}-{imgsz}-{precision}"
        dynamic = precision.endswith("-dyn")
        precision = precision.removesuffix("-dyn")
        if (out / "manifest.json").is_file() and (not self.reexport or out.name in self.exported):
            return out
        kwargs: dict[str, Any] = {}
        if precision == "fp16":
            if "half" not in self.params:
                self._skip("fp16 skipped: export_fastsam has no half= option yet")
                return None
            kwargs["half"] = True
        elif precision == "int8":
            if "int8" not in self.params:
                self._skip("int8 skipped: export_fastsam has no int8= option yet")
                return None
            kwargs["int8"] = True
            if "calib" in self.params:
                kwargs["calib"] = self.calib_dir()
        weights = self.checkpoint(shape)
        self.log(f"exporting {out.name}")
        try:
            self.export_fastsam(weights, out, imgsz=imgsz, dynamic=dynamic, progress=lambda *a: None, **kwargs)
            self.exported.add(out.name)
        except Exception as e:  # an export stage still being written: note it, go on with the rest
            self._skip(f"{out.name} skipped: export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            return None
        return out

    def clip(self, int8: bool = False) -> tuple[Path | None, Path | None]:
        """(CLIP bundle, CLIP checkpoint) of a ViT-B/32-shaped CLIP with test-made weights, or (None, None).
        int8: the bundle with int8 towers (``export_clip(int8=True)``)."""
        ckpt = self.work / "clip-vit-b-32-test.pt"
        out = self.work / ("clip-vit-b-32-test-int8" if int8 else "clip-vit-b-32-test")
        try:
            if not ckpt.exists():
                _tests_on_path()
                from clip_fixtures import VIT_B_32, make_clip_checkpoint

                self.log("making the ViT-B/32-shaped CLIP checkpoint")
                make_clip_checkpoint(ckpt, VIT_B_32, seed=0)
            if not (out / "manifest.json").is_file():
                from fastsam_onnx.export.clip import export_clip

                self.log(f"exporting the {'int8 ' if int8 else ''}CLIP bundle")
                export_clip(ckpt, out, progress=lambda *a: None, **({"int8": True} if int8 else {}))
        except Exception as e:
            self._skip(f"text prompts skipped: no CLIP ({type(e).__name__}: {e})")
            return None, None
        return out, ckpt

    def _skip(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)
            self.log(note)
