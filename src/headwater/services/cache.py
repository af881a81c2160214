"""A small read-through cache with a time to live, for lookups made on every request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small read-through cache for hot lookups (API clients, sandboxes) on every request."""

    def __init__(self, ttl_seconds: float, loader: Callable[[K], V], max_size: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.loader = loader
        self.max_size = max_size
        self._data: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V:
        now = time.monotonic()
        hit = self._data.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = self.loader(key)
        with self._lock:
            if len(self._data) >= self.max_size:
                self._data.clear()
            self._data[key] = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
