"""The lifecycle every pipeline stage shares: start, a loop that beats while it makes progress, stop, join.

A stage runs in its own thread. ``beat`` records progress for the heartbeat that feeds systemd's
watchdog; an exception ends the stage and is kept in ``error`` for the pipeline to report.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from edgecodec.errors import EdgecodecError

log = logging.getLogger(__name__)


class Stage:
    name = "stage"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.last_beat = time.monotonic()
        self.error: Optional[BaseException] = None
        self.finished = threading.Event()  # set when run() returns, for whatever reason

    def start(self) -> None:
        self.last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._main, name=f"edgecodec-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to finish; it completes the work in hand (see each stage) and returns."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: Optional[float] = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def stalled_for(self) -> float:
        return 0.0 if self.finished.is_set() else time.monotonic() - self.last_beat

    def _main(self) -> None:
        try:
            self.run()
        except Exception as exc:  # the pipeline reports it; the service exits non-zero
            self.error = exc
            expected = isinstance(exc, (OSError, EdgecodecError))  # explained by its message alone
            log.error("%s stage failed: %s", self.name, exc, exc_info=not expected)
        finally:
            self.finished.set()

    def run(self) -> None:
        raise NotImplementedError
