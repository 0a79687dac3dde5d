"""sd_notify over a real datagram socket, the heartbeat that feeds systemd's watchdog, journal logs."""
from __future__ import annotations

import logging
import os
import socket
import threading

import pytest

from edgecodec.edge import journal, service
from edgecodec.sdnotify import Notifier

pytestmark = pytest.mark.timeout(30)


@pytest.fixture()
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock, n=1):
    return [sock.recv(4096).decode() for _ in range(n)]


def test_ready_status_watchdog_and_stopping_reach_the_notify_socket(notify_socket):
    path, sock = notify_socket
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    assert notifier.ready("up") and notifier.watchdog() and notifier.status("5 fps") and notifier.stopping()
    assert received(sock, 4) == ["READY=1\nSTATUS=up", "WATCHDOG=1", "STATUS=5 fps", "STOPPING=1"]


def test_abstract_namespace_addresses_are_supported():
    name = f"edgecodec-test-{os.getpid()}-{threading.get_ident()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier(environ={"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_without_notify_socket_every_call_is_a_harmless_no_op():
    notifier = Notifier(environ={})
    assert not notifier.enabled and not notifier.ready() and not notifier.watchdog()


def test_a_vanished_notify_socket_does_not_raise(tmp_path):
    assert Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False


def test_watchdog_interval_comes_from_the_environment_for_this_process_only():
    mine = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(environ=mine).watchdog_interval() == 4.0
    assert Notifier(environ={**mine, "WATCHDOG_PID": "1"}).watchdog_interval() is None
    assert Notifier(environ={"NOTIFY_SOCKET": "/x"}).watchdog_interval() is None


class FakePipeline:
    """Stands in for EdgePipeline: its health is set by the test."""

    def __init__(self):
        self.problems_now: list[str] = []
        self.events: list[str] = []

    def start(self):
        self.events.append("start")

    def stop(self):
        self.events.append("stop")

    def done(self):
        return False

    def failure(self):
        return None

    def problems(self, stall_timeout):
        return list(self.problems_now)

    def figures(self):
        return {"fps": 1.0, "kbps": 2.0, "encode_ms": 3.0, "dropped_at_source": 0, "spool_frames": 0,
                "connected": True}


def test_heartbeat_pings_the_watchdog_only_while_the_pipeline_is_healthy(notify_socket):
    from edgecodec.edge.config import EdgeConfig

    path, sock = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000", "WATCHDOG_PID": str(os.getpid())}
    pipeline, stop = FakePipeline(), threading.Event()
    runner = threading.Thread(target=service.run, args=(EdgeConfig(), stop),
                              kwargs={"notifier": Notifier(environ=env), "pipeline": pipeline})
    runner.start()
    try:
        assert received(sock)[0].startswith("READY=1")
        assert received(sock, 2) == ["WATCHDOG=1", "WATCHDOG=1"]
        pipeline.problems_now = ["capture made no progress for 12 s"]
        sock.settimeout(0.3)
        for _ in range(3):  # drain a ping that may already be on its way
            try:
                sock.recv(4096)
            except socket.timeout:
                break
        with pytest.raises(socket.timeout):
            sock.recv(4096)  # stalled: no ping, so systemd would restart the service
        pipeline.problems_now = []
        sock.settimeout(5)
        assert received(sock) == ["WATCHDOG=1"]
    finally:
        stop.set()
        runner.join(10)
    assert pipeline.events == ["start", "stop"]
    messages = []
    sock.settimeout(0.5)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    assert any(m.startswith("STOPPING=1") for m in messages)


def test_journal_formatter_prefixes_each_line_with_its_syslog_priority():
    fmt = journal.JournalFormatter("%(name)s: %(message)s")
    record = logging.LogRecord("edgecodec.edge", logging.WARNING, __file__, 1, "link lost\nretrying", None, None)
    # journald splits at newlines: every line needs its own prefix, or it would be logged as INFO.
    assert fmt.format(record) == "<4>edgecodec.edge: link lost\n<4>retrying"


def test_stderr_is_recognised_as_the_journal_only_when_journal_stream_matches(tmp_path):
    with open(tmp_path / "log", "w") as f:
        st = os.fstat(f.fileno())
        assert journal.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
        assert not journal.stderr_is_journal({"JOURNAL_STREAM": "1:2"}, f)
        assert not journal.stderr_is_journal({}, f)
