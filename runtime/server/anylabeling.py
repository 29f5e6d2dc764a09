"""X-AnyLabeling's "Remote Server" protocol (``x-anylabeling-cvhub`` 4.x, ``services/auto_labeling/remote_server.py``)
as a thin translation onto the same calls as ``/v1/segment`` (same cache, same pool, same limits).

* ``GET /v1/models`` → ``{"success": true, "data": {model_id: {"display_name", "widgets": [{"name", "value"}],
  "batch_processing_mode", "available_tasks"}}}``: the widgets that fit FastSAM (points, boxes, text, conf, iou,
  mask fineness) and two tasks: polygons (segmentation) or rectangles (detection).
* ``POST /v1/predict`` with ``{"model", "image": "data:image/...;base64,...", "params": {"conf_threshold",
  "iou_threshold", "epsilon_factor", "text_prompt", "marks": [{"type": "point", "data": [x, y], "label": 1|0},
  {"type": "rectangle", "data": [x1, y1, x2, y2], "label": 1}], "current_task"}}`` →
  ``{"success": true, "data": {"shapes": [{"label", "shape_type", "points", "score", "group_id"}], "description"}}``.
  No marks and no text: every instance. Points select the instances they hit (positive) and not those hit by a
  negative point; each positive rectangle picks its best instance; ``text_prompt`` (comma-separated texts) one
  instance per text, labelled with it. Polygons are the mask outlines simplified with ``epsilon_factor``
  (relative to the perimeter; :meth:`~fastsam_onnx.Result.exteriors`: outer contours, as X-AnyLabeling's own
  ``masks_to_shapes`` traces them); a mask in several parts gives one polygon per part with the same ``group_id``.
  Rectangles are the boxes as 4 corner points. The client sends the ``Token`` header (the API key).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, Optional, Union

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadPromptError
from ..result import Result
from .bodies import read_json
from .engine import Engine, ServerConfig
from .images import decode_base64
from .schemas import MAX_MARKS, MAX_TEXT_CHARS, MAX_TEXTS, Coord, ErrorResponse, Int, Unit

MODEL_ID = "fastsam"
LABEL = "AUTOLABEL_OBJECT"
_WIDGETS = [
    {"name": "button_run", "value": None}, {"name": "button_send", "value": None},
    {"name": "edit_text", "value": None, "placeholder": "text prompts, comma-separated (CLIP)"},
    {"name": "button_add_point", "value": None}, {"name": "button_remove_point", "value": None},
    {"name": "button_add_rect", "value": None}, {"name": "button_clear", "value": None},
    {"name": "button_finish_object", "value": None},
    {"name": "input_conf", "value": None}, {"name": "edit_conf", "value": 0.4},
    {"name": "input_iou", "value": None}, {"name": "edit_iou", "value": 0.9},
    {"name": "mask_fineness_slider", "value": 10}, {"name": "mask_fineness_value_label", "value": None},
    {"name": "output_label", "value": None}, {"name": "output_select_combobox", "value": None},
    {"name": "toggle_preserve_existing_annotations", "value": False},
]
_ACTIVE = {w["name"]: ({"placeholder": w["placeholder"]} if "placeholder" in w else {}) for w in _WIDGETS}
TASKS = [
    {"id": "segment", "name": "Segment (polygons)", "active_widgets": _ACTIVE},
    {"id": "detect", "name": "Detect (rectangles)", "active_widgets": _ACTIVE},
]


class Mark(BaseModel):
    """A point ``[x, y]`` or a rectangle ``[x1, y1, x2, y2]`` (pixels); label 1 adds, 0 removes (points only)."""

    model_config = ConfigDict(strict=True)

    type: Literal["point", "rectangle"]
    data: Union[Annotated[list[Coord], Field(min_length=2, max_length=2)], Annotated[list[Coord], Field(min_length=4, max_length=4)]]
    label: Int(0, 1) = 1  # type: ignore[valid-type]


class PredictParams(BaseModel):
    model_config = ConfigDict(strict=True)

    conf_threshold: Optional[Unit] = None
    iou_threshold: Optional[Unit] = None
    epsilon_factor: Unit = 0.001
    text_prompt: Optional[str] = Field(None, max_length=MAX_TEXTS * (MAX_TEXT_CHARS + 1),
                                       description=f"comma-separated texts: at most {MAX_TEXTS}, {MAX_TEXT_CHARS} characters each")
    marks: list[Mark] = Field(default_factory=list, max_length=MAX_MARKS)
    current_task: Optional[str] = Field(None, max_length=64)
    reset_tracker: Optional[bool] = None
    filter_classes: Optional[list[Annotated[str, Field(max_length=256)]]] = Field(None, max_length=256)


class PredictRequest(BaseModel):
    """What X-AnyLabeling's RemoteServer.predict_shapes posts."""

    model_config = ConfigDict(strict=True)

    model: str = Field(MODEL_ID, max_length=128)
    image: str = Field(..., description="data:image/...;base64,... (or plain base64)")
    params: PredictParams = Field(default_factory=PredictParams)


def marks_to_prompts(marks: list[Mark | dict[str, Any]], text_prompt: str | None) -> dict[str, Any]:
    """X-AnyLabeling marks and text → keyword arguments of ``FastSAM.prompt``."""
    points, labels, boxes = [], [], []
    for m in marks:
        if isinstance(m, Mark):
            m = m.model_dump()
        kind, data, label = m.get("type"), m.get("data"), m.get("label", 1)
        if label not in (0, 1):
            raise BadPromptError(f"a mark's label is 1 (add) or 0 (remove), got {label!r}")
        if kind == "point":
            if not isinstance(data, list) or len(data) != 2:
                raise BadPromptError(f"a point mark is [x, y], got {str(data)[:80]}")
            points.append(data)
            labels.append(label)
        elif kind == "rectangle":
            if label == 0:
                raise BadPromptError("FastSAM takes positive rectangles only (a negative rectangle was sent)")
            if not isinstance(data, list) or len(data) != 4:
                raise BadPromptError(f"a rectangle mark is [x1, y1, x2, y2], got {data!r}")
            try:
                x1, y1, x2, y2 = (float(v) for v in data)
            except (TypeError, ValueError):
                raise BadPromptError(f"a rectangle mark is 4 numbers, got {data!r}") from None
            boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])  # drawn in any direction
        else:
            raise BadPromptError(f"unknown mark type {kind!r} (point or rectangle)")
    out: dict[str, Any] = {}
    if points:
        out["points"], out["labels"] = points, labels
    if boxes:
        out["bboxes"] = boxes
    texts = [t.strip() for t in (text_prompt or "").split(",") if t.strip()]
    if len(texts) > MAX_TEXTS or any(len(t) > MAX_TEXT_CHARS for t in texts):
        raise BadPromptError(f"text_prompt takes at most {MAX_TEXTS} texts of at most {MAX_TEXT_CHARS} characters")
    if texts:
        out["texts"] = texts
    return out


def shapes(result: Result, task: str | None, epsilon: float) -> list[dict[str, Any]]:
    """X-AnyLabeling shapes: polygons from the masks (``task`` "segment", default) or 4-corner rectangles."""
    labels = []
    for tags in result.selected_by or [[] for _ in range(len(result))]:
        texts = [t[5:] for t in tags if t.startswith("text:")]
        labels.append(texts[0] if texts else LABEL)
    out: list[dict[str, Any]] = []
    if task == "detect":
        for box, score, label in zip(result.boxes.tolist(), result.scores.tolist(), labels):
            x1, y1, x2, y2 = (round(v, 2) for v in box)
            out.append({"label": label, "shape_type": "rectangle", "points": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]],
                        "score": round(score, 4), "group_id": None})
        return out
    for i, (parts, score, label) in enumerate(zip(result.exteriors(epsilon), result.scores.tolist(), labels)):
        for p in parts:
            out.append({"label": label, "shape_type": "polygon",
                        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in p.tolist()],
                        "score": round(score, 4), "group_id": i if len(parts) > 1 else None})
    return out


def router(engine: Engine, config: ServerConfig) -> APIRouter:
    """``GET /v1/models`` and ``POST /v1/predict``."""
    r = APIRouter(tags=["X-AnyLabeling"])

    @r.get("/v1/models", summary="X-AnyLabeling: the models this server offers and their widgets")
    async def models() -> dict[str, Any]:
        name = "FastSAM"
        if engine.ready.is_set():
            name = f"FastSAM ({engine.model.onnx_path.parent.name}, fastsam-onnx)"
        return {"success": True, "data": {MODEL_ID: {
            "display_name": name, "widgets": _WIDGETS, "batch_processing_mode": "default", "available_tasks": TASKS}}}

    @r.post("/v1/predict", summary="X-AnyLabeling: shapes for an image and its marks / text prompt",
            responses={k: {"model": ErrorResponse} for k in (400, 401, 413, 415, 422, 429, 503, 504)},
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PredictRequest"}}}}})
    async def predict(request: Request) -> dict[str, Any]:
        deadline = time.monotonic() + config.timeout
        req = await read_json(request, PredictRequest, config.max_upload_bytes)
        if req.model != MODEL_ID:
            raise BadPromptError(f"unknown model {req.model[:64]!r}: this server offers {MODEL_ID!r} (GET /v1/models)")
        p = req.params
        settings = {"conf": 0.4 if p.conf_threshold is None else p.conf_threshold,
                    "iou": 0.9 if p.iou_threshold is None else p.iou_threshold,
                    "imgsz": None, "max_det": 300, "retina": True}
        prompts = marks_to_prompts(p.marks, p.text_prompt)
        image_id, result, _ = await engine.everything(decode_base64(req.image), settings, deadline)
        out = await engine.run(_predict_sync, engine, result, prompts, p.current_task, p.epsilon_factor, deadline=deadline)
        if prompts.get("texts") is not None:
            engine.cache.touch(image_id)
        return {"success": True, "data": {"shapes": out, "description": ""}}  # description: the image's, left alone

    return r


def _predict_sync(engine: Engine, result: Result, prompts: dict[str, Any], task: str | None, epsilon: float) -> list[dict[str, Any]]:
    return shapes(engine.prompt(result, prompts) if prompts else result, task, epsilon)
