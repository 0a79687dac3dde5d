"""Recordings: append-only files of a camera's compressed frames (format: docs/recording.md).

``format`` is the byte layout, ``writer`` and ``reader`` do file I/O, ``repair`` cleans damaged
files, ``sink`` records a server's frame hub. Nothing here decodes pixels.
"""
from edgecodec.recording.format import SUFFIX, FileHeader, RecordingError
from edgecodec.recording.reader import Damage, Frame, RecordingReader, Scan
from edgecodec.recording.repair import RepairReport, repair
from edgecodec.recording.sink import RecordingSink
from edgecodec.recording.writer import RecordingWriter

__all__ = [
    "SUFFIX", "FileHeader", "RecordingError", "Damage", "Frame", "RecordingReader", "Scan",
    "RepairReport", "repair", "RecordingSink", "RecordingWriter", "attach",
]


def attach(hub, directory, **options) -> RecordingSink:
    """Start recording every camera of ``hub`` under ``directory``; the server calls ``close`` at exit."""
    return RecordingSink(hub, directory, **options).start()
