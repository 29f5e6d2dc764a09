"""Request bodies of the JSON API (pydantic models: FastAPI validates them and documents them in OpenAPI).

Types are checked here; ranges and prompt shapes are checked by the runtime itself (its
:class:`~fastsam_onnx.errors.BadArgumentError` / :class:`~fastsam_onnx.errors.BadPromptError` messages come back
as 422), so the server accepts exactly what :meth:`fastsam_onnx.FastSAM.prompt` accepts, modes included.
Coordinates are original-image pixels: boxes xyxy, points x, y.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..prompts import POINT_MODES, PROMPT_ARGUMENTS, PROMPT_KEYS, TEXT_MODES, quoted_choices

Number = Union[int, float]


class Prompts(BaseModel):
    """Prompts on a segment-everything result (see ``FastSAM.prompt``); all optional."""

    model_config = ConfigDict(extra="forbid")

    boxes: Optional[Union[list[list[Number]], list[Number]]] = Field(None, description="xyxy pixels: [x1, y1, x2, y2] or a list of them")
    points: Optional[Union[list[list[Number]], list[Number]]] = Field(None, description="x, y pixels: [x, y] or a list of them")
    labels: Optional[Union[list[int], int]] = Field(None, description="one per point: 1 foreground (default), 0 background")
    texts: Optional[Union[list[str], str]] = Field(None, description="text prompts (CLIP picks the best mask per text)")
    point_mode: Optional[str] = Field(None, description=f"{quoted_choices(POINT_MODES)} (default 'select'; 'merge': original FastSAM, one merged mask)")
    text_mode: Optional[str] = Field(None, description=f"{quoted_choices(TEXT_MODES)} (default 'select'; 'original': one text, one mask)")
    text_threshold: Optional[float] = Field(None, description="text_mode 'all': the cosine similarity a crop needs, in [-1, 1]")

    def prompt_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``FastSAM.prompt`` (unset fields left out)."""
        d = {PROMPT_ARGUMENTS[k]: getattr(self, k) for k in PROMPT_KEYS}
        d.update(point_mode=self.point_mode, text_mode=self.text_mode, text_threshold=self.text_threshold)
        return {k: v for k, v in d.items() if v is not None}

    def has_prompts(self) -> bool:
        return any(getattr(self, k) is not None for k in PROMPT_KEYS)


class Outputs(BaseModel):
    """What to return besides the instance JSON."""

    polygons: bool = Field(False, description="add each instance's polygons (outer contours with holes, pixels)")
    epsilon: float = Field(0.0, ge=0, le=1, description="polygon simplification relative to the perimeter (X-AnyLabeling's epsilon_factor)")
    overlay: bool = Field(False, description="add a PNG overlay of the masks, base64 (overlay_png)")


class Settings(BaseModel):
    """Segment-everything settings (the CLI's)."""

    conf: Number = Field(0.4, description="keep detections scoring > conf, in [0, 1]")
    iou: Number = Field(0.9, description="NMS IoU threshold in [0, 1]")
    imgsz: Optional[Union[int, list[int]]] = Field(None, description="network input size (dynamic models): an int or [h, w]")
    max_det: int = Field(300, description="at most this many instances, >= 1")
    retina: bool = Field(True, description="masks at the original size (True) or letterboxed at the input size")

    def settings(self) -> dict[str, Any]:
        return {"conf": self.conf, "iou": self.iou, "imgsz": self.imgsz, "max_det": self.max_det, "retina": self.retina}


class SegmentOptions(Settings, Outputs, Prompts):
    """Everything ``POST /v1/segment`` takes besides the image."""

    model_config = ConfigDict(extra="forbid")


class SegmentJSON(SegmentOptions):
    """``POST /v1/segment`` with a JSON body: the image as base64 or a ``data:`` URI."""

    image: str = Field(..., description="the encoded image file (JPEG, PNG, ...) as base64 or a data: URI")


class PromptRequest(Prompts, Outputs):
    """``POST /v1/prompt``: prompts on an image segmented before (its ``image_id``)."""

    model_config = ConfigDict(extra="forbid")

    image_id: str = Field(..., max_length=128, description="the image_id a /v1/segment answer returned")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {"code", "message"}}``."""

    error: ErrorBody
