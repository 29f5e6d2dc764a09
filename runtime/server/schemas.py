"""Request bodies of the JSON API (pydantic models: FastAPI validates them and documents them in OpenAPI).

Types are checked here; ranges and prompt shapes are checked by the runtime itself (its
:class:`~fastsam_onnx.errors.BadArgumentError` / :class:`~fastsam_onnx.errors.BadPromptError` messages come back
as 422), so the server accepts exactly what :meth:`fastsam_onnx.FastSAM.prompt` accepts, modes included.
Coordinates are original-image pixels: boxes xyxy, points x, y.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..prompts import POINT_MODES, PROMPT_ARGUMENTS, PROMPT_KEYS, TEXT_MODES, quoted_choices

#: caps on one request, checked before any work (422 beyond; the body's bytes: 413)
MAX_BOXES = 100
MAX_POINTS = 100
MAX_TEXTS = 32
MAX_TEXT_CHARS = 200
MAX_MARKS = 200
MAX_DET = 1000
MAX_COORD = 1e6
"""Largest |coordinate| in pixels (an image is at most 100 MP, so no side is near it)."""



def _json_integer(v: Any) -> Any:
    """JSON Schema's integer: 3 or 3.0, never true or "3" (strict types, as the Python API refuses them)."""
    if isinstance(v, (bool, str)) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError("must be an integer")
    return int(v) if isinstance(v, float) else v


def Int(lo: int, hi: int) -> Any:  # noqa: N802 - a type
    """An integer in [lo, hi] as JSON Schema has it (see :func:`_json_integer`)."""
    return Annotated[int, Field(ge=lo, le=hi, strict=False), BeforeValidator(_json_integer)]


Coord = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_COORD, le=MAX_COORD)]
Unit = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1)]
Box = Annotated[list[Coord], Field(min_length=4, max_length=4)]
Point = Annotated[list[Coord], Field(min_length=2, max_length=2)]
Label = Int(0, 1)
Text = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S")]
Side = Int(32, 4096)
_STRICT = ConfigDict(extra="forbid", strict=True)


class Prompts(BaseModel):
    """Prompts on a segment-everything result (see ``FastSAM.prompt``); all optional."""

    model_config = _STRICT

    boxes: Optional[Union[Annotated[list[Box], Field(min_length=1, max_length=MAX_BOXES)], Box]] = Field(
        None, description=f"xyxy pixels: [x1, y1, x2, y2] or a list of at most {MAX_BOXES}")
    points: Optional[Union[Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS)], Point]] = Field(
        None, description=f"x, y pixels: [x, y] or a list of at most {MAX_POINTS}")
    labels: Optional[Union[Annotated[list[Label], Field(min_length=1, max_length=MAX_POINTS)], Label]] = Field(
        None, description="one per point: 1 foreground (default), 0 background")
    texts: Optional[Union[Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)], Text]] = Field(
        None, description=f"text prompts (CLIP picks the best mask per text): at most {MAX_TEXTS}, each at most "
        f"{MAX_TEXT_CHARS} characters")
    point_mode: Optional[Literal[POINT_MODES]] = Field(  # type: ignore[valid-type]
        None, description=f"{quoted_choices(POINT_MODES)} (default 'select'; 'merge': original FastSAM, one merged mask)")
    text_mode: Optional[Literal[TEXT_MODES]] = Field(  # type: ignore[valid-type]
        None, description=f"{quoted_choices(TEXT_MODES)} (default 'select'; 'original': one text, one mask)")
    text_threshold: Optional[Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1, le=1)]] = Field(
        None, description="text_mode 'all': the cosine similarity a crop needs, in [-1, 1]")

    def prompt_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``FastSAM.prompt`` (unset fields left out)."""
        d = {PROMPT_ARGUMENTS[k]: getattr(self, k) for k in PROMPT_KEYS}
        d.update(point_mode=self.point_mode, text_mode=self.text_mode, text_threshold=self.text_threshold)
        return {k: v for k, v in d.items() if v is not None}

    def has_prompts(self) -> bool:
        return any(getattr(self, k) is not None for k in PROMPT_KEYS)


class Outputs(BaseModel):
    """What to return besides the instance JSON."""

    model_config = _STRICT

    polygons: bool = Field(False, description="add each instance's polygons (outer contours with holes, pixels)")
    epsilon: Unit = Field(0.0, description="polygon simplification relative to the perimeter (X-AnyLabeling's epsilon_factor)")
    overlay: bool = Field(False, description="add a PNG overlay of the masks, base64 (overlay_png)")


class Settings(BaseModel):
    """Segment-everything settings (the CLI's)."""

    model_config = _STRICT

    conf: Unit = Field(0.4, description="keep detections scoring > conf, in [0, 1]")
    iou: Unit = Field(0.9, description="NMS IoU threshold in [0, 1]")
    imgsz: Optional[Union[Side, Annotated[list[Side], Field(min_length=2, max_length=2)]]] = Field(
        None, description="network input size (dynamic models): an int or [h, w], multiples of 32")
    max_det: Int(1, MAX_DET) = Field(300, description=f"at most this many instances, in [1, {MAX_DET}]")  # type: ignore[valid-type]
    retina: bool = Field(True, description="masks at the original size (True) or letterboxed at the input size")

    def settings(self) -> dict[str, Any]:
        return {"conf": self.conf, "iou": self.iou, "imgsz": self.imgsz, "max_det": self.max_det, "retina": self.retina}


class SegmentOptions(Settings, Outputs, Prompts):
    """Everything ``POST /v1/segment`` takes besides the image."""

    model_config = _STRICT


class SegmentJSON(SegmentOptions):
    """``POST /v1/segment`` with a JSON body: the image as base64 or a ``data:`` URI."""

    image: str = Field(..., min_length=1, description="the encoded image file (JPEG, PNG, ...) as base64 or a data: URI")


class PromptRequest(Prompts, Outputs):
    """``POST /v1/prompt``: prompts on an image segmented before (its ``image_id``)."""

    model_config = _STRICT

    image_id: str = Field(..., min_length=1, max_length=128, description="the image_id a /v1/segment answer returned")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {"code", "message"}}``."""

    error: ErrorBody
