"""One row per image: the CLI's per-image JSON (``Result.to_json``) as a flat, typed Arrow record.

Columns (:func:`schema`):

========================  ==================================================================================
``path``                  the image as the CLI names it (relative to a source folder; as given otherwise)
``source``                the file or URI the worker read
``width``, ``height``     original image size, pixels (null for a bad image)
``mask_width/height``     the masks' size, pixels (the image's, or the network input's with ``--no-retina``)
``instances``             list of {id, box [x1, y1, x2, y2] original pixels, score, area (mask pixels),
                          segmentation {size [H, W], counts} (COCO's compressed RLE string, as the JSON),
                          selected_by [prompt tags] or null}
``timings_ms``            {preprocess, inference, postprocess, prompt (null without prompts)}, milliseconds
``error``                 null, or one line saying why this image failed (it never fails the job)
``node_id``, ``worker_pid``  where the row was made (Ray node id, process id): informational
========================  ==================================================================================

:func:`to_result_json` turns a row back into exactly the dict the CLI writes for that image, whichever reader gave
the row (pyarrow, pandas 2 or 3 with any ``dtype_backend``, JSON lines, Ray): :func:`is_null` takes None, NaN and
``pd.NA`` as null.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["COLUMNS", "schema", "row_of", "error_row", "to_result_json", "is_null", "to_table"]

#: the columns of a result row, in order (one row per image)
COLUMNS = ("path", "source", "width", "height", "mask_width", "mask_height", "instances", "timings_ms", "error",
           "node_id", "worker_pid")
TIMINGS = ("preprocess", "inference", "postprocess", "prompt")


def schema():
    """The ``pyarrow.Schema`` of a result row (pyarrow is imported here, not by ``import fastsam_onnx``)."""
    import pyarrow as pa

    instance = pa.struct([
        ("id", pa.int64()),
        ("box", pa.list_(pa.float64())),
        ("score", pa.float64()),
        ("area", pa.int64()),
        ("segmentation", pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.string())])),
        ("selected_by", pa.list_(pa.string())),
    ])
    return pa.schema([
        ("path", pa.string()), ("source", pa.string()),
        ("width", pa.int64()), ("height", pa.int64()), ("mask_width", pa.int64()), ("mask_height", pa.int64()),
        ("instances", pa.list_(instance)),
        ("timings_ms", pa.struct([(k, pa.float64()) for k in TIMINGS])),
        ("error", pa.string()), ("node_id", pa.string()), ("worker_pid", pa.int64()),
    ])


def row_of(data: dict[str, Any], source: str, node_id: str | None = None, worker_pid: int | None = None) -> dict[str, Any]:
    """The row of one image from its ``Result.to_json(path)`` dict."""
    instances = [
        {"id": i["id"], "box": i["box"], "score": i["score"], "area": i["area"], "segmentation": i["segmentation"],
         "selected_by": i.get("selected_by")}
        for i in data["instances"]
    ]
    return {
        "path": data["image"]["path"], "source": source,
        "width": data["image"]["width"], "height": data["image"]["height"],
        "mask_width": data["mask_size"]["width"], "mask_height": data["mask_size"]["height"],
        "instances": instances, "timings_ms": {k: data["timings_ms"].get(k) for k in TIMINGS},
        "error": None, "node_id": node_id, "worker_pid": worker_pid,
    }


def error_row(path: str, source: str, error: str, node_id: str | None = None, worker_pid: int | None = None) -> dict[str, Any]:
    """The row of an image that could not be segmented: ``error`` set, no size, no instances."""
    return {
        "path": path, "source": source, "width": None, "height": None, "mask_width": None, "mask_height": None,
        "instances": [], "timings_ms": None, "error": error, "node_id": node_id, "worker_pid": worker_pid,
    }


def to_table(rows: list[dict[str, Any]]):
    """Rows → a ``pyarrow.Table`` of :func:`schema` (the same schema for every batch, even an empty one)."""
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema())


def is_null(value: Any) -> bool:
    """Whether a reader's cell is a null: None (pyarrow, JSON), NaN (pandas' default float and ``str`` columns:
    pandas 3 reads a null ``error`` as NaN) or ``pd.NA`` / ``pd.NaT`` (pandas' nullable and ``pyarrow`` dtypes)."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")  # pandas' missing markers, without importing pandas


def _items(value: Any) -> list[Any]:
    """A list cell as a list: a list (pyarrow, JSON), a numpy array (pandas' object columns) or a null (→ [])."""
    return [] if is_null(value) else list(value)


def _counts(value: Any) -> str | list[int]:
    """RLE counts: a list of run lengths as ints; a compressed COCO string (str or bytes) as a str."""
    if isinstance(value, bytes):
        return value.decode("ascii")
    return value if isinstance(value, str) else [int(v) for v in _items(value)]


def to_result_json(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The CLI's per-image JSON (``Result.to_json``) for a row; None for a row with an ``error``.

    ``row`` is one row as any reader gives it: a dict from ``pyarrow`` (``Table.to_pylist()``), from a JSON-lines
    part (``json.loads``), from Ray (``Dataset.take``/``iter_rows``), or from pandas (``read_parquet(...)`` then
    ``to_dict("records")``, ``iterrows()`` or ``iloc[i]``, with any ``dtype_backend``): nulls may be None, NaN or
    ``pd.NA``, lists numpy arrays, numbers numpy scalars or floats (pandas reads an integer column with nulls as
    float64); the JSON is the same."""
    if not is_null(row.get("error")):
        return None
    instances = []
    for i in _items(row["instances"]):
        seg = i["segmentation"]
        inst = {"id": int(i["id"]), "box": [float(v) for v in _items(i["box"])], "score": float(i["score"]),
                "area": int(i["area"]),
                "segmentation": {"size": [int(v) for v in _items(seg["size"])], "counts": _counts(seg["counts"])}}
        if not is_null(i.get("selected_by")):
            inst["selected_by"] = [str(t) for t in i["selected_by"]]
        instances.append(inst)
    timings = row.get("timings_ms")
    timings = {} if is_null(timings) else {k: float(v) for k, v in timings.items() if not is_null(v)}
    return {
        "image": {"path": str(row["path"]), "width": int(row["width"]), "height": int(row["height"])},
        "mask_size": {"width": int(row["mask_width"]), "height": int(row["mask_height"])},
        "instances": instances,
        "timings_ms": timings,
    }
