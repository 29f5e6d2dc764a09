"""The model zoo: a typed registry of the models ``fastsam-onnx fetch NAME`` downloads and exports.

Each entry is a frozen :class:`ModelDescription` that checks itself when created. URLs, sizes and hashes are
facts copied from their sources, never guessed. OpenAI publishes the CLIP digest in its URL. Ultralytics
publishes no digest for its FastSAM release files; the SHA-256 and sizes below are the values that unrelated
public projects pinned after downloading those release files (FastSAM-s: the same digest for v8.2.0, v8.3.0 and
v8.4.0; FastSAM-x: pinned for v8.2.0, same size as v8.4.0), see docs/models.md "The zoo". A model without a digest (``sha256=None``) is refused by
a download unless verification is explicitly switched off (``fetch --no-verify``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
KINDS = ("fastsam", "clip")


@dataclass(frozen=True)
class ModelSource:
    """Where a checkpoint comes from.

    url: http(s) URL, or None for a model shipped inside the package; sha256: lowercase hex digest of the
    file, None when the publisher gives none; size: exact size in bytes, None when unknown;
    approx_mb: the size as published (MB), for messages; license: the checkpoint's license.
    """

    url: Optional[str]
    sha256: Optional[str]
    size: Optional[int]
    license: str
    approx_mb: Optional[float] = None

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("https://", "http://")):
            raise ValueError(f"ModelSource.url must be an http(s) URL, got {self.url!r}")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"ModelSource.sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.size is not None and (not isinstance(self.size, int) or self.size <= 0):
            raise ValueError(f"ModelSource.size must be a positive int (bytes), got {self.size!r}")
        if self.approx_mb is not None and self.approx_mb <= 0:
            raise ValueError(f"ModelSource.approx_mb must be positive, got {self.approx_mb!r}")
        if not self.license:
            raise ValueError("ModelSource.license is required")

    @property
    def filename(self) -> str:
        """The checkpoint's file name: the last path component of the URL."""
        if self.url is None:
            raise ValueError("a local model has no download file name")
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelDescription:
    """One model of the zoo.

    name: the registry name (``FastSAM("fastsam-s")``, ``fastsam-onnx fetch fastsam-s``); kind: "fastsam"
    or "clip"; source: its :class:`ModelSource`; recipe: keyword arguments of the export stage
    (``export_fastsam`` / ``export_clip``) that turn the checkpoint into a bundle (FastSAM: dynamic graphs,
    which run each photo at its own aspect ratio: 1.6-1.9x faster on CPUs than a static square);
    description: one line;
    local: a bundle directory shipped with the package (no download, no export).
    """

    name: str
    kind: str
    source: ModelSource
    recipe: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    local: Optional[Path] = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"model name must be lowercase letters, digits, '.', '_' or '-', got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.source, ModelSource):
            raise TypeError("ModelDescription.source must be a ModelSource")
        if (self.local is None) == (self.source.url is None):
            raise ValueError(f"{self.name}: give exactly one of a download URL and a local bundle")
        object.__setattr__(self, "recipe", dict(self.recipe))

    @property
    def verifiable(self) -> bool:
        """True when a download can be checked against a published SHA-256."""
        return self.source.sha256 is not None


_ULTRALYTICS_ASSETS = "https://github.com/ultralytics/assets/releases/download/v8.4.0"  # ultralytics 8.4.190's release
_HERE = Path(__file__).resolve().parent

#: OpenAI's ViT-B/32 checkpoint, shared by the fp32 and int8 zoo entries (one download serves both)
_CLIP_VIT_B_32 = ModelSource(
    # clip.clip._MODELS["ViT-B/32"]; the path component is the file's SHA-256
    url="https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    size=353_976_522,
    license="MIT (OpenAI CLIP)",
    approx_mb=354.0,
)

#: every model of the zoo, in `fetch --list` order
MODELS: tuple[ModelDescription, ...] = (
    ModelDescription(
        name="fastsam-s",
        kind="fastsam",
        source=ModelSource(
            url=f"{_ULTRALYTICS_ASSETS}/FastSAM-s.pt",
            sha256="c9f78716a81c7aff0d608ccc73e1b82ab3aaad86005049f6a92106a0be6d0844",
            size=23_851_578,
            license="AGPL-3.0 (Ultralytics assets release of CASIA-IVA-Lab FastSAM)",
            approx_mb=23.9,
        ),
        recipe={"imgsz": 1024, "dynamic": True},
        description="FastSAM-s (YOLOv8s-seg, 11.8 M parameters), dynamic input, 1024 on the long side",
    ),
    ModelDescription(
        name="fastsam-x",
        kind="fastsam",
        source=ModelSource(
            url=f"{_ULTRALYTICS_ASSETS}/FastSAM-x.pt",
            sha256="752cadc2828edb1cd4bc4f9eb587100631af06ea2108f4c9ed56df4755701e76",
            size=144_972_346,
            license="AGPL-3.0 (Ultralytics assets release of CASIA-IVA-Lab FastSAM)",
            approx_mb=145.0,
        ),
        recipe={"imgsz": 1024, "dynamic": True},
        description="FastSAM-x (YOLOv8x-seg, 72 M parameters), dynamic input, 1024 on the long side",
    ),
    ModelDescription(
        name="clip-vit-b-32",
        kind="clip",
        source=_CLIP_VIT_B_32,
        recipe={},
        description="OpenAI CLIP ViT-B/32, the text-prompt model of FastSAM",
    ),
    ModelDescription(
        name="clip-vit-b-32-int8",
        kind="clip",
        source=_CLIP_VIT_B_32,
        recipe={"int8": True},
        description="OpenAI CLIP ViT-B/32 with int8 matrix products: ~4x faster text prompts on CPUs",
    ),
    ModelDescription(
        name="demo",
        kind="fastsam",
        source=ModelSource(url=None, sha256=None, size=None, license="AGPL-3.0 (trained for this project)"),
        description="the demo FastSAM shipped with the package (512 × 512, synthetic world)",
        local=_HERE / "demo",
    ),
    ModelDescription(
        name="clip-demo",
        kind="clip",
        source=ModelSource(url=None, sha256=None, size=None, license="AGPL-3.0 (trained for this project)"),
        description="the demo CLIP shipped with the package (text prompts of the demo world)",
        local=_HERE / "clip-demo",
    ),
)

#: the zoo by name
REGISTRY: dict[str, ModelDescription] = {m.name: m for m in MODELS}
assert len(REGISTRY) == len(MODELS), "duplicate model names"


def find_model(name: str) -> Optional[ModelDescription]:
    """The registry entry called ``name`` (case-insensitive, ``FastSAM-s`` = ``fastsam-s``), or None."""
    return REGISTRY.get(str(name).lower())


def list_models() -> list[str]:
    """Names of every registry entry."""
    return list(REGISTRY)
