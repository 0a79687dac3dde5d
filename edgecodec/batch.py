"""Decode many packets in parallel worker processes: ``.ecc`` files or frames inside recordings.

Workers are separate processes (decoding holds the GIL for part of each frame), started with
``spawn`` so a caller that already runs threads (a server, a loaded codec) is safe. Each worker
loads the codec once. Results come back in task order, so a video writer can consume them directly.

    >>> tasks = [DecodeTask(str(p), output=str(p.with_suffix(".png"))) for p in files]
    >>> for result in decode_batch(tasks, jobs=2, progress=lambda done, total: ...):
    ...     print(result.ok, result.error)
"""
from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from edgecodec.errors import EdgecodecError

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DecodeTask:
    """One packet: a whole ``.ecc`` file (``offset`` None) or the frame record at ``offset`` of a recording.

    With ``output`` the worker writes the image there; without, the pixels come back in the result.
    """

    source: str
    offset: Optional[int] = None
    output: Optional[str] = None


@dataclass
class DecodeResult:
    task: DecodeTask
    ok: bool
    error: str = ""
    width: int = 0
    height: int = 0
    bytes: int = 0
    decode_ms: float = 0.0
    image: Optional[np.ndarray] = None


@dataclass
class BatchSummary:
    frames: int = 0
    failed: int = 0
    bytes: int = 0
    pixels: int = 0
    seconds: float = 0.0

    def add(self, result: DecodeResult) -> None:
        if result.ok:
            self.frames += 1
            self.bytes += result.bytes
            self.pixels += result.width * result.height
        else:
            self.failed += 1

    @property
    def mean_bpp(self) -> float:
        return self.bytes * 8 / self.pixels if self.pixels else 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"frames": self.frames, "failed": self.failed, "bytes": self.bytes,
                "mean_bpp": round(self.mean_bpp, 4), "seconds": round(self.seconds, 3),
                "frames_per_s": round(self.fps, 2)}


def default_threads(jobs: int) -> int:
    """TFLite threads per worker: share the cores between the workers."""
    return max(1, (os.cpu_count() or 1) // max(jobs, 1))


def decode_batch(tasks: Iterable[DecodeTask], *, model_dir=None, jobs: int = 1,
                 threads: Optional[int] = None, progress: Optional[Progress] = None,
                 summary: Optional[BatchSummary] = None, decoder: str = "full") -> Iterator[DecodeResult]:
    """Decode ``tasks`` with ``jobs`` processes (1: in this process); yield results in task order.

    A task that fails (damaged packet, wrong model, unwritable output) yields ``ok=False`` with the
    reason; the others go on. ``summary``, if given, is filled in as results arrive.
    """
    tasks = list(tasks)
    threads = threads or default_threads(jobs)
    results = in_workers(_run_task, tasks, _init_worker, (model_dir, threads, decoder), jobs,
                         chunksize=max(1, min(8, len(tasks) // (max(jobs, 1) * 8))))
    yield from counted(results, len(tasks), progress, summary)


def in_workers(work: Callable, tasks: list, init: Callable, init_args: tuple, jobs: int,
               chunksize: int = 1) -> Iterator:
    """``work(task)`` of every task, in order: in this process (``jobs`` 1), else in a pool of ``jobs``
    spawned processes, each set up by ``init(*init_args)`` (this process too, first: a bad model fails
    once, not in every worker). The pool is ended when the iteration ends or is abandoned."""
    init(*init_args)
    if jobs <= 1 or len(tasks) <= 1:
        yield from map(work, tasks)
        return
    pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks)), initializer=init, initargs=init_args)
    try:
        yield from pool.imap(work, tasks, chunksize=chunksize)
    finally:
        pool.terminate()
        pool.join()


def counted(results: Iterable[DecodeResult], total: int, progress: Optional[Progress] = None,
            summary: Optional[BatchSummary] = None) -> Iterator[DecodeResult]:
    """``results`` passed on, reported to ``progress`` (done, total) and added to ``summary``."""
    started = time.perf_counter()
    if progress:
        progress(0, total)
    for done, result in enumerate(results, 1):
        if summary is not None:
            summary.add(result)
            summary.seconds = time.perf_counter() - started
        if progress:
            progress(done, total)
        yield result


def decode_files(inputs, outputs, **options) -> BatchSummary:
    """Decode ``.ecc`` files to image files (same order); a convenience over ``decode_batch``."""
    summary = BatchSummary()
    tasks = [DecodeTask(os.fspath(i), output=os.fspath(o)) for i, o in zip(inputs, outputs)]
    for _ in decode_batch(tasks, summary=summary, **options):
        pass
    return summary


# --- in the worker --------------------------------------------------------------------------------

_codec = None
_readers: dict = {}


def _init_worker(model_dir, threads: int, decoder: str = "full") -> None:
    global _codec
    from edgecodec.codec import Codec

    _codec = Codec.load(model_dir, threads=threads, decoder=decoder)


def _read_packet(task: DecodeTask) -> bytes:
    if task.offset is None:
        try:
            with open(task.source, "rb") as f:
                return f.read()
        except OSError as exc:
            raise EdgecodecError(f"cannot read {task.source}: {exc.strerror}") from None
    from edgecodec.recording import RecordingReader

    reader = _readers.get(task.source)
    if reader is None:
        if len(_readers) >= 16:
            _readers.pop(next(iter(_readers))).close()
        reader = _readers[task.source] = RecordingReader(task.source)
    return reader.read_at(task.offset)


def _run_task(task: DecodeTask) -> DecodeResult:
    try:
        packet = _read_packet(task)
        t0 = time.perf_counter()
        image = _codec.decode(packet)
        ms = 1000 * (time.perf_counter() - t0)
        if task.output:
            from edgecodec.imageio import write_image

            write_image(task.output, image)
        return DecodeResult(task, True, width=image.shape[1], height=image.shape[0], bytes=len(packet),
                            decode_ms=ms, image=None if task.output else image)
    except EdgecodecError as exc:
        return DecodeResult(task, False, error=str(exc))
