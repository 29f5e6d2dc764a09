"""Label Studio's side of a prediction: the labeling config's tags, the annotator's smart regions as prompts, and a
:class:`~fastsam_onnx.Result` as Label Studio result regions.

* :func:`parse_config`: the ``<Image>`` tag (its name and the task data key of ``value="$key"``), the
  ``<BrushLabels>`` and ``<PolygonLabels>`` controls drawing on it (name and label values), and text prompts named
  by labels: ``<Label value="Car" prompt="a red car"/>`` (Label Studio keeps attributes it does not know).
* :func:`context_prompts`: interactive mode's ``context.result`` — smart ``keypointlabels`` (``is_positive``: 1,
  else 0) and ``rectanglelabels``, in percent of the image — as ``FastSAM.prompt`` arguments in pixels.
* :func:`regions`: per instance a ``brushlabels`` region (:func:`~fastsam_onnx.outputs.brush.brush_rle` of its crop
  at the original image size) or, for a config with only a polygon control, one ``polygonlabels`` region per
  outer outline (:meth:`~fastsam_onnx.Result.exteriors`, percent coordinates; Label Studio polygons have no holes);
  each with the instance's score.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadArgumentError, BadPromptError
from ..outputs.brush import brush_rle
from ..result import Result

__all__ = ["Control", "LabelConfig", "parse_config", "context_prompts", "regions"]


@dataclass
class Control:
    """An output control: its ``name``, result ``type`` (``brushlabels`` / ``polygonlabels``), ``to_name``, labels
    and, per label, a text prompt (``prompt`` attribute)."""

    name: str
    type: str
    to_name: str
    labels: list[str] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)


@dataclass
class LabelConfig:
    """What a labeling config says about where FastSAM's regions go."""

    image_name: str
    image_key: str
    control: Control  # the control regions are written to: brush when the config has one, else polygon
    brush: Control | None = None
    polygon: Control | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def parse_config(xml: str) -> LabelConfig:
    """The :class:`LabelConfig` of a labeling config; BadArgumentError when it has no ``<Image>`` with a
    ``<BrushLabels>`` or ``<PolygonLabels>`` control drawing on it."""
    if not isinstance(xml, str) or not xml.strip():
        raise BadArgumentError("the request has no label_config (the project's labeling config)")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise BadArgumentError(f"the labeling config is not valid XML: {e}") from None
    images = {el.get("name"): (el.get("value") or "") for el in root.iter() if _local(el.tag) == "image" and el.get("name")}
    controls: dict[str, Control] = {}
    for el in root.iter():
        kind = _local(el.tag)
        if kind not in ("brushlabels", "polygonlabels") or kind in controls:
            continue
        if el.get("toName") not in images or not el.get("name"):
            continue
        c = Control(el.get("name", ""), kind, el.get("toName", ""))
        for lab in el.iter():
            if _local(lab.tag) == "label" and lab.get("value") is not None:
                c.labels.append(lab.get("value", ""))
                if (lab.get("prompt") or "").strip():
                    c.prompts[lab.get("value", "")] = lab.get("prompt", "").strip()
        controls[kind] = c
    control = controls.get("brushlabels") or controls.get("polygonlabels")
    if control is None:
        raise BadArgumentError("the labeling config has no <BrushLabels> or <PolygonLabels> control on an <Image>: "
                               "FastSAM writes brush masks or polygons")
    value = images[control.to_name]
    key = value[1:] if value.startswith("$") else value
    if not key:
        raise BadArgumentError(f"the <Image name={control.to_name!r}> tag has no value=\"$field\"")
    return LabelConfig(control.to_name, key, control, controls.get("brushlabels"), controls.get("polygonlabels"))


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        raise BadPromptError(f"a smart region's {what} must be a number, got {v!r}")
    return float(v)


def _px(v: Any, what: str, size: int) -> float:
    """A percent coordinate in pixels of ``size``, rounded to 1e-6 px so a whole pixel survives the round trip
    (36 px → 5.625 % → 36.0, not 35.99999999: prompts truncate to pixel indices)."""
    return round(_number(v, what) * size / 100, 6)


def context_prompts(context: list[Any], width: int, height: int) -> tuple[dict[str, Any], str | None]:
    """Interactive ``context.result`` regions → (``FastSAM.prompt`` keyword arguments in pixels of a ``width`` ×
    ``height`` image, the label the annotator chose on the first region or None)."""
    points, labels, boxes = [], [], []
    label = None
    for r in context:
        if not isinstance(r, dict) or not isinstance(r.get("value"), dict):
            raise BadPromptError("each context.result item is a region with a 'value' object")
        kind, v = r.get("type"), r["value"]
        chosen = v.get(kind) if isinstance(kind, str) else None
        if label is None and isinstance(chosen, list) and chosen and isinstance(chosen[0], str):
            label = chosen[0]
        if kind == "keypointlabels":
            points.append([_px(v.get("x"), "x", width), _px(v.get("y"), "y", height)])
            labels.append(0 if r.get("is_positive") is False or r.get("is_positive") == 0 else 1)
        elif kind == "rectanglelabels":
            x, y = _px(v.get("x"), "x", width), _px(v.get("y"), "y", height)
            w, h = _px(v.get("width"), "width", width), _px(v.get("height"), "height", height)
            if _number(v.get("rotation", 0) or 0, "rotation") != 0:
                raise BadPromptError("FastSAM takes axis-aligned rectangles (a rotated smart rectangle was sent)")
            boxes.append([min(x, x + w), min(y, y + h), max(x, x + w), max(y, y + h)])
        else:
            raise BadPromptError(f"a smart region of type {kind!r}: FastSAM takes keypointlabels and rectanglelabels")
    out: dict[str, Any] = {}
    if points:
        out["points"], out["labels"] = points, labels
    if boxes:
        out["bboxes"] = boxes
    if not out:
        raise BadPromptError("interactive mode without a smart keypoint or rectangle in context.result")
    return out, label


def _labels(result: Result, control: Control, chosen: str | None, text_labels: dict[str, str]) -> list[str]:
    default = chosen if chosen in control.labels else (control.labels[0] if control.labels else "Object")
    out = []
    for tags in result.selected_by or [[] for _ in range(len(result))]:
        texts = [t[5:] for t in tags if t.startswith("text:")]
        out.append(text_labels.get(texts[0], default) if texts else default)
    return out


def regions(result: Result, cfg: LabelConfig, chosen: str | None = None, text_labels: dict[str, str] | None = None,
            epsilon: float = 0.001) -> list[dict[str, Any]]:
    """Label Studio result regions of ``result`` for ``cfg``'s control: labelled ``chosen`` when the control has
    that label, by the label of the text that picked an instance (``text_labels``: text → label), else the
    control's first label. Brush RLE from each crop at the original size; polygons in percent."""
    h0, w0 = result.orig_shape
    c = cfg.control
    common = {"from_name": c.name, "to_name": cfg.image_name, "original_width": int(w0), "original_height": int(h0),
              "image_rotation": 0, "readonly": False}
    labels = _labels(result, c, chosen, text_labels or {})
    out: list[dict[str, Any]] = []
    if c.type == "brushlabels":
        for crop, score, label in zip(result.original_crops(), result.scores.tolist(), labels):
            out.append({"id": secrets.token_hex(5), **common, "type": "brushlabels", "score": round(score, 4),
                        "value": {"format": "rle", "rle": brush_rle(crop.x0, crop.y0, crop.mask, (h0, w0)),
                                  "brushlabels": [label]}})
        return out
    for parts, score, label in zip(result.exteriors(epsilon), result.scores.tolist(), labels):
        for p in parts:
            pts = [[round(float(x) * 100 / w0, 4), round(float(y) * 100 / h0, 4)] for x, y in p.tolist()]
            if len(pts) >= 3:
                out.append({"id": secrets.token_hex(5), **common, "type": "polygonlabels", "score": round(score, 4),
                            "value": {"points": pts, "closed": True, "polygonlabels": [label]}})
    return out
