"""Write decoded frames to a video file that plays everywhere: H.264 at the frames' real capture times.

Each frame comes with its time in seconds from the first, so the video has a variable frame rate: an
outage in the recording shows as a still picture for as long as it lasted, time is not compressed.
Backends, best first:

* ``pyav``: PyAV (``pip install av``, or ``edgecodec[video]``; its wheel ships FFmpeg with libx264).
* ``ffmpeg``: Debian's ``ffmpeg`` binary (``apt-get install ffmpeg``), fed lossless PNG frames and their
  durations through its concat demuxer, from a temporary folder beside the output.
* ``opencv``: OpenCV's ``mp4v`` (MPEG-4 part 2) at a constant rate, the last resort, with a warning:
  browsers do not play it and the times between frames are not kept.

``.avi`` files are always MJPG through OpenCV, at a constant rate.
"""
from __future__ import annotations

import fractions
import logging
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Optional, Sequence

import cv2
import numpy as np

from edgecodec.errors import EdgecodecError

log = logging.getLogger(__name__)

H264_SUFFIXES = (".mp4", ".mkv", ".mov")
SUFFIXES = H264_SUFFIXES + (".avi",)
BACKENDS = ("pyav", "ffmpeg", "opencv")
TIME_BASE = fractions.Fraction(1, 90000)  # the usual MPEG clock: 11 us steps
CRF = "20"  # x264 constant quality: visually close to the decoded frames


class VideoError(EdgecodecError):
    """The video could not be written."""


def _even(image: np.ndarray) -> np.ndarray:
    """4:2:0 chroma needs even sizes: repeat the last row / column where one is odd."""
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(image)


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def ffmpeg_path() -> Optional[str]:
    return shutil.which("ffmpeg")


class _PyAVWriter:
    codec = "h264"

    def __init__(self, path: str, size: tuple[int, int], fps: float):
        import av

        self.path = path
        try:
            self._container = av.open(path, "w")
        except (OSError, av.FFmpegError) as exc:  # PyAV 13+
            raise VideoError(f"cannot write video {path}: {exc}") from None
        stream = self._container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = size[0] + size[0] % 2, size[1] + size[1] % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        stream.options = {"crf": CRF, "preset": "veryfast"}
        self._stream = stream
        self._last_pts = -1

    def write(self, rgb: np.ndarray, t: float) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(_even(rgb), format="rgb24")
        pts = max(round(t / TIME_BASE), self._last_pts + 1)  # strictly increasing, even for equal times
        frame.pts, frame.time_base = pts, TIME_BASE
        self._last_pts = pts
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise VideoError(f"cannot write video {self.path}: {exc}") from None

    def close(self) -> None:
        import av

        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise VideoError(f"cannot write video {self.path}: {exc}") from None
        finally:
            self._container.close()


class _FFmpegWriter:
    """PNG frames in a temporary folder, then one ffmpeg run with the concat demuxer's durations."""

    codec = "h264"

    def __init__(self, path: str, size: tuple[int, int], fps: float, binary: str):
        self.path, self.fps, self.binary = path, fps, binary
        self._dir = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(os.path.abspath(path)))
        self._frames: list[tuple[str, float]] = []

    def write(self, rgb: np.ndarray, t: float) -> None:
        name = os.path.join(self._dir, f"{len(self._frames):07d}.png")
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(name, bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise VideoError(f"cannot write a temporary frame to {self._dir}")
        self._frames.append((name, t))

    def close(self) -> None:
        try:
            if self._frames:
                self._encode()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _encode(self) -> None:
        lines = ["ffconcat version 1.0"]
        times = [t for _, t in self._frames]
        for i, (name, t) in enumerate(self._frames):
            duration = times[i + 1] - t if i + 1 < len(times) else 1.0 / self.fps
            # each PNG is a one-frame image2 input; a 90 kHz "frame rate" gives its stream a fine time base
            lines += [f"file '{name}'", "option framerate 90000", f"duration {max(duration, 1e-5):.6f}"]
        lines += [f"file '{self._frames[-1][0]}'", "option framerate 90000"]  # the concat demuxer drops the last duration otherwise
        listing = os.path.join(self._dir, "frames.ffconcat")
        pathlib.Path(listing).write_text("\n".join(lines) + "\n")
        cmd = [self.binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
               "-i", listing, "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-vsync", "vfr", "-frames:v",
               str(len(self._frames)), "-c:v", "libx264", "-crf", CRF, "-preset", "veryfast",
               "-pix_fmt", "yuv420p", "-enc_time_base:v", "1:90000", self.path]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise VideoError(f"ffmpeg could not write {self.path}: {last}")


class _OpenCVWriter:
    def __init__(self, path: str, size: tuple[int, int], fps: float, fourcc: str):
        self.path, self.size, self.codec = path, size, fourcc.lower()
        self._writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise VideoError(f"cannot write video {path} (no {fourcc} encoder in OpenCV?)")

    def write(self, rgb: np.ndarray, t: float) -> None:
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()


def choose_backend(path: str, backends: Sequence[str] = BACKENDS) -> str:
    """The first usable backend for ``path``'s container (``.avi``: always OpenCV's MJPG)."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise VideoError(f"{path}: a video name must end in {', '.join(SUFFIXES)}")
    if suffix == ".avi":
        return "opencv"
    for name in backends:
        if (name == "pyav" and pyav_available()) or (name == "ffmpeg" and ffmpeg_path()) or name == "opencv":
            return name
    raise VideoError(f"no way to write {path}: install PyAV (pip install av) or ffmpeg")


def open_video(path: str, size: tuple[int, int], fps: float, backends: Sequence[str] = BACKENDS):
    """A writer with ``write(rgb, t_seconds)``, ``close()``, ``codec`` and ``backend``; ``fps`` is only a
    hint for H.264 (the times decide), the constant rate for OpenCV."""
    backend = choose_backend(path, backends)
    if backend == "pyav":
        writer = _PyAVWriter(path, size, fps)
    elif backend == "ffmpeg":
        writer = _FFmpegWriter(path, size, fps, ffmpeg_path())
    else:
        suffix = pathlib.Path(path).suffix.lower()
        if suffix != ".avi":
            log.warning("neither PyAV nor ffmpeg is installed: writing %s as mp4v at a constant %.2f "
                        "frames/s, which browsers do not play and which loses the gaps between frames "
                        "(pip install av, or apt-get install ffmpeg)", path, fps)
        writer = _OpenCVWriter(path, size, fps, "MJPG" if suffix == ".avi" else "mp4v")
    writer.backend = backend
    return writer
