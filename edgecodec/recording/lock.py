"""Who is writing a recording: the writer holds an exclusive advisory lock (flock) while the file is open.

A reader that finds the lock held knows an incomplete last record is a frame still being appended, not
damage, and ``repair`` knows not to rewrite a file under a running server. flock locks belong to the
open file and vanish when its writer exits, killed or not, so a crashed server never leaves a stale one.
Where ``fcntl`` is missing (Windows desktops reading copied files) nobody can hold the lock and every
file reads as finished.
"""
from __future__ import annotations

import os

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None


def lock_for_writing(fd: int) -> bool:
    """Take the writer's lock on ``fd``; False if another process already holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def being_written(path) -> bool:
    """True while some process holds the writer's lock on the recording at ``path``."""
    if fcntl is None:
        return False
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock if it was granted
    return False
