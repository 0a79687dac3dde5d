"""The recording file: round trips, the documented layout, seeking, damage detection and repair."""
from __future__ import annotations

import pathlib
import re
import struct

import pytest

from edgecodec.recording import RecordingError, RecordingReader, repair
from edgecodec.recording import format as fmt
from tests.recording_helpers import T0, fake_packet, write_recording

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "recording.md"


def frames_of(path, **kw):
    with RecordingReader(path) as reader:
        scan = reader.scan(**kw)
        return scan, [reader.read(f) for f in scan.frames]


def test_written_frames_read_back_in_order_with_their_times(tmp_path):
    packets = [fake_packet(i) for i in range(20)]
    path = tmp_path / "a.ecr"
    write_recording(path, packets, camera_id="yard cam")
    scan, read = frames_of(path)
    assert read == packets
    assert scan.intact
    assert [f.sequence for f in scan.frames] == list(range(20))
    assert scan.frames[3].timestamp_us == T0 + 300_000
    with RecordingReader(path) as reader:
        assert reader.camera_id == "yard cam"


def test_index_records_chain_every_frame(tmp_path):
    path = tmp_path / "a.ecr"
    write_recording(path, [fake_packet(i) for i in range(21)], index_every=8)
    with RecordingReader(path) as reader:
        entries, tail = reader.index()
        assert [e.sequence for e in entries] == list(range(21))
        assert tail == reader.size  # close() indexed the last 5 frames too
        assert [f.offset for f in reader.scan().frames] == [e.offset for e in entries]


def test_time_range_selects_frames_inclusive_using_the_index(tmp_path):
    path = tmp_path / "a.ecr"
    write_recording(path, [fake_packet(i) for i in range(50)], index_every=8, close=False)
    scan, _ = frames_of(path, start_us=T0 + 1_000_000, end_us=T0 + 2_500_000)
    assert [f.sequence for f in scan.frames] == list(range(10, 26))


def test_time_range_works_without_any_index(tmp_path):
    path = tmp_path / "a.ecr"
    write_recording(path, [fake_packet(i) for i in range(6)], index_every=100, close=False)
    scan, _ = frames_of(path, start_us=T0 + 200_000)
    assert [f.sequence for f in scan.frames] == [2, 3, 4, 5]


def test_torn_last_record_is_reported_and_never_returned(tmp_path):
    path = tmp_path / "a.ecr"
    packets = [fake_packet(i) for i in range(10)]
    write_recording(path, packets, close=False)
    intact_size = path.stat().st_size
    record = fmt.pack_record(fmt.FRAME_SYNC, fake_packet(10), 10, T0, T0)
    with open(path, "ab") as f:
        f.write(record[: len(record) // 2])
    scan, read = frames_of(path)
    assert read == packets
    assert len(scan.damage) == 1 and scan.damage[0].at_end
    assert scan.damage[0].offset == intact_size == scan.end


def test_flipped_byte_costs_only_its_own_frame(tmp_path):
    path = tmp_path / "a.ecr"
    packets = [fake_packet(i) for i in range(12)]
    write_recording(path, packets)
    with RecordingReader(path) as reader:
        victim = reader.scan().frames[5]
    data = bytearray(path.read_bytes())
    data[victim.offset + fmt.RECORD_HEADER_SIZE + 30] ^= 0x40
    path.write_bytes(bytes(data))
    scan, read = frames_of(path)
    assert read == packets[:5] + packets[6:]
    assert [(d.offset, d.at_end) for d in scan.damage] == [(victim.offset, False)]


def test_zeroed_block_in_the_middle_is_skipped(tmp_path):
    path = tmp_path / "a.ecr"
    packets = [fake_packet(i, size=3000) for i in range(10)]
    write_recording(path, packets)
    data = bytearray(path.read_bytes())
    data[5000:12000] = bytes(7000)
    path.write_bytes(bytes(data))
    scan, read = frames_of(path)
    assert len(scan.damage) == 1 and not scan.damage[0].at_end
    assert read and all(p in packets for p in read)
    assert packets[-1] == read[-1]


def test_repair_truncates_a_torn_tail_and_keeps_every_intact_frame(tmp_path):
    path = tmp_path / "a.ecr"
    packets = [fake_packet(i) for i in range(10)]
    write_recording(path, packets, close=False)
    good = path.stat().st_size
    with open(path, "ab") as f:
        f.write(fmt.pack_record(fmt.FRAME_SYNC, fake_packet(10), 10, T0, T0)[:50])
    assert repair(path, dry_run=True).action == "would be truncated"
    assert path.stat().st_size > good
    report = repair(path)
    assert (report.action, report.frames, report.bytes_removed) == ("truncated", 10, 50)
    assert path.stat().st_size == good
    scan, read = frames_of(path)
    assert scan.intact and read == packets
    assert repair(path).action == "intact"


def test_repair_rewrites_around_damage_in_the_middle(tmp_path):
    path = tmp_path / "a.ecr"
    packets = [fake_packet(i) for i in range(12)]
    write_recording(path, packets)
    data = bytearray(path.read_bytes())
    with RecordingReader(path) as reader:
        victim = reader.scan().frames[4]
    data[victim.offset + 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert repair(path).action == "rewritten"
    scan, read = frames_of(path)
    assert scan.intact and read == packets[:4] + packets[5:]
    with RecordingReader(path) as reader:
        assert reader.camera_id == "cam-1" and len(reader.index()[0]) == 11


@pytest.mark.parametrize("content, message", [
    (b"", "too short"),
    (b"\x89ECC" + bytes(40), "bad magic"),
    (b"\x89ECR\x07" + bytes(40), "version 7"),
])
def test_non_recordings_are_refused_with_a_clear_error(tmp_path, content, message):
    path = tmp_path / "x.ecr"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message):
        RecordingReader(path)


def test_corrupt_file_header_is_refused(tmp_path):
    path = tmp_path / "a.ecr"
    write_recording(path, [fake_packet(0)])
    data = bytearray(path.read_bytes())
    data[12] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="header is corrupt"):
        RecordingReader(path)


def test_missing_file_is_a_recording_error(tmp_path):
    with pytest.raises(RecordingError, match="cannot open"):
        RecordingReader(tmp_path / "nope.ecr")


def _doc_table(title):
    text = DOC.read_text()
    section = text.split(f"### {title}", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\w+)\s*\|\s*`(\w+)`", section, re.M)
    return [(int(o), int(s), name) for o, s, _t, name in rows]


@pytest.mark.parametrize("title, fields", [
    ("File header", fmt.FILE_FIELDS),
    ("Record header", fmt.RECORD_FIELDS),
    ("Index payload", fmt.INDEX_FIELDS + fmt.INDEX_ENTRY_FIELDS),
])
def test_docs_tables_match_the_code(title, fields):
    expected, offset = [], 0
    for i, (name, code) in enumerate(fields):
        if title == "Index payload" and i == len(fmt.INDEX_FIELDS):
            offset = 0  # entries are described relative to their own start
        size = struct.calcsize("<" + code)
        expected.append((offset, size, name))
        offset += size
    assert _doc_table(title) == expected
