"""A one-item buffer where the newest item wins: how a slow consumer stays on live data.

The producer never blocks; an item the consumer had not taken yet is replaced and counted, so
a consumer slower than its producer sees the most recent item, never a growing backlog.
"""
from __future__ import annotations

import threading
import time
from typing import Generic, Optional, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._closed = False
        self.replaced = 0  # items overwritten before anyone took them

    def put(self, item: T) -> bool:
        """Store ``item``; return True if it replaced one nobody took."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.replaced += 1
            self._item = item
            self._cond.notify()
            return replaced

    def get(self, timeout: Optional[float] = None) -> Optional[T]:
        """Take the newest item, waiting up to ``timeout`` s; None on timeout or once closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._item is None and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiter; later gets return what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
