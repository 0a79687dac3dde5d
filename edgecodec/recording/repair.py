"""Make a damaged recording clean again: cut a torn tail, or rewrite the file around damaged records.

Only bytes that fail verification are dropped; every intact frame stays, with its original times.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from edgecodec.recording.format import RecordingError
from edgecodec.recording.lock import being_written
from edgecodec.recording.reader import Damage, RecordingReader
from edgecodec.recording.writer import RecordingWriter


@dataclass
class RepairReport:
    path: str
    frames: int
    damage: list[Damage] = field(default_factory=list)
    action: str = "intact"  # intact | truncated | rewritten (prefixed "would be " for a dry run)
    bytes_removed: int = 0

    def as_dict(self) -> dict:
        return {"path": self.path, "frames": self.frames, "action": self.action,
                "bytes_removed": self.bytes_removed,
                "damage": [{"offset": d.offset, "length": d.length, "at_end": d.at_end} for d in self.damage]}


def repair(path, dry_run: bool = False) -> RepairReport:
    """Check ``path`` and fix it in place unless ``dry_run``; RecordingError if it is no recording."""
    path = os.fspath(path)
    with RecordingReader(path) as reader:
        scan = reader.scan()
        report = RepairReport(path, len(scan.frames), scan.damage)
        if scan.intact:
            return report
        if being_written(path):
            raise RecordingError(f"{path} is being written (a running server holds it open); "
                                 "repair it after the server has closed it")
        only_tail = len(scan.damage) == 1 and scan.damage[0].at_end
        report.action = "truncated" if only_tail else "rewritten"
        report.bytes_removed = sum(d.length for d in scan.damage)
        if dry_run:
            report.action = "would be " + report.action
            return report
        if only_tail:
            os.truncate(path, scan.damage[0].offset)
            return report
        tmp = path + ".repair.tmp"
        if os.path.exists(tmp):
            os.unlink(tmp)
        header = reader.header
        with RecordingWriter(tmp, header.camera_id, header.index_every, header.created_us) as out:
            for frame in scan.frames:
                packet = reader.read(frame)
                out.append(packet, _FrameTimes(frame), received_us=frame.received_us)
    os.replace(tmp, path)
    return report


class _FrameTimes:
    """The two header fields the writer needs, taken from the record rather than re-parsed."""

    def __init__(self, frame):
        self.sequence = frame.sequence
        self.timestamp_us = frame.timestamp_us
