"""Make a damaged recording clean again: cut a torn tail, or rewrite the file around damaged records.

Only bytes that fail verification are dropped, and with them, when the file is rewritten, the delta frames
whose reference was in those bytes: they could only ever be refused (or, worse, decoded against another
frame by a careless reader), so the rewritten file keeps whole groups of pictures, each decodable from its
key frame. Every other intact frame stays, with its original times.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from edgecodec.recording.format import RecordingError
from edgecodec.recording.lock import being_written
from edgecodec.recording.reader import Damage, Frame, RecordingReader
from edgecodec.recording.writer import RecordingWriter


@dataclass
class RepairReport:
    path: str
    frames: int
    damage: list[Damage] = field(default_factory=list)
    action: str = "intact"  # intact | truncated | rewritten (prefixed "would be " for a dry run)
    bytes_removed: int = 0
    orphans: list[Frame] = field(default_factory=list)  # delta frames whose reference was lost (dropped)

    def as_dict(self) -> dict:
        return {"path": self.path, "frames": self.frames, "action": self.action,
                "bytes_removed": self.bytes_removed,
                "damage": [{"offset": d.offset, "length": d.length, "at_end": d.at_end} for d in self.damage],
                "orphaned_deltas": [{"offset": f.offset, "sequence": f.sequence,
                                     "reference": f.reference_sequence} for f in self.orphans]}


def orphaned_deltas(reader: RecordingReader) -> list[Frame]:
    """The delta frames of a file that cannot be decoded because their reference was lost to damage.

    In file order, a delta frame is decodable when the intact frame just before it is the one it is coded
    against and is decodable itself. The deltas at the head of a file, before any key frame or damage,
    are kept: a file opened mid-group continues the previous file's group.
    """
    orphans: list[Frame] = []
    previous, settled = None, False  # settled: a key frame or damage has been seen
    for kind, item in reader.records():
        if kind == "damage":
            previous, settled = None, True
        elif kind == "frame":
            if item.key:
                previous, settled = item, True
            elif not settled or (previous is not None and previous.sequence == item.reference_sequence):
                previous = item
            else:
                orphans.append(item)
                previous = None
    return orphans


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
        if not only_tail:
            report.orphans = orphaned_deltas(reader)
            report.frames -= len(report.orphans)
        report.action = "truncated" if only_tail else "rewritten"
        report.bytes_removed = sum(d.length for d in scan.damage) + sum(f.end - f.offset for f in report.orphans)
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
        dropped = {f.offset for f in report.orphans}
        with RecordingWriter(tmp, header.camera_id, header.index_every, header.created_us) as out:
            for frame in scan.frames:
                if frame.offset in dropped:
                    continue
                packet = reader.read(frame)
                out.append(packet, _FrameTimes(frame), received_us=frame.received_us)
    os.replace(tmp, path)
    return report


class _FrameTimes:
    """The two header fields the writer needs, taken from the record rather than re-parsed."""

    def __init__(self, frame):
        self.sequence = frame.sequence
        self.timestamp_us = frame.timestamp_us
