"""The server's ``image_id`` cache: segment-everything results, least recently used first, bounded in bytes.

An entry's size (:func:`result_nbytes`) counts what the result keeps alive: the mask crops, the (h0, w0, 3)
image array, boxes and scores, the prototypes kept for edge maps, and the CLIP crop embeddings cached on it by text prompts
(:meth:`~fastsam_onnx.Result.text_crop_embeddings`; re-counted with :meth:`ResultCache.touch` after a text
prompt). Inserting evicts the oldest entries until the total is within ``max_bytes``; a single result larger
than the whole bound is not kept. All methods are thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..result import Result

__all__ = ["ResultCache", "result_nbytes"]


def result_nbytes(result: Result) -> int:
    """Bytes a cached result holds (:meth:`Result.nbytes`: crops, image, boxes/scores, prototypes kept for edge
    maps, cached edge maps and CLIP embeddings)."""
    return result.nbytes()


class ResultCache:
    """LRU of ``image_id`` → :class:`Result`, at most ``max_bytes`` in total (0 disables caching)."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, tuple[Result, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        """Bytes held now (<= :attr:`max_bytes`)."""
        return self._bytes

    def get(self, key: str) -> Result | None:
        """The cached result (marked most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, result: Result) -> bool:
        """Keep ``result`` under ``key``, evicting the least recently used; False when it alone exceeds the bound."""
        size = result_nbytes(result)
        with self._lock:
            self._drop(key)
            if size > self.max_bytes:
                return False
            self._items[key] = (result, size)
            self._bytes += size
            self._evict()
            return True

    def touch(self, key: str) -> None:
        """Re-count ``key``'s size (its CLIP embeddings grew after a text prompt) and evict if needed."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return
            size = result_nbytes(item[0])
            self._bytes += size - item[1]
            self._items[key] = (item[0], size)
            if size > self.max_bytes:
                self._drop(key)
            self._evict()

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= item[1]

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._items:
            _, (_, size) = self._items.popitem(last=False)
            self._bytes -= size
            self.evictions += 1

    def stats(self) -> dict[str, int]:
        """Entries, bytes, bound, hits, misses, evictions."""
        with self._lock:
            return {"entries": len(self._items), "bytes": self._bytes, "max_bytes": self.max_bytes,
                    "hits": self.hits, "misses": self.misses, "evictions": self.evictions}
