"""Turn recordings into image files or a video: select frames by time, decode in parallel, write out.

Damaged parts of a recording are skipped and reported; every intact frame is exported. A video is
written in frame order by ``edgecodec.videowriter``: H.264 at the frames' capture times (an outage
stays a gap of the same length), or at a constant ``fps`` when one is given; PNG frames are written by
the workers.

Recordings of stream mode hold delta frames, each coded against the frame before it. Decoding works on
groups of pictures: a key frame and the delta frames after it, decoded in order by one
``StreamDecoder``. A time range starts decoding at the key frame at or before its first frame (the frames
before the range are decoded, cheaply, without synthesis, and not written), and ``jobs`` processes share
the groups, never splitting one. A recording made before stream mode has only key frames: every group is
one frame, as before.
"""
from __future__ import annotations

import datetime as dt
import glob
import os
import pathlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from edgecodec import bitstream
from edgecodec.batch import BatchSummary, DecodeResult, counted, default_threads, in_workers
from edgecodec.errors import EdgecodecError, ModelMismatchError
from edgecodec.recording import SUFFIX, Damage, Frame, RecordingError, RecordingReader
from edgecodec.videowriter import SUFFIXES as VIDEO_SUFFIXES
from edgecodec.videowriter import open_video

DEFAULT_FPS = 10.0


def expand_recordings(items: list[str]) -> list[pathlib.Path]:
    """Files, folders (every recording below them) and glob patterns, in order, without repeats."""
    found: list[pathlib.Path] = []
    for item in items:
        path = pathlib.Path(item)
        if path.is_dir():
            found.extend(sorted(path.rglob(f"*{SUFFIX}")))
        elif any(ch in item for ch in "*?["):
            found.extend(sorted(pathlib.Path(p) for p in glob.glob(item, recursive=True)))
        else:
            found.append(path)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise EdgecodecError(f"no recordings in {' '.join(items)}")
    return unique


def parse_time(text: str) -> tuple[str, float]:
    """``--from``/``--to`` values: seconds after the first frame ("90", "1.5") or a local/UTC ISO time.

    Returns ("relative", seconds) or ("absolute", microseconds since the epoch).
    """
    try:
        return "relative", float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise EdgecodecError(f"{text!r} is neither seconds nor an ISO date-time (2026-11-24T17:30:00)") from None
    return "absolute", moment.timestamp() * 1e6


@dataclass
class Selection:
    """The frames to export, per recording, and what could not be read."""

    frames: list[tuple[pathlib.Path, int, Frame]] = field(default_factory=list)  # (file, ordinal, frame)
    lead: list[tuple[pathlib.Path, Frame]] = field(default_factory=list)  # decoded first, not exported
    damage: list[tuple[pathlib.Path, Damage]] = field(default_factory=list)
    unreadable: list[tuple[pathlib.Path, str]] = field(default_factory=list)
    growing: list[tuple[pathlib.Path, int]] = field(default_factory=list)  # (live file, bytes not yet whole)


def select_frames(recordings: list[pathlib.Path], start: Optional[str] = None,
                  end: Optional[str] = None) -> Selection:
    """Scan ``recordings`` for intact frames in [start, end] (see ``parse_time``)."""
    bounds = [parse_time(t) if t is not None else None for t in (start, end)]
    origin = None
    if any(b and b[0] == "relative" for b in bounds):
        origin = _first_timestamp(recordings)
    start_us, end_us = (None if b is None else int(b[1] if b[0] == "absolute" else origin + b[1] * 1e6)
                        for b in bounds)
    selection = Selection()
    for path in recordings:
        try:
            with RecordingReader(path) as reader:
                scan = reader.scan(start_us, end_us)  # seeks through the index when there is a range
                numbers = frame_numbers(reader)
                if numbers is None:
                    everything = scan.frames if start_us is None and end_us is None else reader.scan().frames
                    numbers = {f.offset: n for n, f in enumerate(everything)}
        except RecordingError as exc:
            selection.unreadable.append((path, str(exc)))
            continue
        selection.damage.extend((path, d) for d in scan.damage)
        if scan.growing:
            selection.growing.append((path, scan.growing))
        selection.frames.extend((path, numbers[f.offset], f) for f in scan.frames)
        selection.lead.extend((path, f) for f in scan.lead)
    return selection


@dataclass(frozen=True)
class GroupItem:
    """One frame of a group of pictures: decoded always, synthesized and returned (or written to
    ``output``) only when ``show``."""

    source: str
    offset: int
    key: bool
    show: bool = True
    output: Optional[str] = None


def plan_groups(selection: Selection, output: Optional[pathlib.Path] = None) -> list[list[GroupItem]]:
    """The selected frames and the frames they need, in file order, cut into groups at key frames.

    ``output`` (a folder) names each exported frame's PNG. A group that does not start with a key frame
    (a file that starts mid-group, frames after damage) is kept: its decoder refuses its frames, and the
    export reports them.
    """
    per_file: dict[pathlib.Path, list[GroupItem]] = {}
    for path, n, f in selection.frames:
        png = None if output is None else str(output / f"{path.stem}_{n:06d}.png")
        per_file.setdefault(path, []).append(GroupItem(str(path), f.offset, f.key, True, png))
    for path, f in selection.lead:
        per_file.setdefault(path, []).append(GroupItem(str(path), f.offset, f.key, False))
    groups: list[list[GroupItem]] = []
    for items in per_file.values():
        items.sort(key=lambda item: item.offset)
        for item in items:
            if item.key or not groups or groups[-1][0].source != item.source:
                groups.append([])
            groups[-1].append(item)
    return [g for g in groups if any(item.show for item in g)]


def frame_numbers(reader: RecordingReader) -> Optional[dict[int, int]]:
    """Each frame's position in its file, by record offset, read from the index; None without one.

    Positions count frames as written, damaged ones included, so a PNG's name does not depend on the
    time range exported or on damage elsewhere in the file.
    """
    found = reader.index()
    if found is None:
        return None
    entries, tail = found
    numbers = {e.offset: n for n, e in enumerate(entries)}
    n = len(entries)
    for kind, item in reader.records(tail):
        if kind == "frame":
            numbers[item.offset] = n
            n += 1
    return numbers


def _first_timestamp(recordings) -> int:
    firsts = []
    for path in recordings:
        try:
            with RecordingReader(path) as reader:
                first = reader.first_timestamp_us()
        except RecordingError:
            continue
        if first is not None:
            firsts.append(first)
    if not firsts:
        raise EdgecodecError("no intact frame to measure --from/--to from")
    return min(firsts)


def check_model(selection: Selection, model_id: bytes) -> None:
    """Refuse early, with one clear message, recordings made by another model."""
    checked = set()
    for path, _ordinal, frame in selection.frames:
        if path in checked:
            continue
        checked.add(path)
        with RecordingReader(path) as reader:
            header, _ = bitstream.unpack(reader.read(frame))
        if header.model_id != model_id:
            raise ModelMismatchError(
                f"{path} was recorded with model {header.model_id.hex()}, but the loaded model is "
                f"{model_id.hex()} (choose the right one with --model)")


def estimate_fps(frames: list[Frame]) -> float:
    gaps = [b.timestamp_us - a.timestamp_us for a, b in zip(frames, frames[1:]) if b.timestamp_us > a.timestamp_us]
    return 1e6 / statistics.median(gaps) if gaps else DEFAULT_FPS


@dataclass
class ExportReport:
    output: str
    summary: BatchSummary
    selected: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    damage: list[tuple[str, Damage]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    growing: list[tuple[str, int]] = field(default_factory=list)  # recordings still being written
    fps: Optional[float] = None  # the constant rate asked for, else the median capture rate
    constant_rate: bool = False  # True: --fps given, frames evenly spaced; False: at their capture times
    video_codec: Optional[str] = None
    video_backend: Optional[str] = None
    video_seconds: Optional[float] = None  # from the first frame to the end of the last

    @property
    def clean(self) -> bool:
        return not (self.failures or self.damage or self.unreadable)

    def as_dict(self) -> dict:
        out = {"output": self.output, "selected": self.selected, **self.summary.as_dict(),
               "failures": [{"frame": w, "error": e} for w, e in self.failures],
               "damage": [{"recording": p, "offset": d.offset, "length": d.length, "torn_tail": d.at_end}
                          for p, d in self.damage],
               "unreadable": [{"recording": p, "error": e} for p, e in self.unreadable],
               "being_written": [{"recording": p, "incomplete_bytes": n} for p, n in self.growing]}
        if self.fps is not None:
            out["video_fps"] = round(self.fps, 3)
            out["video_timing"] = "constant rate" if self.constant_rate else "capture times"
            out["video_codec"] = self.video_codec
            out["video_backend"] = self.video_backend
            out["video_seconds"] = None if self.video_seconds is None else round(self.video_seconds, 3)
        return out


def export(recordings: list[str], output: str, *, start: Optional[str] = None, end: Optional[str] = None,
           jobs: int = 1, threads: Optional[int] = None, model_dir=None, fps: Optional[float] = None,
           progress: Optional[Callable[[int, int], None]] = None,
           video_backends: Optional[tuple[str, ...]] = None) -> ExportReport:
    """Export the selected frames of ``recordings`` to a folder of PNGs or to a video file
    (``video_backends``: the order to try them in, see ``edgecodec.videowriter``)."""
    from edgecodec.codec import Codec

    started = time.perf_counter()
    paths = expand_recordings(recordings)
    selection = select_frames(paths, start, end)
    if not selection.frames:
        reasons = "; ".join(e for _, e in selection.unreadable)
        raise EdgecodecError("no intact frames to export" + (" in the selected time range" if start or end else "")
                             + (f" ({reasons})" if reasons else ""))
    check_model(selection, Codec.load(model_dir).model_id)
    out = pathlib.Path(output)
    video = out.suffix.lower() in VIDEO_SUFFIXES
    folder = out.parent if video else out
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgecodecError(f"cannot create the output folder {folder}: {exc.strerror}") from None
    groups = plan_groups(selection, None if video else out)
    report = ExportReport(str(out), BatchSummary(), selected=len(selection.frames),
                          damage=[(str(p), d) for p, d in selection.damage],
                          unreadable=[(str(p), e) for p, e in selection.unreadable],
                          growing=[(str(p), n) for p, n in selection.growing])
    results = decode_groups(groups, model_dir=model_dir, jobs=jobs, threads=threads, progress=progress,
                            summary=report.summary)
    if video:
        report.fps = fps or estimate_fps([f for _, _, f in selection.frames])
        report.constant_rate = bool(fps)
        times = {(str(p), f.offset): f.timestamp_us for p, _, f in selection.frames}
        _write_video(out, results, report, times, video_backends)
    else:
        for result in results:
            _note_failure(result, report)
    report.summary.seconds = time.perf_counter() - started
    return report


def _note_failure(result, report: ExportReport) -> None:
    if not result.ok:
        where = result.task.output or f"{result.task.source}@{result.task.offset}"
        report.failures.append((where, result.error))


def decode_groups(groups: list[list[GroupItem]], *, model_dir=None, jobs: int = 1, threads: Optional[int] = None,
                  progress: Optional[Callable[[int, int], None]] = None, summary: Optional[BatchSummary] = None,
                  decoder: str = "full") -> Iterator[DecodeResult]:
    """Decode groups of pictures with ``jobs`` processes (1: in this process), each group in order by one
    stream decoder; yield a result per shown frame, in order. A frame that fails (damaged, its
    reference missing) yields ``ok=False`` with the reason; the next key frame starts afresh."""
    threads = threads or default_threads(jobs)
    total = sum(item.show for g in groups for item in g)
    batches = in_workers(_decode_group, groups, _init_worker, (model_dir, threads, decoder), jobs)
    yield from counted((result for batch in batches for result in batch), total, progress, summary)


# --- in the worker --------------------------------------------------------------------------------

_codec = None
_readers: dict = {}


def _init_worker(model_dir, threads: int, decoder: str = "full") -> None:
    global _codec
    from edgecodec.codec import Codec

    _codec = Codec.load(model_dir, threads=threads, decoder=decoder)
    while _readers:  # files may have been replaced (repaired) since an earlier export in this process
        _readers.popitem()[1].close()


def _read(item: GroupItem) -> bytes:
    reader = _readers.get(item.source)
    if reader is None:
        if len(_readers) >= 16:
            _readers.pop(next(iter(_readers))).close()
        reader = _readers[item.source] = RecordingReader(item.source)
    return reader.read_at(item.offset)


def _decode_group(group: list[GroupItem]) -> list[DecodeResult]:
    from edgecodec.batch import DecodeTask
    from edgecodec.imageio import write_image
    from edgecodec.temporal import StreamDecoder

    decoder = StreamDecoder(_codec)
    results = []
    for item in group:
        task = DecodeTask(item.source, item.offset, item.output)
        try:
            packet = _read(item)
            t0 = time.perf_counter()
            header, y = decoder.decode_latents(packet)
            if not item.show:
                continue
            image = _codec.synthesize(header, y)
            ms = 1000 * (time.perf_counter() - t0)
            if item.output:
                write_image(item.output, image)
            results.append(DecodeResult(task, True, width=image.shape[1], height=image.shape[0],
                                        bytes=len(packet), decode_ms=ms, image=None if item.output else image))
        except EdgecodecError as exc:
            if item.show:
                results.append(DecodeResult(task, False, error=str(exc)))
    return results


def _write_video(path: pathlib.Path, results, report: ExportReport, times: dict[tuple[str, int], int],
                 backends: Optional[tuple[str, ...]] = None) -> None:
    """Frames at their capture times, from 0 at the first; a time that goes backwards (recordings given
    out of order) continues one frame period after the previous frame. With a constant rate (``--fps``),
    frame n is at n / fps."""
    writer, size = None, None
    period = 1.0 / report.fps
    first_us, t, n = None, -period, 0
    try:
        for result in results:
            _note_failure(result, report)
            if not result.ok:
                continue
            image = result.image
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else \
                np.ascontiguousarray(image[:, :, :3])
            if writer is None:
                size = (image.shape[1], image.shape[0])
                writer = open_video(str(path), size, report.fps, **({"backends": backends} if backends else {}))
                report.video_codec, report.video_backend = writer.codec, writer.backend
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            if report.constant_rate:
                t = n * period
            else:
                stamp = times[(result.task.source, result.task.offset)]
                first_us = stamp if first_us is None else first_us
                real = (stamp - first_us) / 1e6
                t = real if n == 0 or real > t else t + period
            writer.write(image, t)
            n += 1
    finally:
        if writer is not None:
            writer.close()
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        raise EdgecodecError(f"no video written to {path}")
    report.video_seconds = t + period
