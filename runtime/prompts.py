"""Prompt selection on a segment-everything result: boxes, points with labels, texts (through CLIP).

Semantics of ultralytics ``FastSAMPredictor.prompt``: each prompt type ORs its picks into one selection
over the instances, which keep their order. Masks are taken at the original image size. Functions here
work on :class:`~fastsam_onnx.masks.MaskCrop` lists (instance masks stored inside their boxes).

Malformed prompts raise :class:`BadPromptError`; coordinates outside the image are clipped as the
reference clips them (boxes to [0, w] × [0, h], points to [0, w-1] × [0, h-1]).

Point prompts tag their picks ``point:k``, k = the point's index in the prompt's list (negative points count),
in every mode: ``select`` tags an instance with each positive point that picked it (all labels 0: with every
point), ``merge`` tags its one instance with the positive points that hit an instance.

Modes beyond the reference: ``point_mode="each"`` picks one instance per positive point (the highest-scoring
instance whose mask contains the point and that no negative point hits; tag ``point:k``); ``text_mode="all"`` picks, per text, every candidate crop whose cosine similarity to the
text (CLIP embeddings, both L2-normalised) is >= ``text_threshold``, and reports it in ``prompt_scores``; each
text's best similarity over every candidate, picked or not, is in ``best_prompt_scores`` (:func:`unmatched_texts`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from .errors import BadArgumentError, BadPromptError
from .masks import MaskCrop
from .result import Result

_I32 = np.iinfo(np.int32)

#: The prompt kinds, as prompts files and the JSON API name them, with the form each takes (``FastSAM.prompt``
#: takes the same keywords, but ``bboxes`` for boxes, the reference's name: :data:`PROMPT_ARGUMENTS`).
PROMPT_FORMS = {"boxes": "[[x1,y1,x2,y2]...]", "points": "[[x,y]...]", "labels": "[...]", "texts": "[...]"}
PROMPT_KEYS = tuple(PROMPT_FORMS)
PROMPT_ARGUMENTS = {**{k: k for k in PROMPT_KEYS}, "boxes": "bboxes"}
#: ``point_mode`` and ``text_mode`` values, the default first.
POINT_MODES = ("select", "merge", "each")
TEXT_MODES = ("select", "original", "all")


def quoted_choices(names: Sequence[str]) -> str:
    """``'a', 'b' or 'c'``: the names for a message."""
    quoted = [repr(n) for n in names]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else "".join(quoted)


def _finite_array(values, width: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadPromptError(f"{what} must be numbers, got {values!r}") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] == 0:
        raise BadPromptError(f"{what} must have shape ({width},) or (K, {width}), got {np.shape(values)}")
    if not np.isfinite(arr).all():
        raise BadPromptError(f"{what} contain NaN or infinite values: {arr.tolist()}")
    return arr


def parse_boxes(bboxes, image_shape: tuple[int, int]) -> np.ndarray:
    """Box prompts → (K, 4) int64 xyxy, truncated toward zero and clipped to [0, w] × [0, h] (pixels).

    Raises :class:`BadPromptError` for NaN/inf, a wrong shape, or x2 < x1 / y2 < y1.
    """
    arr = _finite_array(bboxes, 4, "boxes")
    if (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        raise BadPromptError(f"boxes must be x1, y1, x2, y2 with x2 >= x1 and y2 >= y1, got {arr.tolist()}")
    boxes = np.trunc(arr.clip(_I32.min, _I32.max)).astype(np.int64)
    h, w = image_shape
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes


def parse_points(points, labels, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts → ((K, 2) int64 x, y clipped to [0, w-1] × [0, h-1], (K,) int64 labels 0/1).

    Labels default to 1 (positive). Raises :class:`BadPromptError` for NaN/inf, a wrong shape, labels of
    another length or labels other than 0 and 1.
    """
    pts = _finite_array(points, 2, "points")
    coords = np.trunc(pts.clip(_I32.min, _I32.max)).astype(np.int64)
    h, w = image_shape
    coords[:, 0] = coords[:, 0].clip(0, w - 1)
    coords[:, 1] = coords[:, 1].clip(0, h - 1)
    if labels is None:
        lab = np.ones(len(coords), dtype=np.int64)
    else:
        try:
            lab = np.atleast_1d(np.asarray(labels))
        except (TypeError, ValueError):
            raise BadPromptError(f"labels must be a list of 0/1 numbers, got {labels!r}") from None
        if lab.ndim != 1 or len(lab) != len(coords):
            raise BadPromptError(f"got {len(coords)} points but labels of shape {np.shape(labels)}: one label per point")
        if not np.isin(lab, (0, 1)).all():
            raise BadPromptError(f"labels must be 1 (foreground) or 0 (background), got {lab.tolist()}")
        lab = lab.astype(np.int64)
    return coords, lab


def parse_texts(texts) -> list[str]:
    """A string or a list of strings → list; empty or blank strings raise :class:`BadPromptError`."""
    try:
        items = [texts] if isinstance(texts, str) else list(texts)
    except TypeError:
        raise BadPromptError(f"texts must be a string or a list of strings, got {texts!r}") from None
    if not items:
        raise BadPromptError("texts is an empty list")
    for t in items:
        if not isinstance(t, str) or not t.strip():
            raise BadPromptError(f"text prompts must be non-empty strings, got {t!r}")
    return items


def _inside(crop: MaskCrop, x1: int, y1: int, x2: int, y2: int) -> int:
    """Number of the crop's mask pixels inside the pixel rectangle [x1, x2) × [y1, y2)."""
    x0, y0, m = crop
    xs, ys = max(x1, x0), max(y1, y0)
    xe, ye = min(x2, x0 + m.shape[1]), min(y2, y0 + m.shape[0])
    return int(np.count_nonzero(m[ys - y0 : ye - y0, xs - x0 : xe - x0])) if xe > xs and ye > ys else 0


def select_by_boxes(crops: Sequence[MaskCrop], boxes: np.ndarray, areas: np.ndarray | None = None) -> np.ndarray:
    """For each (K, 4) int box: the instance maximising inter / (box area + mask area - inter).

    inter = the instance's mask pixels inside the box; areas: the crops' mask areas when known. Returns (K,)
    int64 instance indices (the first on ties, computed in float32 as the reference does).
    """
    if areas is None:
        areas = np.array([np.count_nonzero(c.mask) for c in crops], dtype=np.int64)
    picks = []
    for x1, y1, x2, y2 in boxes.tolist():
        inter = np.array([_inside(c, x1, y1, x2, y2) for c in crops], dtype=np.int64)
        union = (x2 - x1) * (y2 - y1) + areas - inter
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 (empty box, empty mask) is NaN, as in torch
            picks.append(int(np.argmax(inter.astype(np.float32) / union.astype(np.float32))))
    return np.asarray(picks, dtype=np.int64)


def _hits(crops: Sequence[MaskCrop], coords: np.ndarray) -> np.ndarray:
    """(N, K) bool: instance i's mask is on at point k."""
    out = np.zeros((len(crops), len(coords)), dtype=bool)
    for i, (x0, y0, m) in enumerate(crops):
        x, y = coords[:, 0] - x0, coords[:, 1] - y0
        ok = (x >= 0) & (y >= 0) & (x < m.shape[1]) & (y < m.shape[0])
        out[i, ok] = m[y[ok], x[ok]]
    return out


def point_picks(crops: Sequence[MaskCrop], coords: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, K) bool: point k picks instance i (``point_mode="select"``): a positive point picks the instances
    it hits that no negative point hits; when all labels are 0, every point picks every instance that no
    negative point hits."""
    hits = _hits(crops, coords)
    allowed = ~hits[:, labels == 0].any(1)
    if labels.sum() == 0:
        return np.repeat(allowed[:, None], len(coords), axis=1)
    return hits & (labels == 1)[None, :] & allowed[:, None]


def select_by_points(crops: Sequence[MaskCrop], coords: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) bool: instances hit by any positive point and by no negative point (every instance not hit
    by a negative point when all labels are 0)."""
    return point_picks(crops, coords, labels).any(1)


def select_each_point(
    crops: Sequence[MaskCrop], scores: np.ndarray, coords: np.ndarray, labels: np.ndarray
) -> list[tuple[int, int]]:
    """``point_mode="each"``: (point index k, instance index) for each positive point k, in order.

    The instance is the highest-scoring one (the first on ties) whose mask is on at the point and that no
    negative point hits; a positive point with no such instance gives no pair. Two points may give the
    same instance."""
    hits = _hits(crops, coords)
    allowed = ~hits[:, labels == 0].any(1)
    out = []
    for k in np.flatnonzero(labels == 1):
        cand = np.flatnonzero(hits[:, k] & allowed)
        if cand.size:
            out.append((int(k), int(cand[np.argmax(scores[cand])])))
    return out


def merge_by_points(crops: Sequence[MaskCrop], coords: np.ndarray, labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The original FastSAM point prompt: ONE (H, W) bool mask. Instances by area, largest first; for each
    point in order that hits the instance, a positive label paints its mask on, a negative one off."""
    hits = _hits(crops, coords)
    areas = np.array([np.count_nonzero(c.mask) for c in crops], dtype=np.int64)
    out = np.zeros(shape, dtype=bool)
    for i in np.argsort(-areas, kind="stable"):
        x0, y0, m = crops[i]
        view = out[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        for k in np.flatnonzero(hits[i]):
            view[m] = bool(labels[k])
    return out


def select_by_texts(similarity: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """(M, K) text-by-crop similarity → (M,) instance indices: per text the best crop, mapped back
    through ``keep`` (the instance index of each crop)."""
    return np.asarray(keep, dtype=np.int64)[np.argmax(similarity, axis=1)]


def select_all_by_texts(similarity: np.ndarray, keep: Sequence[int], threshold: float) -> list[list[tuple[int, float]]]:
    """``text_mode="all"``: (M, K) cosine similarities → per text, every (instance index, similarity) whose
    crop scores >= ``threshold``, in instance order (indices mapped back through ``keep``)."""
    idx = np.asarray(keep, dtype=np.int64)
    return [[(int(idx[k]), float(row[k])) for k in np.flatnonzero(row >= threshold)] for row in similarity]


def unmatched_texts(result: Result, threshold: float | None = None) -> list[str]:
    """``text_mode="all"``: one line per text that selected nothing, with the best cosine similarity it saw
    (from ``result.best_prompt_scores``) against ``threshold``; [] when every text selected something."""
    picked = {t for tags in result.selected_by or [] for t in tags}
    against = "" if threshold is None else f" < the threshold {threshold:g}"
    out = []
    for tag, cos in (result.best_prompt_scores or {}).items():
        if tag.startswith("text:") and tag not in picked:
            seen = "no candidate instance (masks over 100 px)" if cos is None else f"best cosine similarity {cos:.3f}{against}"
            out.append(f"text {tag[5:]!r} selected nothing: {seen}")
    return out


def check_modes(point_mode: str, text_mode: str, text_threshold) -> float | None:
    """Validate the prompt modes; returns ``text_threshold`` as a float (None when not given).

    ``text_threshold`` (a cosine similarity in [-1, 1]) goes with ``text_mode="all"`` and only with it."""
    if point_mode not in POINT_MODES or text_mode not in TEXT_MODES:
        raise BadArgumentError(
            f"point_mode is {quoted_choices(POINT_MODES)}, text_mode {quoted_choices(TEXT_MODES)}; got {point_mode!r}, {text_mode!r}"
        )
    if text_threshold is None:
        return None
    if text_mode != "all":
        raise BadArgumentError(f"text_threshold applies to text_mode='all' only (text_mode is {text_mode!r})")
    if isinstance(text_threshold, (bool, np.bool_)) or not isinstance(text_threshold, (int, float, np.integer, np.floating)):
        raise BadArgumentError(f"text_threshold must be a number in [-1, 1], got {text_threshold!r}")
    if not -1 <= float(text_threshold) <= 1:  # NaN fails too
        raise BadArgumentError(f"text_threshold is a cosine similarity in [-1, 1], got {text_threshold!r}")
    return float(text_threshold)


def apply_prompts(
    result: Result,
    clip_getter: Callable[[], Any],
    *,
    bboxes=None,
    points=None,
    labels=None,
    texts: str | Sequence[str] | None = None,
    point_mode: str = "select",
    text_mode: str = "select",
    text_threshold: float | None = None,
) -> Result:
    """The body of :meth:`fastsam_onnx.FastSAM.prompt` (see there for the semantics): select the instances
    of ``result`` that the prompts pick. ``clip_getter()`` returns the CLIP model (an object with
    ``encode_images`` and ``encode_texts``), called only when there are texts and candidate crops; the crops'
    embeddings are cached on ``result`` (:meth:`Result.text_crop_embeddings`)."""
    if not isinstance(result, Result):
        raise BadArgumentError(f"prompt takes a Result from segment(), got {type(result).__name__}")
    threshold = check_modes(point_mode, text_mode, text_threshold)
    if text_mode == "all" and texts is not None and threshold is None:
        raise BadArgumentError("text_mode='all' needs text_threshold (a cosine similarity: the demo CLIP ~0.65; see docs/prompts.md)")
    t0 = time.perf_counter()
    shape = result.orig_shape
    boxes_p = None if bboxes is None else parse_boxes(bboxes, shape)
    points_p = None if points is None else parse_points(points, labels, shape)
    if points is None and labels is not None:
        raise BadPromptError("labels given without points")
    texts_p = None if texts is None else parse_texts(texts)
    special = (point_mode == "merge" and points_p is not None) or (text_mode == "original" and texts_p is not None)
    if special and sum(p is not None for p in (boxes_p, points_p, texts_p)) > 1:
        raise BadArgumentError("point_mode='merge' and text_mode='original' take only their own prompt type")
    if text_mode == "original" and texts_p is not None and len(texts_p) != 1:
        raise BadPromptError(f"text_mode='original' takes exactly one text, got {len(texts_p)}")
    if len(result) == 0:
        empty = result.select([], [])
        if text_mode == "all" and texts_p is not None:
            empty.prompt_scores = []
            empty.best_prompt_scores = {f"text:{t}": None for t in texts_p}
        return empty
    crops = result.original_crops()
    tags: list[list[str]] = [[] for _ in crops]
    scored: list[dict[str, float]] = [{} for _ in crops]  # text_mode="all": tag → cosine similarity
    best: dict[str, float | None] = {f"text:{t}": None for t in texts_p or ()}  # text_mode="all": tag → best cosine
    if boxes_p is not None:
        for k, i in enumerate(select_by_boxes(crops, boxes_p, result.original_areas())):
            tags[i].append(f"box:{k}")
    if points_p is not None:
        if point_mode == "merge":
            painted = np.flatnonzero((points_p[1] == 1) & _hits(crops, points_p[0]).any(0))  # its tags
            return merged_result(result, merge_by_points(crops, *points_p, shape), select_by_points(crops, *points_p),
                                 [f"point:{k}" for k in painted])
        if point_mode == "each":
            for k, i in select_each_point(crops, result.scores, *points_p):
                tags[i].append(f"point:{k}")
        else:
            for i, k in zip(*np.nonzero(point_picks(crops, *points_p))):  # row-major: per instance, k ascending
                tags[i].append(f"point:{k}")
    if texts_p is not None:
        if (result.original_areas() > 100).any():  # some instance can be a text candidate: CLIP is needed
            clip = clip_getter()
            feats, keep = result.text_crop_embeddings(clip)  # cached on the result: later texts cost the text tower
            if keep:
                sim = clip.encode_texts(texts_p) @ feats.T
                if text_mode == "all":
                    for text, row in zip(texts_p, sim):
                        best[f"text:{text}"] = round(float(row.max()), 6)
                    for text, picks in zip(texts_p, select_all_by_texts(sim, keep, threshold)):
                        for i, cos in picks:
                            if f"text:{text}" not in tags[i]:  # a repeated text tags once
                                tags[i].append(f"text:{text}")
                                scored[i][f"text:{text}"] = round(cos, 6)
                else:
                    for k, i in enumerate(select_by_texts(sim, keep)):
                        if f"text:{texts_p[k]}" not in tags[i]:  # a repeated text tags once
                            tags[i].append(f"text:{texts_p[k]}")
    idx = [i for i, t in enumerate(tags) if t]
    out = result.select(idx, [tags[i] for i in idx])
    if text_mode == "all" and texts_p is not None:
        out.prompt_scores = [scored[i] for i in idx]
        out.best_prompt_scores = best
    out.timings["prompt"] = (time.perf_counter() - t0) * 1e3
    return out


def merged_result(result: Result, mask: np.ndarray, hit: np.ndarray, tags: list[str]) -> Result:
    """A one-instance result holding ``mask`` (original size), selected by ``tags``: box = the mask's extent,
    score = the best score among the instances the points selected; empty when the mask is empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return result.select([], [])
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    score = result.scores[hit].max() if hit.any() else np.float32(0)
    return Result(
        np.array([[x0, y0, x1, y1]], dtype=np.float32), np.array([score], dtype=np.float32),
        [MaskCrop(int(x0), int(y0), mask[y0:y1, x0:x1].copy())], result.orig_shape, result.orig_shape,
        dict(result.timings), result.orig_img, [list(tags)], result.path,
    )
