"""Retention: delete a camera's oldest recordings once they are too old, or once its files take too much space.

The policy works on whole files under ``directory/<camera>/``, oldest first (by the time of the
file's last write, which is its last frame), and never touches a file some process is still writing
(the writer's lock, ``lock.being_written``). A recording rotates only at key frames, so every file
starts with one: deleting whole files from the old end leaves the rest decodable.

* ``max_age_s``: a file whose last write is older than this goes (``edgecodec serve --retain-days``).
* ``max_bytes``: while a camera's files together are larger than this, its oldest finished file goes
  (``--retain-gb``). The file being written counts towards the total but is never deleted.

``Retention.run`` does one pass with the injected clock; the server calls it every minute or so from a
``RetentionTask`` thread. Each deletion is logged.
"""
from __future__ import annotations

import logging
import pathlib
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from edgecodec.recording.format import SUFFIX
from edgecodec.recording.lock import being_written

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 60.0


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: Optional[float] = None  # None: keep files of any age
    max_bytes: Optional[int] = None  # per camera; None: no size limit

    @property
    def enabled(self) -> bool:
        return self.max_age_s is not None or self.max_bytes is not None


@dataclass(frozen=True)
class Deletion:
    path: pathlib.Path
    camera: str
    size: int
    reason: str


@dataclass(frozen=True)
class _File:
    path: pathlib.Path
    size: int
    mtime: float


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


class Retention:
    def __init__(self, directory, policy: RetentionPolicy, clock: Callable[[], float] = time.time,
                 in_use: Callable[[pathlib.Path], bool] = being_written):
        self.directory = pathlib.Path(directory)
        self.policy = policy
        self.clock = clock  # wall-clock seconds, comparable with file modification times
        self.in_use = in_use
        self.deleted: list[Deletion] = []  # every deletion so far

    def cameras(self) -> list[pathlib.Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.is_dir())
        except OSError:
            return []

    @staticmethod
    def _files(folder: pathlib.Path) -> list[_File]:
        out = []
        for path in folder.glob("*" + SUFFIX):
            try:
                st = path.stat()
            except OSError:  # deleted meanwhile
                continue
            out.append(_File(path, st.st_size, st.st_mtime))
        return sorted(out, key=lambda f: (f.mtime, f.path.name))  # oldest first

    def plan(self, folder: pathlib.Path) -> list[Deletion]:
        """What one pass would delete from one camera's folder, oldest first."""
        policy, now = self.policy, self.clock()
        files = self._files(folder)
        total = sum(f.size for f in files)
        out = []
        for f in files:
            if policy.max_age_s is not None and now - f.mtime > policy.max_age_s:
                reason = f"older than {policy.max_age_s / 86400:g} days"
            elif policy.max_bytes is not None and total > policy.max_bytes:
                reason = f"the camera's recordings take {_gb(total)}, over {_gb(policy.max_bytes)}"
            else:
                break  # files are in age order: the newer ones stay too
            if self.in_use(f.path):
                continue  # still being written: the next file may go instead, never this one
            out.append(Deletion(f.path, folder.name, f.size, reason))
            total -= f.size
        return out

    def run(self) -> list[Deletion]:
        """One pass over every camera; returns what was deleted."""
        if not self.policy.enabled:
            return []
        done = []
        for folder in self.cameras():
            for d in self.plan(folder):
                try:
                    d.path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    log.error("retention: cannot delete %s: %s", d.path, exc.strerror)
                    continue
                log.info("retention: deleted %s (%s, %.1f MB): %s", d.path, d.camera, d.size / 1e6, d.reason)
                done.append(d)
        self.deleted += done
        return done


class RetentionTask:
    """Runs ``retention.run`` every ``interval`` s in a thread, the first pass at once; ``close`` stops it."""

    def __init__(self, retention: Retention, interval: float = DEFAULT_INTERVAL_S):
        self.retention = retention
        self.interval = interval
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="recording-retention", daemon=True)

    def start(self) -> "RetentionTask":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                self.retention.run()
            except Exception:  # a bad pass must not end retention for good
                log.exception("retention pass failed")
            self.passes += 1
            if self._stop.wait(self.interval):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def policy_from_options(retain_days: Optional[float], retain_gb: Optional[float]) -> RetentionPolicy:
    return RetentionPolicy(max_age_s=None if not retain_days else retain_days * 86400.0,
                           max_bytes=None if not retain_gb else int(retain_gb * 1e9))

