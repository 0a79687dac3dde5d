"""Retention of recordings: whole files, oldest first, by age or per-camera size, never the file being written."""
from __future__ import annotations

import logging
import os
import subprocess

import pytest

from edgecodec.recording.retention import Retention, RetentionPolicy, policy_from_options
from edgecodec.recording.writer import RecordingWriter
from tests.stream_support import REPO, ServerThread, edgecodec_cmd, frame_packet, wait_until

pytestmark = pytest.mark.timeout(60)

DAY = 86400.0
NOW = 1_800_000_000.0  # the fake clock's "now"


class FakeClock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def fake_file(folder, name: str, size: int, age_days: float):
    """A recording-named file of ``size`` bytes whose last write was ``age_days`` before NOW."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ecr"
    path.write_bytes(b"\0" * size)
    t = NOW - age_days * DAY
    os.utime(path, (t, t))
    return path


def names(folder) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.ecr"))


def test_files_older_than_the_limit_are_deleted_and_newer_ones_kept(tmp_path):
    cam = tmp_path / "cam1"
    for name, age in (("a", 10), ("b", 8), ("c", 6.9), ("d", 0.1)):
        fake_file(cam, name, 100, age)
    retention = Retention(tmp_path, RetentionPolicy(max_age_s=7 * DAY), clock=FakeClock())
    deleted = retention.run()
    assert [d.path.stem for d in deleted] == ["a", "b"]  # oldest first
    assert names(cam) == ["c", "d"]
    assert all("older than 7 days" in d.reason for d in deleted)


def test_advancing_the_clock_ages_files_out_on_a_later_pass(tmp_path):
    cam = tmp_path / "cam1"
    fake_file(cam, "a", 100, 6)
    fake_file(cam, "b", 100, 1)
    clock = FakeClock()
    retention = Retention(tmp_path, RetentionPolicy(max_age_s=7 * DAY), clock=clock)
    assert retention.run() == []
    clock.now += 1.5 * DAY
    assert [d.path.stem for d in retention.run()] == ["a"]
    clock.now += 5 * DAY
    assert [d.path.stem for d in retention.run()] == ["b"]
    assert names(cam) == []


def test_size_limit_applies_per_camera_and_deletes_only_the_oldest_files_needed(tmp_path):
    for name, age in (("a", 5), ("b", 4), ("c", 3), ("d", 2)):
        fake_file(tmp_path / "cam1", name, 1000, age)
    for name, age in (("x", 9), ("y", 1)):  # another camera under the limit: untouched
        fake_file(tmp_path / "cam2", name, 1000, age)
    retention = Retention(tmp_path, RetentionPolicy(max_bytes=2500), clock=FakeClock())
    deleted = retention.run()
    assert [(d.camera, d.path.stem) for d in deleted] == [("cam1", "a"), ("cam1", "b")]
    assert names(tmp_path / "cam1") == ["c", "d"]  # 2000 bytes: under 2500
    assert names(tmp_path / "cam2") == ["x", "y"]
    assert "over 2.5e-06 GB" in deleted[0].reason


def test_age_and_size_limits_together(tmp_path):
    cam = tmp_path / "cam1"
    fake_file(cam, "a", 10, 30)  # too old, small
    fake_file(cam, "b", 1000, 2)
    fake_file(cam, "c", 1000, 1)
    deleted = Retention(tmp_path, RetentionPolicy(max_age_s=7 * DAY, max_bytes=1500), clock=FakeClock()).run()
    assert [d.path.stem for d in deleted] == ["a", "b"]
    assert "older than" in deleted[0].reason and "over" in deleted[1].reason


def test_the_file_being_written_is_never_deleted_even_when_it_is_over_every_limit(tmp_path):
    cam = tmp_path / "cam1"
    old = fake_file(cam, "old", 1000, 20)
    with RecordingWriter(cam / "live.ecr", "cam1") as writer:
        for seq in range(20):
            writer.append(frame_packet(seq, size=500))
        t = NOW - 30 * DAY  # older than everything, and larger than the size limit on its own
        os.utime(writer.path, (t, t))
        retention = Retention(tmp_path, RetentionPolicy(max_age_s=DAY, max_bytes=100), clock=FakeClock())
        deleted = retention.run()
        assert [d.path for d in deleted] == [old]
        assert names(cam) == ["live"]
    # once its writer has closed it, it is an ordinary old file
    assert [d.path.stem for d in retention.run()] == ["live"]


def test_each_deletion_is_logged_with_its_reason(tmp_path, caplog):
    caplog.set_level(logging.INFO, "edgecodec.recording.retention")
    fake_file(tmp_path / "cam1", "a", 2_000_000, 10)
    Retention(tmp_path, RetentionPolicy(max_age_s=7 * DAY), clock=FakeClock()).run()
    assert "retention: deleted" in caplog.text and "a.ecr" in caplog.text
    assert "cam1, 2.0 MB" in caplog.text and "older than 7 days" in caplog.text


def test_without_limits_nothing_is_deleted(tmp_path):
    fake_file(tmp_path / "cam1", "a", 1000, 1000)
    assert Retention(tmp_path, policy_from_options(None, None), clock=FakeClock()).run() == []
    assert names(tmp_path / "cam1") == ["a"]


def test_options_convert_days_and_gigabytes():
    policy = policy_from_options(7, 1.5)
    assert policy.max_age_s == 7 * DAY and policy.max_bytes == 1_500_000_000


def test_the_server_deletes_recordings_past_retain_days(tmp_path):
    record = tmp_path / "rec"
    old = fake_file(record / "cam1", "cam1-20200101-000000", 100, 0)
    os.utime(old, (0, 0))  # 1970: far past any limit on the real clock
    recent = fake_file(record / "cam1", "cam1-recent", 100, 0)
    os.utime(recent, None)  # now
    with ServerThread(tmp_path, record=str(record), retain_days=30) as server:
        wait_until(lambda: not old.exists(), 10, what="the server's first retention pass")
        assert recent.exists() and server.server is not None


def test_retention_options_need_record_and_positive_values(tmp_path):
    secrets = tmp_path / "s.toml"
    secrets.write_text('[cameras]\ncam1 = "s3cret-for-tests-0123456789"\n')
    for extra, message in ((["--retain-days", "7"], "--retain-days and --retain-gb need --record"),
                           (["--record", str(tmp_path / "r"), "--retain-gb", "0"],
                            "--retain-gb must be a positive number, not 0")):
        proc = subprocess.run(edgecodec_cmd("serve", "--secrets", secrets, "--listen", "127.0.0.1:0", *extra),
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr.strip() == f"edgecodec serve: error: {message}"
