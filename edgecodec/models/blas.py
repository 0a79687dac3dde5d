"""Run numpy's matrix products single-threaded where edgecodec calls them beside a TFLite interpreter.

OpenBLAS worker threads keep spinning for a while after each product; on a 2-core board they then
starve the interpreter's threads (measured at 640x480 on 2 cores: encode 53 ms -> 35 ms, decode
90 ms -> 59 ms once the hyper-synthesis products run on one thread). The products here are small, so
one thread loses nothing. Uses OpenBLAS's per-thread setting when numpy bundles OpenBLAS on Linux;
elsewhere it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import os

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
