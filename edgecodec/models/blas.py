"""Run numpy's matrix products single-threaded where edgecodec calls them beside a TFLite interpreter.

OpenBLAS worker threads keep spinning for a while after each product; on a 2-core board they then
starve the interpreter's threads (measured at 640x480 on 2 cores: encode 53 ms -> 35 ms, decode
90 ms -> 59 ms once the hyper-synthesis products run on one thread). The products here are small, so
one thread loses nothing. Uses OpenBLAS's per-thread setting when numpy bundles OpenBLAS on Linux;
elsewhere it does nothing. ``matmul`` splits a larger product by rows over a few such threads instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _find_setter():
    """OpenBLAS's thread-local ``openblas_set_num_threads_local`` from numpy's bundled library, or None."""
    libs_dir = os.path.dirname(os.path.dirname(np.__file__))
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line}
    except OSError:
        return None
    for path in sorted(paths, key=lambda p: not p.startswith(libs_dir)):
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


np.dot(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))  # make sure the BLAS is loaded
_SET_LOCAL = _find_setter()


@contextlib.contextmanager
def single_threaded():
    if _SET_LOCAL is None:
        yield
        return
    previous = _SET_LOCAL(1)
    try:
        yield
    finally:
        _SET_LOCAL(previous)


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _helpers() -> ThreadPoolExecutor:
    """The helper threads of this process: a child forked from a process that had them gets its own,
    since it inherits the pool's bookkeeping but not its threads, and its work would never run."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="edgecodec-blas")
            _pool_pid = os.getpid()
        return _pool


def split_rows(run, n: int, threads: int, min_rows: int = 32) -> None:
    """Call ``run(first, last)`` over ``n`` rows split into up to ``threads`` ranges (at least ``min_rows``
    each), on the caller's thread and helper threads; ``run`` must release the GIL to gain anything."""
    threads = max(1, min(threads, 4, n // min_rows))
    bounds = np.linspace(0, n, threads + 1).astype(int)
    others = [_helpers().submit(run, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    run(bounds[0], bounds[1])
    for future in others:
        future.result()


def matmul(a: np.ndarray, b: np.ndarray, threads: int = 1) -> np.ndarray:
    """``a @ b`` with its rows split over ``threads`` threads (the caller's own among them), each running
    the BLAS single-threaded. Each output element is the same sum as in the whole product, so splitting
    changes no result."""
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))

    def part(first, last):
        with single_threaded():
            np.matmul(a[first:last], b, out=out[first:last])

    split_rows(part, len(a), threads)
    return out
