"""Annotation files from a :class:`~fastsam_onnx.result.Result`: the instance JSON (COCO RLE), labelme JSON and
YOLO-seg txt, plus the instance-embedding ``.npy``. Every file is written atomically (:mod:`fastsam_onnx.fileio`).

- ``coco``: :meth:`Result.to_json` — boxes, scores and the exact masks as COCO RLE (the CLI's default).
- ``labelme``: labelme's JSON (``version``, ``flags``, ``shapes``, ``imagePath`` relative to the JSON file,
  ``imageData`` null, ``imageHeight``/``imageWidth``); one ``polygon`` shape per outer part of each mask,
  with the instance's ``score``. Parts of one instance share a ``group_id`` (the instance index), so labelme's
  tools merge them back; single-part instances have ``group_id`` null.
- ``yolo``: YOLO-seg txt, one line per outer part: ``CLASS x1 y1 x2 y2 ...`` normalised to [0, 1] by the
  image width and height (ultralytics' dataset format); an image without instances gives an empty file.

Polygons are :meth:`Result.exteriors` (outer contours, vertices at boundary-pixel centres, original-image pixels)
simplified with ``epsilon`` × each contour's perimeter (default :data:`DEFAULT_EPSILON`). labelme and YOLO-seg
polygons cannot hold holes: their shapes are the outer parts' exteriors (a ring becomes a disk, and a part inside
its hole, covered by that disk, is not listed: ``cv2.RETR_EXTERNAL``, as X-AnyLabeling and ultralytics trace
masks); the ``coco`` format keeps the exact mask.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import BadArgumentError
from ..fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..result import Result
from ..parallel import parallel_imap
from .numtext import fixed_texts, join_fixed, join_table

__all__ = [
    "FORMATS", "DEFAULT_EPSILON", "LABELME_VERSION", "labelme_json", "labelme_text", "yolo_text", "annotation_path",
    "check_unique_outputs", "write_annotation", "read_annotation", "write_embeddings",
]

#: the annotation formats of --format and write_annotation
FORMATS = ("coco", "labelme", "yolo")
#: polygon simplification, a fraction of each contour's perimeter (X-AnyLabeling's ``epsilon_factor`` default):
#: ~1 px on a 1000 px outline; about a tenth of the traced vertices remain on smooth shapes
DEFAULT_EPSILON = 0.001
#: the labelme file-format version written (the 5.x layout, which labelme 4, 5 and 6 read)
LABELME_VERSION = "5.5.0"


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadArgumentError(f"annotation format is one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def _exteriors(result: Result, epsilon: float) -> tuple[list[tuple[int, int]], np.ndarray, list[int], list[tuple[int, int]]]:
    """Every polygon's exterior, instances in order and their parts largest first: (instance, parts of that
    instance) per polygon; the (P, 2) float32 vertices of all of them end to end and where each one starts (one
    more entry: the end); ranges of polygons holding about :data:`_CHUNK` coordinates each (formatted apart, on
    the output threads: what is held at once stays small)."""
    from .polygons import crops_exteriors

    pts, lens, owner = crops_exteriors(result.original_crops(), epsilon)
    counts = np.bincount(owner, minlength=len(result)) if len(owner) else np.zeros(len(result), np.int64)
    owners = list(zip(owner.tolist(), counts[owner].tolist()))
    ends = np.cumsum(lens)
    at = [0, *ends.tolist()]
    # a range ends with the polygon that reaches each multiple of _CHUNK // 2 vertices (_CHUNK coordinates)
    marks = np.arange(1, -(-2 * len(pts) // _CHUNK)) * (_CHUNK // 2)
    cuts = np.unique(np.searchsorted(ends, marks) + 1)
    bounds = [0, *cuts[cuts < len(lens)].tolist(), len(lens)] if len(lens) else []
    return owners, pts, at, list(zip(bounds[:-1], bounds[1:]))


_CHUNK = 1 << 18  # coordinates formatted at once by one thread


def _labelme_head(result: Result, json_path: str | os.PathLike[str], image_path: Any, label: Any) -> dict[str, Any]:
    path = result.path if image_path is None else image_path
    if path is None:
        raise BadArgumentError("labelme needs the image's file (imagePath): segment a path or pass image_path")
    if not isinstance(label, str) or not label.strip():
        raise BadArgumentError(f"label must be a non-empty string, got {label!r}")
    rel = os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(json_path)))
    h, w = result.orig_shape
    return {
        "version": LABELME_VERSION, "flags": {}, "shapes": [], "imagePath": Path(rel).as_posix(),
        "imageData": None, "imageHeight": int(h), "imageWidth": int(w),
    }


def labelme_json(
    result: Result, json_path: str | os.PathLike[str], image_path: str | os.PathLike[str] | None = None,
    *, label: str = "object", epsilon: float = DEFAULT_EPSILON,
) -> dict[str, Any]:
    """labelme's JSON for ``result``, to be saved at ``json_path`` (``imagePath`` is made relative to it).

    image_path: the image file (default ``result.path``); label: every shape's label. Shapes: per instance
    (in order) one polygon per connected part, largest first, points in original-image pixels (1 decimal)."""
    data = _labelme_head(result, json_path, image_path, label)
    owners, pts, at, _ = _exteriors(result, epsilon)
    scores = result.scores.tolist()
    for k, (i, parts) in enumerate(owners):
        data["shapes"].append({
            "label": label, "points": np.round(pts[at[k] : at[k + 1]].astype(np.float64), 1).tolist(),
            "group_id": i if parts > 1 else None,
            "description": "", "shape_type": "polygon", "flags": {}, "score": round(scores[i], 6),
        })
    return data


def labelme_text(
    result: Result, json_path: str | os.PathLike[str], image_path: str | os.PathLike[str] | None = None,
    *, label: str = "object", epsilon: float = DEFAULT_EPSILON,
) -> str:
    """:func:`labelme_json` as the file's text: the same JSON, indented with one shape per line, its numbers
    formatted in whole arrays (:func:`~fastsam_onnx.outputs.numtext.join_fixed`) rather than one by one."""
    return "".join(_labelme_parts(result, json_path, image_path, label, epsilon))


def _labelme_parts(result: Result, json_path: Any, image_path: Any, label: Any, epsilon: float) -> Iterator[str]:
    """:func:`labelme_text` in parts, made as they are written (the file's text is never held whole)."""
    head = _labelme_head(result, json_path, image_path, label)
    owners, pts, at, ranges = _exteriors(result, epsilon)
    scores = [json.dumps(round(v, 6)) for v in result.scores.tolist()]
    name = json.dumps(label, ensure_ascii=False)
    numbers = _numbers(pts, lambda xy: np.rint(xy * 10).astype(np.int64), 1)  # 1 decimal: json.dumps(round(v, 1))
    opening = f'    {{"label": {name}, "points": [['
    closing = {i: f', "group_id": {i if parts > 1 else "null"}, "description": "", "shape_type": "polygon", '
                  f'"flags": {{}}, "score": {scores[i]}}}' for i, parts in dict(owners).items()}  # per instance
    between = {i: text + ",\n" + opening for i, text in closing.items()}

    def shape_lines(span: tuple[int, int]) -> str:
        lens = np.diff(at[span[0] : span[1] + 1])
        codes = np.ones(2 * int(lens.sum()), np.uint8)  # x ", " y "], [" ...
        codes[::2] = 0
        codes[2 * np.cumsum(lens) - 1] = 2  # ... y "]]", then a mark where each shape's points end
        points = numbers(at[span[0]], at[span[1]], codes, (", ", "], [", "]]\x01")).split("\x01")
        ids = [i for i, _ in owners[span[0] : span[1]]]
        rest = [between[i] for i in ids[:-1]] + [closing[ids[-1]]]
        return opening + "".join(itertools.chain.from_iterable(zip(points, rest)))

    def parts() -> Iterator[str]:
        yield "{\n"
        for k, (key, value) in enumerate(head.items()):
            yield f",\n  {json.dumps(key)}: " if k else f"  {json.dumps(key)}: "
            if key != "shapes":
                yield json.dumps(value, ensure_ascii=False)
            elif ranges:
                yield "[\n"
                for j, lines in enumerate(parallel_imap(shape_lines, ranges)):  # formatted a few chunks at a time
                    yield (",\n" if j else "") + lines
                yield "\n  ]"
            else:
                yield "[]"
        yield "\n}\n"

    return parts()


def yolo_text(result: Result, *, class_id: int = 0, epsilon: float = DEFAULT_EPSILON) -> str:
    """YOLO-seg label text: one line ``class_id x1 y1 ...`` per connected part of each instance (in order,
    largest part first), coordinates divided by the image width / height, 6 decimals (rounded up)."""
    if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)) or class_id < 0:
        raise BadArgumentError(f"class_id must be an int >= 0, got {class_id!r}")
    return "".join(_yolo_parts(result, class_id, epsilon))


def _yolo_parts(result: Result, class_id: int, epsilon: float) -> Iterator[str]:
    """:func:`yolo_text` in parts, made as they are written (the file's text is never held whole)."""
    h, w = result.orig_shape
    _, pts, at, ranges = _exteriors(result, epsilon)
    prefix = f"{int(class_id)} "
    scale = np.array([w, h], np.float64)
    # rounded up at the 6th decimal (at most w × 1e-6 px): x_norm × w never falls below the vertex, so
    # rasterisers that truncate (ultralytics' polygon2mask) land on the same pixel
    numbers = _numbers(pts, lambda xy: np.ceil(xy / scale * 1e6).clip(0, 1e6).astype(np.int64), 6)

    def lines(span: tuple[int, int]) -> str:
        lens = np.diff(at[span[0] : span[1] + 1])
        codes = np.zeros(2 * int(lens.sum()), np.uint8)
        codes[2 * np.cumsum(lens) - 1] = 1  # each line's last number
        return prefix + numbers(at[span[0]], at[span[1]], codes, (" ", "\n"))[:-1].replace("\n", "\n" + prefix) + "\n"

    return parallel_imap(lines, ranges)


def _numbers(pts: np.ndarray, scaled: Callable[[np.ndarray], np.ndarray], decimals: int) -> Callable[..., Any]:
    """The text of the vertices ``pts[a:b]`` ((P, 2) float32 x, y) as ``join_fixed(scaled(xy), decimals, ...)``
    gives it, xy in float64: ``numbers(a, b, codes, seps)``. When every vertex is a whole pixel (as
    traced), each axis's numbers are looked up in a table of ``scaled`` at every pixel there (the same
    element-wise arithmetic, so the same text): one lookup per number instead of its digits."""
    lookup = None
    if pts.size and 0 <= float(pts.min()) and float(pts.max()) < _TABLE_PX:
        grid = pts.astype(np.int32)
        if np.array_equal(grid, pts):
            side = int(grid.max()) + 1
            axes = scaled(np.repeat(np.arange(side, dtype=np.float64)[:, None], 2, axis=1))  # (side, 2): x, y
            index = grid.reshape(-1)  # x, y, x, y, ...: x into the first table half, y into the second
            index[1::2] += side
            lookup = index, fixed_texts(axes.T.ravel(), decimals)

    def numbers(a: int, b: int, codes: np.ndarray, seps: tuple[str, ...]) -> Any:  # the text (no ends asked)
        if lookup is not None:
            return join_table(lookup[0][2 * a : 2 * b], lookup[1], codes, seps)
        return join_fixed(scaled(pts[a:b].astype(np.float64)).ravel(), decimals, codes, seps)

    return numbers


_TABLE_PX = 1 << 16  # vertex coordinates below this are looked up in a table of every pixel's text


def annotation_path(out_dir: Path, rel: Path, fmt: str) -> Path:
    """Folder mode: where image ``rel`` (relative to the folder) has its file under ``out_dir``:
    ``a/b.jpg`` → ``a/b.jpg.json`` (coco), ``a/b.json`` (labelme, as labelme names them), ``a/b.txt`` (yolo,
    as ultralytics looks them up: give ``--out-dir DATASET/labels`` for images under ``DATASET/images``)."""
    fmt = _format(fmt)
    if fmt == "coco":
        return out_dir / rel.with_name(rel.name + ".json")
    return out_dir / rel.with_suffix(".json" if fmt == "labelme" else ".txt")


def check_unique_outputs(rels: Sequence[Path], fmt: str) -> None:
    """BadArgumentError when two images would write the same annotation file (``b.jpg`` and ``b.png`` in one
    folder, for labelme and yolo, which name files by the stem)."""
    seen: dict[Path, Path] = {}
    for rel in rels:
        dest = annotation_path(Path(), rel, fmt)
        if dest in seen:
            raise BadArgumentError(f"--format {fmt}: {seen[dest]} and {rel} would both write {dest}; rename one")
        seen[dest] = rel


def write_annotation(
    dest: str | os.PathLike[str], result: Result, fmt: str = "coco", *, image_path: str | None = None,
    epsilon: float = DEFAULT_EPSILON, label: str = "object", compressed: bool = True,
) -> Path:
    """Write ``result`` to ``dest`` in ``fmt`` (coco / labelme / yolo), atomically; returns ``dest``.

    image_path: the image as the file should name it (coco: ``image.path``; labelme: made relative to
    ``dest``); default ``result.path``. epsilon and label apply to the polygon formats; compressed to coco
    (:meth:`Result.to_json`: COCO's compressed RLE strings, or run-length lists)."""
    fmt = _format(fmt)
    if fmt == "coco":
        return atomic_write_json(dest, result.to_json(image_path, compressed=compressed))
    if fmt == "labelme":
        return atomic_write_text(dest, _labelme_parts(result, dest, image_path, label, epsilon))
    return atomic_write_text(dest, _yolo_parts(result, 0, epsilon))


def read_annotation(path: Path, fmt: str) -> Any | None:
    """The annotation at ``path`` if it exists and parses as ``fmt`` writes it, else None (``--skip-existing``
    redoes missing, truncated or foreign files). coco: the result dict; labelme: the dict; yolo: the lines."""
    fmt = _format(fmt)
    try:
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8")
        if fmt == "yolo":
            if text and not text.endswith("\n"):
                return None  # a complete file ends with a newline
            lines = text.splitlines()
            for line in lines:
                v = [float(x) for x in line.split()]
                if len(v) < 7 or len(v) % 2 == 0 or not all(math.isfinite(x) for x in v):
                    return None
            return lines
        data = json.loads(text)
        if fmt == "labelme":
            ok = isinstance(data["shapes"], list) and isinstance(data["imagePath"], str) and isinstance(data["imageWidth"], int)
            return data if ok and all(isinstance(s["points"], list) for s in data["shapes"]) else None
        ok = isinstance(data["image"]["width"], int) and isinstance(data["instances"], list)
        return data if ok and all("segmentation" in inst for inst in data["instances"]) else None
    except (OSError, ValueError, RecursionError, KeyError, TypeError, IndexError):
        return None


def write_embeddings(dest: str | os.PathLike[str], embeddings: np.ndarray) -> Path:
    """Save an (N, D) float32 array as ``.npy`` (``numpy.load`` reads it) atomically; returns ``dest``."""
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.dtype != np.float32:
        raise BadArgumentError(f"embeddings are an (N, D) float32 array, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return atomic_write_bytes(dest, buf.getvalue())
