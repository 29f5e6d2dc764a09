"""The model zoo: the demo bundles shipped with the package, the zoo registry, the synthetic demo world and its
held-out evaluations. The recipes that trained the demo models live in the repository's ``tools/`` (not installed)."""

from __future__ import annotations

from pathlib import Path

from .registry import MODELS, REGISTRY, ModelDescription, ModelSource, find_model, list_models

__all__ = [
    "MODELS", "REGISTRY", "ModelDescription", "ModelSource", "find_model", "list_models",
    "demo_bundle", "demo_clip_bundle", "example_image", "check_photo",
]

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_CLIP_DIR = Path(__file__).resolve().parent / "clip-demo"


def demo_bundle() -> Path:
    """Directory of the shipped demo FastSAM bundle (``fastsam.onnx`` + ``manifest.json``)."""
    return DEMO_DIR


def example_image() -> Path:
    """A synthetic example image of the demo world (512 × 512 JPEG)."""
    return DEMO_DIR / "example.jpg"


def demo_clip_bundle() -> Path:
    """Directory of the shipped demo CLIP bundle (image and text encoders, BPE vocabulary, manifest)."""
    return DEMO_CLIP_DIR


def check_photo() -> Path:
    """A real photograph (ultralytics' ``bus.jpg``, 810 × 1080, AGPL-3.0 as ultralytics): what the native converter's
    self-check runs its graphs on (:mod:`fastsam_onnx.export.native_bundle`)."""
    return Path(__file__).resolve().parent / "photos" / "bus.jpg"
