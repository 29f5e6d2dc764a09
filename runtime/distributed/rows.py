"""One row per image: the CLI's per-image JSON (``Result.to_json``) as a flat, typed Arrow record.

Columns (:func:`schema`):

========================  ==================================================================================
``path``                  the image as the CLI names it (relative to a source folder; as given otherwise)
``source``                the file or URI the worker read
``width``, ``height``     original image size, pixels (null for a bad image)
``mask_width/height``     the masks' size, pixels (the image's, or the network input's with ``--no-retina``)
``instances``             list of {id, box [x1, y1, x2, y2] original pixels, score, area (mask pixels),
                          segmentation {size [H, W], counts [...]} (uncompressed COCO RLE, column-major),
                          selected_by [prompt tags] or null}
``timings_ms``            {preprocess, inference, postprocess, prompt (null without prompts)}, milliseconds
``error``                 null, or one line saying why this image failed (it never fails the job)
``node_id``, ``worker_pid``  where the row was made (Ray node id, process id): informational
========================  ==================================================================================

:func:`to_result_json` turns a row back into exactly the dict the CLI writes for that image.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLUMNS", "schema", "row_of", "error_row", "to_result_json", "to_table"]

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
        ("segmentation", pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.list_(pa.int64()))])),
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


def to_result_json(row: dict[str, Any]) -> dict[str, Any] | None:
    """The CLI's per-image JSON (``Result.to_json``) for a row; None for a row with an ``error``."""
    if row.get("error") is not None:
        return None
    instances = []
    for i in row["instances"]:
        seg = i["segmentation"]
        inst = {"id": int(i["id"]), "box": [float(v) for v in i["box"]], "score": float(i["score"]), "area": int(i["area"]),
                "segmentation": {"size": [int(v) for v in seg["size"]], "counts": [int(v) for v in seg["counts"]]}}
        if i.get("selected_by") is not None:
            inst["selected_by"] = list(i["selected_by"])
        instances.append(inst)
    timings = {k: float(v) for k, v in (row.get("timings_ms") or {}).items() if v is not None}
    return {
        "image": {"path": row["path"], "width": int(row["width"]), "height": int(row["height"])},
        "mask_size": {"width": int(row["mask_width"]), "height": int(row["mask_height"])},
        "instances": instances,
        "timings_ms": timings,
    }
