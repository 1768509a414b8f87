"""The one in-memory cache the studio's views use: least recently used first out, bounded by entries and bytes.

A server runs for weeks and every request can add a key (new pixels, a new slider value), so no cache may be a
plain dict. Bytes are what `size_of` says an entry holds (an estimate is enough: it bounds growth).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import torch

from detector.detections import Detections

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedLRU(Generic[K, V]):
    def __init__(self, max_entries: int, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: K, value: V) -> V:
        """Store (replacing any older value) and evict the least recently used beyond either bound; a value
        larger than max_bytes on its own is returned but not kept."""
        size = int(self._size_of(value))
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._items and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
                self._bytes -= self._items.popitem(last=False)[1][1]
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        return self._bytes


def detections_nbytes(det: Detections) -> int:
    return sum(t.element_size() * t.nelement() for t in (det.boxes, det.scores, det.labels)
               if isinstance(t, torch.Tensor)) + 64
