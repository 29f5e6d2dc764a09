"""The Ray Data worker: a callable class that holds one :class:`~fastsam_onnx.FastSAM` per actor.

Ray Data creates ``--workers`` instances (actors) once and then calls each with batches of
``{"path": [...], "source": [...]}``; each call returns a ``pyarrow.Table`` of result rows
(:mod:`fastsam_onnx.distributed.rows`), one per input image, in input order.

Per image, what the CLI's folder mode counts as a bad image (a typed error such as an undecodable file, or anything
else the image triggers) becomes a row with ``error`` set; errors that would fail every image (a bad setting, prompt
or model: ``BadArgumentError``, ``BadPromptError``, ``BadModelError``, ``ProviderError``) are raised and stop the job.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..image import MAX_PIXELS

__all__ = ["Segmenter"]


class Segmenter:
    """One FastSAM (and, for text prompts, one CLIP, loaded on the first text prompt) per actor.

    Args:
        model, clip, providers, strict: as :class:`~fastsam_onnx.FastSAM` takes them (a path must exist on every node).
        options: keyword arguments of ``FastSAM.segment`` (conf, iou, imgsz, max_det, retina_masks, prompts ...).
        threads: onnxruntime intra-op threads (and OpenCV threads) of this actor; None = ``$FASTSAM_ONNX_THREADS``
            or onnxruntime's choice.
        max_pixels: larger images are bad images (default :data:`fastsam_onnx.image.MAX_PIXELS`).
    """

    def __init__(
        self,
        model: str | None = None,
        clip: str | None = None,
        providers: str | Sequence | None = None,
        strict: bool = False,
        options: Mapping[str, Any] | None = None,
        threads: int | None = None,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        if threads:
            import cv2

            os.environ["FASTSAM_ONNX_THREADS"] = f"{int(threads)},1"  # read by session_options() below
            cv2.setNumThreads(int(threads))
        from .. import FastSAM

        self.model = FastSAM(model, clip=clip, providers=providers, strict=strict, max_pixels=max_pixels)
        self.options = dict(options or {})
        self.max_pixels = max_pixels
        self.pid = os.getpid()
        try:
            import ray

            self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        except ImportError:  # used without Ray (tests, a plain loop)
            self.node_id = None

    def segment_one(self, path: str, source: str) -> dict[str, Any]:
        """The row of one image (``error`` set for a bad image)."""
        from ..errors import BadArgumentError, BadModelError, BadPromptError, ProviderError, one_line
        from .rows import error_row, row_of
        from .source import load_source

        try:
            image = load_source(source, self.max_pixels)
            result = self.model.segment(image, **self.options)
            return row_of(result.to_json(path), source, self.node_id, self.pid)
        except (BadArgumentError, BadModelError, BadPromptError, ProviderError):
            raise  # every image would fail the same way: stop the job
        except Exception as e:  # noqa: BLE001 - one bad image never fails the job
            return error_row(path, source, one_line(e), self.node_id, self.pid)

    def __call__(self, batch: Mapping[str, np.ndarray]):
        """``{"path": [...], "source": [...]}`` → ``pyarrow.Table`` of the rows, in input order."""
        from .rows import to_table

        paths = [str(p) for p in batch["path"]]
        sources = [str(s) for s in batch["source"]] if "source" in batch else paths
        return to_table([self.segment_one(p, s) for p, s in zip(paths, sources)])
